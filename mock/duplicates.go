package mock

import (
	"cmp"
	"slices"
	"time"
)

// Duplicate is a pair of charges that look like one payment made twice.
type Duplicate struct {
	First  LedgerCharge `json:"first"` // created first
	Second LedgerCharge `json:"second"`
}

// SuspectedDuplicates reports the charges that look like double charges:
// two charges of one account, with the same payment method, amount and
// currency, created within window of each other under different
// idempotency keys (a charge made without a key differs from every other).
// Failed charges, the declines the Stripe dialect keeps, are left out, and
// so are authorizations released by canceling their payment intent.
// Charges are compared with the next one of their kind in creation order,
// so three charges in a row give two pairs.
//
// A test that retries through faults asserts the result is empty to prove
// that nothing was charged twice. Legitimate repeat purchases look the
// same, so keep the window short, or the amounts distinct.
func (g *Gateway) SuspectedDuplicates(window time.Duration) []Duplicate {
	type kind struct {
		account, paymentMethod, currency string
		amount                           int64
	}
	groups := make(map[kind][]ledgerEntry)
	for _, e := range g.world.Load().ledger() {
		if e.Status == StatusFailed || e.Refunded && !e.Captured { // a decline or a released authorization moved no money
			continue
		}
		k := kind{e.Account, e.PaymentMethod, e.Currency, e.Amount}
		groups[k] = append(groups[k], e)
	}
	type pair struct {
		d   Duplicate
		seq uint64
	}
	var pairs []pair
	for _, charges := range groups {
		slices.SortStableFunc(charges, func(a, b ledgerEntry) int { return a.at.Compare(b.at) })
		for i := 1; i < len(charges); i++ {
			a, b := charges[i-1], charges[i]
			if b.at.Sub(a.at) <= window && (a.IdempotencyKey != b.IdempotencyKey || a.IdempotencyKey == "") {
				pairs = append(pairs, pair{Duplicate{First: a.LedgerCharge, Second: b.LedgerCharge}, b.seq})
			}
		}
	}
	slices.SortFunc(pairs, func(a, b pair) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]Duplicate, len(pairs))
	for i, p := range pairs {
		out[i] = p.d
	}
	return out
}
