package idempotency

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
)

// ErrNoTransaction is returned, wrapped with the reason, by [Transaction]
// when there is no store transaction to give: ctx is not that of a handler
// the middleware claimed a key for, the store offers no transactions (see
// [TxStore]), or the handler has returned.
var ErrNoTransaction = errors.New("idempotency: no store transaction for this request")

// A TxStore is a [Store] that can store a response in a transaction of the
// database it lives in, together with the handler's own writes: either both
// become durable at the commit, or neither does. [pgstore.Store] is one;
// [MemoryStore] and the Redis store are not, since nothing the handler does
// can join their records atomically.
//
// The middleware begins a transaction only for a handler that asks for it,
// through [Transaction] or a store's own helper, such as pgstore.Tx.
//
// [pgstore.Store]: https://pkg.go.dev/github.com/payonce/payonce/idempotency/pgstore#Store
type TxStore interface {
	Store

	// BeginTx begins a transaction for the claim that c.Token holds, or
	// returns [ErrLeaseLost] if the token no longer holds it in flight.
	// ctx bounds the beginning only: the transaction lives until
	// [Tx.Finish] or [Tx.Rollback].
	//
	// A transaction must not stop the claim's lease from being renewed, nor
	// block a duplicate's [Store.Claim], which answers [InFlight] as ever.
	BeginTx(ctx context.Context, c Claim) (Tx, error)
}

// A Tx is a store transaction begun by [TxStore.BeginTx]. The middleware
// calls exactly one of its methods, once, after the handler returned.
type Tx interface {
	// Finish stores resp for the claim, as [Store.Finish] does, and commits
	// the transaction. It returns [ErrLeaseLost], and commits nothing, if
	// the token no longer holds the claim: a lease taken over by another
	// request can never commit a second execution. Unlike [Store.Finish],
	// it is not retried: when it fails without an answer, the commit may or
	// may not have happened, and a retry of the request finds out. Finish
	// ends the transaction, whatever it returns.
	Finish(ctx context.Context, c Claim, resp *Response) error

	// Rollback ends the transaction, keeping nothing of it.
	Rollback(ctx context.Context) error
}

// request is what the handler's context carries for the middleware: what
// the handler may tell it, and what it may ask.
type request struct {
	m           *Middleware
	o           *owner
	notExecuted atomic.Bool // set by NotExecuted

	mu     sync.Mutex
	tx     Tx     // begun by the handler, until it ends
	closed string // why no transaction may begin any more, once the handler returned
}

type requestKey struct{}

func requestFrom(ctx context.Context) (*request, bool) {
	r, ok := ctx.Value(requestKey{}).(*request)
	return r, ok
}

// KeyFromContext returns the scope and the Idempotency-Key of the request
// whose handler runs on ctx. ok is false when ctx is not that of a handler
// the middleware claimed a key for, as for a request without a key under
// [WithOptionalKey].
//
// A handler that calls another service needs a key for that call too; see
// [DerivedKey].
func KeyFromContext(ctx context.Context) (scope, key string, ok bool) {
	r, ok := requestFrom(ctx)
	if !ok {
		return "", "", false
	}
	return r.o.c.Scope, r.o.c.Key, true
}

// DerivedKey returns the idempotency key for a call to another service,
// such as a payment gateway, that the handler of ctx's request makes for
// purpose: the same scope, key and purpose always give the same key, so a
// handler that executes again, after a crash or a lost lease, sends the
// same key downstream, and the gateway replays its first answer instead of
// charging again.
//
//	chargeKey, err := idempotency.DerivedKey(r.Context(), "charge")
//	…
//	charge, err := client.Charges.Create(ctx, &payonce.ChargeParams{
//		Amount: 2000, Currency: "usd", PaymentMethod: "tok_visa", IdempotencyKey: chargeKey,
//	})
//
// The key is purpose, a colon and 64 lower-case hexadecimal digits: the
// SHA-256 of four parts, "payonce derived key v1", the scope, the key and
// purpose, each preceded by its length in bytes as 8 bytes, little-endian.
// The construction never changes: a service upgraded while retries are in
// flight must derive the keys its earlier version sent. The scope is part
// of it, so two callers who happen to send the same key never share a
// downstream key, and the hash keeps their keys and scopes from reaching
// the other service. Use a purpose per downstream operation: a charge and
// a refund made by one handler need different keys. purpose must be 1 to
// 64 letters, digits, '_', '-' or '.'.
//
// The downstream key follows the request's key, not its body: after
// [NotExecuted] frees the key, a request with another body under the same
// key derives the same downstream key, which the other service then
// refuses as reused, or answers with the first request's outcome.
//
// It returns an error when ctx carries no claimed request (see
// [KeyFromContext]).
func DerivedKey(ctx context.Context, purpose string) (string, error) {
	if purpose == "" || len(purpose) > 64 {
		return "", fmt.Errorf("idempotency: derived key purpose must be 1 to 64 bytes, got %d", len(purpose))
	}
	for i := 0; i < len(purpose); i++ {
		switch c := purpose[i]; {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-', c == '.':
		default:
			return "", fmt.Errorf("idempotency: derived key purpose byte %d is %#02x; use letters, digits, '_', '-' or '.'", i, c)
		}
	}
	scope, key, ok := KeyFromContext(ctx)
	if !ok {
		return "", errors.New("idempotency: no claimed request in this context, so there is no key to derive from")
	}
	h := sha256.New()
	// Each part is preceded by its length, so distinct triples never hash
	// the same bytes.
	for _, s := range [...]string{"payonce derived key v1", scope, key, purpose} {
		var n [8]byte
		for i, l := 0, uint64(len(s)); i < 8; i, l = i+1, l>>8 {
			n[i] = byte(l)
		}
		h.Write(n[:])
		h.Write([]byte(s))
	}
	return purpose + ":" + hex.EncodeToString(h.Sum(nil)), nil
}

// Transaction returns the store transaction of the request whose handler
// runs on ctx, beginning it on the first call; later calls return the same
// one. The middleware stores the handler's response in it and commits,
// after the handler returns, so that the handler's own writes in it and the
// stored response become durable together:
//
//   - if the process dies before the commit, neither is kept: once the
//     lease runs out, a retry executes the handler again, on a clean slate;
//   - after the commit, every retry gets the stored response.
//
// Whatever the handler answers is committed with its writes, a 402 or a
// 500 as much as a 201: to keep none of them, call [NotExecuted], which
// rolls them back and frees the key. The handler must not commit or roll
// back the transaction itself. Where the middleware would store nothing, it
// rolls the transaction back: when
// the handler called [NotExecuted], panicked, or lost its claim, or when
// the commit fails (the client then gets 503, and a retry finds out whether
// the commit landed). When the response outgrows [WithMaxResponseBytes],
// the middleware stores its placeholder and commits at that moment, before
// the response streams to the client, so do the writes before writing a
// large response.
//
// When a call to another service fails in a way a retry may mend (its
// outcome unknown, a 503), call [NotExecuted] before answering: the writes
// are rolled back, the key is freed, and the client's retry executes again,
// sending the same derived key, so the other service replays what it did.
// Do the same when Transaction itself fails: nothing was written.
//
// A transaction holds a database connection from its beginning to the
// commit, beside the one the lease's renewals use, so a store's pool must
// have room for two per request in flight: bound the requests in flight in
// front of the middleware, or a full pool turns into 503s.
//
// Only what is written in the transaction is covered. A call to anything
// outside the store's database (a payment gateway, a queue, an email) may
// still happen twice when the handler executes again: give it a key of its
// own from [DerivedKey], so that it replays instead.
//
// The error wraps [ErrNoTransaction] when ctx is not that of a claimed
// request, the store is not a [TxStore], or the handler has returned. It is
// [ErrLeaseLost] when the claim is gone, and [ErrLeaseExpired] when the
// middleware gave it up, its lease about to run out.
func Transaction(ctx context.Context) (Tx, error) {
	r, ok := requestFrom(ctx)
	if !ok {
		return nil, fmt.Errorf("%w: the context is not that of a handler the middleware claimed a key for", ErrNoTransaction)
	}
	ts, ok := r.m.store.(TxStore)
	if !ok {
		return nil, fmt.Errorf("%w: the middleware's store, %T, does not offer transactions", ErrNoTransaction, r.m.store)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed != "" {
		return nil, fmt.Errorf("%w: %s", ErrNoTransaction, r.closed)
	}
	if r.tx != nil {
		return r.tx, nil
	}
	if cause := r.o.lostCause(); cause != nil {
		return nil, cause
	}
	c := r.o.c
	c.Now = r.m.now()
	bctx, cancel := r.m.callContext(ctx)
	defer cancel()
	tx, err := ts.BeginTx(bctx, c)
	if err != nil {
		return nil, err
	}
	r.tx = tx
	return tx, nil
}

// close says that no transaction may begin any more, and why: from then
// on only the middleware ends the one the handler began.
func (r *request) close(why string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.closed == "" {
		r.closed = why
	}
}

// openTx returns the transaction the handler began, until it has ended.
func (r *request) openTx() Tx {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.tx
}

// ended records that the transaction has been committed or rolled back.
func (r *request) ended() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.tx = nil
}
