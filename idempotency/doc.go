// Package idempotency enforces Idempotency-Key semantics on the server side,
// as an [http.Handler] middleware over a pluggable [Store].
//
// Put it in front of any handler whose POSTs must not run twice: a checkout
// endpoint that gets double clicks, a webhook receiver whose sender retries,
// a form that a browser resends. It implements the IETF draft "The
// Idempotency-Key HTTP Header Field", with Stripe's choices where the draft
// is silent:
//
//   - The first request with a key executes, and its response is stored
//     before the client sees it.
//   - A retry with the same key and the same request (see [Fingerprint])
//     gets the stored response again, byte for byte, marked
//     Idempotent-Replayed: true. Nothing executes twice.
//   - A request that arrives while the first is still executing gets 409
//     with Retry-After. However many race, exactly one executes.
//   - The same key with a different request gets 422: a client bug, caught
//     before anything executes or is stored.
//   - If the store cannot answer, the request gets 503 and nothing executes.
//
// Keys are scoped (see [WithScope]) so that one account can never replay
// another's response, and they expire after a TTL.
//
// [MemoryStore] keeps records in one process. Services that run on several
// instances need a store all of them share, since a double click may land on
// two instances.
//
//	store := idempotency.NewMemoryStore()
//	mw, err := idempotency.New(store, idempotency.WithScope(accountOf))
//	if err != nil { … }
//	http.Handle("POST /orders", authenticate(mw.Wrap(createOrder)))
package idempotency
