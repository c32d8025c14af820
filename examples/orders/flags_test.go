package main

import (
	"io"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestParseCrashSpec(t *testing.T) {
	for _, s := range []string{"", "claimed:1", "inserted:3", "charged:20", "handled:1", "stored:7"} {
		c, err := parseCrashSpec(s)
		require.NoError(t, err, s)
		assert.Equal(t, s, c.String())
	}
	for _, s := range []string{"claimed", "claimed:", "claimed:0", "claimed:-1", "claimed:x", "committed:1", ":1"} {
		_, err := parseCrashSpec(s)
		assert.Error(t, err, s)
	}
}

func TestParseCrashLine(t *testing.T) {
	point, key, ok := parseCrashLine(crashMarker + "handled reached by order-0042")
	require.True(t, ok)
	assert.Equal(t, "handled", point)
	assert.Equal(t, "order-0042", key)
	_, _, ok = parseCrashLine(listeningMarker + "http://127.0.0.1:1")
	assert.False(t, ok)
}

func TestParseServeFlags(t *testing.T) {
	cfg, err := parseServeFlags([]string{"-db", "postgres://x", "-gateway", "http://127.0.0.1:1",
		"-transactional=false", "-lease", "600ms", "-crash", "handled:2"}, io.Discard)
	require.NoError(t, err)
	assert.False(t, cfg.transactional)
	assert.Equal(t, crashSpec{point: pointHandled, n: 2}, cfg.crash)
	assert.Equal(t, "600ms", cfg.lease.String())

	for _, args := range [][]string{
		{"-db", "postgres://x"},                                         // no gateway
		{"-db", "postgres://x", "-gateway", "g", "-lease", "0s"},        // no lease
		{"-db", "postgres://x", "-gateway", "g", "-crash", "nowhere:1"}, // no such point
		{"-db", "postgres://x", "-gateway", "g", "extra"},               // an argument
	} {
		_, err := parseServeFlags(args, io.Discard)
		assert.Error(t, err, "%q", args)
	}
}

func TestUsage(t *testing.T) {
	assert.Equal(t, exitUsage, realMain(t.Context(), []string{"serve", "-nonsense"}, io.Discard, io.Discard))
	assert.Equal(t, exitUsage, realMain(t.Context(), []string{"-nonsense"}, io.Discard, io.Discard))
	assert.Equal(t, 0, realMain(t.Context(), []string{"-h"}, io.Discard, io.Discard))
	assert.Equal(t, 0, realMain(t.Context(), []string{"serve", "-h"}, io.Discard, io.Discard))
}
