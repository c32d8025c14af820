// Command stripe runs stripe-go through payonce's retry engine, and without
// it, against the mock gateway's Stripe dialect, on the same four faults.
//
// It starts two in-process mock gateways, one per side, and breaks each the
// same way, one fault per order:
//
//   - order 1, drop_after ×3: the charge commits and the connection is
//     dropped, three times in a row (one more than stripe-go's two network
//     retries);
//   - order 2, fail_before 503: the gateway is briefly unavailable, nothing
//     executes;
//   - order 3, fail_after 500: the charge commits, the answer is a 500;
//   - order 4, in-flight 409: the request is held in flight (a delay
//     fault) while a second request with the same key arrives, as a double
//     click does, and meets 409 idempotency_key_in_use.
//
// On the payonce side, stripe-go sends through payonce.NewHTTPClient with
// its own retries off (MaxNetworkRetries 0): every order is charged once.
// On the other, stripe-go uses its own client and default retries: it gives
// up on all four, and an application that calls again after an error, as
// most do, charges orders 1 and 3 twice, since stripe-go gives the new call
// a new idempotency key.
//
//	go run ./examples/stripe
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/stripe/stripe-go/v85"

	"github.com/payonce/payonce"
	"github.com/payonce/payonce/mock"
)

const apiKey = "sk_test_example_stripe"

func main() {
	if err := run(context.Background(), os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// An order is one charge an application makes, with the fault that hits it.
type order struct {
	n        int
	amount   int64
	fault    string
	inject   mock.Fault
	inFlight bool // held in flight while a second request with its key arrives
}

var orders = []order{
	{n: 1, amount: 1100, fault: "drop_after ×3",
		inject: mock.Fault{Kind: mock.DropAfter, Method: http.MethodPost, Path: "/v1/charges", Times: 3}},
	{n: 2, amount: 1200, fault: "fail_before 503",
		inject: mock.Fault{Kind: mock.FailBefore, Status: http.StatusServiceUnavailable, Method: http.MethodPost, Path: "/v1/charges"}},
	{n: 3, amount: 1300, fault: "fail_after 500",
		inject: mock.Fault{Kind: mock.FailAfter, Status: http.StatusInternalServerError, Method: http.MethodPost, Path: "/v1/charges"}},
	{n: 4, amount: 1400, fault: "in-flight 409", inFlight: true,
		inject: mock.Fault{Kind: mock.Delay, Method: http.MethodPost, Path: "/v1/charges"}},
}

// A charger is how an application charges an order through a stripe-go
// client, and describes what happened in one line. key is the order's own
// idempotency key, "" to let stripe-go make one.
type charger func(ctx context.Context, sc *stripe.Client, o order, key string) string

func run(ctx context.Context, out io.Writer) error {
	fmt.Fprintln(out, "stripe-go v85 through payonce.NewHTTPClient (stripe-go's own retries off):")
	withPayonce, err := side(ctx, out, func(gw *mock.Server) (*stripe.Client, error) {
		hc, err := payonce.NewHTTPClient(payonce.WithBackoff(10*time.Millisecond, 100*time.Millisecond))
		if err != nil {
			return nil, err
		}
		return stripe.NewClient(apiKey, stripe.WithBackends(stripe.NewBackendsWithConfig(&stripe.BackendConfig{
			HTTPClient:        hc,
			MaxNetworkRetries: stripe.Int64(0), // payonce retries, stripe-go does not
			URL:               stripe.String(gw.URL),
			LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
			EnableTelemetry:   stripe.Bool(false),
		}))), nil
	}, chargeWithPayonce)
	if err != nil {
		return err
	}
	fmt.Fprintln(out, "\nstripe-go alone (its own client, default retries), the application calling once more after an error:")
	alone, err := side(ctx, out, func(gw *mock.Server) (*stripe.Client, error) {
		return stripe.NewClient(apiKey, stripe.WithBackends(stripe.NewBackendsWithConfig(&stripe.BackendConfig{
			URL:             stripe.String(gw.URL),
			LeveledLogger:   &stripe.LeveledLogger{Level: stripe.LevelNull},
			EnableTelemetry: stripe.Bool(false),
		}))), nil
	}, chargeAlone)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nthrough payonce: %d charges for %d orders, %d suspected duplicates; "+
		"stripe-go alone: %d charges, %d suspected duplicates\n",
		withPayonce.charges, len(orders), withPayonce.duplicates, alone.charges, alone.duplicates)
	if withPayonce.charges != len(orders) || withPayonce.duplicates != 0 {
		return errors.New("payonce side: not one charge per order")
	}
	return nil
}

// tally is what a side's gateway holds at the end.
type tally struct{ charges, duplicates int }

// side runs every order against a fresh gateway, through the client that
// newClient makes for it.
func side(ctx context.Context, out io.Writer, newClient func(*mock.Server) (*stripe.Client, error), charge charger) (tally, error) {
	gw := mock.NewServer()
	defer gw.Close()
	sc, err := newClient(gw)
	if err != nil {
		return tally{}, err
	}
	for _, o := range orders {
		before := len(gw.Requests())
		if o.inFlight {
			err = doubleClick(ctx, out, gw, sc, o, charge)
		} else {
			err = gw.InjectFault(o.inject)
			if err == nil {
				fmt.Fprintf(out, "  order %d (%s): %s", o.n, o.fault, charge(ctx, sc, o, ""))
			}
		}
		if err != nil {
			return tally{}, err
		}
		fmt.Fprintf(out, " [%d requests at the gateway]\n", len(gw.Requests())-before)
	}
	t := tally{charges: len(gw.Charges()), duplicates: len(gw.SuspectedDuplicates(time.Hour))}
	fmt.Fprintf(out, "  gateway: %d charges for %d orders, %d suspected duplicates\n", t.charges, len(orders), t.duplicates)
	return t, nil
}

// doubleClick charges o twice with the order's own key, the second while
// the first is held in flight; the first is let go once the second has met
// the gateway's 409.
func doubleClick(ctx context.Context, out io.Writer, gw *mock.Server, sc *stripe.Client, o order, charge charger) error {
	release, holding := make(chan struct{}), make(chan struct{}, 1)
	f := o.inject
	f.Release, f.Holding = release, holding
	if err := gw.InjectFault(f); err != nil {
		return err
	}
	key := fmt.Sprintf("order_%d", o.n)
	first, second := make(chan string, 1), make(chan string, 1)
	go func() { first <- charge(ctx, sc, o, key) }()
	<-holding
	go func() { second <- charge(ctx, sc, o, key) }()
	conflicts := gw.Stats().Conflicts
	if _, err := gw.WaitStats(ctx, func(st mock.Stats) bool { return st.Conflicts > conflicts }); err != nil {
		close(release)
		return err
	}
	close(release)
	fmt.Fprintf(out, "  order %d (%s): first click %s; second click %s", o.n, o.fault, <-first, <-second)
	return nil
}

func params(o order, key string) *stripe.ChargeCreateParams {
	p := &stripe.ChargeCreateParams{Amount: stripe.Int64(o.amount), Currency: stripe.String("usd"),
		Source:      &stripe.PaymentSourceSourceParams{Token: stripe.String("tok_visa")},
		Description: stripe.String(fmt.Sprintf("order %d", o.n))}
	if key != "" {
		p.SetIdempotencyKey(key)
	}
	return p
}

// chargeWithPayonce is the application on payonce's engine: an unknown
// outcome (retries ran out after an attempt that may have charged) is
// settled by sending again with the key from the error, never a new one.
func chargeWithPayonce(ctx context.Context, sc *stripe.Client, o order, key string) string {
	for {
		ch, err := sc.V1Charges.Create(ctx, params(o, key))
		var unknown *payonce.OutcomeUnknownError
		switch {
		case err == nil:
			s := fmt.Sprintf("charged %s after %s attempt(s)", ch.ID, ch.LastResponse.Header.Get(payonce.AttemptsHeader))
			if ch.LastResponse.Header.Get("Idempotent-Replayed") == "true" {
				s += ", replayed"
			}
			return s
		case errors.As(err, &unknown):
			key = unknown.IdempotencyKey // settle it: the same key, so never a second charge
		default:
			return "failed: " + describe(err)
		}
	}
}

// chargeAlone is the application on stripe-go alone: after an error it
// calls once more, as most applications do, with the same parameters.
// Without a key of its own, stripe-go gives that call a new one: a second
// charge when the first had executed.
func chargeAlone(ctx context.Context, sc *stripe.Client, o order, key string) string {
	_, err := sc.V1Charges.Create(ctx, params(o, key))
	if err == nil {
		return "charged"
	}
	s := "stripe-go gave up: " + describe(err)
	if key != "" {
		return s // the order's own key: calling again would only replay it
	}
	if _, err := sc.V1Charges.Create(ctx, params(o, key)); err != nil {
		return s + "; called again: " + describe(err)
	}
	return s + "; called again: charged"
}

// describe names an error as the application sees it.
func describe(err error) string {
	var se *stripe.Error
	if errors.As(err, &se) {
		return fmt.Sprintf("*stripe.Error %d %s", se.HTTPStatusCode, se.Code)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		return "network error: " + ue.Err.Error()
	}
	return err.Error()
}
