package payonce

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testAPIKey is distinctive so that leak tests can search for it.
const testAPIKey = "sk_test_S3CRET_d0_n0t_l0g_m3"

// fakeGateway is a small in-test gateway: charges, refunds and the
// contract's idempotency rules (replay, 422 on a different body, 409 while
// in flight, declines stored, validation failures not stored). Hooks inject
// faults; n is the 1-based number of the request.
type fakeGateway struct {
	URL string

	// hooks, set before the server starts
	before   func(n int, w http.ResponseWriter, r *http.Request) bool // true: handled, nothing executes
	during   func(n int, r *http.Request)                             // runs while the key is in flight
	after    func(n int, w http.ResponseWriter, r *http.Request) bool // after commit; true: handled
	conflict func(n int)                                              // a 409 was answered

	mu      sync.Mutex
	seq     int
	nextID  int
	charges []*Charge // creation order
	refunds map[string]*Refund
	keys    map[string]*fakeKey
	reqs    []fakeReq
}

type fakeKey struct {
	fp     string
	done   bool
	status int
	body   []byte
}

type fakeReq struct {
	Method, Path, Query, Key, Auth, ContentType string
	Body                                        []byte
}

type fakeOpt func(*fakeGateway)

func newFake(t testing.TB, opts ...fakeOpt) *fakeGateway {
	t.Helper()
	f := &fakeGateway{refunds: map[string]*Refund{}, keys: map[string]*fakeKey{}}
	for _, o := range opts {
		o(f)
	}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	f.URL = srv.URL
	return f
}

// client returns a client for the fake with tiny waits, so that no test
// waits on wall-clock time for a backoff.
func (f *fakeGateway) client(t testing.TB, opts ...Option) *Client {
	t.Helper()
	base := []Option{
		WithBaseURL(f.URL),
		WithBackoff(time.Millisecond, 2*time.Millisecond),
		WithMaxRetryAfter(2 * time.Millisecond),
	}
	c, err := NewClient(testAPIKey, append(base, opts...)...)
	require.NoError(t, err)
	return c
}

func (f *fakeGateway) requests() []fakeReq {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]fakeReq(nil), f.reqs...)
}

func (f *fakeGateway) chargeCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.charges)
}

func (f *fakeGateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	f.mu.Lock()
	f.seq++
	n := f.seq
	f.reqs = append(f.reqs, fakeReq{r.Method, r.URL.Path, r.URL.RawQuery, r.Header.Get("Idempotency-Key"),
		r.Header.Get("Authorization"), r.Header.Get("Content-Type"), body})
	f.mu.Unlock()
	w.Header().Set("Request-Id", "req_"+strconv.Itoa(n))

	if f.before != nil && f.before(n, w, r) {
		return
	}
	if !strings.HasPrefix(r.Header.Get("Authorization"), "Bearer sk_test_") {
		writeErr(w, 401, "authentication_error", "api_key_invalid", "", "Invalid API key.")
		return
	}
	if r.Method != http.MethodPost {
		status, resp := f.read(r)
		writeRaw(w, status, resp)
		return
	}

	key := r.Header.Get("Idempotency-Key")
	if key == "" {
		writeErr(w, 400, "idempotency_error", "idempotency_key_missing", "", "Idempotency-Key is required.")
		return
	}
	fp := r.URL.Path + "\n" + canonicalJSON(body)
	f.mu.Lock()
	e, ok := f.keys[key]
	switch {
	case ok && e.fp != fp:
		f.mu.Unlock()
		writeErr(w, 422, "idempotency_error", "idempotency_key_reused", "", "Keys are for one request only.")
		return
	case ok && !e.done:
		f.mu.Unlock()
		if f.conflict != nil {
			f.conflict(n)
		}
		w.Header().Set("Retry-After", "1")
		writeErr(w, 409, "idempotency_error", "idempotency_key_in_use", "", "A request with this key is in flight.")
		return
	case ok:
		status, stored := e.status, e.body
		f.mu.Unlock()
		w.Header().Set("Idempotent-Replayed", "true")
		writeRaw(w, status, stored)
		return
	}
	e = &fakeKey{fp: fp}
	f.keys[key] = e
	f.mu.Unlock()

	if f.during != nil {
		f.during(n, r)
	}
	f.mu.Lock()
	status, resp, store := f.execute(r.URL.Path, body)
	if store {
		e.done, e.status, e.body = true, status, resp
	} else {
		delete(f.keys, key)
	}
	f.mu.Unlock()
	if f.after != nil && f.after(n, w, r) {
		return
	}
	writeRaw(w, status, resp)
}

// execute runs a POST, with f.mu held. store reports whether the response
// is stored under the key (everything but validation failures).
func (f *fakeGateway) execute(path string, body []byte) (status int, resp []byte, store bool) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	switch {
	case path == "/v1/charges":
		var p struct {
			Amount        int64             `json:"amount"`
			Currency      string            `json:"currency"`
			PaymentMethod string            `json:"payment_method"`
			Description   string            `json:"description"`
			Metadata      map[string]string `json:"metadata"`
			Capture       *bool             `json:"capture"`
		}
		if err := dec.Decode(&p); err != nil {
			return 400, errBody("invalid_request_error", "invalid_json", "", err.Error()), false
		}
		if p.Amount < 1 || p.Amount > 99_999_999 {
			return 400, errBody("invalid_request_error", "amount_too_small", "amount", "Invalid amount."), false
		}
		switch p.PaymentMethod {
		case "tok_visa", "tok_mastercard":
		case "tok_chargeDeclined":
			return 402, errBodyDecline("generic_decline"), true
		case "tok_chargeDeclinedInsufficientFunds":
			return 402, errBodyDecline("insufficient_funds"), true
		default:
			return 400, errBody("invalid_request_error", "invalid_payment_method", "payment_method", "No such token."), false
		}
		f.nextID++
		ch := &Charge{ID: fmt.Sprintf("ch_%d", f.nextID), Object: "charge", Amount: p.Amount,
			Currency: strings.ToLower(p.Currency), Status: ChargeStatusSucceeded, Captured: true, AmountCaptured: p.Amount,
			PaymentMethod: p.PaymentMethod, Description: p.Description, Metadata: p.Metadata, Created: 1700000000}
		if p.Capture != nil && !*p.Capture {
			ch.Status, ch.Captured, ch.AmountCaptured = ChargeStatusRequiresCapture, false, 0
		}
		f.charges = append(f.charges, ch)
		return 200, mustJSON(ch), true
	case strings.HasPrefix(path, "/v1/charges/") && strings.HasSuffix(path, "/capture"):
		var p struct {
			Amount int64 `json:"amount"`
		}
		if err := dec.Decode(&p); err != nil {
			return 400, errBody("invalid_request_error", "invalid_json", "", err.Error()), false
		}
		ch := f.charge(strings.TrimSuffix(strings.TrimPrefix(path, "/v1/charges/"), "/capture"))
		switch {
		case ch == nil:
			return 404, errBody("invalid_request_error", "resource_missing", "id", "No such charge."), false
		case ch.Captured:
			return 400, errBody("invalid_request_error", "charge_already_captured", "", "Charge already captured."), true
		}
		amt := ch.Amount
		if p.Amount > 0 {
			amt = p.Amount
		}
		ch.Captured, ch.Status, ch.AmountCaptured = true, ChargeStatusSucceeded, amt
		return 200, mustJSON(ch), true
	case path == "/v1/refunds":
		var p struct {
			Charge   string            `json:"charge"`
			Amount   int64             `json:"amount"`
			Reason   string            `json:"reason"`
			Metadata map[string]string `json:"metadata"`
		}
		if err := dec.Decode(&p); err != nil {
			return 400, errBody("invalid_request_error", "invalid_json", "", err.Error()), false
		}
		ch := f.charge(p.Charge)
		if ch == nil {
			return 404, errBody("invalid_request_error", "resource_missing", "charge", "No such charge."), false
		}
		remain := ch.AmountCaptured - ch.AmountRefunded
		amt := remain
		if p.Amount > 0 {
			amt = p.Amount
		}
		if amt > remain {
			return 400, errBody("invalid_request_error", "amount_too_large", "amount", "Too much."), true
		}
		f.nextID++
		re := &Refund{ID: fmt.Sprintf("re_%d", f.nextID), Object: "refund", Amount: amt, Charge: ch.ID,
			Currency: ch.Currency, Status: "succeeded", Reason: p.Reason, Metadata: p.Metadata, Created: 1700000000}
		ch.AmountRefunded += amt
		ch.Refunded = ch.AmountRefunded == ch.AmountCaptured
		f.refunds[re.ID] = re
		return 200, mustJSON(re), true
	}
	return 404, errBody("invalid_request_error", "resource_missing", "", "Unknown endpoint."), false
}

func (f *fakeGateway) read(r *http.Request) (int, []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := r.URL.Path
	switch {
	case p == "/v1/charges":
		q := r.URL.Query()
		limit := 10
		if l := q.Get("limit"); l != "" {
			limit, _ = strconv.Atoi(l)
		}
		newest := make([]*Charge, 0, len(f.charges))
		for i := len(f.charges) - 1; i >= 0; i-- {
			newest = append(newest, f.charges[i])
		}
		if after := q.Get("starting_after"); after != "" {
			idx := -1
			for i, ch := range newest {
				if ch.ID == after {
					idx = i
				}
			}
			if idx < 0 {
				return 404, errBody("invalid_request_error", "resource_missing", "starting_after", "No such charge.")
			}
			newest = newest[idx+1:]
		}
		more := len(newest) > limit
		if more {
			newest = newest[:limit]
		}
		return 200, mustJSON(map[string]any{"object": "list", "data": newest, "has_more": more})
	case strings.HasPrefix(p, "/v1/charges/"):
		if ch := f.charge(strings.TrimPrefix(p, "/v1/charges/")); ch != nil {
			return 200, mustJSON(ch)
		}
	case strings.HasPrefix(p, "/v1/refunds/"):
		if re := f.refunds[strings.TrimPrefix(p, "/v1/refunds/")]; re != nil {
			return 200, mustJSON(re)
		}
	}
	return 404, errBody("invalid_request_error", "resource_missing", "id", "No such object.")
}

func (f *fakeGateway) charge(id string) *Charge {
	for _, ch := range f.charges {
		if ch.ID == id {
			return ch
		}
	}
	return nil
}

func canonicalJSON(b []byte) string {
	var v any
	if json.Unmarshal(b, &v) != nil {
		return string(b)
	}
	return string(mustJSON(v)) // encoding/json sorts map keys
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

func errBody(typ, code, param, msg string) []byte {
	e := map[string]string{"type": typ, "code": code, "message": msg}
	if param != "" {
		e["param"] = param
	}
	return mustJSON(map[string]any{"error": e})
}

func errBodyDecline(decline string) []byte {
	return mustJSON(map[string]any{"error": map[string]string{
		"type": "card_error", "code": "card_declined", "decline_code": decline, "message": "Your card was declined."}})
}

func writeRaw(w http.ResponseWriter, status int, body []byte) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(body)
}

func writeErr(w http.ResponseWriter, status int, typ, code, param, msg string) {
	writeRaw(w, status, errBody(typ, code, param, msg))
}

// failFirst answers the first n requests with status (and Retry-After when
// not empty); nothing executes.
func failFirst(n, status int, retryAfter string) fakeOpt {
	return func(f *fakeGateway) {
		f.before = func(i int, w http.ResponseWriter, _ *http.Request) bool {
			if i > n {
				return false
			}
			if retryAfter != "" {
				w.Header().Set("Retry-After", retryAfter)
			}
			writeErr(w, status, "api_error", "", "", "Try again.")
			return true
		}
	}
}

// dropConn closes the connection without a response.
func dropConn(t testing.TB, w http.ResponseWriter) {
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		t.Errorf("hijack: %v", err)
		return
	}
	conn.Close()
}

// hang blocks a handler until the client abandons the request. The 5s
// watchdog only bounds a test whose client fails to abandon it: the handler
// then returns an empty 200, which makes that test fail rather than hang.
func hang(r *http.Request) {
	select {
	case <-r.Context().Done():
	case <-time.After(5 * time.Second):
	}
}

// logBuffer is a JSON slog logger writing into a buffer, safe for the
// concurrent use of a client.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewJSONHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// records decodes the JSON lines.
func (l *logBuffer) records(t testing.TB) []map[string]any {
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(l.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(line), &m))
		out = append(out, m)
	}
	return out
}

// signalHandler is a slog.Handler that sends on ch for each record whose
// message is msg, so a test can act at a known point of a call.
type signalHandler struct {
	msg string
	ch  chan struct{}
}

func (h *signalHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *signalHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		select {
		case h.ch <- struct{}{}:
		default:
		}
	}
	return nil
}
func (h *signalHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *signalHandler) WithGroup(string) slog.Handler      { return h }

func chargeParams(key string) *ChargeParams {
	return &ChargeParams{Amount: 2000, Currency: "usd", PaymentMethod: "tok_visa",
		Description: "Invoice 456", Metadata: map[string]string{"order": "456"}, IdempotencyKey: key}
}
