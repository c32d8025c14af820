package idempotency

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults of the middleware's options.
const (
	DefaultTTL          = 24 * time.Hour
	DefaultLease        = 30 * time.Second
	DefaultMaxBodyBytes = 1 << 20
	// DefaultRetryAfter is what a 409 or 503 tells the client to wait.
	DefaultRetryAfter = time.Second
)

// Middleware enforces idempotency keys in front of an [http.Handler].
//
// For every POST and PATCH it reads the Idempotency-Key header and the body,
// computes the request's [Fingerprint] and claims the key in its [Store].
// The first request executes; a later one with the same key and fingerprint
// gets the stored response replayed, with Idempotent-Replayed: true; one that
// arrives while the first still executes gets 409 and Retry-After; one with
// the same key but another fingerprint gets 422, whatever the state of the
// first. Other methods pass through untouched.
//
// Use [New] to make one; a Middleware is safe for concurrent use.
type Middleware struct {
	store          Store
	ttl            time.Duration
	lease          time.Duration
	maxBody        int64
	requireKey     bool
	mismatchStatus int
	retryAfter     time.Duration
	replayHeaders  []string
	now            func() time.Time
	scope          func(*http.Request) string
	observe        func(*http.Request, Event)
	writeError     func(http.ResponseWriter, *http.Request, *Error)
}

// An Option configures a [Middleware].
type Option func(*Middleware) error

// WithTTL sets how long a finished key is remembered (default [DefaultTTL]).
// A retry that arrives later executes again, so make it longer than the
// longest time your clients keep retrying.
func WithTTL(d time.Duration) Option {
	return func(m *Middleware) error {
		if d <= 0 {
			return errors.New("idempotency: TTL must be positive")
		}
		m.ttl = d
		return nil
	}
}

// WithLease sets how long an in-flight claim holds without renewal (default
// [DefaultLease]). While the handler runs the middleware renews the lease
// every third of it, so a slow handler keeps its claim however long it runs;
// the lease only runs out when its owner is gone, and then a retry may claim
// the key and execute again. That re-execution is only safe if the handler's
// own side effects are transactional.
func WithLease(d time.Duration) Option {
	return func(m *Middleware) error {
		if d <= 0 {
			return errors.New("idempotency: lease must be positive")
		}
		m.lease = d
		return nil
	}
}

// WithMaxBodyBytes bounds the request body the middleware reads to
// fingerprint it (default [DefaultMaxBodyBytes]); larger bodies get 413.
func WithMaxBodyBytes(n int64) Option {
	return func(m *Middleware) error {
		if n <= 0 {
			return errors.New("idempotency: max body bytes must be positive")
		}
		m.maxBody = n
		return nil
	}
}

// WithOptionalKey lets POST and PATCH requests without an Idempotency-Key
// through, executing each one, as some gateways do. Requests that carry a
// key are still held to it. It exists to demonstrate what goes wrong without
// keys; a payment endpoint should not use it.
func WithOptionalKey() Option {
	return func(m *Middleware) error {
		m.requireKey = false
		return nil
	}
}

// WithMismatchStatus sets the status for a key reused with another request:
// 422, as the IETF draft says (the default), or 400, as Stripe answers.
func WithMismatchStatus(status int) Option {
	return func(m *Middleware) error {
		if status != http.StatusUnprocessableEntity && status != http.StatusBadRequest {
			return errors.New("idempotency: mismatch status must be 422 or 400")
		}
		m.mismatchStatus = status
		return nil
	}
}

// WithReplayHeaders adds response headers to store and replay besides the
// defaults (Content-Type, Content-Encoding, Content-Language, Location).
// Headers that describe one delivery, such as Date or a request ID, should
// not be replayed.
func WithReplayHeaders(names ...string) Option {
	return func(m *Middleware) error {
		for _, n := range names {
			if n == "" {
				return errors.New("idempotency: empty replay header name")
			}
			m.replayHeaders = append(m.replayHeaders, http.CanonicalHeaderKey(n))
		}
		return nil
	}
}

// WithClock sets the clock that dates claims and expiries (default
// [time.Now]). Tests use it to expire keys without waiting.
func WithClock(now func() time.Time) Option {
	return func(m *Middleware) error {
		if now == nil {
			return errors.New("idempotency: nil clock")
		}
		m.now = now
		return nil
	}
}

// WithScope sets the function that names whose key a request carries: an
// account, a tenant, an authenticated user. Keys in different scopes never
// meet, so one customer can never replay another's response. The default
// puts every request in one scope, which is right only when the handler
// serves a single party; authenticate before the middleware runs, so that
// the scope can be trusted.
func WithScope(scope func(*http.Request) string) Option {
	return func(m *Middleware) error {
		if scope == nil {
			return errors.New("idempotency: nil scope function")
		}
		m.scope = scope
		return nil
	}
}

// WithObserver registers a function called once for every request the
// middleware decides on, after its response is written. Use it for logs and
// metrics. It must not block.
func WithObserver(observe func(*http.Request, Event)) Option {
	return func(m *Middleware) error {
		if observe == nil {
			return errors.New("idempotency: nil observer")
		}
		m.observe = observe
		return nil
	}
}

// WithErrorWriter replaces the writer of the middleware's own error
// responses, for APIs whose errors have another shape. Any Retry-After header
// is already set when it is called. The default writes
// {"error":{"type":…,"code":…,"message":…}} as JSON.
func WithErrorWriter(write func(http.ResponseWriter, *http.Request, *Error)) Option {
	return func(m *Middleware) error {
		if write == nil {
			return errors.New("idempotency: nil error writer")
		}
		m.writeError = write
		return nil
	}
}

// New returns a Middleware over store.
func New(store Store, opts ...Option) (*Middleware, error) {
	if store == nil {
		return nil, errors.New("idempotency: nil store")
	}
	m := &Middleware{
		store:          store,
		ttl:            DefaultTTL,
		lease:          DefaultLease,
		maxBody:        DefaultMaxBodyBytes,
		requireKey:     true,
		mismatchStatus: http.StatusUnprocessableEntity,
		retryAfter:     DefaultRetryAfter,
		replayHeaders:  []string{"Content-Type", "Content-Encoding", "Content-Language", "Location"},
		now:            time.Now,
		scope:          func(*http.Request) string { return "" },
		observe:        func(*http.Request, Event) {},
		writeError:     WriteError,
	}
	for _, opt := range opts {
		if err := opt(m); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// Outcome is what the middleware did with a request.
type Outcome int

// The outcomes an observer is told of.
const (
	// Executed: the key was claimed, the handler ran and its response was
	// stored (Event.Err is set if storing failed).
	Executed Outcome = iota + 1
	// Replayed: the stored response was sent again.
	Replayed
	// Conflict: the key was in flight; 409.
	Conflict
	// KeyReused: the key belongs to another request; 422.
	KeyReused
	// MissingKey: a POST or PATCH came without a key; 400.
	MissingKey
	// InvalidKey: the key was malformed; 400.
	InvalidKey
	// Released: the handler ran but called [NotExecuted], so its response
	// was sent without being stored and the key was released.
	Released
	// Unkeyed: a request passed through without a key (other methods, or
	// [WithOptionalKey]).
	Unkeyed
	// Refused: the request was refused before a claim (body too large or
	// unreadable).
	Refused
	// StoreFailed: the store could not answer the claim; 503.
	StoreFailed
)

var outcomeNames = [...]string{
	Executed: "executed", Replayed: "replayed", Conflict: "conflict",
	KeyReused: "mismatch", MissingKey: "missing_key", InvalidKey: "invalid_key",
	Released: "released", Unkeyed: "unkeyed", Refused: "refused",
	StoreFailed: "store_failed",
}

// String returns the outcome's snake_case name, as logs and the mock's
// request history show it.
func (o Outcome) String() string {
	if o > 0 && int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

// Event tells an observer what happened to one request.
type Event struct {
	Outcome    Outcome
	Scope      string
	Key        string // empty when the request had none
	StatusCode int    // the status sent to the client
	Err        error  // a store error, if one occurred
}

// Error is an error response the middleware itself sends.
type Error struct {
	StatusCode int
	Type       string // "idempotency_error", "invalid_request_error" or "api_error"
	Code       string // such as "idempotency_key_in_use"
	Message    string
}

func (e *Error) Error() string { return e.Code + ": " + e.Message }

// WriteError writes e as {"error":{"type","code","message"}}, the default
// format of the middleware's error responses.
func WriteError(w http.ResponseWriter, _ *http.Request, e *Error) {
	body, _ := json.Marshal(map[string]any{"error": map[string]string{
		"type": e.Type, "code": e.Code, "message": e.Message,
	}})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.StatusCode)
	w.Write(append(body, '\n'))
}

type attemptKey struct{}

// attempt is what the handler can tell the middleware through its context.
type attempt struct{ notExecuted atomic.Bool }

// NotExecuted tells the middleware that the handler refused the request
// before executing anything, as on a validation error: its response is sent
// but not stored, and the key is released so that a corrected request may
// use it. Call it before writing the response. It reports whether ctx came
// from a request the middleware claimed a key for.
//
// Never call it once side effects may have happened: a retry would execute
// them again.
func NotExecuted(ctx context.Context) bool {
	a, ok := ctx.Value(attemptKey{}).(*attempt)
	if ok {
		a.notExecuted.Store(true)
	}
	return ok
}

// Wrap returns next behind the middleware.
//
// If next panics, the claim is released and the panic goes on: the
// middleware cannot know what next did before it panicked, so a handler
// whose side effects are not transactional must not panic after them.
func (m *Middleware) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodPost && r.Method != http.MethodPatch {
			next.ServeHTTP(w, r)
			return
		}
		m.serve(w, r, next)
	})
}

func (m *Middleware) serve(w http.ResponseWriter, r *http.Request, next http.Handler) {
	ev := Event{Scope: m.scope(r)}
	defer func() { m.observe(r, ev) }()

	values := r.Header.Values("Idempotency-Key")
	if len(values) == 0 {
		if !m.requireKey {
			ev.Outcome = Unkeyed
			next.ServeHTTP(w, r)
			return
		}
		ev.Outcome = MissingKey
		ev.StatusCode = m.fail(w, r, http.StatusBadRequest, "idempotency_error", "idempotency_key_missing",
			"this request needs an Idempotency-Key header: send one key per logical operation, the same on every retry")
		return
	}
	if len(values) > 1 {
		ev.Outcome = InvalidKey
		ev.StatusCode = m.fail(w, r, http.StatusBadRequest, "idempotency_error", "idempotency_key_invalid",
			"send exactly one Idempotency-Key header")
		return
	}
	key, err := ParseKey(values[0])
	if err != nil {
		ev.Outcome = InvalidKey
		ev.StatusCode = m.fail(w, r, http.StatusBadRequest, "idempotency_error", "idempotency_key_invalid", err.Error())
		return
	}
	ev.Key = key

	if r.Body == nil {
		r.Body = http.NoBody
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, m.maxBody))
	if err != nil {
		ev.Outcome = Refused
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			ev.StatusCode = m.fail(w, r, http.StatusRequestEntityTooLarge, "invalid_request_error", "body_too_large",
				"the request body is larger than "+strconv.FormatInt(m.maxBody, 10)+" bytes")
		} else {
			ev.StatusCode = m.fail(w, r, http.StatusBadRequest, "invalid_request_error", "body_unreadable",
				"the request body could not be read")
		}
		return
	}

	c := Claim{
		Scope:       ev.Scope,
		Key:         key,
		Fingerprint: Fingerprint(r, body),
		Token:       rand.Text(),
		Now:         m.now(),
		Lease:       m.lease,
		TTL:         m.ttl,
	}
	res, err := m.store.Claim(r.Context(), c)
	if err != nil {
		ev.Outcome, ev.Err = StoreFailed, err
		ev.StatusCode = m.unavailable(w, r)
		return
	}
	switch res.State {
	case Finished:
		ev.Outcome, ev.StatusCode = Replayed, res.Response.StatusCode
		replay(w, res.Response)
	case Mismatch:
		ev.Outcome = KeyReused
		ev.StatusCode = m.fail(w, r, m.mismatchStatus, "idempotency_error", "idempotency_key_reused",
			"this Idempotency-Key was already used with a different request (another body or endpoint); "+
				"use a new key for a new operation, and the same body for a retry")
	case InFlight:
		ev.Outcome = Conflict
		w.Header().Set("Retry-After", retryAfterSeconds(m.retryAfter))
		ev.StatusCode = m.fail(w, r, http.StatusConflict, "idempotency_error", "idempotency_key_in_use",
			"a request with this Idempotency-Key is still being processed; retry after a moment with the same key")
	case Claimed:
		ev = m.execute(w, r, next, c, body, ev)
	default:
		ev.Outcome, ev.Err = StoreFailed, errors.New("idempotency: store answered an unknown state "+res.State.String())
		ev.StatusCode = m.unavailable(w, r)
	}
}

// execute runs next under the claim c and stores what it answers.
func (m *Middleware) execute(w http.ResponseWriter, r *http.Request, next http.Handler, c Claim, body []byte, ev Event) Event {
	// The outcome must be stored even if the client hangs up mid-request:
	// the side effects happened, and its retry must see them.
	storeCtx := context.WithoutCancel(r.Context())

	hb := m.heartbeat(storeCtx, c)
	a := &attempt{}
	rec := &recorder{header: make(http.Header)}
	r2 := r.WithContext(context.WithValue(r.Context(), attemptKey{}, a))
	r2.Body = io.NopCloser(bytes.NewReader(body))
	r2.ContentLength = int64(len(body))

	func() {
		defer func() {
			if p := recover(); p != nil {
				hb.stop()
				c.Now = m.now()
				m.store.Release(storeCtx, c)
				panic(p)
			}
		}()
		next.ServeHTTP(rec, r2)
	}()
	hb.stop()

	c.Now = m.now()
	if a.notExecuted.Load() {
		ev.Outcome, ev.Err = Released, m.store.Release(storeCtx, c)
	} else {
		ev.Outcome, ev.Err = Executed, m.store.Finish(storeCtx, c, rec.response(m.replayHeaders))
	}
	// Whatever the store said, the handler ran: its real answer is the only
	// truthful one to send. If it was not stored, the lease keeps the key
	// busy until it runs out, rather than inviting a second execution now.
	ev.StatusCode = rec.status()
	rec.writeTo(w)
	return ev
}

func (m *Middleware) fail(w http.ResponseWriter, r *http.Request, status int, typ, code, msg string) int {
	m.writeError(w, r, &Error{StatusCode: status, Type: typ, Code: code, Message: msg})
	return status
}

func (m *Middleware) unavailable(w http.ResponseWriter, r *http.Request) int {
	w.Header().Set("Retry-After", retryAfterSeconds(m.retryAfter))
	return m.fail(w, r, http.StatusServiceUnavailable, "api_error", "idempotency_store_unavailable",
		"the idempotency store is unavailable, so nothing was executed; retry with the same key")
}

func retryAfterSeconds(d time.Duration) string {
	return strconv.Itoa(max(1, int((d+time.Second-1)/time.Second)))
}

func replay(w http.ResponseWriter, resp *Response) {
	h := w.Header()
	for k, v := range resp.Header {
		h[k] = append([]string(nil), v...)
	}
	h.Set("Idempotent-Replayed", "true")
	h.Set("Content-Length", strconv.Itoa(len(resp.Body)))
	w.WriteHeader(resp.StatusCode)
	w.Write(resp.Body)
}

// heartbeat renews c's lease every third of the lease until stopped.
type heartbeat struct {
	mu      sync.Mutex
	timer   *time.Timer
	stopped bool
}

func (m *Middleware) heartbeat(ctx context.Context, c Claim) *heartbeat {
	hb := &heartbeat{}
	interval := m.lease / 3
	var renew func()
	renew = func() {
		c.Now = m.now()
		if err := m.store.Renew(ctx, c); errors.Is(err, ErrLeaseLost) {
			return // another request owns the key now; renewing is pointless
		}
		hb.mu.Lock()
		defer hb.mu.Unlock()
		if !hb.stopped {
			hb.timer = time.AfterFunc(interval, renew)
		}
	}
	hb.mu.Lock()
	defer hb.mu.Unlock()
	hb.timer = time.AfterFunc(interval, renew)
	return hb
}

func (hb *heartbeat) stop() {
	hb.mu.Lock()
	defer hb.mu.Unlock()
	hb.stopped = true
	hb.timer.Stop()
}

// recorder buffers the handler's response, so that it is stored before the
// client sees it: a client that got an answer must find it stored when it
// retries.
type recorder struct {
	header      http.Header
	code        int
	wroteHeader bool
	body        bytes.Buffer
}

func (rec *recorder) Header() http.Header { return rec.header }

func (rec *recorder) WriteHeader(code int) {
	if !rec.wroteHeader {
		rec.code, rec.wroteHeader = code, true
	}
}

func (rec *recorder) Write(p []byte) (int, error) {
	rec.WriteHeader(http.StatusOK)
	return rec.body.Write(p)
}

func (rec *recorder) status() int {
	if !rec.wroteHeader {
		return http.StatusOK
	}
	return rec.code
}

func (rec *recorder) response(names []string) *Response {
	h := make(http.Header, len(names))
	for _, n := range names {
		if v, ok := rec.header[n]; ok {
			h[n] = append([]string(nil), v...)
		}
	}
	return &Response{StatusCode: rec.status(), Header: h, Body: rec.body.Bytes()}
}

func (rec *recorder) writeTo(w http.ResponseWriter) {
	h := w.Header()
	for k, v := range rec.header {
		h[k] = v
	}
	w.WriteHeader(rec.status())
	w.Write(rec.body.Bytes())
}
