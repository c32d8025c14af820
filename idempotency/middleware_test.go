package idempotency_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/idempotency"
)

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// ledger is a handler with a side effect to count: every execution appends
// the request body and answers with a fresh order id.
type ledger struct {
	mu       sync.Mutex
	executed []string
}

func (l *ledger) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	l.mu.Lock()
	l.executed = append(l.executed, string(body))
	n := len(l.executed)
	l.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Order", fmt.Sprint(n))
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"order":"ord_%d"}`, n)
}

func (l *ledger) count() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.executed)
}

type events struct {
	mu  sync.Mutex
	all []idempotency.Event
}

func (e *events) observe(_ *http.Request, ev idempotency.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

func (e *events) outcomes() []idempotency.Outcome {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []idempotency.Outcome
	for _, ev := range e.all {
		out = append(out, ev.Outcome)
	}
	return out
}

func newMiddleware(t *testing.T, store idempotency.Store, opts ...idempotency.Option) *idempotency.Middleware {
	t.Helper()
	mw, err := idempotency.New(store, opts...)
	require.NoError(t, err)
	return mw
}

func post(h http.Handler, path, key, body string) *httptest.ResponseRecorder {
	r := httptest.NewRequest(http.MethodPost, path, strings.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	if key != "" {
		r.Header.Set("Idempotency-Key", key)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

func errorCode(t *testing.T, w *httptest.ResponseRecorder) string {
	t.Helper()
	var e struct {
		Error struct{ Type, Code, Message string }
	}
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &e), "body %q", w.Body.String())
	return e.Error.Code
}

func TestReplayAfterFinish(t *testing.T) {
	l := &ledger{}
	ev := &events{}
	h := newMiddleware(t, idempotency.NewMemoryStore(), idempotency.WithObserver(ev.observe)).Wrap(l)

	first := post(h, "/orders", "k1", `{"amount":100,"currency":"usd"}`)
	require.Equal(t, http.StatusCreated, first.Code)
	assert.Empty(t, first.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, "1", first.Header().Get("X-Order"), "the first answer carries every header the handler set")

	// The same request, with fields reordered and spaced differently.
	again := post(h, "/orders", `"k1"`, `{ "currency": "usd", "amount": 100 }`)
	assert.Equal(t, http.StatusCreated, again.Code)
	assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, first.Body.Bytes(), again.Body.Bytes(), "replayed byte for byte")
	assert.Equal(t, "application/json", again.Header().Get("Content-Type"))
	assert.Empty(t, again.Header().Get("X-Order"), "only the headers that matter are replayed")
	assert.Equal(t, 1, l.count(), "nothing executes twice")
	assert.Equal(t, []idempotency.Outcome{idempotency.Executed, idempotency.Replayed}, ev.outcomes())
}

func TestKeyReusedWithAnotherRequest(t *testing.T) {
	l := &ledger{}
	h := newMiddleware(t, idempotency.NewMemoryStore()).Wrap(l)
	require.Equal(t, http.StatusCreated, post(h, "/orders", "k1", `{"amount":1001}`).Code)

	other := post(h, "/orders", "k1", `{"amount":1002}`)
	assert.Equal(t, http.StatusUnprocessableEntity, other.Code)
	assert.Equal(t, "idempotency_key_reused", errorCode(t, other))

	otherPath := post(h, "/refunds", "k1", `{"amount":1001}`)
	assert.Equal(t, http.StatusUnprocessableEntity, otherPath.Code, "another endpoint is another request")

	assert.Equal(t, 1, l.count())
	// The original is untouched by the mismatches.
	assert.Equal(t, "true", post(h, "/orders", "k1", `{"amount":1001}`).Header().Get("Idempotent-Replayed"))
}

func TestMismatchStatusOption(t *testing.T) {
	h := newMiddleware(t, idempotency.NewMemoryStore(), idempotency.WithMismatchStatus(http.StatusBadRequest)).Wrap(&ledger{})
	post(h, "/orders", "k1", `{"amount":1}`)
	assert.Equal(t, http.StatusBadRequest, post(h, "/orders", "k1", `{"amount":2}`).Code)

	_, err := idempotency.New(idempotency.NewMemoryStore(), idempotency.WithMismatchStatus(409))
	assert.Error(t, err)
}

func TestMissingAndInvalidKeys(t *testing.T) {
	l := &ledger{}
	ev := &events{}
	h := newMiddleware(t, idempotency.NewMemoryStore(), idempotency.WithObserver(ev.observe)).Wrap(l)

	missing := post(h, "/orders", "", `{}`)
	assert.Equal(t, http.StatusBadRequest, missing.Code)
	assert.Equal(t, "idempotency_key_missing", errorCode(t, missing))

	for _, key := range []string{`""`, "a b", strings.Repeat("k", 256), `"unterminated`, "caf\u00e9"} {
		w := post(h, "/orders", key, `{}`)
		assert.Equal(t, http.StatusBadRequest, w.Code, "key %q", key)
		assert.Equal(t, "idempotency_key_invalid", errorCode(t, w), "key %q", key)
	}

	r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(`{}`))
	r.Header.Add("Idempotency-Key", "a")
	r.Header.Add("Idempotency-Key", "b")
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	assert.Equal(t, http.StatusBadRequest, w.Code, "two keys on one request")

	assert.Equal(t, 0, l.count())
	assert.Equal(t, idempotency.MissingKey, ev.outcomes()[0])
}

func TestOptionalKeyLetsKeylessRequestsExecuteEveryTime(t *testing.T) {
	l := &ledger{}
	h := newMiddleware(t, idempotency.NewMemoryStore(), idempotency.WithOptionalKey()).Wrap(l)
	post(h, "/orders", "", `{"amount":1}`)
	post(h, "/orders", "", `{"amount":1}`)
	assert.Equal(t, 2, l.count(), "without a key, a resend is a second order: the bug keys prevent")

	post(h, "/orders", "k", `{"amount":1}`)
	post(h, "/orders", "k", `{"amount":1}`)
	assert.Equal(t, 3, l.count(), "a key, when sent, is still enforced")
}

func TestSafeMethodsPassThrough(t *testing.T) {
	l := &ledger{}
	h := newMiddleware(t, idempotency.NewMemoryStore()).Wrap(l)
	for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, "get", "Head"} {
		r := httptest.NewRequest(m, "/orders/1", nil)
		r.Header.Set("Idempotency-Key", "ignored")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		assert.Equal(t, http.StatusCreated, w.Code, m)
	}
	assert.Equal(t, 6, l.count())
}

// TestEveryUnsafeMethodNeedsAKey: whatever its letter case, a method that is
// not safe is held to its key. (Before, only "POST" and "PATCH" were: a
// "post" to a handler registered without a method pattern ran every time.)
func TestEveryUnsafeMethodNeedsAKey(t *testing.T) {
	for _, m := range []string{"POST", "post", "Post", "PATCH", "patch", "PUT", "DELETE", "delete", "PURGE"} {
		t.Run(m, func(t *testing.T) {
			l := &ledger{}
			h := newMiddleware(t, idempotency.NewMemoryStore()).Wrap(l)
			send := func(key string) *httptest.ResponseRecorder {
				r := httptest.NewRequest(m, "/orders/1", strings.NewReader(`{"amount":1}`))
				if key != "" {
					r.Header.Set("Idempotency-Key", key)
				}
				w := httptest.NewRecorder()
				h.ServeHTTP(w, r)
				return w
			}
			assert.Equal(t, http.StatusBadRequest, send("").Code, "no key")
			for range 6 {
				send("k")
			}
			assert.Equal(t, 1, l.count(), "six requests with one key execute once")
		})
	}
	// The method's case is not part of what a key stands for.
	l := &ledger{}
	h := newMiddleware(t, idempotency.NewMemoryStore()).Wrap(l)
	r := httptest.NewRequest("post", "/orders", strings.NewReader(`{}`))
	r.Header.Set("Idempotency-Key", "k")
	h.ServeHTTP(httptest.NewRecorder(), r)
	again := post(h, "/orders", "k", `{}`)
	assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
}

func TestPatchNeedsAKeyToo(t *testing.T) {
	h := newMiddleware(t, idempotency.NewMemoryStore()).Wrap(&ledger{})
	r := httptest.NewRequest(http.MethodPatch, "/orders/1", strings.NewReader(`{}`))
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	assert.Equal(t, http.StatusBadRequest, w.Code)
}

func TestBodyTooLargeIsRefusedAndLeavesKeyFree(t *testing.T) {
	l := &ledger{}
	h := newMiddleware(t, idempotency.NewMemoryStore(), idempotency.WithMaxBodyBytes(16)).Wrap(l)
	big := post(h, "/orders", "k", `{"note":"`+strings.Repeat("x", 64)+`"}`)
	assert.Equal(t, http.StatusRequestEntityTooLarge, big.Code)
	assert.Equal(t, "body_too_large", errorCode(t, big))
	assert.Equal(t, http.StatusCreated, post(h, "/orders", "k", `{"a":1}`).Code, "the key was not used up")
	assert.Equal(t, 1, l.count())
}

func TestNotExecutedReleasesTheKey(t *testing.T) {
	var calls atomic.Int32
	validating := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		body, _ := io.ReadAll(r.Body)
		if !strings.Contains(string(body), "amount") {
			require.True(t, idempotency.NotExecuted(r.Context()))
			http.Error(w, "amount is required", http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("charged"))
	})
	ev := &events{}
	h := newMiddleware(t, idempotency.NewMemoryStore(), idempotency.WithObserver(ev.observe)).Wrap(validating)

	assert.Equal(t, http.StatusBadRequest, post(h, "/charges", "k", `{"currency":"usd"}`).Code)
	fixed := post(h, "/charges", "k", `{"currency":"usd","amount":5}`)
	assert.Equal(t, http.StatusOK, fixed.Code, "a corrected request may use the key of a refused one")
	assert.Empty(t, fixed.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, []idempotency.Outcome{idempotency.Released, idempotency.Executed}, ev.outcomes())

	assert.False(t, idempotency.NotExecuted(context.Background()), "outside the middleware it does nothing")
}

func TestErrorsAfterExecutionAreStored(t *testing.T) {
	var calls atomic.Int32
	declining := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusPaymentRequired)
		w.Write([]byte(`{"error":{"type":"card_error","code":"card_declined"}}`))
	})
	h := newMiddleware(t, idempotency.NewMemoryStore()).Wrap(declining)
	first := post(h, "/charges", "k", `{"amount":5}`)
	again := post(h, "/charges", "k", `{"amount":5}`)
	assert.Equal(t, http.StatusPaymentRequired, again.Code)
	assert.Equal(t, first.Body.String(), again.Body.String())
	assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
	assert.EqualValues(t, 1, calls.Load(), "a decline is an outcome: retrying it must not charge")
}

func TestScopesNeverMeet(t *testing.T) {
	l := &ledger{}
	scope := idempotency.WithScope(func(r *http.Request) string { return r.Header.Get("X-Account") })
	h := newMiddleware(t, idempotency.NewMemoryStore(), scope).Wrap(l)

	send := func(account, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(body))
		r.Header.Set("Idempotency-Key", "same-key")
		r.Header.Set("X-Account", account)
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	a := send("alice", `{"amount":1}`)
	b := send("bob", `{"amount":1}`)
	assert.Equal(t, http.StatusCreated, b.Code)
	assert.Empty(t, b.Header().Get("Idempotent-Replayed"), "bob must not get alice's response")
	assert.NotEqual(t, a.Body.String(), b.Body.String())
	assert.Equal(t, http.StatusCreated, send("carol", `{"amount":999}`).Code, "another scope's key is no mismatch")
	assert.Equal(t, 3, l.count())
}

// TestKeysAreScopedByCallerByDefault: without WithScope, each Authorization
// is a scope of its own. (Before, every caller shared one: B got A's stored
// response, and a caller who claimed a guessable key first made A's real
// request fail with 422 for the whole TTL.)
func TestKeysAreScopedByCallerByDefault(t *testing.T) {
	l := &ledger{}
	ev := &events{}
	h := newMiddleware(t, idempotency.NewMemoryStore(), idempotency.WithObserver(ev.observe)).Wrap(l)
	send := func(auth, body string) *httptest.ResponseRecorder {
		r := httptest.NewRequest(http.MethodPost, "/charges", strings.NewReader(body))
		r.Header.Set("Idempotency-Key", "renewal:inv_0042:2026")
		if auth != "" {
			r.Header.Set("Authorization", auth)
		}
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		return w
	}
	mallory := send("Bearer sk_test_mallory", `{"amount":1}`)
	require.Equal(t, http.StatusCreated, mallory.Code)
	alice := send("Bearer sk_test_alice", `{"amount":4200}`)
	assert.Equal(t, http.StatusCreated, alice.Code, "another caller's claim on the key does not burn it: %s", alice.Body)
	assert.Empty(t, alice.Header().Get("Idempotent-Replayed"))
	again := send("Bearer sk_test_alice", `{"amount":4200}`)
	assert.Equal(t, alice.Body.String(), again.Body.String(), "alice's own retry replays her answer")
	assert.Equal(t, 2, l.count())

	for _, e := range ev.all {
		assert.NotContains(t, e.Scope, "sk_test", "the scope never holds the credential")
		assert.NotEmpty(t, e.Scope)
	}
	assert.NotEqual(t, ev.all[0].Scope, ev.all[1].Scope)

	// Requests without credentials share one scope.
	send("", `{"amount":7}`)
	assert.Equal(t, "true", send("", `{"amount":7}`).Header().Get("Idempotent-Replayed"))
}

func TestWithoutScopeSharesKeys(t *testing.T) {
	l := &ledger{}
	h := newMiddleware(t, idempotency.NewMemoryStore(), idempotency.WithoutScope()).Wrap(l)
	for _, auth := range []string{"Bearer a", "Bearer b"} {
		r := httptest.NewRequest(http.MethodPost, "/charges", strings.NewReader(`{}`))
		r.Header.Set("Idempotency-Key", "k")
		r.Header.Set("Authorization", auth)
		h.ServeHTTP(httptest.NewRecorder(), r)
	}
	assert.Equal(t, 1, l.count(), "a single-tenant service may share keys across credentials")
}

// TestLargeResponseIsSentOnceAndNeverReexecuted: a response larger than the
// bound reaches its client whole, without being held in memory, and what is
// stored for the key is a small 500 that says so; a retry gets that, and
// nothing executes again. (Before, the whole response was buffered and
// stored, whatever its size.)
func TestLargeResponseIsSentOnceAndNeverReexecuted(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 4096) // 64 KiB
	var calls atomic.Int32
	ev := &events{}
	h := newMiddleware(t, idempotency.NewMemoryStore(), idempotency.WithMaxResponseBytes(1024),
		idempotency.WithObserver(ev.observe)).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		w.Header().Set("Content-Type", "text/csv")
		w.Header().Set("X-Export", "1")
		for i := 0; i < len(big); i += 1000 {
			w.Write([]byte(big[i:min(i+1000, len(big))]))
		}
	}))
	first := post(h, "/exports", "k", `{}`)
	assert.Equal(t, http.StatusOK, first.Code)
	assert.Equal(t, big, first.Body.String(), "the client gets the whole response")
	assert.Equal(t, "text/csv", first.Header().Get("Content-Type"))
	assert.Equal(t, "1", first.Header().Get("X-Export"))
	require.Len(t, ev.all, 1)
	assert.Equal(t, idempotency.Executed, ev.all[0].Outcome)
	assert.ErrorIs(t, ev.all[0].Err, idempotency.ErrResponseTooLarge)

	again := post(h, "/exports", "k", `{}`)
	assert.Equal(t, http.StatusInternalServerError, again.Code)
	assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, "idempotency_response_too_large", errorCode(t, again))
	assert.EqualValues(t, 1, calls.Load())
}

type fullStore struct{ idempotency.Store }

func (fullStore) Claim(context.Context, idempotency.Claim) (idempotency.Result, error) {
	return idempotency.Result{}, fmt.Errorf("memory: %w", idempotency.ErrStoreFull)
}

func TestFullStoreFailsClosed(t *testing.T) {
	l := &ledger{}
	ev := &events{}
	h := newMiddleware(t, fullStore{}, idempotency.WithObserver(ev.observe)).Wrap(l)
	w := post(h, "/orders", "k", `{}`)
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Equal(t, "1", w.Header().Get("Retry-After"))
	assert.Equal(t, "idempotency_store_full", errorCode(t, w))
	assert.Equal(t, 0, l.count())
	assert.ErrorIs(t, ev.all[0].Err, idempotency.ErrStoreFull)
}

func TestKeysExpireAfterTTL(t *testing.T) {
	clock := newFakeClock()
	store := idempotency.NewMemoryStore()
	l := &ledger{}
	h := newMiddleware(t, store, idempotency.WithClock(clock.Now), idempotency.WithTTL(time.Hour)).Wrap(l)

	post(h, "/orders", "k", `{"amount":1}`)
	clock.Advance(time.Hour - time.Second)
	assert.Equal(t, "true", post(h, "/orders", "k", `{"amount":1}`).Header().Get("Idempotent-Replayed"))
	clock.Advance(time.Second)
	assert.Empty(t, post(h, "/orders", "k", `{"amount":1}`).Header().Get("Idempotent-Replayed"), "an expired key executes again")
	assert.Equal(t, 2, l.count())
}

func TestExpiredKeysAreEvicted(t *testing.T) {
	clock := newFakeClock()
	store := idempotency.NewMemoryStore()
	h := newMiddleware(t, store, idempotency.WithClock(clock.Now), idempotency.WithTTL(time.Minute)).Wrap(&ledger{})
	for i := range 2000 {
		post(h, "/orders", fmt.Sprint("old-", i), `{}`)
	}
	require.Equal(t, 2000, store.Len())
	clock.Advance(2 * time.Minute)
	for i := range 2000 {
		post(h, "/orders", fmt.Sprint("new-", i), `{}`)
	}
	assert.Equal(t, 2000, store.Len(), "the old keys made way for the new ones")
}

// TestRacingRequestsExecuteOnce sends many identical requests with one key at
// once, from many goroutines over real connections. Exactly one executes; the
// others get 409 while it runs, and a replay once it is done.
func TestRacingRequestsExecuteOnce(t *testing.T) {
	const racers = 50
	release := make(chan struct{})
	entered := make(chan struct{}, racers)
	var calls atomic.Int32
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		entered <- struct{}{}
		<-release
		w.Write([]byte(`{"id":"ord_1"}`))
	})
	ev := &events{}
	srv := httptest.NewServer(newMiddleware(t, idempotency.NewMemoryStore(), idempotency.WithObserver(ev.observe)).Wrap(slow))
	defer srv.Close()
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock() // runs before srv.Close, so a failed test cannot hang it

	var wg sync.WaitGroup
	statuses := make(chan *http.Response, racers)
	for range racers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodPost, srv.URL+"/orders", strings.NewReader(`{"amount":100}`))
			req.Header.Set("Idempotency-Key", "one-key")
			resp, err := srv.Client().Do(req)
			if !assert.NoError(t, err) {
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses <- resp
		}()
	}
	<-entered // one request is executing and holds the key
	// Every other racer must be answered while it still holds the key. The
	// timeout only turns a broken store's deadlock into a failure.
	for range racers - 1 {
		select {
		case resp := <-statuses:
			assert.Equal(t, http.StatusConflict, resp.StatusCode)
			assert.Equal(t, "1", resp.Header.Get("Retry-After"))
		case <-entered:
			t.Fatal("a second racer executed while the first held the key")
		case <-time.After(30 * time.Second):
			t.Fatal("racers were not answered while the first request held the key")
		}
	}
	unblock()
	wg.Wait()
	close(statuses)
	assert.Equal(t, http.StatusOK, (<-statuses).StatusCode)
	assert.EqualValues(t, 1, calls.Load())

	replay := post(srv.Config.Handler, "/orders", "one-key", `{"amount":100}`)
	assert.Equal(t, "true", replay.Header().Get("Idempotent-Replayed"))
}

// TestMismatchWinsOverInFlight: while the first request runs, a request with
// the same key and another body is a client bug, and says so at once.
func TestMismatchWinsOverInFlight(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
	})
	h := newMiddleware(t, idempotency.NewMemoryStore()).Wrap(slow)
	done := make(chan struct{})
	go func() {
		defer close(done)
		post(h, "/orders", "k", `{"amount":1}`)
	}()
	<-entered
	assert.Equal(t, http.StatusUnprocessableEntity, post(h, "/orders", "k", `{"amount":2}`).Code)
	assert.Equal(t, http.StatusConflict, post(h, "/orders", "k", `{"amount":1}`).Code)
	close(release)
	<-done
}

// failingStore answers every call with an error, like a database that is down.
type failingStore struct{ idempotency.Store }

func (failingStore) Claim(context.Context, idempotency.Claim) (idempotency.Result, error) {
	return idempotency.Result{}, errors.New("connection refused")
}

func TestStoreFailureFailsClosed(t *testing.T) {
	l := &ledger{}
	ev := &events{}
	h := newMiddleware(t, failingStore{}, idempotency.WithObserver(ev.observe)).Wrap(l)
	w := post(h, "/orders", "k", `{}`)
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Equal(t, "1", w.Header().Get("Retry-After"))
	assert.Equal(t, "idempotency_store_unavailable", errorCode(t, w))
	assert.Equal(t, 0, l.count(), "a request that could not be claimed never executes")
	require.Len(t, ev.all, 1)
	assert.Equal(t, idempotency.StoreFailed, ev.all[0].Outcome)
	assert.EqualError(t, ev.all[0].Err, "connection refused")
}

// TestPanicAfterExecutionIsStored: a handler that panics after it may have
// executed gets a 500 stored for its key, as any answer after execution is,
// and the panic goes on. (Before, the key was released, so every retry ran
// the side effects again: four executions for three attempts.)
func TestPanicAfterExecutionIsStored(t *testing.T) {
	var calls atomic.Int32
	h := newMiddleware(t, idempotency.NewMemoryStore()).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1) // the side effect
		panic("boom")
	}))
	var first *httptest.ResponseRecorder
	assert.PanicsWithValue(t, "boom", func() {
		r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(`{}`))
		r.Header.Set("Idempotency-Key", "k")
		first = httptest.NewRecorder()
		h.ServeHTTP(first, r)
	})
	assert.Equal(t, http.StatusInternalServerError, first.Code, "the client is told before the panic goes on")
	assert.Equal(t, "handler_panicked", errorCode(t, first))
	for range 2 {
		again := post(h, "/orders", "k", `{}`)
		assert.Equal(t, http.StatusInternalServerError, again.Code)
		assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
	}
	assert.EqualValues(t, 1, calls.Load(), "three attempts, one execution")
}

// TestPanicBeforeExecutionReleasesTheKey: a handler that said it executed
// nothing leaves the key free even if it then panics.
func TestPanicBeforeExecutionReleasesTheKey(t *testing.T) {
	var calls atomic.Int32
	h := newMiddleware(t, idempotency.NewMemoryStore()).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			idempotency.NotExecuted(r.Context())
			panic("boom")
		}
		w.Write([]byte("ok"))
	}))
	assert.PanicsWithValue(t, "boom", func() { post(h, "/orders", "k", `{}`) })
	assert.Equal(t, "ok", post(h, "/orders", "k", `{}`).Body.String(), "the key is not stuck in flight")
}

// ctxStore fails calls whose context is done, as a database driver does.
type ctxStore struct{ idempotency.Store }

func (s ctxStore) Finish(ctx context.Context, c idempotency.Claim, r *idempotency.Response) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	return s.Store.Finish(ctx, c, r)
}

// TestResponseIsStoredWhenClientHangsUp: the client gives up while the
// handler runs (a timeout); the handler finishes and its answer must still be
// stored, because the client's retry is coming.
func TestResponseIsStoredWhenClientHangsUp(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var calls atomic.Int32
	h := newMiddleware(t, ctxStore{idempotency.NewMemoryStore()}).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		cancel() // the client is gone before the handler answers
		w.Write([]byte(`{"id":"ch_1"}`))
	}))
	r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/charges", strings.NewReader(`{}`))
	r.Header.Set("Idempotency-Key", "k")
	h.ServeHTTP(httptest.NewRecorder(), r)

	again := post(h, "/charges", "k", `{}`)
	assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, `{"id":"ch_1"}`, again.Body.String())
	assert.EqualValues(t, 1, calls.Load())
}

func TestNewRefusesBadOptions(t *testing.T) {
	store := idempotency.NewMemoryStore()
	for name, opt := range map[string]idempotency.Option{
		"ttl":      idempotency.WithTTL(0),
		"lease":    idempotency.WithLease(-time.Second),
		"body":     idempotency.WithMaxBodyBytes(0),
		"clock":    idempotency.WithClock(nil),
		"scope":    idempotency.WithScope(nil),
		"observer": idempotency.WithObserver(nil),
		"writer":   idempotency.WithErrorWriter(nil),
		"header":   idempotency.WithReplayHeaders(""),
		"timeout":  idempotency.WithStoreTimeout(0),
		"handler":  idempotency.WithHandlerTimeout(0),
		"response": idempotency.WithMaxResponseBytes(0),
		"logger":   idempotency.WithLogger(nil),
	} {
		_, err := idempotency.New(store, opt)
		assert.Error(t, err, name)
	}
	_, err := idempotency.New(nil)
	assert.Error(t, err)
	_, err = idempotency.New(store, idempotency.WithLease(time.Minute), idempotency.WithStoreTimeout(16*time.Second))
	assert.Error(t, err, "a store timeout longer than a quarter of the lease")
	_, err = idempotency.New(store, idempotency.WithLease(time.Minute), idempotency.WithStoreTimeout(15*time.Second))
	assert.NoError(t, err)
}

func TestCustomErrorWriter(t *testing.T) {
	h := newMiddleware(t, idempotency.NewMemoryStore(), idempotency.WithErrorWriter(
		func(w http.ResponseWriter, _ *http.Request, e *idempotency.Error) {
			w.WriteHeader(e.StatusCode)
			fmt.Fprintf(w, "problem: %s", e.Code)
		})).Wrap(&ledger{})
	w := post(h, "/orders", "", `{}`)
	assert.Equal(t, http.StatusBadRequest, w.Code)
	assert.Equal(t, "problem: idempotency_key_missing", w.Body.String())
}

func TestReplayHeadersOption(t *testing.T) {
	h := newMiddleware(t, idempotency.NewMemoryStore(), idempotency.WithReplayHeaders("x-order")).Wrap(&ledger{})
	post(h, "/orders", "k", `{}`)
	assert.Equal(t, "1", post(h, "/orders", "k", `{}`).Header().Get("X-Order"))
}

// renewSpy reports every successful renewal on a channel.
type renewSpy struct {
	idempotency.Store
	renewed chan struct{}
}

func (s renewSpy) Renew(ctx context.Context, c idempotency.Claim) error {
	err := s.Store.Renew(ctx, c)
	if err == nil {
		select {
		case s.renewed <- struct{}{}:
		default:
		}
	}
	return err
}

// TestHeartbeatKeepsSlowHandlersClaim: a handler that runs for many leases
// keeps its key, because the middleware renews the lease while it runs.
func TestHeartbeatKeepsSlowHandlersClaim(t *testing.T) {
	clock := newFakeClock()
	store := renewSpy{idempotency.NewMemoryStore(), make(chan struct{})}
	const lease = 30 * time.Millisecond
	release := make(chan struct{})
	entered := make(chan struct{})
	var calls atomic.Int32
	h := newMiddleware(t, store, idempotency.WithClock(clock.Now), idempotency.WithLease(lease)).Wrap(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			close(entered)
			<-release
		}))
	done := make(chan struct{})
	go func() { defer close(done); post(h, "/orders", "k", `{}`) }()
	<-entered

	for range 3 {
		clock.Advance(lease / 2)
		select {
		case <-store.renewed:
		case <-time.After(30 * time.Second):
			t.Fatal("the lease was never renewed")
		}
	}
	// Two and a half leases after the claim, it still holds.
	assert.Equal(t, http.StatusConflict, post(h, "/orders", "k", `{}`).Code)
	close(release)
	<-done
	assert.EqualValues(t, 1, calls.Load())
}

// TestNotExecutedLargeResponseReleasesTheKey: a handler that refuses the
// request (NotExecuted) with an error body over WithMaxResponseBytes has
// its key released, as for any refusal, not the too-large placeholder
// stored: the corrected request may use the key.
func TestNotExecutedLargeResponseReleasesTheKey(t *testing.T) {
	var executed atomic.Int32
	h := newMiddleware(t, idempotency.NewMemoryStore(), idempotency.WithMaxResponseBytes(64)).Wrap(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			body, _ := io.ReadAll(r.Body)
			if !strings.Contains(string(body), "amount") {
				idempotency.NotExecuted(r.Context())
				http.Error(w, "amount is required; "+strings.Repeat("see the docs. ", 10), http.StatusBadRequest)
				return
			}
			executed.Add(1)
			w.WriteHeader(http.StatusCreated)
		}))

	refused := post(h, "/charges", "k", `{"currency":"usd"}`)
	require.Equal(t, http.StatusBadRequest, refused.Code)

	same := post(h, "/charges", "k", `{"currency":"usd"}`)
	assert.Equal(t, http.StatusBadRequest, same.Code, "nothing executed, so nothing may be replayed: %s", same.Body)
	fixed := post(h, "/charges", "k", `{"currency":"usd","amount":5}`)
	assert.Equal(t, http.StatusCreated, fixed.Code, "the corrected request may use the key: %s", fixed.Body)
	assert.EqualValues(t, 1, executed.Load())
}

// TestEarlyHintsAreNotTheFinalStatus: a handler that sends 103 Early Hints
// before its 201 has the 201 stored and sent; the hints go to the client as
// they come, and are not stored.
func TestEarlyHintsAreNotTheFinalStatus(t *testing.T) {
	h := newMiddleware(t, idempotency.NewMemoryStore()).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload; as=style")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		w.Write([]byte(`{"id":"ord_1"}`))
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	send := func() (int, string) {
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/orders", strings.NewReader(`{}`))
		req.Header.Set("Idempotency-Key", "k")
		resp, err := srv.Client().Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	code, body := send()
	assert.Equal(t, http.StatusCreated, code, body)
	code, body = send()
	assert.Equal(t, http.StatusCreated, code, "the replay: %s", body)
}

// TestTrailersAreKept: a trailer the handler declares arrives as a trailer,
// not as a header, and one set with http.TrailerPrefix is not dropped.
func TestTrailersAreKept(t *testing.T) {
	h := newMiddleware(t, idempotency.NewMemoryStore()).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		w.WriteHeader(http.StatusOK)
		w.Write([]byte("hello"))
		w.Header().Set("X-Checksum", "abc")
		w.Header().Set(http.TrailerPrefix+"X-Late", "late")
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/exports", strings.NewReader(`{}`))
	req.Header.Set("Idempotency-Key", "k")
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Empty(t, resp.Header.Get("X-Checksum"), "a trailer is not a header")
	assert.Equal(t, "abc", resp.Trailer.Get("X-Checksum"))
	assert.Equal(t, "late", resp.Trailer.Get("X-Late"))
}
