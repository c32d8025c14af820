package mock

import (
	"cmp"
	"context"
	"net/http"
	"slices"
	"time"
)

// The control surface of events and deliveries (docs/protocol.md §10.5),
// and their Go twins.

// EventRecord is an event as [Gateway.Events] and GET /_mock/events show
// it: without its object, with the account it happened in.
type EventRecord struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Account string `json:"account"`
	Created int64  `json:"created"`
	// RequestID and IdempotencyKey are those of the API request that made
	// the event ("" for none).
	RequestID      string `json:"request_id"`
	IdempotencyKey string `json:"idempotency_key"`
	// PendingWebhooks counts the endpoints that have yet to answer it with
	// a 2xx.
	PendingWebhooks int64 `json:"pending_webhooks"`
}

// Events returns the events of every account, oldest first: those the
// gateway keeps, the latest [WithEventLimit] (default [DefaultEventLimit]).
func (g *Gateway) Events() []EventRecord {
	w := g.world.Load()
	var all []*event
	w.hooks.accounts.Range(func(_, v any) bool {
		h := v.(*hookAccount)
		h.mu.Lock()
		all = append(all, h.events...)
		h.mu.Unlock()
		return true
	})
	slices.SortFunc(all, func(a, b *event) int { return cmp.Compare(a.seq, b.seq) })
	out := make([]EventRecord, len(all))
	for i, ev := range all {
		out[i] = EventRecord{ID: ev.id, Type: ev.typ, Account: ev.account, Created: ev.created(),
			RequestID: ev.requestID, IdempotencyKey: ev.key, PendingWebhooks: ev.pending.Load()}
	}
	return out
}

// deliveryControlRoutes adds the routes of events and deliveries to the
// control surface.
func (g *Gateway) deliveryControlRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /_mock/events", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, dataOf(g.Events()))
	})
	mux.HandleFunc("GET /_mock/deliveries", g.getDeliveries)
	mux.HandleFunc("GET /_mock/deliveries/stats", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, g.DeliveryStats())
	})
	mux.HandleFunc("POST /_mock/deliveries/wait", g.postDeliveriesWait)
	mux.HandleFunc("POST /_mock/delivery_faults", g.postDeliveryFault)
	mux.HandleFunc("GET /_mock/delivery_faults", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, dataOf(g.DeliveryFaults()))
	})
	mux.HandleFunc("DELETE /_mock/delivery_faults", func(w http.ResponseWriter, _ *http.Request) {
		g.ClearDeliveryFaults()
		writeOK(w)
	})
	mux.HandleFunc("POST /_mock/delivery_chaos", g.postDeliveryChaos)
	mux.HandleFunc("GET /_mock/delivery_chaos", g.getDeliveryChaos)
}

func (g *Gateway) getDeliveries(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	if name := firstUnknown(q, "event", "endpoint"); name != "" {
		writeError(w, unknownQuery(name))
		return
	}
	ev, ep := q.Get("event"), q.Get("endpoint")
	all := g.Deliveries()
	out := all[:0]
	for _, rec := range all {
		if (ev == "" || rec.Event == ev) && (ep == "" || rec.Endpoint == ep) {
			out = append(out, rec)
		}
	}
	writeJSON(w, http.StatusOK, dataOf(out))
}

// Bounds of POST /_mock/deliveries/wait.
const (
	defaultDeliveryWait = 10 * time.Second
	maxDeliveryWait     = MaxFaultDelay
)

func (g *Gateway) postDeliveriesWait(w http.ResponseWriter, r *http.Request) {
	var body struct {
		TimeoutMS *int64 `json:"timeout_ms"`
	}
	if !decodeControl(w, r, &body) {
		return
	}
	timeout := defaultDeliveryWait
	if body.TimeoutMS != nil {
		if *body.TimeoutMS < 0 || *body.TimeoutMS > maxDeliveryWait.Milliseconds() {
			writeError(w, invalidParam("parameter_invalid", "timeout_ms", "timeout_ms must be from 0 to 600000"))
			return
		}
		timeout = time.Duration(*body.TimeoutMS) * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	st, err := g.WaitDeliveries(ctx)
	if err != nil {
		writeError(w, &apiError{Status: http.StatusRequestTimeout, Type: invalidRequest, Code: "deliveries_pending",
			Message: "deliveries were still pending when timeout_ms ran out"})
		return
	}
	writeJSON(w, http.StatusOK, st)
}

func (g *Gateway) postDeliveryFault(w http.ResponseWriter, r *http.Request) {
	var f DeliveryFault
	if !decodeControl(w, r, &f) {
		return
	}
	f, err := f.normalize()
	if err != nil {
		writeError(w, invalidParam("invalid_fault", "", err.Error()))
		return
	}
	g.world.Load().hooks.dl.faults.add(f)
	writeJSON(w, http.StatusOK, f)
}

func (g *Gateway) postDeliveryChaos(w http.ResponseWriter, r *http.Request) {
	postChaosSettings(w, r, g.SetDeliveryChaos, g.getDeliveryChaos)
}

func (g *Gateway) getDeliveryChaos(w http.ResponseWriter, _ *http.Request) {
	rate, seed := g.world.Load().hooks.dl.chaos.settings()
	writeJSON(w, http.StatusOK, chaosJSON{Rate: &rate, Seed: seed})
}
