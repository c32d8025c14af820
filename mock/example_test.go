package mock_test

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/payonce/payonce/mock"
)

// post creates a charge and describes the answer.
func post(srv *mock.Server, key, body string) string {
	req, _ := http.NewRequest("POST", srv.URL+"/v1/charges", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer sk_test_example")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	res, err := srv.Client().Do(req)
	if err != nil {
		return err.Error()
	}
	defer res.Body.Close()
	io.Copy(io.Discard, res.Body)
	if res.Header.Get("Idempotent-Replayed") == "true" {
		return res.Status + ", replayed"
	}
	return res.Status
}

// The bug a stateless mock misses: one key sent with two amounts.
func ExampleNewServer() {
	srv := mock.NewServer()
	defer srv.Close()

	fmt.Println(post(srv, "order_1001", `{"amount":1001,"currency":"usd","payment_method":"tok_visa"}`))
	fmt.Println(post(srv, "order_1001", `{"amount":1001,"currency":"usd","payment_method":"tok_visa"}`))
	fmt.Println(post(srv, "order_1001", `{"amount":1002,"currency":"usd","payment_method":"tok_visa"}`))
	fmt.Println("charges:", len(srv.Charges()))
	// Output:
	// 200 OK
	// 200 OK, replayed
	// 422 Unprocessable Entity
	// charges: 1
}

// A response lost after the commit: the retry with the same key replays the
// charge instead of making a second one.
func ExampleGateway_InjectFault() {
	srv := mock.NewServer()
	defer srv.Close()
	err := srv.InjectFault(mock.Fault{Kind: mock.FailAfter, Method: "POST", Path: "/v1/charges", Status: 503})
	if err != nil {
		panic(err)
	}

	body := `{"amount":2000,"currency":"usd","payment_method":"tok_visa"}`
	fmt.Println(post(srv, "order_7", body))
	fmt.Println(post(srv, "order_7", body))
	fmt.Println("charges:", len(srv.Charges()))
	// Output:
	// 503 Service Unavailable
	// 200 OK, replayed
	// charges: 1
}

// Retrying with a new key charges twice, and SuspectedDuplicates says so.
func ExampleGateway_SuspectedDuplicates() {
	srv := mock.NewServer()
	defer srv.Close()

	body := `{"amount":2000,"currency":"usd","payment_method":"tok_visa"}`
	post(srv, "attempt-1", body)
	post(srv, "attempt-2", body) // a retry that forgot its key
	for _, d := range srv.SuspectedDuplicates(time.Minute) {
		fmt.Println("double charge:", d.First.IdempotencyKey, d.Second.IdempotencyKey, d.Second.Amount)
	}
	// Output:
	// double charge: attempt-1 attempt-2 2000
}
