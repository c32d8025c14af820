package idempotency_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/payonce/payonce/idempotency"
)

// A checkout handler behind the middleware: the browser resends the same
// order, and it is placed once.
func ExampleMiddleware_Wrap() {
	orders := 0
	placeOrder := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		orders++
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"order":"ord_%d"}`, orders)
	})

	mw, err := idempotency.New(idempotency.NewMemoryStore())
	if err != nil {
		panic(err)
	}
	h := mw.Wrap(placeOrder)

	for range 2 {
		req := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(`{"cart":"cart_42"}`))
		req.Header.Set("Idempotency-Key", "cart_42")
		w := httptest.NewRecorder()
		h.ServeHTTP(w, req)
		fmt.Println(w.Code, w.Body.String(), "replayed:", w.Header().Get("Idempotent-Replayed") == "true")
	}
	fmt.Println("orders placed:", orders)
	// Output:
	// 200 {"order":"ord_1"} replayed: false
	// 200 {"order":"ord_1"} replayed: true
	// orders placed: 1
}
