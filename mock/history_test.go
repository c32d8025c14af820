package mock_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/mock"
)

func TestHistoryOutcomes(t *testing.T) {
	h := setup(t)
	ch := h.post("/v1/charges", `"k1"`, chargeBody(100)).charge(t)                                     // executed
	h.post("/v1/charges", "k1", chargeBody(100))                                                       // replayed
	h.post("/v1/charges", "k1", chargeBody(101))                                                       // mismatch
	h.post("/v1/charges", "", chargeBody(100))                                                         // missing key
	h.post("/v1/charges", "bad key", chargeBody(100))                                                  // invalid key
	h.post("/v1/charges", "k2", `{"amount":0}`)                                                        // rejected: validation
	h.send(req{method: "POST", path: "/v1/charges", idemKey: "k3"})                                    // rejected: auth
	h.post("/v1/nope", "k4", `{}`)                                                                     // rejected: route
	h.get("/v1/charges/" + ch.ID)                                                                      // executed (a GET)
	h.get("/v1/charges/ch_missing")                                                                    // rejected: 404
	h.post("/v1/charges", "k5", `{"amount":1,"currency":"usd","payment_method":"tok_chargeDeclined"}`) // executed: a stored decline
	require.NoError(t, h.srv.InjectFault(mock.Fault{Kind: mock.FailAfter, Status: 502}))
	h.post("/v1/charges", "k6", chargeBody(100)) // fault

	acct := mock.AccountID(keyA)
	want := []struct {
		method, path, key, account string
		status                     int
		outcome                    mock.Outcome
	}{
		{"POST", "/v1/charges", "k1", acct, 200, mock.OutcomeExecuted},
		{"POST", "/v1/charges", "k1", acct, 200, mock.OutcomeReplayed},
		{"POST", "/v1/charges", "k1", acct, 422, mock.OutcomeMismatch},
		{"POST", "/v1/charges", "", acct, 400, mock.OutcomeMissingKey},
		{"POST", "/v1/charges", "bad key", acct, 400, mock.OutcomeInvalidKey},
		{"POST", "/v1/charges", "k2", acct, 400, mock.OutcomeRejected},
		{"POST", "/v1/charges", "k3", "", 401, mock.OutcomeRejected},
		{"POST", "/v1/nope", "k4", acct, 404, mock.OutcomeRejected},
		{"GET", "/v1/charges/" + ch.ID, "", acct, 200, mock.OutcomeExecuted},
		{"GET", "/v1/charges/ch_missing", "", acct, 404, mock.OutcomeRejected},
		{"POST", "/v1/charges", "k5", acct, 402, mock.OutcomeExecuted},
		{"POST", "/v1/charges", "k6", acct, 502, mock.OutcomeFault},
	}
	recs := h.srv.Requests()
	require.Len(t, recs, len(want))
	for i, w := range want {
		r := recs[i]
		assert.Equal(t, w.method+" "+w.path, r.Method+" "+r.Path, i)
		assert.Equal(t, w.key, r.IdempotencyKey, i)
		assert.Equal(t, w.account, r.Account, i)
		assert.Equal(t, w.status, r.Status, i)
		assert.Equal(t, w.outcome, r.Outcome, i)
		assert.Regexp(t, `^req_`, r.RequestID, i)
	}
	assert.Equal(t, mock.FailAfter, recs[11].Fault)
	assert.Equal(t, mock.Stats{Requests: 12, Executed: 3, Replayed: 1, Mismatches: 1, MissingKey: 1, InvalidKey: 1,
		Rejected: 4, Faults: 1}, h.srv.Stats())
}

func TestHistoryLimit(t *testing.T) {
	h := setup(t, mock.WithHistoryLimit(3))
	for i := range 7 {
		h.post("/v1/charges", fmt.Sprint("k", i), chargeBody(100))
	}
	var got []string
	for _, r := range h.srv.Requests() {
		got = append(got, r.IdempotencyKey)
	}
	assert.Equal(t, []string{"k4", "k5", "k6"}, got, "the latest, oldest first")
	assert.Equal(t, int64(7), h.srv.Stats().Requests, "stats count them all")

	_, err := mock.New(mock.WithHistoryLimit(0))
	assert.Error(t, err)
}

// Requests from many goroutines are all recorded, under -race.
func TestHistoryConcurrent(t *testing.T) {
	h := setup(t)
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 10 {
				h.post("/v1/charges", fmt.Sprint(i, "-", j), chargeBody(100))
				_ = h.srv.Requests()
				_ = h.srv.Charges()
			}
		}()
	}
	wg.Wait()
	assert.Len(t, h.srv.Requests(), 200)
	assert.Equal(t, int64(200), h.srv.Stats().Executed)
	assert.Len(t, h.srv.Charges(), 200)
}

func TestLogger(t *testing.T) {
	var mu sync.Mutex
	var buf bytes.Buffer
	h := setup(t, mock.WithLogger(slog.New(slog.NewTextHandler(lockedWriter{&mu, &buf}, nil))))
	h.post("/v1/charges", "order_9", chargeBody(100))
	require.NoError(t, h.srv.InjectFault(mock.Fault{Kind: mock.FailBefore, Status: 503}))
	h.post("/v1/charges", "order_10", chargeBody(100))
	h.control("GET", "/_mock/stats", "")

	mu.Lock()
	lines := strings.Split(strings.TrimSpace(buf.String()), "\n")
	mu.Unlock()
	require.Len(t, lines, 3, "one line per request")
	acct := mock.AccountID(keyA)
	assert.Contains(t, lines[0], "method=POST path=/v1/charges key=order_9 account="+acct+" status=200 outcome=executed")
	assert.Contains(t, lines[1], "key=order_10 account=\"\" status=503 outcome=fault fault=fail_before")
	assert.Contains(t, lines[2], "msg=control method=GET path=/_mock/stats status=200")

	_, err := mock.New(mock.WithLogger(nil))
	assert.Error(t, err)
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// A 900 KiB path is clipped in the history and in the log, and says so.
func TestHistoryAndLogClipLongPaths(t *testing.T) {
	var logs bytes.Buffer
	g, err := mock.New(mock.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	require.NoError(t, err)
	huge := "/v1/charges/" + strings.Repeat("x", 900<<10)
	for _, path := range []string{huge, "/_mock/" + huge} {
		r := httptest.NewRequest("GET", "http://localhost/v1/charges", nil)
		r.Header.Set("Authorization", "Bearer "+keyA)
		r.URL.Path = path
		g.ServeHTTP(httptest.NewRecorder(), r)
	}

	recs := g.Requests()
	require.Len(t, recs, 1)
	// Checked without quoting 900 KiB when it fails.
	p := recs[0].Path
	assert.Less(t, len(p), 4<<10)
	assert.True(t, strings.HasPrefix(p, huge[:2<<10]), "the start of the path is kept")
	assert.True(t, strings.HasSuffix(p, fmt.Sprintf("…[clipped from %d bytes]", len(huge))), "ends %q", p[max(0, len(p)-40):])

	lines := strings.Split(strings.TrimSpace(logs.String()), "\n")
	require.Len(t, lines, 2)
	for i, line := range lines {
		assert.Less(t, len(line), 4<<10, "line %d is short", i)
		assert.True(t, strings.Contains(line, "clipped from"), "line %d says the path was clipped", i)
	}
	assert.True(t, strings.Contains(lines[0], "msg=request"))
	assert.True(t, strings.Contains(lines[1], "msg=control"))
}

// TestWaitStats: a wait ends when the counters satisfy it, at the request
// that makes them, and with the context's error if none does.
func TestWaitStats(t *testing.T) {
	h := setup(t)
	got := make(chan mock.Stats, 1)
	waiting := make(chan struct{})
	go func() {
		close(waiting)
		st, err := h.srv.WaitStats(context.Background(), func(st mock.Stats) bool { return st.Replayed > 0 })
		assert.NoError(t, err)
		got <- st
	}()
	<-waiting
	h.post("/v1/charges", "k1", chargeBody(100)).charge(t)
	select {
	case <-got:
		t.Fatal("the wait ended before a replay")
	default:
	}
	h.post("/v1/charges", "k1", chargeBody(100)).charge(t)
	select {
	case st := <-got:
		assert.EqualValues(t, 1, st.Replayed)
		assert.EqualValues(t, 2, st.Requests)
	case <-time.After(10 * time.Second):
		t.Fatal("the wait did not end at the replay")
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := h.srv.WaitStats(ctx, func(st mock.Stats) bool { return st.Conflicts > 0 })
	assert.ErrorIs(t, err, context.Canceled)
}
