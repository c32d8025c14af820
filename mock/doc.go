// Package mock is a fake payment gateway that enforces idempotency keys, for
// testing code that charges cards.
//
// It speaks the payonce wire contract (docs/protocol.md): accounts chosen by
// API key, charges, captures and refunds, Stripe's test tokens, and the
// Idempotency-Key rules of package [github.com/payonce/payonce/idempotency],
// on which it is built. Unlike a stateless mock, it remembers every key, so
// a test that sends one key with two different amounts gets a 422, and a
// test whose code charges twice can see it with [Gateway.SuspectedDuplicates].
//
// Over the same core it also speaks Stripe's form-encoded dialect, told apart
// by a form body or a Stripe-Version header: charges, payment intents
// (confirm, manual capture, cancel), refunds by charge or payment intent and
// lists, with Stripe's idempotency rules, so stripe-go and stripe-node run
// against it unmodified but for the URL (docs/protocol.md §9).
//
// On top of the API it injects faults that make retries matter: errors before
// or after the charge commits, dropped connections, delays that keep a key
// in flight, and a seeded random chaos mode. A controllable clock expires
// keys without waiting, and the request history tells what the gateway did
// with every request.
//
// Every change to a charge, a refund or a payment intent leaves a Stripe
// event (GET /v1/events), which the gateway POSTs, signed as Stripe signs,
// to the webhook endpoints of its account (POST /v1/webhook_endpoints) at
// least once: retried on the gateway's clock until a 2xx, and duplicated,
// delayed, sent concurrently or redelivered after a dropped answer when a
// [DeliveryFault] says so. By default endpoints must be loopback URLs.
// The t= of each delivery's Stripe-Signature is the real time of the
// attempt, not the gateway's clock, since the receiver holds it to its own
// clock: moving the clock with [Gateway.AdvanceClock] never makes a
// delivery stale.
// [Gateway.WaitDeliveries] waits until every delivery has settled, and
// [Gateway.Close] ends them (docs/protocol.md §10).
//
// The shape follows net/http/httptest. [New] returns a [Gateway], an
// [http.Handler] for socket-free tests; [NewServer] starts it on a loopback
// port; [Gateway.Responder] plugs it into github.com/jarcoal/httpmock.
//
//	srv := mock.NewServer()
//	defer srv.Close()
//	err := srv.InjectFault(mock.Fault{Kind: mock.DropAfter, Method: "POST", Path: "/v1/charges"})
//	if err != nil {
//		t.Fatal(err)
//	}
//	// … point the code under test at srv.URL, let it charge and retry …
//	if d := srv.SuspectedDuplicates(time.Minute); len(d) > 0 {
//		t.Fatalf("double charge: %v", d)
//	}
//
// The same gateway answers a control surface under /_mock/ (faults, chaos,
// clock, inspection, reset) and /healthz, for tests written in other
// languages against cmd/payonce-mock. Nothing is shared between gateways:
// any number can run in one process.
//
// So that a web page the tester visits cannot drive the control surface
// (a form or a text/plain fetch needs no CORS preflight, and DNS rebinding
// lets a page read the answers), and that an API key cannot drive it
// through a webhook endpoint that points at it, every control route,
// /healthz included, refuses a webhook delivery (one carrying the
// Payonce-Mock-Delivery marker that each delivery carries, or a
// Stripe-Signature; an endpoint's URL may not be on the control surface
// either), and every control route but /healthz, GETs included, refuses: a
// browser's cross-origin request of an unsafe method
// (403); a Host that is not localhost, 127.0.0.0/8 or [::1], with any
// port (403), unless [WithControlToken] is set, in which case the request
// must carry Authorization: Bearer and the token (401); and a body or a
// Content-Type other than application/json (415). The rule holds however
// the request arrives, httpmock included: in-process tests use the
// Gateway's methods, or a loopback URL. docs/protocol.md §8 has the
// details.
package mock
