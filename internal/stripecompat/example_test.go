package stripecompat_test

import (
	"context"
	"errors"
	"fmt"
	"log"

	"github.com/stripe/stripe-go/v85"

	"github.com/payonce/payonce"
	"github.com/payonce/payonce/mock"
)

// stripe-go sending through payonce's retry engine. The README's "Using
// payonce's retries with stripe-go (or any SDK)" shows this.
func Example_stripeGo() {
	srv := mock.NewServer()
	defer srv.Close()
	gatewayURL := srv.URL
	ctx := context.Background()
	// The gateway loses its answer after charging, on every attempt.
	if err := srv.InjectFault(mock.Fault{Kind: mock.DropAfter, Method: "POST", Times: 4}); err != nil {
		log.Fatal(err)
	}

	hc, err := payonce.NewHTTPClient() // payonce's defaults: 4 attempts, budget, timeouts
	if err != nil {
		log.Fatal(err)
	}
	sc := stripe.NewClient("sk_test_anything", stripe.WithBackends(stripe.NewBackendsWithConfig(
		&stripe.BackendConfig{
			URL:               stripe.String(gatewayURL), // leave out for api.stripe.com
			HTTPClient:        hc,
			MaxNetworkRetries: stripe.Int64(0), // payonce retries; stripe-go must not
		})))

	params := &stripe.ChargeCreateParams{Amount: stripe.Int64(2000), Currency: stripe.String("usd"),
		Source: &stripe.PaymentSourceSourceParams{Token: stripe.String("tok_visa")}}
	_, err = sc.V1Charges.Create(ctx, params)
	var unknown *payonce.OutcomeUnknownError
	if errors.As(err, &unknown) {
		// Maybe charged: store unknown.IdempotencyKey with the order, and
		// settle later by sending the same request with it.
		params.SetIdempotencyKey(unknown.IdempotencyKey)
		ch, err := sc.V1Charges.Create(ctx, params)
		if err != nil {
			log.Fatal(err)
		}
		fmt.Println(ch.Amount, ch.LastResponse.Header.Get("Idempotent-Replayed"))
	}
	fmt.Println("charges:", len(srv.Charges()))
	// Output:
	// 2000 true
	// charges: 1
}
