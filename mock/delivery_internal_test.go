package mock

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A reset cancels the old world's deliveries at once: its scheduler and
// attempts return on that context, and nothing new starts there.
func TestResetStopsDeliveries(t *testing.T) {
	g, err := New()
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	old := g.world.Load()
	assert.NoError(t, old.hooks.dl.ctx.Err())
	g.Reset()
	assert.ErrorIs(t, old.hooks.dl.ctx.Err(), context.Canceled)
	old.hooks.dl.mu.Lock()
	old.hooks.dl.startLocked(old)
	started := old.hooks.dl.started
	old.hooks.dl.mu.Unlock()
	assert.False(t, started, "a stopped world starts no scheduler")
	assert.NoError(t, g.world.Load().hooks.dl.ctx.Err())
}

// The delivery client keeps as many idle connections per host as attempts
// may be in flight, so that a burst to one endpoint reuses them.
func TestDeliveryClientIdleConnsFollowConcurrency(t *testing.T) {
	for _, n := range []int{1, DefaultDeliveryConcurrency, 100} {
		g, err := New(WithDeliveryPolicy(DeliveryPolicy{Concurrency: n}))
		require.NoError(t, err)
		w := g.world.Load()
		d := &w.hooks.dl
		d.mu.Lock()
		d.startLocked(w)
		tr, ok := d.client.Transport.(*http.Transport)
		d.mu.Unlock()
		require.True(t, ok)
		assert.Equal(t, n, tr.MaxIdleConnsPerHost)
		g.Close()
	}
}
