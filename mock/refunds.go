package mock

import (
	"net/http"
	"strconv"
)

// Refund is a refund as the API returns it.
type Refund struct {
	ID       string            `json:"id"`
	Object   string            `json:"object"` // "refund"
	Amount   int64             `json:"amount"`
	Charge   string            `json:"charge"`
	Currency string            `json:"currency"`
	Status   string            `json:"status"` // "succeeded"
	Reason   *string           `json:"reason"` // null when absent
	Metadata map[string]string `json:"metadata"`
	Created  int64             `json:"created"`
}

func (w *world) createRefund(rw http.ResponseWriter, r *http.Request) {
	p, e := readParams(rw, r, "charge", "amount", "reason", "metadata")
	if e != nil {
		reject(rw, r, e)
		return
	}
	rp, e := parseRefundParams(p)
	if e != nil {
		reject(rw, r, e)
		return
	}
	acct := exchangeOf(r.Context()).account
	now := w.g.Now()
	acct.mu.Lock()
	ch := acct.byID[rp.charge]
	if ch == nil {
		acct.mu.Unlock()
		reject(rw, r, missingResource("charge", "no such charge: "+strconv.Quote(rp.charge)))
		return
	}
	// Business rules: these answers are stored under the key.
	remaining := ch.AmountCaptured - ch.AmountRefunded
	switch {
	case !ch.Captured:
		e = invalidParam("charge_not_captured", "charge", "charge "+ch.ID+" is not captured, so there is nothing to refund")
	case remaining == 0:
		e = invalidParam("charge_already_refunded", "charge", "charge "+ch.ID+" has already been fully refunded")
	case rp.amount > remaining:
		e = invalidParam("amount_too_large", "amount",
			"the refund amount is larger than what remains on the charge ("+strconv.FormatInt(remaining, 10)+")")
	}
	if e != nil {
		acct.mu.Unlock()
		writeError(rw, e)
		return
	}
	amount := rp.amount
	if amount == 0 {
		amount = remaining
	}
	ch.AmountRefunded += amount
	ch.Refunded = ch.AmountRefunded == ch.AmountCaptured
	ref := &Refund{
		ID: newRefundID(), Object: "refund", Amount: amount, Charge: ch.ID, Currency: ch.Currency,
		Status: StatusSucceeded, Reason: rp.reason, Metadata: rp.metadata, Created: now.Unix(),
	}
	acct.refunds[ref.ID] = ref // never changes from now on
	acct.mu.Unlock()
	writeJSON(rw, http.StatusOK, ref)
}

func (w *world) getRefund(rw http.ResponseWriter, r *http.Request) {
	if r.URL.RawQuery != "" {
		name := firstQueryParam(r)
		reject(rw, r, invalidParam("parameter_unknown", name, "received unknown query parameter "+strconv.Quote(name)))
		return
	}
	id := r.PathValue("id")
	acct := exchangeOf(r.Context()).account
	acct.mu.Lock()
	ref := acct.refunds[id]
	acct.mu.Unlock()
	if ref == nil {
		reject(rw, r, missingResource("id", "no such refund: "+strconv.Quote(id)))
		return
	}
	writeJSON(rw, http.StatusOK, ref)
}
