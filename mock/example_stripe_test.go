package mock_test

import (
	"context"
	"fmt"

	"github.com/stripe/stripe-go/v85"

	"github.com/payonce/payonce/mock"
)

// Stripe's own Go client, unmodified but for its URL, against the mock's
// Stripe dialect: a payment intent authorized at creation, captured, and
// its creation replayed under the same key.
func Example_stripeGo() {
	srv := mock.NewServer()
	defer srv.Close()
	gatewayURL := srv.URL // or "http://127.0.0.1:12111", for go run ./cmd/payonce-mock
	ctx := context.Background()

	sc := stripe.NewClient("sk_test_anything", stripe.WithBackends(stripe.NewBackendsWithConfig(
		&stripe.BackendConfig{URL: stripe.String(gatewayURL)})))
	params := &stripe.PaymentIntentCreateParams{Amount: stripe.Int64(2000), Currency: stripe.String("usd"),
		PaymentMethod: stripe.String("pm_card_visa"), Confirm: stripe.Bool(true),
		CaptureMethod: stripe.String("manual")}
	params.SetIdempotencyKey("order_42")
	pi, err := sc.V1PaymentIntents.Create(ctx, params)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(pi.Status)
	pi, err = sc.V1PaymentIntents.Capture(ctx, pi.ID, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(pi.Status, pi.AmountReceived)

	again, err := sc.V1PaymentIntents.Create(ctx, params) // a retry: the same key, the same intent
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(again.ID == pi.ID, again.LastResponse.Header.Get("Idempotent-Replayed"))
	fmt.Println("charges:", len(srv.Charges()))
	// Output:
	// requires_capture
	// succeeded 2000
	// true true
	// charges: 1
}
