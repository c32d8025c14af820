package main

import (
	"bytes"
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestQuickstart(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(context.Background(), &out), out.String())
	s := out.String()
	assert.Contains(t, s, "attempt 1 failed: connection closed (EOF); retrying in")
	assert.Contains(t, s, "attempt 2 failed: server error (503); retrying in")
	assert.Contains(t, s, "attempt 3 succeeded: the gateway replayed the stored result")
	assert.Contains(t, s, "the gateway holds 1 charge(s) for this invoice")
}
