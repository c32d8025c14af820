package mock_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/mock"
)

func TestFailBefore(t *testing.T) {
	h := setup(t)
	require.NoError(t, h.srv.InjectFault(mock.Fault{Kind: mock.FailBefore, Method: "POST", Path: "/v1/charges",
		Status: 503, RetryAfter: 2 * time.Second}))
	r := h.post("/v1/charges", "k", chargeBody(100))
	require.Equal(t, http.StatusServiceUnavailable, r.Status)
	assert.Equal(t, "2", r.Header.Get("Retry-After"))
	assert.Regexp(t, `^req_`, r.Header.Get("Request-Id"))
	assert.Equal(t, apiErr{Type: "api_error", Code: "fault_injected", Message: r.err(t).Message}, r.err(t))
	assert.Empty(t, h.srv.Charges(), "nothing executed")

	// Nothing was stored: the retry executes.
	again := h.post("/v1/charges", "k", chargeBody(100))
	again.charge(t)
	assert.False(t, again.replayed())

	recs := h.srv.Requests()
	require.Len(t, recs, 2)
	assert.Equal(t, mock.RequestRecord{Method: "POST", Path: "/v1/charges", IdempotencyKey: "k", Status: 503,
		Outcome: mock.OutcomeFault, Fault: mock.FailBefore, RequestID: r.Header.Get("Request-Id")}, recs[0])
	assert.Equal(t, mock.OutcomeExecuted, recs[1].Outcome)
	assert.Empty(t, recs[1].Fault)
}

func TestFailBeforeRateLimited(t *testing.T) {
	h := setup(t)
	require.NoError(t, h.srv.InjectFault(mock.Fault{Kind: mock.FailBefore, Status: 429, RetryAfter: 1500 * time.Millisecond}))
	r := h.post("/v1/charges", "k", chargeBody(100))
	require.Equal(t, http.StatusTooManyRequests, r.Status)
	assert.Equal(t, "2", r.Header.Get("Retry-After"), "rounded up to whole seconds")
	assert.Equal(t, "rate_limit_error", r.err(t).Type)
	assert.Equal(t, "rate_limited", r.err(t).Code)
}

// Faults sit outside authentication, as the network does.
func TestFaultsComeBeforeAuth(t *testing.T) {
	h := setup(t)
	require.NoError(t, h.srv.InjectFault(mock.Fault{Kind: mock.FailBefore}))
	r := h.send(req{method: "POST", path: "/v1/charges", body: chargeBody(100)})
	assert.Equal(t, http.StatusInternalServerError, r.Status, "default status")
	r = h.send(req{method: "POST", path: "/v1/charges", body: chargeBody(100)})
	assert.Equal(t, http.StatusUnauthorized, r.Status)
}

func TestFailAfter(t *testing.T) {
	h := setup(t)
	require.NoError(t, h.srv.InjectFault(mock.Fault{Kind: mock.FailAfter, Method: "POST", Path: "/v1/charges"}))
	r := h.post("/v1/charges", "k", chargeBody(100))
	require.Equal(t, http.StatusInternalServerError, r.Status)
	assert.Equal(t, "fault_injected", r.err(t).Code)
	assert.Empty(t, r.Header.Values("Idempotent-Replayed"))

	charges := h.srv.Charges()
	require.Len(t, charges, 1, "it executed")
	again := h.post("/v1/charges", "k", chargeBody(100))
	assert.True(t, again.replayed(), "the real response was stored")
	assert.Equal(t, charges[0].ID, again.charge(t).ID)
	assert.Len(t, h.srv.Charges(), 1)

	rec := h.srv.Requests()[0]
	assert.Equal(t, mock.OutcomeFault, rec.Outcome)
	assert.Equal(t, mock.FailAfter, rec.Fault)
	assert.Equal(t, 500, rec.Status)
	assert.Equal(t, mock.OutcomeReplayed, h.srv.Requests()[1].Outcome)
}

func TestDropBefore(t *testing.T) {
	h := setup(t)
	require.NoError(t, h.srv.InjectFault(mock.Fault{Kind: mock.DropBefore, Path: "/v1/charges"}))
	_, err := h.try(h.freshClient(), req{method: "POST", path: "/v1/charges", apiKey: keyA, idemKey: "k", body: chargeBody(100)})
	require.Error(t, err)
	assert.Empty(t, h.srv.Charges())

	again := h.post("/v1/charges", "k", chargeBody(100))
	again.charge(t)
	assert.False(t, again.replayed(), "nothing was stored")

	rec := h.srv.Requests()[0]
	assert.Equal(t, 0, rec.Status, "no response was sent")
	assert.Equal(t, mock.OutcomeFault, rec.Outcome)
	assert.Equal(t, mock.DropBefore, rec.Fault)
}

func TestDropAfter(t *testing.T) {
	h := setup(t)
	require.NoError(t, h.srv.InjectFault(mock.Fault{Kind: mock.DropAfter, Method: "POST", Path: "/v1/charges"}))
	_, err := h.try(h.freshClient(), req{method: "POST", path: "/v1/charges", apiKey: keyA, idemKey: "k", body: chargeBody(100)})
	require.Error(t, err)
	require.Len(t, h.srv.Charges(), 1, "the charge exists though the client saw nothing")

	again := h.post("/v1/charges", "k", chargeBody(100))
	assert.True(t, again.replayed())
	assert.Equal(t, h.srv.Charges()[0].ID, again.charge(t).ID)
	assert.Len(t, h.srv.Charges(), 1)
	assert.Equal(t, mock.DropAfter, h.srv.Requests()[0].Fault)
	assert.Equal(t, 0, h.srv.Requests()[0].Status)
}

// Worth knowing when testing a Go client: net/http's transport itself
// resends a request that carries an Idempotency-Key once, when a reused
// keep-alive connection breaks before the response. A drop over such a
// connection is then invisible to the client, which gets the replay.
func TestTransportRetriesDroppedKeyedPOST(t *testing.T) {
	h := setup(t)
	h.get("/v1/charges") // leaves an idle keep-alive connection
	require.NoError(t, h.srv.InjectFault(mock.Fault{Kind: mock.DropAfter, Method: "POST"}))
	r := h.post("/v1/charges", "k", chargeBody(100))
	assert.Equal(t, http.StatusOK, r.Status)
	assert.True(t, r.replayed())
	assert.Len(t, h.srv.Charges(), 1)
	assert.Equal(t, []mock.Outcome{mock.OutcomeExecuted, mock.OutcomeFault, mock.OutcomeReplayed}, outcomes(h.srv.Requests()))
}

func outcomes(recs []mock.RequestRecord) []mock.Outcome {
	out := make([]mock.Outcome, len(recs))
	for i, r := range recs {
		out[i] = r.Outcome
	}
	return out
}

func TestDelayHoldsTheKeyInFlight(t *testing.T) {
	h := setup(t)
	release, holding := make(chan struct{}), make(chan struct{})
	require.NoError(t, h.srv.InjectFault(mock.Fault{Kind: mock.Delay, Method: "POST", Path: "/v1/charges",
		Release: release, Holding: holding}))
	done := make(chan *resp)
	go func() { done <- h.post("/v1/charges", "k", chargeBody(100)) }()
	recv(t, holding)
	assert.Empty(t, h.srv.Charges(), "held before executing")
	assert.Equal(t, http.StatusConflict, h.post("/v1/charges", "k", chargeBody(100)).Status)
	assert.Equal(t, http.StatusUnprocessableEntity, h.post("/v1/charges", "k", chargeBody(101)).Status)
	h.charge(300) // other keys go on
	close(release)
	r := recv(t, done)
	r.charge(t)
	assert.False(t, r.replayed())

	var delayed mock.RequestRecord
	for _, rec := range h.srv.Requests() {
		if rec.Fault != "" {
			delayed = rec
		}
	}
	assert.Equal(t, mock.Delay, delayed.Fault)
	assert.Equal(t, mock.OutcomeExecuted, delayed.Outcome, "a delay leaves the outcome as it was")
	assert.Equal(t, int64(1), h.srv.Stats().Faults)
}

// A delay with a duration and no Release ends on its own.
func TestDelayDuration(t *testing.T) {
	h := setup(t)
	require.NoError(t, h.srv.InjectFault(mock.Fault{Kind: mock.Delay, Delay: time.Millisecond}))
	h.charge(100)
	require.NoError(t, h.srv.InjectFault(mock.Fault{Kind: mock.DelayAfter, Delay: time.Millisecond}))
	h.charge(100)
	assert.Len(t, h.srv.Charges(), 2)
}

// A hold ends when the request's context ends; the request then executes,
// as on a slow server whose client gave up.
func TestDelayEndsWithTheRequest(t *testing.T) {
	g, err := mock.New()
	require.NoError(t, err)
	ts := httptest.NewServer(g) // not mock.Server, whose Close would end the hold itself
	release, holding := make(chan struct{}), make(chan struct{})
	require.NoError(t, g.InjectFault(mock.Fault{Kind: mock.Delay, Release: release, Holding: holding}))

	ctx, cancel := context.WithCancel(context.Background())
	hr, _ := http.NewRequestWithContext(ctx, "POST", ts.URL+"/v1/charges", strings.NewReader(chargeBody(100)))
	hr.Header.Set("Authorization", "Bearer "+keyA)
	hr.Header.Set("Idempotency-Key", "k")
	hr.Header.Set("Content-Type", "application/json")
	failed := make(chan error)
	go func() {
		_, err := ts.Client().Do(hr)
		failed <- err
	}()
	recv(t, holding)
	cancel()
	assert.ErrorIs(t, recv(t, failed), context.Canceled)
	closed := make(chan struct{})
	go func() {
		ts.Close() // waits for the handler: it returns only if the hold ended
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(30 * time.Second):
		close(release)
		t.Fatal("the hold outlived its request")
	}
	assert.Len(t, g.Charges(), 1)
}

func TestDelayAfter(t *testing.T) {
	h := setup(t)
	release, holding := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(release) })
	require.NoError(t, h.srv.InjectFault(mock.Fault{Kind: mock.DelayAfter, Path: "/v1/charges", Release: release, Holding: holding}))

	impatient := h.freshClient()
	impatient.Timeout = 100 * time.Millisecond
	failed := make(chan error)
	go func() {
		_, err := h.try(impatient, req{method: "POST", path: "/v1/charges", apiKey: keyA, idemKey: "k", body: chargeBody(100)})
		failed <- err
	}()
	recv(t, holding)
	require.Len(t, h.srv.Charges(), 1, "executed and stored before the hold")
	err := recv(t, failed)
	var uerr *url.Error
	require.ErrorAs(t, err, &uerr)
	assert.True(t, uerr.Timeout(), "the client timed out after the commit: %v", err)

	again := h.post("/v1/charges", "k", chargeBody(100))
	assert.True(t, again.replayed())
	assert.Equal(t, h.srv.Charges()[0].ID, again.charge(t).ID)
}

func TestFaultMatching(t *testing.T) {
	tests := []struct {
		name   string
		fault  mock.Fault
		rq     req
		faulty bool
	}{
		{"any method and path", mock.Fault{}, req{method: "GET", path: "/v1/charges"}, true},
		{"method", mock.Fault{Method: "post"}, req{method: "POST", path: "/v1/charges"}, true},
		{"other method", mock.Fault{Method: "POST"}, req{method: "GET", path: "/v1/charges"}, false},
		{"exact path", mock.Fault{Path: "/v1/charges"}, req{method: "POST", path: "/v1/charges"}, true},
		{"exact path only", mock.Fault{Path: "/v1/charges"}, req{method: "POST", path: "/v1/charges/ch_1/capture"}, false},
		{"prefix", mock.Fault{Path: "/v1/charges*"}, req{method: "POST", path: "/v1/charges/ch_1/capture"}, true},
		{"prefix matches itself", mock.Fault{Path: "/v1/charges*"}, req{method: "GET", path: "/v1/charges"}, true},
		{"other prefix", mock.Fault{Path: "/v1/refunds*"}, req{method: "POST", path: "/v1/charges"}, false},
		{"unknown routes too", mock.Fault{Path: "/v2/*"}, req{method: "GET", path: "/v2/x"}, true},
		{"not healthz", mock.Fault{}, req{method: "GET", path: "/healthz"}, false},
		{"not the control surface", mock.Fault{Path: "/_mock/*"}, req{method: "GET", path: "/_mock/stats"}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			h := setup(t)
			f := tc.fault
			f.Kind, f.Status = mock.FailBefore, 418
			require.NoError(t, h.srv.InjectFault(f))
			tc.rq.apiKey, tc.rq.idemKey = keyA, "k"
			if tc.rq.method == "POST" {
				tc.rq.body = chargeBody(100)
			}
			r := h.send(tc.rq)
			assert.Equal(t, tc.faulty, r.Status == 418, "status %d", r.Status)
		})
	}
}

func TestFaultTimesAndOrder(t *testing.T) {
	h := setup(t)
	require.NoError(t, h.srv.InjectFault(mock.Fault{Kind: mock.FailBefore, Status: 503, Times: 2}))
	require.NoError(t, h.srv.InjectFault(mock.Fault{Kind: mock.FailBefore, Status: 429}))
	require.NoError(t, h.srv.InjectFault(mock.Fault{Kind: mock.FailBefore, Status: 502, Method: "GET"}))
	var got []int
	for range 4 {
		got = append(got, h.post("/v1/charges", "k", chargeBody(100)).Status)
	}
	assert.Equal(t, []int{503, 503, 429, 200}, got, "first injected first, each used Times times")
	assert.Equal(t, 502, h.get("/v1/charges").Status)
	assert.Equal(t, 200, h.get("/v1/charges").Status)
	assert.Equal(t, int64(4), h.srv.Stats().Faults)

	require.NoError(t, h.srv.InjectFault(mock.Fault{Kind: mock.FailBefore, Times: 100}))
	h.srv.ClearFaults()
	assert.Equal(t, 200, h.get("/v1/charges").Status)
}

func TestInjectFaultValidation(t *testing.T) {
	g, err := mock.New()
	require.NoError(t, err)
	release := make(chan struct{})
	for _, f := range []mock.Fault{
		{},
		{Kind: "explode"},
		{Kind: mock.FailBefore, Times: -1},
		{Kind: mock.FailBefore, Status: 200},
		{Kind: mock.FailBefore, Status: 600},
		{Kind: mock.FailAfter, Delay: time.Second},
		{Kind: mock.FailAfter, Release: release},
		{Kind: mock.DropBefore, Status: 500},
		{Kind: mock.DropAfter, Delay: time.Second},
		{Kind: mock.Delay, Status: 500},
		{Kind: mock.DelayAfter, RetryAfter: time.Second},
		{Kind: mock.Delay, Delay: -time.Second},
		{Kind: mock.Delay, Delay: time.Hour},
		{Kind: mock.FailBefore, Path: "v1/charges"},
	} {
		assert.Error(t, g.InjectFault(f), "%+v", f)
	}
	for _, f := range []mock.Fault{
		{Kind: mock.FailBefore, Status: 400},
		{Kind: mock.FailAfter, Status: 599, RetryAfter: time.Second},
		{Kind: mock.DropBefore},
		{Kind: mock.Delay},
		{Kind: mock.DelayAfter, Release: release},
	} {
		assert.NoError(t, g.InjectFault(f), "%+v", f)
	}
}

// sendVia sends a charge through the httpmock responder, for fast
// socket-free runs; a drop comes back as an error.
func sendVia(t *testing.T, g *mock.Gateway, key string, amount int) (*http.Response, error) {
	t.Helper()
	hr := httptest.NewRequest("POST", "http://gw.test/v1/charges", strings.NewReader(chargeBody(amount)))
	hr.Header.Set("Authorization", "Bearer "+keyA)
	hr.Header.Set("Idempotency-Key", key)
	hr.Header.Set("Content-Type", "application/json")
	return g.Responder()(hr)
}

// chaosRun sends n charges with fresh keys and describes what each got.
func chaosRun(t *testing.T, g *mock.Gateway, n int) []string {
	var out []string
	for i := range n {
		res, err := sendVia(t, g, fmt.Sprint("k", i), 100)
		if err != nil {
			require.ErrorIs(t, err, io.ErrUnexpectedEOF)
			out = append(out, "drop")
			continue
		}
		out = append(out, fmt.Sprint(res.StatusCode))
	}
	return out
}

func TestChaosIsDeterministic(t *testing.T) {
	run := func(seed int64) []string {
		g, err := mock.New(mock.WithChaos(0.3, seed))
		require.NoError(t, err)
		return chaosRun(t, g, 1000)
	}
	a, b, c := run(7), run(7), run(8)
	assert.Equal(t, a, b, "same seed, same faults")
	assert.NotEqual(t, a, c)

	faulted := 0
	for _, s := range a {
		if s != "200" {
			faulted++
		}
	}
	assert.InDelta(t, 300, faulted, 60, "about 30%% of requests")

	// SetChaos, and Reset, restart the sequence.
	g, err := mock.New()
	require.NoError(t, err)
	require.NoError(t, g.SetChaos(0.3, 7))
	assert.Equal(t, a[:100], chaosRun(t, g, 100))
	g, err = mock.New(mock.WithChaos(0.3, 7))
	require.NoError(t, err)
	chaosRun(t, g, 50)
	g.Reset()
	assert.Equal(t, a[:100], chaosRun(t, g, 100))
}

// Chaos decides from the seed and the request, not from a stream shared by
// whatever arrives first: the same requests in another order, or racing,
// meet the same faults.
func TestChaosIsReproducibleInAnyOrder(t *testing.T) {
	const keys, attempts = 200, 4
	// run sends every key's attempts, in the given order of keys, one key
	// at a time or all at once, and tells what each attempt got.
	run := func(seed int64, order []int, concurrent bool) map[string]string {
		g, err := mock.New(mock.WithChaos(0.4, seed))
		require.NoError(t, err)
		var mu sync.Mutex
		got := map[string]string{}
		one := func(k int) {
			for a := range attempts {
				res, err := sendVia(t, g, fmt.Sprint("order_", k), 100)
				out := "drop"
				if err == nil {
					out = fmt.Sprint(res.StatusCode)
				}
				mu.Lock()
				got[fmt.Sprint(k, "/", a)] = out
				mu.Unlock()
			}
		}
		var wg sync.WaitGroup
		for _, k := range order {
			if !concurrent {
				one(k)
				continue
			}
			wg.Add(1)
			go func() { defer wg.Done(); one(k) }()
		}
		wg.Wait()
		return got
	}
	forward := make([]int, keys)
	for i := range forward {
		forward[i] = i
	}
	backward := slices.Clone(forward)
	slices.Reverse(backward)
	shuffled := slices.Clone(forward)
	rand.New(rand.NewPCG(1, 2)).Shuffle(keys, func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })

	a := run(7, forward, false)
	assert.Equal(t, a, run(7, backward, false), "same seed, keys in reverse order")
	assert.Equal(t, a, run(7, shuffled, true), "same seed, keys racing")
	assert.NotEqual(t, a, run(8, forward, false), "another seed")
	faulted := 0
	for _, out := range a {
		if out != "200" {
			faulted++
		}
	}
	assert.InDelta(t, 0.4*keys*attempts, faulted, 0.1*keys*attempts, "about 40%% of attempts")
}

func TestChaosKinds(t *testing.T) {
	g, err := mock.New(mock.WithChaos(1, 1))
	require.NoError(t, err)
	chaosRun(t, g, 300)
	seen := map[string]int{}
	for _, rec := range g.Requests() {
		require.Equal(t, mock.OutcomeFault, rec.Outcome, "rate 1 faults every POST")
		seen[fmt.Sprint(rec.Fault, " ", rec.Status)]++
	}
	assert.ElementsMatch(t, []string{"fail_before 503", "fail_before 429", "fail_after 500", "fail_after 503",
		"drop_before 0", "drop_after 0"}, keys(seen), "chaos never delays")
	for kind, n := range seen {
		assert.Greater(t, n, 20, kind)
	}

	// GETs and the control surface are never faulted by chaos.
	rec := httptest.NewRecorder()
	hr := httptest.NewRequest("GET", "/v1/charges", nil)
	hr.Header.Set("Authorization", "Bearer "+keyA)
	g.ServeHTTP(rec, hr)
	assert.Equal(t, 200, rec.Code)
	rec = httptest.NewRecorder()
	g.ServeHTTP(rec, httptest.NewRequest("POST", "http://localhost/_mock/reset", nil))
	assert.Equal(t, 200, rec.Code)

	// A 429 from chaos says when to retry; no other chaos answer does.
	g, _ = mock.New(mock.WithChaos(1, 1))
	limited := 0
	for i := range 120 {
		res, err := sendVia(t, g, fmt.Sprint(i), 100)
		if err != nil {
			continue // a drop
		}
		res.Body.Close()
		if res.StatusCode != 429 {
			assert.Empty(t, res.Header.Get("Retry-After"), res.StatusCode)
			continue
		}
		limited++
		assert.Equal(t, "1", res.Header.Get("Retry-After"))
	}
	assert.Greater(t, limited, 5, "about one chaos fault in six is a 429")

	require.NoError(t, g.SetChaos(0, 0))
	assert.Equal(t, []string{"200", "200"}, chaosRun(t, g, 2))
	assert.Error(t, g.SetChaos(1.5, 0))
	assert.Error(t, g.SetChaos(-0.1, 0))
	_, err = mock.New(mock.WithChaos(2, 0))
	assert.Error(t, err)
}

func keys(m map[string]int) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

// The point of it all: a client that retries with the same key through
// chaos charges each order exactly once. Every order costs the same, each
// in its own account, so a second charge for one order is a suspected
// duplicate: the client that makes a new key per attempt shows that the
// check sees one.
func TestRetryingThroughChaosChargesOnce(t *testing.T) {
	const orders = 200
	// run charges every order, retrying until it gets a 200, and returns
	// the gateway. newKey mints the idempotency key of each attempt.
	run := func(newKey func(order, attempt int) string) *mock.Gateway {
		g, err := mock.New(mock.WithChaos(0.5, 42))
		require.NoError(t, err)
		for i := range orders {
			apiKey := fmt.Sprint("sk_test_order_", i)
			for attempt := 0; ; attempt++ {
				require.Less(t, attempt, 50, "order %d never succeeded", i)
				hr := httptest.NewRequest("POST", "http://gw.test/v1/charges", strings.NewReader(chargeBody(1000)))
				hr.Header.Set("Authorization", "Bearer "+apiKey)
				hr.Header.Set("Idempotency-Key", newKey(i, attempt))
				hr.Header.Set("Content-Type", "application/json")
				res, err := g.Responder()(hr)
				if err == nil && res.StatusCode == 200 {
					break
				}
				if err != nil {
					require.True(t, errors.Is(err, io.ErrUnexpectedEOF))
				}
			}
		}
		return g
	}

	g := run(func(order, _ int) string { return fmt.Sprint("order_", order) })
	assert.Len(t, g.Charges(), orders)
	assert.Empty(t, g.SuspectedDuplicates(time.Hour))
	assert.Positive(t, g.Stats().Replayed, "some retries found their charge made")

	careless := run(func(order, attempt int) string { return fmt.Sprint("order_", order, "_attempt_", attempt) })
	extra := len(careless.Charges()) - orders
	assert.Positive(t, extra, "a new key per attempt charges again after a fail_after or drop_after")
	assert.Len(t, careless.SuspectedDuplicates(time.Hour), extra, "and each extra charge is a suspected duplicate")
}
