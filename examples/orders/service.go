package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/payonce/payonce"
	"github.com/payonce/payonce/idempotency"
	"github.com/payonce/payonce/idempotency/pgstore"
)

// listeningMarker begins the line `orders serve` prints once it listens,
// followed by its URL.
const listeningMarker = "orders: listening on "

// Limits of an order's amount, in cents.
const (
	minAmount = 50
	maxAmount = 999_999_99
)

// serviceConfig is what `orders serve` is told on its command line.
type serviceConfig struct {
	addr          string
	db            string // PostgreSQL URL
	schema        string // the PostgreSQL schema of the orders and idempotency tables
	gateway       string // the payment gateway's base URL
	apiKey        string // the gateway's API key
	transactional bool   // write the order in the transaction that stores the response
	lease         time.Duration
	crash         crashSpec
}

// service is the order service: POST /orders behind the idempotency
// middleware, whose records live in PostgreSQL, next to the orders.
type service struct {
	pool          *pgxpool.Pool
	orders        string // the orders table, quoted
	client        *payonce.Client
	transactional bool
	crash         *crasher
	log           *slog.Logger
}

// maxConns bounds the service's connections to PostgreSQL. Every request
// in flight holds one for its transaction while it charges, and the
// middleware needs others to renew the claims meanwhile, so the pool must be
// well larger than the requests in flight: a renewal that waits for a
// connection longer than the store timeout fails.
const maxConns = 24

// serve runs the order service until ctx ends. It prints the line
// listeningMarker+URL to stdout once it listens, and the crash markers
// there too; logs go to stderr.
func serve(ctx context.Context, cfg serviceConfig, stdout, stderr io.Writer) error {
	log := slog.New(slog.NewTextHandler(stderr, nil))
	pcfg, err := pgxpool.ParseConfig(cfg.db)
	if err != nil {
		return fmt.Errorf("bad -db: %w", err)
	}
	if pcfg.ConnConfig.ConnectTimeout == 0 {
		pcfg.ConnConfig.ConnectTimeout = 5 * time.Second // well under any sane lease; see pgstore's doc
	}
	pcfg.MaxConns = maxConns
	setupCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(setupCtx, pcfg)
	if err != nil {
		return err
	}
	defer pool.Close()

	store, err := pgstore.New(pool, pgstore.WithTable(cfg.schema+".idempotency"))
	if err != nil {
		return err
	}
	if err := createSchema(setupCtx, pool, cfg.schema); err != nil {
		return err
	}
	if err := store.CreateSchema(setupCtx); err != nil {
		return err
	}
	mw, err := idempotency.New(store,
		idempotency.WithLease(cfg.lease),
		idempotency.WithStoreTimeout(cfg.lease/4),
		idempotency.WithLogger(log))
	if err != nil {
		return err
	}
	client, err := payonce.NewClient(cfg.apiKey, payonce.WithBaseURL(cfg.gateway))
	if err != nil {
		return err
	}
	s := &service{
		pool:          pool,
		orders:        pgx.Identifier{cfg.schema, "orders"}.Sanitize(),
		client:        client,
		transactional: cfg.transactional,
		crash:         &crasher{spec: cfg.crash, out: stdout},
		log:           log,
	}

	ln, err := net.Listen("tcp", cfg.addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           s.handler(mw),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	fmt.Fprintf(stdout, "%shttp://%s\n", listeningMarker, ln.Addr())
	log.Info("started", "transactional", cfg.transactional, "lease", cfg.lease, "crash", cfg.crash.String())

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return err
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// createSchema creates the schema and the orders table unless they exist.
//
// An order's id is made afresh by every execution of the handler, and
// nothing stops two rows from having the same idempotency key: this table
// shows every execution, so that one that happened twice is seen. (A real
// service would put a unique constraint on the key, and turn a second
// execution into an error rather than a second order.)
func createSchema(ctx context.Context, pool *pgxpool.Pool, schema string) error {
	sch := pgx.Identifier{schema}.Sanitize()
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('payonce/examples/orders'))`); err != nil {
			return err
		}
		_, err := tx.Exec(ctx, `CREATE SCHEMA IF NOT EXISTS `+sch+`;
CREATE TABLE IF NOT EXISTS `+sch+`.orders (
    id              text        PRIMARY KEY,
    idempotency_key text        NOT NULL,
    amount          bigint      NOT NULL,
    status          text        NOT NULL,
    charge_key      text        NOT NULL,
    charge_id       text,
    created_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS orders_idempotency_key_idx ON `+sch+`.orders (idempotency_key)`)
		return err
	})
	if err != nil {
		return fmt.Errorf("create the orders table: %w", err)
	}
	return nil
}

// Order statuses.
const (
	statusPending  = "pending"
	statusPaid     = "paid"
	statusDeclined = "declined"
)

// order is the answer to POST /orders.
type order struct {
	ID             string `json:"id"`
	IdempotencyKey string `json:"idempotency_key"`
	Amount         int64  `json:"amount"`
	Status         string `json:"status"`
	ChargeID       string `json:"charge_id,omitempty"`
}

// handler routes POST /orders through mw.
func (s *service) handler(mw *idempotency.Middleware) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST /orders", mw.Wrap(http.HandlerFunc(s.createOrder)))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok\n") })
	return s.watchAnswers(mux)
}

// createOrder places an order: it inserts the order, charges it through the
// gateway under a key derived from the request's, marks it paid and answers
// 201 with the order.
//
// With -transactional=true the writes go into the transaction in which the
// middleware stores the response (pgstore.Tx), so that they commit with it
// or not at all. With -transactional=false they go into a transaction of
// the handler's own, committed before the middleware stores the response,
// as any handler's writes did before pgstore.Tx: a crash between the two
// commits leaves an order whose response is not stored, and the retry
// places it again.
func (s *service) createOrder(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	_, key, _ := idempotency.KeyFromContext(ctx)
	s.crash.at(pointClaimed, key)

	var req struct {
		Amount int64 `json:"amount"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil || req.Amount < minAmount || req.Amount > maxAmount {
		idempotency.NotExecuted(ctx) // a corrected request may use the key
		writeError(w, r, http.StatusBadRequest, "invalid_request_error", "invalid_order",
			fmt.Sprintf("send {\"amount\": N}, N from %d to %d cents", minAmount, maxAmount))
		return
	}
	// The same on every execution for this request, so that the gateway
	// replays the charge of an execution that died rather than charge again.
	chargeKey, err := idempotency.DerivedKey(ctx, "charge")
	if err != nil {
		s.fail(w, r, nil, "derive the charge key", err)
		return
	}

	tx, err := s.begin(ctx)
	if err != nil {
		s.fail(w, r, nil, "begin", err)
		return
	}
	o := order{ID: "ord_" + strings.ToLower(rand.Text()), IdempotencyKey: key, Amount: req.Amount, Status: statusPending}
	if _, err := tx.Exec(ctx, `INSERT INTO `+s.orders+` (id, idempotency_key, amount, status, charge_key)
VALUES ($1, $2, $3, $4, $5)`, o.ID, o.IdempotencyKey, o.Amount, o.Status, chargeKey); err != nil {
		s.fail(w, r, tx, "insert the order", err)
		return
	}
	s.crash.at(pointInserted, key)

	// The charge's parameters must be the same on every execution too: the
	// gateway refuses a key reused with another body. So no order id here,
	// since each execution makes its own.
	status := http.StatusCreated
	ch, err := s.client.Charges.Create(ctx, &payonce.ChargeParams{
		Amount:         o.Amount,
		Currency:       "usd",
		PaymentMethod:  "tok_visa",
		Description:    "order " + key,
		IdempotencyKey: chargeKey,
	})
	switch {
	case errors.Is(err, payonce.ErrCardDeclined):
		o.Status, status = statusDeclined, http.StatusPaymentRequired
	case err != nil:
		// Nothing was charged, or the charge's outcome is unknown: either
		// way a retry may run the handler again, since its charge key
		// makes the gateway replay any charge that did happen.
		s.fail(w, r, tx, "charge", err)
		return
	default:
		o.Status, o.ChargeID = statusPaid, ch.ID
	}
	s.crash.at(pointCharged, key)

	if _, err := tx.Exec(ctx, `UPDATE `+s.orders+` SET status = $2, charge_id = $3 WHERE id = $1`,
		o.ID, o.Status, nullable(o.ChargeID)); err != nil {
		s.fail(w, r, tx, "mark the order "+o.Status, err)
		return
	}
	if !s.transactional {
		if err := tx.Commit(ctx); err != nil {
			// Whether the commit landed is unknown, so this is not a
			// refusal: the answer is stored like any other.
			s.log.Error("commit the order", "order", o.ID, "err", err)
			writeError(w, r, http.StatusInternalServerError, "api_error", "order_unknown",
				"the order may or may not have been placed")
			return
		}
	}
	s.crash.at(pointHandled, key)

	executed(ctx, key)
	body, _ := json.Marshal(o)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	w.Write(append(body, '\n'))
}

// begin returns the transaction the handler writes in: the middleware's
// with -transactional=true, one of its own otherwise.
func (s *service) begin(ctx context.Context) (pgx.Tx, error) {
	if s.transactional {
		return pgstore.Tx(ctx)
	}
	return s.pool.Begin(ctx)
}

// fail answers a request that failed before its effects were committed:
// it rolls back tx (the middleware does it for its own transaction), tells
// the middleware that nothing was executed, and answers 503, so that the
// client retries with the same key and the handler runs again from the
// start. A charge made on the way is no harm: its key is derived from the
// request's, so the gateway replays it to the next execution.
func (s *service) fail(w http.ResponseWriter, r *http.Request, tx pgx.Tx, what string, err error) {
	s.log.Warn("order not placed", "step", what, "err", err)
	if tx != nil && !s.transactional {
		tx.Rollback(context.WithoutCancel(r.Context()))
	}
	idempotency.NotExecuted(r.Context())
	w.Header().Set("Retry-After", "1")
	writeError(w, r, http.StatusServiceUnavailable, "api_error", "order_not_placed",
		"the order could not be placed, and nothing of it was kept; retry with the same Idempotency-Key")
}

func writeError(w http.ResponseWriter, r *http.Request, status int, typ, code, msg string) {
	idempotency.WriteError(w, r, &idempotency.Error{StatusCode: status, Type: typ, Code: code, Message: msg})
}

// nullable returns nil for "", which the database stores as NULL.
func nullable(s string) any {
	if s == "" {
		return nil
	}
	return s
}

// execution is what the handler tells watchAnswers about a request: that
// it ran to its answer in this request, under key.
type execution struct {
	executed atomic.Bool
	key      atomic.Pointer[string]
}

type executionKey struct{}

// executed records, for watchAnswers, that the handler ran on ctx to its
// answer, for the Idempotency-Key key.
func executed(ctx context.Context, key string) {
	if e, ok := ctx.Value(executionKey{}).(*execution); ok {
		e.key.Store(&key)
		e.executed.Store(true)
	}
}

// watchAnswers wraps h, the middleware included, to reach the crash point
// "stored": the first byte of an answer that the handler gave in this
// request reaches the writer only after the middleware has stored it.
func (s *service) watchAnswers(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e := new(execution)
		r = r.WithContext(context.WithValue(r.Context(), executionKey{}, e))
		h.ServeHTTP(&answerWriter{ResponseWriter: w, before: func() {
			if e.executed.Load() {
				s.crash.at(pointStored, *e.key.Load())
			}
		}}, r)
	})
}

// answerWriter calls before once, before the first byte of the answer.
type answerWriter struct {
	http.ResponseWriter
	before func()
	called bool
}

func (a *answerWriter) call() {
	if !a.called {
		a.called = true
		a.before()
	}
}

func (a *answerWriter) WriteHeader(code int) {
	a.call()
	a.ResponseWriter.WriteHeader(code)
}

func (a *answerWriter) Write(p []byte) (int, error) {
	a.call()
	return a.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (a *answerWriter) Unwrap() http.ResponseWriter { return a.ResponseWriter }
