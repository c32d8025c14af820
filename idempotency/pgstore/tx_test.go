package pgstore_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
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

// rows is a table of the handler's own, dropped when the test ends.
func (db *testDB) rows(tb testing.TB) string {
	tb.Helper()
	name := pgx.Identifier{testenv.Name("payonce_rows_")}.Sanitize()
	_, err := db.admin.Exec(context.Background(), `CREATE TABLE `+name+` (marker text NOT NULL)`)
	require.NoError(tb, err)
	tb.Cleanup(func() {
		_, err := db.admin.Exec(context.Background(), "DROP TABLE IF EXISTS "+name)
		assert.NoError(tb, err)
	})
	return name
}

func (db *testDB) marked(tb testing.TB, table, marker string) int {
	tb.Helper()
	var n int
	require.NoError(tb, db.admin.QueryRow(context.Background(),
		`SELECT count(*) FROM `+table+` WHERE marker = $1`, marker).Scan(&n))
	return n
}

func TestTxConformance(t *testing.T) {
	db := setup(t)
	table := db.rows(t)
	s := db.store(t, db.pool(t, ""))
	storetest.RunTx(t, storetest.TxConfig{
		New: func(*testing.T) idempotency.TxStore { return s },
		Write: func(t *testing.T, tx idempotency.Tx, marker string) {
			_, err := pgstore.PgxTx(tx).Exec(context.Background(), `INSERT INTO `+table+` VALUES ($1)`, marker)
			require.NoError(t, err)
		},
		Kept: func(t *testing.T, marker string) bool { return db.marked(t, table, marker) > 0 },
	})
}

// clock is a middleware clock that a test moves by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func post(t *testing.T, h http.Handler, key string) *httptest.ResponseRecorder {
	t.Helper()
	r := httptest.NewRequest(http.MethodPost, "/orders", strings.NewReader(`{"amount":2000}`))
	r.Header.Set("Idempotency-Key", key)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, r)
	return w
}

// TestTxHandler: a handler that writes in pgstore.Tx gets its row and its
// response committed together, once; the transaction is the middleware's
// to end; and a handler that refuses, or panics, keeps no row.
func TestTxHandler(t *testing.T) {
	db := setup(t)
	table := db.rows(t)
	mw, err := idempotency.New(db.store(t, db.pool(t, "")), idempotency.WithoutScope())
	require.NoError(t, err)

	var runs atomic.Int32
	h := mw.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs.Add(1)
		ctx := r.Context()
		_, key, ok := idempotency.KeyFromContext(ctx)
		require.True(t, ok)
		tx, err := pgstore.Tx(ctx)
		require.NoError(t, err)
		again, err := pgstore.Tx(ctx)
		require.NoError(t, err)
		assert.Equal(t, tx, again, "one transaction per request")
		_, err = tx.Exec(ctx, `INSERT INTO `+table+` VALUES ($1)`, key)
		require.NoError(t, err)
		assert.ErrorIs(t, tx.Commit(ctx), pgstore.ErrMiddlewareCommits)
		assert.ErrorIs(t, tx.Rollback(ctx), pgstore.ErrMiddlewareCommits)
		switch {
		case strings.HasPrefix(key, "refused"):
			idempotency.NotExecuted(ctx)
			w.WriteHeader(http.StatusBadRequest)
		case strings.HasPrefix(key, "panics"):
			panic("the handler broke after its write")
		default:
			w.WriteHeader(http.StatusCreated)
			json.NewEncoder(w).Encode(map[string]string{"order": key})
		}
	}))

	first := post(t, h, "order-1")
	require.Equal(t, http.StatusCreated, first.Code)
	assert.Equal(t, 1, db.marked(t, table, "order-1"))
	again := post(t, h, "order-1")
	assert.Equal(t, http.StatusCreated, again.Code)
	assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
	assert.Equal(t, first.Body.String(), again.Body.String())
	assert.Equal(t, 1, db.marked(t, table, "order-1"))
	assert.EqualValues(t, 1, runs.Load())

	// NotExecuted rolls the write back and frees the key.
	assert.Equal(t, http.StatusBadRequest, post(t, h, "refused-1").Code)
	assert.Equal(t, 0, db.marked(t, table, "refused-1"))
	assert.Equal(t, http.StatusBadRequest, post(t, h, "refused-1").Code, "the released key executes again")
	assert.EqualValues(t, 3, runs.Load())

	// A panic after the write keeps no row, and stores the 500.
	func() {
		defer func() { assert.NotNil(t, recover(), "the panic goes on") }()
		post(t, h, "panics-1")
	}()
	assert.Equal(t, 0, db.marked(t, table, "panics-1"))
	replayed := post(t, h, "panics-1")
	assert.Equal(t, http.StatusInternalServerError, replayed.Code)
	assert.Equal(t, "true", replayed.Header().Get("Idempotent-Replayed"))
	assert.EqualValues(t, 4, runs.Load())
}

// TestTxSurvivesCrash is the failure that transactional execution exists
// for, made in one process: the handler has written its row when its
// process stops (here the handler hangs, and the proxy cuts its database
// connections, as the kernel closes them when a process dies), so its
// response is never stored. The lease runs out, and the client's retry
// executes the handler again. With the row written in pgstore.Tx, the
// first row went with the connection: one row. The control writes the same
// row on its own, as a handler did before pgstore.Tx existed: it was
// committed, and the retry adds a second.
func TestTxSurvivesCrash(t *testing.T) {
	for _, mode := range []struct {
		name string
		inTx bool
		want int
	}{
		{name: "Transactional", inTx: true, want: 1},
		{name: "Control", inTx: false, want: 2},
	} {
		t.Run(mode.name, func(t *testing.T) {
			db := setup(t)
			table := db.rows(t)
			p := backendtest.NewProxy(t, db.addr())
			pool := db.pool(t, p.Addr())
			clk := &clock{now: time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)}
			const lease = time.Minute // real timers never fire during the test
			mw, err := idempotency.New(db.store(t, pool), idempotency.WithoutScope(),
				idempotency.WithClock(clk.Now), idempotency.WithLease(lease))
			require.NoError(t, err)

			var runs atomic.Int32
			written := make(chan struct{}, 1)
			revive := make(chan struct{})
			h := mw.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := runs.Add(1)
				ctx := r.Context()
				if mode.inTx {
					tx, err := pgstore.Tx(ctx)
					require.NoError(t, err)
					_, err = tx.Exec(ctx, `INSERT INTO `+table+` VALUES ('order')`)
					require.NoError(t, err)
				} else {
					_, err := pool.Exec(ctx, `INSERT INTO `+table+` VALUES ('order')`)
					require.NoError(t, err)
				}
				if n == 1 {
					written <- struct{}{}
					<-revive
				}
				w.WriteHeader(http.StatusCreated)
			}))

			done := make(chan *httptest.ResponseRecorder)
			go func() { done <- post(t, h, "order-1") }()
			<-written
			p.Cut() // the first execution's connections die with it
			p.Restore()

			clk.Add(lease)
			second := post(t, h, "order-1")
			require.Equal(t, http.StatusCreated, second.Code, "%s", second.Body)
			assert.EqualValues(t, 2, runs.Load(), "the retry after the lease executed again")
			assert.Equal(t, mode.want, db.marked(t, table, "order"), "order rows")

			// The first execution comes back to life too late: it stores
			// nothing, and adds no row.
			close(revive)
			first := <-done
			assert.Equal(t, http.StatusServiceUnavailable, first.Code, "%s", first.Body)
			assert.Equal(t, mode.want, db.marked(t, table, "order"), "order rows")
			replay := post(t, h, "order-1")
			assert.Equal(t, http.StatusCreated, replay.Code)
			assert.Equal(t, "true", replay.Header().Get("Idempotent-Replayed"))
		})
	}
}

// TestTxWithoutPgstore: Tx says clearly why there is no transaction.
func TestTxWithoutPgstore(t *testing.T) {
	_, err := pgstore.Tx(context.Background())
	assert.ErrorIs(t, err, idempotency.ErrNoTransaction)

	mw, err := idempotency.New(idempotency.NewMemoryStore(), idempotency.WithoutScope())
	require.NoError(t, err)
	var txErr error
	h := mw.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, txErr = pgstore.Tx(r.Context())
		w.WriteHeader(http.StatusInternalServerError)
	}))
	post(t, h, "k")
	require.ErrorIs(t, txErr, idempotency.ErrNoTransaction)
	assert.Contains(t, txErr.Error(), "the middleware's store, *idempotency.MemoryStore, does not offer transactions")
	assert.False(t, errors.Is(txErr, idempotency.ErrLeaseLost))
}

// TestTxConformanceUnderSerializableDefault: Tx's transaction is READ
// COMMITTED whatever the server's default, since under a stricter level the
// commit after a renewal would fail with a serialization error.
func TestTxConformanceUnderSerializableDefault(t *testing.T) {
	db := setup(t)
	table := db.rows(t)
	s := db.store(t, db.pool(t, "", func(cfg *pgxpool.Config) {
		cfg.ConnConfig.RuntimeParams["default_transaction_isolation"] = "serializable"
	}))
	storetest.RunTx(t, storetest.TxConfig{
		New: func(*testing.T) idempotency.TxStore { return s },
		Write: func(t *testing.T, tx idempotency.Tx, marker string) {
			_, err := pgstore.PgxTx(tx).Exec(context.Background(), `INSERT INTO `+table+` VALUES ($1)`, marker)
			require.NoError(t, err)
		},
		Kept: func(t *testing.T, marker string) bool { return db.marked(t, table, marker) > 0 },
	})
}

// TestTxAbortedByAFailedStatement: a statement of the handler's fails, so
// PostgreSQL aborts the transaction; the handler's answer is stored all
// the same, without its writes, rather than lost with the transaction.
func TestTxAbortedByAFailedStatement(t *testing.T) {
	db := setup(t)
	table := db.rows(t)
	mw, err := idempotency.New(db.store(t, db.pool(t, "")), idempotency.WithoutScope())
	require.NoError(t, err)
	runs := 0
	h := mw.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		runs++
		ctx := r.Context()
		tx, err := pgstore.Tx(ctx)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, `INSERT INTO `+table+` VALUES ('order')`)
		require.NoError(t, err)
		_, err = tx.Exec(ctx, `SELECT 1/0`)
		require.Error(t, err)
		http.Error(w, "the order conflicts", http.StatusConflict)
	}))
	first := post(t, h, "order-1")
	assert.Equal(t, http.StatusConflict, first.Code, "%s", first.Body)
	again := post(t, h, "order-1")
	assert.Equal(t, http.StatusConflict, again.Code)
	assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"), "the answer was stored")
	assert.Equal(t, 1, runs)
	assert.Equal(t, 0, db.marked(t, table, "order"), "none of the aborted transaction's writes")
}
