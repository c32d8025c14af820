package mock_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/idempotency"
	"github.com/payonce/payonce/mock"
	"github.com/payonce/payonce/webhook"
)

// Package webhook's Receiver, behind every delivery fault at once, runs
// its handler exactly once per event: what the mock sends is what a
// receiver must survive, and what it survives.
func TestDeliveryChaosIntoWebhookReceiver(t *testing.T) {
	sc, srv := stripeClient(t, keyA, mock.WithDeliveryChaos(1, 3),
		mock.WithDeliveryPolicy(mock.DeliveryPolicy{Backoff: func(int) time.Duration { return 10 * time.Millisecond }}))

	var mu sync.Mutex
	runs := map[string]int{}
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		require.NoError(t, err)
		var ev struct {
			ID string `json:"id"`
		}
		require.NoError(t, json.Unmarshal(body, &ev))
		mu.Lock()
		runs[ev.ID]++
		mu.Unlock()
	})
	var rcv http.Handler
	ready := make(chan struct{})
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-ready
		rcv.ServeHTTP(w, r)
	}))
	t.Cleanup(front.Close)
	rc := &receiver{t: t, srv: front} // for its endpoint helper only
	we := rc.endpoint(sc)
	v, err := webhook.NewVerifier(webhook.Stripe, []string{we.Secret})
	require.NoError(t, err)
	rcv, err = webhook.NewReceiver(v, idempotency.NewMemoryStore(), next)
	require.NoError(t, err)
	close(ready)

	const n = 30
	for range n {
		charge(t, sc, "")
	}
	st := settle(t, srv)
	assert.Equal(t, int64(n), st.Events)
	assert.Equal(t, st.Deliveries, st.Delivered, "every delivery ended with a 2xx: %+v", st)
	assert.Zero(t, st.GaveUp)
	assert.Greater(t, st.Attempts, int64(n), "chaos sent more than one of some")

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, runs, n, "every event ran")
	for id, k := range runs {
		assert.Equal(t, 1, k, "event %s ran once", id)
	}
}
