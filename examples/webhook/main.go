// Command webhook shows the receiving side: a webhook receiver that creates
// exactly one order per event, however often the sender delivers it.
//
// Webhook senders retry. A delivery that got no answer in time is sent again,
// sometimes while the first delivery is still being processed, and a naive
// receiver ships the order twice. Here the receiver puts the idempotency
// middleware in front of its handler and keys each delivery by the event's
// id, which the sender repeats on every attempt in the webhook-id header (as
// the Standard Webhooks specification has it).
//
//	go run ./examples/webhook [-events N]
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"time"

	"github.com/payonce/payonce/idempotency"
)

// Event is what the payment gateway sends.
type Event struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	OrderID string `json:"order_id"`
}

// Receiver keeps the orders it has shipped. Its handler is not idempotent on
// its own: every call ships.
type Receiver struct {
	mu      sync.Mutex
	shipped map[string]int // event id → times shipped

	// process, if set, runs before an event is shipped; the program uses it
	// to make some deliveries slow, and the test to hold them on a channel.
	process func(Event)
}

// NewReceiver returns a receiver that has shipped nothing.
func NewReceiver() *Receiver {
	return &Receiver{shipped: make(map[string]int)}
}

func (rc *Receiver) ship(w http.ResponseWriter, r *http.Request) {
	var ev Event
	if err := json.NewDecoder(r.Body).Decode(&ev); err != nil || ev.ID == "" {
		// Nothing was shipped, so the key is released and a corrected
		// delivery can use it.
		idempotency.NotExecuted(r.Context())
		http.Error(w, "bad event", http.StatusBadRequest)
		return
	}
	if rc.process != nil {
		rc.process(ev)
	}
	rc.mu.Lock()
	rc.shipped[ev.ID]++
	rc.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"shipped":%q}`+"\n", ev.OrderID)
}

// Handler returns the receiver's endpoint behind the idempotency middleware.
func (rc *Receiver) Handler() (http.Handler, error) {
	mw, err := idempotency.New(idempotency.NewMemoryStore(), idempotency.WithTTL(72*time.Hour))
	if err != nil {
		return nil, err
	}
	keyed := mw.Wrap(http.HandlerFunc(rc.ship))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The event id is the idempotency key: the same event, however
		// often delivered, is one operation.
		if id := r.Header.Get("Webhook-Id"); id != "" {
			r.Header.Set("Idempotency-Key", id)
		}
		keyed.ServeHTTP(w, r)
	}), nil
}

// Shipped reports how many orders were shipped in all, and how many events
// were shipped more than once.
func (rc *Receiver) Shipped() (orders, duplicates int) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for _, n := range rc.shipped {
		orders += n
		if n > 1 {
			duplicates++
		}
	}
	return orders, duplicates
}

// Sender delivers events the way webhook senders do: it gives each attempt
// a short timeout and tries again, up to MaxAttempts times, until it gets a
// 2xx.
type Sender struct {
	URL         string
	Client      *http.Client
	MaxAttempts int
	// Wait is how long to wait before another attempt.
	Wait func(attempt int) time.Duration
}

// Deliver sends ev until it is acknowledged, and reports the attempts made.
func (s *Sender) Deliver(ctx context.Context, ev Event) (attempts int, err error) {
	body, err := json.Marshal(ev)
	if err != nil {
		return 0, err
	}
	for attempts = 1; ; attempts++ {
		err = s.attempt(ctx, ev.ID, body)
		if err == nil || attempts == s.MaxAttempts {
			return attempts, err
		}
		select {
		case <-time.After(s.Wait(attempts)):
		case <-ctx.Done():
			return attempts, ctx.Err()
		}
	}
}

func (s *Sender) attempt(ctx context.Context, id string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.URL, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Webhook-Id", id)
	resp, err := s.Client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("delivery of %s: status %d", id, resp.StatusCode)
	}
	return nil
}

func main() {
	events, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		os.Exit(2) // the flag package has said why, and the usage
	}
	if err := run(os.Stdout, events); err != nil {
		log.Fatal(err)
	}
}

// parseFlags parses the command line and returns how many events to
// deliver. Errors and -h output, the usage, go to stderr.
func parseFlags(args []string, stderr io.Writer) (events int, err error) {
	fs := flag.NewFlagSet("webhook", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: go run ./examples/webhook [-events N]

Delivers N webhook events to a receiver behind the idempotency middleware,
keyed by each event's id, and redelivers the slow ones while they are still
being processed, as webhook senders do. Every event ships exactly one order.
Sender and receiver run in this process; nothing needs setting up.

`)
		fs.PrintDefaults()
	}
	fs.IntVar(&events, "events", 20, "how many events to deliver (1 or more)")
	if err := fs.Parse(args); err != nil {
		return 0, err
	}
	switch {
	case fs.NArg() > 0:
		err = fmt.Errorf("unexpected arguments %q", fs.Args())
	case events < 1:
		err = fmt.Errorf("-events %d: want 1 or more", events)
	}
	if err != nil {
		fmt.Fprintln(fs.Output(), "webhook:", err)
		fs.Usage()
	}
	return events, err
}

func run(out io.Writer, n int) error {
	rc := NewReceiver()
	// Every third event is slow to process: longer than the sender waits
	// for an answer, so the sender delivers it again while it is still
	// being processed.
	rc.process = func(ev Event) {
		var i int
		fmt.Sscanf(ev.ID, "evt_%d", &i)
		if i%3 == 0 {
			time.Sleep(150 * time.Millisecond)
		}
	}
	h, err := rc.Handler()
	if err != nil {
		return err
	}
	srv := httptest.NewServer(h)
	defer srv.Close()

	sender := &Sender{
		URL:         srv.URL,
		Client:      &http.Client{Timeout: 50 * time.Millisecond},
		MaxAttempts: 5,
		Wait:        func(attempt int) time.Duration { return time.Duration(attempt) * 40 * time.Millisecond },
	}
	fmt.Fprintf(out, "delivering %d events to %s, each up to %d times\n", n, srv.URL, sender.MaxAttempts)

	var (
		wg         sync.WaitGroup
		mu         sync.Mutex
		deliveries int
		failed     []error
	)
	for i := 1; i <= n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ev := Event{ID: fmt.Sprintf("evt_%d", i), Type: "charge.succeeded", OrderID: fmt.Sprintf("ord_%d", i)}
			attempts, err := sender.Deliver(context.Background(), ev)
			mu.Lock()
			defer mu.Unlock()
			deliveries += attempts
			if err != nil {
				failed = append(failed, err)
			}
		}()
	}
	wg.Wait()

	orders, dups := rc.Shipped()
	fmt.Fprintf(out, "deliveries made:   %d\n", deliveries)
	fmt.Fprintf(out, "orders shipped:    %d\n", orders)
	fmt.Fprintf(out, "shipped twice:     %d\n", dups)
	if len(failed) > 0 {
		return fmt.Errorf("%d events were never acknowledged: %w", len(failed), errors.Join(failed...))
	}
	if orders != n || dups != 0 {
		return fmt.Errorf("shipped %d orders for %d events", orders, n)
	}
	fmt.Fprintln(out, "every event shipped exactly once")
	return nil
}
