// Command outage shows what a fleet of checkout servers does to a payment
// gateway that goes down, under four retry strategies, and that none of them
// charges a customer twice or loses a charge.
//
//	go run ./examples/outage
//	go run ./examples/outage -svg outage.svg   # and a chart of the calls per second
//
// # The simulation
//
// A fleet of 100 checkout servers (-clients), each with its own
// payonce.Client and so its own retry budget, charges cards through one
// in-process mock gateway. Nothing goes through a socket: each client's
// transport hands the request to the gateway's handler, so the fleet is fast
// and cannot run out of ports. Customers arrive whether the gateway is well
// or not: each server gets a Poisson stream of 2 payments per second
// (-rate), the same for every strategy (-seed), and handles each in its own
// goroutine with its own idempotency key, made when the payment is born, and
// its own amount.
//
// The gateway is healthy for 10 seconds (-before), then fails completely
// for 30 (-outage): every request gets a 503 gateway_unavailable and nothing
// executes (with -drop, every connection is dropped instead). Then it is
// healthy again for 20 seconds (-after), and the customers stop arriving.
//
// Time is simulated, so that the run takes seconds rather than minutes: one
// simulated second lasts 300 ms of real time (-scale), and every duration
// of the clients is scaled by the same factor (the backoff of 250 ms to 5 s,
// the attempt timeout of 15 s, the longest Retry-After of 10 s). All times
// below are simulated. A default run takes about 20 seconds.
//
// Four strategies run side by side, on one clock and one stream of
// customers, each with its own fleet of clients against its own fresh
// gateway:
//
//   - no retries: payonce.WithMaxRetries(0), the baseline of the ratios;
//   - backoff, no jitter: min·2^n capped at max, the same wait for every
//     client (go-retryablehttp's default), no budget;
//   - full jitter: the client's default backoff, no budget;
//   - full jitter + budget (default): the client's defaults, full jitter and
//     a retry budget per client.
//
// The last three retry up to 3 times (the default).
//
// # Reading the table
//
// One row per strategy:
//
//   - calls in outage, calls total: the calls the gateway received during
//     the outage, and from start to end (the settling described below is
//     not counted);
//   - outage ÷ no-retry: calls in outage divided by the no-retry row's, the
//     load the strategy added to a gateway that is down (1.00 adds none);
//   - after 10s ÷ no-retry: the same for the outage after its first 10
//     seconds (-late), when a budget has had time to drain: the figure that
//     says whether the fleet keeps hammering a gateway that stays down;
//   - peak calls/s: the busiest simulated second;
//   - busy until: the time from the outage's start until the last call
//     for a payment born before the outage ended returned, charged or not:
//     how long the outage kept the fleet busy;
//   - charged: charges in the gateway's ledger at the end of the timeline;
//   - failed: payments whose call failed with a definite error (nothing was
//     charged); unknown: payments whose call failed with
//     payonce.ErrOutcomeUnknown, as every call that only got 503s or
//     dropped connections does, since such a charge may have executed;
//   - settled later: the unknown payments that, sent again with their key
//     to the healed gateway (as a reconciliation job would), came back
//     charged exactly once: the key is never lost;
//   - duplicates: charges in the ledger that share an idempotency key with
//     another, plus mock.Gateway.SuspectedDuplicates (two charges of one
//     amount, the amounts being distinct). It must be 0 in every row.
//
// The last line says how far behind schedule the customers arrived at
// worst. On a busy machine simulated time stutters; more than a few tenths
// of a second make the per-second figures rough, and a larger -scale
// helps.
//
// After the table the command checks that no charge was lost: every
// payment the client reported charged is in the ledger exactly once, under
// its key. It exits with status 1 if a row has a duplicate or a lost
// charge, and 2 for bad flags.
//
// The mock does not slow down under load, so the calls counted are the
// load a real gateway would have had to absorb while recovering, not a
// model of its collapse under them.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"
)

// Exit statuses.
const (
	exitError = 1
	exitUsage = 2
)

// maxPayments bounds the payments one strategy makes, so that a typo in
// -clients or -rate cannot exhaust the machine's memory.
const maxPayments = 1_000_000

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	os.Exit(realMain(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "outage:", err)
		return exitUsage
	}
	if _, err := run(ctx, cfg, stdout); err != nil {
		fmt.Fprintln(stderr, "outage:", err)
		return exitError
	}
	return 0
}

// parseFlags parses the command line. Errors and -h output go to stderr.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	var cfg config
	fs := flag.NewFlagSet("outage", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: outage [-clients N] [-rate R] [-outage D] [-drop] [-svg FILE] [flags]")
		fs.PrintDefaults()
	}
	fs.IntVar(&cfg.clients, "clients", 100, "checkout servers in the fleet, each with its own client (1 to 10000)")
	fs.Float64Var(&cfg.rate, "rate", 2, "payments per simulated second per client, arriving at random")
	fs.DurationVar(&cfg.before, "before", 10*time.Second, "simulated time the gateway is healthy before the outage")
	fs.DurationVar(&cfg.outage, "outage", 30*time.Second, "simulated length of the outage")
	fs.DurationVar(&cfg.after, "after", 20*time.Second, "simulated time the gateway is healthy after the outage")
	fs.DurationVar(&cfg.late, "late", 10*time.Second, "the start of the outage that the late ratio leaves out")
	fs.DurationVar(&cfg.scale, "scale", 300*time.Millisecond, "the real `duration` of one simulated second (1ms to 10s)")
	fs.BoolVar(&cfg.drop, "drop", false, "drop every connection during the outage instead of answering 503")
	fs.Int64Var(&cfg.seed, "seed", 1, "the seed of the customers' arrivals")
	fs.StringVar(&cfg.svgPath, "svg", "", "write a chart of the calls per second to this `file`")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	return cfg, cfg.validate()
}

func (c *config) validate() error {
	switch {
	case c.clients < 1 || c.clients > 10000:
		return fmt.Errorf("-clients %d: want 1 to 10000", c.clients)
	case !(c.rate > 0) || math.IsInf(c.rate, 0): // also refuses NaN
		return fmt.Errorf("-rate %v: want a positive number", c.rate)
	case c.before < 0:
		return fmt.Errorf("-before %v: want 0 or more", c.before)
	case c.outage <= 0:
		return fmt.Errorf("-outage %v: want more than 0", c.outage)
	case c.after < 0:
		return fmt.Errorf("-after %v: want 0 or more", c.after)
	case c.late < 0:
		return fmt.Errorf("-late %v: want 0 or more", c.late)
	case c.scale < time.Millisecond || c.scale > 10*time.Second:
		return fmt.Errorf("-scale %v: want 1ms to 10s", c.scale)
	}
	if n := float64(c.clients) * c.rate * c.timeline().Seconds(); n > maxPayments {
		return fmt.Errorf("-clients %d × -rate %v × %v is about %.0f payments per strategy: want at most %d",
			c.clients, c.rate, c.timeline(), n, maxPayments)
	}
	return nil
}

// run simulates, prints the table, writes the chart if asked, and fails if
// a row has a duplicate or a lost charge.
func run(ctx context.Context, cfg config, stdout io.Writer) (*results, error) {
	began := time.Now()
	fmt.Fprintf(stdout, "%d clients, %g payments per second each; %v healthy, %v outage (%s), %v healthy; "+
		"1 simulated second = %v\n\n",
		cfg.clients, cfg.rate, cfg.before, cfg.outage, cfg.outageKind(), cfg.after, cfg.scale)
	res, err := simulate(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := printTable(stdout, res); err != nil {
		return nil, err
	}
	if cfg.svgPath != "" {
		if err := os.WriteFile(cfg.svgPath, []byte(chart(res)), 0o644); err != nil {
			return nil, err
		}
		fmt.Fprintf(stdout, "\nchart written to %s\n", cfg.svgPath)
	}
	fmt.Fprintf(stdout, "\nran in %.1fs of real time; the customers arrived at most %.2fs (simulated) behind schedule\n",
		time.Since(began).Seconds(), res.lag.Seconds())
	return res, verify(stdout, res)
}

// printTable prints one row per strategy; the ratios are relative to the
// first row, the fleet without retries.
func printTable(w io.Writer, res *results) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "strategy\tcalls in outage\tcalls total\toutage ÷ no-retry\tafter %v ÷ no-retry\tpeak calls/s\t"+
		"busy until\tpayments\tcharged\tfailed\tunknown\tsettled later\tduplicates\n", res.cfg.late)
	base := res.rows[0]
	for _, r := range res.rows {
		fmt.Fprintf(tw, "%s\t%d\t%d\t%s\t%s\t%d\t%.1fs\t%d\t%d\t%d\t%d\t%d\t%d\n",
			r.name, r.outageCalls, r.totalCalls, ratio(r.outageCalls, base.outageCalls), ratio(r.lateCalls, base.lateCalls),
			r.peak, r.settled.Seconds(), r.payments, r.charged, r.failed, r.unknown, r.settledLater, r.duplicates)
	}
	return tw.Flush()
}

func ratio(n, base int64) string {
	if base == 0 {
		return "-"
	}
	return fmt.Sprintf("%.2f", float64(n)/float64(base))
}

// verify reports the ledger checks, and fails if any row broke one.
func verify(w io.Writer, res *results) error {
	var bad []string
	for _, r := range res.rows {
		if r.duplicates != 0 || r.lost != 0 || r.strays != 0 {
			bad = append(bad, fmt.Sprintf("%s: %d duplicate(s), %d lost charge(s), %d charge(s) under unknown keys",
				r.name, r.duplicates, r.lost, r.strays))
		}
	}
	if len(bad) > 0 {
		return errors.New(strings.Join(bad, "; "))
	}
	fmt.Fprintln(w, "ledger check, every row: no duplicates; every payment the client saw charged, "+
		"settled later ones included, is in the ledger exactly once under its key; no other charges")
	return nil
}
