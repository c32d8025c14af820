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

// TxConfig is what [RunTx] needs of a transactional store: the store, and
// a way to make a handler's write in one of its transactions and to see
// whether it was kept.
type TxConfig struct {
	// New returns a fresh store, as for [Run].
	New func(t *testing.T) idempotency.TxStore

	// Write makes one write in tx, as a handler would, that marker
	// identifies: a row inserted into a table of the test's own, say.
	Write func(t *testing.T, tx idempotency.Tx, marker string)

	// Kept reports whether the write that marker identifies is durable,
	// as seen from outside any transaction.
	Kept func(t *testing.T, marker string) bool
}

// blockBound is how long a check of [RunTx] lets its store calls run: none
// may wait for a transaction. A store that waits instead makes the call
// fail when the bound ends, rather than hang the test; one that does not
// answers in milliseconds, so the bound is generous and never a measure of
// speed.
const blockBound = 15 * time.Second

// bounded returns the context of a check's store calls, which ends after
// blockBound.
func bounded(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), blockBound)
	t.Cleanup(cancel)
	return ctx
}

func mustClaimIn(t *testing.T, ctx context.Context, s idempotency.Store, c idempotency.Claim, want idempotency.State) idempotency.Result {
	t.Helper()
	res, err := s.Claim(ctx, c)
	require.NoError(t, err, "Claim(%s, %s) at %s", c.Key, c.Fingerprint, c.Now.Format(time.RFC3339Nano))
	require.Equal(t, want.String(), res.State.String(), "Claim(%s, %s) at %s", c.Key, c.Fingerprint, c.Now.Format(time.RFC3339Nano))
	return res
}

// RunTx checks a [idempotency.TxStore] against the promises the middleware
// relies on when a handler writes in the store's transaction: the write and
// the stored response are kept together or not at all; a transaction
// refuses a claim the token does not hold; an open transaction blocks
// neither renewals, nor a duplicate's claim, nor a takeover's release, and
// commits after its claim was renewed; and after a lease taken over, at
// most one execution commits. Each check runs in its own subtest with a
// fresh store. Run the checks of [Run] on the store too.
func RunTx(t *testing.T, cfg TxConfig) {
	t.Helper()
	checks := []struct {
		name string
		f    func(*testing.T, TxConfig, idempotency.TxStore, *claims)
	}{
		{"FinishKeepsBoth", txFinishKeepsBoth},
		{"RollbackKeepsNeither", txRollbackKeepsNeither},
		{"BeginRefusesAStranger", txBeginRefusesAStranger},
		{"OpenTxBlocksNoOne", txOpenBlocksNoOne},
		{"RenewThenFinish", txRenewThenFinish},
		{"TakeoverCommitsOnce", txTakeoverCommitsOnce},
		{"TakeoverReleasesWhileTxOpen", txTakeoverReleases},
		{"FinishRacesTakeover", txFinishRacesTakeover},
	}
	for _, c := range checks {
		t.Run(c.name, func(t *testing.T) {
			c.f(t, cfg, cfg.New(t), newClaims(t))
		})
	}
}

func marker(c idempotency.Claim) string { return c.Key + "/" + c.Token }

func mustBegin(t *testing.T, s idempotency.TxStore, c idempotency.Claim) idempotency.Tx {
	t.Helper()
	tx, err := s.BeginTx(bounded(t), c)
	require.NoError(t, err, "BeginTx(%s) for the token that holds it", c.Key)
	return tx
}

func txFinishKeepsBoth(t *testing.T, cfg TxConfig, s idempotency.TxStore, cs *claims) {
	bctx := bounded(t)
	owner := cs.claim("k", "fp1")
	mustClaimIn(t, bctx, s, owner, idempotency.Claimed)
	tx := mustBegin(t, s, owner)
	cfg.Write(t, tx, marker(owner))
	assert.False(t, cfg.Kept(t, marker(owner)), "the write is not visible before the commit")
	mustClaimIn(t, bctx, s, cs.claim("k", "fp1"), idempotency.InFlight)

	want := chargeResponse()
	require.NoError(t, tx.Finish(bctx, at(owner, time.Second), want))
	assert.True(t, cfg.Kept(t, marker(owner)), "the write is kept with the response")
	res := mustClaimIn(t, bctx, s, at(cs.claim("k", "fp1"), 2*time.Second), idempotency.Finished)
	assert.Equal(t, want.StatusCode, res.Response.StatusCode)
	assert.Equal(t, want.Header, res.Response.Header)
	assert.Equal(t, want.Body, res.Response.Body, "the body is kept byte for byte")
	require.NoError(t, s.Finish(bctx, at(owner, 3*time.Second), chargeResponse()),
		"a Finish after the commit finds the record finished under its token")
}

// txRenewThenFinish: the owner's lease is renewed, on another connection,
// while its transaction is open, as the middleware does every third of the
// lease; the commit must still land.
func txRenewThenFinish(t *testing.T, cfg TxConfig, s idempotency.TxStore, cs *claims) {
	bctx := bounded(t)
	owner := cs.claim("k", "fp1")
	mustClaimIn(t, bctx, s, owner, idempotency.Claimed)
	tx := mustBegin(t, s, owner)
	cfg.Write(t, tx, marker(owner))
	require.NoError(t, s.Renew(bctx, at(owner, owner.Lease/3)))
	require.NoError(t, s.Renew(bctx, at(owner, 2*owner.Lease/3)))
	require.NoError(t, tx.Finish(bctx, at(owner, owner.Lease), chargeResponse()),
		"a transaction that saw its claim renewed still commits")
	assert.True(t, cfg.Kept(t, marker(owner)))
	mustClaimIn(t, bctx, s, at(cs.claim("k", "fp1"), owner.Lease), idempotency.Finished)
}

// txTakeoverReleases: after a takeover, the heir refuses the request
// (NotExecuted) and releases the key, while the late owner's transaction is
// still open: the release must not wait for it.
func txTakeoverReleases(t *testing.T, cfg TxConfig, s idempotency.TxStore, cs *claims) {
	bctx := bounded(t)
	late := cs.claim("k", "fp1")
	mustClaimIn(t, bctx, s, late, idempotency.Claimed)
	lateTx := mustBegin(t, s, late)
	cfg.Write(t, lateTx, marker(late))
	defer lateTx.Rollback(bctx)

	heir := at(cs.claim("k", "fp1"), late.Lease)
	mustClaimIn(t, bctx, s, heir, idempotency.Claimed)
	require.NoError(t, s.Release(bctx, heir), "the heir's release is answered while the late owner's transaction is open")
	assert.ErrorIs(t, lateTx.Finish(bctx, at(late, late.Lease), chargeResponse()), idempotency.ErrLeaseLost)
	assert.False(t, cfg.Kept(t, marker(late)))
	mustClaimIn(t, bctx, s, at(cs.claim("k", "fp2"), late.Lease), idempotency.Claimed)
}

func txRollbackKeepsNeither(t *testing.T, cfg TxConfig, s idempotency.TxStore, cs *claims) {
	bctx := bounded(t)
	owner := cs.claim("k", "fp1")
	mustClaimIn(t, bctx, s, owner, idempotency.Claimed)
	tx := mustBegin(t, s, owner)
	cfg.Write(t, tx, marker(owner))
	require.NoError(t, tx.Rollback(bctx))
	assert.False(t, cfg.Kept(t, marker(owner)), "a rolled-back write is not kept")

	// The claim is as it was, in flight for its lease, and then free: the
	// retry after a crash before the commit executes on a clean slate.
	mustClaimIn(t, bctx, s, at(cs.claim("k", "fp1"), owner.Lease-time.Millisecond), idempotency.InFlight)
	heir := at(cs.claim("k", "fp1"), owner.Lease)
	mustClaimIn(t, bctx, s, heir, idempotency.Claimed)
	tx = mustBegin(t, s, heir)
	cfg.Write(t, tx, marker(heir))
	require.NoError(t, tx.Finish(bctx, heir, chargeResponse()))
	assert.True(t, cfg.Kept(t, marker(heir)))
	assert.False(t, cfg.Kept(t, marker(owner)))
}

func txBeginRefusesAStranger(t *testing.T, cfg TxConfig, s idempotency.TxStore, cs *claims) {
	bctx := bounded(t)
	owner := cs.claim("k", "fp1")
	mustClaimIn(t, bctx, s, owner, idempotency.Claimed)
	stranger := owner
	stranger.Token = "not-the-owner"
	_, err := s.BeginTx(bctx, stranger)
	assert.ErrorIs(t, err, idempotency.ErrLeaseLost, "a token that holds no claim")

	_, err = s.BeginTx(bctx, cs.claim("never-claimed", "fp1"))
	assert.ErrorIs(t, err, idempotency.ErrLeaseLost, "a key nobody claimed")

	require.NoError(t, s.Finish(bctx, owner, chargeResponse()))
	_, err = s.BeginTx(bctx, owner)
	assert.ErrorIs(t, err, idempotency.ErrLeaseLost, "a finished claim executes nothing more")

	released := cs.claim("released", "fp1")
	mustClaimIn(t, bctx, s, released, idempotency.Claimed)
	require.NoError(t, s.Release(bctx, released))
	_, err = s.BeginTx(bctx, released)
	assert.ErrorIs(t, err, idempotency.ErrLeaseLost, "a released claim")
}

func txOpenBlocksNoOne(t *testing.T, cfg TxConfig, s idempotency.TxStore, cs *claims) {
	bctx := bounded(t)
	owner := cs.claim("k", "fp1")
	mustClaimIn(t, bctx, s, owner, idempotency.Claimed)
	tx := mustBegin(t, s, owner)
	cfg.Write(t, tx, marker(owner))
	defer tx.Rollback(bctx)

	require.NoError(t, s.Renew(bctx, at(owner, owner.Lease/2)), "the owner renews its lease while its transaction is open")
	res, err := s.Claim(bctx, at(cs.claim("k", "fp1"), owner.Lease/2))
	require.NoError(t, err, "a duplicate's claim is answered while the transaction is open")
	assert.Equal(t, idempotency.InFlight.String(), res.State.String())
	res, err = s.Claim(bctx, at(cs.claim("k", "fp2"), owner.Lease/2))
	require.NoError(t, err)
	assert.Equal(t, idempotency.Mismatch.String(), res.State.String())

	// The renewal counted: the lease now ends half a lease later.
	mustClaimIn(t, bctx, s, at(cs.claim("k", "fp1"), owner.Lease+owner.Lease/2-time.Millisecond), idempotency.InFlight)
	require.NoError(t, tx.Finish(bctx, at(owner, owner.Lease), chargeResponse()))
	assert.True(t, cfg.Kept(t, marker(owner)))
}

func txTakeoverCommitsOnce(t *testing.T, cfg TxConfig, s idempotency.TxStore, cs *claims) {
	bctx := bounded(t)
	late := cs.claim("k", "fp1")
	mustClaimIn(t, bctx, s, late, idempotency.Claimed)
	lateTx := mustBegin(t, s, late)
	cfg.Write(t, lateTx, marker(late))

	// The owner lost its lease while its handler ran: a retry takes the
	// key over, while the first transaction is still open.
	heir := at(cs.claim("k", "fp1"), late.Lease)
	res, err := s.Claim(bctx, heir)
	require.NoError(t, err, "a takeover is answered while the late owner's transaction is open")
	require.Equal(t, idempotency.Claimed.String(), res.State.String())
	heirTx, err := s.BeginTx(bctx, heir)
	require.NoError(t, err)
	cfg.Write(t, heirTx, marker(heir))

	assert.ErrorIs(t, lateTx.Finish(bctx, at(late, late.Lease), chargeResponse()), idempotency.ErrLeaseLost,
		"the late owner's commit fails")
	assert.False(t, cfg.Kept(t, marker(late)), "and keeps none of its writes")

	want := &idempotency.Response{StatusCode: http.StatusCreated, Header: http.Header{}, Body: []byte("heir")}
	require.NoError(t, heirTx.Finish(bctx, heir, want))
	assert.True(t, cfg.Kept(t, marker(heir)))
	res = mustClaimIn(t, bctx, s, at(cs.claim("k", "fp1"), late.Lease+time.Second), idempotency.Finished)
	assert.Equal(t, want.Body, res.Response.Body)
}

// txFinishRacesTakeover races a late owner's commit against a takeover of
// its key, many times: whichever wins, exactly one execution is kept, and
// a takeover that loses finds the winner's response.
func txFinishRacesTakeover(t *testing.T, cfg TxConfig, s idempotency.TxStore, cs *claims) {
	bctx := bounded(t)
	const rounds = 20
	outcomes := map[string]int{}
	for i := range rounds {
		key := fmt.Sprintf("k%d", i)
		late := cs.claim(key, "fp1")
		mustClaimIn(t, bctx, s, late, idempotency.Claimed)
		tx := mustBegin(t, s, late)
		cfg.Write(t, tx, marker(late))
		heir := at(cs.claim(key, "fp1"), late.Lease)

		var (
			wg        sync.WaitGroup
			finishErr error
			res       idempotency.Result
			claimErr  error
			start     = make(chan struct{})
		)
		wg.Add(2)
		go func() {
			defer wg.Done()
			<-start
			finishErr = tx.Finish(bctx, at(late, late.Lease), chargeResponse())
		}()
		go func() {
			defer wg.Done()
			<-start
			res, claimErr = s.Claim(bctx, heir)
		}()
		close(start)
		wg.Wait()
		require.NoError(t, claimErr)

		switch {
		case finishErr == nil:
			outcomes["commit first"]++
			assert.True(t, cfg.Kept(t, marker(late)), "round %d: the commit keeps the write", i)
			assert.Equal(t, idempotency.Finished.String(), res.State.String(),
				"round %d: a takeover that loses the race finds the committed response", i)
		default:
			outcomes["takeover first"]++
			assert.ErrorIs(t, finishErr, idempotency.ErrLeaseLost, "round %d", i)
			assert.False(t, cfg.Kept(t, marker(late)), "round %d: a failed commit keeps nothing", i)
			assert.Equal(t, idempotency.Claimed.String(), res.State.String(), "round %d", i)
		}
	}
	t.Logf("%d rounds: %v", rounds, outcomes)
}
