package webhook_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/idempotency"
	"github.com/payonce/payonce/idempotency/pgstore"
	"github.com/payonce/payonce/idempotency/redisstore"
	"github.com/payonce/payonce/internal/testenv"
)

// Two instances of one receiver, each with a store client of its own over
// one PostgreSQL table or one Redis prefix: redeliveries that land on
// either run the handler once.
func TestReceiverInstancesShareAStore(t *testing.T) {
	backends := map[string]func(t *testing.T) func() idempotency.Store{
		"postgres": func(t *testing.T) func() idempotency.Store {
			cfg, err := pgxpool.ParseConfig(testenv.PostgresURL(t))
			require.NoError(t, err)
			table := testenv.Name("payonce_webhook_test_")
			return func() idempotency.Store {
				pool, err := pgxpool.NewWithConfig(context.Background(), cfg.Copy())
				require.NoError(t, err)
				t.Cleanup(pool.Close)
				s, err := pgstore.New(pool, pgstore.WithTable(table))
				require.NoError(t, err)
				require.NoError(t, s.CreateSchema(context.Background()))
				t.Cleanup(func() {
					_, err := pool.Exec(context.Background(), "DROP TABLE IF EXISTS "+pgx.Identifier{table}.Sanitize())
					assert.NoError(t, err)
				})
				return s
			}
		},
		"redis": func(t *testing.T) func() idempotency.Store {
			opts, err := redis.ParseURL(testenv.RedisURL(t))
			require.NoError(t, err)
			prefix := testenv.Name("payonce:webhook:test:") + ":"
			return func() idempotency.Store {
				c := redis.NewClient(opts)
				t.Cleanup(func() {
					ctx := context.Background()
					iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
					for iter.Next(ctx) {
						c.Del(ctx, iter.Val())
					}
					c.Close()
				})
				s, err := redisstore.New(c, redisstore.WithPrefix(prefix))
				require.NoError(t, err)
				return s
			}
		},
	}
	for name, backend := range backends {
		t.Run(name, func(t *testing.T) {
			newStore := backend(t)
			const n = 8
			entered, release := make(chan struct{}), make(chan struct{})
			var runs atomic.Int64
			slow := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				runs.Add(1)
				close(entered)
				<-release
				fmt.Fprint(w, `{"shipped":true}`)
			})
			instances := []http.Handler{
				newStripeReceiver(t, newStore(), slow),
				newStripeReceiver(t, newStore(), slow),
			}

			first := make(chan *httptest.ResponseRecorder, 1)
			req := stripeDelivery(t, stripePayload, epoch, stripeSecret)
			go func() { first <- serve(instances[0], req) }()
			<-entered

			var wg sync.WaitGroup
			answers := make(chan *httptest.ResponseRecorder, n)
			for i := range n {
				req := stripeDelivery(t, stripePayload, epoch, stripeSecret)
				wg.Add(1)
				go func() {
					defer wg.Done()
					answers <- serve(instances[i%2], req)
				}()
			}
			wg.Wait()
			close(answers)
			for w := range answers {
				assert.Equal(t, http.StatusConflict, w.Code)
			}
			close(release)
			require.Equal(t, http.StatusOK, (<-first).Code)
			for _, h := range instances {
				w := serve(h, stripeDelivery(t, stripePayload, epoch, stripeSecret))
				assert.Equal(t, "true", w.Header().Get("Idempotent-Replayed"))
				assert.Equal(t, `{"shipped":true}`, w.Body.String())
			}
			assert.Equal(t, int64(1), runs.Load())
		})
	}
}
