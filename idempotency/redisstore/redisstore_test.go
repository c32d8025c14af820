package redisstore_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/idempotency"
	"github.com/payonce/payonce/idempotency/internal/backendtest"
	"github.com/payonce/payonce/idempotency/redisstore"
	"github.com/payonce/payonce/idempotency/storetest"
	"github.com/payonce/payonce/internal/testenv"
)

// testDB is a key prefix of its own in the test server, whose keys are
// deleted when the test ends.
type testDB struct {
	opts   *redis.Options
	prefix string
	admin  *redis.Client
}

func setup(tb testing.TB) *testDB {
	tb.Helper()
	opts, err := redis.ParseURL(testenv.RedisURL(tb))
	require.NoError(tb, err)
	db := &testDB{opts: opts, prefix: testenv.Name("payonce:test:") + ":"}
	db.admin = db.client(tb, "")
	tb.Cleanup(func() {
		ctx := context.Background()
		iter := db.admin.Scan(ctx, 0, db.prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			db.admin.Del(ctx, iter.Val())
		}
		assert.NoError(tb, iter.Err())
	})
	return db
}

// client opens a client of its own to the server, or through the proxy at
// via.
func (db *testDB) client(tb testing.TB, via string) *redis.Client {
	tb.Helper()
	opts := *db.opts
	if via != "" {
		opts.Addr = via
		opts.MaxRetries = 1
		opts.DialTimeout = 2 * time.Second
	}
	c := redis.NewClient(&opts)
	tb.Cleanup(func() { c.Close() })
	return c
}

func (db *testDB) store(tb testing.TB, c redis.UniversalClient) *redisstore.Store {
	tb.Helper()
	s, err := redisstore.New(c, redisstore.WithPrefix(db.prefix))
	require.NoError(tb, err)
	return s
}

func TestConformance(t *testing.T) {
	db := setup(t)
	s := db.store(t, db.admin)
	storetest.Run(t, func(*testing.T) idempotency.Store { return s })
}

// TestNoTransactions: the store says plainly that it offers no
// transaction for the handler's writes.
func TestNoTransactions(t *testing.T) {
	db := setup(t)
	var s idempotency.Store = db.store(t, db.admin)
	_, ok := s.(idempotency.TxStore)
	assert.False(t, ok, "a Redis store is not a TxStore")

	mw, err := idempotency.New(s, idempotency.WithoutScope())
	require.NoError(t, err)
	var txErr error
	h := mw.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, txErr = idempotency.Transaction(r.Context())
	}))
	r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(`{}`))
	r.Header.Set("Idempotency-Key", "k-"+db.prefix)
	h.ServeHTTP(httptest.NewRecorder(), r)
	assert.ErrorIs(t, txErr, idempotency.ErrNoTransaction)
	assert.ErrorContains(t, txErr, "*redisstore.Store, does not offer transactions")
}

func TestMultiInstance(t *testing.T) {
	db := setup(t)
	backendtest.MultiInstance(t, func(t *testing.T) idempotency.Store { return db.store(t, db.client(t, "")) })
}

func TestFailClosed(t *testing.T) {
	db := setup(t)
	p := backendtest.NewProxy(t, db.opts.Addr)
	backendtest.FailClosed(t, db.store(t, db.client(t, p.Addr())), p)
}

func TestTakeoverFromDeadOwner(t *testing.T) {
	db := setup(t)
	p := backendtest.NewProxy(t, db.opts.Addr)
	backendtest.Takeover(t, db.store(t, db.client(t, p.Addr())), p, db.store(t, db.client(t, "")))
}

// TestFinishAfterLostConnection: go-redis sends Finish again when its
// connection dies, and the script tells an earlier attempt of its own that
// landed from a second Finish.
func TestFinishAfterLostConnection(t *testing.T) {
	db := setup(t)
	p := backendtest.NewProxy(t, db.opts.Addr)
	opts := *db.opts
	opts.Addr = p.Addr()
	opts.PoolSize = 1
	opts.DialTimeout = 2 * time.Second // MaxRetries stays go-redis's default
	c := redis.NewClient(&opts)
	t.Cleanup(func() { c.Close() })
	backendtest.FinishAfterLostConnection(t, db.store(t, c), p)
}

// TestClaimAfterLostReply: the claim script ran, but its reply was lost with
// the connection, and go-redis sent it again. The second run must see its
// own claim and answer Claimed, not "in flight": otherwise nobody would
// execute the key until its lease ran out.
func TestClaimAfterLostReply(t *testing.T) {
	db := setup(t)
	p := backendtest.NewProxy(t, db.opts.Addr)
	opts := *db.opts
	opts.Addr = p.Addr()
	opts.PoolSize = 1
	opts.DialTimeout = 2 * time.Second // MaxRetries stays go-redis's default
	c := redis.NewClient(&opts)
	t.Cleanup(func() { c.Close() })
	s := db.store(t, c)
	ctx := context.Background()
	claim := func(key, token string) idempotency.Claim {
		return idempotency.Claim{Scope: "acct", Key: key, Fingerprint: "fp", Token: token,
			Now: time.Now(), Lease: time.Minute, TTL: time.Hour}
	}
	warm := claim(testenv.Name("warm-"), "w")
	_, err := s.Claim(ctx, warm) // loads the script on the one pooled connection
	require.NoError(t, err)

	c1 := claim(testenv.Name("lost-"), "t1")
	p.LoseNextReply()
	res, err := s.Claim(ctx, c1)
	require.NoError(t, err)
	assert.Equal(t, idempotency.Claimed.String(), res.State.String(), "the resent claim is the same claim")

	c2 := c1
	c2.Token = "t2"
	res, err = s.Claim(ctx, c2)
	require.NoError(t, err)
	assert.Equal(t, idempotency.InFlight.String(), res.State.String(), "another token still finds it in flight")
	require.NoError(t, s.Finish(ctx, c1, &idempotency.Response{StatusCode: 201, Header: http.Header{}, Body: []byte("ok")}))
}

// TestStoreOutage: every connection reset, then black-holed, for a few
// seconds while requests are in flight, shorter than the lease; every key
// executes once.
func TestStoreOutage(t *testing.T) {
	db := setup(t)
	p := backendtest.NewProxy(t, db.opts.Addr)
	backendtest.StoreOutage(t, db.outageStore(p), p)
}

// TestStoreOutageLongerThanLease: every connection reset for longer than
// the lease; the owners answer 503, and the keys execute again.
func TestStoreOutageLongerThanLease(t *testing.T) {
	db := setup(t)
	p := backendtest.NewProxy(t, db.opts.Addr)
	backendtest.StoreOutageLongerThanLease(t, db.outageStore(p), p)
}

// outageStore returns a function that makes stores through p, each with a
// client of its own that applies the middleware's deadlines to its socket
// (ContextTimeoutEnabled, with ReadTimeout and WriteTimeout left at their
// default, longer than the deadlines, so that in a black hole the
// middleware's deadline is what ends a call), and gives up on a reset
// connection after one retry.
func (db *testDB) outageStore(p *backendtest.Proxy) func(t *testing.T) idempotency.Store {
	return func(t *testing.T) idempotency.Store {
		opts := *db.opts
		opts.Addr = p.Addr()
		opts.ContextTimeoutEnabled = true
		opts.DialTimeout = 500 * time.Millisecond
		opts.MaxRetries = 1
		c := redis.NewClient(&opts)
		t.Cleanup(func() { c.Close() })
		return db.store(t, c)
	}
}

// TestRedisExpiresRecords: Redis's own TTL removes a record, a margin after
// it expires by the middleware's clock, and never before.
func TestRedisExpiresRecords(t *testing.T) {
	db := setup(t)
	ctx := context.Background()
	s, err := redisstore.New(db.admin, redisstore.WithPrefix(db.prefix), redisstore.WithExpiryMargin(time.Second))
	require.NoError(t, err)
	c := idempotency.Claim{Scope: "acct", Key: "k", Fingerprint: "fp", Token: "t", Now: time.Now(), Lease: time.Minute, TTL: time.Hour}
	_, err = s.Claim(ctx, c)
	require.NoError(t, err)
	keys, err := db.admin.Keys(ctx, db.prefix+"*").Result()
	require.NoError(t, err)
	require.Len(t, keys, 1)
	assertTTL := func(want time.Duration) {
		t.Helper()
		ttl, err := db.admin.PTTL(ctx, keys[0]).Result()
		require.NoError(t, err)
		assert.InDelta(t, want.Milliseconds(), ttl.Milliseconds(), 5000, "TTL %v", ttl)
		assert.LessOrEqual(t, ttl, want)
	}
	assertTTL(time.Minute + time.Second)
	require.NoError(t, s.Finish(ctx, c, &idempotency.Response{StatusCode: 201}))
	assertTTL(time.Hour + time.Second)
	require.NoError(t, db.admin.PExpire(ctx, keys[0], time.Millisecond).Err())
	require.Eventually(t, func() bool { return db.admin.Exists(ctx, keys[0]).Val() == 0 }, 10*time.Second, time.Millisecond)
	res, err := s.Claim(ctx, c)
	require.NoError(t, err)
	assert.Equal(t, idempotency.Claimed, res.State, "a record Redis dropped is gone")
}

// TestKeysKeepScopeAndKeyApart: a brace or a separator in a scope or key
// can neither break the hash tag nor make two records share a key.
func TestKeysKeepScopeAndKeyApart(t *testing.T) {
	db := setup(t)
	ctx := context.Background()
	s := db.store(t, db.admin)
	pairs := [][2]string{{"a}", "{b"}, {"a", "}{b"}, {"a}{", "b"}, {"1:a", "b"}, {"1", ":ab"}, {"", "1:ab"}, {"a\x00", "b"}}
	for i, p := range pairs {
		res, err := s.Claim(ctx, idempotency.Claim{Scope: p[0], Key: p[1], Fingerprint: "fp" + string(rune('0'+i)), Token: "t", Now: time.Now(), Lease: time.Minute})
		require.NoError(t, err)
		assert.Equal(t, idempotency.Claimed, res.State, "%q", p)
	}
	keys, err := db.admin.Keys(ctx, db.prefix+"*").Result()
	require.NoError(t, err)
	require.Len(t, keys, len(pairs))
	for _, k := range keys {
		rest := strings.TrimPrefix(k, db.prefix)
		require.True(t, strings.HasPrefix(rest, "{"), k)
		tag := rest[1:strings.IndexByte(rest, '}')]
		assert.Regexp(t, `^[0-9a-f]{16}$`, tag, "the hash tag of %q", k)
	}
}

func TestNewRefusesBadOptions(t *testing.T) {
	_, err := redisstore.New(nil)
	assert.Error(t, err)
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialled
	defer c.Close()
	_, err = redisstore.New(c, redisstore.WithPrefix("a{b"))
	assert.Error(t, err)
	_, err = redisstore.New(c, redisstore.WithPrefix("a}"))
	assert.Error(t, err)
	_, err = redisstore.New(c, redisstore.WithExpiryMargin(-time.Second))
	assert.Error(t, err)
	_, err = redisstore.New(c, redisstore.WithPrefix(""), redisstore.WithExpiryMargin(0))
	assert.NoError(t, err)
}

// BenchmarkClaims compares Redis with the in-memory store, in one run, at
// backendtest.Clients concurrent clients.
func BenchmarkClaims(b *testing.B) {
	db := setup(b)
	backendtest.Benchmark(b, backendtest.Backend{Name: "redis", Store: db.store(b, db.client(b, ""))})
}

// TestCallsEndWithTheirContext: a call gives up when its context ends, as
// the middleware's deadlines need, even while the server does not answer,
// whether or not the client sets ContextTimeoutEnabled; and one whose
// context has already ended writes nothing.
func TestCallsEndWithTheirContext(t *testing.T) {
	for _, enabled := range []bool{true, false} {
		t.Run(fmt.Sprintf("ContextTimeoutEnabled=%v", enabled), func(t *testing.T) {
			db := setup(t)
			p := backendtest.NewProxy(t, db.opts.Addr)
			opts := *db.opts
			opts.Addr = p.Addr()
			opts.ContextTimeoutEnabled = enabled
			opts.ReadTimeout = 10 * time.Second // far past the deadlines below
			c := redis.NewClient(&opts)
			t.Cleanup(func() { c.Close() })
			s := db.store(t, c)
			ctx := context.Background()
			claim := idempotency.Claim{Scope: "acct", Key: "k", Fingerprint: "fp", Token: "owner", Now: time.Now(), Lease: time.Minute, TTL: time.Hour}

			cancelled, cancel := context.WithCancel(ctx)
			cancel()
			res, err := s.Claim(cancelled, claim)
			require.ErrorIs(t, err, context.Canceled)
			assert.NotEqual(t, idempotency.Claimed, res.State)
			res, err = s.Claim(ctx, claim)
			require.NoError(t, err)
			require.Equal(t, idempotency.Claimed, res.State, "the cancelled claim left no record")

			resp := &idempotency.Response{StatusCode: http.StatusCreated, Body: []byte("ok")}
			p.Blackhole() // the server stops answering
			for _, call := range []struct {
				name string
				f    func(context.Context) error
			}{
				{"renew", func(ctx context.Context) error { return s.Renew(ctx, claim) }},
				{"finish", func(ctx context.Context) error { return s.Finish(ctx, claim, resp) }},
			} {
				short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
				start := time.Now()
				err := call.f(short)
				cancel()
				assert.Error(t, err, call.name)
				assert.Less(t, time.Since(start), 5*time.Second, "%s gave up at its deadline", call.name)
			}
			p.Restore()

			// The abandoned Finish may have landed: calling Finish again
			// is what the middleware does, and it succeeds either way.
			require.NoError(t, s.Finish(ctx, claim, resp))
			claim.Token = "another"
			res, err = s.Claim(ctx, claim)
			require.NoError(t, err)
			require.Equal(t, idempotency.Finished, res.State)
			assert.Equal(t, resp.Body, res.Response.Body)
		})
	}
}
