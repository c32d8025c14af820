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

// Events and delivery records are bounded, as the request history is:
// the oldest are forgotten first, across accounts, and the counters count
// them all.
func TestEventsAndDeliveriesBounded(t *testing.T) {
	sc, srv := stripeClient(t, keyA, mock.WithEventLimit(3), mock.WithDeliveryRecordLimit(2))
	other := stripeClientFor(srv, keyB)
	ctx := context.Background()
	rc := newReceiver(t)
	rc.endpoint(sc)
	var events []string
	for i := range 5 {
		c := sc
		if i == 1 {
			c = other // another account's event counts against the same bound
		}
		charge(t, c, "")
		all := srv.Events()
		events = append(events, all[len(all)-1].ID)
		settle(t, srv) // so that the attempts end in order
	}
	st := settle(t, srv)
	assert.Equal(t, mock.DeliveryStats{Events: 5, Deliveries: 4, Attempts: 4, Delivered: 4}, st)

	var kept []string
	for _, ev := range srv.Events() {
		kept = append(kept, ev.ID)
	}
	assert.Equal(t, events[2:], kept, "the latest three, oldest first")

	var listed []string
	for ev, err := range sc.V1Events.List(ctx, &stripe.EventListParams{}).All(ctx) {
		require.NoError(t, err)
		listed = append(listed, ev.ID)
	}
	assert.Equal(t, []string{events[4], events[3], events[2]}, listed)
	for _, id := range []string{events[0], events[1]} {
		_, err := sc.V1Events.Retrieve(ctx, id, nil)
		assert.Equal(t, http.StatusNotFound, stripeErr(t, err).HTTPStatusCode, "a forgotten event is unknown")
	}
	lp := &stripe.EventListParams{}
	lp.StartingAfter = stripe.String(events[0])
	for _, err := range sc.V1Events.List(ctx, lp).All(ctx) {
		assert.Equal(t, http.StatusNotFound, stripeErr(t, err).HTTPStatusCode, "a forgotten cursor is unknown")
		break
	}
	_, err := sc.V1Events.Retrieve(ctx, events[4], nil)
	assert.NoError(t, err)

	recs := srv.Deliveries()
	require.Len(t, recs, 2, "the latest two attempts")
	assert.Len(t, rc.events(), 4, "every event was delivered")
	assert.Equal(t, []string{events[3], events[4]}, []string{recs[0].Event, recs[1].Event})
}

func TestEventAndDeliveryLimitsRefuse(t *testing.T) {
	for _, opt := range []mock.Option{mock.WithEventLimit(0), mock.WithEventLimit(-1),
		mock.WithDeliveryRecordLimit(0), mock.WithDeliveryRecordLimit(-1)} {
		_, err := mock.New(opt)
		assert.Error(t, err)
	}
}
