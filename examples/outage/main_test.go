package main

import (
	"bytes"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce"
)

// smallConfig is a fleet small and slow enough for the race detector on a
// busy two-core machine, yet with enough payments in the outage (20 clients
// × 3 per second × 8 s) for every client to drain its budget: a client
// wants 72 retries there, its budget allows 20.
func smallConfig() config {
	return config{
		clients: 20,
		rate:    3,
		before:  time.Second,
		outage:  8 * time.Second,
		after:   time.Second,
		late:    4 * time.Second,
		scale:   200 * time.Millisecond,
		seed:    7,
	}
}

func TestSimulation(t *testing.T) {
	cfg := smallConfig()
	cfg.svgPath = filepath.Join(t.TempDir(), "outage.svg")
	var out bytes.Buffer
	res, err := run(t.Context(), cfg, &out)
	t.Logf("output:\n%s", out.String())
	require.NoError(t, err)
	require.Len(t, res.rows, 4)
	names := []string{"no retries", "backoff, no jitter", "full jitter", "full jitter + budget (default)"}
	for i, r := range res.rows {
		assert.Equal(t, names[i], r.name)
		assert.Contains(t, out.String(), r.name)
	}
	assert.Contains(t, out.String(), "ledger check, every row: no duplicates")
	checkRows(t, res)

	noRetries, fullJitter, budget := res.rows[0], res.rows[2], res.rows[3]
	assert.Less(t, budget.outageCalls, fullJitter.outageCalls,
		"the budget stops the retries that full jitter alone keeps sending into the outage")
	assert.Less(t, noRetries.outageCalls, budget.outageCalls, "the budget still allows a first burst of retries")
	// Nothing refills a budget during the outage, so each client retries
	// at most capacity/cost times in it, whatever its traffic. The slack
	// is for calls that straddle the outage's edges.
	burst := int64(cfg.clients * payonce.DefaultBudgetCapacity / payonce.DefaultBudgetRetryCost)
	assert.LessOrEqual(t, budget.outageCalls-noRetries.outageCalls, burst+int64(cfg.clients),
		"at most %d retries per client during the outage", burst/int64(cfg.clients))

	t.Run("svg", func(t *testing.T) {
		data, err := os.ReadFile(cfg.svgPath)
		require.NoError(t, err)
		polylines := checkSVG(t, data)
		assert.Equal(t, 4, polylines, "one line per strategy")
	})
}

// TestDrop runs the outage as dropped connections, which the client can
// never tell from a charge that executed and lost its answer.
func TestDrop(t *testing.T) {
	cfg := smallConfig()
	cfg.clients, cfg.outage = 10, 6*time.Second
	cfg.drop = true
	res, err := simulate(t.Context(), cfg)
	require.NoError(t, err)
	checkRows(t, res)
	noRetries, fullJitter, budget := res.rows[0], res.rows[2], res.rows[3]
	assert.Less(t, budget.outageCalls, fullJitter.outageCalls)
	// A retry after a transport failure costs more: half the retries.
	burst := int64(cfg.clients * payonce.DefaultBudgetCapacity / payonce.DefaultBudgetTimeoutCost)
	assert.LessOrEqual(t, budget.outageCalls-noRetries.outageCalls, burst+int64(cfg.clients))
}

// checkRows asserts what must hold in every row of any run.
func checkRows(t *testing.T, res *results) {
	t.Helper()
	for _, r := range res.rows {
		assert.Zero(t, r.duplicates, "%s: duplicates", r.name)
		assert.Zero(t, r.lost, "%s: lost charges", r.name)
		assert.Zero(t, r.strays, "%s: charges under unknown keys", r.name)
		assert.Positive(t, r.payments, r.name)
		assert.Positive(t, r.outageCalls, r.name)
		assert.Positive(t, r.unknown, "%s: the outage leaves payments unknown", r.name)
		// The outage executes nothing, so the payments that failed were
		// not charged, and every unknown one is charged once by settling.
		assert.Equal(t, r.payments, r.charged+r.failed+r.unknown, "%s: every payment is counted once", r.name)
		assert.Equal(t, r.unknown, r.settledLater, "%s: every unknown payment settles with its key", r.name)
		assert.Zero(t, r.failed, "%s: only 503s or drops: no failure is definite", r.name)
	}
	base := res.rows[0]
	assert.Equal(t, int64(base.payments), base.totalCalls, "without retries, one call per payment")
	assert.Equal(t, int64(base.payments-base.charged), base.outageCalls,
		"without retries, the calls in the outage are the payments that arrived during it")
}

// checkSVG parses the chart as XML and returns its number of polylines.
func checkSVG(t *testing.T, data []byte) int {
	t.Helper()
	dec := xml.NewDecoder(bytes.NewReader(data))
	var root string
	polylines := 0
	for {
		tok, err := dec.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		require.NoError(t, err, "the SVG is well-formed XML")
		se, ok := tok.(xml.StartElement)
		if !ok {
			continue
		}
		if root == "" {
			root = se.Name.Local
			assert.Equal(t, "http://www.w3.org/2000/svg", se.Name.Space)
		}
		if se.Name.Local == "polyline" {
			polylines++
			for _, a := range se.Attr {
				if a.Name.Local == "points" {
					assert.NotEmpty(t, strings.TrimSpace(a.Value), "a line has points")
				}
			}
		}
	}
	assert.Equal(t, "svg", root)
	return polylines
}

func TestFlags(t *testing.T) {
	cfg, err := parseFlags(nil, io.Discard)
	require.NoError(t, err)
	assert.Equal(t, 100, cfg.clients)
	assert.Equal(t, 2.0, cfg.rate)
	assert.Equal(t, 30*time.Second, cfg.outage)
	assert.Equal(t, 10*time.Second, cfg.late)
	assert.False(t, cfg.drop)

	for _, args := range [][]string{
		{"-clients", "0"},
		{"-clients", "10001"},
		{"-rate", "0"},
		{"-rate", "-1"},
		{"-rate", "NaN"},
		{"-rate", "+Inf"},
		{"-outage", "0s"},
		{"-before", "-1s"},
		{"-after", "-1s"},
		{"-late", "-1s"},
		{"-scale", "10us"},
		{"-scale", "11s"},
		{"-clients", "10000", "-rate", "1000"},
		{"-outage", "thirty"},
		{"-nosuchflag"},
		{"extra"},
	} {
		var stderr bytes.Buffer
		code := realMain(t.Context(), args, io.Discard, &stderr)
		assert.Equal(t, exitUsage, code, "%q", args)
		assert.NotEmpty(t, stderr.String(), "%q says why", args)
	}
	assert.Equal(t, 0, realMain(t.Context(), []string{"-h"}, io.Discard, io.Discard))
}

func TestNoJitter(t *testing.T) {
	lo, hi := 250*time.Millisecond, 5*time.Second
	var got []time.Duration
	for n := range 7 {
		got = append(got, noJitter(n, lo, hi))
	}
	assert.Equal(t, []time.Duration{250 * time.Millisecond, 500 * time.Millisecond, time.Second,
		2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}, got)
}

func TestSchedule(t *testing.T) {
	cfg := smallConfig()
	a, b := schedule(&cfg), schedule(&cfg)
	assert.Equal(t, a, b, "the same seed gives the same customers")
	// A Poisson stream: about rate × clients × timeline arrivals.
	want := cfg.rate * float64(cfg.clients) * cfg.timeline().Seconds()
	assert.InDelta(t, want, float64(len(a)), want/5)
	for i := 1; i < len(a); i++ {
		require.LessOrEqual(t, a[i-1].at, a[i].at, "sorted by time")
	}
	cfg.seed++
	assert.NotEqual(t, a, schedule(&cfg), "another seed, other customers")
}
