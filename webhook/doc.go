// Package webhook receives payment-gateway webhooks: it verifies each
// delivery's signature, then passes each event on to its handler once,
// however often the sender delivers it.
//
// A [Verifier] checks the two common schemes: Stripe's Stripe-Signature
// header ([Stripe]), and the webhook-id, webhook-timestamp and
// webhook-signature headers of Standard Webhooks ([StandardWebhooks]). A
// [Receiver] is an [http.Handler] that puts a Verifier and an
// [idempotency.Middleware] in front of yours:
//
//	v, err := webhook.NewVerifier(webhook.Stripe, []string{os.Getenv("STRIPE_WEBHOOK_SECRET")})
//	if err != nil { … }
//	rc, err := webhook.NewReceiver(v, idempotency.NewMemoryStore(), http.HandlerFunc(handleEvent))
//	if err != nil { … }
//	http.Handle("POST /webhooks/stripe", rc)
//
// [SignStripe] and [SignStandard] make the signatures a sender sends; the
// mock gateway signs its deliveries with them.
//
// # Verification comes first
//
// Webhook senders repeat an event's id on every delivery, so the id is the
// natural idempotency key: the first delivery claims it and the rest get the
// first one's answer. But anybody can POST to a webhook endpoint, and the id
// is in a header or the body, where anybody can write it. A receiver that
// claimed the id before it checked the signature would let a forger burn a
// real event's id: one request with evt_123 and a made-up body, and the real
// evt_123 that follows is answered with the forgery's outcome (or with 422
// for a different body), and never processed. So the Receiver verifies each
// delivery completely, before it claims anything: a request that fails gets
// 400 with a JSON error whose code says why (webhook_signature_mismatch,
// webhook_timestamp_too_old, …), its handler never runs, and the store never
// hears of it. The id it then claims is the verified one (Stripe's event id,
// from the signed body; the webhook-id, which the signature covers),
// replacing any Idempotency-Key the request carried.
//
// # Tolerance and rotation
//
// Both schemes sign a timestamp with the payload, and a delivery whose
// timestamp is further from the verifier's clock than the tolerance
// (default five minutes, [WithTolerance]) is refused, whether too old
// ([ErrTooOld]: a captured delivery replayed later) or too far ahead
// ([ErrTooNew]). Senders sign each attempt anew, so their retries pass; the
// idempotency store catches a replay within the tolerance.
//
// While a secret is rotated the sender signs with both the old and the new
// one, and the Verifier accepts a signature made with any secret it was
// given: give it both, then drop the old one once the sender has.
//
// Signatures are compared in constant time, and no error holds a secret or
// the signature expected.
//
// # What a sender sees
//
// The first verified delivery of an event runs the handler. A redelivery
// that arrives while it runs gets 409 with Retry-After: a failure, to the
// sender, which retries later. Once the handler has answered 2xx, that
// answer is stored, and every redelivery gets it again, byte for byte,
// marked Idempotent-Replayed: true, for [DefaultTTL] (a week, longer than
// senders retry). However many deliveries race, the handler runs once.
//
// An event is known by its id alone: the idempotency fingerprint covers the
// method (POST) and the request's path decoded and cleaned as [path.Clean]
// cleans it, and nothing else: not the query string, not the path's
// percent-encoding, not the payload, which the signature vouches for. A
// sender may render an event anew for a later attempt (Stripe's carries
// pending_webhooks, a count of the deliveries still to make), and that
// redelivery is still the same event, replayed, rather than refused with
// 422 as a key reused for another request would be. Nor is the path
// signed, so a delivery captured and replayed to /webhooks/%73tripe or
// /webhooks/stripe?x=1, which a mux routes to the same receiver as
// /webhooks/stripe, is the same event too, and gets the stored answer. The
// handler still sees the URL as it came.
//
// An answer other than 2xx is not stored: senders retry every failure, and
// a failure stored and replayed would turn each retry into another failure
// until the sender gave the event up. The Receiver releases the id instead
// (as [idempotency.NotExecuted] does), so the retry runs the handler again.
// So a handler must answer 2xx once it has done what it cannot do twice,
// and answer a failure only when nothing happened or what happened is safe
// to redo. A handler that panics may have done anything: it gets a 500
// stored, as with the middleware, so every redelivery fails until the
// sender gives up, and the middleware logs the panic for an operator to
// act on. A handler that knows a panic leaves nothing half done can
// recover it and answer 500 itself, to have the event retried.
//
// Deliveries must be POSTs (anything else gets 405). One without the
// scheme's signature header (Stripe-Signature, or webhook-signature) gets
// 400 webhook_signature_missing before its body is read. A payload larger
// than [WithMaxBodyBytes] gets 413, and one that cannot be read, as when
// the sender hangs up while sending it, 400, before anything is claimed. Once
// verified, a delivery is processed to its end even if the sender hangs up,
// so that its retry finds the outcome.
//
// The event ids of one receiver are scoped to its scheme and endpoint (see
// [WithEndpoint]; by default the endpoint is the path, decoded and cleaned
// as above), so receivers sharing a store never meet. Use a store that
// all instances share when the receiver runs on more than one: redeliveries
// land anywhere.
package webhook
