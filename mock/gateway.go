package mock

import (
	"context"
	"crypto/rand"
	"errors"
	"log/slog"
	"net/http"
	"path"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/payonce/payonce/idempotency"
)

// Gateway is the fake payment gateway: an [http.Handler] that serves the
// payonce API under /v1/, in payonce's JSON dialect and in Stripe's form
// dialect (told apart as docs/protocol.md §9 says), and the control surface
// under /_mock/ and /healthz.
// Its methods inject faults and inspect what happened; they are safe to call
// while requests are served.
//
// Create one with [New]. Each Gateway has its own accounts, keys, faults,
// clock and history: two gateways in one process never meet.
type Gateway struct {
	cfg      config
	offset   atomic.Int64 // nanoseconds the clock is ahead of real time
	world    atomic.Pointer[world]
	gen      atomic.Uint64
	stop     chan struct{} // closed when a Server closes: ends every hold
	stopOnce sync.Once
	control  *http.ServeMux
	logPC    uintptr      // the source of the request log's records
	dl       deliveryRoot // webhook deliveries, across resets
}

var _ http.Handler = (*Gateway)(nil)

// New returns a gateway configured by opts, or the first option's error.
func New(opts ...Option) (*Gateway, error) {
	cfg := config{
		ttl:            idempotency.DefaultTTL,
		mismatchStatus: http.StatusUnprocessableEntity,
		historyLimit:   DefaultHistoryLimit,
		historyBytes:   DefaultHistoryBytes,
	}
	for _, opt := range opts {
		if opt == nil {
			return nil, errors.New("mock: nil option")
		}
		if err := opt(&cfg); err != nil {
			return nil, err
		}
	}
	g := &Gateway{cfg: cfg, stop: make(chan struct{}), logPC: callerPC()}
	if !cfg.start.IsZero() {
		g.offset.Store(int64(time.Until(cfg.start)))
	}
	g.control = g.controlRoutes()
	w, err := g.newWorld()
	if err != nil {
		return nil, err
	}
	g.world.Store(w)
	return g, nil
}

// Now returns the time on the gateway's clock: the real time, plus whatever
// [Gateway.AdvanceClock] added. It dates charges and expires keys.
func (g *Gateway) Now() time.Time {
	return time.Now().Add(time.Duration(g.offset.Load()))
}

// AdvanceClock moves the gateway's clock forward by d. Moving it past the
// TTL expires idempotency keys at once. It panics if d is negative.
//
// Moving it past the idempotency lease (30 seconds) while a request is held
// in flight, by a delay fault, frees that request's key, as if its server
// had died, until the held request renews its claim (every 10 seconds of
// real time), as a live server would: a retry sent at once executes again,
// and the held request, once released, finds its claim taken and answers
// 503 idempotency_response_not_stored.
func (g *Gateway) AdvanceClock(d time.Duration) {
	if d < 0 {
		panic("mock: AdvanceClock with a negative duration")
	}
	g.offset.Add(int64(d))
	g.clockMoved()
}

// Reset returns the gateway to the state [New] left it in: no accounts,
// charges, refunds, idempotency records, faults, history or stats, and chaos
// as its options set it. The clock keeps its time. Requests in flight
// finish against the state they started with. Webhook endpoints, events,
// delivery faults and deliveries go too: those pending are never made.
func (g *Gateway) Reset() {
	w, err := g.newWorld()
	if err != nil {
		panic("mock: reset: " + err.Error()) // the options were valid in New
	}
	g.world.Swap(w).stopHooks()
}

// codec is one wire dialect's resource routes and the idempotency
// middleware in front of them. The dialects share the store, each under
// scopes of its own, so that a key never replays one dialect's answer to
// the other.
type codec struct {
	mux *http.ServeMux // the resource routes
	api http.Handler   // mux behind the idempotency middleware
}

// world is everything Reset throws away.
type world struct {
	g           *Gateway
	scopePrefix string
	dialects    [numDialects]codec
	accounts    sync.Map                // account ID → *account
	lastAccount atomic.Pointer[account] // the one authenticate found last, without a Stripe-Account
	noMetadata  map[string]string       // the empty Metadata of every charge that has none; never written
	seq         atomic.Uint64           // orders charges across accounts
	faults      faultSet
	chaos       chaos
	hist        history
	hooks       hookState // webhook endpoints, events and deliveries
}

func (g *Gateway) newWorld() (*world, error) {
	gen := g.gen.Add(1) - 1
	w := &world{g: g, noMetadata: map[string]string{}}
	store := g.cfg.store
	if store == nil {
		store = idempotency.NewMemoryStore()
	} else if gen > 0 {
		// Random, not the generation: another gateway on the same store, in
		// this process or another, before or after a restart, never lands
		// in this scope, so a reset shows no records but its own.
		w.scopePrefix = "reset/" + rand.Text() + "/"
	}
	common := []idempotency.Option{
		idempotency.WithTTL(g.cfg.ttl),
		idempotency.WithClock(g.Now),
		idempotency.WithObserver(observe),
	}
	payonce := append(common[:len(common):len(common)],
		idempotency.WithScope(w.scope),
		idempotency.WithMismatchStatus(g.cfg.mismatchStatus),
		idempotency.WithErrorWriter(func(rw http.ResponseWriter, _ *http.Request, e *idempotency.Error) {
			writeError(rw, &apiError{Status: e.StatusCode, Type: e.Type, Code: e.Code, Message: e.Message})
		}),
	)
	if g.cfg.optionalKey {
		payonce = append(payonce, idempotency.WithOptionalKey())
	}
	// Stripe's rules: a POST without a key executes, and a key reused with
	// another request is a 400.
	stripe := append(common[:len(common):len(common)],
		idempotency.WithScope(w.stripeScope),
		idempotency.WithMismatchStatus(http.StatusBadRequest),
		idempotency.WithErrorWriter(writeStripeMiddlewareError),
		idempotency.WithOptionalKey(),
	)
	for d, c := range []struct {
		opts   []idempotency.Option
		routes func() *http.ServeMux
	}{payonceDialect: {payonce, w.routes}, stripeDialect: {stripe, w.stripeRoutes}} {
		mw, err := idempotency.New(store, c.opts...)
		if err != nil {
			return nil, err
		}
		mux := c.routes()
		w.dialects[d] = codec{mux: mux, api: mw.Wrap(w.executor(mux))}
	}
	w.chaos.set(g.cfg.chaosRate, g.cfg.chaosSeed)
	w.hist.limit, w.hist.maxBytes = g.cfg.historyLimit, g.cfg.historyBytes
	w.initHooks()
	return w, nil
}

// exchange is what the layers of one API request tell each other, through
// the request's context, and what its history record is made of. It is
// itself that context: the request's own (client), with the exchange as
// the value of exchangeKey, so that one allocation serves for both.
type exchange struct {
	client   context.Context // the request's own, which ends when its client hangs up
	idHeader [1]string       // the Request-Id header's value, sharing the allocation (see requestID)
	// The Content-Type and Content-Length values of the answer, when a
	// handler writes it with writeLineIn, sharing the allocation too.
	bodyHeaders [2]string
	sw          statusWriter
	account     *account
	dialect     dialect
	fault       FaultKind // the injected fault that applied, if any
	rejected    bool      // refused before executing: auth, route, validation
	observed    bool      // the idempotency middleware decided on the request
	event       idempotency.Event
}

var _ context.Context = (*exchange)(nil)

// requestID is the request's Request-Id, kept once, as the header's value.
func (x *exchange) requestID() string { return x.idHeader[0] }

// The request's context, as the exchange passes it on.

func (x *exchange) Deadline() (time.Time, bool) { return x.client.Deadline() }
func (x *exchange) Done() <-chan struct{}       { return x.client.Done() }
func (x *exchange) Err() error                  { return x.client.Err() }

func (x *exchange) Value(key any) any {
	if key == (exchangeKey{}) {
		return x
	}
	return x.client.Value(key)
}

type exchangeKey struct{}

func exchangeOf(ctx context.Context) *exchange {
	x, _ := ctx.Value(exchangeKey{}).(*exchange)
	return x
}

// observe hands the middleware's decision to the request's exchange.
func observe(r *http.Request, ev idempotency.Event) {
	if x := exchangeOf(r.Context()); x != nil {
		x.observed, x.event = true, ev
	}
}

func (w *world) scope(r *http.Request) string {
	return w.scopePrefix + exchangeOf(r.Context()).account.id
}

// stripeScope is the scope of a Stripe-dialect key: its account, which
// includes the Stripe-Account it acts for, apart from payonce's keys.
func (w *world) stripeScope(r *http.Request) string {
	return exchangeOf(r.Context()).account.stripeScope
}

// ServeHTTP serves the API and the control surface. Its layers, outermost
// first: a fresh Request-Id on every response; injected faults and chaos;
// authentication; routing; the idempotency middleware; delay faults; the
// resource handlers.
//
// A drop fault makes ServeHTTP panic with [http.ErrAbortHandler], which
// net/http turns into a closed connection. Call it through a [Server] or
// [Gateway.Responder] to see a drop as a transport error instead.
func (g *Gateway) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	id := newRequestID()
	if isControl(r.URL.Path) {
		w.Header()["Request-Id"] = []string{id}
		g.serveControl(w, r, id)
		return
	}
	wd := g.world.Load()
	x := &exchange{client: r.Context(), dialect: dialectOf(r)}
	x.idHeader[0] = id
	w.Header()["Request-Id"] = x.idHeader[:]
	if x.dialect == stripeDialect {
		// Stripe echoes the key on every answer; stripe-go reads it into
		// LastResponse.IdempotencyKey.
		if v := r.Header.Values("Idempotency-Key"); len(v) == 1 && len(v[0]) <= idempotency.MaxKeyLength+2 {
			w.Header()["Idempotency-Key"] = v
		}
	}
	x.sw.ResponseWriter = w
	r = r.WithContext(x)
	defer wd.finish(x, r) // also when a drop fault panics
	wd.serveFaulty(&x.sw, r, x)
}

func isControl(p string) bool {
	return p == "/healthz" || p == "/_mock" || strings.HasPrefix(p, "/_mock/")
}

// serveFaulty is the fault layer: it sits outside authentication, as the
// network does.
func (w *world) serveFaulty(rw http.ResponseWriter, r *http.Request, x *exchange) {
	f := w.outerFault(r)
	if f == nil {
		w.serveAPI(rw, r, x)
		return
	}
	x.fault = f.Kind
	switch f.Kind {
	case FailBefore:
		writeFault(rw, f)
		return
	case DropBefore:
		panic(http.ErrAbortHandler)
	}
	rec := newRecorder()
	w.serveAPI(rec, r, x)
	switch f.Kind {
	case FailAfter:
		writeFault(rw, f)
	case DropAfter:
		panic(http.ErrAbortHandler)
	case DelayAfter:
		w.g.hold(r.Context(), f)
		rec.writeTo(rw)
	}
}

// serveAPI authenticates and routes the request, then hands it to the
// idempotency middleware.
func (w *world) serveAPI(rw http.ResponseWriter, r *http.Request, x *exchange) {
	acct, e := w.authenticate(r, x.dialect)
	if e != nil {
		x.rejected = true
		rw.Header().Set("WWW-Authenticate", `Bearer realm="payonce-mock"`)
		writeError(rw, e)
		return
	}
	x.account = acct
	// Routing comes before the middleware, so a POST to an unknown route
	// neither needs nor consumes an idempotency key.
	c := &w.dialects[x.dialect]
	if !routed(c.mux, r) {
		x.rejected = true
		writeError(rw, &apiError{Status: http.StatusNotFound, Type: invalidRequest, Code: "unknown_route",
			Message: "unrecognized request URL (" + clip(r.Method, maxMethodBytes) + " " + clip(r.URL.Path, maxPathBytes) + ")"})
		return
	}
	c.api.ServeHTTP(rw, r)
}

// routed reports whether a resource route serves r. Paths that are not in
// canonical form are refused rather than redirected: a redirect would be
// stored under the key.
func routed(mux *http.ServeMux, r *http.Request) bool {
	p := r.URL.Path
	if p == "" || path.Clean(p) != p {
		return false
	}
	_, pattern := mux.Handler(r)
	return pattern != ""
}

// executor runs mux inside the middleware, once the key is claimed: a
// delay fault holds the request there, key in flight, before anything
// executes. The hold ends when the client hangs up, though the middleware
// keeps that from cancelling the handler's own context.
func (w *world) executor(mux *http.ServeMux) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		if f := w.faults.match(r, true); f != nil {
			x := exchangeOf(r.Context())
			if x.fault == "" {
				x.fault = Delay
			}
			w.g.hold(x.client, f)
		}
		mux.ServeHTTP(rw, r)
	}
}

// finish records the request in the history and the log.
func (w *world) finish(x *exchange, r *http.Request) {
	rec := RequestRecord{
		Method:    clip(r.Method, maxMethodBytes),
		Path:      clip(r.URL.Path, maxPathBytes),
		Status:    x.sw.status,
		Outcome:   x.outcome(),
		Fault:     x.fault,
		RequestID: x.requestID(),
	}
	if x.account != nil {
		rec.Account = x.account.id
	}
	if x.observed && x.event.Key != "" {
		rec.IdempotencyKey = x.event.Key
	} else if v := r.Header.Get("Idempotency-Key"); v != "" {
		if k, err := idempotency.ParseKey(v); err == nil {
			rec.IdempotencyKey = k
		} else {
			rec.IdempotencyKey = v[:min(len(v), idempotency.MaxKeyLength+2)]
		}
	}
	w.hist.add(&rec)
	if l := w.g.cfg.logger; l != nil {
		logRequest(r.Context(), l, w.g.logPC, &rec)
	}
}

func (x *exchange) outcome() Outcome {
	switch x.fault {
	case FailBefore, FailAfter, DropBefore, DropAfter:
		return OutcomeFault
	}
	if x.observed {
		switch x.event.Outcome {
		case idempotency.Executed, idempotency.NotStored:
			return OutcomeExecuted
		case idempotency.Replayed:
			return OutcomeReplayed
		case idempotency.Conflict:
			return OutcomeConflict
		case idempotency.KeyReused:
			return OutcomeMismatch
		case idempotency.MissingKey:
			return OutcomeMissingKey
		case idempotency.InvalidKey:
			return OutcomeInvalidKey
		case idempotency.Unkeyed:
			if !x.rejected {
				return OutcomeExecuted
			}
		}
		return OutcomeRejected // released, refused, store failure
	}
	if x.rejected {
		return OutcomeRejected
	}
	return OutcomeExecuted
}

// logRequest logs rec as l.LogAttrs would, at a third of the cost: the
// attributes go into the record in one call, so that only the two beyond
// its five inline ones allocate, and its source position is pc, found once
// by New, rather than by a walk up the stack on every request. A handler
// that shows sources (slog.HandlerOptions.AddSource) shows New's line
// instead of this function's: both are inside the mock.
func logRequest(ctx context.Context, l *slog.Logger, pc uintptr, rec *RequestRecord) {
	if !l.Enabled(ctx, slog.LevelInfo) {
		return
	}
	attrs := [8]slog.Attr{
		slog.String("method", rec.Method),
		slog.String("path", rec.Path),
		slog.String("key", rec.IdempotencyKey),
		slog.String("account", rec.Account),
		slog.Int("status", rec.Status),
		slog.String("outcome", string(rec.Outcome)),
	}
	n := 6
	if rec.Fault != "" {
		attrs[n] = slog.String("fault", string(rec.Fault))
		n++
	}
	attrs[n] = slog.String("request_id", rec.RequestID)
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "request", pc)
	r.AddAttrs(attrs[:n+1]...)
	l.Handler().Handle(ctx, r) // as Logger does, it drops the handler's error
}

// callerPC returns the program counter of the call to it, as a log
// record's source.
func callerPC() uintptr {
	var pcs [1]uintptr
	runtime.Callers(2, pcs[:])
	return pcs[0]
}

// statusWriter remembers the status sent to the client.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	if s.status == 0 {
		s.status = code
	}
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(p []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(p)
}

func (s *statusWriter) Unwrap() http.ResponseWriter { return s.ResponseWriter }
