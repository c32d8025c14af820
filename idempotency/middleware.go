package idempotency

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strconv"
	"strings"
	"time"
)

// Defaults of the middleware's options.
const (
	DefaultTTL          = 24 * time.Hour
	DefaultLease        = 30 * time.Second
	DefaultMaxBodyBytes = 1 << 20
	// DefaultMaxResponseBytes bounds the response stored for one key.
	DefaultMaxResponseBytes = 1 << 20
	// DefaultHandlerTimeout bounds how long a handler runs.
	DefaultHandlerTimeout = time.Minute
	// DefaultRetryAfter is what a 409 or 503 tells the client to wait.
	DefaultRetryAfter = time.Second
)

// Middleware enforces idempotency keys in front of an [http.Handler].
//
// For every request whose method is not safe (anything but GET, HEAD,
// OPTIONS and TRACE, in any letter case) it reads the Idempotency-Key header
// and the body, computes the request's [Fingerprint] and claims the key in
// its [Store]. The first request executes; a later one with the same key and
// fingerprint gets the stored response replayed, with Idempotent-Replayed:
// true; one that arrives while the first still executes gets 409 and
// Retry-After; one with the same key but another fingerprint gets 422,
// whatever the state of the first. Safe methods pass through untouched.
//
// Use [New] to make one; a Middleware is safe for concurrent use.
type Middleware struct {
	store          Store
	ttl            time.Duration
	lease          time.Duration
	storeTimeout   time.Duration
	handlerTimeout time.Duration
	maxBody        int64
	maxResponse    int64
	requireKey     bool
	mismatchStatus int
	retryAfter     time.Duration
	replayHeaders  []string
	now            func() time.Time
	afterFunc      func(kind string, d time.Duration, f func()) stopper // nil: real timers
	scope          func(*http.Request) string
	observe        func(*http.Request, Event)
	writeError     func(http.ResponseWriter, *http.Request, *Error)
	logger         *slog.Logger // nil: slog.Default() at the time of the record
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
// [DefaultLease]). While the handler runs, and until its response is stored,
// the middleware renews the lease every third of it, so a slow handler keeps
// its claim however long it runs. The lease only runs out when its owner is
// gone, or cannot reach the store for a whole lease; then a retry may claim
// the key and execute again, which is only safe if the handler's own side
// effects are transactional.
//
// An owner whose handler is still running when the lease has gone three
// quarters of it without renewal stops treating the key as its own: it
// cancels the handler's context and stores nothing of its answer. The last
// quarter is the margin that keeps the handler from acting on a claim that
// another instance may soon hold, and it must cover the clock skew between
// instances. A response the handler already gave is retried for up to a
// lease after it returned, since a store only takes it while the claim is
// still the owner's. Either way, a response not stored gets the client 503.
func WithLease(d time.Duration) Option {
	return func(m *Middleware) error {
		if d <= 0 {
			return errors.New("idempotency: lease must be positive")
		}
		m.lease = d
		return nil
	}
}

// WithStoreTimeout sets the deadline of every call to the store (default a
// sixth of the lease). It must be at most a quarter of the lease, so that a
// call that hangs fails, and is retried, well before the lease it guards
// runs out. Calls to a [*MemoryStore], which never waits, get no deadline.
func WithStoreTimeout(d time.Duration) Option {
	return func(m *Middleware) error {
		if d <= 0 {
			return errors.New("idempotency: store timeout must be positive")
		}
		m.storeTimeout = d
		return nil
	}
}

// WithHandlerTimeout bounds how long the handler may run (default
// [DefaultHandlerTimeout]): its context ends then, with
// [context.DeadlineExceeded]. The handler's context is detached from the
// client's connection, so a client that hangs up does not stop a payment
// halfway; this deadline is what ends the context of a handler that would
// run for ever. Like every context, it only helps a handler that watches it.
func WithHandlerTimeout(d time.Duration) Option {
	return func(m *Middleware) error {
		if d <= 0 {
			return errors.New("idempotency: handler timeout must be positive")
		}
		m.handlerTimeout = d
		return nil
	}
}

// WithMaxResponseBytes bounds the response stored for a key (default
// [DefaultMaxResponseBytes]). A handler may still answer more: once its
// response grows past the bound, the middleware stores in its place a 500
// with the code idempotency_response_too_large, and then sends the real
// response on to the client as the handler writes it (if the placeholder
// cannot be stored, the client gets 503 instead). A retry of that key gets
// the stored 500 replayed; it never executes again.
func WithMaxResponseBytes(n int64) Option {
	return func(m *Middleware) error {
		if n <= 0 {
			return errors.New("idempotency: max response bytes must be positive")
		}
		m.maxResponse = n
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

// WithOptionalKey lets requests without an Idempotency-Key
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
// account, a tenant, an authenticated user, a session. Keys in different
// scopes never meet, so one customer can never replay another's response,
// nor burn a key that another will send. Authenticate before the
// middleware runs, so that the scope can be trusted.
//
// The default scope is [AuthorizationScope]: each distinct Authorization
// header is a scope of its own, and requests without one share a scope.
// That suits clients with a fixed API key. It does not suit credentials
// that change between the attempts of one operation: after an OAuth token
// refresh, or with per-request signatures (SigV4, a JWT with iat), a retry
// lands in a new scope and executes again. Any authenticated API should
// scope by the account it authenticated, with WithScope(accountOf);
// sessions and cookies need a scope function too, and [WithoutScope] puts
// every request in one scope.
func WithScope(scope func(*http.Request) string) Option {
	return func(m *Middleware) error {
		if scope == nil {
			return errors.New("idempotency: nil scope function")
		}
		m.scope = scope
		return nil
	}
}

// WithoutScope puts every request in one scope, for a service that serves a
// single party: any caller's key then meets every other caller's.
func WithoutScope() Option {
	return func(m *Middleware) error {
		m.scope = func(*http.Request) string { return "" }
		return nil
	}
}

// AuthorizationScope is the default scope: "auth:" and the first 128 bits,
// in hex, of a SHA-256 hash of the request's Authorization header values,
// under a prefix of its own, so that the store never holds a credential;
// "" when the request has none. See [WithScope] for when it does not fit.
func AuthorizationScope(r *http.Request) string {
	auth := r.Header.Values("Authorization")
	if len(auth) == 0 {
		return ""
	}
	h := sha256.New()
	h.Write([]byte("payonce/idempotency scope\x00"))
	for _, v := range auth {
		h.Write([]byte(v))
		h.Write([]byte{0})
	}
	var sum [sha256.Size]byte
	return "auth:" + hex.EncodeToString(h.Sum(sum[:0])[:16])
}

// WithLogger sets where the middleware logs what an operator must know: a
// response that could not be stored. The default is [slog.Default].
func WithLogger(l *slog.Logger) Option {
	return func(m *Middleware) error {
		if l == nil {
			return errors.New("idempotency: nil logger")
		}
		m.logger = l
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
		handlerTimeout: DefaultHandlerTimeout,
		maxBody:        DefaultMaxBodyBytes,
		maxResponse:    DefaultMaxResponseBytes,
		requireKey:     true,
		mismatchStatus: http.StatusUnprocessableEntity,
		retryAfter:     DefaultRetryAfter,
		replayHeaders:  []string{"Content-Type", "Content-Encoding", "Content-Language", "Location"},
		now:            time.Now,
		scope:          AuthorizationScope,
		observe:        func(*http.Request, Event) {},
		writeError:     WriteError,
	}
	for _, opt := range opts {
		if err := opt(m); err != nil {
			return nil, err
		}
	}
	if m.storeTimeout == 0 {
		m.storeTimeout = m.lease / 6
	}
	if m.storeTimeout > m.lease/4 {
		return nil, errors.New("idempotency: the store timeout must be at most a quarter of the lease")
	}
	return m, nil
}

// Outcome is what the middleware did with a request.
type Outcome int

// The outcomes an observer is told of.
const (
	// Executed: the key was claimed, the handler ran and its response was
	// stored, then sent. Event.Err is [ErrResponseTooLarge] if what was
	// stored is the placeholder for a response too large to keep.
	Executed Outcome = iota + 1
	// Replayed: the stored response was sent again.
	Replayed
	// Conflict: the key was in flight; 409.
	Conflict
	// KeyReused: the key belongs to another request; 422.
	KeyReused
	// MissingKey: a request that needs a key came without one; 400.
	MissingKey
	// InvalidKey: the key was malformed; 400.
	InvalidKey
	// Released: the handler ran but called [NotExecuted], so its response
	// was sent without being stored and the key was released.
	Released
	// Unkeyed: a request without a key passed through, under
	// [WithOptionalKey]. Requests with a safe method are not observed.
	Unkeyed
	// Refused: the request was refused before a claim (body too large or
	// unreadable).
	Refused
	// StoreFailed: the store could not answer the claim, or had no room
	// for it ([ErrStoreFull]); 503, and nothing executed.
	StoreFailed
	// NotStored: the handler ran, but its response was not stored (Event.Err
	// says why): the owner gave the claim up (see [WithLease]), or another
	// request holds it. The client got 503 with Retry-After instead of the
	// handler's answer, and the key stays in flight until its lease runs
	// out; a retry after that may execute again, unless a Finish whose
	// answer was lost did store the response, which the retry then gets.
	// The middleware also logs it at level Error.
	NotStored
)

var outcomeNames = [...]string{
	Executed: "executed", Replayed: "replayed", Conflict: "conflict",
	KeyReused: "mismatch", MissingKey: "missing_key", InvalidKey: "invalid_key",
	Released: "released", Unkeyed: "unkeyed", Refused: "refused",
	StoreFailed: "store_failed", NotStored: "not_stored",
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
	Err        error  // what went wrong, if anything: a store error, a lost lease
}

// ErrResponseTooLarge is the [Event].Err of a request whose response was
// larger than [WithMaxResponseBytes] allows: it was sent once, and a
// placeholder was stored in its place.
var ErrResponseTooLarge = errors.New("idempotency: response too large to store")

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

// NotExecuted tells the middleware that the handler refused the request
// before executing anything, as on a validation error: its response is sent
// but not stored, and the key is released so that a corrected request may
// use it. Call it before writing the response. It reports whether ctx came
// from a request the middleware claimed a key for.
//
// Never call it once side effects may have happened: a retry would execute
// them again. The exception is a handler whose every side effect is safe to
// repeat: writes in its store transaction ([Transaction]), which NotExecuted
// rolls back, and calls that carry a key from [DerivedKey], which the other
// service replays. Such a handler calls NotExecuted when a call fails with
// an outcome it cannot know, so that the retry executes again and finds it.
func NotExecuted(ctx context.Context) bool {
	r, ok := requestFrom(ctx)
	if ok {
		r.notExecuted.Store(true)
	}
	return ok
}

// Wrap returns next behind the middleware.
//
// The handler runs on a context that keeps the request's values but not its
// cancellation: a client that hangs up does not stop it halfway, and its
// retry finds the outcome stored. The context ends at the handler's own
// deadline ([WithHandlerTimeout]), or when the middleware can no longer
// renew the claim (its cause is then [ErrLeaseExpired] or [ErrLeaseLost]).
//
// If next panics once it may have executed, that is, unless it called
// [NotExecuted] first, the middleware stores a 500 for the key, as it stores
// any answer after execution, sends it, and panics again with the same
// value: a retry gets the 500 replayed instead of executing again.
func (m *Middleware) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if safeMethod(r.Method) {
			next.ServeHTTP(w, r)
			return
		}
		m.serve(w, r, next)
	})
}

// safeMethod reports whether method is one that RFC 9110 calls safe, in any
// letter case: a server that matches methods loosely must not let "post"
// slip past the middleware.
func safeMethod(method string) bool {
	switch strings.ToUpper(method) {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	return false
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
	body, err := readBody(http.MaxBytesReader(w, r.Body, m.maxBody), r.ContentLength, m.maxBody)
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
	// From here on no store call follows the client's cancellation: a claim
	// whose answer is lost with a hung-up client would hold the key for a
	// whole lease with nobody executing.
	base := context.WithoutCancel(r.Context())
	ctx, cancel := m.callContext(base)
	res, err := m.store.Claim(ctx, c)
	cancel()
	if err != nil {
		ev.Outcome, ev.Err = StoreFailed, err
		if errors.Is(err, ErrStoreFull) {
			w.Header().Set("Retry-After", retryAfterSeconds(m.retryAfter))
			ev.StatusCode = m.fail(w, r, http.StatusServiceUnavailable, "api_error", "idempotency_store_full",
				"the idempotency store has no room for another key right now, so nothing was executed; retry with the same key")
			return
		}
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
		m.execute(w, r, next, m.own(base, c), body, &ev)
	default:
		ev.Outcome, ev.Err = StoreFailed, errors.New("idempotency: store answered an unknown state "+res.State.String())
		ev.StatusCode = m.unavailable(w, r)
	}
}

// readBody reads all of r, as io.ReadAll does, into a buffer sized for the
// length the request declares, if it declares one within limit: a small
// body then costs a small allocation, rather than io.ReadAll's 512 bytes.
func readBody(r io.Reader, length, limit int64) ([]byte, error) {
	if length <= 0 || length > limit {
		return io.ReadAll(r)
	}
	buf := make([]byte, 0, length+1) // the extra byte lets the last Read see EOF
	for {
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
	}
}

// execute runs next under the claim that o holds, stores what it answers,
// and only then sends it: a client that got an answer must find it stored
// when it retries.
func (m *Middleware) execute(w http.ResponseWriter, r *http.Request, next http.Handler, o *owner, body []byte, ev *Event) {
	defer o.close()
	hctx, cancel := context.WithTimeout(o.handlerCtx, m.handlerTimeout)
	defer cancel()
	x := &execution{req: request{m: m, o: o}, w: w, r: r, ev: ev}
	req := &x.req
	// A transaction that no path below ended, as when the store panics in
	// its Finish, is rolled back, so that its connection and locks go.
	defer m.rollback(o, req)
	x.rec = recorder{header: make(http.Header), max: m.maxResponse, w: w, exec: x}
	rec := &x.rec
	x.ctx = handlerContext{Context: hctx, req: req}
	r2 := r.WithContext(&x.ctx)
	x.body.Reset(body)
	r2.Body = &x.body
	r2.ContentLength = int64(len(body))

	panicked := true
	var panicValue any
	func() {
		defer func() {
			if panicked {
				panicValue = recover()
				// The panic goes on from execute, which hides where it
				// began: log the handler's own stack.
				m.log().LogAttrs(r.Context(), slog.LevelError, "idempotency: the handler panicked",
					slog.String("method", r.Method), slog.String("path", r.URL.Path),
					slog.String("idempotency_key", o.c.Key), slog.Any("panic", panicValue),
					slog.String("stack", string(debug.Stack())))
			}
		}()
		next.ServeHTTP(rec, r2)
		panicked = false
	}()

	req.close("the handler has returned")
	switch {
	case req.notExecuted.Load() && !rec.streaming:
		o.stop()
		// Before the release, which the transaction could hold up.
		m.rollback(o, req)
		ev.Outcome, ev.StatusCode = Released, rec.status()
		ev.Err = m.release(o)
		if panicked {
			panic(panicValue) // nothing executed, and there is no answer to send
		}
		rec.writeTo(w)
	case rec.streaming:
		// The placeholder was stored, or could not be, when the response
		// outgrew the bound: the client already has its answer.
	default:
		resp := rec.response(m.replayHeaders)
		if panicked {
			// Half of a panicked handler's writes may be done: keep none
			// of them, but store the 500, since what it did elsewhere is
			// unknown.
			m.rollback(o, req)
			resp = m.errorResponse(r, &Error{StatusCode: http.StatusInternalServerError, Type: "api_error",
				Code: "handler_panicked", Message: "the request failed after it may have executed; " +
					"this answer is stored for its Idempotency-Key, so retrying it does not execute it again"})
			rec = &recorder{header: resp.Header.Clone(), code: resp.StatusCode, wroteHeader: true}
			rec.body.Write(resp.Body)
		}
		if err := m.storeResponse(o, req, resp); err != nil {
			m.notStored(w, r, o, resp.StatusCode, err, ev)
			break
		}
		ev.Outcome, ev.StatusCode = Executed, rec.status()
		rec.writeTo(w)
	}
	if panicked {
		// Push the answer out before the panic ends the connection.
		http.NewResponseController(w).Flush()
		panic(panicValue)
	}
}

// execution is what execute makes for one request, in one allocation
// rather than one each: what the handler's context carries for the
// middleware, and that context itself, the recorder of the handler's
// response, the reader of the request body it is given, and what the
// recorder needs to call overflow.
type execution struct {
	req  request
	ctx  handlerContext
	rec  recorder
	body bodyReader

	w  http.ResponseWriter
	r  *http.Request
	ev *Event
}

// overflow is [Middleware.overflow] for this execution's response.
func (x *execution) overflow(rec *recorder) error {
	return x.req.m.overflow(x.w, x.r, x.req.o, &x.req, rec, x.ev)
}

// handlerContext is the handler's context: its parent, with the request
// as the value of requestKey, as [context.WithValue] would make it, but
// inside the execution's allocation. Everything else is the parent's: a
// context derived from it finds the parent's cancelCtx through Value, and
// is cancelled with it, with the same error and cause.
type handlerContext struct {
	context.Context
	req *request
}

func (c *handlerContext) Value(key any) any {
	if key == (requestKey{}) {
		return c.req
	}
	return c.Context.Value(key)
}

// bodyReader is the request body a handler reads: the body the middleware
// read, from its start.
type bodyReader struct{ bytes.Reader }

// Close does nothing: the body is in memory.
func (*bodyReader) Close() error { return nil }

// storeResponse stores resp for the claim o holds once the handler has
// returned: in the transaction the handler began, committing it, if it
// began one. If the owner was lost while the handler ran, the answer may be
// the cancellation's, and storing it would poison the key: then it stores
// nothing, rolls the transaction back, and returns why.
func (m *Middleware) storeResponse(o *owner, req *request, resp *memoryResponse) error {
	if err := o.handlerReturned(); err != nil {
		m.rollback(o, req)
		return err
	}
	if tx := req.openTx(); tx != nil {
		err := o.finishTx(tx, &resp.Response)
		// Only once Finish has returned: if it panics, the transaction is
		// still open, for execute's deferred rollback.
		req.ended()
		return err
	}
	return o.finish(resp)
}

// rollback rolls back the transaction the handler began, if it began one
// that has not ended. Its error is not worth more: a transaction whose
// rollback fails is on a broken connection, which the database rolls back
// itself.
func (m *Middleware) rollback(o *owner, req *request) {
	tx := req.openTx()
	if tx == nil {
		return
	}
	defer req.ended()
	ctx, cancel := m.callContext(o.base)
	defer cancel()
	_ = tx.Rollback(ctx)
}

// overflow is called once, when the handler's response grows past
// maxResponse: it stores a placeholder for the key, or releases it if the
// handler executed nothing, then lets the response through to the client.
// A transaction the handler began is committed with the placeholder, or
// rolled back, at that moment, since the client gets the response from
// then on.
func (m *Middleware) overflow(w http.ResponseWriter, r *http.Request, o *owner, req *request, rec *recorder, ev *Event) error {
	req.close("the response outgrew WithMaxResponseBytes, so it was stored, and the transaction ended, before it streamed")
	if req.notExecuted.Load() {
		o.stop()
		m.rollback(o, req)
		ev.Outcome, ev.StatusCode = Released, rec.status()
		ev.Err = m.release(o)
		return rec.flushTo(w)
	}
	resp := m.errorResponse(r, &Error{StatusCode: http.StatusInternalServerError, Type: "api_error",
		Code: "idempotency_response_too_large",
		Message: "the request executed, but its response was larger than " + strconv.FormatInt(m.maxResponse, 10) +
			" bytes, too large to store for its Idempotency-Key; it was sent once, and is not replayed"})
	if err := m.storeResponse(o, req, resp); err != nil {
		m.notStored(w, r, o, rec.status(), err, ev)
		return err
	}
	ev.Outcome, ev.StatusCode, ev.Err = Executed, rec.status(), ErrResponseTooLarge
	return rec.flushTo(w)
}

// notStored answers 503 for an execution whose response is not stored, and
// says so to the observer and the log.
func (m *Middleware) notStored(w http.ResponseWriter, r *http.Request, o *owner, status int, cause error, ev *Event) {
	ev.Outcome, ev.Err = NotStored, cause
	m.log().LogAttrs(r.Context(), slog.LevelError, "idempotency: the request executed, but its response could not be stored",
		slog.String("method", r.Method), slog.String("path", r.URL.Path), slog.String("idempotency_key", o.c.Key),
		slog.Int("status", status), slog.String("error", cause.Error()))
	w.Header().Set("Retry-After", retryAfterSeconds(o.remaining()))
	ev.StatusCode = m.fail(w, r, http.StatusServiceUnavailable, "api_error", "idempotency_response_not_stored",
		"the request may have executed, but its result could not be stored for its Idempotency-Key; "+
			"retry with the same key after Retry-After")
}

// release frees the key of a request that executed nothing. It is tried
// once: if it fails, the key stays in flight until its lease runs out, which
// delays the corrected request but never executes anything twice.
func (m *Middleware) release(o *owner) error {
	c := o.c
	c.Now = m.now()
	ctx, cancel := m.callContext(o.base)
	defer cancel()
	return m.store.Release(ctx, c)
}

func (m *Middleware) log() *slog.Logger {
	if m.logger != nil {
		return m.logger
	}
	return slog.Default()
}

// errorResponse renders e with the error writer, as a response to store.
func (m *Middleware) errorResponse(r *http.Request, e *Error) *memoryResponse {
	rec := &recorder{header: make(http.Header), max: -1}
	m.writeError(rec, r, e)
	return rec.response(m.replayHeaders)
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

// recorder buffers the handler's response, so that it is stored before the
// client sees it, up to max bytes (no bound if max < 0). Past that it calls
// exec's overflow once, and from then on writes straight through to w.
type recorder struct {
	header      http.Header
	code        int
	wroteHeader bool
	body        bytes.Buffer

	max       int64
	w         http.ResponseWriter
	exec      *execution // whose overflow to call; needed only if max >= 0
	streaming bool       // overflow was called
	err       error      // what overflow answered; every later write fails with it
}

func (rec *recorder) Header() http.Header { return rec.header }

func (rec *recorder) WriteHeader(code int) {
	if code >= 100 && code < 200 && code != http.StatusSwitchingProtocols {
		// An informational answer, such as 103 Early Hints, is no outcome:
		// it goes to the client at once, and is not stored.
		if rec.w != nil && !rec.wroteHeader {
			h := rec.w.Header()
			for k, v := range rec.header {
				h[k] = v
			}
			rec.w.WriteHeader(code)
		}
		return
	}
	if !rec.wroteHeader {
		rec.code, rec.wroteHeader = code, true
	}
}

func (rec *recorder) Write(p []byte) (int, error) {
	rec.WriteHeader(http.StatusOK)
	if rec.streaming {
		if rec.err != nil {
			return 0, rec.err
		}
		return rec.w.Write(p)
	}
	if rec.max < 0 || int64(rec.body.Len())+int64(len(p)) <= rec.max {
		return rec.body.Write(p)
	}
	rec.streaming = true
	if rec.err = rec.exec.overflow(rec); rec.err != nil {
		return 0, rec.err
	}
	return rec.w.Write(p)
}

func (rec *recorder) status() int {
	if !rec.wroteHeader {
		return http.StatusOK
	}
	return rec.code
}

// response is the recorded response to store, with copies of the headers
// named, its values in one slice as [http.Header.Clone] makes them. Its body
// is the recorder's buffer, which nothing writes to once the handler has
// returned. It comes with room for its cost, for a [MemoryStore].
func (rec *recorder) response(names []string) *memoryResponse {
	n, values := 0, 0
	for _, name := range names {
		if v, ok := rec.header[name]; ok {
			n++
			values += len(v)
		}
	}
	h := make(http.Header, n)
	all := make([]string, values)
	for _, name := range names {
		if v, ok := rec.header[name]; ok {
			if len(v) == 0 {
				h[name] = nil
				continue
			}
			k := copy(all, v)
			h[name] = all[:k:k]
			all = all[k:]
		}
	}
	return &memoryResponse{Response: Response{StatusCode: rec.status(), Header: h, Body: rec.body.Bytes()}}
}

// writeTo sends the buffered response, whole, with its length, so that a
// client can tell it got all of it even if a panic follows; and its
// trailers, if it declared any, after it.
func (rec *recorder) writeTo(w http.ResponseWriter) {
	trailers := rec.trailers()
	h := w.Header()
	for k, v := range rec.header {
		if _, ok := trailers[k]; !ok {
			h[k] = v
		}
	}
	code := rec.status()
	if len(trailers) == 0 && code >= 200 && code != http.StatusNoContent && code != http.StatusNotModified {
		h.Set("Content-Length", strconv.Itoa(rec.body.Len()))
	}
	w.WriteHeader(code)
	w.Write(rec.body.Bytes())
	for k := range trailers {
		if v, ok := rec.header[k]; ok {
			h[k] = v
		}
	}
}

// trailers returns the names of the trailers the handler declared, in the
// Trailer header or with [http.TrailerPrefix].
func (rec *recorder) trailers() map[string]struct{} {
	var names map[string]struct{}
	add := func(k string) {
		if names == nil {
			names = map[string]struct{}{}
		}
		names[k] = struct{}{}
	}
	for _, v := range rec.header["Trailer"] {
		for n := range strings.SplitSeq(v, ",") {
			if n = strings.TrimSpace(n); n != "" {
				add(http.CanonicalHeaderKey(n))
			}
		}
	}
	for k := range rec.header {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			add(k)
		}
	}
	return names
}

// flushTo sends what the recorder holds so far, when the response has
// outgrown it, and lets the rest through.
func (rec *recorder) flushTo(w http.ResponseWriter) error {
	h := w.Header()
	for k, v := range rec.header {
		h[k] = v
	}
	w.WriteHeader(rec.status())
	_, err := w.Write(rec.body.Bytes())
	rec.body = bytes.Buffer{}
	return err
}
