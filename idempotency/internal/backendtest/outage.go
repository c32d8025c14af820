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
// when storing a response failed.
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
}

// newRig starts the servers with the middleware's lease, and room for keys
// keys in its channels.
func newRig(t *testing.T, newStore func(t *testing.T) idempotency.Store, lease time.Duration, keys int,
	hold func(r *http.Request, key string)) *rig {
	g := &rig{t: t, lease: lease, hold: hold,
		notStored: make(chan string, keys*OutageCopies), finishFailed: make(chan string, keys*OutageCopies),
		execs: map[string][]int{}, confirmed: map[string]time.Time{}, failed: map[string]bool{}}
	logger := slog.New(slog.NewTextHandler(&g.log, nil))
	for range OutageInstances {
		s := &spy{Store: newStore(t), claimed: g.claimed, renewed: g.renewed, finished: g.finished}
		mw, err := idempotency.New(s, idempotency.WithLease(lease), idempotency.WithObserver(g.observe),
			idempotency.WithLogger(logger))
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
	if err == nil && res.State == idempotency.Claimed {
		g.confirm(c)
	}
}

func (g *rig) renewed(c idempotency.Claim, err error) {
	if err == nil {
		g.confirm(c)
	}
}

func (g *rig) confirm(c idempotency.Claim) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if c.Now.After(g.confirmed[c.Key]) {
		g.confirmed[c.Key] = c.Now
	}
}

func (g *rig) finished(c idempotency.Claim, _ *idempotency.Response, err error) {
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
// not a replay. It returns the tally of every answer.
func (g *rig) check(t *testing.T, cl *clients) tally {
	t.Helper()
	var tl tally
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
	return tl
}

// StoreOutage drives the middleware over a real store while the proxy p,
// which carries every connection of the stores that newStore makes, resets
// every connection for a few seconds, shorter than the lease's fence. It
// sends [OutageCopies] requests at once for each of [OutageKeys] keys, over
// [OutageInstances] instances, from clients that retry every 409 and 503
// with the same key. The first execution of every key is held until all of
// them run; then the store is cut off, and the handlers answer while it is
// down. The middleware must keep every answer until it is stored: every key
// executes exactly once, every request ends with a 2xx, and all the 2xx of
// a key carry the one execution's body.
func StoreOutage(t *testing.T, newStore func(t *testing.T) idempotency.Store, p *Proxy) {
	const (
		// The fence comes 7.5s after the last renewal, the outage ends
		// 2.5s after the cut, and storing is retried at most a second apart.
		lease  = 10 * time.Second
		outage = 2500 * time.Millisecond
	)
	gate := make(chan struct{})
	open := sync.OnceFunc(func() { close(gate) })
	entered := make(chan string, OutageKeys)
	g := newRig(t, newStore, lease, OutageKeys, func(r *http.Request, key string) {
		entered <- key
		select {
		case <-gate:
		case <-r.Context().Done():
		}
	})
	keys := outageKeys("outage-", OutageKeys)
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
	earliest, _ := g.leases(keys) // no renewal gets through from now on
	fence := earliest.Add(-lease / 4)
	open()
	// The handlers answer while the store is down; each answer's first
	// attempt to be stored fails.
	collect(t, g.finishFailed, len(keys), outage, "responses that failed to be stored during the outage")
	wait(ctx, time.Until(cut.Add(outage)))
	p.Restore()
	restored := time.Now()
	// The premise: after the restore, the next attempt to store (at most
	// a tenth of the lease later) ends (within the store timeout, a sixth
	// of the lease) before any owner's fence.
	require.True(t, restored.Add(lease/10+lease/6).Before(fence),
		"too slow a run for the scenario: restored at %v after the cut, the first fence at %v",
		restored.Sub(cut), fence.Sub(cut))

	cl.wait(t, lease)
	elapsed := time.Since(start)
	tl := g.check(t, cl)
	executions, twice := 0, 0
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
	}
	assert.Zero(t, g.errorRecords(), "errors logged:\n%s", g.log.String())
	assert.Zero(t, tl.notStored+tl.other, "answers that are neither 2xx, 409 nor 503 store unavailable")
	t.Logf("store outage of %v (every connection reset) with %d keys × %d copies over %d instances, lease %v: "+
		"%d executions, %d keys executed more than once; %v; first fence %v after the cut; %v in all",
		restored.Sub(cut).Round(time.Millisecond), len(keys), OutageCopies, OutageInstances, lease,
		executions, twice, tl, fence.Sub(cut).Round(time.Millisecond), elapsed.Round(time.Millisecond))
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
