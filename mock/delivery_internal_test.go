package mock

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
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
