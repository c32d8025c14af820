package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"

	"github.com/payonce/payonce"
	"github.com/payonce/payonce/mock"
)

// errCrashed is returned by run when config.crash returns instead of ending
// the process.
var errCrashed = errors.New("crashed on purpose (-crash-after)")

// embeddedNote is printed when a run starts an embedded gateway: a crash or
// Ctrl-C followed by a rerun is the point of the example, and against this
// gateway it would charge everything again, on a new gateway.
const embeddedNote = `billing: NOTE: this embedded gateway dies with this process. A rerun after a crash or Ctrl-C
billing: NOTE: starts over on a new, empty gateway and charges every invoice again. To see a rerun
billing: NOTE: replay instead, run the standalone mock and point the batch at it (see the README):
billing: NOTE:   go run ./cmd/payonce-mock -chaos 0.2
billing: NOTE:   go run ./examples/billing -gateway http://127.0.0.1:12111`

// errDoubleCharge is returned by run when the gateway holds two charges for
// one invoice, which this program exists to prevent.
var errDoubleCharge = errors.New("an invoice was charged twice")

// invoice is one annual renewal to charge.
type invoice struct {
	ID            string
	Amount        int64 // in cents
	PaymentMethod string
}

// newInvoices generates the batch: inv_0001 to inv_NNNN. Amounts are all
// different, as renewals of different customers usually are, so that the
// gateway's duplicate check cannot mistake two invoices for one charge made
// twice. The test cards decline every 17th invoice, and every 23rd for lack
// of funds.
func newInvoices(n int) []invoice {
	invs := make([]invoice, n)
	for i := range invs {
		num := i + 1
		pm := "tok_visa"
		switch {
		case num%17 == 0:
			pm = "tok_chargeDeclined"
		case num%23 == 0:
			pm = "tok_chargeDeclinedInsufficientFunds"
		case num%2 == 0:
			pm = "tok_mastercard"
		}
		invs[i] = invoice{ID: fmt.Sprintf("inv_%04d", num), Amount: 9_900 + int64(num)*100, PaymentMethod: pm}
	}
	return invs
}

// key is the invoice's idempotency key: the business event, this invoice's
// renewal for this period. It needs no storing, as every run derives it.
func (inv invoice) key(period string) (string, error) {
	return payonce.BusinessKey("renewal", inv.ID, period)
}

// summary counts what one run did.
type summary struct {
	charged int // charged by this run
	// replayed: already charged under the invoice's key, by an attempt
	// whose response was lost or by a run that died before saving it, so
	// the gateway answered with that charge. The summary does not tell
	// which: a first attempt is answered with a replay when an earlier run
	// made the charge.
	replayed int
	declined int
	unknown  int
	earlier  int // settled by an earlier run, skipped
	settled  int // left unknown by an earlier run, settled by this one
	left     int // not sent, the run stopped
}

func (s *summary) count(j job, e *entry) {
	switch {
	case e.Result == resultCharged && e.Replayed:
		s.replayed++
	case e.Result == resultCharged:
		s.charged++
	case e.Result == resultDeclined:
		s.declined++
	case e.Result == resultUnknown:
		s.unknown++
	}
	if j.retry && e.Result != resultUnknown {
		s.settled++
	}
}

func (s *summary) sent() int { return s.charged + s.replayed + s.declined + s.unknown }

// describe is the summary for the progress bar, shorter for a narrow
// terminal.
func (s *summary) describe(form summaryForm) string {
	switch form {
	case summaryNone:
		return "renewals"
	case summaryShort:
		return fmt.Sprintf("new %d rep %d dec %d unk %d", s.charged, s.replayed, s.declined, s.unknown)
	}
	return fmt.Sprintf("charged %d · replayed %d · declined %d · unknown %d", s.charged, s.replayed, s.declined, s.unknown)
}

// run charges the batch described by cfg. It draws progress on stderr when
// cfg.progress is set, writes notes to stderr, and ends with a summary on
// stdout unless it crashed on purpose.
//
// cfg.workers goroutines charge the invoices; this one alone records their
// results, saving the state after each. An invoice whose outcome is unknown
// is recorded and does not stop the batch. Any other failure, or ctx ending,
// stops it: no new invoice is sent, the ones in flight are recorded, and
// the summary says what is left for the next run.
func run(ctx context.Context, cfg config, stdout, stderr io.Writer) error {
	if err := cfg.validate(); err != nil {
		return err
	}
	if cfg.crashAfter > 0 && cfg.crash == nil {
		return errors.New("-crash-after needs a crash function")
	}
	baseURL, gateway := strings.TrimRight(cfg.gatewayURL, "/"), strings.TrimRight(cfg.gatewayURL, "/")
	if baseURL == "" {
		opts := []mock.Option{mock.WithChaos(cfg.chaos, cfg.seed)}
		if _, err := mock.New(opts...); err != nil { // NewServer would panic on it
			return fmt.Errorf("embedded gateway: %w", err)
		}
		srv := mock.NewServer(opts...)
		defer srv.Close()
		baseURL, gateway = srv.URL, embeddedGateway
		fmt.Fprintf(stderr, "billing: embedded mock gateway at %s, faults on %.0f%% of charge requests (seed %d)\n",
			srv.URL, cfg.chaos*100, cfg.seed)
		fmt.Fprintln(stderr, embeddedNote)
	}

	st, note, err := loadState(cfg.statePath, gateway, cfg.period)
	if err != nil {
		return err
	}
	if note != "" {
		fmt.Fprintln(stderr, "billing:", note)
	}

	client, err := payonce.NewClient(cfg.apiKey,
		payonce.WithBaseURL(baseURL),
		payonce.WithMaxRetries(cfg.maxRetries),
		payonce.WithBackoff(cfg.minBackoff, cfg.maxBackoff),
		payonce.WithMaxRetryAfter(cfg.maxRetryAfter),
	)
	if err != nil {
		return err
	}

	// What to send: every invoice the state has not settled, an unknown
	// one with the key it was sent with, never a new one.
	invs := newInvoices(cfg.invoices)
	var sum summary
	var todo []job
	for _, inv := range invs {
		prev := st.Invoices[inv.ID]
		if prev != nil && prev.settled() {
			sum.earlier++
			continue
		}
		key, err := inv.key(cfg.period)
		if err != nil {
			return err
		}
		if prev != nil {
			key = prev.Key
		}
		todo = append(todo, job{inv: inv, key: key, retry: prev != nil})
	}

	layout := layoutProgress(cmp.Or(cfg.columns, defaultColumns), len(invs))
	bar := newProgressBar(stderr, cfg.progress, len(invs), layout)
	endBar := func(finished bool) {
		if finished {
			bar.Finish()
		} else {
			bar.Exit()
		}
		if cfg.progress {
			fmt.Fprintln(stderr)
		}
	}
	bar.Add(sum.earlier)

	// stop ends the feeding of new invoices; the calls in flight finish.
	// A slot is taken for each invoice sent and given back once its result
	// is saved, so at most cfg.workers invoices are ever charged but not
	// saved: all that a crash can lose.
	stop := make(chan struct{})
	slots := make(chan struct{}, cfg.workers)
	jobs := make(chan job)
	go func() {
		defer close(jobs)
		for _, j := range todo {
			select {
			case slots <- struct{}{}:
			case <-stop:
				return
			case <-ctx.Done():
				return
			}
			select {
			case jobs <- j:
			case <-stop:
				return
			case <-ctx.Done():
				return
			}
		}
	}()
	results := make(chan done)
	var wg sync.WaitGroup
	for range cfg.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range jobs {
				e, err := charge(ctx, client, cfg.period, j.inv, j.key)
				results <- done{job: j, entry: e, err: err}
			}
		}()
	}
	go func() {
		wg.Wait()
		close(results)
	}()
	stopOnce := sync.OnceFunc(func() { close(stop) })
	defer func() { // when returning early, let the workers end
		stopOnce()
		for range results {
		}
	}()

	charges := 0 // successful charge calls of this run, for -crash-after
	var stopped error
	for d := range results {
		if d.err != nil {
			if stopped == nil {
				stopped = fmt.Errorf("%s: %w", d.inv.ID, d.err)
				if ctx.Err() != nil {
					stopped = fmt.Errorf("interrupted: %w", context.Cause(ctx))
				}
			}
			stopOnce()
			<-slots
			continue
		}
		e := d.entry
		if e.Result == resultCharged {
			charges++
			if charges == cfg.crashAfter {
				// The worst moment: the gateway has charged the invoice,
				// and the state file will never know.
				endBar(false)
				fmt.Fprintf(stderr, "billing: crashing on purpose after %d charges, before saving %s (%s)\n",
					charges, d.inv.ID, e.ChargeID)
				cfg.crash()
				return errCrashed
			}
		}
		st.Invoices[d.inv.ID] = e
		if err := st.save(cfg.statePath); err != nil {
			// Going on would charge invoices the state cannot remember.
			// Stopping is safe: a rerun sends this one again with its key.
			endBar(false)
			return fmt.Errorf("save state after %s: %w", d.inv.ID, err)
		}
		sum.count(d.job, e)
		bar.Describe(sum.describe(layout.form))
		bar.Add(1)
		<-slots // saved: the next invoice may go
	}
	if stopped == nil && ctx.Err() != nil {
		stopped = fmt.Errorf("interrupted: %w", context.Cause(ctx))
	}
	sum.left = len(todo) - sum.sent()
	endBar(sum.left == 0)

	var led ledger
	ledErr := errors.New("the run was interrupted")
	if ctx.Err() == nil {
		led, ledErr = ledgerOf(ctx, client, cfg.period)
	}
	writeSummary(stdout, cfg, st, &sum, led, ledErr, stopped)
	if stopped != nil {
		return stopped
	}
	if len(led.doubled) > 0 {
		return fmt.Errorf("%w: %s", errDoubleCharge, strings.Join(led.doubled, ", "))
	}
	return nil
}

// job is an invoice to send, with its key.
type job struct {
	inv   invoice
	key   string
	retry bool // an earlier run left its outcome unknown
}

// done is a job's result: an entry, or a failure that stops the batch.
type done struct {
	job
	entry *entry
	err   error
}

// charge charges one invoice under key and tells what became of it. It
// returns an error, and no entry, only for a failure that should stop the
// batch: a definite refusal other than a decline (a key reused with another
// amount, a bad API key), or the gateway being unreachable.
func charge(ctx context.Context, client *payonce.Client, period string, inv invoice, key string) (*entry, error) {
	ch, err := client.Charges.Create(ctx, &payonce.ChargeParams{
		Amount:         inv.Amount,
		Currency:       "usd",
		PaymentMethod:  inv.PaymentMethod,
		Description:    fmt.Sprintf("Annual renewal %s, %s", period, inv.ID),
		Metadata:       map[string]string{"invoice": inv.ID, "period": period},
		IdempotencyKey: key,
	})
	var apiErr *payonce.Error
	var unknown *payonce.OutcomeUnknownError
	switch {
	case err == nil:
		return &entry{Result: resultCharged, Key: key, ChargeID: ch.ID, Replayed: ch.LastResponse.Replayed}, nil
	case errors.Is(err, payonce.ErrCardDeclined) && errors.As(err, &apiErr):
		return &entry{Result: resultDeclined, Key: key, DeclineCode: apiErr.DeclineCode}, nil
	case errors.As(err, &unknown):
		// Maybe charged, maybe not: keep the key that settles it.
		return &entry{Result: resultUnknown, Key: unknown.IdempotencyKey, Error: err.Error()}, nil
	}
	return nil, err
}

// ledger is what the gateway holds for the batch's period.
type ledger struct {
	charges int      // charges of this account for the period
	doubled []string // invoices with more than one charge
}

// ledgerOf lists the account's charges on the gateway and counts those of
// the batch, by the invoice and period in their metadata.
func ledgerOf(ctx context.Context, client *payonce.Client, period string) (ledger, error) {
	var led ledger
	perInvoice := make(map[string]int)
	for ch, err := range client.Charges.List(ctx, &payonce.ChargeListParams{Limit: 100}) {
		if err != nil {
			return ledger{}, err
		}
		if ch.Metadata["period"] != period || ch.Metadata["invoice"] == "" {
			continue
		}
		led.charges++
		perInvoice[ch.Metadata["invoice"]]++
	}
	for id, n := range perInvoice {
		if n > 1 {
			led.doubled = append(led.doubled, fmt.Sprintf("%s (%d charges)", id, n))
		}
	}
	slices.Sort(led.doubled)
	return led, nil
}

// writeSummary prints the run's table, and what the gateway and the state
// file hold for the whole batch.
func writeSummary(w io.Writer, cfg config, st *state, sum *summary, led ledger, ledErr error, stopped error) {
	fmt.Fprintf(w, "Renewals %s: %d invoices, state in %s\n\n", cfg.period, cfg.invoices, cfg.statePath)
	row := func(label string, n int) { fmt.Fprintf(w, "  %-28s %5d\n", label, n) }
	row("charged (new)", sum.charged)
	row("already charged (replayed)", sum.replayed)
	row("declined", sum.declined)
	row("outcome unknown", sum.unknown)
	row("settled by an earlier run", sum.earlier)
	if sum.left > 0 {
		row("not sent", sum.left)
	}
	fmt.Fprintln(w)

	var known, unknown int
	for _, e := range st.Invoices {
		switch e.Result {
		case resultCharged:
			known++
		case resultUnknown:
			unknown++
		}
	}
	switch {
	case ledErr != nil:
		fmt.Fprintf(w, "gateway: charges not listed: %v\n", ledErr)
	case len(led.doubled) > 0:
		fmt.Fprintf(w, "gateway: %d charges for %s, but CHARGED TWICE: %s\n", led.charges, cfg.period, strings.Join(led.doubled, ", "))
	default:
		fmt.Fprintf(w, "gateway: %d charges for %s, no invoice charged twice; the state file records %d charged invoices\n",
			led.charges, cfg.period, known)
	}
	if sum.replayed > 0 {
		fmt.Fprintln(w, "replayed: the gateway had already charged the invoice under its key, because the response to an "+
			"earlier attempt was lost or an earlier run died before saving it, and answered with that charge instead of charging again")
	}
	if sum.settled > 0 {
		fmt.Fprintf(w, "settled %s that an earlier run left unknown, with the stored keys\n", plural(sum.settled, "outcome"))
	}
	again := "run again to settle them"
	if cfg.gatewayURL == "" {
		again = "a run against a lasting gateway (-gateway) would settle them next time, " +
			"but this embedded one ends with the run"
	}
	if unknown > 0 {
		fmt.Fprintf(w, "%s with an unknown outcome: the keys are in %s; %s\n", plural(unknown, "invoice"), cfg.statePath, again)
	}
	if stopped != nil {
		fmt.Fprintf(w, "stopped early (%v): run again to finish the batch\n", stopped)
	}
}

// plural gives "1 invoice" or "2 invoices".
func plural(n int, noun string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, noun)
	}
	return fmt.Sprintf("%d %ss", n, noun)
}
