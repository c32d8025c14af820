// Package storetest checks that an [idempotency.Store] keeps the promises the
// middleware relies on, in the spirit of testing/fstest.
//
// Every store in this module passes it, and so should yours: a DynamoDB or
// Spanner store that passes Run can sit behind the middleware.
//
//	func TestMyStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) idempotency.Store {
//			return mystore.New(connect(t))
//		})
//	}
//
// A store that also offers transactions for the handler's writes (an
// [idempotency.TxStore]) passes [RunTx] as well, which checks that a write
// and the stored response are kept together or not at all, and that a
// takeover after a lost lease never commits a second execution. The
// PostgreSQL store passes both; the in-memory and Redis stores offer no
// transactions, and only Run applies to them.
package storetest

import (
	"context"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/idempotency"
)

// Racers is how many goroutines race for one key in the concurrency check.
const Racers = 64

// Run checks the store returned by newStore against the [idempotency.Store]
// contract, each check in its own subtest with a fresh store.
//
// Time is what each [idempotency.Claim] says it is: a store must decide
// expiry by Claim.Now, never by its own clock, so the checks can move time
// without waiting. (A store may still let its backend evict records it no
// longer needs, as long as it never evicts one early.) Keys are unique per
// subtest, so newStore may return stores that share one database.
//
// Run does not check that a store gives up when a call's context ends: a
// store that never waits, as the in-memory one, keeps that promise without
// looking at the context, and a store that does wait can only be seen to
// give up on a backend made to hang. Test that against your backend.
func Run(t *testing.T, newStore func(t *testing.T) idempotency.Store) {
	t.Helper()
	checks := []struct {
		name string
		f    func(*testing.T, idempotency.Store, *claims)
	}{
		{"ClaimFinishReplay", claimFinishReplay},
		{"Mismatch", mismatch},
		{"Release", release},
		{"OnlyTheOwnerMayFinish", onlyTheOwnerMayFinish},
		{"FinishedIsNeverOverwritten", finishedIsNeverOverwritten},
		{"FinishedRefusesAStranger", finishedRefusesAStranger},
		{"FinishAfterRelease", finishAfterRelease},
		{"FinishedExpiresAfterTTL", finishedExpiresAfterTTL},
		{"LeaseTakeover", leaseTakeover},
		{"RenewKeepsTheLease", renewKeepsTheLease},
		{"RacersOneWinner", racersOneWinner},
		{"ScopesNeverMeet", scopesNeverMeet},
		{"ResponseIsCopied", responseIsCopied},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			c.f(t, newStore(t), newClaims(t))
		})
	}
}

// claims makes claims on keys no other check uses.
type claims struct {
	prefix string
	now    time.Time
	n      int
}

func newClaims(t *testing.T) *claims {
	return &claims{
		prefix: fmt.Sprintf("storetest-%s-%d", t.Name(), time.Now().UnixNano()),
		// Whole milliseconds, so a store that keeps millisecond time
		// agrees with the checks on every boundary.
		now: time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC),
	}
}

func (c *claims) claim(key, fingerprint string) idempotency.Claim {
	c.n++
	return idempotency.Claim{
		Scope:       "acct_a",
		Key:         c.prefix + "/" + key,
		Fingerprint: fingerprint,
		Token:       fmt.Sprintf("token-%d", c.n),
		Now:         c.now,
		Lease:       30 * time.Second,
		TTL:         time.Hour,
	}
}

func at(c idempotency.Claim, d time.Duration) idempotency.Claim {
	c.Now = c.Now.Add(d)
	return c
}

var ctx = context.Background()

func chargeResponse() *idempotency.Response {
	return &idempotency.Response{
		StatusCode: http.StatusPaymentRequired,
		Header:     http.Header{"Content-Type": {"application/json"}, "Location": {"/v1/charges/ch_1"}},
		Body:       []byte(`{"error":{"type":"card_error","code":"card_declined"}}` + "\n\x00\xff"),
	}
}

func mustClaim(t *testing.T, s idempotency.Store, c idempotency.Claim, want idempotency.State) idempotency.Result {
	t.Helper()
	res, err := s.Claim(ctx, c)
	require.NoError(t, err)
	require.Equal(t, want.String(), res.State.String(), "Claim(%s, %s) at %s", c.Key, c.Fingerprint, c.Now.Format(time.RFC3339Nano))
	return res
}

func claimFinishReplay(t *testing.T, s idempotency.Store, cs *claims) {
	first := cs.claim("k", "fp1")
	mustClaim(t, s, first, idempotency.Claimed)
	mustClaim(t, s, cs.claim("k", "fp1"), idempotency.InFlight)

	want := chargeResponse()
	require.NoError(t, s.Finish(ctx, at(first, time.Second), want))
	res := mustClaim(t, s, at(cs.claim("k", "fp1"), 2*time.Second), idempotency.Finished)
	require.NotNil(t, res.Response)
	assert.Equal(t, want.StatusCode, res.Response.StatusCode)
	assert.Equal(t, want.Header, res.Response.Header)
	assert.Equal(t, want.Body, res.Response.Body, "the body is kept byte for byte")
}

func mismatch(t *testing.T, s idempotency.Store, cs *claims) {
	first := cs.claim("k", "fp1")
	mustClaim(t, s, first, idempotency.Claimed)
	mustClaim(t, s, cs.claim("k", "fp2"), idempotency.Mismatch)
	require.NoError(t, s.Finish(ctx, first, chargeResponse()))
	mustClaim(t, s, cs.claim("k", "fp2"), idempotency.Mismatch)
	mustClaim(t, s, cs.claim("k", "fp1"), idempotency.Finished)
}

func release(t *testing.T, s idempotency.Store, cs *claims) {
	first := cs.claim("k", "fp1")
	mustClaim(t, s, first, idempotency.Claimed)
	require.NoError(t, s.Release(ctx, first))
	// A released key is free for any request, even another fingerprint.
	second := cs.claim("k", "fp2")
	mustClaim(t, s, second, idempotency.Claimed)
	assert.ErrorIs(t, s.Release(ctx, first), idempotency.ErrLeaseLost, "the first owner let go")
}

func onlyTheOwnerMayFinish(t *testing.T, s idempotency.Store, cs *claims) {
	owner := cs.claim("k", "fp1")
	mustClaim(t, s, owner, idempotency.Claimed)
	stranger := owner
	stranger.Token = "not-the-owner"
	assert.ErrorIs(t, s.Finish(ctx, stranger, chargeResponse()), idempotency.ErrLeaseLost)
	assert.ErrorIs(t, s.Renew(ctx, stranger), idempotency.ErrLeaseLost)
	assert.ErrorIs(t, s.Release(ctx, stranger), idempotency.ErrLeaseLost)
	mustClaim(t, s, cs.claim("k", "fp1"), idempotency.InFlight)
}

func finishedIsNeverOverwritten(t *testing.T, s idempotency.Store, cs *claims) {
	owner := cs.claim("k", "fp1")
	mustClaim(t, s, owner, idempotency.Claimed)
	first := chargeResponse()
	require.NoError(t, s.Finish(ctx, owner, first))

	// The middleware calls Finish again when a call failed without an
	// answer, and that call may have landed: the retry succeeds, and the
	// first response stays.
	second := &idempotency.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: []byte("other")}
	require.NoError(t, s.Finish(ctx, at(owner, time.Second), second), "Finish again for the same claim")
	assert.ErrorIs(t, s.Release(ctx, owner), idempotency.ErrLeaseLost)
	assert.ErrorIs(t, s.Renew(ctx, owner), idempotency.ErrLeaseLost)
	res := mustClaim(t, s, at(cs.claim("k", "fp1"), 2*time.Second), idempotency.Finished)
	assert.Equal(t, first.StatusCode, res.Response.StatusCode)
	assert.Equal(t, first.Header, res.Response.Header)
	assert.Equal(t, first.Body, res.Response.Body)
}

func finishedRefusesAStranger(t *testing.T, s idempotency.Store, cs *claims) {
	owner := cs.claim("k", "fp1")
	mustClaim(t, s, owner, idempotency.Claimed)
	first := chargeResponse()
	require.NoError(t, s.Finish(ctx, owner, first))

	// Only the token that finished the record may call Finish again.
	stranger := owner
	stranger.Token = "not-the-owner"
	second := &idempotency.Response{StatusCode: http.StatusOK, Header: http.Header{}, Body: []byte("other")}
	assert.ErrorIs(t, s.Finish(ctx, stranger, second), idempotency.ErrLeaseLost)
	res := mustClaim(t, s, cs.claim("k", "fp1"), idempotency.Finished)
	assert.Equal(t, first.StatusCode, res.Response.StatusCode)
	assert.Equal(t, first.Body, res.Response.Body)
}

func finishAfterRelease(t *testing.T, s idempotency.Store, cs *claims) {
	owner := cs.claim("k", "fp1")
	mustClaim(t, s, owner, idempotency.Claimed)
	require.NoError(t, s.Release(ctx, owner))

	assert.ErrorIs(t, s.Finish(ctx, owner, chargeResponse()), idempotency.ErrLeaseLost,
		"a released claim cannot be finished")
	mustClaim(t, s, cs.claim("k", "fp2"), idempotency.Claimed) // no record was left
}

func finishedExpiresAfterTTL(t *testing.T, s idempotency.Store, cs *claims) {
	owner := cs.claim("k", "fp1")
	mustClaim(t, s, owner, idempotency.Claimed)
	finishedAt := at(owner, time.Minute)
	require.NoError(t, s.Finish(ctx, finishedAt, chargeResponse()))

	ttl := owner.TTL
	mustClaim(t, s, at(cs.claim("k", "fp1"), time.Minute+ttl-time.Millisecond), idempotency.Finished)
	// Once expired the key is free again, for any request.
	mustClaim(t, s, at(cs.claim("k", "fp2"), time.Minute+ttl), idempotency.Claimed)
}

func leaseTakeover(t *testing.T, s idempotency.Store, cs *claims) {
	dead := cs.claim("k", "fp1")
	mustClaim(t, s, dead, idempotency.Claimed)
	mustClaim(t, s, at(cs.claim("k", "fp1"), dead.Lease-time.Millisecond), idempotency.InFlight)

	// The owner stopped renewing: once its lease has run out, a retry takes over.
	heir := at(cs.claim("k", "fp1"), dead.Lease)
	mustClaim(t, s, heir, idempotency.Claimed)
	assert.ErrorIs(t, s.Finish(ctx, at(dead, dead.Lease), chargeResponse()), idempotency.ErrLeaseLost,
		"a late owner cannot overwrite the heir's claim")
	assert.ErrorIs(t, s.Renew(ctx, at(dead, dead.Lease)), idempotency.ErrLeaseLost)

	require.NoError(t, s.Finish(ctx, heir, chargeResponse()))
	assert.ErrorIs(t, s.Finish(ctx, at(dead, dead.Lease), chargeResponse()), idempotency.ErrLeaseLost,
		"nor can it finish once the heir has")
	mustClaim(t, s, at(cs.claim("k", "fp1"), dead.Lease+time.Second), idempotency.Finished)
}

func renewKeepsTheLease(t *testing.T, s idempotency.Store, cs *claims) {
	owner := cs.claim("k", "fp1")
	mustClaim(t, s, owner, idempotency.Claimed)
	for i := 1; i <= 4; i++ {
		// Renew at every half lease: the claim outlives many leases.
		require.NoError(t, s.Renew(ctx, at(owner, time.Duration(i)*owner.Lease/2)))
	}
	mustClaim(t, s, at(cs.claim("k", "fp1"), 2*owner.Lease+owner.Lease-time.Millisecond), idempotency.InFlight)
	require.NoError(t, s.Finish(ctx, at(owner, 2*owner.Lease), chargeResponse()))
}

func racersOneWinner(t *testing.T, s idempotency.Store, cs *claims) {
	base := cs.claim("k", "fp1")
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		states = map[idempotency.State]int{}
		start  = make(chan struct{})
	)
	for i := range Racers {
		c := base
		c.Token = fmt.Sprintf("racer-%d", i)
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			res, err := s.Claim(ctx, c)
			assert.NoError(t, err)
			mu.Lock()
			states[res.State]++
			mu.Unlock()
		}()
	}
	close(start)
	wg.Wait()
	assert.Equal(t, 1, states[idempotency.Claimed], "exactly one racer wins: %v", states)
	assert.Equal(t, Racers-1, states[idempotency.InFlight], "every other racer is told it is in flight: %v", states)
}

func scopesNeverMeet(t *testing.T, s idempotency.Store, cs *claims) {
	a := cs.claim("k", "fp1")
	mustClaim(t, s, a, idempotency.Claimed)
	require.NoError(t, s.Finish(ctx, a, chargeResponse()))

	b := cs.claim("k", "fp2")
	b.Scope = "acct_b"
	mustClaim(t, s, b, idempotency.Claimed)
	bAgain := cs.claim("k", "fp1")
	bAgain.Scope = "acct_b"
	mustClaim(t, s, bAgain, idempotency.Mismatch)

	// A scope that is a prefix of another, and a key that straddles the
	// boundary, are still different records.
	c := cs.claim("k", "fp1")
	c.Scope = "acct_"
	c.Key = "a/" + c.Key
	mustClaim(t, s, c, idempotency.Claimed)
}

func responseIsCopied(t *testing.T, s idempotency.Store, cs *claims) {
	owner := cs.claim("k", "fp1")
	mustClaim(t, s, owner, idempotency.Claimed)
	resp := chargeResponse()
	require.NoError(t, s.Finish(ctx, owner, resp))
	resp.Body[0] = 'X'
	resp.Header.Set("Content-Type", "text/plain")

	got := mustClaim(t, s, cs.claim("k", "fp1"), idempotency.Finished).Response
	assert.Equal(t, chargeResponse().Body, got.Body, "the store keeps its own copy")
	assert.Equal(t, "application/json", got.Header.Get("Content-Type"))
}
