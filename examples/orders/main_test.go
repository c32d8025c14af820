package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/internal/testenv"
	"github.com/payonce/payonce/mock"
)

// The kill test's size. Orders go on being placed past minOrders until
// every planned kill is made.
const (
	minOrders     = 400
	killsPerPoint = 10 // each crash point is hit this often: 50 kills
	// maxNth bounds the n of a start's crash spec, POINT:n, drawn from 1
	// to maxNth: each start of the service serves a few requests before
	// its kill.
	maxNth = 8
	// concurrency is how many orders are placed at once: when the service
	// is killed, the other requests in flight die at whatever moment they
	// were in, as on a real crash.
	concurrency = 6
	// maxOrders stops a run whose kills do not come, rather than let it
	// place orders for ever.
	maxOrders = 3000
	// killTestTimeout fails a run that hangs; a run takes well under a
	// minute.
	killTestTimeout = 3 * time.Minute
)

// testLease is the service's lease: short, so that the retries of a killed
// request wait little; the store timeout is a quarter of it.
const testLease = 600 * time.Millisecond

const gatewayKey = "sk_test_orders"

// TestKillTransactional kills the service at every crash point, many times
// over, with -transactional=true, and checks that no order was lost,
// placed twice or charged twice.
func TestKillTransactional(t *testing.T) {
	r := runKillTest(t, true)
	assert.Empty(t, r.placedTwice, "keys placed twice")
	assert.Zero(t, r.lost, "orders lost")
}

// TestKillControl is the control: the same kills with
// -transactional=false, where the handler commits the order before the
// middleware stores the response. A kill between the two ("handled")
// leaves an order whose response is not stored, and the retry places it
// again: the test is worth something only if this shows.
func TestKillControl(t *testing.T) {
	r := runKillTest(t, false)
	assert.NotEmpty(t, r.placedTwice, "the control should place some order twice, or the kill test tests nothing")
	assert.Positive(t, r.placedTwiceAt[pointHandled],
		"an order killed at %q, after the handler's commit and before the response is stored, should be placed twice", pointHandled)
	assert.Zero(t, r.lost, "orders lost")
}

// killResult is what a kill test found.
type killResult struct {
	placedTwice   []string       // the keys with more than one order row
	placedTwiceAt map[string]int // the kills at each point whose key has more than one row
	lost          int            // keys not answered 2xx, or without their paid row
}

// runKillTest places orders with the service while it kills it at random
// crash points, then checks the orders table and the gateway's ledger
// against the answers. The checks that hold in both modes (every order
// answered, charged once, with the charge recorded) fail the test here;
// what differs between the modes is returned.
func runKillTest(t *testing.T, transactional bool) killResult {
	pgURL := testenv.PostgresURL(t)
	seed := killSeed(t)
	ctx, cancel := context.WithTimeout(t.Context(), killTestTimeout)
	defer cancel()
	bin := buildBinaries(t)
	schema := newSchema(t, pgURL)
	pool, err := pgxpool.New(ctx, pgURL)
	require.NoError(t, err)
	t.Cleanup(pool.Close)

	// The gateway: a payonce-mock process, its idempotency records in
	// PostgreSQL too. It is never killed, so its ledger is the truth about
	// what was charged.
	gwLog := logFile(t, "payonce-mock.log")
	gw, err := startChild(filepath.Join(bin, "payonce-mock"), []string{"-addr", "127.0.0.1:0",
		"-store", pgURL, "-store-table", schema + ".gateway_idempotency", "-api-key", gatewayKey},
		"payonce-mock: listening on ", true, gwLog, nil)
	require.NoError(t, err)
	t.Cleanup(func() { gw.stop(5 * time.Second) })

	// The crash points, killsPerPoint of each, in a random order.
	rng := rand.New(rand.NewPCG(uint64(seed), 0x0de75))
	var deck []string
	for _, p := range crashPoints {
		for range killsPerPoint {
			deck = append(deck, p)
		}
	}
	rng.Shuffle(len(deck), func(i, j int) { deck[i], deck[j] = deck[j], deck[i] })
	plannedKills := int64(len(deck))
	next := func() crashSpec { // called by the supervisor's goroutine only
		if len(deck) == 0 {
			return crashSpec{}
		}
		c := crashSpec{point: deck[0], n: 1 + rng.IntN(maxNth)}
		deck = deck[1:]
		return c
	}

	svcLog := logFile(t, "orders.log")
	sup := newSupervisor(filepath.Join(bin, "orders"), []string{"-db", pgURL, "-schema", schema, "-gateway", gw.url,
		"-api-key", gatewayKey, "-transactional=" + strconv.FormatBool(transactional), "-lease", testLease.String()},
		svcLog, next)
	sctx, cancelSupervisor := context.WithCancel(ctx)
	supervised := make(chan error, 1)
	go func() { supervised <- sup.run(sctx) }()
	go func() {
		select {
		case <-gw.exited:
			cancel() // every order would fail to charge, and wait
		case <-ctx.Done():
		}
	}()
	var (
		stopOnce sync.Once
		supErr   error
	)
	stopSupervisor := func() error {
		stopOnce.Do(func() {
			cancelSupervisor()
			supErr = <-supervised
		})
		return supErr
	}
	t.Cleanup(func() { stopSupervisor() }) // if the test fails before it stops it

	start := time.Now()
	d := newDriver(sup.URL, concurrency)
	type outcome struct {
		key    string
		amount int64
		placed
		err error
	}
	var (
		mu       sync.Mutex
		outcomes []outcome
	)
	work := make(chan int)
	go func() {
		defer close(work)
		for i := 0; i < maxOrders && (i < minOrders || sup.kills.Load() < plannedKills); i++ {
			select {
			case work <- i:
			case <-ctx.Done():
				return
			}
		}
	}()
	var wg sync.WaitGroup
	for range concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				// Every amount is distinct, so that the ledger shows each
				// order's charges whatever their descriptions and keys.
				o := outcome{key: fmt.Sprintf("order-%04d", i), amount: 1000 + int64(i)}
				o.placed, o.err = d.place(ctx, o.key, o.amount)
				mu.Lock()
				outcomes = append(outcomes, o)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	require.NoError(t, stopSupervisor(), "the service")
	kills := sup.Kills()

	select {
	case <-gw.exited:
		t.Fatalf("the gateway died: %v", gw.err)
	default:
	}
	rows, err := readOrders(ctx, pool, schema)
	require.NoError(t, err)
	ledger := gatewayCharges(t, ctx, gw.url)
	stats := gatewayStats(t, ctx, gw.url)

	// The checks.
	var r killResult
	r.placedTwiceAt = make(map[string]int)
	charges := chargesByDescription(ledger)
	var extraRows, unpaid, attempts, connErrors, conflicts, unavailable, replayed int
	for _, o := range outcomes {
		attempts += o.attempts
		connErrors += o.connErrors
		conflicts += o.conflicts
		unavailable += o.unavailable
		if o.replayed {
			replayed++
		}
		rs := rows[o.key]
		if len(rs) > 1 {
			r.placedTwice = append(r.placedTwice, o.key)
			extraRows += len(rs) - 1
		}
		answered := o.err == nil && o.status == http.StatusCreated
		if !answered {
			t.Errorf("%s: not placed: status %d after %d attempts, %v", o.key, o.status, o.attempts, o.err)
		}
		var row *orderRow
		for i := range rs {
			if rs[i].id == o.order.ID {
				row = &rs[i]
			}
			if rs[i].status != statusPaid {
				unpaid++
				t.Errorf("%s: order %s is %s", o.key, rs[i].id, rs[i].status)
			}
		}
		if !answered || row == nil || row.status != statusPaid {
			r.lost++
			if answered {
				t.Errorf("%s: answered with order %s, which the table has not paid: %+v", o.key, o.order.ID, rs)
			}
			continue
		}
		// Exactly one charge, for this order, and recorded as the order's.
		cs := charges["order "+o.key]
		if !assert.Len(t, cs, 1, "%s: charges at the gateway", o.key) {
			continue
		}
		ch := cs[0]
		assert.Equal(t, o.amount, ch.Amount, "%s: the charge's amount", o.key)
		assert.Equal(t, row.chargeKey, ch.IdempotencyKey, "%s: the charge's key", o.key)
		assert.Equal(t, ch.ID, o.order.ChargeID, "%s: the charge id answered", o.key)
		for _, rr := range rs {
			assert.Equal(t, ch.ID, rr.chargeID, "%s: the charge id of order %s", o.key, rr.id)
		}
	}
	assert.Len(t, ledger, len(outcomes), "charges at the gateway, one per order")
	perAmount := make(map[int64]int)
	for _, ch := range ledger {
		if perAmount[ch.Amount]++; perAmount[ch.Amount] == 2 {
			t.Errorf("two charges of %d, the amount of one order, whatever their descriptions", ch.Amount)
		}
	}
	assert.Len(t, rows, len(outcomes), "keys in the orders table")
	perPoint := make(map[string]int)
	for _, k := range kills {
		perPoint[k.point]++
		if len(rows[k.key]) > 1 {
			r.placedTwiceAt[k.point]++
		}
	}

	// The figures, for the record.
	var b strings.Builder
	fmt.Fprintf(&b, "transactional=%t, seed %d: %d orders, %d kills, in %v (lease %v, %d orders at a time)\n",
		transactional, seed, len(outcomes), len(kills), elapsed.Round(100*time.Millisecond), testLease, concurrency)
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "crash point\tkills\tkills whose key was placed twice\t")
	for _, p := range crashPoints {
		fmt.Fprintf(tw, "%s\t%d\t%d\t\n", p, perPoint[p], r.placedTwiceAt[p])
	}
	tw.Flush()
	fmt.Fprintf(&b, "orders placed twice: %d (%d extra rows); lost: %d; unpaid rows: %d\n", len(r.placedTwice), extraRows, r.lost, unpaid)
	fmt.Fprintf(&b, "gateway: %d charges for %d orders; %d executed, %d replayed\n",
		len(ledger), len(outcomes), stats.Executed, stats.Replayed)
	fmt.Fprintf(&b, "driver: %d attempts: %d connection errors, %d 409, %d 503; %d final answers replayed\n",
		attempts, connErrors, conflicts, unavailable, replayed)
	fmt.Fprintf(&b, "service: %s", notPlaced(t, svcLog.Name()))
	t.Logf("the kill test:\n%s", b.String())

	assert.GreaterOrEqual(t, len(outcomes), minOrders, "orders")
	assert.EqualValues(t, plannedKills, len(kills), "kills")
	for _, p := range crashPoints {
		assert.Equal(t, killsPerPoint, perPoint[p], "kills at %s", p)
	}
	return r
}

// notPlaced sums up the service's log lines about orders it answered 503,
// by the step that failed.
func notPlaced(t *testing.T, logPath string) string {
	t.Helper()
	data, err := os.ReadFile(logPath)
	require.NoError(t, err)
	steps := make(map[string]int)
	total := 0
	for line := range strings.Lines(string(data)) {
		if !strings.Contains(line, `msg="order not placed"`) {
			continue
		}
		total++
		step := "?"
		if m := logStep.FindStringSubmatch(line); m != nil {
			step = strings.Trim(m[1], `"`)
		}
		steps[step]++
	}
	if total == 0 {
		return "no order answered 503"
	}
	var parts []string
	for _, step := range slices.Sorted(maps.Keys(steps)) {
		parts = append(parts, fmt.Sprintf("%d at %q", steps[step], step))
	}
	return fmt.Sprintf("%d orders answered 503, and retried: %s", total, strings.Join(parts, ", "))
}

// logStep finds the step in a line that the service logs with slog.
var logStep = regexp.MustCompile(`step=("[^"]*"|\S+)`)

// killSeed returns the seed of the crash points: $ORDERS_KILL_SEED, to
// rerun a run, or else a new one.
func killSeed(t *testing.T) int64 {
	t.Helper()
	if s := os.Getenv("ORDERS_KILL_SEED"); s != "" {
		seed, err := strconv.ParseInt(s, 10, 64)
		require.NoError(t, err, "ORDERS_KILL_SEED")
		return seed
	}
	seed := time.Now().UnixNano()
	t.Logf("seed %d (ORDERS_KILL_SEED=%d reruns these crash points)", seed, seed)
	return seed
}

// buildBinaries builds the orders service and payonce-mock into a
// temporary directory, and returns it.
func buildBinaries(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	cmd := exec.CommandContext(t.Context(), "go", "build", "-o", dir+string(filepath.Separator),
		".", "github.com/payonce/payonce/cmd/payonce-mock")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "go build:\n%s", out)
	return dir
}

// newSchema creates a PostgreSQL schema for one test's tables, dropped
// when it ends, and returns its name.
func newSchema(t *testing.T, pgURL string) string {
	t.Helper()
	schema := testenv.Name("orders_")
	conn, err := pgx.Connect(t.Context(), pgURL)
	require.NoError(t, err)
	defer conn.Close(context.Background())
	_, err = conn.Exec(t.Context(), `CREATE SCHEMA `+pgx.Identifier{schema}.Sanitize())
	require.NoError(t, err)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		conn, err := pgx.Connect(ctx, pgURL)
		if err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, `DROP SCHEMA `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); err != nil {
			t.Errorf("drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// logFile creates a file for a child's output, in the test's temporary
// directory. If the test fails, its last lines go to the test's log.
func logFile(t *testing.T, name string) *os.File {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), name))
	require.NoError(t, err)
	t.Cleanup(func() {
		f.Close()
		if !t.Failed() {
			return
		}
		data, err := os.ReadFile(f.Name())
		if err != nil {
			t.Log(err)
			return
		}
		lines := strings.SplitAfter(strings.TrimSuffix(string(data), "\n"), "\n")
		lines = lines[max(0, len(lines)-logTailLines):]
		t.Logf("the last %d lines of %s:\n%s", len(lines), name, strings.Join(lines, ""))
	})
	return f
}

// logTailLines is how many lines of each child's log a failed test shows.
const logTailLines = 40

// gatewayCharges returns the gateway's ledger (GET /_mock/charges).
func gatewayCharges(t *testing.T, ctx context.Context, url string) []mock.LedgerCharge {
	t.Helper()
	var ledger struct {
		Data []mock.LedgerCharge `json:"data"`
	}
	getJSON(t, ctx, url+"/_mock/charges", &ledger)
	return ledger.Data
}

// gatewayStats returns the gateway's counters (GET /_mock/stats).
func gatewayStats(t *testing.T, ctx context.Context, url string) mock.Stats {
	t.Helper()
	var stats mock.Stats
	getJSON(t, ctx, url+"/_mock/stats", &stats)
	return stats
}

func getJSON(t *testing.T, ctx context.Context, url string, v any) {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	require.NoError(t, err)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode, "GET %s", url)
	require.NoError(t, json.NewDecoder(res.Body).Decode(v), "GET %s", url)
}

// TestDemo runs the demo against the test's PostgreSQL.
func TestDemo(t *testing.T) {
	pgURL := testenv.PostgresURL(t)
	bin := filepath.Join(buildBinaries(t), "orders")
	var out bytes.Buffer
	err := demo(t.Context(), demoConfig{db: pgURL, lease: testLease, bin: bin}, &out)
	t.Logf("output:\n%s", out.String())
	require.NoError(t, err)
	assert.Equal(t, 1, strings.Count(out.String(), "<- placed twice"), "the control's killed order, only")
	assert.Contains(t, out.String(), "control-order-2 2 row(s)")

	t.Run("a service that cannot start", func(t *testing.T) {
		// An uppercase schema name, which pgstore refuses.
		sup := newSupervisor(bin, []string{"-db", pgURL, "-schema", "Orders", "-gateway", "http://127.0.0.1:1"},
			io.Discard, func() crashSpec { return crashSpec{} })
		err := sup.run(t.Context())
		assert.ErrorContains(t, err, "exited before it listened")
		assert.ErrorContains(t, err, "invalid table name", "the service's last words")
		_, err = newDriver(sup.URL, 1).place(t.Context(), "order-1", 1000)
		assert.ErrorIs(t, err, errNotRunning, "the driver gives up")
	})
}
