package payonce_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"time"

	"github.com/payonce/payonce"
	"github.com/payonce/payonce/mock"
)

// The three ways to get a key. The README's "Choosing a key" shows this.
func Example_keys() {
	// 1. A business identifier: the same invoice and period always give the
	//    same key, so a rerun after a crash charges nothing twice.
	key, err := payonce.BusinessKey("renewal", "inv_0042", "2026")
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(key)

	// 2. A UUID created when the operation is born: store it with the
	//    order, and send it on every attempt, including after a restart.
	orderKey := payonce.NewKey()
	fmt.Println(len(orderKey), payonce.ValidateKey(orderKey) == nil)

	// 3. A hash of the content and a time window, for requests you do not
	//    control: identical content within 10 minutes is one operation.
	now := time.Date(2026, 11, 23, 12, 3, 0, 0, time.UTC)
	form := []byte(`{"email":"ada@example.com","plan":"annual"}`)
	a, _ := payonce.ContentKey(form, 10*time.Minute, now)
	b, _ := payonce.ContentKey(form, 10*time.Minute, now.Add(5*time.Minute))
	fmt.Println(a == b)
	// Output:
	// renewal:inv_0042:2026
	// 36 true
	// true
}

// Retries, with the defaults spelled out.
func ExampleNewClient() {
	client, err := payonce.NewClient("sk_test_123",
		payonce.WithBaseURL("https://gateway.example.com"),
		payonce.WithMaxRetries(3),                                // 4 attempts in all
		payonce.WithBackoff(250*time.Millisecond, 5*time.Second), // full jitter between them
		payonce.WithAttemptTimeout(15*time.Second),               // a hung attempt is abandoned and retried
		payonce.WithMaxRetryAfter(10*time.Second),                // the longest Retry-After honoured
	)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%v\n", client)
	// Output:
	// payonce.Client{BaseURL:"https://gateway.example.com" APIKey:sk_test_[redacted] MaxRetries:3 Backoff:250ms..5s AttemptTimeout:15s MaxRetryAfter:10s RetryBudget:100/100}
}

// Telling the errors apart.
func Example_errors() {
	gateway := mock.NewServer()
	defer gateway.Close()
	client, err := payonce.NewClient("sk_test_123", payonce.WithBaseURL(gateway.URL))
	if err != nil {
		log.Fatal(err)
	}
	ctx := context.Background()
	params := &payonce.ChargeParams{Amount: 2000, Currency: "usd", PaymentMethod: "tok_chargeDeclinedInsufficientFunds",
		IdempotencyKey: "order_77"}

	_, err = client.Charges.Create(ctx, params)
	var apiErr *payonce.Error
	switch {
	case errors.Is(err, payonce.ErrOutcomeUnknown):
		// Maybe charged: keep the key, retry later with it.
	case errors.Is(err, payonce.ErrCardDeclined) && errors.As(err, &apiErr):
		fmt.Println("declined:", apiErr.DeclineCode, "status", apiErr.StatusCode)
	case errors.Is(err, payonce.ErrKeyReused):
		// A bug: the same key was sent with a different request.
	case err != nil:
		log.Fatal(err)
	}

	params.Amount = 3000 // the same key for another amount
	_, err = client.Charges.Create(ctx, params)
	fmt.Println("key reused:", errors.Is(err, payonce.ErrKeyReused))
	// Output:
	// declined: insufficient_funds status 402
	// key reused: true
}

// A retry budget: when the gateway is down, the client stops retrying once
// the budget is spent, so a fleet does not multiply the load of an outage.
func ExampleWithRetryBudget() {
	gateway := mock.NewServer()
	defer gateway.Close()
	// The gateway is down: every request gets 503 until the fault is spent.
	if err := gateway.InjectFault(mock.Fault{Kind: mock.FailBefore, Status: 503, Times: 1000}); err != nil {
		log.Fatal(err)
	}

	// A budget of 10 tokens, where a retry after a 503 costs 5 and one
	// after a timeout 10. Give it to every client of the process.
	budget, err := payonce.NewRetryBudget(payonce.RetryBudgetConfig{Capacity: 10, RetryCost: 5, TimeoutCost: 10})
	if err != nil {
		log.Fatal(err)
	}
	client, err := payonce.NewClient("sk_test_123", payonce.WithBaseURL(gateway.URL),
		payonce.WithRetryBudget(budget), payonce.WithBackoff(time.Millisecond, time.Millisecond))
	if err != nil {
		log.Fatal(err)
	}

	for _, order := range []string{"order_1", "order_2"} {
		_, err := client.Charges.Create(context.Background(), &payonce.ChargeParams{
			Amount: 2000, Currency: "usd", PaymentMethod: "tok_visa", IdempotencyKey: order})
		var unknown *payonce.OutcomeUnknownError
		if errors.As(err, &unknown) {
			fmt.Printf("%s: %d attempt(s), budget exhausted: %v, settle later with key %q\n",
				order, unknown.Attempts, errors.Is(err, payonce.ErrRetryBudgetExhausted), unknown.IdempotencyKey)
		}
	}
	fmt.Println("tokens left:", budget.Tokens())
	// Output:
	// order_1: 3 attempt(s), budget exhausted: true, settle later with key "order_1"
	// order_2: 1 attempt(s), budget exhausted: true, settle later with key "order_2"
	// tokens left: 0
}
