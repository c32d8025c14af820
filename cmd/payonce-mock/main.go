// Command payonce-mock runs the payonce mock gateway (package
// github.com/payonce/payonce/mock) as a standalone server, for test suites
// in any language.
//
//	payonce-mock [-addr 127.0.0.1:12111] [-ttl 24h] [-require-key=true]
//	             [-chaos RATE -seed N] [-api-key sk_test_…]… [-mismatch-status 422]
//	             [-history N] [-history-bytes N] [-events N] [-delivery-records N]
//	             [-allow-remote] [-control-token T] [-allow-remote-webhooks]
//	             [-store postgres://…|redis://… [-store-table T | -store-prefix P]]
//
// By default the idempotency records live in memory, with nothing to set
// up. With -store they live in a shared store instead, so that several mock
// processes, or one that restarts, replay each other's keys:
//
//   - postgres:// or postgresql://: a PostgreSQL database (package
//     idempotency/pgstore). The table, payonce_idempotency unless
//     -store-table names another, is created at startup if it is missing,
//     and expired rows are deleted in the background.
//   - redis:// or rediss:// (TLS): a Redis server (package
//     idempotency/redisstore), its keys beginning with payonce:idem: unless
//     -store-prefix says otherwise. Redis expires them itself.
//
// Only the idempotency records are shared: charges, refunds, payment
// intents, faults and the history stay in each process's memory, and POST
// /_mock/reset moves that process alone to records of its own. The URL's password never appears in
// the logs or in an error, but a command line is visible to every user of
// the machine: leave the password out of a PostgreSQL URL and set
// PGPASSWORD or a PGPASSFILE, which the driver reads.
//
// It serves the API under /v1/, in payonce's JSON dialect and, for any
// request with a form body or a Stripe-Version header, in Stripe's (so
// stripe-go and stripe-node run against it unmodified), the control
// surface under /_mock/ and /healthz (see docs/protocol.md), logs one line per request to stderr
// (in slog's text format, written in batches, each some 2 ms after its first line), and
// shuts down cleanly on SIGINT or SIGTERM. It is a test tool with an
// unauthenticated control surface, so it refuses to listen on anything but
// a loopback address unless given -allow-remote, and then warns at start.
// The control surface answers only requests whose Host is a loopback name
// or address, so that a web page cannot reach it through DNS rebinding,
// and only JSON bodies, so that a page cannot post a form to it; with
// -control-token it answers any Host that sends Authorization: Bearer and
// the token instead (see docs/protocol.md §8). The token, like any flag,
// is visible to every user of the machine.
//
// Webhook endpoints must have loopback URLs, and the mock delivers to
// loopback addresses only, unless given -allow-remote-webhooks, which is
// apart from -allow-remote, and then warns at start: with it, whoever has
// an API key can make the mock POST to any address it reaches.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/payonce/payonce/idempotency/pgstore"
	"github.com/payonce/payonce/idempotency/redisstore"
	"github.com/payonce/payonce/mock"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "payonce-mock:", err)
		os.Exit(2)
	}
}

// shutdownTimeout bounds how long requests in flight may take to finish
// once a signal arrives.
const shutdownTimeout = 5 * time.Second

// keyList is a repeatable -api-key flag. It never prints the keys.
type keyList []string

func (k *keyList) String() string { return fmt.Sprintf("%d key(s)", len(*k)) }
func (k *keyList) Set(v string) error {
	*k = append(*k, v)
	return nil
}

// run serves until ctx ends, then shuts down. It writes the logs, and first
// the line "payonce-mock: listening on http://ADDR", to stderr.
func run(ctx context.Context, args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("payonce-mock", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:12111", "`address` to listen on (loopback only, unless -allow-remote)")
	allowRemote := fs.Bool("allow-remote", false, "allow a non-loopback -addr (without -control-token, the control surface answers only a loopback Host, which stops browsers, not a client that sets Host itself; set -control-token to use it remotely)")
	remoteWebhooks := fs.Bool("allow-remote-webhooks", false, "allow webhook endpoints at any http or https URL, not only loopback ones: whoever has an API key can then make the mock POST to any address it reaches")
	ttl := fs.Duration("ttl", 24*time.Hour, "how long idempotency keys are remembered")
	requireKey := fs.Bool("require-key", true, "require Idempotency-Key on POST in payonce's dialect (false lets keyless POSTs execute every time); Stripe's dialect never requires one")
	chaos := fs.Float64("chaos", 0, "fraction of POSTs given a random fault, from 0 to 1")
	seed := fs.Int64("seed", 0, "seed of the chaos faults")
	mismatch := fs.Int("mismatch-status", http.StatusUnprocessableEntity, "status for a key reused with another request: 422 or 400")
	history := fs.Int("history", mock.DefaultHistoryLimit, "how many requests GET /_mock/requests keeps")
	historyBytes := fs.Int("history-bytes", mock.DefaultHistoryBytes, "how many bytes of records GET /_mock/requests keeps")
	events := fs.Int("events", mock.DefaultEventLimit, "how many of the latest events GET /v1/events keeps, across accounts")
	deliveryRecords := fs.Int("delivery-records", mock.DefaultDeliveryRecordLimit, "how many of the latest webhook delivery attempts GET /_mock/deliveries keeps")
	controlToken := fs.String("control-token", "", "require Authorization: Bearer `token` on the control surface (/_mock/), instead of a loopback Host")
	var keys keyList
	fs.Var(&keys, "api-key", "accept only this API `key` (repeatable; default: any sk_test_ key)")
	var sc storeConfig
	fs.StringVar(&sc.url, "store", "", "keep idempotency records in the shared store at `URL`: postgres://…, postgresql://…, redis://… or rediss://… (default: in memory)")
	fs.StringVar(&sc.table, "store-table", "", "`table` of a PostgreSQL -store, as table or schema.table (default "+pgstore.DefaultTable+")")
	fs.StringVar(&sc.prefix, "store-prefix", "", "`prefix` of every key of a Redis -store (default "+redisstore.DefaultPrefix+")")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	if !*allowRemote {
		if err := checkLoopback(*addr); err != nil {
			return err
		}
	}

	// From here on everything goes to stderr through lw, so that the log's
	// batches and the lines written directly stay in order.
	lw := newLineWriter(stderr, flushDelay)
	defer lw.Close() // last: after the store's and the server's last lines
	logger := slog.New(newLogHandler(lw))
	opts := []mock.Option{
		mock.WithTTL(*ttl),
		mock.WithMismatchStatus(*mismatch),
		mock.WithChaos(*chaos, *seed),
		mock.WithHistoryLimit(*history),
		mock.WithHistoryBytes(*historyBytes),
		mock.WithEventLimit(*events),
		mock.WithDeliveryRecordLimit(*deliveryRecords),
		mock.WithLogger(logger),
	}
	if *controlToken != "" {
		opts = append(opts, mock.WithControlToken(*controlToken))
	}
	if *remoteWebhooks {
		opts = append(opts, mock.WithRemoteWebhooks())
	}
	if !*requireKey {
		opts = append(opts, mock.WithOptionalKey())
	}
	if len(keys) > 0 {
		opts = append(opts, mock.WithAPIKeys(keys...))
	}
	gw, err := mock.New(opts...) // checks the options before -store connects
	if err != nil {
		return err
	}
	storeDesc := "memory"
	shared, err := openStore(ctx, sc, logger)
	if err != nil {
		return err
	}
	if shared != nil {
		defer shared.close() // after the server has shut down
		storeDesc = shared.desc
		if gw, err = mock.New(append(opts, mock.WithStore(shared.store))...); err != nil {
			return err
		}
	}

	defer gw.Close() // ends webhook deliveries, after the server has shut down
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := newServer(gw, logger, defaultTimeouts)
	fmt.Fprintf(lw, "payonce-mock: listening on http://%s\n", ln.Addr())
	if *allowRemote && checkLoopback(*addr) != nil {
		warnRemote(lw, ln.Addr(), *controlToken != "", len(keys) > 0)
	}
	if *remoteWebhooks {
		fmt.Fprintln(lw, "payonce-mock: WARNING: -allow-remote-webhooks: webhook endpoints may have any URL, and the mock "+
			"POSTs its deliveries to whatever address an API key names, beyond this machine included.")
	}
	lw.Flush() // whoever waits for the listening line need not wait longer
	logger.Info("started", "ttl", *ttl, "require_key", *requireKey, "chaos", *chaos, "seed", *seed,
		"api_keys", len(keys), "mismatch_status", *mismatch, "store", storeDesc)

	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	select {
	case err := <-served:
		return err
	case <-ctx.Done():
	}

	logger.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close() // ends the requests still held, such as delay faults
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// timeouts are those of the server run starts.
type timeouts struct {
	readHeader, read, write, idle time.Duration
}

// defaultTimeouts bound slow clients: 10 s to send the headers, 30 s for
// the headers and the body (at most 1 MiB, read before any fault holds the
// request), 2 min on an idle connection. A response may take as long as a
// delay fault's longest hold and a minute more, since net/http fails a
// response written after WriteTimeout.
var defaultTimeouts = timeouts{
	readHeader: 10 * time.Second,
	read:       30 * time.Second,
	write:      mock.MaxFaultDelay + time.Minute,
	idle:       2 * time.Minute,
}

func newServer(h http.Handler, logger *slog.Logger, t timeouts) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.readHeader,
		ReadTimeout:       t.read,
		WriteTimeout:      t.write,
		IdleTimeout:       t.idle,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

// warnRemote says, on stderr, what listening beyond loopback exposes.
func warnRemote(stderr io.Writer, addr net.Addr, token, apiKeys bool) {
	fmt.Fprintf(stderr, "payonce-mock: WARNING: -allow-remote: listening on %s, beyond this machine.\n", addr)
	if token {
		fmt.Fprintln(stderr, "payonce-mock: WARNING: the control surface (/_mock/) requires the -control-token; keep it secret.")
	} else {
		fmt.Fprintln(stderr, "payonce-mock: WARNING: the control surface (/_mock/) has no authentication: without "+
			"a -control-token it answers only requests whose Host is loopback (localhost, 127.0.0.1, [::1]), and "+
			"refuses others with 403 host_not_allowed. That stops browsers and DNS rebinding, not a client that "+
			"sets Host itself: such a client, from anywhere that reaches this address, can inject faults, turn on "+
			"chaos, move the clock, reset all state, and read every charge and the request history. Set "+
			"-control-token to use the control surface remotely; a -control-token is strongly advised.")
	}
	if !apiKeys {
		fmt.Fprintln(stderr, "payonce-mock: WARNING: the API accepts any sk_test_ key; -api-key restricts it.")
	}
}

// checkLoopback refuses an address that is not on a loopback interface.
func checkLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("bad -addr %q: %w", addr, err)
	}
	if host == "localhost" {
		return nil
	}
	if ip := net.ParseIP(host); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("-addr %q is not a loopback address: the mock's control surface is unauthenticated; "+
		"pass -allow-remote to listen there anyway", addr)
}
