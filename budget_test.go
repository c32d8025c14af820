package payonce

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// switchable is a fake gateway whose health a test flips: while down, every
// request gets status (0 drops the connection) and nothing executes.
type switchable struct {
	*fakeGateway
	down   atomic.Bool
	status atomic.Int32
}

func newSwitchable(t *testing.T, status int) *switchable {
	s := &switchable{}
	s.status.Store(int32(status))
	s.down.Store(true)
	s.fakeGateway = newFake(t, func(f *fakeGateway) {
		f.before = func(_ int, w http.ResponseWriter, _ *http.Request) bool {
			if !s.down.Load() {
				return false
			}
			switch st := int(s.status.Load()); st {
			case 0:
				dropConn(t, w)
			case http.StatusTooManyRequests:
				writeErr(w, st, "rate_limit_error", "rate_limit", "", "Slow down.")
			default:
				writeErr(w, st, "api_error", "", "", "Try again.")
			}
			return true
		}
	})
	return s
}

func mustBudget(t *testing.T, cfg RetryBudgetConfig) *RetryBudget {
	t.Helper()
	b, err := NewRetryBudget(cfg)
	require.NoError(t, err)
	return b
}

func TestRetryBudgetStopsRetriesWhenDrained(t *testing.T) {
	g := newSwitchable(t, http.StatusServiceUnavailable)
	budget := mustBudget(t, RetryBudgetConfig{Capacity: 10, RetryCost: 5})
	c := g.client(t, WithRetryBudget(budget), WithMaxRetries(3))
	ctx := context.Background()

	// Two retries drain the 10 tokens; the third is refused.
	_, err := c.Charges.Create(ctx, chargeParams("order_a"))
	require.ErrorIs(t, err, ErrRetryBudgetExhausted)
	var ou *OutcomeUnknownError
	require.ErrorAs(t, err, &ou, "a 503 may have executed: the key must come back")
	assert.Equal(t, "order_a", ou.IdempotencyKey)
	assert.Equal(t, 3, ou.Attempts)
	assert.Equal(t, 0, budget.Tokens())
	assert.Contains(t, err.Error(), "retry budget exhausted")

	// An empty budget: the next call makes its one attempt and stops.
	_, err = c.Charges.Create(ctx, chargeParams("order_b"))
	require.ErrorIs(t, err, ErrRetryBudgetExhausted)
	require.ErrorAs(t, err, &ou)
	assert.Equal(t, "order_b", ou.IdempotencyKey)
	assert.Equal(t, 1, ou.Attempts)
	var apiErr *Error
	require.ErrorAs(t, err, &apiErr, "the last attempt's failure is still reachable")
	assert.Equal(t, http.StatusServiceUnavailable, apiErr.StatusCode)
	assert.Len(t, g.requests(), 4)
}

func TestRetryBudgetRefillsOnSuccess(t *testing.T) {
	g := newSwitchable(t, http.StatusServiceUnavailable)
	budget := mustBudget(t, RetryBudgetConfig{Capacity: 10, RetryCost: 5, SuccessRefund: 1})
	c := g.client(t, WithRetryBudget(budget))
	ctx := context.Background()

	_, err := c.Charges.Create(ctx, chargeParams("order_drain"))
	require.ErrorIs(t, err, ErrRetryBudgetExhausted)
	require.Equal(t, 0, budget.Tokens())

	g.down.Store(false)
	for i := range 5 {
		_, err := c.Charges.Create(ctx, chargeParams(""))
		require.NoError(t, err)
		assert.Equal(t, i+1, budget.Tokens(), "each first-attempt success gives one token back")
	}
	// Declines are answers too: the gateway is healthy.
	p := chargeParams("")
	p.PaymentMethod = "tok_chargeDeclined"
	_, err = c.Charges.Create(ctx, p)
	require.ErrorIs(t, err, ErrCardDeclined)
	assert.Equal(t, 6, budget.Tokens())

	// Enough for one retry again; a call that succeeds after it gives back
	// what the retry cost.
	g.down.Store(true)
	g.status.Store(http.StatusServiceUnavailable)
	var once sync.Once
	c2 := g.client(t, WithRetryBudget(budget), WithBackoffFunc(func(_ int, _, _ time.Duration) time.Duration {
		once.Do(func() { g.down.Store(false) }) // the gateway heals during the wait
		return 0
	}))
	ch, err := c2.Charges.Create(ctx, chargeParams("order_heal"))
	require.NoError(t, err)
	assert.Equal(t, 2, ch.LastResponse.Attempts)
	assert.Equal(t, 6, budget.Tokens(), "the retry's 5 tokens came back with its success")
}

func TestRetryBudgetTimeoutsCostMore(t *testing.T) {
	for _, tc := range []struct {
		name     string
		status   int // 0: the connection drops
		attempts int
	}{
		{"503 costs 5", http.StatusServiceUnavailable, 6}, // 30/5 = 6 retries, capped by 5 max retries
		{"dropped connection costs 10", 0, 4},             // 30/10 = 3 retries
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := newSwitchable(t, tc.status)
			budget := mustBudget(t, RetryBudgetConfig{Capacity: 30, RetryCost: 5, TimeoutCost: 10})
			_, err := g.client(t, WithRetryBudget(budget), WithMaxRetries(5)).
				Charges.Create(context.Background(), chargeParams("order_cost"))
			var ou *OutcomeUnknownError
			require.ErrorAs(t, err, &ou)
			assert.Equal(t, tc.attempts, ou.Attempts)
		})
	}
}

func TestRetryBudgetDisabledRetriesAsBefore(t *testing.T) {
	g := newSwitchable(t, http.StatusServiceUnavailable)
	c := g.client(t, WithoutRetryBudget())
	for range 40 { // 120 retries: far more than any default budget allows
		_, err := c.Charges.Create(context.Background(), chargeParams(""))
		var ou *OutcomeUnknownError
		require.ErrorAs(t, err, &ou)
		assert.Equal(t, DefaultMaxRetries+1, ou.Attempts)
		assert.NotErrorIs(t, err, ErrRetryBudgetExhausted)
	}
	assert.Len(t, g.requests(), 40*(DefaultMaxRetries+1))
	assert.Contains(t, fmtClient(c), "RetryBudget:off")
}

func TestRetryBudgetDefaultIsOnAndPerClient(t *testing.T) {
	g := newSwitchable(t, http.StatusServiceUnavailable)
	c := g.client(t)
	other := g.client(t)
	stopped := 0
	for range DefaultBudgetCapacity / DefaultBudgetRetryCost { // enough calls to drain it
		_, err := c.Charges.Create(context.Background(), chargeParams(""))
		require.ErrorIs(t, err, ErrOutcomeUnknown)
		if errors.Is(err, ErrRetryBudgetExhausted) {
			stopped++
		}
	}
	assert.Positive(t, stopped, "the default budget stopped retries")
	assert.Contains(t, fmtClient(c), "RetryBudget:0/100")
	assert.Contains(t, fmtClient(other), "RetryBudget:100/100", "another client has a budget of its own")
}

func TestRetryBudgetSharedByClients(t *testing.T) {
	g := newSwitchable(t, http.StatusServiceUnavailable)
	budget := mustBudget(t, RetryBudgetConfig{Capacity: 10, RetryCost: 5})
	a := g.client(t, WithRetryBudget(budget))
	b := g.client(t, WithRetryBudget(budget))
	_, err := a.Charges.Create(context.Background(), chargeParams(""))
	require.ErrorIs(t, err, ErrRetryBudgetExhausted)
	_, err = b.Charges.Create(context.Background(), chargeParams(""))
	require.ErrorIs(t, err, ErrRetryBudgetExhausted, "b shares a's empty budget")
	var ou *OutcomeUnknownError
	require.ErrorAs(t, err, &ou)
	assert.Equal(t, 1, ou.Attempts)
}

func TestRetryBudgetExhaustedKeepsErrorsTrue(t *testing.T) {
	t.Run("nothing executed: a plain error, not unknown", func(t *testing.T) {
		g := newSwitchable(t, http.StatusTooManyRequests)
		budget := mustBudget(t, RetryBudgetConfig{Capacity: 5, RetryCost: 5, TimeoutCost: 5})
		c := g.client(t, WithRetryBudget(budget))
		_, err := c.Charges.Create(context.Background(), chargeParams("order_429"))
		require.ErrorIs(t, err, ErrRetryBudgetExhausted)
		require.ErrorIs(t, err, ErrRateLimited)
		assert.NotErrorIs(t, err, ErrOutcomeUnknown, "a 429 executed nothing")
	})
	t.Run("may have executed: unknown with its key, and it settles", func(t *testing.T) {
		// The gateway executes the charge and the connection drops; the
		// retry's connection drops too.
		g := newFake(t, func(f *fakeGateway) {
			f.after = func(n int, w http.ResponseWriter, _ *http.Request) bool {
				if n == 1 {
					dropConn(t, w)
				}
				return n == 1
			}
			f.before = func(n int, w http.ResponseWriter, _ *http.Request) bool {
				if n == 2 {
					dropConn(t, w)
				}
				return n == 2
			}
		})
		budget := mustBudget(t, RetryBudgetConfig{Capacity: 10, TimeoutCost: 10})
		c := g.client(t, WithRetryBudget(budget))
		_, err := c.Charges.Create(context.Background(), chargeParams("order_lost"))
		require.ErrorIs(t, err, ErrRetryBudgetExhausted)
		var ou *OutcomeUnknownError
		require.ErrorAs(t, err, &ou, "an exhausted budget must never hide the key of a charge that may exist")
		assert.Equal(t, "order_lost", ou.IdempotencyKey)
		assert.Equal(t, 2, ou.Attempts)
		require.Equal(t, 1, g.chargeCount(), "the charge exists")

		ch, err := c.Charges.Create(context.Background(), chargeParams(ou.IdempotencyKey))
		require.NoError(t, err, "settled with the same key, even with an empty budget")
		assert.True(t, ch.LastResponse.Replayed)
		assert.Equal(t, 1, g.chargeCount())
	})
}

func TestRetryBudgetConcurrentWithdrawals(t *testing.T) {
	b := mustBudget(t, RetryBudgetConfig{Capacity: 100, RetryCost: 5})
	var granted atomic.Int32
	var wg sync.WaitGroup
	start := make(chan struct{})
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for range 10 {
				if b.withdraw(5) {
					granted.Add(1)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	assert.Equal(t, int32(20), granted.Load(), "exactly capacity/cost retries, however many race")
	assert.Equal(t, 0, b.Tokens())
	for range 1000 {
		b.deposit(1)
	}
	assert.Equal(t, 100, b.Tokens(), "deposits stop at the capacity")
}

func TestNewRetryBudgetRefusesBadSizes(t *testing.T) {
	for _, cfg := range []RetryBudgetConfig{
		{Capacity: -1},
		{RetryCost: -5},
		{SuccessRefund: -1},
		{Capacity: 4, RetryCost: 5},
		{Capacity: 9, TimeoutCost: 0}, // the default timeout cost, 10, exceeds it
		{SuccessRefund: DefaultBudgetCapacity + 1},
		{SuccessRefund: math.MaxInt}, // would overflow the bucket
	} {
		_, err := NewRetryBudget(cfg)
		assert.ErrorIs(t, err, ErrInvalidConfig, "%+v", cfg)
	}
	_, err := NewRetryBudget(RetryBudgetConfig{Capacity: 9})
	assert.ErrorContains(t, err, "TimeoutCost 10 is more than the Capacity 9 (a zero field takes its default)")

	for _, b := range []*RetryBudget{nil, {}} {
		_, err := NewClient(testAPIKey, WithBaseURL("https://gateway.example.com"), WithRetryBudget(b))
		assert.ErrorIs(t, err, ErrInvalidConfig, "WithRetryBudget(%#v) must not turn the budget off unnoticed", b)
	}
	b, err := NewRetryBudget(RetryBudgetConfig{})
	require.NoError(t, err)
	assert.Equal(t, RetryBudgetConfig{Capacity: DefaultBudgetCapacity, RetryCost: DefaultBudgetRetryCost,
		TimeoutCost: DefaultBudgetTimeoutCost, SuccessRefund: DefaultBudgetSuccessRefund}, b.Config())
	assert.Equal(t, DefaultBudgetCapacity, b.Tokens(), "a budget starts full")
}

func fmtClient(c *Client) string { return fmt.Sprintf("%v", c) }

func TestRetryBudgetRefundsARetryNeverSent(t *testing.T) {
	g := newSwitchable(t, http.StatusServiceUnavailable)
	budget := mustBudget(t, RetryBudgetConfig{Capacity: 10, RetryCost: 5})
	ctx, cancel := context.WithCancel(context.Background())
	// The caller gives up during the wait before the first retry.
	c := g.client(t, WithRetryBudget(budget), WithBackoffFunc(func(int, time.Duration, time.Duration) time.Duration {
		cancel()
		return time.Second
	}))
	_, err := c.Charges.Create(ctx, chargeParams("order_gave_up"))
	require.ErrorIs(t, err, context.Canceled)
	require.ErrorIs(t, err, ErrOutcomeUnknown)
	assert.Len(t, g.requests(), 1, "the retry was never sent")
	assert.Equal(t, 10, budget.Tokens(), "so its tokens came back")
}
