// Command orders is an order service that charges each order exactly once
// and records it exactly once, even when it is killed in the middle of a
// request: the crash test of issue 15.
//
//	go run ./examples/orders [-db postgres://…]
//
// # The service
//
// `orders serve` answers POST /orders, {"amount": N} with an
// Idempotency-Key, behind the idempotency middleware, whose records live in
// PostgreSQL (package idempotency/pgstore). The handler inserts the order,
// charges it through the payonce client under the key
// idempotency.DerivedKey(ctx, "charge"), marks it paid with the charge's
// id, and answers 201 with the order. The orders table has, on purpose, no
// unique constraint on the idempotency key: an order placed twice shows as
// two rows.
//
// With -transactional=true (the default) the handler writes in the
// transaction in which the middleware stores its response (pgstore.Tx):
// the order and the stored response commit together, or neither does. A
// process that dies before that commit leaves nothing, and the retry,
// once the claim's lease has run out, executes cleanly; after it, every
// retry is a replay. The derived charge key makes the gateway replay the
// charge of an execution that died, rather than charge again.
//
// With -transactional=false, the control, the handler commits its writes in
// a transaction of its own, and the middleware stores the response after
// the handler returns, as with any handler before issue 15. A process that
// dies between the two commits leaves an order whose response is not
// stored: the retry places the order again, and the orders table has two
// rows for one key (the gateway still charges once, thanks to the derived
// key).
//
// -crash POINT:N is a test hook: the nth request to reach POINT prints
// "orders: crash point POINT reached by KEY" on stdout and blocks there, so
// that a test can kill the process at that exact point. The points are, in
// order: claimed (the handler is entered), inserted, charged (the gateway
// has charged and answered), handled (the handler is done; in the control
// it has committed), stored (the middleware has stored, and with
// -transactional=true committed, the response, and not a byte of it has
// left).
//
// # The demo
//
// Without arguments, orders runs the service twice as a child process,
// transactional and then the control, against a mock gateway and fresh
// tables in a PostgreSQL schema of their own (dropped at the end). It
// places three orders with each, and kills the service (SIGKILL) when the
// second reaches "handled"; it restarts the service and the client retries
// the order with its key until it is answered. Then it prints the orders
// table: one row per order with -transactional=true, and two rows for the
// killed order in the control.
//
// The PostgreSQL server is -db, by default $DATABASE_URL, or else
// $PAYONCE_TEST_POSTGRES_URL, the tests' (see internal/testenv).
//
// # The test
//
// TestKillTransactional and TestKillControl (go test -run Kill
// ./examples/orders) build the service and cmd/payonce-mock, run them as
// child processes, the mock's idempotency records in PostgreSQL too, and
// place at least 400 orders, six at a time, while they kill the service 50
// times: ten times at each crash point, in a random order (logged with its
// seed; ORDERS_KILL_SEED=N reruns it) and at a random one of the first
// requests to reach it after each restart. The other requests in flight
// die wherever they were. Then they check the orders table and the
// gateway's ledger against the answers: one charge per order, and its id
// on the order, in both modes; exactly one paid row per order,
// transactional; and in the control, orders placed twice, among them those
// killed at "handled". Each logs a table of its figures.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
	"time"
)

// Exit statuses.
const (
	exitError = 1
	exitUsage = 2
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(realMain(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "serve" {
		cfg, err := parseServeFlags(args[1:], stderr)
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		if err != nil {
			return exitUsage // the flag package has said why
		}
		if err := serve(ctx, cfg, stdout, stderr); err != nil {
			fmt.Fprintln(stderr, "orders serve:", err)
			return exitError
		}
		return 0
	}
	cfg, err := parseDemoFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		return exitUsage
	}
	if cfg.bin, err = os.Executable(); err != nil {
		fmt.Fprintln(stderr, "orders:", err)
		return exitError
	}
	if err := demo(ctx, cfg, stdout); err != nil {
		fmt.Fprintln(stderr, "orders:", err)
		return exitError
	}
	return 0
}

// defaultDB is the PostgreSQL URL when -db is not given.
func defaultDB() string {
	if u := os.Getenv("DATABASE_URL"); u != "" {
		return u
	}
	return os.Getenv("PAYONCE_TEST_POSTGRES_URL")
}

// parseServeFlags parses the flags of `orders serve`. Errors and -h output
// go to stderr.
func parseServeFlags(args []string, stderr io.Writer) (serviceConfig, error) {
	var cfg serviceConfig
	fs := flag.NewFlagSet("orders serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: orders serve -gateway URL [-db URL] [-schema S] [-transactional=true|false] [flags]

Serves POST /orders behind the idempotency middleware, its records and the
orders in PostgreSQL, charging each order through the gateway.

`)
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.addr, "addr", "127.0.0.1:8080", "the `address` to listen on")
	fs.StringVar(&cfg.db, "db", defaultDB(), "the PostgreSQL `URL`")
	fs.StringVar(&cfg.schema, "schema", "orders", "the PostgreSQL `schema` of the orders and idempotency tables, created if missing")
	fs.StringVar(&cfg.gateway, "gateway", "", "the gateway's base `URL`, such as a payonce-mock's")
	fs.StringVar(&cfg.apiKey, "api-key", "sk_test_orders", "the gateway's API `key`")
	fs.BoolVar(&cfg.transactional, "transactional", true, "write the order in the transaction that stores the response (false: the control, in a transaction of its own)")
	fs.DurationVar(&cfg.lease, "lease", time.Second, "the middleware's lease on a claim; the store timeout is a quarter of it")
	crash := fs.String("crash", "", "test hook: block the Nth request to reach `POINT:N` (claimed, inserted, charged, handled, stored), for a kill")
	if err := fs.Parse(args); err != nil {
		return cfg, err // the flag package has said why
	}
	var err error
	switch {
	case fs.NArg() > 0:
		err = fmt.Errorf("unexpected arguments %q", fs.Args())
	case cfg.gateway == "":
		err = errors.New("-gateway is required")
	case cfg.db == "":
		err = errors.New("-db is required (or DATABASE_URL)")
	case cfg.lease <= 0:
		err = errors.New("-lease must be positive")
	default:
		cfg.crash, err = parseCrashSpec(*crash)
	}
	if err != nil {
		fmt.Fprintln(fs.Output(), "orders serve:", err)
		fs.Usage()
	}
	return cfg, err
}

// parseDemoFlags parses the flags of the demo. Errors and -h output go to
// stderr.
func parseDemoFlags(args []string, stderr io.Writer) (demoConfig, error) {
	var cfg demoConfig
	fs := flag.NewFlagSet("orders", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: go run ./examples/orders [-db URL]
       orders serve -h

Runs the order service, transactional and then the control, kills it in the
middle of an order, and shows what the orders table holds afterwards.
Needs a PostgreSQL server, where it works in a schema of its own.

`)
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.db, "db", defaultDB(), "the PostgreSQL `URL` (default $DATABASE_URL, or else $PAYONCE_TEST_POSTGRES_URL)")
	fs.DurationVar(&cfg.lease, "lease", time.Second, "the service's lease on a claim: how long a killed order's retries wait")
	if err := fs.Parse(args); err != nil {
		return cfg, err // the flag package has said why
	}
	var err error
	switch {
	case fs.NArg() > 0:
		err = fmt.Errorf("unexpected arguments %q", fs.Args())
	case cfg.db == "":
		err = errors.New("no PostgreSQL server: pass -db postgres://… or set DATABASE_URL")
	case cfg.lease <= 0:
		err = errors.New("-lease must be positive")
	}
	if err != nil {
		fmt.Fprintln(fs.Output(), "orders:", err)
		fs.Usage()
	}
	return cfg, err
}
