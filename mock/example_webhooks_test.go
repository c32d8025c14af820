package mock_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"

	"github.com/stripe/stripe-go/v85"
	stripewebhook "github.com/stripe/stripe-go/v85/webhook"

	"github.com/payonce/payonce/mock"
)

// A webhook endpoint on a loopback receiver, a duplicate delivery, and a
// receiver that verifies each delivery with stripe-go and processes each
// event once, whatever the mock sends it.
func ExampleGateway_WaitDeliveries() {
	srv := mock.NewServer()
	defer srv.Close()
	ctx := context.Background()
	sc := stripe.NewClient("sk_test_anything", stripe.WithBackends(stripe.NewBackendsWithConfig(
		&stripe.BackendConfig{URL: stripe.String(srv.URL), LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull}})))

	var (
		mu        sync.Mutex
		secret    string
		processed = map[string]bool{}
		received  int
	)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		ev, err := stripewebhook.ConstructEvent(body, r.Header.Get("Stripe-Signature"), secret)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		received++
		processed[ev.ID] = true // an idempotent receiver keys on the event id
	}))
	defer receiver.Close()

	mu.Lock()
	we, err := sc.V1WebhookEndpoints.Create(ctx, &stripe.WebhookEndpointCreateParams{
		URL: stripe.String(receiver.URL), EnabledEvents: stripe.StringSlice([]string{"charge.succeeded"})})
	if err != nil {
		fmt.Println(err)
		return
	}
	secret = we.Secret
	mu.Unlock()

	if err := srv.InjectDeliveryFault(mock.DeliveryFault{Kind: mock.DuplicateDelivery, Copies: 2}); err != nil {
		fmt.Println(err)
		return
	}
	_, err = sc.V1Charges.Create(ctx, &stripe.ChargeCreateParams{Amount: stripe.Int64(2000), Currency: stripe.String("usd"),
		Source: &stripe.PaymentSourceSourceParams{Token: stripe.String("tok_visa")}})
	if err != nil {
		fmt.Println(err)
		return
	}
	st, err := srv.WaitDeliveries(ctx)
	if err != nil {
		fmt.Println(err)
		return
	}
	mu.Lock()
	defer mu.Unlock()
	fmt.Println("delivered:", st.Delivered, "received:", received, "processed:", len(processed))
	// Output:
	// delivered: 3 received: 3 processed: 1
}
