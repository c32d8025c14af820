package mock

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Events (docs/protocol.md §10): every change the core makes to a charge,
// a refund or a payment intent leaves an event in Stripe's shape, in the
// account it happened in, whichever dialect asked for it. The dialects'
// handlers call the emit functions below once the core has answered, so a
// replayed request, which never reaches a handler, makes no event, and a
// request that a fail_after or drop_after fault answers still makes its
// events, since it executed.

// StripeAPIVersion is the api_version of the events the gateway creates
// and of webhook endpoints created without one: the version stripe-go v85
// pins (stripe.APIVersion), so that its webhook.ConstructEvent accepts
// them.
const StripeAPIVersion = "2026-03-25.dahlia"

// The event types the gateway creates.
const (
	EventChargeSucceeded                      = "charge.succeeded"
	EventChargeFailed                         = "charge.failed"
	EventChargeCaptured                       = "charge.captured"
	EventChargeRefunded                       = "charge.refunded"
	EventRefundCreated                        = "refund.created"
	EventPaymentIntentCreated                 = "payment_intent.created"
	EventPaymentIntentSucceeded               = "payment_intent.succeeded"
	EventPaymentIntentAmountCapturableUpdated = "payment_intent.amount_capturable_updated"
	EventPaymentIntentCanceled                = "payment_intent.canceled"
	EventPaymentIntentPaymentFailed           = "payment_intent.payment_failed"
)

// event is a stored event. Only pending changes once it is made.
type event struct {
	id        string
	typ       string
	at        time.Time // when it was created (see created)
	account   string    // the id of the account it happened in (see connected)
	requestID string
	key       string // the request's idempotency key, "" for none
	seq       uint64 // creation order across accounts
	// obj is a snapshot of the object, encoded on first use: a *charge
	// (stored charges never change), a *Refund or a paymentIntent.
	obj     any
	once    sync.Once
	raw     []byte
	pending atomic.Int64 // deliveries not yet answered with a 2xx
}

// created is when ev was created, in Unix seconds.
func (ev *event) created() int64 { return ev.at.Unix() }

// connected is the Stripe-Account ev happened in, "" for none.
func (ev *event) connected() string {
	_, connected, _ := strings.Cut(ev.account, "/")
	return connected
}

// object returns data.object, the event's object as Stripe's API shows it.
func (ev *event) object() []byte {
	ev.once.Do(func() {
		switch o := ev.obj.(type) {
		case *charge:
			ev.raw = stripeChargeOf(o).appendJSON(nil)
		case *Refund:
			ev.raw, _ = json.Marshal(stripeRefundOf(o))
		case paymentIntent:
			ev.raw, _ = json.Marshal(stripeIntentOf(&o, nil))
		}
		ev.obj = nil
	})
	return ev.raw
}

// stripeEvent is an event as Stripe's API and its webhooks show it.
type stripeEvent struct {
	ID              string          `json:"id"`
	Object          string          `json:"object"` // "event"
	Account         *string         `json:"account,omitempty"`
	APIVersion      string          `json:"api_version"`
	Created         int64           `json:"created"`
	Data            stripeEventData `json:"data"`
	Livemode        bool            `json:"livemode"`
	PendingWebhooks int64           `json:"pending_webhooks"`
	Request         stripeEventReq  `json:"request"`
	Type            string          `json:"type"`
}

type stripeEventData struct {
	Object json.RawMessage `json:"object"`
}

type stripeEventReq struct {
	ID             *string `json:"id"`
	IdempotencyKey *string `json:"idempotency_key"`
}

// encode returns ev as Stripe shows it, in apiVersion.
func (ev *event) encode(apiVersion string) *stripeEvent {
	return &stripeEvent{
		ID: ev.id, Object: "event", Account: nullable(ev.connected()), APIVersion: apiVersion, Created: ev.created(),
		Data: stripeEventData{Object: ev.object()}, PendingWebhooks: ev.pending.Load(),
		Request: stripeEventReq{ID: nullable(ev.requestID), IdempotencyKey: nullable(ev.key)}, Type: ev.typ,
	}
}

// hookAccount is one account's webhook endpoints and events.
type hookAccount struct {
	mu        sync.Mutex
	endpoints []*endpoint // oldest first
	events    []*event    // oldest first
	eventByID map[string]*event
}

// hooksOf returns the webhook state of the account id, made on first use.
func (w *world) hooksOf(id string) *hookAccount {
	if h, ok := w.hooks.accounts.Load(id); ok {
		return h.(*hookAccount)
	}
	h, _ := w.hooks.accounts.LoadOrStore(id, &hookAccount{eventByID: make(map[string]*event)})
	return h.(*hookAccount)
}

// emit makes an event of type typ about obj in r's account, and schedules
// its deliveries.
func (w *world) emit(r *http.Request, typ string, obj any) {
	x := exchangeOf(r.Context())
	now := w.g.Now()
	ev := &event{
		id: newID("evt_", 15), typ: typ, at: now, account: x.account.id,
		requestID: x.requestID(), key: requestKey(r), obj: obj, seq: w.hooks.seq.Add(1),
	}
	h := w.hooksOf(ev.account)
	h.mu.Lock()
	h.events = append(h.events, ev)
	h.eventByID[ev.id] = ev
	h.mu.Unlock()
	w.hooks.events.Add(1)
	w.hooks.retained.add(w, ev)
	w.fanOut(ev)
}

// DefaultEventLimit is how many events a gateway keeps by default, across
// its accounts, as [DefaultHistoryLimit] is for requests.
const DefaultEventLimit = DefaultHistoryLimit

// WithEventLimit sets how many of the latest events the gateway keeps,
// across its accounts (default [DefaultEventLimit]). Older ones are
// forgotten, oldest first, so that a long-running gateway stays bounded:
// GET /v1/events no longer lists one, GET /v1/events/{id} and a list's
// starting_after or ending_before name it as unknown (404), and
// [Gateway.Events] leaves it out. Deliveries already scheduled still
// deliver it, and [Gateway.DeliveryStats] counts every event made.
func WithEventLimit(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("mock: event limit must be positive, got %d", n)
		}
		c.hooks.eventLimit = n
		return nil
	}
}

// eventFIFO holds the events kept, across accounts, in the order they were
// kept, so that the oldest are forgotten first once there are more than
// limit.
type eventFIFO struct {
	mu    sync.Mutex
	limit int
	q     []*event
	head  int
}

// add keeps ev, which its account already holds, and forgets the oldest
// events beyond the limit, in their accounts too. Its lock is taken before
// an account's, never after.
func (f *eventFIFO) add(w *world, ev *event) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.q = append(f.q, ev)
	for len(f.q)-f.head > f.limit {
		old := f.q[f.head]
		f.q[f.head] = nil
		f.head++
		w.hooksOf(old.account).forget(old)
	}
	if f.head > 64 && f.head*2 > len(f.q) {
		n := copy(f.q, f.q[f.head:])
		clear(f.q[n:])
		f.q, f.head = f.q[:n], 0
	}
}

// forget drops ev, one of h's oldest events.
func (h *hookAccount) forget(ev *event) {
	h.mu.Lock()
	defer h.mu.Unlock()
	delete(h.eventByID, ev.id)
	if i := slices.Index(h.events, ev); i >= 0 {
		h.events[i] = nil
		if i == 0 {
			h.events = h.events[1:]
		} else {
			h.events = slices.Delete(h.events, i, i+1)
		}
	}
	if len(h.events) == 0 {
		h.events = nil // let the array go
	}
}

// emitCharge makes the events of a charge's creation: charge.succeeded,
// or charge.failed for a decline that left a failed charge.
func (w *world) emitCharge(r *http.Request, ch *charge, e *apiError) {
	switch {
	case ch == nil:
	case e == nil:
		w.emit(r, EventChargeSucceeded, ch)
	case e.Charge != "" && ch.ID == e.Charge:
		w.emit(r, EventChargeFailed, ch)
	}
}

// emitCapture makes the events of a charge's capture: charge.captured and,
// for a payment intent's charge, payment_intent.succeeded.
func (w *world) emitCapture(r *http.Request, ch *charge, e *apiError) {
	if e != nil {
		return
	}
	w.emit(r, EventChargeCaptured, ch)
	if ch.paymentIntent != "" {
		if pi, e := exchangeOf(r.Context()).account.getIntent(ch.paymentIntent); e == nil {
			w.emit(r, EventPaymentIntentSucceeded, pi)
		}
	}
}

// emitRefund makes the events of a refund: charge.refunded, with the
// charge as it now is, and refund.created.
func (w *world) emitRefund(r *http.Request, ref *Refund, e *apiError) {
	if e != nil {
		return
	}
	if ch, e := exchangeOf(r.Context()).account.getCharge(ref.Charge); e == nil {
		w.emit(r, EventChargeRefunded, ch)
	}
	w.emit(r, EventRefundCreated, ref)
}

// intentOp is the operation on a payment intent whose events to make.
type intentOp uint8

const (
	intentCreate intentOp = iota
	intentConfirm
	intentCapture
	intentCancel
)

// emitIntent makes the events of op on pi, which answered e.
func (w *world) emitIntent(r *http.Request, op intentOp, pi *paymentIntent, e *apiError) {
	if pi.id == "" { // refused before it existed
		return
	}
	acct := exchangeOf(r.Context()).account
	latest := func(typ string) {
		if ch, e := acct.getCharge(pi.latestCharge); e == nil {
			w.emit(r, typ, ch)
		}
	}
	if op == intentCreate {
		w.emit(r, EventPaymentIntentCreated, *pi)
	}
	switch {
	case e != nil && e.Charge != "" && (op == intentCreate || op == intentConfirm): // a decline
		latest(EventChargeFailed)
		w.emit(r, EventPaymentIntentPaymentFailed, *pi)
	case e != nil:
	case op == intentCreate && pi.latestCharge == "":
	case op == intentCreate || op == intentConfirm:
		latest(EventChargeSucceeded)
		if pi.status == intentRequiresCapture {
			w.emit(r, EventPaymentIntentAmountCapturableUpdated, *pi)
		} else {
			w.emit(r, EventPaymentIntentSucceeded, *pi)
		}
	case op == intentCapture:
		latest(EventChargeCaptured)
		w.emit(r, EventPaymentIntentSucceeded, *pi)
	case op == intentCancel:
		w.emit(r, EventPaymentIntentCanceled, *pi)
	}
}

// eventTypeMatches reports whether typ matches pattern: "*", an exact
// type, or a prefix ending in ".*" ("charge.*").
func eventTypeMatches(pattern, typ string) bool {
	if pattern == "*" || pattern == typ {
		return true
	}
	prefix, ok := strings.CutSuffix(pattern, "*")
	return ok && strings.HasPrefix(typ, prefix)
}

// eventFilter is what GET /v1/events asks for.
type eventFilter struct {
	types                       []string // patterns; nil for any
	limit                       int
	startingAfter, endingBefore string
}

func (f *eventFilter) match(ev *event) bool {
	if f.types == nil {
		return true
	}
	for _, p := range f.types {
		if eventTypeMatches(p, ev.typ) {
			return true
		}
	}
	return false
}

// listEvents returns a page of h's events that match f, newest first, and
// whether more lie beyond it.
func (h *hookAccount) listEvents(f *eventFilter) ([]*event, bool, *apiError) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cursor := func(param, id string) (*event, *apiError) {
		ev := h.eventByID[id]
		if ev == nil {
			return nil, missingResource(param, "no such event: "+strconv.Quote(id))
		}
		return ev, nil
	}
	var out []*event
	if f.endingBefore != "" && f.startingAfter == "" {
		before, e := cursor("ending_before", f.endingBefore)
		if e != nil {
			return nil, false, e
		}
		for _, ev := range h.events { // oldest first, from the cursor on
			if ev.seq <= before.seq || !f.match(ev) {
				continue
			}
			if len(out) == f.limit {
				slices.Reverse(out)
				return out, true, nil
			}
			out = append(out, ev)
		}
		slices.Reverse(out)
		return out, false, nil
	}
	var after *event
	if f.startingAfter != "" {
		var e *apiError
		if after, e = cursor("starting_after", f.startingAfter); e != nil {
			return nil, false, e
		}
	}
	for i := len(h.events) - 1; i >= 0; i-- {
		ev := h.events[i]
		if after != nil && ev.seq >= after.seq || !f.match(ev) {
			continue
		}
		if len(out) == f.limit {
			return out, true, nil
		}
		out = append(out, ev)
	}
	return out, false, nil
}

func (w *world) getEventStripe(rw http.ResponseWriter, r *http.Request) {
	if _, e := readForm(rw, r); e != nil {
		reject(rw, r, e)
		return
	}
	h := w.hooksOf(exchangeOf(r.Context()).account.id)
	h.mu.Lock()
	ev := h.eventByID[r.PathValue("id")]
	h.mu.Unlock()
	if ev == nil {
		reject(rw, r, missingResource("id", "no such event: "+strconv.Quote(r.PathValue("id"))))
		return
	}
	writeJSON(rw, http.StatusOK, ev.encode(StripeAPIVersion))
}

func (w *world) listEventsStripe(rw http.ResponseWriter, r *http.Request) {
	f, e := readForm(rw, r, "limit", "starting_after", "ending_before", "type", "types")
	if e != nil {
		reject(rw, r, e)
		return
	}
	var ef eventFilter
	limit, given, e := f.str("limit", false)
	if e == nil {
		ef.limit, e = parseLimit(limit, given)
	}
	if e == nil {
		ef.startingAfter, _, e = f.str("starting_after", false)
	}
	if e == nil {
		ef.endingBefore, _, e = f.str("ending_before", false)
	}
	var typ string
	var typeGiven, typesGiven bool
	if e == nil {
		typ, typeGiven, e = f.str("type", false)
	}
	if e == nil {
		ef.types, typesGiven, e = f.list("types")
	}
	switch {
	case e != nil:
	case typeGiven && typesGiven:
		e = invalidParam("parameters_exclusive", "types", "send type or types, not both")
	case typeGiven:
		ef.types = []string{typ}
	case typesGiven && len(ef.types) == 0:
		ef.types = nil
	}
	if e != nil {
		reject(rw, r, e)
		return
	}
	events, more, e := w.hooksOf(exchangeOf(r.Context()).account.id).listEvents(&ef)
	if e != nil {
		reject(rw, r, e)
		return
	}
	list := stripeList[*stripeEvent]{Object: "list", Data: make([]*stripeEvent, len(events)), HasMore: more, URL: "/v1/events"}
	for i, ev := range events {
		list.Data[i] = ev.encode(StripeAPIVersion)
	}
	writeJSON(rw, http.StatusOK, &list)
}
