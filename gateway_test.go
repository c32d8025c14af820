package payonce_test

// These tests run the client against the mock gateway over real loopback
// connections: every retry rule and fault kind, end to end, judged by the
// gateway's own ledger.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce"
	"github.com/payonce/payonce/mock"
)

func newGateway(t *testing.T, opts ...mock.Option) *mock.Server {
	t.Helper()
	srv := mock.NewServer(opts...)
	t.Cleanup(srv.Close)
	return srv
}

func gatewayClient(t *testing.T, srv *mock.Server, opts ...payonce.Option) *payonce.Client {
	t.Helper()
	opts = append([]payonce.Option{
		payonce.WithBaseURL(srv.URL),
		payonce.WithBackoff(time.Millisecond, 4*time.Millisecond),
	}, opts...)
	c, err := payonce.NewClient("sk_test_gateway", opts...)
	require.NoError(t, err)
	return c
}

func visa(key string) *payonce.ChargeParams {
	return &payonce.ChargeParams{Amount: 2000, Currency: "usd", PaymentMethod: "tok_visa", IdempotencyKey: key}
}

func chargeFault(kind mock.FaultKind) mock.Fault {
	return mock.Fault{Kind: kind, Method: http.MethodPost, Path: "/v1/charges"}
}

// TestFaultsEndToEnd: whatever the network does to one attempt, the retry
// with the same key leaves exactly one charge, and says whether it replayed.
func TestFaultsEndToEnd(t *testing.T) {
	cases := []struct {
		name     string
		fault    mock.Fault
		replayed bool // the charge committed on the first attempt
	}{
		{"500 before execution", withStatus(chargeFault(mock.FailBefore), 500), false},
		{"502 before execution", withStatus(chargeFault(mock.FailBefore), 502), false},
		{"503 before execution", withStatus(chargeFault(mock.FailBefore), 503), false},
		{"504 before execution", withStatus(chargeFault(mock.FailBefore), 504), false},
		{"429 before execution", withStatus(chargeFault(mock.FailBefore), 429), false},
		{"500 after the commit", withStatus(chargeFault(mock.FailAfter), 500), true},
		{"connection dropped before execution", chargeFault(mock.DropBefore), false},
		{"response lost after the commit", chargeFault(mock.DropAfter), true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := newGateway(t)
			require.NoError(t, srv.InjectFault(tc.fault))
			ch, err := gatewayClient(t, srv).Charges.Create(context.Background(), visa("order_1"))
			require.NoError(t, err)
			assert.Equal(t, 2, ch.LastResponse.Attempts)
			assert.Equal(t, tc.replayed, ch.LastResponse.Replayed)
			assert.Equal(t, "order_1", ch.LastResponse.IdempotencyKey)
			ledger := srv.Charges()
			require.Len(t, ledger, 1, "exactly one charge")
			assert.Equal(t, ch.ID, ledger[0].ID)
			assert.Equal(t, "order_1", ledger[0].IdempotencyKey)
		})
	}
}

func withStatus(f mock.Fault, status int) mock.Fault {
	f.Status = status
	return f
}

// A hung attempt is abandoned by the per-attempt timeout; the charge had
// committed, and the retry replays it.
func TestAttemptTimeoutAfterCommitReplays(t *testing.T) {
	srv := newGateway(t)
	release := make(chan struct{})
	defer close(release)
	f := chargeFault(mock.DelayAfter)
	f.Release = release
	require.NoError(t, srv.InjectFault(f))

	ch, err := gatewayClient(t, srv, payonce.WithAttemptTimeout(200*time.Millisecond)).
		Charges.Create(context.Background(), visa("order_1"))
	require.NoError(t, err)
	assert.True(t, ch.LastResponse.Replayed)
	assert.Equal(t, 2, ch.LastResponse.Attempts)
	assert.Len(t, srv.Charges(), 1)
}

// While the first request executes, a second one with the same key gets
// 409; the client retries it until the first is done and gets the replay.
func TestConcurrentSameKeyWaitsForTheFirst(t *testing.T) {
	srv := newGateway(t)
	release := make(chan struct{})
	f := chargeFault(mock.Delay)
	f.Release = release
	require.NoError(t, srv.InjectFault(f))
	var releaseOnce sync.Once
	releaseFirst := func() { releaseOnce.Do(func() { close(release) }) }
	defer releaseFirst()
	conflicts := &statusSignal{status: http.StatusConflict, seen: make(chan struct{})}
	client := gatewayClient(t, srv, payonce.WithMaxRetries(20), payonce.WithMaxRetryAfter(time.Millisecond),
		payonce.WithHTTPClient(&http.Client{Transport: conflicts}))

	results := make(chan *payonce.Charge, 2)
	for range 2 {
		go func() {
			ch, err := client.Charges.Create(context.Background(), visa("order_1"))
			assert.NoError(t, err)
			results <- ch
		}()
	}
	// Whichever request claimed the key is held; release it once the other
	// has been told, at least once, that the key is in use.
	select {
	case <-conflicts.seen:
	case <-time.After(10 * time.Second):
		t.Fatalf("no request was told that the key is in use; gateway stats %+v", srv.Stats())
	}
	releaseFirst()
	a, b := <-results, <-results
	require.NotNil(t, a)
	require.NotNil(t, b)
	assert.Equal(t, a.ID, b.ID)
	if a.LastResponse.Replayed {
		a, b = b, a
	}
	assert.False(t, a.LastResponse.Replayed)
	assert.True(t, b.LastResponse.Replayed, "the waiting request got the replay")
	assert.GreaterOrEqual(t, b.LastResponse.Attempts, 2)
	assert.Len(t, srv.Charges(), 1)
}

// statusSignal is a transport that closes seen the first time a response
// with the given status arrives.
type statusSignal struct {
	status int
	seen   chan struct{}
	once   sync.Once
}

func (s *statusSignal) RoundTrip(req *http.Request) (*http.Response, error) {
	res, err := http.DefaultTransport.RoundTrip(req)
	if err == nil && res.StatusCode == s.status {
		s.once.Do(func() { close(s.seen) })
	}
	return res, err
}

func TestDefiniteAnswersAreNotRetried(t *testing.T) {
	srv := newGateway(t)
	client := gatewayClient(t, srv)
	ctx := context.Background()

	_, err := client.Charges.Create(ctx, &payonce.ChargeParams{Amount: 500, Currency: "usd", PaymentMethod: "tok_chargeDeclined", IdempotencyKey: "declined"})
	var apiErr *payonce.Error
	require.ErrorAs(t, err, &apiErr)
	assert.ErrorIs(t, err, payonce.ErrCardDeclined)
	assert.Equal(t, http.StatusPaymentRequired, apiErr.StatusCode)
	assert.Equal(t, "generic_decline", apiErr.DeclineCode)
	assert.Equal(t, "declined", apiErr.IdempotencyKey)

	_, err = client.Charges.Create(ctx, &payonce.ChargeParams{Amount: 500, Currency: "usd", PaymentMethod: "tok_chargeDeclinedInsufficientFunds"})
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, "insufficient_funds", apiErr.DeclineCode)

	_, err = client.Charges.Create(ctx, &payonce.ChargeParams{Amount: 500, Currency: "xyz", PaymentMethod: "tok_visa"})
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusBadRequest, apiErr.StatusCode)
	assert.Equal(t, "currency", apiErr.Param)

	_, err = client.Charges.Get(ctx, "ch_missing")
	assert.ErrorIs(t, err, payonce.ErrNotFound)

	bad, err := payonce.NewClient("not_a_test_key", payonce.WithBaseURL(srv.URL))
	require.NoError(t, err)
	_, err = bad.Charges.Get(ctx, "ch_1")
	assert.ErrorIs(t, err, payonce.ErrAuthentication)
	assert.NotContains(t, err.Error(), "not_a_test_key", "the key never appears in errors")

	for _, r := range srv.Requests() {
		assert.NotEqual(t, mock.OutcomeReplayed, r.Outcome, "nothing was retried: %+v", r)
	}
	assert.Empty(t, srv.Charges())
}

// The same key with another amount is a programming error: 422, loudly.
func TestKeyReusedForAnotherAmount(t *testing.T) {
	srv := newGateway(t)
	client := gatewayClient(t, srv)
	ctx := context.Background()
	p := visa("invoice_456")
	p.Amount = 1001
	_, err := client.Charges.Create(ctx, p)
	require.NoError(t, err)
	p.Amount = 1002
	_, err = client.Charges.Create(ctx, p)
	require.ErrorIs(t, err, payonce.ErrKeyReused)
	assert.NotErrorIs(t, err, payonce.ErrOutcomeUnknown)
	assert.Len(t, srv.Charges(), 1)
}

// When every attempt loses its answer after the commit, the caller learns
// that the outcome is unknown, with the key; retrying later with that key
// settles it without a second charge.
func TestOutcomeUnknownSettlesWithItsKey(t *testing.T) {
	srv := newGateway(t)
	f := chargeFault(mock.DropAfter)
	f.Times = 3
	require.NoError(t, srv.InjectFault(f))
	client := gatewayClient(t, srv, payonce.WithMaxRetries(2))

	_, err := client.Charges.Create(context.Background(), visa(""))
	require.ErrorIs(t, err, payonce.ErrOutcomeUnknown)
	var unknown *payonce.OutcomeUnknownError
	require.ErrorAs(t, err, &unknown)
	assert.Equal(t, 3, unknown.Attempts)
	require.NotEmpty(t, unknown.IdempotencyKey, "the generated key is handed back")
	require.Len(t, srv.Charges(), 1, "the first attempt charged")

	ch, err := client.Charges.Create(context.Background(), visa(unknown.IdempotencyKey))
	require.NoError(t, err)
	assert.True(t, ch.LastResponse.Replayed, "settled by the replay, not by a second charge")
	assert.Len(t, srv.Charges(), 1)
}

// A retry after the key expired would charge again: the TTL bounds how long
// an unknown outcome can be settled.
func TestSettlingAfterTheTTLChargesAgain(t *testing.T) {
	srv := newGateway(t, mock.WithTTL(time.Hour))
	client := gatewayClient(t, srv)
	_, err := client.Charges.Create(context.Background(), visa("k"))
	require.NoError(t, err)
	srv.AdvanceClock(time.Hour + time.Second)
	ch, err := client.Charges.Create(context.Background(), visa("k"))
	require.NoError(t, err)
	assert.False(t, ch.LastResponse.Replayed)
	assert.Len(t, srv.Charges(), 2)
}

func TestAccountsNeverMeet(t *testing.T) {
	srv := newGateway(t)
	alice := gatewayClient(t, srv)
	bob, err := payonce.NewClient("sk_test_bob", payonce.WithBaseURL(srv.URL))
	require.NoError(t, err)
	ctx := context.Background()

	ch, err := alice.Charges.Create(ctx, visa("shared-key"))
	require.NoError(t, err)
	_, err = bob.Charges.Get(ctx, ch.ID)
	assert.ErrorIs(t, err, payonce.ErrNotFound)

	other, err := bob.Charges.Create(ctx, visa("shared-key"))
	require.NoError(t, err)
	assert.False(t, other.LastResponse.Replayed, "bob must not replay alice's charge")
	assert.NotEqual(t, ch.ID, other.ID)
	for c, err := range bob.Charges.List(ctx, nil) {
		require.NoError(t, err)
		assert.NotEqual(t, ch.ID, c.ID)
	}
}

func TestCaptureRefundAndList(t *testing.T) {
	srv := newGateway(t)
	client := gatewayClient(t, srv)
	ctx := context.Background()

	p := visa("auth_1")
	p.Capture = payonce.Bool(false)
	auth, err := client.Charges.Create(ctx, p)
	require.NoError(t, err)
	assert.Equal(t, payonce.ChargeStatusRequiresCapture, auth.Status)

	captured, err := client.Charges.Capture(ctx, auth.ID, &payonce.CaptureParams{IdempotencyKey: "capture_1"})
	require.NoError(t, err)
	assert.True(t, captured.Captured)
	assert.Equal(t, int64(2000), captured.AmountCaptured)

	_, err = client.Charges.Capture(ctx, auth.ID, &payonce.CaptureParams{IdempotencyKey: "capture_2"})
	assert.ErrorIs(t, err, payonce.ErrInvalidRequest, "capturing twice under a new key is refused")

	re, err := client.Refunds.Create(ctx, &payonce.RefundParams{Charge: auth.ID, Amount: 500, IdempotencyKey: "refund_1"})
	require.NoError(t, err)
	assert.Equal(t, int64(500), re.Amount)
	got, err := client.Refunds.Get(ctx, re.ID)
	require.NoError(t, err)
	assert.Equal(t, re.ID, got.ID)
	after, err := client.Charges.Get(ctx, auth.ID)
	require.NoError(t, err)
	assert.Equal(t, int64(500), after.AmountRefunded)
	assert.False(t, after.Refunded)

	_, err = client.Refunds.Create(ctx, &payonce.RefundParams{Charge: auth.ID, Amount: 1600})
	assert.Error(t, err, "more than remains")

	for i := range 24 {
		_, err := client.Charges.Create(ctx, &payonce.ChargeParams{Amount: int64(100 + i), Currency: "eur", PaymentMethod: "tok_mastercard"})
		require.NoError(t, err)
	}
	var amounts []int64
	for c, err := range client.Charges.List(ctx, &payonce.ChargeListParams{Limit: 7}) {
		require.NoError(t, err)
		amounts = append(amounts, c.Amount)
	}
	require.Len(t, amounts, 25, "the iterator pages through everything")
	assert.Equal(t, int64(123), amounts[0], "newest first")
	assert.Equal(t, int64(2000), amounts[24])
}

// TestChaosNoDuplicatesNoLostCharges runs 10,000 logical charges through
// random faults, from many goroutines sharing one client and so one retry
// budget, then settles every failure with its key. The gateway's ledger must
// hold exactly one charge per logical charge: none twice, none lost.
func TestChaosNoDuplicatesNoLostCharges(t *testing.T) {
	charges := 10_000
	if testing.Short() {
		charges = 1_000
	}
	const workers = 16
	srv := newGateway(t, mock.WithChaos(0.3, 42))
	// One retry only, so that some charges run out of attempts and must be
	// settled later; Retry-After is capped so the test does not wait. The
	// default retry budget stays on, though random faults that a retry
	// cures do not drain it (budget_test.go tests it drained).
	client := gatewayClient(t, srv, payonce.WithMaxRetries(1), payonce.WithMaxRetryAfter(time.Millisecond))
	ctx := context.Background()

	type result struct {
		key string
		id  string
		err error
	}
	results := make([]result, charges)
	// Each logical charge has an amount of its own, the same on every
	// attempt and when it is settled: two logical charges never look alike,
	// and a logical charge made twice under two keys is a suspected
	// duplicate (the end of the test checks that it is seen).
	params := func(i int) *payonce.ChargeParams {
		p := visa(results[i].key)
		p.Amount = int64(1000 + i)
		return p
	}
	// each runs f for every charge, from the workers.
	each := func(f func(i int)) {
		var wg sync.WaitGroup
		next := make(chan int)
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range next {
					f(i)
				}
			}()
		}
		for i := range charges {
			next <- i
		}
		close(next)
		wg.Wait()
	}
	each(func(i int) {
		results[i].key = fmt.Sprintf("chaos_%d", i)
		ch, err := client.Charges.Create(ctx, params(i))
		results[i].err = err
		if err == nil {
			results[i].id = ch.ID
		}
	})

	var unknown, stopped, failed int
	for _, r := range results {
		if r.err != nil {
			failed++
		}
		if errors.Is(r.err, payonce.ErrOutcomeUnknown) {
			var ou *payonce.OutcomeUnknownError
			require.ErrorAs(t, r.err, &ou)
			require.Equal(t, r.key, ou.IdempotencyKey, "an unknown outcome carries its key")
			unknown++
		}
		if errors.Is(r.err, payonce.ErrRetryBudgetExhausted) {
			stopped++
		}
	}

	// Settle: every failure is sent again with its own key once the chaos
	// has passed.
	require.NoError(t, srv.SetChaos(0, 0))
	var settleErrs atomic.Int32
	each(func(i int) {
		r := &results[i]
		if r.err == nil {
			return
		}
		ch, err := client.Charges.Create(ctx, params(i))
		if !assert.NoError(t, err, "settling %s", r.key) {
			settleErrs.Add(1)
			return
		}
		r.id = ch.ID
	})
	require.Zero(t, settleErrs.Load())
	t.Logf("%d charges: %d failed (%d unknown, %d stopped by the retry budget) and settled afterwards; gateway stats %+v",
		charges, failed, unknown, stopped, srv.Stats())

	require.Empty(t, srv.SuspectedDuplicates(time.Hour), "no logical charge was charged under two keys")
	ledger := srv.Charges()
	byKey := map[string][]string{}
	for _, c := range ledger {
		byKey[c.IdempotencyKey] = append(byKey[c.IdempotencyKey], c.ID)
	}
	require.Len(t, ledger, charges, "one charge per logical charge")
	for _, r := range results {
		assert.Equal(t, []string{r.id}, byKey[r.key], "key %s", r.key)
	}
	assert.Positive(t, srv.Stats().Faults, "the chaos did strike")
	assert.Positive(t, unknown, "some outcomes were unknown and settled with their key")

	// The duplicate check can fail: settling a charge under a new key
	// instead of its own charges it twice, and is seen.
	i := charges / 2
	p := params(i)
	p.IdempotencyKey = "settled_without_its_key"
	twice, err := client.Charges.Create(ctx, p)
	require.NoError(t, err)
	dups := srv.SuspectedDuplicates(time.Hour)
	require.Len(t, dups, 1, "the double charge is seen")
	assert.Equal(t, []string{results[i].id, twice.ID}, []string{dups[0].First.ID, dups[0].Second.ID})
}
