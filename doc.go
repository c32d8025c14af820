// Package payonce is a client for a payment gateway that charges cards
// without ever charging twice, whatever the network does.
//
// The promise: one logical operation charges at most once, and the caller
// always learns either its result or that the outcome is unknown, together
// with the idempotency key that settles it.
//
//	client, err := payonce.NewClient("sk_test_...", payonce.WithBaseURL(url))
//	ch, err := client.Charges.Create(ctx, &payonce.ChargeParams{
//		Amount: 2000, Currency: "usd", PaymentMethod: "tok_visa",
//		IdempotencyKey: "invoice_456",
//	})
//	// ch.ID, ch.Status, ch.LastResponse.Replayed, ch.LastResponse.Attempts
//
// # Idempotency keys
//
// Every POST carries an Idempotency-Key header. The gateway executes the
// first request with a key and replays its stored result to every later
// request with the same key and body; the same key with a different body is
// refused with 422 ([ErrKeyReused]). A key belongs to a logical operation,
// not to an HTTP request. Three ways to get one:
//
//   - [NewKey]: a random UUID. Create it when the operation is born, store it
//     with the order, and pass it on every attempt, including after a crash.
//   - [BusinessKey]: derived from the business event ("invoice", "456"), so
//     the same event always gives the same key and nothing needs storing.
//   - [ContentKey]: a hash of the request's content and a time window, for
//     requests from systems you do not control. Identical operations within
//     one window collapse into one; read its trade-offs before using it.
//
// When a params struct has no key, the client generates one per call: it
// protects the client's own retries, but not a retry made by calling again.
// Keys are never derived from timestamps.
//
// # Retries
//
// The client retries, with the same key and byte-identical body, what may
// succeed on a second try: connection failures, resets and EOF, per-attempt
// timeouts, 429, 500, 502, 503, 504, and 409 idempotency_key_in_use. It does
// not retry definite answers (400, 401, 402, 403, 404, 422, other 4xx, 501),
// TLS certificate errors, or the caller's cancellation. Defaults: 3 retries
// ([DefaultMaxRetries]), exponential backoff from 250 ms to 5 s with full
// jitter, 15 s per attempt, Retry-After honoured up to 10 s. The waits watch
// the context, and the client gives up at once, with the last real error,
// when the next wait would pass the context's deadline. See
// [DefaultRetryPolicy], [DefaultBackoff] and the With... options.
//
// A [RetryBudget], on by default and shared by all calls of a Client, stops
// a fleet of clients from multiplying the load of a gateway's outage: once a
// client has spent it on retries that failed again, a call that would be
// retried fails at once with [ErrRetryBudgetExhausted], until calls that
// succeed refill it. See [WithRetryBudget].
//
// When retries run out after an attempt that may have executed (a timeout
// after the request was sent, a 5xx, a 409 in use), the error matches
// [ErrOutcomeUnknown] and errors.As gives an [*OutcomeUnknownError] with the
// key. The charge happened at most once; to find out, send the same request
// later with the same key: the gateway executes it if it never ran, or
// replays the stored result. A definite answer is never reported as unknown:
// a decline after two timeouts is a decline, and a 5xx replayed as the key's
// stored outcome is an [*Error] with Replayed set, not retried (except a
// replayed 500 saying the charge executed or may have, an unknown outcome:
// see [Error.Replayed]).
//
// A success status is not enough: a 2xx whose body is not the resource the
// endpoint promises (an error body, {}, null, a charge without its id) fails
// with [ErrMalformedResponse], inside an [*OutcomeUnknownError] for a POST.
// The client makes every resend itself, so LastResponse.Attempts counts every
// request the gateway received (and attempts that never reached it, such as
// a refused dial), and it never follows a redirect (see [WithHTTPClient]).
//
// # Other SDKs
//
// [NewHTTPClient] returns an *http.Client whose Transport is the same retry
// engine, for SDKs that take an HTTP client, such as stripe-go (with its own
// retries turned off). It keeps each request's idempotency key, gives one to
// a request that has none, resends byte-identical bodies, and returns an
// [*OutcomeUnknownError] with the key, which errors.As reaches through the
// SDK's error, when the outcome is unknown.
//
// # Errors
//
// A non-2xx answer is an [*Error] with the status, type, code, decline code,
// message, request id and key. Match it with errors.Is and the sentinels:
// [ErrCardDeclined], [ErrKeyReused], [ErrRateLimited], [ErrAuthentication],
// [ErrNotFound], [ErrInvalidRequest], [ErrInvalidKey]. Error strings and
// logs never contain the API key, nor a run of 8 or more of its bytes, or
// card data: what the server sends, transport errors included, is scrubbed
// before it is clipped. Response bodies are read
// with size limits, and a body that is not the contract's JSON becomes a
// clear error rather than a crash.
//
// For an endpoint the typed services do not cover, [Client.NewRequest] and
// [Client.Do] give the same keys and retries.
package payonce
