package pgstore_test

import (
	"context"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/idempotency"
	"github.com/payonce/payonce/idempotency/internal/backendtest"
	"github.com/payonce/payonce/idempotency/pgstore"
	"github.com/payonce/payonce/idempotency/storetest"
	"github.com/payonce/payonce/internal/testenv"
)

// testDB is a table of its own in the test server, dropped when the test
// ends.
type testDB struct {
	cfg   *pgxpool.Config
	table string
	admin *pgxpool.Pool
}

func setup(tb testing.TB) *testDB {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(testenv.PostgresURL(tb))
	require.NoError(tb, err)
	db := &testDB{cfg: cfg, table: testenv.Name("payonce_test_")}
	db.admin = db.pool(tb, "")
	require.NoError(tb, db.store(tb, db.admin).CreateSchema(context.Background()))
	tb.Cleanup(func() {
		_, err := db.admin.Exec(context.Background(), "DROP TABLE IF EXISTS "+pgx.Identifier{db.table}.Sanitize())
		assert.NoError(tb, err)
	})
	return db
}

// addr is the server's host:port.
func (db *testDB) addr() string {
	return net.JoinHostPort(db.cfg.ConnConfig.Host, strconv.Itoa(int(db.cfg.ConnConfig.Port)))
}

// pool opens a pool of its own to the server, or through the proxy at via,
// its configuration changed by tune last.
func (db *testDB) pool(tb testing.TB, via string, tune ...func(*pgxpool.Config)) *pgxpool.Pool {
	tb.Helper()
	cfg := db.cfg.Copy()
	cfg.MaxConns = 8
	if via != "" {
		host, port, err := net.SplitHostPort(via)
		require.NoError(tb, err)
		p, err := strconv.Atoi(port)
		require.NoError(tb, err)
		cfg.ConnConfig.Host, cfg.ConnConfig.Port, cfg.ConnConfig.Fallbacks = host, uint16(p), nil
		cfg.ConnConfig.ConnectTimeout = 2 * time.Second
		// pgxpool pings a connection idle for over a second before using
		// it, so a live process notices what a cut broke. These tests do
		// not wait that long.
		cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return true }
	}
	for _, f := range tune {
		f(cfg)
	}
	pool, err := pgxpool.NewWithConfig(context.Background(), cfg)
	require.NoError(tb, err)
	tb.Cleanup(pool.Close)
	return pool
}

func (db *testDB) store(tb testing.TB, pool *pgxpool.Pool) *pgstore.Store {
	tb.Helper()
	s, err := pgstore.New(pool, pgstore.WithTable(db.table))
	require.NoError(tb, err)
	return s
}

func TestConformance(t *testing.T) {
	db := setup(t)
	s := db.store(t, db.admin)
	storetest.Run(t, func(*testing.T) idempotency.Store { return s })
}

func TestMultiInstance(t *testing.T) {
	db := setup(t)
	backendtest.MultiInstance(t, func(t *testing.T) idempotency.Store { return db.store(t, db.pool(t, "")) })
}

func TestFailClosed(t *testing.T) {
	db := setup(t)
	p := backendtest.NewProxy(t, db.addr())
	backendtest.FailClosed(t, db.store(t, db.pool(t, p.Addr())), p)
}

func TestTakeoverFromDeadOwner(t *testing.T) {
	db := setup(t)
	p := backendtest.NewProxy(t, db.addr())
	backendtest.Takeover(t, db.store(t, db.pool(t, p.Addr())), p, db.store(t, db.pool(t, "")))
}

// TestFinishAfterLostConnection: Finish runs its statement again on a fresh
// connection when its own turns out dead, even when the statement may have
// run.
func TestFinishAfterLostConnection(t *testing.T) {
	db := setup(t)
	p := backendtest.NewProxy(t, db.addr())
	pool := db.pool(t, p.Addr(), func(cfg *pgxpool.Config) {
		cfg.MaxConns = 1
		// As for a connection used less than a second ago: no ping first.
		cfg.ShouldPing = func(context.Context, pgxpool.ShouldPingParams) bool { return false }
	})
	backendtest.FinishAfterLostConnection(t, db.store(t, pool), p)
}

// TestStoreOutage: every connection reset, then black-holed, for a few
// seconds while requests are in flight, shorter than the lease; every key
// executes once.
func TestStoreOutage(t *testing.T) {
	db := setup(t)
	p := backendtest.NewProxy(t, db.addr())
	backendtest.StoreOutage(t, func(t *testing.T) idempotency.Store { return db.store(t, db.pool(t, p.Addr())) }, p)
}

// TestStoreOutageLongerThanLease: every connection reset for longer than
// the lease; the owners answer 503, and the keys execute again.
func TestStoreOutageLongerThanLease(t *testing.T) {
	db := setup(t)
	p := backendtest.NewProxy(t, db.addr())
	backendtest.StoreOutageLongerThanLease(t, func(t *testing.T) idempotency.Store { return db.store(t, db.pool(t, p.Addr())) }, p)
}

func (db *testDB) count(t *testing.T) int {
	var n int
	require.NoError(t, db.admin.QueryRow(context.Background(), "SELECT count(*) FROM "+pgx.Identifier{db.table}.Sanitize()).Scan(&n))
	return n
}

func TestDeleteExpired(t *testing.T) {
	db := setup(t)
	s := db.store(t, db.admin)
	ctx := context.Background()
	now := time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)
	claim := func(key string, lease time.Duration) idempotency.Claim {
		c := idempotency.Claim{Key: key, Fingerprint: "fp", Token: key, Now: now, Lease: lease, TTL: time.Hour}
		res, err := s.Claim(ctx, c)
		require.NoError(t, err)
		require.Equal(t, idempotency.Claimed, res.State)
		return c
	}
	for i := range 10 {
		claim("short-"+strconv.Itoa(i), time.Minute)
	}
	live := claim("long", 2*time.Hour)
	finished := claim("finished", time.Minute)
	require.NoError(t, s.Finish(ctx, finished, &idempotency.Response{StatusCode: 201}))

	n, err := s.DeleteExpired(ctx, now.Add(time.Minute-time.Millisecond), 3)
	require.NoError(t, err)
	assert.Zero(t, n, "nothing has expired yet")
	n, err = s.DeleteExpired(ctx, now.Add(time.Minute), 3)
	require.NoError(t, err)
	assert.Equal(t, 10, n, "the expired leases, in batches of 3")
	assert.Equal(t, 2, db.count(t))
	require.NoError(t, s.Renew(ctx, live), "a live claim is untouched")

	n, err = s.DeleteExpired(ctx, now.Add(time.Hour), 100)
	require.NoError(t, err)
	assert.Equal(t, 1, n, "the finished record, after its TTL")
	_, err = s.DeleteExpired(ctx, now, 0)
	assert.Error(t, err)
}

func TestRunJanitor(t *testing.T) {
	db := setup(t)
	s := db.store(t, db.admin)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	past := time.Now().Add(-time.Hour)
	for i := range 5 {
		_, err := s.Claim(ctx, idempotency.Claim{Key: strconv.Itoa(i), Fingerprint: "fp", Token: "t", Now: past, Lease: time.Minute})
		require.NoError(t, err)
	}
	done := make(chan error, 1)
	go func() { done <- s.RunJanitor(ctx, time.Millisecond, 2, func(err error) { t.Error(err) }) }()
	require.Eventually(t, func() bool { return db.count(t) == 0 }, 30*time.Second, 5*time.Millisecond)
	cancel()
	assert.ErrorIs(t, <-done, context.Canceled)

	assert.Error(t, s.RunJanitor(ctx, 0, 1, nil))
	assert.Error(t, s.RunJanitor(ctx, time.Second, 0, nil))
}

func TestNewRefusesBadOptions(t *testing.T) {
	_, err := pgstore.New(nil)
	assert.Error(t, err)
	pool, err := pgxpool.New(context.Background(), "postgres://127.0.0.1:1/none") // never dialled
	require.NoError(t, err)
	defer pool.Close()
	for _, name := range []string{"", "Upper", "1abc", "a-b", `a"b`, "a.b.c", "a.", strings.Repeat("a", 49), "a b"} {
		_, err := pgstore.New(pool, pgstore.WithTable(name))
		assert.Error(t, err, "%q", name)
	}
	for _, name := range []string{"idem", "billing.idem_keys", "_x9", strings.Repeat("a", 48)} {
		_, err := pgstore.New(pool, pgstore.WithTable(name))
		assert.NoError(t, err, "%q", name)
	}
}

func TestSchema(t *testing.T) {
	pool, err := pgxpool.New(context.Background(), "postgres://127.0.0.1:1/none") // never dialled
	require.NoError(t, err)
	defer pool.Close()
	s, err := pgstore.New(pool, pgstore.WithTable("billing.idem"))
	require.NoError(t, err)
	assert.Contains(t, s.Schema(), `CREATE TABLE IF NOT EXISTS "billing"."idem" (`)
	assert.Contains(t, s.Schema(), `CREATE INDEX IF NOT EXISTS "idem_expires_at_idx" ON "billing"."idem" (expires_at);`)
	assert.NotContains(t, s.Schema(), "{{")
	s, err = pgstore.New(pool)
	require.NoError(t, err)
	assert.Contains(t, s.Schema(), `"payonce_idempotency"`)
}

// TestCreateSchemaConcurrently starts instances together, as a deploy does:
// each creates the schema, in its own schema namespace here.
func TestCreateSchemaConcurrently(t *testing.T) {
	db := setup(t)
	ctx := context.Background()
	ns := testenv.Name("payonce_test_ns_")
	_, err := db.admin.Exec(ctx, "CREATE SCHEMA "+ns)
	require.NoError(t, err)
	t.Cleanup(func() { db.admin.Exec(ctx, "DROP SCHEMA "+ns+" CASCADE") })
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := pgstore.New(db.admin, pgstore.WithTable(ns+".idem"))
			if assert.NoError(t, err) {
				assert.NoError(t, s.CreateSchema(ctx))
			}
		}()
	}
	wg.Wait()
	s, err := pgstore.New(db.admin, pgstore.WithTable(ns+".idem"))
	require.NoError(t, err)
	res, err := s.Claim(ctx, idempotency.Claim{Key: "k", Fingerprint: "fp", Token: "t", Now: time.Now(), Lease: time.Minute})
	require.NoError(t, err)
	assert.Equal(t, idempotency.Claimed, res.State)
}

// BenchmarkClaims compares PostgreSQL with the in-memory store, in one run,
// at backendtest.Clients concurrent clients.
func BenchmarkClaims(b *testing.B) {
	db := setup(b)
	// As many connections as clients, so that the pool is not the limit.
	pool := db.pool(b, "", func(cfg *pgxpool.Config) { cfg.MaxConns = backendtest.Clients })
	backendtest.Benchmark(b, backendtest.Backend{Name: "postgres", Store: db.store(b, pool)})
}

// TestCallsEndWithTheirContext: a call gives up when its context ends, as
// the middleware's deadlines need, even while the statement waits in the
// server; and one whose context has already ended writes nothing.
func TestCallsEndWithTheirContext(t *testing.T) {
	db := setup(t)
	s := db.store(t, db.pool(t, ""))
	ctx := context.Background()
	c := idempotency.Claim{Scope: "acct", Key: "k", Fingerprint: "fp", Token: "owner", Now: time.Now(), Lease: time.Minute, TTL: time.Hour}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	res, err := s.Claim(cancelled, c)
	require.ErrorIs(t, err, context.Canceled)
	assert.NotEqual(t, idempotency.Claimed, res.State)
	res, err = s.Claim(ctx, c)
	require.NoError(t, err)
	require.Equal(t, idempotency.Claimed, res.State, "the cancelled claim left no record")

	// Another transaction holds the row, so every statement on it waits.
	tx, err := db.admin.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, "SELECT FROM "+pgx.Identifier{db.table}.Sanitize()+" WHERE scope = $1 AND key = $2 FOR UPDATE",
		[]byte(c.Scope), []byte(c.Key))
	require.NoError(t, err)
	resp := &idempotency.Response{StatusCode: http.StatusCreated, Body: []byte("ok")}
	for _, call := range []struct {
		name string
		f    func(context.Context) error
	}{
		{"renew", func(ctx context.Context) error { return s.Renew(ctx, c) }},
		{"finish", func(ctx context.Context) error { return s.Finish(ctx, c, resp) }},
	} {
		short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		start := time.Now()
		err := call.f(short)
		cancel()
		assert.Error(t, err, call.name)
		assert.Less(t, time.Since(start), 5*time.Second, "%s gave up at its deadline", call.name)
	}
	require.NoError(t, tx.Rollback(ctx))

	// The abandoned statements may still run now, and the Finish land:
	// calling Finish again is what the middleware does, and it succeeds
	// either way.
	require.NoError(t, s.Finish(ctx, c, resp))
	c.Token = "another"
	res, err = s.Claim(ctx, c)
	require.NoError(t, err)
	require.Equal(t, idempotency.Finished, res.State)
	assert.Equal(t, resp.Body, res.Response.Body)
}

// TestFinishesOfOneClaimAtOnce: a Finish that the middleware retried while
// the first call still waits in the server succeeds, whichever lands first.
func TestFinishesOfOneClaimAtOnce(t *testing.T) {
	db := setup(t)
	s := db.store(t, db.pool(t, ""))
	ctx := context.Background()
	c := idempotency.Claim{Scope: "acct", Key: "k", Fingerprint: "fp", Token: "owner", Now: time.Now(), Lease: time.Minute, TTL: time.Hour}
	res, err := s.Claim(ctx, c)
	require.NoError(t, err)
	require.Equal(t, idempotency.Claimed, res.State)

	// Both calls queue behind another transaction's lock on the row.
	tx, err := db.admin.Begin(ctx)
	require.NoError(t, err)
	defer tx.Rollback(ctx)
	_, err = tx.Exec(ctx, "SELECT FROM "+pgx.Identifier{db.table}.Sanitize()+" WHERE scope = $1 AND key = $2 FOR UPDATE",
		[]byte(c.Scope), []byte(c.Key))
	require.NoError(t, err)
	resp := &idempotency.Response{StatusCode: http.StatusCreated, Body: []byte("ok")}
	errs := make(chan error, 2)
	for range 2 {
		go func() { errs <- s.Finish(ctx, c, resp) }()
	}
	require.Eventually(t, func() bool {
		var waiting int
		require.NoError(t, db.admin.QueryRow(ctx,
			"SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND position($1 in query) > 0",
			pgx.Identifier{db.table}.Sanitize()).Scan(&waiting))
		return waiting == 2
	}, 10*time.Second, 5*time.Millisecond, "both Finish calls wait for the row")
	require.NoError(t, tx.Rollback(ctx))
	for range 2 {
		assert.NoError(t, <-errs)
	}
}
