package pgstore_test

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/payonce/payonce"
	"github.com/payonce/payonce/idempotency"
	"github.com/payonce/payonce/idempotency/pgstore"
)

// An order handler that is exactly once across crashes: its rows commit
// with the stored response, and the gateway charge carries a key derived
// from the request's, so a re-execution after a crash replays the charge.
func ExampleTx() {
	var client *payonce.Client // payonce.NewClient(…)
	createOrder := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		tx, err := pgstore.Tx(ctx)
		if err != nil {
			idempotency.NotExecuted(ctx) // nothing was written: free the key for the retry
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		}
		var orderID string
		err = tx.QueryRow(ctx, `INSERT INTO orders (amount) VALUES (2000) RETURNING id`).Scan(&orderID)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		chargeKey, err := idempotency.DerivedKey(ctx, "charge")
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		charge, err := client.Charges.Create(ctx, &payonce.ChargeParams{
			Amount: 2000, Currency: "usd", PaymentMethod: "tok_visa", IdempotencyKey: chargeKey,
		})
		var unknown *payonce.OutcomeUnknownError
		switch {
		case errors.Is(err, payonce.ErrCardDeclined):
			http.Error(w, "card declined", http.StatusPaymentRequired) // final: stored with the order
			return
		case errors.As(err, &unknown), errors.Is(err, payonce.ErrRateLimited):
			// Perhaps charged, perhaps not yet: keep nothing, free the
			// key, and let the client retry. The retry sends chargeKey
			// again, so the gateway replays whatever it did.
			idempotency.NotExecuted(ctx)
			http.Error(w, "try again", http.StatusServiceUnavailable)
			return
		case err != nil:
			http.Error(w, "payment refused", http.StatusBadGateway) // a refusal a retry would get again: stored
			return
		}
		_, err = tx.Exec(ctx, `UPDATE orders SET charge_id = $1 WHERE id = $2`, charge.ID, orderID)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		json.NewEncoder(w).Encode(map[string]string{"order": orderID, "charge": charge.ID})
	})

	var store *pgstore.Store // pgstore.New(pool)
	mw, err := idempotency.New(store)
	if err != nil {
		panic(err)
	}
	http.Handle("POST /orders", mw.Wrap(createOrder))
}
