package mock_test

import (
	"context"
	"encoding/json"
	"math"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v85"

	"github.com/payonce/payonce/mock"
)

func TestDeliveryFaultDuplicateAtOnce(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	rc := newReceiver(t)
	rc.endpoint(sc)
	require.NoError(t, srv.InjectDeliveryFault(mock.DeliveryFault{Kind: mock.DuplicateDelivery, Copies: 2}))
	charge(t, sc, "")
	charge(t, sc, "") // the fault is used up: delivered once
	st := settle(t, srv)
	assert.Equal(t, mock.DeliveryStats{Events: 2, Deliveries: 4, Attempts: 4, Delivered: 4}, st)
	counts := map[string]int{}
	for _, g := range rc.events() {
		counts[g.event.ID]++
	}
	events := srv.Events()
	assert.Equal(t, map[string]int{events[0].ID: 3, events[1].ID: 1}, counts)
	var copies []int
	for _, r := range srv.Deliveries() {
		if r.Event == events[0].ID {
			copies = append(copies, r.Copy)
			assert.Equal(t, mock.DuplicateDelivery, r.Fault)
		} else {
			assert.Empty(t, r.Fault)
		}
	}
	assert.ElementsMatch(t, []int{0, 1, 2}, copies)
	assert.Equal(t, int64(0), events[0].PendingWebhooks, "copies do not count as webhooks")
	assert.Empty(t, srv.DeliveryFaults(), "used up")
}

func TestDeliveryFaultDuplicateSpaced(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	rc := newReceiver(t)
	rc.endpoint(sc)
	require.NoError(t, srv.InjectDeliveryFault(mock.DeliveryFault{Kind: mock.DuplicateDelivery, Spacing: time.Hour}))
	charge(t, sc, "")
	waitStats(t, srv, func(s mock.DeliveryStats) bool { return s.Delivered == 1 })
	assert.Len(t, rc.events(), 1, "the copy waits for the clock")
	srv.AdvanceClock(time.Hour)
	settle(t, srv)
	got := rc.events()
	require.Len(t, got, 2)
	assert.Equal(t, got[0].event.ID, got[1].event.ID)
	recs := srv.Deliveries()
	require.Len(t, recs, 2)
	assert.GreaterOrEqual(t, recs[1].At.Sub(recs[0].At), time.Hour)
	assert.Equal(t, 1, recs[1].Copy)
}

// A delayed event arrives after a later one.
func TestDeliveryFaultDelay(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	rc := newReceiver(t)
	rc.endpoint(sc)
	require.NoError(t, srv.InjectDeliveryFault(mock.DeliveryFault{Kind: mock.DelayDelivery, EventType: "charge.*", Delay: time.Hour}))
	first := charge(t, sc, "")
	second := charge(t, sc, "")
	waitStats(t, srv, func(s mock.DeliveryStats) bool { return s.Delivered == 1 })
	srv.AdvanceClock(time.Hour)
	settle(t, srv)
	got := rc.events()
	require.Len(t, got, 2)
	assert.Equal(t, second.ID, got[0].event.GetObjectValue("id"), "the later event first")
	assert.Equal(t, first.ID, got[1].event.GetObjectValue("id"))
	assert.Equal(t, mock.DelayDelivery, srv.Deliveries()[1].Fault)
}

// A copy arrives while the receiver is still processing the first.
func TestDeliveryFaultConcurrentCopy(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	rc := newReceiver(t)
	both := make(chan struct{})
	var inFlight, most atomic.Int32
	rc.answerWith(func(n int, _ *stripe.Event) int {
		now := inFlight.Add(1)
		defer inFlight.Add(-1)
		for m := most.Load(); now > m && !most.CompareAndSwap(m, now); m = most.Load() {
		}
		if n == 2 {
			close(both)
			return http.StatusOK
		}
		select { // the first waits for its copy
		case <-both:
			return http.StatusOK
		case <-time.After(10 * time.Second):
			return http.StatusTeapot
		}
	})
	rc.endpoint(sc)
	require.NoError(t, srv.InjectDeliveryFault(mock.DeliveryFault{Kind: mock.ConcurrentCopy}))
	charge(t, sc, "")
	st := settle(t, srv)
	assert.Equal(t, mock.DeliveryStats{Events: 1, Deliveries: 2, Attempts: 2, Delivered: 2}, st)
	assert.Equal(t, int32(2), most.Load(), "both deliveries were in the receiver at once")
	got := rc.events()
	require.Len(t, got, 2)
	assert.Equal(t, got[0].event.ID, got[1].event.ID)
	for _, r := range srv.Deliveries() {
		assert.Equal(t, mock.ConcurrentCopy, r.Fault)
		assert.Equal(t, http.StatusOK, r.Status)
	}
}

// The receiver's 2xx is ignored, so an event it processed comes again.
func TestDeliveryFaultDropAnswer(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	rc, other := newReceiver(t), newReceiver(t)
	we := rc.endpoint(sc)
	other.endpoint(sc)
	require.NoError(t, srv.InjectDeliveryFault(mock.DeliveryFault{Kind: mock.DropAnswer, Endpoint: we.ID}))
	charge(t, sc, "")
	waitStats(t, srv, func(s mock.DeliveryStats) bool { return s.Attempts == 2 })
	assert.Len(t, other.events(), 1, "the fault is for one endpoint only")
	srv.AdvanceClock(time.Second) // the default backoff
	st := settle(t, srv)
	assert.Equal(t, mock.DeliveryStats{Events: 1, Deliveries: 2, Attempts: 3, Delivered: 2, Dropped: 1}, st)
	got := rc.events()
	require.Len(t, got, 2, "processed, and delivered again")
	assert.Equal(t, got[0].event.ID, got[1].event.ID)
	var mine []mock.DeliveryRecord
	for _, r := range srv.Deliveries() {
		if r.Endpoint == we.ID {
			mine = append(mine, r)
		}
	}
	require.Len(t, mine, 2)
	assert.Equal(t, mock.DeliveryAnswerDropped, mine[0].Outcome)
	assert.Equal(t, http.StatusOK, mine[0].Status)
	assert.Equal(t, mock.DropAnswer, mine[0].Fault)
	assert.Equal(t, mock.DeliveryDelivered, mine[1].Outcome)
	assert.Equal(t, 2, mine[1].Attempt)
}

func TestDeliveryFaultValidation(t *testing.T) {
	g, err := mock.New()
	require.NoError(t, err)
	for _, f := range []mock.DeliveryFault{
		{Kind: "explode"},
		{Kind: mock.DuplicateDelivery, Delay: time.Second},
		{Kind: mock.DuplicateDelivery, Copies: 1000},
		{Kind: mock.DelayDelivery, Copies: 1},
		{Kind: mock.DelayDelivery, Delay: mock.MaxDeliveryFaultDelay + 1},
		{Kind: mock.DropAnswer, Spacing: time.Second},
		{Kind: mock.ConcurrentCopy, Times: -1},
		// Copies times Spacing would overflow to a negative duration.
		{Kind: mock.DuplicateDelivery, Copies: 2, Spacing: math.MaxInt64/2 + 1},
		{Kind: mock.DuplicateDelivery, Copies: 100, Spacing: math.MaxInt64 / 50},
		{Kind: mock.DuplicateDelivery, Copies: 2, Spacing: mock.MaxDeliveryFaultDelay/2 + 1},
	} {
		assert.Error(t, g.InjectDeliveryFault(f), "%+v", f)
	}
	require.NoError(t, g.InjectDeliveryFault(mock.DeliveryFault{Kind: mock.DuplicateDelivery, Copies: 2, Spacing: mock.MaxDeliveryFaultDelay / 2}))
	g.ClearDeliveryFaults()
	require.NoError(t, g.InjectDeliveryFault(mock.DeliveryFault{Kind: mock.DelayDelivery}))
	assert.Equal(t, []mock.DeliveryFault{{Kind: mock.DelayDelivery, Times: 1, Delay: mock.DefaultFaultDelay}}, g.DeliveryFaults())
	g.ClearDeliveryFaults()
	assert.Empty(t, g.DeliveryFaults())
	assert.Error(t, g.SetDeliveryChaos(1.5, 0))
}

// Under delivery chaos every event still arrives, at least once.
func TestDeliveryChaos(t *testing.T) {
	sc, srv := stripeClient(t, keyA, mock.WithDeliveryChaos(1, 42),
		mock.WithDeliveryPolicy(mock.DeliveryPolicy{Backoff: func(int) time.Duration { return 0 }}))
	rc := newReceiver(t)
	rc.endpoint(sc)
	const n = 40
	for range n {
		charge(t, sc, "")
	}
	st := settle(t, srv)
	assert.Equal(t, int64(n), st.Events)
	assert.Greater(t, st.Deliveries, int64(n), "chaos made copies")
	assert.Equal(t, st.Deliveries, st.Delivered)
	seen := map[string]bool{}
	for _, g := range rc.events() {
		seen[g.event.ID] = true
	}
	assert.Len(t, seen, n, "every event arrived")
	assert.Greater(t, len(rc.events()), n, "some more than once")
	kinds := map[mock.DeliveryFaultKind]bool{}
	for _, r := range srv.Deliveries() {
		kinds[r.Fault] = true
	}
	for _, k := range []mock.DeliveryFaultKind{mock.DuplicateDelivery, mock.DelayDelivery, mock.ConcurrentCopy, mock.DropAnswer} {
		assert.True(t, kinds[k], "chaos drew %s", k)
	}
}

func TestDeliveryControlSurface(t *testing.T) {
	h := setup(t)
	sc := stripeClientFor(h.srv, keyA)
	rc := newReceiver(t)
	we := rc.endpoint(sc)

	r := h.control("POST", "/_mock/delivery_faults", `{"kind":"duplicate","event_type":"charge.succeeded","copies":1}`)
	assert.JSONEq(t, `{"kind":"duplicate","event_type":"charge.succeeded","endpoint":"","times":1,"copies":1}`, string(r.Body))
	r = h.control("POST", "/_mock/delivery_faults", `{"kind":"delay","delay_ms":300000000}`)
	assert.Equal(t, http.StatusBadRequest, r.Status, "over MaxDeliveryFaultDelay")
	r = h.control("POST", "/_mock/delivery_faults", `{"kind":"drop_answer","copies":2}`)
	assert.Equal(t, "invalid_fault", r.err(t).Code)
	r = h.control("POST", "/_mock/delivery_faults", `{"kind":"drop_answer","bogus":1}`)
	assert.Equal(t, "invalid_json", r.err(t).Code)
	r = h.control("GET", "/_mock/delivery_faults", "")
	assert.Len(t, decode[struct{ Data []json.RawMessage }](t, r).Data, 1)

	charge(t, sc, "ctl_1")
	r = h.control("POST", "/_mock/deliveries/wait", `{"timeout_ms":10000}`)
	st := decode[mock.DeliveryStats](t, r)
	assert.Equal(t, mock.DeliveryStats{Events: 1, Deliveries: 2, Attempts: 2, Delivered: 2}, st)
	r = h.control("GET", "/_mock/deliveries/stats", "")
	assert.Equal(t, st, decode[mock.DeliveryStats](t, r))

	r = h.control("GET", "/_mock/events", "")
	events := decode[struct{ Data []mock.EventRecord }](t, r).Data
	require.Len(t, events, 1)
	assert.Equal(t, "charge.succeeded", events[0].Type)
	assert.Equal(t, "ctl_1", events[0].IdempotencyKey)
	assert.Equal(t, mock.AccountID(keyA), events[0].Account)

	r = h.control("GET", "/_mock/deliveries?event="+events[0].ID+"&endpoint="+we.ID, "")
	recs := decode[struct {
		Data []map[string]any `json:"data"`
	}](t, r)
	require.Len(t, recs.Data, 2)
	rec := recs.Data[0]
	for _, field := range []string{"event", "type", "endpoint", "account", "url", "attempt", "copy", "status", "outcome", "fault", "at", "duration_ms"} {
		assert.Contains(t, rec, field)
	}
	assert.Equal(t, "delivered", rec["outcome"])
	assert.Equal(t, float64(200), rec["status"])
	r = h.control("GET", "/_mock/deliveries?endpoint=we_other", "")
	assert.Empty(t, decode[struct{ Data []json.RawMessage }](t, r).Data)
	r = h.control("GET", "/_mock/deliveries?bogus=1", "")
	assert.Equal(t, http.StatusBadRequest, r.Status)

	// A wait that runs out answers 408.
	rc.answerWith(func(int, *stripe.Event) int { return http.StatusInternalServerError })
	charge(t, sc, "")
	r = h.control("POST", "/_mock/deliveries/wait", `{"timeout_ms":1}`)
	assert.Equal(t, http.StatusRequestTimeout, r.Status)
	assert.Equal(t, "deliveries_pending", r.err(t).Code)

	r = h.control("POST", "/_mock/delivery_chaos", `{"rate":0.25,"seed":9}`)
	assert.JSONEq(t, `{"rate":0.25,"seed":9}`, string(r.Body))
	r = h.control("GET", "/_mock/delivery_chaos", "")
	assert.JSONEq(t, `{"rate":0.25,"seed":9}`, string(r.Body))
	r = h.control("POST", "/_mock/delivery_chaos", `{"rate":2}`)
	assert.Equal(t, http.StatusBadRequest, r.Status)

	r = h.control("DELETE", "/_mock/delivery_faults", "")
	assert.JSONEq(t, `{"ok":true}`, string(r.Body))

	// The guard covers the new routes too.
	req, err := http.NewRequestWithContext(context.Background(), "GET", h.srv.URL+"/_mock/deliveries", nil)
	require.NoError(t, err)
	req.Host = "attacker.example"
	res, err := h.c.Do(req)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusForbidden, res.StatusCode)
}
