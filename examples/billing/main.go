// Command billing charges a batch of annual renewals without ever charging an
// invoice twice, even when the batch dies halfway and is run again.
//
//	go run ./examples/billing
//
// It generates a few hundred invoices (-invoices) and charges each through a
// mock gateway whose network misbehaves: by default an embedded one where a
// fifth of the charge requests meet a random fault (a 503, a 429, an error
// or a dropped connection after the charge committed). Some test cards
// decline: every 17th invoice is declined, every 23rd lacks the funds. A
// progress bar runs on stderr, and a summary table ends on stdout.
//
// # The key
//
// Each invoice is charged under a key derived from the business event, the
// invoice and its billing period:
//
//	payonce.BusinessKey("renewal", "inv_0042", "2026") // "renewal:inv_0042:2026"
//
// The same invoice in the same period always gives the same key, so whatever
// sends it again (the client's retries, a rerun of the batch after a crash,
// an operator running it twice) is answered with the first charge, replayed,
// instead of a second one.
//
// # The state file
//
// The batch keeps what it learnt in a small JSON file (-state, default
// billing-state.json): per invoice, the charge id, the decline, or an unknown
// outcome with the key that settles it. It is rewritten atomically (a
// temporary file, then a rename) after every invoice. At most -workers
// invoices (8 by default) are ever sent and not yet saved, so a crash loses
// at most those, and their keys make sending them again safe.
// A run skips the invoices the file has settled, and sends the unknown ones
// again with their stored key: the gateway executes them if they never ran,
// or replays them if they did.
//
// # Crashing on purpose
//
// -crash-after N kills the process (exit status 3) right after the Nth charge
// of the run returned and before it was saved: the gateway has charged the
// invoice, the state file does not know it. This is the batch that is "half
// processed twice" when it is run again; here the rerun replays that charge
// and finishes the rest. The gateway has to outlive the crash, which the
// embedded one cannot, so try it with the standalone mock:
//
//	go run ./cmd/payonce-mock -chaos 0.2                                       # terminal 1
//	go run ./examples/billing -gateway http://127.0.0.1:12111 -crash-after 100 # terminal 2: exit status 3
//	go run ./examples/billing -gateway http://127.0.0.1:12111                  # replays one, charges the rest
//
// A state file belongs to the gateway it was written against: a run against
// another gateway refuses it, except that the state of an embedded gateway,
// which died with its process, is simply started over.
//
// The API key is $PAYONCE_API_KEY, or a test key that any mock accepts.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/payonce/payonce"
)

// Exit statuses.
const (
	exitError = 1
	exitUsage = 2
	exitCrash = 3 // -crash-after
)

// defaultAPIKey is used when $PAYONCE_API_KEY is empty; the mock accepts any
// sk_test_ key as an account of its own.
const defaultAPIKey = "sk_test_billing_example"

// maxInvoices keeps invoice ids at four digits.
const maxInvoices = 9999

// config is what run needs, parsed from the flags by parseFlags.
type config struct {
	invoices   int
	period     string
	statePath  string
	gatewayURL string // "" starts an embedded mock gateway
	apiKey     string
	crashAfter int // 0: never
	workers    int // invoices charged at once

	// The embedded gateway's faults.
	chaos float64
	seed  int64

	// The client's retries.
	maxRetries    int
	minBackoff    time.Duration
	maxBackoff    time.Duration
	maxRetryAfter time.Duration

	// progress draws the progress bar on stderr; main sets it when stderr
	// is a terminal.
	progress bool
	// columns is the width of the terminal the progress bar is drawn in;
	// 0 means defaultColumns.
	columns int
	// crash is called at -crash-after and must not return: main passes a
	// function that calls os.Exit(exitCrash). If it returns anyway, run
	// returns errCrashed at once, saving nothing.
	crash func()
}

func main() {
	os.Exit(realMain())
}

func realMain() int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "billing:", err)
		return exitUsage
	}
	cfg.progress = isTerminal(os.Stderr)
	if cfg.progress {
		cfg.columns = terminalColumns(os.Stderr)
	}
	cfg.crash = func() { os.Exit(exitCrash) }
	if err := run(ctx, cfg, os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "billing:", err)
		return exitError
	}
	return 0
}

// parseFlags parses the command line. Errors and -h output go to stderr.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	cfg := config{apiKey: os.Getenv(payonce.EnvAPIKey)}
	if cfg.apiKey == "" {
		cfg.apiKey = defaultAPIKey
	}
	fs := flag.NewFlagSet("billing", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: billing [-gateway URL] [-invoices N] [-state FILE] [-crash-after N] [flags]")
		fs.PrintDefaults()
	}
	fs.IntVar(&cfg.invoices, "invoices", 300, "how many renewal invoices to generate (1 to 9999)")
	fs.StringVar(&cfg.period, "period", "2026", "the billing `period` the invoices renew, part of each key")
	fs.StringVar(&cfg.statePath, "state", "billing-state.json", "the state `file`, rewritten after every invoice")
	fs.StringVar(&cfg.gatewayURL, "gateway", "", "the gateway's `URL`, such as http://127.0.0.1:12111 for payonce-mock (default: an embedded mock)")
	fs.IntVar(&cfg.workers, "workers", 8, "how many invoices are charged at once (1 to 64)")
	fs.IntVar(&cfg.crashAfter, "crash-after", 0, "exit abruptly, with status 3, right after the `N`th charge of this run, before saving it")
	fs.Float64Var(&cfg.chaos, "chaos", 0.2, "the embedded gateway's fraction of charge requests given a random fault")
	fs.Int64Var(&cfg.seed, "seed", 1, "the seed of the embedded gateway's faults")
	fs.IntVar(&cfg.maxRetries, "retries", payonce.DefaultMaxRetries, "how many times the client retries a failed attempt")
	fs.DurationVar(&cfg.minBackoff, "min-backoff", payonce.DefaultMinBackoff, "the client's first backoff ceiling")
	fs.DurationVar(&cfg.maxBackoff, "max-backoff", payonce.DefaultMaxBackoff, "the client's longest backoff")
	fs.DurationVar(&cfg.maxRetryAfter, "max-retry-after", payonce.DefaultMaxRetryAfter, "the longest Retry-After the client honours")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var embeddedOnly []string
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "chaos" || f.Name == "seed" {
			embeddedOnly = append(embeddedOnly, "-"+f.Name)
		}
	})
	if cfg.gatewayURL != "" && len(embeddedOnly) > 0 {
		return config{}, fmt.Errorf("%s set the embedded gateway's faults, and -gateway replaces it: "+
			"give them to payonce-mock instead", strings.Join(embeddedOnly, " and "))
	}
	return cfg, cfg.validate()
}

func (c *config) validate() error {
	switch {
	case c.invoices < 1 || c.invoices > maxInvoices:
		return fmt.Errorf("-invoices %d: want 1 to %d", c.invoices, maxInvoices)
	case c.statePath == "":
		return errors.New("-state: empty file name")
	case c.workers < 1 || c.workers > 64:
		return fmt.Errorf("-workers %d: want 1 to 64", c.workers)
	case c.crashAfter < 0:
		return fmt.Errorf("-crash-after %d: want 0 (never) or more", c.crashAfter)
	case c.chaos < 0 || c.chaos > 1:
		return fmt.Errorf("-chaos %v: want 0 to 1", c.chaos)
	}
	if _, err := payonce.BusinessKey("renewal", "inv_0001", c.period); err != nil {
		return fmt.Errorf("-period %q: %w", c.period, err)
	}
	return nil
}

// isTerminal reports whether f is a terminal, where a progress bar belongs;
// piped or redirected, stderr stays free of it.
func isTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
