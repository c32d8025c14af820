// Package mocktest shows how to test your own charging code against the
// mock gateway, and prove that it never charges twice.
//
// Renew is the code under test: it charges an order's renewal, keyed by the
// order and the period. billing_test.go is a test you can copy.
package mocktest

import (
	"context"

	"github.com/payonce/payonce"
)

// Order is what your billing code charges.
type Order struct {
	ID            string
	Period        string // "2026"
	Amount        int64  // minor units
	PaymentMethod string
}

// Renew charges o's renewal for its period. Calling it again for the same
// order and period, after a timeout or a crash, never charges twice.
func Renew(ctx context.Context, client *payonce.Client, o Order) (*payonce.Charge, error) {
	key, err := payonce.BusinessKey("renewal", o.ID, o.Period)
	if err != nil {
		return nil, err
	}
	return client.Charges.Create(ctx, &payonce.ChargeParams{
		Amount:         o.Amount,
		Currency:       "usd",
		PaymentMethod:  o.PaymentMethod,
		Metadata:       map[string]string{"order": o.ID, "period": o.Period},
		IdempotencyKey: key,
	})
}
