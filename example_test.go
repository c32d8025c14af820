package payonce_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"time"

	"github.com/payonce/payonce"
)

// lossyGateway answers the first request with each key by executing it and
// then losing the answer (503), and replays the stored answer afterwards, as
// the real gateway does.
func lossyGateway() *httptest.Server {
	var mu sync.Mutex
	seen := map[string]bool{}
	return httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		replay := seen[r.Header.Get("Idempotency-Key")]
		seen[r.Header.Get("Idempotency-Key")] = true
		mu.Unlock()
		if !replay {
			w.WriteHeader(http.StatusServiceUnavailable) // executed, but the answer is lost
			return
		}
		w.Header().Set("Idempotent-Replayed", "true")
		fmt.Fprint(w, `{"id":"ch_1","object":"charge","amount":2000,"currency":"usd","status":"succeeded","captured":true}`)
	}))
}

func ExampleChargesService_Create() {
	gw := lossyGateway()
	defer gw.Close()

	client, err := payonce.NewClient("sk_test_123", payonce.WithBaseURL(gw.URL),
		payonce.WithBackoff(time.Millisecond, 10*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	ch, err := client.Charges.Create(context.Background(), &payonce.ChargeParams{
		Amount: 2000, Currency: "usd", PaymentMethod: "tok_visa",
		Description: "Invoice 456", Metadata: map[string]string{"order": "456"},
		IdempotencyKey: "invoice_456",
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(ch.ID, ch.Status, ch.Amount, ch.Currency)
	fmt.Println("replayed:", ch.LastResponse.Replayed, "attempts:", ch.LastResponse.Attempts)
	// Output:
	// ch_1 succeeded 2000 usd
	// replayed: true attempts: 2
}

func ExampleBusinessKey() {
	// The same invoice always gives the same key: paying it twice, after a
	// crash or a double click, charges once.
	key, err := payonce.BusinessKey("invoice", "INV-2026-0042")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(key)

	// A refund is another operation: another namespace. Separators inside
	// ids are escaped, so different ids never share a key.
	refund, _ := payonce.BusinessKey("refund", "INV-2026-0042", "line:3")
	fmt.Println(refund)

	_, err = payonce.BusinessKey("invoice", "INV 42")
	fmt.Println(errors.Is(err, payonce.ErrInvalidKey))
	// Output:
	// invoice:INV-2026-0042
	// refund:INV-2026-0042:line%3A3
	// true
}

func ExampleOutcomeUnknownError() {
	var down atomic.Bool
	down.Store(true)
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		w.Header().Set("Idempotent-Replayed", "true") // it had executed after all
		fmt.Fprint(w, `{"id":"ch_7","status":"succeeded"}`)
	}))
	defer gw.Close()

	client, err := payonce.NewClient("sk_test_123", payonce.WithBaseURL(gw.URL),
		payonce.WithMaxRetries(2), payonce.WithBackoff(time.Millisecond, 2*time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}
	params := &payonce.ChargeParams{Amount: 2000, Currency: "usd", PaymentMethod: "tok_visa",
		IdempotencyKey: "order_789"}
	_, err = client.Charges.Create(context.Background(), params)

	var unknown *payonce.OutcomeUnknownError
	if errors.As(err, &unknown) {
		// Do not charge again with a new key, and do not tell the customer it
		// failed: keep the key with the order and settle it later.
		fmt.Println("outcome unknown after", unknown.Attempts, "attempts; settle with key", unknown.IdempotencyKey)
	}

	down.Store(false) // later, e.g. from a job that settles pending orders
	ch, err := client.Charges.Create(context.Background(), params)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("settled:", ch.ID, ch.Status, "replayed:", ch.LastResponse.Replayed)
	// Output:
	// outcome unknown after 3 attempts; settle with key order_789
	// settled: ch_7 succeeded replayed: true
}

func ExampleClient_Do() {
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"id":"po_1","key":%q}`, r.Header.Get("Idempotency-Key"))
	}))
	defer gw.Close()
	client, err := payonce.NewClient("sk_test_123", payonce.WithBaseURL(gw.URL))
	if err != nil {
		log.Fatal(err)
	}

	// An endpoint the typed services do not cover, with the same key and
	// retry machinery.
	req, err := client.NewRequest(http.MethodPost, "v1/payouts", map[string]any{"amount": 500}, "payout_2026_03")
	if err != nil {
		log.Fatal(err)
	}
	var payout struct{ ID, Key string }
	resp, err := client.Do(context.Background(), req, &payout)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(payout.ID, payout.Key, resp.StatusCode)
	// Output: po_1 payout_2026_03 200
}
