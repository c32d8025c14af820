package mock_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v85"

	"github.com/payonce/payonce/mock"
)

// waitStats waits until the delivery counters satisfy ok.
func waitStats(t *testing.T, srv *mock.Server, ok func(mock.DeliveryStats) bool) mock.DeliveryStats {
	t.Helper()
	st, err := srv.WaitDeliveryStats(waitCtx(t), ok)
	require.NoError(t, err, "stats: %+v", st)
	return st
}

func charge(t *testing.T, sc *stripe.Client, key string) *stripe.Charge {
	t.Helper()
	ch, err := sc.V1Charges.Create(context.Background(), chargeParams(1000, "tok_visa", key))
	require.NoError(t, err)
	return ch
}

// Retries come at exact moments of the gateway's clock, as the backoff
// says: an hour after the first failure, two after the second.
func TestDeliveryRetriesUntil2xx(t *testing.T) {
	sc, srv := stripeClient(t, keyA, mock.WithDeliveryPolicy(mock.DeliveryPolicy{
		Backoff: func(n int) time.Duration { return time.Duration(n) * time.Hour }}))
	rc := newReceiver(t)
	rc.answerWith(func(n int, _ *stripe.Event) int {
		if n <= 2 {
			return http.StatusInternalServerError
		}
		return http.StatusNoContent
	})
	rc.endpoint(sc)
	charge(t, sc, "retry_1")

	waitStats(t, srv, func(s mock.DeliveryStats) bool { return s.Attempts == 1 })
	srv.AdvanceClock(59 * time.Minute)
	assert.Equal(t, int64(1), srv.DeliveryStats().Attempts, "not due yet")
	srv.AdvanceClock(time.Minute)
	waitStats(t, srv, func(s mock.DeliveryStats) bool { return s.Attempts == 2 })
	srv.AdvanceClock(2 * time.Hour)
	st := settle(t, srv)
	assert.Equal(t, mock.DeliveryStats{Events: 1, Deliveries: 1, Attempts: 3, Delivered: 1, Failed: 2}, st)

	recs := srv.Deliveries()
	require.Len(t, recs, 3)
	for i, r := range recs {
		assert.Equal(t, i+1, r.Attempt)
		assert.Equal(t, recs[0].Event, r.Event, "the same event, redelivered")
	}
	assert.Equal(t, []int{500, 500, 204}, []int{recs[0].Status, recs[1].Status, recs[2].Status})
	assert.Equal(t, []mock.DeliveryOutcome{mock.DeliveryFailed, mock.DeliveryFailed, mock.DeliveryDelivered},
		[]mock.DeliveryOutcome{recs[0].Outcome, recs[1].Outcome, recs[2].Outcome})
	assert.GreaterOrEqual(t, recs[1].At.Sub(recs[0].At), time.Hour)
	assert.GreaterOrEqual(t, recs[2].At.Sub(recs[1].At), 2*time.Hour)
	got := rc.events()
	require.Len(t, got, 3)
	assert.Equal(t, int64(1), got[2].event.PendingWebhooks, "still pending while being delivered")
}

func TestDeliveryGivesUp(t *testing.T) {
	sc, srv := stripeClient(t, keyA, mock.WithDeliveryPolicy(mock.DeliveryPolicy{MaxAttempts: 3,
		Backoff: func(int) time.Duration { return 0 }}))
	rc := newReceiver(t)
	rc.answerWith(func(int, *stripe.Event) int { return http.StatusServiceUnavailable })
	rc.endpoint(sc)
	charge(t, sc, "")
	st := settle(t, srv)
	assert.Equal(t, mock.DeliveryStats{Events: 1, Deliveries: 1, Attempts: 3, Failed: 3, GaveUp: 1}, st)
	recs := srv.Deliveries()
	require.Len(t, recs, 3)
	assert.False(t, recs[1].GaveUp)
	assert.True(t, recs[2].GaveUp)
	assert.Equal(t, int64(1), srv.Events()[0].PendingWebhooks, "never answered with a 2xx")
}

func TestDeliveryGivesUpByAge(t *testing.T) {
	sc, srv := stripeClient(t, keyA, mock.WithDeliveryPolicy(mock.DeliveryPolicy{MaxAge: 90 * time.Second,
		Backoff: func(n int) time.Duration { return time.Duration(n) * time.Minute }}))
	rc := newReceiver(t)
	rc.answerWith(func(int, *stripe.Event) int { return http.StatusInternalServerError })
	rc.endpoint(sc)
	charge(t, sc, "")
	waitStats(t, srv, func(s mock.DeliveryStats) bool { return s.Attempts == 1 })
	srv.AdvanceClock(time.Minute) // the retry due at +1 min goes at once
	st := settle(t, srv)
	assert.Equal(t, int64(2), st.Attempts, "the next retry would come 3 min after the event, past MaxAge: given up")
	assert.Equal(t, int64(1), st.GaveUp)
}

// The delivery client follows no redirect, and records why an attempt got
// no answer.
func TestDeliveryRedirectsAndErrors(t *testing.T) {
	sc, srv := stripeClient(t, keyA, mock.WithDeliveryPolicy(mock.DeliveryPolicy{MaxAttempts: 1}))
	var followed atomic.Bool
	target := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { followed.Store(true) }))
	t.Cleanup(target.Close)
	redirect := httptest.NewServer(http.RedirectHandler(target.URL, http.StatusFound))
	t.Cleanup(redirect.Close)
	_, err := sc.V1WebhookEndpoints.Create(context.Background(), &stripe.WebhookEndpointCreateParams{
		URL: stripe.String(redirect.URL), EnabledEvents: stripe.StringSlice([]string{"*"})})
	require.NoError(t, err)

	// An endpoint on a port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	closed := "http://" + ln.Addr().String() + "/h"
	require.NoError(t, ln.Close())
	dead, err := sc.V1WebhookEndpoints.Create(context.Background(), &stripe.WebhookEndpointCreateParams{
		URL: stripe.String(closed), EnabledEvents: stripe.StringSlice([]string{"*"})})
	require.NoError(t, err)

	charge(t, sc, "")
	settle(t, srv)
	assert.False(t, followed.Load(), "a redirect is not followed")
	for _, r := range srv.Deliveries() {
		assert.Equal(t, mock.DeliveryFailed, r.Outcome)
		assert.True(t, r.GaveUp)
		if r.Endpoint == dead.ID {
			assert.Equal(t, 0, r.Status)
			assert.Contains(t, r.Error, "refused")
			assert.NotContains(t, r.Error, closed, "the URL is in the record, not repeated in the error")
		} else {
			assert.Equal(t, http.StatusFound, r.Status)
		}
	}
	assert.Len(t, srv.Deliveries(), 2)
}

// A slow endpoint is cut off by the policy's timeout.
func TestDeliveryTimeout(t *testing.T) {
	sc, srv := stripeClient(t, keyA, mock.WithDeliveryPolicy(mock.DeliveryPolicy{MaxAttempts: 1, Timeout: 50 * time.Millisecond}))
	release := make(chan struct{})
	rc := newReceiver(t)
	t.Cleanup(func() { close(release) }) // before the receiver closes
	rc.answerWith(func(int, *stripe.Event) int {
		<-release
		return http.StatusOK
	})
	rc.endpoint(sc)
	charge(t, sc, "")
	settle(t, srv)
	recs := srv.Deliveries()
	require.Len(t, recs, 1)
	assert.Equal(t, 0, recs[0].Status)
	assert.Contains(t, recs[0].Error, "Timeout")
	assert.True(t, recs[0].GaveUp)
}

func TestDeliveryFilteredAndDisabled(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	ctx := context.Background()
	succeeded, refunds, off := newReceiver(t), newReceiver(t), newReceiver(t)
	succeeded.endpoint(sc, "charge.succeeded")
	refunds.endpoint(sc, "refund.*", "charge.refunded")
	weOff := off.endpoint(sc)
	_, err := sc.V1WebhookEndpoints.Update(ctx, weOff.ID, &stripe.WebhookEndpointUpdateParams{Disabled: stripe.Bool(true)})
	require.NoError(t, err)

	ch := charge(t, sc, "")
	_, err = sc.V1Refunds.Create(ctx, &stripe.RefundCreateParams{Charge: stripe.String(ch.ID)})
	require.NoError(t, err)
	settle(t, srv)
	assert.Equal(t, []string{"charge.succeeded"}, succeeded.types())
	assert.ElementsMatch(t, []string{"charge.refunded", "refund.created"}, refunds.types())
	assert.Empty(t, off.types(), "a disabled endpoint receives nothing")

}

// A deleted or disabled endpoint's queued deliveries, retries and delayed
// ones alike, are given up the moment it goes, not when they fall due:
// nothing is pending, and nothing is counted as an attempt, since nothing
// was sent. A disabled endpoint gets nothing more.
func TestDeliveryEndpointGoneGivesUpAtOnce(t *testing.T) {
	for _, gone := range []string{"deleted", "disabled"} {
		t.Run(gone, func(t *testing.T) {
			// A retry an hour away, on the gateway's clock, which runs in
			// real time: due long after the test.
			sc, srv := stripeClient(t, keyA, mock.WithDeliveryPolicy(mock.DeliveryPolicy{
				Backoff: func(int) time.Duration { return time.Hour }}))
			ctx := context.Background()
			failing := newReceiver(t)
			failing.answerWith(func(int, *stripe.Event) int { return http.StatusInternalServerError })
			we := failing.endpoint(sc)
			other := newReceiver(t)
			other.endpoint(sc)
			charge(t, sc, "")
			waitStats(t, srv, func(s mock.DeliveryStats) bool { return s.Failed == 1 && s.Delivered == 1 })
			// And one held by a delay fault.
			require.NoError(t, srv.InjectDeliveryFault(mock.DeliveryFault{Kind: mock.DelayDelivery, Endpoint: we.ID, Delay: time.Hour}))
			charge(t, sc, "")
			waitStats(t, srv, func(s mock.DeliveryStats) bool { return s.Delivered == 2 })
			require.Equal(t, int64(2), srv.DeliveryStats().Pending, "a retry and a delayed delivery")

			var err error
			if gone == "deleted" {
				_, err = sc.V1WebhookEndpoints.Delete(ctx, we.ID, nil)
			} else {
				_, err = sc.V1WebhookEndpoints.Update(ctx, we.ID, &stripe.WebhookEndpointUpdateParams{Disabled: stripe.Bool(true)})
			}
			require.NoError(t, err)
			assert.Equal(t, mock.DeliveryStats{Events: 2, Deliveries: 4, Attempts: 3, Delivered: 2, Failed: 1, GaveUp: 2},
				srv.DeliveryStats(), "given up at once, with no attempt")

			charge(t, sc, "")
			srv.AdvanceClock(2 * time.Hour)
			st := settle(t, srv)
			assert.Equal(t, mock.DeliveryStats{Events: 3, Deliveries: 5, Attempts: 4, Delivered: 3, Failed: 1, GaveUp: 2}, st)
			var mine []mock.DeliveryRecord
			for _, r := range srv.Deliveries() {
				if r.Endpoint == we.ID {
					mine = append(mine, r)
				}
			}
			require.Len(t, mine, 1, "the first attempt alone was made")
			assert.False(t, mine[0].GaveUp)
			assert.Len(t, failing.events(), 1, "nothing more reached it")
			assert.Len(t, other.events(), 3)
		})
	}
}

// Close stops the deliveries, of this world and of those before a Reset,
// and waits for their goroutines.
func TestDeliveryGoroutinesEnd(t *testing.T) {
	srv := mock.NewServer(mock.WithStartTime(start))
	sc := stripeClientFor(srv, keyA)
	rc := newReceiver(t)
	rc.answerWith(func(int, *stripe.Event) int { return http.StatusInternalServerError })
	rc.endpoint(sc)
	charge(t, sc, "")
	waitStats(t, srv, func(s mock.DeliveryStats) bool { return s.Attempts == 1 })
	assert.True(t, deliveryGoroutines(), "a retry is pending")

	srv.Reset() // cancels the old deliveries (see TestResetStopsDeliveries)
	assert.Empty(t, srv.Deliveries())
	assert.Equal(t, mock.DeliveryStats{}, srv.DeliveryStats())

	rc.endpoint(sc)
	charge(t, sc, "")
	waitStats(t, srv, func(s mock.DeliveryStats) bool { return s.Attempts == 1 })
	srv.Close()
	assert.False(t, deliveryGoroutines(), "Close returns once every delivery goroutine has")
	srv.Close() // twice is fine
}

// deliveryGoroutines reports whether any goroutine is in the gateway's
// delivery code.
func deliveryGoroutines() bool {
	buf := make([]byte, 1<<20)
	buf = buf[:runtime.Stack(buf, true)]
	return strings.Contains(string(buf), "mock.(*world).schedule") || strings.Contains(string(buf), "mock.(*world).attempt")
}

// The mock reads a bounded part of an answer: an endpoint that streams
// without end is delivered to, not waited on until the timeout.
func TestDeliveryReadsBoundedAnswer(t *testing.T) {
	sc, srv := stripeClient(t, keyA, mock.WithDeliveryPolicy(mock.DeliveryPolicy{MaxAttempts: 1, Timeout: time.Minute}))
	endless := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		chunk := make([]byte, 32<<10)
		for r.Context().Err() == nil {
			if _, err := w.Write(chunk); err != nil {
				return
			}
		}
	}))
	t.Cleanup(endless.Close)
	_, err := sc.V1WebhookEndpoints.Create(context.Background(), &stripe.WebhookEndpointCreateParams{
		URL: stripe.String(endless.URL), EnabledEvents: stripe.StringSlice([]string{"*"})})
	require.NoError(t, err)
	charge(t, sc, "")
	settle(t, srv)
	recs := srv.Deliveries()
	require.Len(t, recs, 1)
	assert.Equal(t, mock.DeliveryDelivered, recs[0].Outcome, "%+v", recs[0])
	assert.Less(t, recs[0].Duration, 30*time.Second)
}

// Close leaves no connection of the delivery client open: not the idle
// ones of attempts that ended, nor those of attempts it cancelled.
func TestDeliveryCloseClosesConnections(t *testing.T) {
	srv := mock.NewServer(mock.WithStartTime(start))
	sc := stripeClientFor(srv, keyA)
	states := make(chan http.ConnState, 100)
	release, held := make(chan struct{}), make(chan struct{})
	var n atomic.Int64
	hold := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body) // so that the server notices a hang-up
		if n.Add(1) > 3 {
			close(held)
			select { // the last one is in flight when the gateway closes
			case <-release:
			case <-r.Context().Done():
			}
		}
	}))
	hold.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew || s == http.StateClosed {
			states <- s
		}
	}
	hold.Start()
	t.Cleanup(hold.Close)
	t.Cleanup(func() { close(release) })
	_, err := sc.V1WebhookEndpoints.Create(context.Background(), &stripe.WebhookEndpointCreateParams{
		URL: stripe.String(hold.URL), EnabledEvents: stripe.StringSlice([]string{"*"})})
	require.NoError(t, err)
	for range 3 {
		charge(t, sc, "")
		waitStats(t, srv, func(s mock.DeliveryStats) bool { return s.Pending == 0 })
	}
	charge(t, sc, "")
	recv(t, held)
	srv.Close()

	ctx := waitCtx(t)
	open := 0
	for opened := false; !opened || open > 0; {
		select {
		case s := <-states:
			opened = true
			if s == http.StateNew {
				open++
			} else {
				open--
			}
		case <-ctx.Done():
			t.Fatalf("%d delivery connections still open after Close (%d requests)", open, n.Load())
		}
	}
	assert.Equal(t, int64(4), n.Load())
}
