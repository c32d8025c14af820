package mock

import (
	"maps"
	"net/http"
	"slices"
	"strconv"

	"github.com/payonce/payonce/idempotency"
)

// payonce's own dialect (docs/protocol.md §1–§8): JSON bodies, decoded by
// params.go, and the Charge and Refund objects of charges.go and
// refunds.go. Each handler decodes, calls the core and encodes.

func (w *world) routes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/charges", w.createChargeJSON)
	mux.HandleFunc("GET /v1/charges", w.listChargesJSON)
	mux.HandleFunc("GET /v1/charges/{id}", w.getChargeJSON)
	mux.HandleFunc("POST /v1/charges/{id}/capture", w.captureChargeJSON)
	mux.HandleFunc("POST /v1/refunds", w.createRefundJSON)
	mux.HandleFunc("GET /v1/refunds/{id}", w.getRefundJSON)
	w.readEventRoutes(mux)
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

// requestKey is r's idempotency key: valid, or "" when absent, since the
// middleware let r through.
func requestKey(r *http.Request) string {
	key, _ := idempotency.ParseKey(r.Header.Get("Idempotency-Key"))
	return key
}

func (w *world) createChargeJSON(rw http.ResponseWriter, r *http.Request) {
	p, e := readParams(rw, r, chargeFields...)
	if e != nil {
		reject(rw, r, e)
		return
	}
	cp, e := parseChargeParams(p)
	if e != nil {
		reject(rw, r, e)
		return
	}
	ch, e := w.createCharge(exchangeOf(r.Context()).account, &cp, requestKey(r))
	w.emitCharge(r, ch, e)
	if e != nil {
		fail(rw, r, e)
		return
	}
	writeJSON(rw, http.StatusOK, &ch.Charge)
}

func (w *world) getChargeJSON(rw http.ResponseWriter, r *http.Request) {
	if e := noQuery(r); e != nil {
		reject(rw, r, e)
		return
	}
	ch, e := exchangeOf(r.Context()).account.getCharge(r.PathValue("id"))
	if e != nil {
		fail(rw, r, e)
		return
	}
	writeJSON(rw, http.StatusOK, &ch.Charge)
}

type chargeList struct {
	Object  string   `json:"object"` // "list"
	Data    []Charge `json:"data"`
	HasMore bool     `json:"has_more"`
}

func (w *world) listChargesJSON(rw http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if name := firstUnknown(q, "limit", "starting_after"); name != "" {
		reject(rw, r, unknownQuery(name))
		return
	}
	limit, e := parseLimit(q.Get("limit"), q.Has("limit"))
	if e != nil {
		reject(rw, r, e)
		return
	}
	pg := page{limit: limit, startingAfter: q.Get("starting_after")}
	if q.Has("starting_after") && pg.startingAfter == "" {
		reject(rw, r, missingResource("starting_after", `no such charge: ""`))
		return
	}
	charges, more, e := exchangeOf(r.Context()).account.listCharges(pg)
	if e != nil {
		fail(rw, r, e)
		return
	}
	list := chargeList{Object: "list", Data: make([]Charge, len(charges)), HasMore: more}
	for i := range charges {
		list.Data[i] = charges[i].Charge
	}
	writeJSON(rw, http.StatusOK, &list)
}

// firstUnknown returns the first name in sort order of q that is not
// allowed.
func firstUnknown[V any](q map[string]V, allowed ...string) string {
	for _, name := range slices.Sorted(maps.Keys(q)) {
		if !slices.Contains(allowed, name) {
			return name
		}
	}
	return ""
}

func unknownQuery(name string) *apiError {
	return invalidParam("parameter_unknown", name, "received unknown query parameter "+strconv.Quote(name))
}

// noQuery refuses a query on an endpoint that takes none.
func noQuery(r *http.Request) *apiError {
	if r.URL.RawQuery != "" {
		return unknownQuery(firstQueryParam(r))
	}
	return nil
}

func (w *world) captureChargeJSON(rw http.ResponseWriter, r *http.Request) {
	p, e := readParams(rw, r, captureFields...)
	if e != nil {
		reject(rw, r, e)
		return
	}
	amount, given, e := p.amount("amount", false)
	if e != nil {
		reject(rw, r, e)
		return
	}
	ch, e := exchangeOf(r.Context()).account.captureCharge(r.PathValue("id"), amount, given)
	w.emitCapture(r, ch, e)
	if e != nil {
		fail(rw, r, e)
		return
	}
	writeJSON(rw, http.StatusOK, &ch.Charge)
}

func (w *world) createRefundJSON(rw http.ResponseWriter, r *http.Request) {
	p, e := readParams(rw, r, refundFields...)
	if e != nil {
		reject(rw, r, e)
		return
	}
	rp, e := parseRefundParams(p)
	if e != nil {
		reject(rw, r, e)
		return
	}
	ref, e := w.createRefund(exchangeOf(r.Context()).account, &rp)
	w.emitRefund(r, ref, e)
	if e != nil {
		fail(rw, r, e)
		return
	}
	writeJSON(rw, http.StatusOK, ref)
}

func (w *world) getRefundJSON(rw http.ResponseWriter, r *http.Request) {
	if e := noQuery(r); e != nil {
		reject(rw, r, e)
		return
	}
	ref, e := exchangeOf(r.Context()).account.getRefund(r.PathValue("id"))
	if e != nil {
		fail(rw, r, e)
		return
	}
	writeJSON(rw, http.StatusOK, ref)
}
