package mock

import (
	"cmp"
	"maps"
	"slices"
	"time"
)

// Charge is a charge as the API returns it.
type Charge struct {
	ID             string            `json:"id"`
	Object         string            `json:"object"` // "charge"
	Amount         int64             `json:"amount"`
	AmountCaptured int64             `json:"amount_captured"`
	AmountRefunded int64             `json:"amount_refunded"`
	Currency       string            `json:"currency"`
	Status         string            `json:"status"` // "succeeded", "requires_capture" or "failed"
	Captured       bool              `json:"captured"`
	Refunded       bool              `json:"refunded"` // fully refunded
	PaymentMethod  string            `json:"payment_method"`
	Description    *string           `json:"description"` // null when absent
	Metadata       map[string]string `json:"metadata"`
	Created        int64             `json:"created"` // Unix seconds, on the gateway's clock
}

// Charge statuses. A failed charge is a decline in the Stripe dialect,
// which keeps one (see docs/protocol.md §9); payonce's protocol keeps none.
const (
	StatusSucceeded       = "succeeded"
	StatusRequiresCapture = "requires_capture"
	StatusFailed          = "failed"
)

// LedgerCharge is a charge as [Gateway.Charges] and GET /_mock/charges show
// it: with the account that made it and the idempotency key it was created
// under ("" if it had none).
type LedgerCharge struct {
	Charge
	Account        string `json:"account"`
	IdempotencyKey string `json:"idempotency_key"`
}

// charge is a stored charge. Once stored it never changes: a change
// stores a changed copy in its place, under its account's lock (see
// account.changeCharge), so that a charge may be read without the lock
// and kept, as an event keeps it, as it was. Nor does its Metadata ever
// change: an empty one is the world's noMetadata, which every charge
// without metadata shares, so that nothing may ever write into a charge's
// Metadata.
type charge struct {
	Charge
	// (The test card it was paid with is its PaymentMethod's: see card.
	// Not keeping a copy makes every charge 80 bytes smaller.)
	viaSource bool   // Stripe: paid with source rather than payment_method
	sourceID  string // Stripe: the card_ id of its source, if viaSource
	// paymentIntent is the id of the payment intent whose confirmation
	// made the charge, "" for a plain charge.
	paymentIntent string
	key           string
	seq           uint64    // creation order across accounts
	at            time.Time // Created, to the nanosecond
	index         int       // position in account.charges
}

// card returns the test card ch was paid with: its PaymentMethod's, as
// every charge's is, whether it came with the charge or its intent.
func (ch *charge) card() card {
	c, _ := testCard(ch.PaymentMethod)
	return c
}

// Charges returns every charge of every account, oldest first, as they are
// now. Declined payments create no charge in payonce's protocol; in the
// Stripe dialect they leave one with status [StatusFailed].
func (g *Gateway) Charges() []LedgerCharge {
	entries := g.world.Load().ledger()
	out := make([]LedgerCharge, len(entries))
	for i, e := range entries {
		out[i] = e.LedgerCharge
	}
	return out
}

type ledgerEntry struct {
	LedgerCharge
	seq uint64
	at  time.Time
}

// ledger copies every charge, oldest first.
func (w *world) ledger() []ledgerEntry {
	var out []ledgerEntry
	w.accounts.Range(func(_, v any) bool {
		a := v.(*account)
		a.mu.Lock()
		for _, ch := range a.charges {
			c := ch.Charge
			c.Metadata = maps.Clone(c.Metadata)
			if c.Description != nil {
				d := *c.Description
				c.Description = &d
			}
			out = append(out, ledgerEntry{LedgerCharge{c, a.id, ch.key}, ch.seq, ch.at})
		}
		a.mu.Unlock()
		return true
	})
	slices.SortFunc(out, func(a, b ledgerEntry) int { return cmp.Compare(a.seq, b.seq) })
	return out
}
