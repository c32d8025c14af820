package mock_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v85"

	"github.com/payonce/payonce/mock"
)

func TestEventsListAndRetrieve(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	ctx := context.Background()
	var charges []string
	for i := range 5 {
		ch, err := sc.V1Charges.Create(ctx, chargeParams(int64(100+i), "tok_visa", ""))
		require.NoError(t, err)
		charges = append(charges, ch.ID)
	}
	_, err := sc.V1Refunds.Create(ctx, &stripe.RefundCreateParams{Charge: stripe.String(charges[0])})
	require.NoError(t, err)
	all := srv.Events()
	require.Len(t, all, 7, "five charge.succeeded, a charge.refunded and a refund.created")

	// Newest first, paged by starting_after, as stripe-go's iterator does.
	lp := &stripe.EventListParams{}
	lp.Limit = stripe.Int64(2)
	var ids []string
	for ev, err := range sc.V1Events.List(ctx, lp).All(ctx) {
		require.NoError(t, err)
		ids = append(ids, ev.ID)
	}
	require.Len(t, ids, 7)
	for i, id := range ids {
		assert.Equal(t, all[len(all)-1-i].ID, id)
	}

	// Filtered by type, exactly or with a wildcard.
	lp = &stripe.EventListParams{Type: stripe.String("charge.succeeded")}
	var got []string
	for ev, err := range sc.V1Events.List(ctx, lp).All(ctx) {
		require.NoError(t, err)
		assert.Equal(t, stripe.EventTypeChargeSucceeded, ev.Type)
		got = append(got, ev.GetObjectValue("id"))
	}
	assert.Equal(t, []string{charges[4], charges[3], charges[2], charges[1], charges[0]}, got)
	n := 0
	for ev, err := range sc.V1Events.List(ctx, &stripe.EventListParams{Type: stripe.String("refund.*")}).All(ctx) {
		require.NoError(t, err)
		assert.Equal(t, stripe.EventTypeRefundCreated, ev.Type)
		n++
	}
	assert.Equal(t, 1, n)
	n = 0
	for _, err := range sc.V1Events.List(ctx, &stripe.EventListParams{Types: stripe.StringSlice([]string{"refund.created", "charge.refunded"})}).All(ctx) {
		require.NoError(t, err)
		n++
	}
	assert.Equal(t, 2, n)

	// ending_before pages towards newer events.
	lp = &stripe.EventListParams{}
	lp.EndingBefore = stripe.String(all[2].ID)
	lp.Limit = stripe.Int64(3)
	page := sc.V1Events.List(ctx, lp)
	var newer []string
	for ev, err := range page.All(ctx) {
		require.NoError(t, err)
		newer = append(newer, ev.ID)
	}
	assert.ElementsMatch(t, []string{all[3].ID, all[4].ID, all[5].ID, all[6].ID}, newer)

	ev, err := sc.V1Events.Retrieve(ctx, all[6].ID, nil)
	require.NoError(t, err)
	assert.Equal(t, stripe.EventTypeRefundCreated, ev.Type)
	assert.Equal(t, "refund", ev.Data.Object["object"])
	assert.Equal(t, charges[0], ev.GetObjectValue("charge"))
	assert.Equal(t, stripe.APIVersion, ev.APIVersion)

	_, err = sc.V1Events.Retrieve(ctx, "evt_missing", nil)
	assert.Equal(t, http.StatusNotFound, stripeErr(t, err).HTTPStatusCode)
	lp = &stripe.EventListParams{}
	lp.StartingAfter = stripe.String("evt_missing")
	for _, err := range sc.V1Events.List(ctx, lp).All(ctx) {
		assert.Equal(t, http.StatusNotFound, stripeErr(t, err).HTTPStatusCode)
	}
}

func TestEventsReplayMakesNone(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	rc := newReceiver(t)
	rc.endpoint(sc)
	ctx := context.Background()
	first, err := sc.V1Charges.Create(ctx, chargeParams(1500, "tok_visa", "cart_1"))
	require.NoError(t, err)
	again, err := sc.V1Charges.Create(ctx, chargeParams(1500, "tok_visa", "cart_1"))
	require.NoError(t, err)
	require.Equal(t, "true", again.LastResponse.Header.Get("Idempotent-Replayed"))
	require.Equal(t, first.ID, again.ID)
	// A decline's replay makes none either.
	_, err = sc.V1Charges.Create(ctx, chargeParams(1500, "tok_chargeDeclined", "cart_2"))
	require.Error(t, err)
	_, err = sc.V1Charges.Create(ctx, chargeParams(1500, "tok_chargeDeclined", "cart_2"))
	require.Error(t, err)
	// Nor a replayed refund.
	rp := &stripe.RefundCreateParams{Charge: stripe.String(first.ID), Amount: stripe.Int64(100)}
	rp.SetIdempotencyKey("refund_1")
	_, err = sc.V1Refunds.Create(ctx, rp)
	require.NoError(t, err)
	_, err = sc.V1Refunds.Create(ctx, rp)
	require.NoError(t, err)

	settle(t, srv)
	var types []string
	for _, ev := range srv.Events() {
		types = append(types, ev.Type)
	}
	assert.Equal(t, []string{"charge.succeeded", "charge.failed", "charge.refunded", "refund.created"}, types)
	assert.ElementsMatch(t, types, rc.types())
	assert.Equal(t, int64(4), srv.DeliveryStats().Events)

	// A request that executed behind a fault still made its event: it
	// happened.
	require.NoError(t, srv.InjectFault(mock.Fault{Kind: mock.FailAfter, Method: "POST", Path: "/v1/charges", Status: 503}))
	_, err = sc.V1Charges.Create(ctx, chargeParams(1600, "tok_visa", "cart_3"))
	require.Error(t, err)
	_, err = sc.V1Charges.Create(ctx, chargeParams(1600, "tok_visa", "cart_3"))
	require.NoError(t, err, "the retry replays")
	settle(t, srv)
	assert.Len(t, srv.Events(), 5)
	assert.Len(t, rc.events(), 5)
}

// payonce's JSON dialect runs on the same core: its charges, captures and
// refunds make the same events, delivered to the same account's endpoints.
func TestEventsPayonceDialect(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	rc := newReceiver(t)
	rc.endpoint(sc)
	h := &harness{t: t, srv: srv, c: srv.Client()}
	auth := `{"amount":2500,"currency":"usd","payment_method":"tok_visa","capture":false}`
	id := h.post("/v1/charges", "k1", auth).charge(t).ID
	h.post("/v1/charges/"+id+"/capture", "k2", `{}`).charge(t)
	r := h.post("/v1/refunds", "k3", `{"charge":"`+id+`"}`)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	r = h.post("/v1/charges", "k4", `{"amount":2500,"currency":"usd","payment_method":"tok_chargeDeclined"}`)
	require.Equal(t, http.StatusPaymentRequired, r.Status, "a decline in payonce's dialect leaves no charge, and no event")
	require.True(t, h.post("/v1/charges", "k1", auth).replayed())

	settle(t, srv)
	want := []string{"charge.succeeded", "charge.captured", "charge.refunded", "refund.created"}
	var created []string
	for _, ev := range srv.Events() {
		created = append(created, ev.Type)
	}
	assert.Equal(t, want, created)
	assert.ElementsMatch(t, want, rc.types(), "delivered, in no promised order")
	var ev stripe.Event
	for _, g := range rc.events() {
		if g.event.Type == stripe.EventTypeChargeSucceeded {
			ev = g.event
		}
	}
	assert.Equal(t, id, ev.GetObjectValue("id"))
	assert.Equal(t, "false", ev.GetObjectValue("captured"))
	assert.Equal(t, "k1", ev.Request.IdempotencyKey)
}

// payonce's dialect reads the same events.
func TestEventsReadInPayonceDialect(t *testing.T) {
	h := setup(t)
	id := h.charge(1200).ID
	r := h.get("/v1/events?type=charge.succeeded")
	list := decode[struct {
		Object string `json:"object"`
		Data   []struct {
			ID   string `json:"id"`
			Type string `json:"type"`
			Data struct {
				Object struct {
					ID string `json:"id"`
				} `json:"object"`
			} `json:"data"`
		} `json:"data"`
	}](t, r)
	assert.Equal(t, "list", list.Object)
	require.Len(t, list.Data, 1)
	assert.Equal(t, id, list.Data[0].Data.Object.ID)
	r = h.get("/v1/events/" + list.Data[0].ID)
	assert.Equal(t, http.StatusOK, r.Status)
	assert.Contains(t, string(r.Body), `"type":"charge.succeeded"`)
	assert.Equal(t, http.StatusNotFound, h.get("/v1/events/evt_nope").Status)
}

// An event shows its object as it was when the event happened: a later
// capture and refund leave an earlier event's charge as it was, even when
// the event is first read after them.
func TestEventKeepsObjectAsItWas(t *testing.T) {
	h := setup(t)
	auth := `{"amount":2500,"currency":"usd","payment_method":"tok_visa","capture":false}`
	id := h.post("/v1/charges", "k1", auth).charge(t).ID
	require.True(t, h.post("/v1/charges/"+id+"/capture", "k2", `{}`).charge(t).Captured)
	r := h.post("/v1/refunds", "k3", `{"charge":"`+id+`"}`)
	require.Equal(t, http.StatusOK, r.Status, string(r.Body))
	type object struct {
		ID             string `json:"id"`
		Captured       bool   `json:"captured"`
		AmountCaptured int64  `json:"amount_captured"`
		AmountRefunded int64  `json:"amount_refunded"`
		Refunded       bool   `json:"refunded"`
	}
	list := decode[struct {
		Data []struct {
			Type string `json:"type"`
			Data struct {
				Object object `json:"object"`
			} `json:"data"`
		} `json:"data"`
	}](t, h.get("/v1/events?types[]=charge.*"))
	got := map[string]object{}
	for _, ev := range list.Data {
		got[ev.Type] = ev.Data.Object
	}
	assert.Equal(t, map[string]object{
		"charge.succeeded": {ID: id},
		"charge.captured":  {ID: id, Captured: true, AmountCaptured: 2500},
		"charge.refunded":  {ID: id, Captured: true, AmountCaptured: 2500, AmountRefunded: 2500, Refunded: true},
	}, got)
}
