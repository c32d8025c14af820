package idempotency_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
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

// fakeTimers schedules the middleware's timers by hand: nothing fires until
// the test fires it, and every timer armed is announced on the channel of
// its kind, so the test knows exactly what the middleware waits for.
type fakeTimers struct {
	mu    sync.Mutex
	armed map[string]chan *fakeTimer
}

type fakeTimer struct {
	kind    string
	d       time.Duration
	f       func()
	mu      sync.Mutex
	stopped bool
	fired   bool
}

func (t *fakeTimer) Stop() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	was := !t.stopped && !t.fired
	t.stopped = true
	return was
}

// fire runs the timer's function, in its own goroutine as a real timer
// would, unless it was stopped; it reports whether it ran.
func (t *fakeTimer) fire() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.stopped || t.fired {
		return false
	}
	t.fired = true
	go t.f()
	return true
}

func useFakeTimers(mw *idempotency.Middleware) *fakeTimers {
	ft := &fakeTimers{armed: map[string]chan *fakeTimer{}}
	for _, k := range []string{"renew", "fence", "backoff", "deadline"} {
		ft.armed[k] = make(chan *fakeTimer, 1000)
	}
	idempotency.UseTimers(mw, func(kind string, d time.Duration, f func()) interface{ Stop() bool } {
		t := &fakeTimer{kind: kind, d: d, f: f}
		ft.armed[kind] <- t
		return t
	})
	return ft
}

// next returns the next timer of kind to be armed, waiting for it.
func (ft *fakeTimers) next(t *testing.T, kind string) *fakeTimer {
	t.Helper()
	select {
	case tm := <-ft.armed[kind]:
		return tm
	case <-time.After(10 * time.Second):
		t.Fatalf("no %s timer was armed", kind)
		return nil
	}
}

// flakyStore is a MemoryStore that can be made to fail, or to hang until
// its call's context ends, and tells the test of every call.
type flakyStore struct {
	*idempotency.MemoryStore
	down       atomic.Bool
	hang       atomic.Bool
	finishDown atomic.Bool // only Finish fails
	renews     chan error
	finishes   chan error
}

var errDown = errors.New("connection reset by peer")

func newFlakyStore() *flakyStore {
	return &flakyStore{MemoryStore: idempotency.NewMemoryStore(),
		renews: make(chan error, 100), finishes: make(chan error, 100)}
}

func (s *flakyStore) fail(ctx context.Context) error {
	if s.hang.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	if s.down.Load() {
		return errDown
	}
	return nil
}

func (s *flakyStore) Claim(ctx context.Context, c idempotency.Claim) (idempotency.Result, error) {
	if err := s.fail(ctx); err != nil {
		return idempotency.Result{}, err
	}
	return s.MemoryStore.Claim(ctx, c)
}

func (s *flakyStore) Renew(ctx context.Context, c idempotency.Claim) error {
	err := s.fail(ctx)
	if err == nil {
		err = s.MemoryStore.Renew(ctx, c)
	}
	s.renews <- err
	return err
}

func (s *flakyStore) Finish(ctx context.Context, c idempotency.Claim, r *idempotency.Response) error {
	err := s.fail(ctx)
	if err == nil && s.finishDown.Load() {
		err = errDown
	}
	if err == nil {
		err = s.MemoryStore.Finish(ctx, c, r)
	}
	s.finishes <- err
	return err
}

func recv[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(10 * time.Second):
		t.Fatalf("waited in vain for %s", what)
		var zero T
		return zero
	}
}

// heldRequest is one request in flight through a handler that waits to be
// released.
type heldRequest struct {
	entered chan context.Context
	release chan struct{}
	done    chan *httptest.ResponseRecorder
	calls   atomic.Int32
}

func (h *heldRequest) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	n := h.calls.Add(1)
	if n == 1 {
		h.entered <- r.Context()
		<-h.release
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	w.Write([]byte(`{"order":"ord_` + string(rune('0'+n)) + `"}`))
}

// start sends a request with key through h in its own goroutine, and waits
// until its handler runs.
func start(t *testing.T, h http.Handler, held *heldRequest, key string) context.Context {
	t.Helper()
	go func() { held.done <- post(h, "/orders", key, `{"amount":1}`) }()
	return recv(t, held.entered, "the handler to run")
}

func newHeld() *heldRequest {
	return &heldRequest{entered: make(chan context.Context, 1), release: make(chan struct{}),
		done: make(chan *httptest.ResponseRecorder, 1)}
}

func noAnswerYet(t *testing.T, held *heldRequest, why string) {
	t.Helper()
	select {
	case w := <-held.done:
		t.Fatalf("%s, but the client got %d %s", why, w.Code, w.Body)
	default:
	}
}

// TestFinishWaitsOutAStoreOutage: the store goes down while the handler
// runs. The response is not sent until it is stored: Finish is retried with
// backoff, and the lease keeps being renewed, so that when the store comes
// back before the lease would run out the response is stored, sent, and
// replayed to the retry; nothing executes twice. (Before, the handler's
// answer was sent at once, unstored, and after the lease a retry executed
// again.)
func TestFinishWaitsOutAStoreOutage(t *testing.T) {
	clock := newFakeClock()
	store := newFlakyStore()
	ev := &events{}
	mw := newMiddleware(t, store, idempotency.WithClock(clock.Now), idempotency.WithObserver(ev.observe))
	ft := useFakeTimers(mw)
	held := newHeld()
	h := mw.Wrap(held)
	const lease = idempotency.DefaultLease

	start(t, h, held, "k")
	renew, fence := ft.next(t, "renew"), ft.next(t, "fence")
	assert.Equal(t, lease/3, renew.d, "renewed every third of the lease")
	assert.Equal(t, lease*3/4, fence.d, "the fence stands a quarter of the lease before its end")
	assert.Equal(t, lease/6, ft.next(t, "deadline").d, "every store call has a deadline: the claim's did")

	store.down.Store(true)
	close(held.release)
	assert.ErrorIs(t, recv(t, store.finishes, "Finish"), errDown)
	finishing := ft.next(t, "fence")
	assert.Equal(t, lease, finishing.d, "once the handler has returned, Finish may be retried until the lease runs out")
	backoff := ft.next(t, "backoff")
	assert.LessOrEqual(t, backoff.d, 50*time.Millisecond, "the first retry comes soon")
	noAnswerYet(t, held, "the response is not stored")

	// A third of the lease on, the renewal fails too, and is retried sooner.
	clock.Advance(lease / 3)
	require.True(t, renew.fire())
	assert.ErrorIs(t, recv(t, store.renews, "a renewal"), errDown)
	renew = ft.next(t, "renew")
	assert.Less(t, renew.d, lease/3, "a failed renewal is retried with backoff")

	require.True(t, backoff.fire())
	assert.ErrorIs(t, recv(t, store.finishes, "Finish again"), errDown)
	backoff = ft.next(t, "backoff")
	noAnswerYet(t, held, "the store is still down")

	// The store is back before the fence: the renewal moves the fence on.
	clock.Advance(lease / 3) // 2/3 of the lease since the claim, before the fence
	store.down.Store(false)
	require.True(t, renew.fire())
	require.NoError(t, recv(t, store.renews, "a renewal"))
	moved := ft.next(t, "fence")
	assert.Equal(t, lease/3, moved.d, "a renewal does not move the time to give up: a lease after the handler returned")
	assert.False(t, fence.fire(), "the handler's fence was taken down")
	assert.False(t, finishing.fire(), "and so was the old end of the lease")
	noAnswerYet(t, held, "Finish has not been retried yet")

	require.True(t, backoff.fire())
	require.NoError(t, recv(t, store.finishes, "Finish at last"))
	first := recv(t, held.done, "the answer")
	assert.Equal(t, http.StatusCreated, first.Code)
	assert.JSONEq(t, `{"order":"ord_1"}`, first.Body.String())

	again := post(h, "/orders", "k", `{"amount":1}`)
	assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, first.Body.String(), again.Body.String())
	assert.EqualValues(t, 1, held.calls.Load(), "executed once")
	assert.Equal(t, []idempotency.Outcome{idempotency.Executed, idempotency.Replayed}, ev.outcomes())
	assert.NoError(t, ev.all[0].Err)
}

// TestOutageLongerThanTheLease: the store stays down past the fence. The
// owner gives the key up before another request could take it over: its
// client gets 503 with Retry-After, never the handler's unstored answer; the
// observer and the log say so. A retry once the lease has run out executes
// again: the case the docs name as what remains possible when the handler's
// side effects live outside the store.
func TestOutageLongerThanTheLease(t *testing.T) {
	clock := newFakeClock()
	store := newFlakyStore()
	ev := &events{}
	var logs bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&logs, nil))
	mw := newMiddleware(t, store, idempotency.WithClock(clock.Now), idempotency.WithObserver(ev.observe),
		idempotency.WithLogger(logger))
	ft := useFakeTimers(mw)
	held := newHeld()
	h := mw.Wrap(held)
	const lease = idempotency.DefaultLease

	start(t, h, held, "k")
	ft.next(t, "renew")
	ft.next(t, "fence") // the handler's
	store.down.Store(true)
	close(held.release)
	assert.ErrorIs(t, recv(t, store.finishes, "Finish"), errDown)
	end := ft.next(t, "fence")
	ft.next(t, "backoff")

	clock.Advance(lease - time.Second)
	store.down.Store(false)
	assert.Equal(t, http.StatusConflict, post(h, "/orders", "k", `{"amount":1}`).Code, "the lease still holds")
	store.down.Store(true)
	clock.Advance(time.Second)
	require.True(t, end.fire())
	w := recv(t, held.done, "the answer")
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Equal(t, "idempotency_response_not_stored", errorCode(t, w))
	assert.Equal(t, "1", w.Header().Get("Retry-After"))
	require.Len(t, ev.all, 2)
	assert.Equal(t, idempotency.NotStored, ev.all[1].Outcome)
	assert.ErrorIs(t, ev.all[1].Err, idempotency.ErrLeaseExpired)
	assert.ErrorIs(t, ev.all[1].Err, errDown, "the store's last error is kept")
	assert.Contains(t, logs.String(), `"level":"ERROR"`)
	assert.Contains(t, logs.String(), `"idempotency_key":"k"`)

	store.down.Store(false)
	again := post(h, "/orders", "k", `{"amount":1}`)
	assert.Equal(t, http.StatusCreated, again.Code, "after the lease, a retry executes again")
	assert.EqualValues(t, 2, held.calls.Load())
	assert.Equal(t, again.Body.String(), post(h, "/orders", "k", `{"amount":1}`).Body.String(),
		"the one 2xx clients see for the key is the stored one")
}

// TestResponseNotStoredWithinALease: the store renews the claim but cannot
// store the response (a large Finish that keeps timing out). Renewals keep
// the key from anyone else, but do not move the time to give up: a lease
// after the handler returned, the client gets its 503. (A first version let
// every renewal move it, and the request waited forever.)
func TestResponseNotStoredWithinALease(t *testing.T) {
	clock := newFakeClock()
	store := newFlakyStore()
	mw := newMiddleware(t, store, idempotency.WithClock(clock.Now), idempotency.WithLogger(slog.New(slog.DiscardHandler)))
	ft := useFakeTimers(mw)
	held := newHeld()
	h := mw.Wrap(held)
	const lease = idempotency.DefaultLease

	start(t, h, held, "k")
	renew := ft.next(t, "renew")
	ft.next(t, "fence") // the handler's
	store.finishDown.Store(true)
	close(held.release)
	assert.ErrorIs(t, recv(t, store.finishes, "Finish"), errDown)
	end := ft.next(t, "fence")
	assert.Equal(t, lease, end.d)

	clock.Advance(lease / 3)
	require.True(t, renew.fire())
	require.NoError(t, recv(t, store.renews, "a renewal"))
	end = ft.next(t, "fence")
	assert.Equal(t, lease*2/3, end.d, "the renewal did not move the end")
	noAnswerYet(t, held, "a lease has not passed")

	clock.Advance(end.d)
	require.True(t, end.fire())
	w := recv(t, held.done, "the answer")
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Equal(t, "idempotency_response_not_stored", errorCode(t, w))
	assert.Equal(t, "10", w.Header().Get("Retry-After"), "the renewed lease runs 10s more")
	assert.Equal(t, http.StatusConflict, post(h, "/orders", "k", `{"amount":1}`).Code, "nobody else takes the key meanwhile")
}

// TestFenceStopsARunningHandler: the store goes down while the handler
// runs, and stays down for three quarters of the lease. Before another
// request may take the key, the owner cancels its handler's context, with
// ErrLeaseExpired as the cause, and stores nothing of what the handler then
// answers (the cancellation's 500 would poison the key): its client gets
// 503, and the retry after the lease executes.
func TestFenceStopsARunningHandler(t *testing.T) {
	clock := newFakeClock()
	store := newFlakyStore()
	ev := &events{}
	mw := newMiddleware(t, store, idempotency.WithClock(clock.Now), idempotency.WithObserver(ev.observe),
		idempotency.WithLogger(slog.New(slog.DiscardHandler)))
	ft := useFakeTimers(mw)
	entered := make(chan context.Context, 1)
	var calls atomic.Int32
	h := mw.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			entered <- r.Context()
			<-r.Context().Done()
			http.Error(w, r.Context().Err().Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusCreated)
	}))
	const lease = idempotency.DefaultLease

	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- post(h, "/orders", "k", `{"amount":1}`) }()
	ctx := recv(t, entered, "the handler to run")
	renew, fence := ft.next(t, "renew"), ft.next(t, "fence")
	store.down.Store(true)
	clock.Advance(lease / 3)
	require.True(t, renew.fire())
	assert.ErrorIs(t, recv(t, store.renews, "a renewal"), errDown)
	noAnswerYet(t, &heldRequest{done: done}, "the handler still runs")

	clock.Advance(fence.d - lease/3)
	require.True(t, fence.fire())
	w := recv(t, done, "the answer")
	assert.ErrorIs(t, context.Cause(ctx), idempotency.ErrLeaseExpired)
	assert.Equal(t, http.StatusServiceUnavailable, w.Code, w.Body.String())
	assert.Equal(t, "idempotency_response_not_stored", errorCode(t, w))
	assert.Equal(t, "8", w.Header().Get("Retry-After"), "until the lease runs out (7.5s)")
	assert.Empty(t, store.finishes, "nothing of the cancelled handler's was stored")
	assert.ErrorIs(t, ev.all[0].Err, idempotency.ErrLeaseExpired)

	store.down.Store(false)
	clock.Advance(lease / 4)
	assert.Equal(t, http.StatusCreated, post(h, "/orders", "k", `{"amount":1}`).Code, "the retry after the lease executes")
}

// TestHungRenewalIsCutOffByItsDeadline: a renewal that hangs is abandoned at
// its deadline and retried, so the live owner keeps its claim past the
// lease it started with. (Before, store calls had no deadline, and a hung
// renewal lost the claim of a live owner.)
func TestHungRenewalIsCutOffByItsDeadline(t *testing.T) {
	clock := newFakeClock()
	store := newFlakyStore()
	mw := newMiddleware(t, store, idempotency.WithClock(clock.Now), idempotency.WithStoreTimeout(2*time.Second))
	ft := useFakeTimers(mw)
	held := newHeld()
	h := mw.Wrap(held)
	const lease = idempotency.DefaultLease

	start(t, h, held, "k")
	renew := ft.next(t, "renew")
	ft.next(t, "deadline") // the claim's

	store.hang.Store(true)
	clock.Advance(lease / 3)
	require.True(t, renew.fire())
	deadline := ft.next(t, "deadline")
	assert.Equal(t, 2*time.Second, deadline.d)
	clock.Advance(deadline.d)
	require.True(t, deadline.fire())
	assert.Error(t, recv(t, store.renews, "the hung renewal to end"))

	store.hang.Store(false)
	retry := ft.next(t, "renew")
	clock.Advance(retry.d)
	require.True(t, retry.fire())
	require.NoError(t, recv(t, store.renews, "the retried renewal"))

	clock.Advance(lease - lease/3) // the first lease is over
	assert.Equal(t, http.StatusConflict, post(h, "/orders", "k", `{"amount":1}`).Code, "the owner still holds the key")
	close(held.release)
	assert.Equal(t, http.StatusCreated, recv(t, held.done, "the answer").Code)
	assert.EqualValues(t, 1, held.calls.Load())
}

// TestOwnerThatLostItsClaimStopsActing: the owner stalls past its lease (a
// paused process), and another request takes the key over and executes.
// When the owner's renewal then learns that the claim is gone, it cancels
// its handler's context, with ErrLeaseLost as the cause, and its client
// gets 503: it never sees a 2xx other than the one stored.
func TestOwnerThatLostItsClaimStopsActing(t *testing.T) {
	clock := newFakeClock()
	store := newFlakyStore()
	mw := newMiddleware(t, store, idempotency.WithClock(clock.Now), idempotency.WithLogger(slog.New(slog.DiscardHandler)))
	ft := useFakeTimers(mw)
	held := newHeld()
	h := mw.Wrap(held)

	ctx := start(t, h, held, "k")
	renew := ft.next(t, "renew")
	clock.Advance(idempotency.DefaultLease)
	heir := post(h, "/orders", "k", `{"amount":1}`)
	require.Equal(t, http.StatusCreated, heir.Code, "the lease ran out: another request takes over")

	require.True(t, renew.fire())
	assert.ErrorIs(t, recv(t, store.renews, "the renewal"), idempotency.ErrLeaseLost)
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the handler's context was not cancelled")
	}
	assert.ErrorIs(t, context.Cause(ctx), idempotency.ErrLeaseLost)
	close(held.release)
	w := recv(t, held.done, "the owner's answer")
	assert.Equal(t, http.StatusServiceUnavailable, w.Code)
	assert.Equal(t, "idempotency_response_not_stored", errorCode(t, w))
	assert.Equal(t, heir.Body.String(), post(h, "/orders", "k", `{"amount":1}`).Body.String(), "the heir's answer is the stored one")
}

// TestClientHangUpDoesNotCancelTheHandler: the client disconnects while the
// handler runs. The handler's context does not end with it, so a handler
// that honours its context finishes the payment, and the retry gets it
// replayed. (Before, it saw "context canceled", answered 500, and that 500
// was stored and replayed for the whole TTL.)
func TestClientHangUpDoesNotCancelTheHandler(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	h := newMiddleware(t, idempotency.NewMemoryStore()).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		close(entered)
		select {
		case <-r.Context().Done():
			http.Error(w, r.Context().Err().Error(), http.StatusInternalServerError)
		case <-release:
			w.WriteHeader(http.StatusCreated)
			w.Write([]byte(`{"id":"ch_1"}`))
		}
	}))
	ctx, cancel := context.WithCancel(context.Background())
	r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/charges", strings.NewReader(`{}`))
	r.Header.Set("Idempotency-Key", "k")
	done := make(chan struct{})
	go func() { defer close(done); h.ServeHTTP(httptest.NewRecorder(), r) }()
	<-entered
	cancel() // the browser tab is closed
	close(release)
	<-done

	again := post(h, "/charges", "k", `{}`)
	assert.Equal(t, http.StatusCreated, again.Code, again.Body.String())
	assert.Equal(t, `{"id":"ch_1"}`, again.Body.String())
	assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
	assert.EqualValues(t, 1, calls.Load())
}

// TestHandlerTimeoutEndsTheHandler: the handler's own deadline is what stops
// a handler that would wait forever.
func TestHandlerTimeoutEndsTheHandler(t *testing.T) {
	h := newMiddleware(t, idempotency.NewMemoryStore(), idempotency.WithHandlerTimeout(time.Millisecond)).Wrap(
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			<-r.Context().Done()
			assert.ErrorIs(t, r.Context().Err(), context.DeadlineExceeded)
			w.WriteHeader(http.StatusGatewayTimeout)
		}))
	assert.Equal(t, http.StatusGatewayTimeout, post(h, "/orders", "k", `{}`).Code)
	assert.Equal(t, http.StatusGatewayTimeout, post(h, "/orders", "k", `{}`).Code, "the answer after execution is stored")
}

// TestFenceOnRealTimers: with real timers the fence is armed only when the
// first renewal runs, so that most requests never pay for its timer. A
// handler whose renewals fail must still be stopped by it.
func TestFenceOnRealTimers(t *testing.T) {
	store := newFlakyStore()
	entered := make(chan context.Context, 1)
	h := newMiddleware(t, store, idempotency.WithLease(300*time.Millisecond),
		idempotency.WithLogger(slog.New(slog.DiscardHandler))).Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		store.down.Store(true) // from the claim on, the store is gone
		entered <- r.Context()
		<-r.Context().Done()
		w.WriteHeader(http.StatusInternalServerError)
	}))
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() { done <- post(h, "/orders", "k", `{}`) }()
	ctx := recv(t, entered, "the handler to run")
	select {
	case <-ctx.Done():
	case <-time.After(10 * time.Second):
		t.Fatal("the fence never stopped the handler")
	}
	assert.ErrorIs(t, context.Cause(ctx), idempotency.ErrLeaseExpired)
	assert.Equal(t, http.StatusServiceUnavailable, recv(t, done, "the answer").Code)
	assert.NotEmpty(t, store.renews, "the renewals were tried, and failed")
}
