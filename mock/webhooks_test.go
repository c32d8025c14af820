package mock_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v85"
	"github.com/stripe/stripe-go/v85/webhook"

	"github.com/payonce/payonce/mock"
)

// Webhook endpoints, events and their delivery (docs/protocol.md §10),
// driven by stripe-go and received by an httptest server on 127.0.0.1
// that checks every signature with stripe-go's own webhook package.

// receiver is a webhook endpoint's server. It verifies each delivery with
// webhook.ConstructEvent, API version check included, and answers what
// answer says (200 by default).
type receiver struct {
	t      *testing.T
	srv    *httptest.Server
	secret atomic.Pointer[string]
	answer atomic.Pointer[func(n int, ev *stripe.Event) int]

	mu      sync.Mutex
	got     []received
	arrived chan received // every verified delivery, if buffered room remains
}

// received is one delivery as the receiver saw it.
type received struct {
	event  stripe.Event
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	rc := &receiver{t: t, arrived: make(chan received, 1000)}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) url() string { return rc.srv.URL + "/hooks/stripe" }

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if !assert.NoError(rc.t, err) {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	secret := rc.secret.Load()
	if !assert.NotNil(rc.t, secret, "a delivery before the endpoint's secret is known") {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	ev, err := webhook.ConstructEvent(body, r.Header.Get("Stripe-Signature"), *secret)
	if !assert.NoError(rc.t, err, "stripe-go's webhook.ConstructEvent accepts the delivery") {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	got := received{event: ev, header: r.Header.Clone(), body: body}
	rc.mu.Lock()
	rc.got = append(rc.got, got)
	n := len(rc.got)
	rc.mu.Unlock()
	select {
	case rc.arrived <- got:
	default:
	}
	status := http.StatusOK
	if f := rc.answer.Load(); f != nil {
		status = (*f)(n, &ev)
	}
	w.WriteHeader(status)
}

func (rc *receiver) answerWith(f func(n int, ev *stripe.Event) int) { rc.answer.Store(&f) }

func (rc *receiver) events() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

// types returns the types of the events received, in arrival order.
func (rc *receiver) types() []string {
	var out []string
	for _, g := range rc.events() {
		out = append(out, string(g.event.Type))
	}
	return out
}

// endpoint creates a webhook endpoint for rc through stripe-go, and gives
// rc its secret.
func (rc *receiver) endpoint(sc *stripe.Client, events ...string) *stripe.WebhookEndpoint {
	rc.t.Helper()
	if len(events) == 0 {
		events = []string{"*"}
	}
	we, err := sc.V1WebhookEndpoints.Create(context.Background(), &stripe.WebhookEndpointCreateParams{
		URL: stripe.String(rc.url()), EnabledEvents: stripe.StringSlice(events)})
	require.NoError(rc.t, err)
	rc.secret.Store(&we.Secret)
	return we
}

// waitCtx bounds a test's waits, so that a bug fails it rather than hangs.
func waitCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func settle(t *testing.T, srv *mock.Server) mock.DeliveryStats {
	t.Helper()
	st, err := srv.WaitDeliveries(waitCtx(t))
	require.NoError(t, err, "deliveries settle: %+v", st)
	return st
}

func TestWebhookDeliverySigned(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	rc := newReceiver(t)
	we := rc.endpoint(sc)
	ctx := context.Background()

	ch, err := sc.V1Charges.Create(ctx, chargeParams(2000, "tok_visa", "order_1"))
	require.NoError(t, err)
	st := settle(t, srv)
	assert.Equal(t, mock.DeliveryStats{Events: 1, Deliveries: 1, Attempts: 1, Delivered: 1}, st)

	got := rc.events()
	require.Len(t, got, 1)
	ev := got[0].event
	assert.Equal(t, stripe.EventTypeChargeSucceeded, ev.Type)
	assert.Equal(t, "event", ev.Object)
	assert.Equal(t, stripe.APIVersion, ev.APIVersion)
	assert.Equal(t, mock.StripeAPIVersion, stripe.APIVersion, "the mock sends the version stripe-go pins")
	assert.Equal(t, start.Unix(), ev.Created)
	assert.False(t, ev.Livemode)
	assert.Equal(t, int64(1), ev.PendingWebhooks, "the delivery itself is pending until answered")
	require.NotNil(t, ev.Request)
	assert.Equal(t, "order_1", ev.Request.IdempotencyKey)
	assert.Equal(t, ch.LastResponse.RequestID, ev.Request.ID)
	assert.Contains(t, ev.ID, "evt_")
	var obj stripe.Charge
	require.NoError(t, json.Unmarshal(ev.Data.Raw, &obj))
	assert.Equal(t, ch.ID, obj.ID)
	assert.Equal(t, int64(2000), obj.Amount)
	assert.True(t, obj.Captured)
	assert.JSONEq(t, string(ch.LastResponse.RawJSON), string(ev.Data.Raw), "data.object is the charge as the API returned it")

	h := got[0].header
	assert.Equal(t, "application/json; charset=utf-8", h.Get("Content-Type"))
	assert.Equal(t, "Stripe/1.0 (+https://stripe.com/docs/webhooks)", h.Get("User-Agent"))
	assert.Regexp(t, `^t=\d+,v1=[0-9a-f]{64}$`, h.Get("Stripe-Signature"))

	recs := srv.Deliveries()
	require.Len(t, recs, 1)
	r := recs[0]
	assert.Equal(t, ev.ID, r.Event)
	assert.Equal(t, "charge.succeeded", r.Type)
	assert.Equal(t, we.ID, r.Endpoint)
	assert.Equal(t, mock.AccountID(keyA), r.Account)
	assert.Equal(t, rc.url(), r.URL)
	assert.Equal(t, 1, r.Attempt)
	assert.Equal(t, 0, r.Copy)
	assert.Equal(t, http.StatusOK, r.Status)
	assert.Equal(t, mock.DeliveryDelivered, r.Outcome)
	assert.Empty(t, r.Error)
	assert.Positive(t, r.Duration)
	assert.False(t, r.At.Before(start))

	// Once answered, the event has no pending webhook.
	again, err := sc.V1Events.Retrieve(ctx, ev.ID, nil)
	require.NoError(t, err)
	assert.Equal(t, int64(0), again.PendingWebhooks)
	assert.Equal(t, ev.ID, again.ID)
}

// eventTypes are the types of the events each operation makes, as Stripe
// documents them.
func TestWebhookEventTypes(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	rc := newReceiver(t)
	rc.endpoint(sc)
	ctx := context.Background()
	step := func(name string, want []string, op func()) {
		t.Helper()
		before := len(srv.Events())
		op()
		settle(t, srv)
		var got []string
		for _, ev := range srv.Events()[before:] {
			got = append(got, ev.Type)
		}
		assert.Equal(t, want, got, name)
	}

	var ch, auth *stripe.Charge
	step("a charge", []string{"charge.succeeded"}, func() {
		var err error
		ch, err = sc.V1Charges.Create(ctx, chargeParams(2000, "tok_visa", ""))
		require.NoError(t, err)
	})
	step("a decline", []string{"charge.failed"}, func() {
		_, err := sc.V1Charges.Create(ctx, chargeParams(2000, "tok_chargeDeclined", ""))
		require.Error(t, err)
	})
	step("an authorization", []string{"charge.succeeded"}, func() {
		p := chargeParams(700, "tok_visa", "")
		p.Capture = stripe.Bool(false)
		var err error
		auth, err = sc.V1Charges.Create(ctx, p)
		require.NoError(t, err)
	})
	step("its capture", []string{"charge.captured"}, func() {
		_, err := sc.V1Charges.Capture(ctx, auth.ID, nil)
		require.NoError(t, err)
	})
	step("a capture refused", nil, func() {
		_, err := sc.V1Charges.Capture(ctx, auth.ID, nil)
		require.Error(t, err)
	})
	step("a refund", []string{"charge.refunded", "refund.created"}, func() {
		_, err := sc.V1Refunds.Create(ctx, &stripe.RefundCreateParams{Charge: stripe.String(ch.ID), Amount: stripe.Int64(500)})
		require.NoError(t, err)
	})
	step("an over-refund", nil, func() {
		_, err := sc.V1Refunds.Create(ctx, &stripe.RefundCreateParams{Charge: stripe.String(ch.ID), Amount: stripe.Int64(5000)})
		require.Error(t, err)
	})

	var pi *stripe.PaymentIntent
	step("an intent", []string{"payment_intent.created"}, func() {
		var err error
		pi, err = sc.V1PaymentIntents.Create(ctx, &stripe.PaymentIntentCreateParams{Amount: stripe.Int64(1200),
			Currency: stripe.String("usd"), PaymentMethod: stripe.String("pm_card_visa")})
		require.NoError(t, err)
	})
	step("its confirmation", []string{"charge.succeeded", "payment_intent.succeeded"}, func() {
		_, err := sc.V1PaymentIntents.Confirm(ctx, pi.ID, nil)
		require.NoError(t, err)
	})
	step("a refund by intent", []string{"charge.refunded", "refund.created"}, func() {
		_, err := sc.V1Refunds.Create(ctx, &stripe.RefundCreateParams{PaymentIntent: stripe.String(pi.ID)})
		require.NoError(t, err)
	})
	var manual *stripe.PaymentIntent
	step("a manual intent confirmed at once", []string{"payment_intent.created", "charge.succeeded", "payment_intent.amount_capturable_updated"}, func() {
		var err error
		manual, err = sc.V1PaymentIntents.Create(ctx, &stripe.PaymentIntentCreateParams{Amount: stripe.Int64(900),
			Currency: stripe.String("usd"), PaymentMethod: stripe.String("pm_card_visa"), Confirm: stripe.Bool(true),
			CaptureMethod: stripe.String("manual")})
		require.NoError(t, err)
	})
	step("its capture", []string{"charge.captured", "payment_intent.succeeded"}, func() {
		_, err := sc.V1PaymentIntents.Capture(ctx, manual.ID, nil)
		require.NoError(t, err)
	})
	step("a declined intent", []string{"payment_intent.created", "charge.failed", "payment_intent.payment_failed"}, func() {
		_, err := sc.V1PaymentIntents.Create(ctx, &stripe.PaymentIntentCreateParams{Amount: stripe.Int64(900),
			Currency: stripe.String("usd"), PaymentMethod: stripe.String("pm_card_chargeDeclined"), Confirm: stripe.Bool(true)})
		require.Error(t, err)
	})
	step("a canceled intent", []string{"payment_intent.created", "payment_intent.canceled"}, func() {
		p, err := sc.V1PaymentIntents.Create(ctx, &stripe.PaymentIntentCreateParams{Amount: stripe.Int64(300), Currency: stripe.String("usd")})
		require.NoError(t, err)
		_, err = sc.V1PaymentIntents.Cancel(ctx, p.ID, nil)
		require.NoError(t, err)
	})

	// Every event was delivered once, signed, in the version stripe-go
	// expects, with the object of its type.
	events := srv.Events()
	got := rc.events()
	require.Len(t, got, len(events))
	byID := map[string]received{}
	for _, g := range got {
		byID[g.event.ID] = g
	}
	for _, ev := range events {
		g, ok := byID[ev.ID]
		if assert.True(t, ok, "event %s (%s) delivered", ev.ID, ev.Type) {
			assert.Equal(t, ev.Type, string(g.event.Type))
			want := map[string]string{"charge": "charge", "refund": "refund", "payment_intent": "payment_intent"}
			kind := ev.Type[:strings.LastIndex(ev.Type, ".")]
			assert.Equal(t, want[kind], g.event.Data.Object["object"], ev.Type)
		}
	}
}
