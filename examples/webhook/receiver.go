package main

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"sync"

	stripewebhook "github.com/stripe/stripe-go/v85/webhook"

	"github.com/payonce/payonce/idempotency"
	"github.com/payonce/payonce/webhook"
)

// newReceiver returns the webhook endpoint done right: package webhook's
// Receiver verifies each delivery's Stripe-Signature with the endpoint's
// secret, and only then claims the event's id, so that the shop runs once
// per event however often, and however concurrently, it is delivered. A
// delivery that fails verification gets 400 and claims nothing. The stats
// hear of every refusal and of what the idempotency middleware did.
func newReceiver(secret string, shop http.Handler, stats *tally) (http.Handler, error) {
	v, err := webhook.NewVerifier(webhook.Stripe, []string{secret})
	if err != nil {
		return nil, err
	}
	rc, err := webhook.NewReceiver(v, idempotency.NewMemoryStore(), shop,
		webhook.WithRefused(stats.refused), // log these: a wrong secret shows up here
		webhook.WithIdempotencyOptions(idempotency.WithObserver(stats.observed)))
	if err != nil {
		return nil, err
	}
	return rc, nil
}

// verifyOnly returns the control: the endpoint as most are written, with
// stripe-go's webhook.ConstructEvent checking the signature and the shop
// running for every delivery that passes. Forgeries are refused, but every
// redelivery ships again.
func verifyOnly(secret string, shop http.Handler, stats *tally) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, webhook.DefaultMaxBodyBytes))
		if err == nil {
			_, err = stripewebhook.ConstructEvent(body, r.Header.Get("Stripe-Signature"), secret)
		}
		if err != nil {
			stats.refused(r, err)
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		stats.verified()
		r.Body = io.NopCloser(bytes.NewReader(body))
		shop.ServeHTTP(w, r)
	})
}

// tally counts what reached the endpoint: every request, those verified,
// those refused and why, and, behind a Receiver, what the idempotency
// middleware did with each verified delivery.
type tally struct {
	mu       sync.Mutex
	arrived  int
	verify   int                         // behind verifyOnly
	refusals map[string]int              // reason → requests
	outcomes map[idempotency.Outcome]int // behind a Receiver
	replays  map[string]int              // event id → deliveries replayed

	// conflict, if set, is told of each delivery answered 409 because
	// another delivery of its event was in flight. The test uses it.
	conflict func(event string)
}

func newTally() *tally {
	return &tally{refusals: make(map[string]int), outcomes: make(map[idempotency.Outcome]int), replays: make(map[string]int)}
}

// count counts every request to next.
func (t *tally) count(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		t.mu.Lock()
		t.arrived++
		t.mu.Unlock()
		next.ServeHTTP(w, r)
	})
}

func (t *tally) verified() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.verify++
}

func (t *tally) refused(_ *http.Request, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refusals[reason(err)]++
}

func (t *tally) observed(_ *http.Request, ev idempotency.Event) {
	t.mu.Lock()
	t.outcomes[ev.Outcome]++
	if ev.Outcome == idempotency.Replayed {
		t.replays[ev.Key]++
	}
	t.mu.Unlock()
	if ev.Outcome == idempotency.Conflict && t.conflict != nil {
		t.conflict(ev.Key)
	}
}

// reason names why a delivery was refused, by package webhook's errors or
// by stripe-go's.
func reason(err error) string {
	switch {
	case errors.Is(err, webhook.ErrNoMatchingSignature), errors.Is(err, stripewebhook.ErrNoValidSignature):
		return "no matching signature"
	case errors.Is(err, webhook.ErrTooOld), errors.Is(err, stripewebhook.ErrTooOld):
		return "timestamp too old"
	case errors.Is(err, webhook.ErrTooNew):
		return "timestamp too new"
	case errors.Is(err, webhook.ErrNoSignature), errors.Is(err, stripewebhook.ErrNotSigned):
		return "no signature"
	case errors.Is(err, webhook.ErrMalformedHeader), errors.Is(err, stripewebhook.ErrInvalidHeader):
		return "malformed header"
	}
	return "other"
}
