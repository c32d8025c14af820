// Command quickstart charges a card through a gateway whose network
// misbehaves in the worst place, and shows that the customer is charged once.
//
// It starts an in-process mock gateway and breaks it on purpose: the first
// response is lost after the charge has committed, and the next attempt gets
// a 503. The client retries with the same idempotency key, so the third
// attempt is answered with a replay of the first charge instead of a second
// one.
//
//	go run ./examples/quickstart
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/payonce/payonce"
	"github.com/payonce/payonce/mock"
)

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

func run(ctx context.Context, out io.Writer) error {
	gateway := mock.NewServer()
	defer gateway.Close()
	// The network fails where it hurts: after the charge commits, the
	// answer is lost; then the gateway is briefly unavailable.
	gateway.InjectFault(mock.Fault{Kind: mock.DropAfter, Method: http.MethodPost, Path: "/v1/charges"})
	gateway.InjectFault(mock.Fault{Kind: mock.FailBefore, Method: http.MethodPost, Path: "/v1/charges", Status: http.StatusServiceUnavailable})

	fmt.Fprintf(out, "mock gateway at %s: it will lose the first answer, then answer 503\n\n", gateway.URL)
	client, err := payonce.NewClient("sk_test_quickstart",
		payonce.WithBaseURL(gateway.URL),
		payonce.WithBackoff(50*time.Millisecond, time.Second),
		payonce.WithLogger(slog.New(&retryPrinter{out: out})),
	)
	if err != nil {
		return err
	}

	ch, err := chargeInvoice(ctx, client)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "attempt %d succeeded", ch.LastResponse.Attempts)
	if ch.LastResponse.Replayed {
		fmt.Fprint(out, ": the gateway replayed the stored result of the first attempt, it did not charge again")
	}
	fmt.Fprintf(out, "\n\ncharge %s: %s, %d %s, key %q\n", ch.ID, ch.Status, ch.Amount, ch.Currency, ch.LastResponse.IdempotencyKey)

	n := len(gateway.Charges())
	fmt.Fprintf(out, "the gateway holds %d charge(s) for this invoice\n", n)
	if n != 1 {
		return fmt.Errorf("expected exactly one charge, the gateway holds %d", n)
	}
	return nil
}

// chargeInvoice is the code a billing service runs. Its key is the invoice's
// business identifier, so every attempt of this charge, in this process or
// after a restart, is the same operation to the gateway.
func chargeInvoice(ctx context.Context, client *payonce.Client) (*payonce.Charge, error) {
	ch, err := client.Charges.Create(ctx, &payonce.ChargeParams{
		Amount:         2000,
		Currency:       "usd",
		PaymentMethod:  "tok_visa",
		Description:    "Invoice 456",
		Metadata:       map[string]string{"invoice": "456"},
		IdempotencyKey: "invoice_456",
	})
	var unknown *payonce.OutcomeUnknownError
	switch {
	case errors.As(err, &unknown):
		// The charge may or may not have happened. Keep the key: retrying
		// later with it settles the outcome without charging twice.
		return nil, fmt.Errorf("outcome unknown, retry later with key %q: %w", unknown.IdempotencyKey, err)
	case errors.Is(err, payonce.ErrCardDeclined):
		return nil, fmt.Errorf("the card was declined: %w", err)
	case err != nil:
		return nil, err
	}
	return ch, nil
}

// retryPrinter is a slog.Handler that tells each retry in plain words.
type retryPrinter struct{ out io.Writer }

func (p *retryPrinter) Enabled(context.Context, slog.Level) bool { return true }
func (p *retryPrinter) WithAttrs([]slog.Attr) slog.Handler       { return p }
func (p *retryPrinter) WithGroup(string) slog.Handler            { return p }

func (p *retryPrinter) Handle(_ context.Context, r slog.Record) error {
	attrs := map[string]slog.Value{}
	r.Attrs(func(a slog.Attr) bool { attrs[a.Key] = a.Value; return true })
	if _, ok := attrs["wait"]; !ok {
		return nil // only retries are told here
	}
	fmt.Fprintf(p.out, "attempt %s failed: %s; retrying in %s with the same key %s\n",
		attrs["attempt"], attrs["reason"], attrs["wait"].Duration().Round(time.Millisecond), attrs["idempotency_key"])
	return nil
}
