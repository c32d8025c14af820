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
// Every method but the safe ones (GET, HEAD, OPTIONS, TRACE), in any letter
// case, needs a key. Keys are scoped per caller, by default by a hash of the
// Authorization header, so that one account can never replay another's
// response nor burn a key that another will send; scope by account for any
// API whose credentials change between attempts (see [WithScope]). Keys
// expire after a TTL.
//
// # Store outages, crashes and poisoned keys
//
// The claim is held under a lease that the middleware renews while the
// handler runs and until its response is stored. Every store call has a
// deadline shorter than the lease, and a Finish that fails is retried with
// backoff, so an outage shorter than the lease delays the answer but
// executes nothing twice: the client gets the handler's answer only once it
// is stored. If the handler is still running when three quarters of the
// lease have gone without a renewal, the owner stops it before anyone else
// may take the key: it cancels the handler's context and stores nothing of
// its answer. A response the handler already gave is retried for up to a
// lease (but for one stored in a [Transaction], whose commit is tried
// once). A response not stored by then gets the client 503 with
// Retry-After, and [NotStored] goes to the observer and the log.
//
// What remains possible: when the store is out for longer than that, or the
// process dies, the lease runs out and a retry executes again. Within a
// scope and the TTL, a client never sees two different successful answers
// for one key, since only a stored answer is sent (or, for a response too
// large to store, one sent once in place of its stored placeholder); but a
// side effect outside the store, such as a call to a payment gateway, can
// happen twice. Two things close that gap, and a handler that charges a
// card needs both:
//
//   - with a [TxStore], such as pgstore's, the handler does its own
//     database writes in the transaction in which the middleware stores its
//     response ([Transaction], or pgstore.Tx): a crash before the commit
//     keeps neither, so the re-execution starts clean, and after it only
//     replays follow;
//   - a call to another service, such as a payment gateway, carries a key
//     derived from this one ([DerivedKey]), so that a re-execution replays
//     there instead of charging again.
//
// The handler's context outlives the client's connection, under a deadline
// of its own ([WithHandlerTimeout]), so a payment does not stop halfway
// because a browser closed, and its retry finds the outcome. A handler that
// panics after it may have executed gets a 500 stored, as any answer after
// execution is. A response larger than [WithMaxResponseBytes] is sent once
// and replaced in the store by a small 500 that says so.
//
// [MemoryStore] keeps records in one process, within bounds on their number
// and bytes. Services that run on several instances need a store all of them
// share, since a double click may land on two instances.
//
//	store := idempotency.NewMemoryStore()
//	mw, err := idempotency.New(store, idempotency.WithScope(accountOf))
//	if err != nil { … }
//	http.Handle("POST /orders", authenticate(mw.Wrap(createOrder)))
package idempotency
