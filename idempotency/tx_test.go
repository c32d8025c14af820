package idempotency_test

import (
	"context"
	"errors"
	"net/http"
	"regexp"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/idempotency"
)

// txStore is a MemoryStore with transactions whose writes are kept in
// memory: applied at Finish, dropped at Rollback. It logs every call, so
// that a test sees what the middleware did, in what order.
type txStore struct {
	*idempotency.MemoryStore
	finishErr    error // what every Tx.Finish returns, if set; it then keeps nothing
	finishPanics bool  // every Tx.Finish panics

	mu    sync.Mutex
	calls []string
	kept  []string
}

func newTxStore() *txStore { return &txStore{MemoryStore: idempotency.NewMemoryStore()} }

func (s *txStore) log(call string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.calls = append(s.calls, call)
}

func (s *txStore) callLog() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.calls...)
}

func (s *txStore) keptWrites() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.kept...)
}

func (s *txStore) Finish(ctx context.Context, c idempotency.Claim, r *idempotency.Response) error {
	s.log("store.Finish")
	return s.MemoryStore.Finish(ctx, c, r)
}

func (s *txStore) Release(ctx context.Context, c idempotency.Claim) error {
	s.log("store.Release")
	return s.MemoryStore.Release(ctx, c)
}

func (s *txStore) BeginTx(_ context.Context, c idempotency.Claim) (idempotency.Tx, error) {
	s.log("BeginTx")
	return &memTx{s: s, token: c.Token}, nil
}

type memTx struct {
	s      *txStore
	token  string
	writes []string
}

func (t *memTx) Finish(ctx context.Context, c idempotency.Claim, r *idempotency.Response) error {
	t.s.log("tx.Finish")
	if t.s.finishPanics {
		panic("the store broke")
	}
	if t.s.finishErr != nil {
		return t.s.finishErr
	}
	if err := t.s.MemoryStore.Finish(ctx, c, r); err != nil {
		return err
	}
	t.s.mu.Lock()
	defer t.s.mu.Unlock()
	t.s.kept = append(t.s.kept, t.writes...)
	return nil
}

func (t *memTx) Rollback(context.Context) error {
	t.s.log("tx.Rollback")
	return nil
}

// write makes the handler's write in its request's transaction.
func write(t *testing.T, r *http.Request, what string) {
	t.Helper()
	tx, err := idempotency.Transaction(r.Context())
	require.NoError(t, err)
	tx.(*memTx).writes = append(tx.(*memTx).writes, what)
}

func TestTransactionCommitsWithTheResponse(t *testing.T) {
	s := newTxStore()
	runs := 0
	h := newMiddleware(t, s).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs++
		tx, err := idempotency.Transaction(r.Context())
		require.NoError(t, err)
		again, err := idempotency.Transaction(r.Context())
		require.NoError(t, err)
		assert.Same(t, tx.(*memTx), again.(*memTx), "one transaction per request")
		write(t, r, "order row")
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(`{"order":"ord_1"}`))
	}))
	first := post(h, "/orders", "k1", `{}`)
	require.Equal(t, http.StatusCreated, first.Code)
	assert.Equal(t, []string{"BeginTx", "tx.Finish"}, s.callLog(), "the response is stored in the transaction, not beside it")
	assert.Equal(t, []string{"order row"}, s.keptWrites())

	again := post(h, "/orders", "k1", `{}`)
	assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, first.Body.String(), again.Body.String())
	assert.Equal(t, 1, runs)
}

func TestTransactionRolledBackBeforeRelease(t *testing.T) {
	s := newTxStore()
	h := newMiddleware(t, s).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		write(t, r, "half an order")
		idempotency.NotExecuted(r.Context())
		w.WriteHeader(http.StatusBadRequest)
	}))
	assert.Equal(t, http.StatusBadRequest, post(h, "/orders", "k1", `{}`).Code)
	assert.Equal(t, []string{"BeginTx", "tx.Rollback", "store.Release"}, s.callLog(),
		"the transaction ends before the release, which its lock could hold up")
	assert.Empty(t, s.keptWrites())
	assert.Equal(t, http.StatusBadRequest, post(h, "/orders", "k1", `{}`).Code, "the key is free again")
}

func TestTransactionRolledBackOnPanic(t *testing.T) {
	s := newTxStore()
	h := newMiddleware(t, s).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		write(t, r, "half an order")
		panic("broken")
	}))
	func() {
		defer func() { assert.Equal(t, "broken", recover()) }()
		post(h, "/orders", "k1", `{}`)
	}()
	assert.Equal(t, []string{"BeginTx", "tx.Rollback", "store.Finish"}, s.callLog(),
		"a panicked handler's writes are dropped, and its 500 stored without them")
	assert.Empty(t, s.keptWrites())
	again := post(h, "/orders", "k1", `{}`)
	assert.Equal(t, http.StatusInternalServerError, again.Code)
	assert.Equal(t, "handler_panicked", errorCode(t, again))
}

func TestTransactionCommitIsNotRetried(t *testing.T) {
	s := newTxStore()
	s.finishErr = errors.New("connection reset by peer")
	ev := &events{}
	h := newMiddleware(t, s, idempotency.WithObserver(ev.observe)).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		write(t, r, "order row")
		w.WriteHeader(http.StatusCreated)
	}))
	w := post(h, "/orders", "k1", `{}`)
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Equal(t, "idempotency_response_not_stored", errorCode(t, w))
	assert.Equal(t, []string{"BeginTx", "tx.Finish"}, s.callLog(),
		"a commit whose answer was lost is tried once: it may have landed")
	require.Len(t, ev.all, 1)
	assert.Equal(t, idempotency.NotStored, ev.all[0].Outcome)
	assert.ErrorIs(t, ev.all[0].Err, s.finishErr)
}

// A store whose Finish panics leaves no transaction open: the middleware
// rolls it back on the way out, so its connection and locks are freed.
func TestTransactionRolledBackWhenFinishPanics(t *testing.T) {
	s := newTxStore()
	s.finishPanics = true
	h := newMiddleware(t, s).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		write(t, r, "order row")
		w.WriteHeader(http.StatusCreated)
	}))
	func() {
		defer func() { assert.Equal(t, "the store broke", recover()) }()
		post(h, "/orders", "k1", `{}`)
	}()
	assert.Equal(t, []string{"BeginTx", "tx.Finish", "tx.Rollback"}, s.callLog())
	assert.Empty(t, s.keptWrites())
}

func TestTransactionRolledBackWhenTheLeaseIsLost(t *testing.T) {
	s := newTxStore()
	clock := newFakeClock()
	mw := newMiddleware(t, s, idempotency.WithClock(clock.Now))
	ft := useFakeTimers(mw)
	written := make(chan struct{})
	h := mw.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		write(t, r, "order row")
		close(written)
		<-r.Context().Done() // the fence cancels it
		w.WriteHeader(http.StatusCreated)
	}))
	done := make(chan int)
	go func() { done <- post(h, "/orders", "k1", `{}`).Code }()
	<-written
	ft.next(t, "renew")
	fence := ft.next(t, "fence")
	clock.Advance(fence.d) // no renewal came
	require.True(t, fence.fire())
	assert.Equal(t, http.StatusServiceUnavailable, <-done)
	assert.Equal(t, []string{"BeginTx", "tx.Rollback"}, s.callLog())
	assert.Empty(t, s.keptWrites())
}

func TestTransactionOnOverflowCommitsThen(t *testing.T) {
	s := newTxStore()
	var late error
	h := newMiddleware(t, s, idempotency.WithMaxResponseBytes(16)).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		write(t, r, "export row")
		w.Write([]byte(strings.Repeat("x", 64)))
		_, late = idempotency.Transaction(r.Context())
	}))
	first := post(h, "/exports", "k1", `{}`)
	assert.Equal(t, strings.Repeat("x", 64), first.Body.String())
	assert.Equal(t, []string{"BeginTx", "tx.Finish"}, s.callLog(), "the placeholder commits with the writes")
	assert.Equal(t, []string{"export row"}, s.keptWrites())
	assert.ErrorIs(t, late, idempotency.ErrNoTransaction, "no transaction once the response streams")
	assert.ErrorContains(t, late, "outgrew WithMaxResponseBytes")
	assert.Equal(t, "idempotency_response_too_large", errorCode(t, post(h, "/exports", "k1", `{}`)))
}

func TestTransactionNeedsAClaimAndATxStore(t *testing.T) {
	_, err := idempotency.Transaction(context.Background())
	assert.ErrorIs(t, err, idempotency.ErrNoTransaction)

	var inMemory, afterwards error
	var kept context.Context
	h := newMiddleware(t, idempotency.NewMemoryStore()).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, inMemory = idempotency.Transaction(r.Context())
		kept = r.Context()
	}))
	post(h, "/orders", "k1", `{}`)
	assert.ErrorIs(t, inMemory, idempotency.ErrNoTransaction)
	assert.ErrorContains(t, inMemory, "*idempotency.MemoryStore, does not offer transactions")

	s := newTxStore()
	h = newMiddleware(t, s).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { kept = r.Context() }))
	post(h, "/orders", "k2", `{}`)
	_, afterwards = idempotency.Transaction(kept)
	assert.ErrorIs(t, afterwards, idempotency.ErrNoTransaction)
	assert.ErrorContains(t, afterwards, "the handler has returned")
	assert.Equal(t, []string{"store.Finish"}, s.callLog(), "a handler that asks for no transaction gets none")
}

func TestKeyFromContext(t *testing.T) {
	var scope, key string
	var ok bool
	mw := newMiddleware(t, idempotency.NewMemoryStore(), idempotency.WithOptionalKey(),
		idempotency.WithScope(func(*http.Request) string { return "acct_1" }))
	h := mw.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		scope, key, ok = idempotency.KeyFromContext(r.Context())
	}))
	post(h, "/orders", `"quoted-key"`, `{}`)
	assert.True(t, ok)
	assert.Equal(t, "acct_1", scope)
	assert.Equal(t, "quoted-key", key, "the key as the middleware parsed it")

	post(h, "/orders", "", `{}`)
	assert.False(t, ok, "a request without a key has none")
}

func TestDerivedKey(t *testing.T) {
	derive := func(scope, key, purpose string) (string, error) {
		var got string
		var err error
		mw := newMiddleware(t, idempotency.NewMemoryStore(),
			idempotency.WithScope(func(*http.Request) string { return scope }))
		post(mw.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			got, err = idempotency.DerivedKey(r.Context(), purpose)
		})), "/orders", key, `{}`)
		return got, err
	}
	a, err := derive("acct_1", "order-1", "charge")
	require.NoError(t, err)
	assert.Regexp(t, regexp.MustCompile(`^charge:[0-9a-f]{64}$`), a)
	// Pinned, computed outside Go from the construction the doc gives: a
	// release that derived another key would charge again every request
	// retried across the upgrade.
	assert.Equal(t, "charge:b0fbebc4fcb532529ad5d37724babf69355eb25633ed4ef18aebb21c012d3479", a)
	again, _ := derive("acct_1", "order-1", "charge")
	assert.Equal(t, a, again, "a re-execution derives the same key")
	for _, other := range [][3]string{
		{"acct_2", "order-1", "charge"}, // another caller's key never meets this one
		{"acct_1", "order-2", "charge"},
		{"acct_1", "order-1", "refund"},
	} {
		b, err := derive(other[0], other[1], other[2])
		require.NoError(t, err)
		assert.NotEqual(t, a, b, "%v", other)
	}
	// Length-prefixed parts: moving bytes between the scope and the key
	// changes the key.
	x, _ := derive("acct_1o", "rder-1", "charge")
	assert.NotEqual(t, a, x)

	for _, bad := range []string{"", "has space", "colon:", strings.Repeat("p", 65), "é"} {
		_, err := derive("acct_1", "order-1", bad)
		assert.Error(t, err, "purpose %q", bad)
	}
	_, err = idempotency.DerivedKey(context.Background(), "charge")
	assert.ErrorContains(t, err, "no claimed request")
}
