package backendtest

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/idempotency"
	"github.com/payonce/payonce/internal/testenv"
)

// ledger is a handler with side effects to count: every execution is
// recorded under its key, and answers with a number no other execution
// gets. Keys can be held in the handler until released.
type ledger struct {
	mu    sync.Mutex
	execs map[string]int
	n     int
	hold  map[string]chan struct{} // key → closed to let a held request go on
	enter chan string              // told the key of every held request that entered
}

func newLedger() *ledger {
	return &ledger{execs: map[string]int{}, hold: map[string]chan struct{}{}, enter: make(chan string, 16)}
}

func (l *ledger) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	io.Copy(io.Discard, r.Body)
	l.mu.Lock()
	l.execs[key]++
	l.n++
	n := l.n
	hold := l.hold[key]
	l.mu.Unlock()
	if hold != nil {
		l.enter <- key
		<-hold
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	fmt.Fprintf(w, `{"key":%q,"execution":%d}`, key, n)
}

// holdKey makes requests for key wait in the handler until the returned
// function is called.
func (l *ledger) holdKey(key string) (release func()) {
	ch := make(chan struct{})
	l.mu.Lock()
	l.hold[key] = ch
	l.mu.Unlock()
	var once sync.Once
	return func() { once.Do(func() { close(ch) }) }
}

func (l *ledger) count(key string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.execs[key]
}

func (l *ledger) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n
}

type response struct {
	status     int
	retryAfter string
	replayed   bool
	body       string
}

// send posts an order with key to the server at url.
func send(client *http.Client, url, key string) (response, error) {
	return sendContext(context.Background(), client, url, key)
}

// sendContext is send, given up when ctx ends.
func sendContext(ctx context.Context, client *http.Client, url, key string) (response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/orders", strings.NewReader(`{"order":"`+key+`"}`))
	if err != nil {
		return response{}, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	return response{
		status:     resp.StatusCode,
		retryAfter: resp.Header.Get("Retry-After"),
		replayed:   resp.Header.Get("Idempotent-Replayed") == "true",
		body:       string(body),
	}, err
}

// post is send for the test's own goroutine: it fails the test on error.
func post(t testing.TB, client *http.Client, url, key string) response {
	t.Helper()
	res, err := send(client, url, key)
	require.NoError(t, err)
	return res
}

// wait sleeps for d, or less if the test ends first.
func wait(ctx context.Context, d time.Duration) {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-ctx.Done():
	case <-timer.C:
	}
}

func newClient(t testing.TB, conns int) *http.Client {
	tr := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: time.Minute}
}

// Sizes of the multi-instance scenario.
const (
	Instances = 4
	Keys      = 1000
	Copies    = 4 // requests per key, one to each instance
	Workers   = 64
	// RaceEvery is how often a key is made to race for certain: every
	// RaceEvery-th key is held in its handler until each of its other
	// copies has been told 409.
	RaceEvery = 10
)

// race holds the execution of one key until every other copy of it has
// been told 409.
type race struct {
	mu         sync.Mutex
	conflicted map[int]bool // the copies told 409
	done       chan struct{}
}

func (rc *race) conflict(copy int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.conflicted) == Copies-1 {
		return
	}
	rc.conflicted[copy] = true
	if len(rc.conflicted) == Copies-1 {
		close(rc.done)
	}
}

func (rc *race) losers() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.conflicted)
}

// MultiInstance runs [Instances] instances of one handler, each its own HTTP
// server with its own middleware and its own store from newStore (so its own
// connection), sharing one database and one ledger. It sends [Copies]
// requests for each of [Keys] keys, the copies of a key side by side so
// that they race, spread round-robin over the instances, from [Workers]
// clients that retry a 409 as they are told to. Exactly one request per key
// may execute; every other one must get its response replayed.
//
// Whether the copies of a key meet while it executes is up to the
// scheduler, except for every [RaceEvery]-th key: its execution waits until
// each other copy has been told 409, so those races surely happen.
func MultiInstance(t *testing.T, newStore func(t *testing.T) idempotency.Store) {
	l := newLedger()
	prefix := testenv.Name("multi-")
	keyOf := func(k int) string { return fmt.Sprintf("%s-%04d", prefix, k) }
	races := map[string]*race{} // read-only once the servers run
	for k := 0; k < Keys; k += RaceEvery {
		races[keyOf(k)] = &race{conflicted: map[int]bool{}, done: make(chan struct{})}
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rc := races[r.Header.Get("Idempotency-Key")]; rc != nil {
			select {
			case <-rc.done:
			case <-time.After(10 * time.Second): // the copies never came: reported below
			}
		}
		l.ServeHTTP(w, r)
	})
	urls := make([]string, Instances)
	for i := range urls {
		mw, err := idempotency.New(newStore(t))
		require.NoError(t, err)
		srv := httptest.NewServer(mw.Wrap(handler))
		t.Cleanup(srv.Close)
		urls[i] = srv.URL
	}
	client := newClient(t, Workers)

	const requests = Keys * Copies
	results := make([]response, requests)
	var conflicts atomic.Int64
	next := make(chan int)
	var wg sync.WaitGroup
	for range Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				key := keyOf(i / Copies)
				url := urls[i%Instances]
				for attempt := 0; ; attempt++ {
					res, err := send(client, url, key)
					if !assert.NoError(t, err) || res.status != http.StatusConflict || attempt == 1000 {
						results[i] = res
						break
					}
					conflicts.Add(1)
					if rc := races[key]; rc != nil {
						rc.conflict(i % Copies)
					}
					wait(t.Context(), 2*time.Millisecond)
				}
			}
		}()
	}
	start := time.Now()
	for i := range requests {
		next <- i
	}
	close(next)
	wg.Wait()
	t.Logf("%d requests over %d keys and %d instances in %v; %d answers of 409 retried, %d keys held until they raced",
		requests, Keys, Instances, time.Since(start).Round(time.Millisecond), conflicts.Load(), len(races))

	for key, rc := range races {
		assert.Equal(t, Copies-1, rc.losers(), "key %s: every copy but the one executing is told 409", key)
	}
	assert.GreaterOrEqual(t, conflicts.Load(), int64(len(races)*(Copies-1)), "answers of 409")
	executed, replayed := 0, 0
	for k := range Keys {
		key := keyOf(k)
		require.Equal(t, 1, l.count(key), "key %s executed %d times", key, l.count(key))
		first := results[k*Copies].body
		for c := range Copies {
			res := results[k*Copies+c]
			require.Equal(t, http.StatusCreated, res.status, "key %s: %s", key, res.body)
			require.Equal(t, first, res.body, "key %s: every copy gets the one execution's answer", key)
			if res.replayed {
				replayed++
			} else {
				executed++
			}
		}
	}
	assert.Equal(t, Keys, l.total(), "executions")
	assert.Equal(t, Keys, executed, "answers not replayed")
	assert.Equal(t, Keys*(Copies-1), replayed, "replays")
}

type eventLog struct {
	mu  sync.Mutex
	all []idempotency.Event
}

func (e *eventLog) observe(_ *http.Request, ev idempotency.Event) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.all = append(e.all, ev)
}

func (e *eventLog) find(key string) (idempotency.Event, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for i := len(e.all) - 1; i >= 0; i-- {
		if e.all[i].Key == key {
			return e.all[i], true
		}
	}
	return idempotency.Event{}, false
}

// last returns the latest event for key. The observer runs after the
// response is written, so it may come a moment after the client has its
// answer: last waits for it.
func (e *eventLog) last(t testing.TB, key string) idempotency.Event {
	t.Helper()
	var ev idempotency.Event
	require.Eventually(t, func() bool {
		var ok bool
		ev, ok = e.find(key)
		return ok
	}, 10*time.Second, time.Millisecond, "no event for %s", key)
	return ev
}

// FailClosed cuts store off from its server mid-run, with p, which must
// carry every connection of store. While cut, every request gets 503 with
// Retry-After and nothing executes. A request whose handler was running
// when the cut came keeps its claim, and gets no answer while its response
// cannot be stored: the store comes back within the lease, and then it gets
// its 201, stored, which a retry replays. Once restored, requests execute
// and replay again, the first ones perhaps after a 503 or two while the
// store replaces its broken connections.
func FailClosed(t *testing.T, store idempotency.Store, p *Proxy) {
	// Long enough that the cut never lasts until the fence, three quarters
	// of the lease after the last renewal.
	const lease = 10 * time.Second
	l := newLedger()
	ev := &eventLog{}
	prefix := testenv.Name("cut-")
	before, mid := prefix+"-before", prefix+"-mid"
	midFinishFailed := make(chan error, 64)
	s := &spy{Store: store, finished: func(c idempotency.Claim, _ *idempotency.Response, err error) {
		if c.Key == mid && err != nil {
			select {
			case midFinishFailed <- err:
			default:
			}
		}
	}}
	var logged lockedBuffer
	mw, err := idempotency.New(s, idempotency.WithLease(lease), idempotency.WithObserver(ev.observe),
		idempotency.WithLogger(slog.New(slog.NewTextHandler(&logged, nil))))
	require.NoError(t, err)
	srv := httptest.NewServer(mw.Wrap(l))
	t.Cleanup(srv.Close)
	client := newClient(t, 4)

	first := post(t, client, srv.URL, before)
	require.Equal(t, http.StatusCreated, first.status, first.body)

	// A request is executing when the store goes away.
	release := l.holdKey(mid)
	defer release()
	midDone := make(chan response, 1)
	go func() {
		res, err := send(client, srv.URL, mid)
		assert.NoError(t, err)
		midDone <- res
	}()
	require.Equal(t, mid, <-l.enter)
	p.Cut()
	release()
	// Its handler has answered, and the middleware tries to store the
	// answer: two failed attempts show that it retries.
	for range 2 {
		select {
		case err := <-midFinishFailed:
			t.Logf("storing %s failed, as it must while cut: %v", mid, err)
		case <-time.After(lease / 2):
			t.Fatalf("%s: the middleware did not try to store its response twice", mid)
		}
	}
	notAnswered := func() {
		t.Helper()
		select {
		case res := <-midDone:
			t.Fatalf("%s was answered %d while its response could not be stored: %s", mid, res.status, res.body)
		default:
		}
	}
	notAnswered()

	for i := range 3 {
		res := post(t, client, srv.URL, fmt.Sprintf("%s-during-%d", prefix, i))
		assert.Equal(t, http.StatusServiceUnavailable, res.status, res.body)
		assert.NotEmpty(t, res.retryAfter, "a 503 says when to retry")
		assert.Contains(t, res.body, "idempotency_store_unavailable")
	}
	res := post(t, client, srv.URL, before)
	assert.Equal(t, http.StatusServiceUnavailable, res.status, "no replay without the store either")
	assert.Equal(t, 2, l.total(), "nothing executed while the store was cut off")
	notAnswered()

	p.Restore()
	select {
	case res = <-midDone:
	case <-time.After(lease):
		t.Fatalf("%s: no answer once the store was back", mid)
	}
	assert.Equal(t, http.StatusCreated, res.status, "the store came back within the lease: %s", res.body)
	assert.False(t, res.replayed)
	midBody := res.body
	if e := ev.last(t, mid); assert.Equal(t, idempotency.Executed.String(), e.Outcome.String()) {
		assert.NoError(t, e.Err)
	}

	// The client retries a 503, as Retry-After tells it to.
	retry := func(key string) response {
		for range 50 {
			res := post(t, client, srv.URL, key)
			if res.status != http.StatusServiceUnavailable {
				return res
			}
			wait(t.Context(), 100*time.Millisecond)
		}
		t.Fatalf("%s: the store never came back", key)
		return response{}
	}
	for i := range 3 {
		key := fmt.Sprintf("%s-during-%d", prefix, i)
		res := retry(key)
		assert.Equal(t, http.StatusCreated, res.status, res.body)
		assert.False(t, res.replayed)
		assert.Equal(t, 1, l.count(key))
	}
	res = retry(before)
	assert.True(t, res.replayed, "the record from before the cut is intact")
	assert.Equal(t, first.body, res.body)
	res = retry(mid)
	assert.True(t, res.replayed, "the response stored after the cut is replayed: %s", res.body)
	assert.Equal(t, midBody, res.body)
	assert.Equal(t, 1, l.count(mid), "the request running at the cut executed once")
	assert.Equal(t, 5, l.total())
	assert.NotContains(t, logged.String(), "level=ERROR", "every response was stored")
}

// fakeClock is a clock that moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
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

// Takeover runs two instances on one database: the owner, whose store
// reaches the server through p, and the heir, with its own connection. The
// owner claims a key and is cut off while its handler runs, so its
// heartbeat can no longer renew the lease, as if its process had died. On
// a controlled clock the key stays in flight until the lease runs out; then
// the heir's retry claims it and executes. When the owner comes back, its
// late response is refused: the owner's client gets 503
// idempotency_response_not_stored, never the owner's 201, and the heir's
// response is the one replayed.
//
// The clock dates claims, but the middleware's timers are real: the
// heartbeat (every 20s) and the fence (45s) never fire in this test. On
// real time the fence would have made the owner give up before the heir
// could take over; here the owner's handler returns only once the heir has
// taken over and the owner is back, so that its one Finish meets the
// store's token check, which refuses it at once with ErrLeaseLost. Were the
// owner still cut off, it would retry Finish until its fence, 45s away.
func Takeover(t *testing.T, owner idempotency.Store, p *Proxy, heir idempotency.Store) {
	const lease = time.Minute
	clock := &fakeClock{now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)}
	l := newLedger()
	ownerEvents := &eventLog{}
	newServer := func(s idempotency.Store, opts ...idempotency.Option) string {
		mw, err := idempotency.New(s, append(opts, idempotency.WithClock(clock.Now), idempotency.WithLease(lease))...)
		require.NoError(t, err)
		srv := httptest.NewServer(mw.Wrap(l))
		t.Cleanup(srv.Close)
		return srv.URL
	}
	var ownerLog lockedBuffer
	ownerURL := newServer(owner, idempotency.WithObserver(ownerEvents.observe),
		idempotency.WithLogger(slog.New(slog.NewTextHandler(&ownerLog, nil))))
	heirURL := newServer(heir)
	client := newClient(t, 4)
	key := testenv.Name("takeover-")

	release := l.holdKey(key)
	defer release()
	ownerDone := make(chan response, 1)
	go func() {
		res, err := send(client, ownerURL, key)
		assert.NoError(t, err)
		ownerDone <- res
	}()
	require.Equal(t, key, <-l.enter)
	l.mu.Lock()
	delete(l.hold, key) // the heir's execution does not wait
	l.mu.Unlock()
	p.Cut() // the owner is gone

	clock.Advance(lease - time.Second)
	res := post(t, client, heirURL, key)
	assert.Equal(t, http.StatusConflict, res.status, "the lease still holds: %s", res.body)

	clock.Advance(time.Second)
	res = post(t, client, heirURL, key)
	require.Equal(t, http.StatusCreated, res.status, "the lease ran out: the heir takes over: %s", res.body)
	assert.False(t, res.replayed)
	heirBody := res.body
	assert.Equal(t, 2, l.count(key), "a takeover executes again: why side effects must be transactional")

	p.Restore()
	release()
	res = <-ownerDone
	assert.Equal(t, http.StatusServiceUnavailable, res.status, "the owner's response was not stored, so it is not sent: %s", res.body)
	assert.Contains(t, res.body, "idempotency_response_not_stored")
	assert.NotEmpty(t, res.retryAfter)
	ev := ownerEvents.last(t, key)
	assert.Equal(t, idempotency.NotStored.String(), ev.Outcome.String())
	assert.ErrorIs(t, ev.Err, idempotency.ErrLeaseLost, "the owner's late response is refused")
	assert.Equal(t, 1, strings.Count(ownerLog.String(), "level=ERROR"), "the middleware logs it:\n%s", ownerLog.String())

	res = post(t, client, heirURL, key)
	assert.True(t, res.replayed)
	assert.Equal(t, heirBody, res.body, "the heir's response is the one kept")
	res = post(t, client, ownerURL, key)
	assert.True(t, res.replayed)
	assert.Equal(t, heirBody, res.body)
}

// FinishAfterLostConnection checks what Finish does once the handler has
// run and the connection it is about to use, or is using, dies. store must
// reach its server through p, on a single pooled connection that it does
// not ping before use (as a connection used less than a second ago is not),
// so that the failure lands on Finish itself.
//   - Stale connection: every pooled connection was dropped while the
//     request executed. Finish must store the response on a fresh one.
//   - Lost reply: the server ran Finish, but its answer was lost with the
//     connection. Finish must report success, not a lease lost to nobody,
//     and the response must be stored. A second Finish of the same claim,
//     as the middleware sends when it cannot tell whether the first
//     landed, succeeds too and leaves the stored response as it was.
func FinishAfterLostConnection(t *testing.T, store idempotency.Store, p *Proxy) {
	ctx := context.Background()
	claim := func(key string) idempotency.Claim {
		return idempotency.Claim{Scope: "acct", Key: key, Fingerprint: "fp", Token: testenv.Name("tok-"),
			Now: time.Now(), Lease: time.Minute, TTL: time.Hour}
	}
	resp := &idempotency.Response{StatusCode: http.StatusCreated,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(`{"id":"ch_1"}`)}
	mustClaim := func(c idempotency.Claim, want idempotency.State) idempotency.Result {
		t.Helper()
		res, err := store.Claim(ctx, c)
		require.NoError(t, err)
		require.Equal(t, want.String(), res.State.String(), c.Key)
		return res
	}
	// warm claims and finishes a key, so that the pooled connection has
	// every statement or script ready and the next answer on it is the
	// Finish under test.
	warm := func() {
		t.Helper()
		c := claim(testenv.Name("warm-"))
		mustClaim(c, idempotency.Claimed)
		require.NoError(t, store.Finish(ctx, c, resp))
	}
	replayed := func(c idempotency.Claim) {
		t.Helper()
		c.Token = testenv.Name("tok-")
		res := mustClaim(c, idempotency.Finished)
		assert.Equal(t, resp.StatusCode, res.Response.StatusCode)
		assert.Equal(t, resp.Body, res.Response.Body)
	}

	t.Run("StaleConnection", func(t *testing.T) {
		warm()
		c := claim(testenv.Name("stale-"))
		mustClaim(c, idempotency.Claimed)
		p.Cut() // while the handler runs, the pooled connection is dropped
		p.Restore()
		require.NoError(t, store.Finish(ctx, c, resp), "Finish gets through on a fresh connection")
		replayed(c)
	})
	t.Run("LostReply", func(t *testing.T) {
		warm()
		c := claim(testenv.Name("lost-"))
		mustClaim(c, idempotency.Claimed)
		p.LoseNextReply()
		require.NoError(t, store.Finish(ctx, c, resp),
			"the first attempt landed: its retry must say so, not report a lease lost")
		replayed(c)
		other := &idempotency.Response{StatusCode: http.StatusAccepted, Body: []byte(`{"id":"ch_2"}`)}
		assert.NoError(t, store.Finish(ctx, c, other), "a second Finish of the same claim is no error")
		replayed(c) // the first response, not other
	})
}

// Clients is how many goroutines the benchmarks run at once.
const Clients = 16

// A Backend is a store to benchmark, under a name.
type Backend struct {
	Name  string
	Store idempotency.Store
}

// Benchmark measures each backend, after the in-memory store as the
// baseline, in one run: "claim" claims new keys, and "request" sends
// requests with new keys through the middleware (claim, execute, finish).
// [Clients] goroutines run at once. Besides ns/op (the store's throughput,
// inverted) it reports claims/s or req/s, and the mean latency a client
// sees, whose difference from the memory store's is the latency the backend
// adds to each request.
func Benchmark(b *testing.B, backends ...Backend) {
	// Unbounded, so that a long run measures new keys rather than refusals.
	all := append([]Backend{{"memory", idempotency.NewMemoryStore(idempotency.WithMemoryMaxBytes(0))}}, backends...)
	for _, be := range all {
		b.Run(be.Name+"/claim", func(b *testing.B) {
			prefix := testenv.Name("bench-") // new keys in every round
			now := time.Now()
			run(b, "claims/s", func(i int64) {
				c := idempotency.Claim{
					Scope: "acct_bench", Key: prefix + "-claim-" + strconv.FormatInt(i, 10),
					Fingerprint: "fp", Token: "t" + strconv.FormatInt(i, 10),
					Now: now, Lease: time.Minute, TTL: time.Hour,
				}
				res, err := be.Store.Claim(context.Background(), c)
				if err != nil || res.State != idempotency.Claimed {
					b.Errorf("claim: %v %v", res.State, err)
				}
			})
		})
		b.Run(be.Name+"/request", func(b *testing.B) {
			mw, err := idempotency.New(be.Store)
			require.NoError(b, err)
			h := mw.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusCreated)
				io.WriteString(w, chargeJSON)
			}))
			prefix := testenv.Name("bench-")
			run(b, "req/s", func(i int64) {
				r := httptest.NewRequest(http.MethodPost, "/v1/charges", strings.NewReader(`{"amount":2000,"currency":"usd"}`))
				r.Header.Set("Content-Type", "application/json")
				r.Header.Set("Idempotency-Key", prefix+"-req-"+strconv.FormatInt(i, 10))
				w := &discard{h: http.Header{}}
				h.ServeHTTP(w, r)
				if w.code != http.StatusCreated {
					b.Errorf("status %d", w.code)
				}
			})
		})
	}
}

const chargeJSON = `{"id":"ch_3NfK2x8vYb2QmT","object":"charge","amount":2000,"currency":"usd","status":"succeeded"}`

// run calls op b.N times from [Clients] goroutines, and reports the rate
// under unit and the mean latency of one call.
func run(b *testing.B, unit string, op func(i int64)) {
	b.ReportAllocs()
	var next atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
	start := time.Now()
	for range Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1)
				if i > int64(b.N) {
					return
				}
				op(i)
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	b.StopTimer()
	b.ReportMetric(float64(b.N)/elapsed.Seconds(), unit)
	b.ReportMetric(elapsed.Seconds()*1e6*Clients/float64(b.N), "us/call")
}

// discard is a ResponseWriter that keeps only the status.
type discard struct {
	h    http.Header
	code int
}

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(code int)        { d.code = code }
