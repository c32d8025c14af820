package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStripe(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), &out), out.String())
	s := out.String()
	payonceSide, aloneSide, ok := strings.Cut(s, "stripe-go alone (its own client")
	require.True(t, ok, s)

	// Through payonce: one charge per order, none twice.
	assert.Contains(t, payonceSide, "order 1 (drop_after ×3): charged ch_")
	assert.Contains(t, payonceSide, "after 4 attempt(s), replayed [4 requests at the gateway]")
	assert.Contains(t, payonceSide, "order 2 (fail_before 503): charged ch_")
	assert.Contains(t, payonceSide, "order 3 (fail_after 500): charged ch_")
	assert.Regexp(t, `order 4 \(in-flight 409\): first click charged (ch_\w+) after 1 attempt\(s\); `+
		`second click charged (ch_\w+) after \d+ attempt\(s\), replayed`, payonceSide)
	assert.NotContains(t, payonceSide, "failed")
	assert.Contains(t, payonceSide, "gateway: 4 charges for 4 orders, 0 suspected duplicates")

	// stripe-go alone gives up on every fault, and calling again charges twice
	// where the first call had executed.
	assert.Contains(t, aloneSide, "order 1 (drop_after ×3): stripe-go gave up: network error: EOF; called again: charged")
	assert.Contains(t, aloneSide, "order 2 (fail_before 503): stripe-go gave up: *stripe.Error 503")
	assert.Contains(t, aloneSide, "order 3 (fail_after 500): stripe-go gave up: *stripe.Error 500")
	assert.Contains(t, aloneSide, "second click stripe-go gave up: *stripe.Error 409 idempotency_key_in_use")
	assert.Contains(t, aloneSide, "gateway: 6 charges for 4 orders, 2 suspected duplicates")
	assert.Contains(t, s, "through payonce: 4 charges for 4 orders, 0 suspected duplicates; stripe-go alone: 6 charges, 2 suspected duplicates")
}
