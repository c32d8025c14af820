package backendtest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/idempotency"
	"github.com/payonce/payonce/internal/testenv"
)

// Sizes of the outage scenarios.
const (
	OutageKeys      = 50 // keys in flight when the store goes away
	OutageCopies    = 4  // requests sent at once for each key
	OutageInstances = 2  // servers, each with its own store, the copies of a key spread over them

	// MaxRetryWait caps the wait of the outage scenarios' clients before
	// they send a 409 or a 503 again, whatever Retry-After says, to keep
	// the scenarios short; each waits a random time in its upper half.
	MaxRetryWait = 200 * time.Millisecond
)

// rig is what the outage scenarios share: [OutageInstances] servers, each
// over a store of its own that reaches the server through the proxy, in
// front of one handler that counts its executions, and clients that send
// the copies of each key until they get a final answer. The stores are
// spied on, so that a scenario knows when the store granted a lease and
// when storing a response failed, and can tell afterwards every call the
// middleware made.
type rig struct {
	t     *testing.T
	lease time.Duration
	urls  []string
	hold  func(r *http.Request, key string) // called in the first execution of each key
	log   lockedBuffer                      // the middleware's log, as text
	// notStored is told the key of every NotStored event.
	notStored chan string
	// finishFailed is told the key of every claim whose Finish failed for
	// the first time.
	finishFailed chan string

	mu        sync.Mutex
	execs     map[string][]int // key → the executions it got, numbered from 1 over all keys
	n         int
	events    []idempotency.Event
	confirmed map[string]time.Time // key → the Now of the latest claim or renewal the store granted
	failed    map[string]bool      // token → Finish failed once
	calls     []storeCall
	restoring time.Time                // when the scenario began to restore the store; zero before
	recovered map[string]chan struct{} // key → closed once a renewal of it succeeds after restoring
}

// storeCall is one call the middleware made to a store, as the spy saw it.
type storeCall struct {
	op    string // "claim", "renew" or "finish"
	key   string
	start time.Time // the claim's Now, which the middleware sets just before each call
	end   time.Time
	err   error
}

func (c storeCall) took() time.Duration { return c.end.Sub(c.start) }

// newRig starts the servers with the middleware's lease and options, and
// room for keys keys in its channels.
func newRig(t *testing.T, newStore func(t *testing.T) idempotency.Store, lease time.Duration, keys int,
	hold func(r *http.Request, key string), opts ...idempotency.Option) *rig {
	g := &rig{t: t, lease: lease, hold: hold,
		notStored: make(chan string, keys*OutageCopies), finishFailed: make(chan string, keys*OutageCopies),
		execs: map[string][]int{}, confirmed: map[string]time.Time{}, failed: map[string]bool{},
		recovered: map[string]chan struct{}{}}
	logger := slog.New(slog.NewTextHandler(&g.log, nil))
	for range OutageInstances {
		s := &spy{Store: newStore(t), claimed: g.claimed, renewed: g.renewed, finished: g.finished}
		mw, err := idempotency.New(s, append([]idempotency.Option{idempotency.WithLease(lease),
			idempotency.WithObserver(g.observe), idempotency.WithLogger(logger)}, opts...)...)
		require.NoError(t, err)
		srv := httptest.NewServer(mw.Wrap(g))
		t.Cleanup(srv.Close)
		g.urls = append(g.urls, srv.URL)
	}
	return g
}

func (g *rig) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	key := r.Header.Get("Idempotency-Key")
	io.Copy(io.Discard, r.Body)
	g.mu.Lock()
	g.n++
	n := g.n
	g.execs[key] = append(g.execs[key], n)
	first := len(g.execs[key]) == 1
	g.mu.Unlock()
	if first && g.hold != nil {
		g.hold(r, key)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	io.WriteString(w, executionBody(key, n))
}

// executionBody is what execution n answers for key.
func executionBody(key string, n int) string {
	return fmt.Sprintf(`{"key":%q,"execution":%d}`, key, n)
}

func (g *rig) claimed(c idempotency.Claim, res idempotency.Result, err error) {
	g.record("claim", c, err)
	if err == nil && res.State == idempotency.Claimed {
		g.confirm(c)
	}
}

func (g *rig) renewed(c idempotency.Claim, err error) {
	end := g.record("renew", c, err)
	if err != nil {
		return
	}
	g.confirm(c)
	g.mu.Lock()
	defer g.mu.Unlock()
	if !g.restoring.IsZero() && end.After(g.restoring) {
		ch := g.recoveredLocked(c.Key)
		select {
		case <-ch:
		default:
			close(ch)
		}
	}
}

// record notes a call that has just returned, and returns when it did.
func (g *rig) record(op string, c idempotency.Claim, err error) time.Time {
	end := time.Now()
	g.mu.Lock()
	defer g.mu.Unlock()
	g.calls = append(g.calls, storeCall{op: op, key: c.Key, start: c.Now, end: end, err: err})
	return end
}

func (g *rig) confirm(c idempotency.Claim) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c.Now.After(g.confirmed[c.Key]) {
		g.confirmed[c.Key] = c.Now
	}
}

func (g *rig) finished(c idempotency.Claim, _ *idempotency.Response, err error) {
	g.record("finish", c, err)
	if err == nil {
		return
	}
	g.mu.Lock()
	first := !g.failed[c.Token]
	g.failed[c.Token] = true
	g.mu.Unlock()
	if first {
		tell(g.finishFailed, c.Key)
	}
}

// restore notes that the store is about to come back, and returns when.
func (g *rig) restore() time.Time {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.restoring = time.Now()
	return g.restoring
}

// renewedAfterRestore returns a channel that is closed once a renewal of
// key has succeeded, and returned after [rig.restore].
func (g *rig) renewedAfterRestore(key string) <-chan struct{} {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.recoveredLocked(key)
}

func (g *rig) recoveredLocked(key string) chan struct{} {
	ch, ok := g.recovered[key]
	if !ok {
		ch = make(chan struct{})
		g.recovered[key] = ch
	}
	return ch
}

// logCalls logs the store calls made for key, timed from the cut at cut.
func (g *rig) logCalls(t *testing.T, key string, cut time.Time) {
	t.Helper()
	var b strings.Builder
	for _, c := range g.callsOf(key) {
		fmt.Fprintf(&b, "\n\t%-6s at %8v, for %8v: %v", c.op, c.start.Sub(cut).Round(time.Millisecond),
			c.took().Round(time.Millisecond), c.err)
	}
	t.Logf("the store calls for %s, from the cut:%s", key, b.String())
}

// callsOf returns the store calls made for key, in the order they
// returned.
func (g *rig) callsOf(key string) []storeCall {
	g.mu.Lock()
	defer g.mu.Unlock()
	var calls []storeCall
	for _, c := range g.calls {
		if c.key == key {
			calls = append(calls, c)
		}
	}
	return calls
}

// tell sends key on ch unless ch is full: the middleware must never wait
// for the test.
func tell(ch chan<- string, key string) {
	select {
	case ch <- key:
	default:
	}
}

func (g *rig) observe(_ *http.Request, ev idempotency.Event) {
	g.mu.Lock()
	g.events = append(g.events, ev)
	g.mu.Unlock()
	if ev.Outcome == idempotency.NotStored {
		tell(g.notStored, ev.Key)
	}
}

// executions returns the executions of key.
func (g *rig) executions(key string) []int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]int(nil), g.execs[key]...)
}

// outcomes returns the events for key, by outcome.
func (g *rig) outcomes(key string) map[idempotency.Outcome][]idempotency.Event {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := map[idempotency.Outcome][]idempotency.Event{}
	for _, ev := range g.events {
		if ev.Key == key {
			m[ev.Outcome] = append(m[ev.Outcome], ev)
		}
	}
	return m
}

// leases returns the earliest and the latest end of the leases the store
// last granted for keys, by its own record: the claim's Now plus the lease.
func (g *rig) leases(keys []string) (earliest, latest time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, key := range keys {
		end := g.confirmed[key].Add(g.lease)
		if i == 0 || end.Before(earliest) {
			earliest = end
		}
		if end.After(latest) {
			latest = end
		}
	}
	return earliest, latest
}

// errorRecords returns how many records the middleware logged at level
// Error.
func (g *rig) errorRecords() int { return strings.Count(g.log.String(), "level=ERROR") }

// collect reads n keys from ch, or fails the test after d, saying what it
// waited for.
func collect(t *testing.T, ch <-chan string, n int, d time.Duration, what string) map[string]bool {
	t.Helper()
	seen := map[string]bool{}
	timeout := time.NewTimer(d)
	defer timeout.Stop()
	for len(seen) < n {
		select {
		case key := <-ch:
			seen[key] = true
		case <-timeout.C:
			t.Fatalf("%s: %d of %d after %v", what, len(seen), n, d)
		}
	}
	return seen
}

// outageKeys returns n new keys.
func outageKeys(prefix string, n int) []string {
	prefix = testenv.Name(prefix)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s-%03d", prefix, i)
	}
	return keys
}

// clients are the clients of one run: [OutageCopies] per key, copy c of a
// key sending to instance c modulo [OutageInstances].
type clients struct {
	keys    []string
	answers [][][]response // key, copy → every answer it got, in order
	errs    []error        // key*OutageCopies+copy → why it stopped early
	done    chan struct{}
}

// start starts the clients for keys; they stop early when ctx ends.
func (g *rig) start(ctx context.Context, keys []string) *clients {
	cl := &clients{keys: keys, answers: make([][][]response, len(keys)),
		errs: make([]error, len(keys)*OutageCopies), done: make(chan struct{})}
	client := newClient(g.t, len(keys)*OutageCopies)
	var wg sync.WaitGroup
	for k, key := range keys {
		cl.answers[k] = make([][]response, OutageCopies)
		for c := range OutageCopies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				cl.answers[k][c], cl.errs[k*OutageCopies+c] = persist(ctx, client, g.urls[c%len(g.urls)], key)
			}()
		}
	}
	go func() {
		wg.Wait()
		close(cl.done)
	}()
	return cl
}

// wait waits for the clients to end, at most d, and fails the test if any
// of them stopped before a final answer.
func (cl *clients) wait(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case <-cl.done:
	case <-time.After(d):
		t.Fatalf("the clients had no final answer after %v", d)
	}
	require.NoError(t, errors.Join(cl.errs...))
}

// persist sends key to url until the answer is neither 409 nor 503, waiting
// before each retry as Retry-After says, but at most [MaxRetryWait]. It
// returns every answer, in order.
func persist(ctx context.Context, client *http.Client, url, key string) ([]response, error) {
	var all []response
	for {
		res, err := sendContext(ctx, client, url, key)
		if err != nil {
			return all, fmt.Errorf("%s after %d answers: %w", key, len(all), err)
		}
		all = append(all, res)
		if res.status != http.StatusConflict && res.status != http.StatusServiceUnavailable {
			return all, nil
		}
		d := MaxRetryWait/2 + rand.N(MaxRetryWait/2)
		if s, err := strconv.Atoi(res.retryAfter); err == nil && time.Duration(s)*time.Second < d {
			d = time.Duration(s) * time.Second
		}
		wait(ctx, d)
	}
}

// tally counts the answers of a run.
type tally struct {
	requests    int // sent, retries included
	executed    int // 2xx answers not replayed
	replayed    int // 2xx answers replayed
	conflicts   int // 409
	unavailable int // 503 idempotency_store_unavailable: nothing executed
	notStored   int // 503 idempotency_response_not_stored: executed, not stored
	other       int

	differing int // keys whose 2xx answers are not all the same body
}

func (tl *tally) add(res response) {
	tl.requests++
	switch {
	case res.status/100 == 2 && res.replayed:
		tl.replayed++
	case res.status/100 == 2:
		tl.executed++
	case res.status == http.StatusConflict:
		tl.conflicts++
	case res.status == http.StatusServiceUnavailable && strings.Contains(res.body, "idempotency_store_unavailable"):
		tl.unavailable++
	case res.status == http.StatusServiceUnavailable && strings.Contains(res.body, "idempotency_response_not_stored"):
		tl.notStored++
	default:
		tl.other++
	}
}

func (tl tally) String() string {
	return fmt.Sprintf("%d requests sent (retries included): %d executed and sent, %d replayed, %d 409, "+
		"%d 503 store unavailable, %d 503 response not stored, %d other; %d keys whose 2xx bodies differ",
		tl.requests, tl.executed, tl.replayed, tl.conflicts, tl.unavailable, tl.notStored, tl.other, tl.differing)
}

// check asserts what must hold of every key's answers, whatever the
// outage: each copy ends with a 2xx; every 2xx of a key has the same body,
// which is the answer of the key's last execution, and only one of them is
// not a replay. It returns the tally of every answer of every client in
// cls.
func (g *rig) check(t *testing.T, cls ...*clients) tally {
	t.Helper()
	var tl tally
	for _, cl := range cls {
		g.checkInto(t, &tl, cl)
	}
	return tl
}

func (g *rig) checkInto(t *testing.T, tl *tally, cl *clients) {
	t.Helper()
	for k, key := range cl.keys {
		execs := g.executions(key)
		var bodies []string
		sent := 0
		for c, answers := range cl.answers[k] {
			for _, res := range answers {
				tl.add(res)
				if res.status/100 == 2 {
					bodies = append(bodies, res.body)
					if !res.replayed {
						sent++
					}
				}
			}
			if assert.NotEmpty(t, answers, "key %s, copy %d", key, c) {
				final := answers[len(answers)-1]
				assert.Equal(t, http.StatusCreated, final.status, "key %s, copy %d: %s", key, c, final.body)
			}
		}
		if len(execs) == 0 {
			t.Errorf("key %s never executed", key)
			continue
		}
		for _, b := range bodies {
			if b != bodies[0] {
				tl.differing++
				break
			}
		}
		want := executionBody(key, execs[len(execs)-1])
		for _, b := range bodies {
			if !assert.Equal(t, want, b, "key %s: every 2xx is the stored answer of its last execution %v", key, execs) {
				break
			}
		}
		assert.Equal(t, 1, sent, "key %s: one 2xx is the execution's own, every other one a replay", key)
	}
}

// StoreOutage drives the middleware over a real store while the proxy p,
// which carries every connection of the stores that newStore makes, fails
// for a few seconds, in two ways, one subtest each: "reset" resets every
// connection ([Proxy.Cut]), so that every store call fails at once;
// "blackhole" forwards nothing ([Proxy.Blackhole]), so that every store
// call ends only by its deadline ([idempotency.WithStoreTimeout]), and
// resets every connection when it ends. The outage is longer than a third
// of the lease, so every owner's renewals fail during it and are retried,
// but it ends well before any owner's fence.
//
// It sends [OutageCopies] requests at once for each of [OutageKeys] keys,
// over [OutageInstances] instances, from clients that retry every 409 and
// 503 with the same key. The first execution of every key is held until
// all of them run; then the store fails. The handlers of the first half of
// the keys answer at once, so that their responses wait to be stored while
// the store is down: Finish and the renewals both fail, and are retried.
// The handlers of the other half keep running, as a slow call to a payment
// network would, until a renewal of their claim gets through after the
// outage: the heartbeat recovers before the fence, and their context is
// never cancelled. Either way the middleware must keep every answer until
// it is stored: every key executes exactly once, every request ends with a
// 2xx, and all the 2xx of a key carry the one execution's body.
func StoreOutage(t *testing.T, newStore func(t *testing.T) idempotency.Store, p *Proxy) {
	for _, mode := range []struct {
		name string
		fail func(*Proxy)
	}{
		{"reset", (*Proxy).Cut},
		{"blackhole", (*Proxy).Blackhole},
	} {
		t.Run(mode.name, func(t *testing.T) { storeOutage(t, newStore, p, mode.name, mode.fail) })
	}
}

func storeOutage(t *testing.T, newStore func(t *testing.T) idempotency.Store, p *Proxy, mode string, fail func(*Proxy)) {
	const (
		// An owner renews every third of the lease, 3s after its claim or
		// last renewal, and the store is down for 4s: so every owner sends
		// a renewal during the outage, and it fails, at once when reset,
		// by its deadline (750ms) in a black hole, with time to spare for
		// a late timer or a slow call. The fence of a running handler
		// comes 6.75s after its last renewal, and the next attempt to
		// renew after the outage comes at most a tenth of the lease
		// (900ms) later and ends within the store timeout: 5.65s after the
		// cut, before the fence of any claim made less than 1.1s before
		// the cut. An answered handler's fence comes a lease after it
		// answered, at the cut.
		lease        = 9 * time.Second
		storeTimeout = lease / 12
		outage       = 4 * time.Second
	)
	keys := outageKeys("outage-", OutageKeys)
	answered, running := keys[:len(keys)/2], keys[len(keys)/2:]
	isRunning := map[string]bool{}
	for _, key := range running {
		isRunning[key] = true
	}
	var causes sync.Map // running key → the cause of its handler's context, if it ended
	gate := make(chan struct{})
	open := sync.OnceFunc(func() { close(gate) })
	entered := make(chan string, len(keys))
	var g *rig
	g = newRig(t, newStore, lease, len(keys), func(r *http.Request, key string) {
		entered <- key
		if isRunning[key] {
			select {
			case <-g.renewedAfterRestore(key):
			case <-r.Context().Done():
				causes.Store(key, context.Cause(r.Context()))
			case <-time.After(2 * lease): // reported below
			}
			return
		}
		select {
		case <-gate:
		case <-r.Context().Done():
		}
	}, idempotency.WithStoreTimeout(storeTimeout))
	ctx, cancel := context.WithCancel(t.Context())
	start := time.Now()
	// The running keys are sent once the others run, so that their claims
	// come as close to the cut as they can: their fence is the nearest.
	clAnswered := g.start(ctx, answered)
	collect(t, entered, len(answered), 10*time.Second, "first executions of the answered keys in the handler")
	answeredIn := time.Since(start)
	clRunning := g.start(ctx, running)
	defer func() {
		open()
		p.Restore()
		cancel()
		<-clAnswered.done
		<-clRunning.done
	}()
	collect(t, entered, len(running), 10*time.Second, "first executions of the running keys in the handler")

	fail(p)
	cut := time.Now()
	runningIn := cut.Sub(start) - answeredIn
	open()
	// The answered handlers return while the store is down; each answer's
	// first attempt to be stored fails.
	collect(t, g.finishFailed, len(answered), outage, "responses that failed to be stored during the outage")
	wait(ctx, time.Until(cut.Add(outage)))
	restoring := g.restore()
	p.Restore()
	restored := time.Now()
	// The premise: the next attempt to renew, at most a tenth of the lease
	// after the restore, ends within the store timeout, before any fence.
	earliest, _ := g.leases(running)
	fence := earliest.Add(-lease / 4)
	if f := cut.Add(lease); f.Before(fence) {
		fence = f
	}
	require.True(t, restored.Add(lease/10+storeTimeout).Before(fence),
		"too slow a run for the scenario: restored at %v after the cut, the first fence at %v",
		restored.Sub(cut), fence.Sub(cut))

	clAnswered.wait(t, 2*lease)
	clRunning.wait(t, 2*lease)
	elapsed := time.Since(start)
	tl := g.check(t, clAnswered, clRunning)

	var (
		executions, twice                        int
		renewalsFailed, renewalsOK               int // during the outage; after it
		answeredRenewedFirst                     int // answered keys with a renewal through before their Finish
		finishesFailed                           int // during the outage
		failedCalls, endedBefore, endedByRestore int // store calls failed during the outage: ended before the restore, or by it
		longestFailure                           time.Duration
		failedAfter                              int           // store calls sent after the restore that failed
		runningRecovered                         int           // running keys renewed after the outage
		lastRecovered                            time.Duration // after the cut, the last running key's first renewal after the outage
	)
	during := func(c storeCall) bool { return !c.start.Before(cut) && c.start.Before(restoring) }
	dumped := false // the calls of a key checked once the test had failed
	for _, key := range keys {
		execs := g.executions(key)
		executions += len(execs)
		if len(execs) > 1 {
			twice++
		}
		assert.Len(t, execs, 1, "key %s executed more than once: %v", key, execs)
		o := g.outcomes(key)
		assert.Empty(t, o[idempotency.NotStored], "key %s: a response not stored", key)
		assert.Len(t, o[idempotency.Executed], 1, "key %s", key)
		if cause, ok := causes.Load(key); ok {
			t.Errorf("key %s: the running handler's context ended: %v", key, cause)
		}

		var (
			failedDuring, okAfter int
			finishFailed, stored  time.Time // the first failed Finish's start; the successful one's end
			failedWhileFinishing  bool      // a renewal failed while the response waited to be stored
		)
		calls := g.callsOf(key)
		for _, c := range calls {
			switch {
			case c.op == "finish" && c.err == nil:
				stored = c.end
			case c.op == "finish" && finishFailed.IsZero():
				finishFailed = c.start
			}
		}
		for _, c := range calls {
			if c.err != nil && !c.start.Before(restoring) {
				failedAfter++
			}
			if c.err != nil && during(c) {
				failedCalls++
				longestFailure = max(longestFailure, c.took())
				// Late by a quarter of the lease: the store ignores its deadline.
				assert.Less(t, c.took(), storeTimeout+lease/4,
					"key %s: a %s outlived its deadline: %v", key, c.op, c.err)
				if c.end.Before(restoring) {
					endedBefore++
					if mode == "blackhole" {
						assert.GreaterOrEqual(t, c.took(), storeTimeout,
							"key %s: a %s failed before its deadline, in a black hole: %v", key, c.op, c.err)
					}
				} else {
					endedByRestore++
				}
			}
			switch {
			case c.op == "finish" && c.err != nil && during(c):
				finishesFailed++
			case c.op == "renew" && c.err != nil && during(c):
				failedDuring++
				if !finishFailed.IsZero() && c.start.After(finishFailed) && c.end.Before(stored) {
					failedWhileFinishing = true
				}
			case c.op == "renew" && c.err == nil && during(c) && c.end.Before(restoring):
				t.Errorf("key %s: a renewal sent %v after the cut succeeded during the outage", key, c.start.Sub(cut))
			case c.op == "renew" && c.err == nil && c.end.After(restoring):
				if okAfter == 0 && isRunning[key] {
					runningRecovered++
					lastRecovered = max(lastRecovered, c.end.Sub(cut))
				}
				okAfter++
				if !isRunning[key] && c.end.Before(stored) {
					answeredRenewedFirst++
				}
			}
		}
		renewalsFailed += failedDuring
		renewalsOK += okAfter
		assert.NotZero(t, failedDuring, "key %s: no renewal attempted during the outage failed", key)
		assert.True(t, stored.After(restoring), "key %s: its response was stored after the outage", key)
		if isRunning[key] {
			assert.NotZero(t, okAfter, "key %s: no renewal succeeded after the outage", key)
		} else {
			assert.False(t, finishFailed.IsZero(), "key %s: its response failed to be stored during the outage", key)
			assert.True(t, failedWhileFinishing, "key %s: no renewal failed while its response waited to be stored", key)
		}
		if t.Failed() && !dumped {
			g.logCalls(t, key, cut)
			dumped = true
		}
	}
	if mode == "blackhole" {
		assert.NotZero(t, endedBefore, "calls that failed by their deadline during the black hole")
	}
	assert.Zero(t, g.errorRecords(), "errors logged:\n%s", g.log.String())
	assert.Zero(t, tl.notStored+tl.other, "answers that are neither 2xx, 409 nor 503 store unavailable")
	t.Logf("store outage (%s) of %v, lease %v, store timeout %v: %d keys (%d answered at the cut, %d still running) "+
		"× %d copies over %d instances\n"+
		"\tanswers: %v\n"+
		"\texecutions: %d, %d keys executed more than once\n"+
		"\trenewals: %d failed during the outage, %d succeeded after it (%d of the %d running keys', the last %v after "+
		"the cut, and %d of the %d answered keys' before their response was stored)\n"+
		"\tFinish: %d failed during the outage\n"+
		"\tstore calls failed during the outage: %d, of which %d ended before the restore and %d by it; the longest took %v; "+
		"%d failed after it\n"+
		"\ttiming: the answered keys ran %v after the start, the running keys %v later; the first fence came %v after the cut; %v in all",
		mode, restored.Sub(cut).Round(time.Millisecond), lease, storeTimeout.Round(time.Millisecond),
		len(keys), len(answered), len(running), OutageCopies, OutageInstances,
		tl, executions, twice,
		renewalsFailed, renewalsOK, runningRecovered, len(running), lastRecovered.Round(time.Millisecond),
		answeredRenewedFirst, len(answered), finishesFailed,
		failedCalls, endedBefore, endedByRestore, longestFailure.Round(time.Millisecond), failedAfter,
		answeredIn.Round(time.Millisecond), runningIn.Round(time.Millisecond),
		fence.Sub(cut).Round(time.Millisecond), elapsed.Round(time.Millisecond))
}

// LongOutageKeys is how many keys [StoreOutageLongerThanLease] sends: the
// handlers of half of them are still running at the fence, the other half
// have answered and wait to be stored.
const LongOutageKeys = 20

// StoreOutageLongerThanLease is [StoreOutage] with an outage longer than
// the lease, so past every owner's fence: what the middleware promises
// then. Each owner gives up at its fence, three quarters of the lease after
// its last renewal: a handler still running sees its context end with
// [idempotency.ErrLeaseExpired], and a response waiting to be stored is
// dropped. Nothing is stored, so each owner's client gets 503
// idempotency_response_not_stored, never a 2xx; the observer is told
// NotStored, and the middleware logs an error. Once the store is back and
// the lease has run out, a retry with the same key executes again: two
// executions per key, the documented residual risk of an outage longer than
// the lease. Every 2xx for a key is still one and the same body, the second
// execution's, stored, and later answers replay it.
func StoreOutageLongerThanLease(t *testing.T, newStore func(t *testing.T) idempotency.Store, p *Proxy) {
	const (
		lease  = 2 * time.Second // the fence comes 1.5s after the last renewal
		outage = 3 * time.Second // at least: until every lease has run out
	)
	keys := outageKeys("long-outage-", LongOutageKeys)
	// The first half of the keys have handlers still running at the fence,
	// as a slow call to a payment network would be, that end when their
	// context does; the other half answer during the outage, and their
	// answers wait to be stored until the fence.
	running := map[string]bool{}
	for _, key := range keys[:len(keys)/2] {
		running[key] = true
	}
	var causes sync.Map // key → the cause of its handler's context
	gate := make(chan struct{})
	open := sync.OnceFunc(func() { close(gate) })
	entered := make(chan string, len(keys))
	g := newRig(t, newStore, lease, len(keys), func(r *http.Request, key string) {
		entered <- key
		if running[key] {
			select {
			case <-r.Context().Done():
				causes.Store(key, context.Cause(r.Context()))
			case <-time.After(10 * lease): // reported below
			}
			return
		}
		select {
		case <-gate:
		case <-r.Context().Done():
		}
	})
	ctx, cancel := context.WithCancel(t.Context())
	start := time.Now()
	cl := g.start(ctx, keys)
	defer func() {
		open()
		p.Restore()
		cancel()
		<-cl.done
	}()

	collect(t, entered, len(keys), 10*time.Second, "first executions in the handler")
	p.Cut()
	cut := time.Now()
	open()
	stored := collect(t, g.finishFailed, len(keys)/2, lease, "responses that failed to be stored during the outage")
	for key := range stored {
		assert.False(t, running[key], "%s: its handler was still running", key)
	}
	lost := collect(t, g.notStored, len(keys), 2*lease, "owners lost at their fence")
	lostBy := time.Since(cut)
	// Restore once every lease has run out by the store's own record.
	_, latest := g.leases(keys)
	require.True(t, latest.Before(cut.Add(outage)), "a lease granted after the cut, to %v", latest.Sub(cut))
	wait(ctx, time.Until(cut.Add(outage)))
	p.Restore()
	restored := time.Now()

	cl.wait(t, 5*lease)
	elapsed := time.Since(start)
	tl := g.check(t, cl)
	executions, twice := 0, 0
	for k, key := range keys {
		assert.True(t, lost[key], "%s", key)
		execs := g.executions(key)
		executions += len(execs)
		if len(execs) == 2 {
			twice++
		}
		assert.Len(t, execs, 2, "key %s: lost at the fence, then executed again once the lease ran out", key)
		o := g.outcomes(key)
		if assert.Len(t, o[idempotency.NotStored], 1, "key %s", key) {
			ev := o[idempotency.NotStored][0]
			assert.ErrorIs(t, ev.Err, idempotency.ErrLeaseExpired, "key %s", key)
			assert.Equal(t, http.StatusServiceUnavailable, ev.StatusCode, "key %s", key)
		}
		assert.Len(t, o[idempotency.Executed], 1, "key %s", key)
		if running[key] {
			cause, _ := causes.Load(key)
			err, _ := cause.(error)
			assert.ErrorIs(t, err, idempotency.ErrLeaseExpired, "key %s: the cause of the running handler's context", key)
		}
		notStored := 0
		for _, answers := range cl.answers[k] {
			for _, res := range answers {
				if strings.Contains(res.body, "idempotency_response_not_stored") {
					notStored++
					assert.Equal(t, http.StatusServiceUnavailable, res.status)
					assert.NotEmpty(t, res.retryAfter, "a 503 says when to retry")
				}
			}
		}
		assert.Equal(t, 1, notStored, "key %s: the owner's client is told its response was not stored", key)
	}
	assert.Equal(t, len(keys), g.errorRecords(), "an error logged for each response not stored:\n%s", g.log.String())
	assert.Zero(t, tl.other, "answers that are neither 2xx, 409 nor 503")
	t.Logf("store outage of %v (every connection reset) with %d keys × %d copies over %d instances, lease %v: "+
		"every owner lost by %v after the cut; %d executions, %d keys executed twice; %v; %v in all",
		restored.Sub(cut).Round(time.Millisecond), len(keys), OutageCopies, OutageInstances, lease,
		lostBy.Round(time.Millisecond), executions, twice, tl, elapsed.Round(time.Millisecond))
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
