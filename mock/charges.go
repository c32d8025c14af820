package mock

import (
	"cmp"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"time"

	"github.com/payonce/payonce/idempotency"
)

// Charge is a charge as the API returns it.
type Charge struct {
	ID             string            `json:"id"`
	Object         string            `json:"object"` // "charge"
	Amount         int64             `json:"amount"`
	AmountCaptured int64             `json:"amount_captured"`
	AmountRefunded int64             `json:"amount_refunded"`
	Currency       string            `json:"currency"`
	Status         string            `json:"status"` // "succeeded" or "requires_capture"
	Captured       bool              `json:"captured"`
	Refunded       bool              `json:"refunded"` // fully refunded
	PaymentMethod  string            `json:"payment_method"`
	Description    *string           `json:"description"` // null when absent
	Metadata       map[string]string `json:"metadata"`
	Created        int64             `json:"created"` // Unix seconds, on the gateway's clock
}

// Charge statuses.
const (
	StatusSucceeded       = "succeeded"
	StatusRequiresCapture = "requires_capture"
)

// LedgerCharge is a charge as [Gateway.Charges] and GET /_mock/charges show
// it: with the account that made it and the idempotency key it was created
// under ("" if it had none).
type LedgerCharge struct {
	Charge
	Account        string `json:"account"`
	IdempotencyKey string `json:"idempotency_key"`
}

// charge is a stored charge. Its Charge changes only under its account's
// lock, and Metadata never changes once made.
type charge struct {
	Charge
	key   string
	seq   uint64    // creation order across accounts
	at    time.Time // Created, to the nanosecond
	index int       // position in account.charges
}

func (w *world) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/charges", w.createCharge)
	mux.HandleFunc("GET /v1/charges", w.listCharges)
	mux.HandleFunc("GET /v1/charges/{id}", w.getCharge)
	mux.HandleFunc("POST /v1/charges/{id}/capture", w.captureCharge)
	mux.HandleFunc("POST /v1/refunds", w.createRefund)
	mux.HandleFunc("GET /v1/refunds/{id}", w.getRefund)
	return mux
}

// reject answers e for a request refused before anything executed, so the
// middleware does not store it and its key stays free.
func reject(w http.ResponseWriter, r *http.Request, e *apiError) {
	idempotency.NotExecuted(r.Context())
	if x := exchangeOf(r.Context()); x != nil {
		x.rejected = true
	}
	writeError(w, e)
}

// testCard tells what a test payment method does: ok is false for unknown
// ones, and decline names the decline code of those that are declined.
func testCard(pm string) (decline string, ok bool) {
	switch pm {
	case "tok_visa", "tok_mastercard":
		return "", true
	case "tok_chargeDeclined":
		return "generic_decline", true
	case "tok_chargeDeclinedInsufficientFunds":
		return "insufficient_funds", true
	}
	return "", false
}

func (w *world) createCharge(rw http.ResponseWriter, r *http.Request) {
	p, e := readParams(rw, r, "amount", "currency", "payment_method", "description", "metadata", "capture")
	if e != nil {
		reject(rw, r, e)
		return
	}
	cp, e := parseChargeParams(p)
	if e != nil {
		reject(rw, r, e)
		return
	}
	decline, ok := testCard(cp.paymentMethod)
	if !ok {
		reject(rw, r, invalidParam("invalid_payment_method", "payment_method",
			"no such payment method "+strconv.Quote(cp.paymentMethod)+
				": use tok_visa, tok_mastercard, tok_chargeDeclined or tok_chargeDeclinedInsufficientFunds"))
		return
	}
	// From here on the request executes: a decline is stored like a charge.
	if decline != "" {
		writeError(rw, &apiError{Status: http.StatusPaymentRequired, Type: cardError, Code: "card_declined",
			DeclineCode: decline, Param: "payment_method", Message: "your card was declined"})
		return
	}
	key, _ := idempotency.ParseKey(r.Header.Get("Idempotency-Key")) // valid, or absent
	now := w.g.Now()
	ch := &charge{
		Charge: Charge{
			ID: newChargeID(), Object: "charge", Amount: cp.amount, Currency: cp.currency,
			Status: StatusRequiresCapture, PaymentMethod: cp.paymentMethod,
			Description: cp.description, Metadata: cp.metadata, Created: now.Unix(),
		},
		key: key,
		at:  now,
	}
	if cp.capture {
		ch.Status, ch.Captured, ch.AmountCaptured = StatusSucceeded, true, cp.amount
	}
	acct := exchangeOf(r.Context()).account
	acct.mu.Lock()
	ch.seq = w.seq.Add(1)
	ch.index = len(acct.charges)
	acct.charges = append(acct.charges, ch)
	acct.byID[ch.ID] = ch
	snap := ch.Charge
	acct.mu.Unlock()
	writeJSON(rw, http.StatusOK, &snap)
}

func (w *world) getCharge(rw http.ResponseWriter, r *http.Request) {
	if r.URL.RawQuery != "" {
		name := firstQueryParam(r)
		reject(rw, r, invalidParam("parameter_unknown", name, "received unknown query parameter "+strconv.Quote(name)))
		return
	}
	id := r.PathValue("id")
	acct := exchangeOf(r.Context()).account
	acct.mu.Lock()
	ch := acct.byID[id]
	var snap Charge
	if ch != nil {
		snap = ch.Charge
	}
	acct.mu.Unlock()
	if ch == nil {
		reject(rw, r, missingResource("id", "no such charge: "+strconv.Quote(id)))
		return
	}
	writeJSON(rw, http.StatusOK, &snap)
}

// Charge list limits.
const (
	DefaultListLimit = 10
	MaxListLimit     = 100
)

type chargeList struct {
	Object  string   `json:"object"` // "list"
	Data    []Charge `json:"data"`
	HasMore bool     `json:"has_more"`
}

func (w *world) listCharges(rw http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if name := firstUnknown(q, "limit", "starting_after"); name != "" {
		reject(rw, r, invalidParam("parameter_unknown", name, "received unknown query parameter "+strconv.Quote(name)))
		return
	}
	limit := DefaultListLimit
	if q.Has("limit") {
		n, err := strconv.Atoi(q.Get("limit"))
		if err != nil || n < 1 || n > MaxListLimit {
			reject(rw, r, invalidParam("parameter_invalid_integer", "limit", "limit must be an integer from 1 to 100"))
			return
		}
		limit = n
	}
	acct := exchangeOf(r.Context()).account
	acct.mu.Lock()
	next := len(acct.charges) - 1 // newest first
	if q.Has("starting_after") {
		after := acct.byID[q.Get("starting_after")]
		if after == nil {
			acct.mu.Unlock()
			reject(rw, r, missingResource("starting_after", "no such charge: "+strconv.Quote(q.Get("starting_after"))))
			return
		}
		next = after.index - 1
	}
	list := chargeList{Object: "list", Data: make([]Charge, 0, min(limit, next+1))}
	for ; next >= 0 && len(list.Data) < limit; next-- {
		list.Data = append(list.Data, acct.charges[next].Charge)
	}
	list.HasMore = next >= 0
	acct.mu.Unlock()
	writeJSON(rw, http.StatusOK, &list)
}

// firstUnknown returns the first name in sort order of q that is not
// allowed.
func firstUnknown(q map[string][]string, allowed ...string) string {
	for _, name := range slices.Sorted(maps.Keys(q)) {
		if !slices.Contains(allowed, name) {
			return name
		}
	}
	return ""
}

func (w *world) captureCharge(rw http.ResponseWriter, r *http.Request) {
	p, e := readParams(rw, r, "amount")
	if e != nil {
		reject(rw, r, e)
		return
	}
	amount, given, e := p.amount("amount", false)
	if e != nil {
		reject(rw, r, e)
		return
	}
	id := r.PathValue("id")
	acct := exchangeOf(r.Context()).account
	acct.mu.Lock()
	ch := acct.byID[id]
	if ch == nil {
		acct.mu.Unlock()
		reject(rw, r, missingResource("id", "no such charge: "+strconv.Quote(id)))
		return
	}
	switch {
	case ch.Captured:
		e = invalidParam("charge_already_captured", "", "charge "+ch.ID+" has already been captured")
	case given && amount > ch.Amount:
		e = invalidParam("amount_too_large", "amount", "the capture amount is larger than the charge's amount")
	default:
		if !given {
			amount = ch.Amount
		}
		ch.Status, ch.Captured, ch.AmountCaptured = StatusSucceeded, true, amount
	}
	snap := ch.Charge
	acct.mu.Unlock()
	if e != nil {
		writeError(rw, e) // a business rule: stored under the key
		return
	}
	writeJSON(rw, http.StatusOK, &snap)
}

// Charges returns every charge of every account, oldest first, as they are
// now. Declined payments create no charge.
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
