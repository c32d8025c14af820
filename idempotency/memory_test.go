package idempotency_test

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/idempotency"
	"github.com/payonce/payonce/idempotency/storetest"
)

func TestMemoryStore(t *testing.T) {
	storetest.Run(t, func(*testing.T) idempotency.Store { return idempotency.NewMemoryStore() })
}

var memoryT0 = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// memoryClaim is claim number i, on a key of its own. Keys, fingerprints
// and tokens have the same length for every i below 10,000, so that records
// with responses of one size cost the same.
func memoryClaim(i int) idempotency.Claim {
	return idempotency.Claim{
		Scope:       "acct_a",
		Key:         fmt.Sprintf("key-%04d", i),
		Fingerprint: fmt.Sprintf("fp-%04d", i),
		Token:       fmt.Sprintf("token-%04d", i),
		Now:         memoryT0,
		Lease:       30 * time.Second,
		TTL:         time.Hour,
	}
}

func memoryAt(c idempotency.Claim, d time.Duration) idempotency.Claim {
	c.Now = c.Now.Add(d)
	return c
}

// bodyResponse is a response whose body is n bytes of b.
func bodyResponse(n int, b byte) *idempotency.Response {
	return &idempotency.Response{
		StatusCode: http.StatusCreated,
		Header:     http.Header{"Content-Type": {"application/json"}},
		Body:       bytes.Repeat([]byte{b}, n),
	}
}

func mustMemoryClaim(t *testing.T, s *idempotency.MemoryStore, c idempotency.Claim, want idempotency.State) idempotency.Result {
	t.Helper()
	res, err := s.Claim(context.Background(), c)
	require.NoError(t, err, "Claim(%s) at %s", c.Key, c.Now.Format(time.TimeOnly))
	require.Equal(t, want.String(), res.State.String(), "Claim(%s) at %s", c.Key, c.Now.Format(time.TimeOnly))
	return res
}

func requireFull(t *testing.T, s *idempotency.MemoryStore, c idempotency.Claim) {
	t.Helper()
	res, err := s.Claim(context.Background(), c)
	require.ErrorIs(t, err, idempotency.ErrStoreFull, "Claim(%s) answered %v", c.Key, res.State)
}

// memoryCost reports what one record costs the store: claimed, and then
// finished with resp.
func memoryCost(t *testing.T, c idempotency.Claim, resp *idempotency.Response) (claimed, finished int64) {
	t.Helper()
	s := idempotency.NewMemoryStore()
	mustMemoryClaim(t, s, c, idempotency.Claimed)
	claimed = s.Stats().Bytes
	require.NoError(t, s.Finish(context.Background(), c, resp))
	return claimed, s.Stats().Bytes
}

func TestMemoryMaxRecords(t *testing.T) {
	const n = 100
	ctx := context.Background()
	s := idempotency.NewMemoryStore(idempotency.WithMemoryMaxRecords(n), idempotency.WithMemoryMaxBytes(0))
	for i := range n {
		c := memoryClaim(i)
		mustMemoryClaim(t, s, c, idempotency.Claimed)
		if i%2 == 0 {
			require.NoError(t, s.Finish(ctx, c, bodyResponse(10, 'a')))
		}
	}

	requireFull(t, s, memoryClaim(n))
	requireFull(t, s, memoryAt(memoryClaim(n+1), 29*time.Second))
	st := s.Stats()
	assert.Equal(t, n, st.Records)
	assert.Equal(t, n, s.Len())
	assert.Equal(t, uint64(2), st.Refused)
	assert.Equal(t, n, st.MaxRecords)
	assert.Zero(t, st.MaxBytes, "no bytes bound")

	// Nothing was evicted: every key still answers, even the in-flight ones
	// whose leases are about to run out.
	for i := range n {
		c := memoryAt(memoryClaim(i), 29*time.Second)
		c.Token = "retry"
		if i%2 == 0 {
			res := mustMemoryClaim(t, s, c, idempotency.Finished)
			assert.Equal(t, bodyResponse(10, 'a').Body, res.Response.Body)
		} else {
			mustMemoryClaim(t, s, c, idempotency.InFlight)
		}
	}
	other := memoryClaim(0)
	other.Fingerprint = "another request"
	mustMemoryClaim(t, s, other, idempotency.Mismatch)
	assert.Equal(t, uint64(2), s.Stats().Refused, "answering known keys refuses nothing")

	// Releasing a claim frees its room.
	require.NoError(t, s.Release(ctx, memoryClaim(1)))
	mustMemoryClaim(t, s, memoryClaim(n), idempotency.Claimed)
	requireFull(t, s, memoryClaim(n+1))
}

func TestMemoryMaxBytes(t *testing.T) {
	const n, body = 10, 4000
	ctx := context.Background()
	claimed, finished := memoryCost(t, memoryClaim(0), bodyResponse(body, 'a'))
	require.Greater(t, claimed, int64(0))
	require.GreaterOrEqual(t, finished-claimed, int64(body), "the body is charged")
	_, larger := memoryCost(t, memoryClaim(0), bodyResponse(2*body, 'a'))
	assert.InDelta(t, body, larger-finished, body/8, "a body costs about its size")

	// Room for exactly n finished records: the last one's claim fits with
	// no room to spare for another.
	s := idempotency.NewMemoryStore(idempotency.WithMemoryMaxBytes(n * finished))
	for i := range n {
		mustMemoryClaim(t, s, memoryClaim(i), idempotency.Claimed)
		require.NoError(t, s.Finish(ctx, memoryClaim(i), bodyResponse(body, 'a'+byte(i))))
	}
	requireFull(t, s, memoryClaim(n))
	st := s.Stats()
	assert.Equal(t, n, st.Records)
	assert.Equal(t, n*finished, st.Bytes)
	assert.Equal(t, uint64(1), st.Refused)
	assert.Equal(t, n*finished, st.MaxBytes)
	assert.Equal(t, idempotency.DefaultMemoryMaxRecords, st.MaxRecords)

	for i := range n {
		c := memoryAt(memoryClaim(i), time.Minute)
		c.Token = "retry"
		res := mustMemoryClaim(t, s, c, idempotency.Finished)
		assert.Equal(t, bodyResponse(body, 'a'+byte(i)).Body, res.Response.Body)
	}
}

func TestMemoryExpiredRecordsMakeRoom(t *testing.T) {
	ctx := context.Background()
	t.Run("Finished", func(t *testing.T) {
		const n = 20
		s := idempotency.NewMemoryStore(idempotency.WithMemoryMaxRecords(n))
		for i := range n {
			mustMemoryClaim(t, s, memoryClaim(i), idempotency.Claimed)
			require.NoError(t, s.Finish(ctx, memoryClaim(i), bodyResponse(10, 'a')))
		}
		ttl := memoryClaim(0).TTL
		requireFull(t, s, memoryAt(memoryClaim(n), ttl-time.Millisecond))
		// Once they expire, every one of them is room for a new key, in
		// whichever shard it falls.
		for i := n; i < 2*n; i++ {
			mustMemoryClaim(t, s, memoryAt(memoryClaim(i), ttl), idempotency.Claimed)
		}
		requireFull(t, s, memoryAt(memoryClaim(2*n), ttl))
		assert.Equal(t, n, s.Stats().Records)
		assert.Equal(t, n, s.Len())
	})

	t.Run("OtherShards", func(t *testing.T) {
		// With room for one record, each new key needs the last key's
		// record evicted, and 63 times in 64 it sits in another shard: a
		// store that only sweeps the new key's shard fails within a few
		// rounds.
		s := idempotency.NewMemoryStore(idempotency.WithMemoryMaxRecords(1))
		for i := range 200 {
			c := memoryAt(memoryClaim(i), time.Duration(i)*time.Hour)
			mustMemoryClaim(t, s, c, idempotency.Claimed)
			require.NoError(t, s.Finish(ctx, c, bodyResponse(10, 'a')))
		}
		assert.Zero(t, s.Stats().Refused)
		assert.Equal(t, 1, s.Len())
	})

	t.Run("SameKey", func(t *testing.T) {
		s := idempotency.NewMemoryStore(idempotency.WithMemoryMaxRecords(1))
		first := memoryClaim(0)
		mustMemoryClaim(t, s, first, idempotency.Claimed)
		require.NoError(t, s.Finish(ctx, first, bodyResponse(10, 'a')))
		again := memoryAt(memoryClaim(0), first.TTL)
		again.Fingerprint = "another request"
		mustMemoryClaim(t, s, again, idempotency.Claimed)
	})

	t.Run("Lease", func(t *testing.T) {
		s := idempotency.NewMemoryStore(idempotency.WithMemoryMaxRecords(1))
		gone := memoryClaim(0)
		mustMemoryClaim(t, s, gone, idempotency.Claimed)
		requireFull(t, s, memoryAt(memoryClaim(1), gone.Lease-time.Millisecond))
		mustMemoryClaim(t, s, memoryAt(memoryClaim(1), gone.Lease), idempotency.Claimed)
		assert.ErrorIs(t, s.Finish(ctx, memoryAt(gone, gone.Lease), bodyResponse(10, 'a')), idempotency.ErrLeaseLost,
			"an expired claim evicted to make room is lost")
	})

	t.Run("Bytes", func(t *testing.T) {
		// Many small expired records make room for one that costs more.
		const n = 16
		_, small := memoryCost(t, memoryClaim(0), bodyResponse(100, 'a'))
		s := idempotency.NewMemoryStore(idempotency.WithMemoryMaxBytes(n * small))
		for i := range n {
			mustMemoryClaim(t, s, memoryClaim(i), idempotency.Claimed)
			require.NoError(t, s.Finish(ctx, memoryClaim(i), bodyResponse(100, 'a')))
		}
		requireFull(t, s, memoryClaim(n))
		big := memoryAt(memoryClaim(n), time.Hour)
		mustMemoryClaim(t, s, big, idempotency.Claimed)
		require.NoError(t, s.Finish(ctx, big, bodyResponse(int(n*small/2), 'b')))
		// The next claim needs half the expired records gone, from any
		// shards.
		mustMemoryClaim(t, s, memoryAt(memoryClaim(n+1), time.Hour), idempotency.Claimed)
		assert.LessOrEqual(t, s.Stats().Bytes, n*small)
		assert.LessOrEqual(t, s.Len(), n/2+2)
	})
}

func TestMemoryFinishOverTheBound(t *testing.T) {
	ctx := context.Background()
	claimed, _ := memoryCost(t, memoryClaim(0), bodyResponse(0, 'a'))
	s := idempotency.NewMemoryStore(idempotency.WithMemoryMaxBytes(claimed + 100))

	owner := memoryClaim(0)
	mustMemoryClaim(t, s, owner, idempotency.Claimed)
	// The request has executed: its response is stored, whatever the bound.
	require.NoError(t, s.Finish(ctx, owner, bodyResponse(10_000, 'a')))
	st := s.Stats()
	assert.Greater(t, st.Bytes, st.MaxBytes)

	requireFull(t, s, memoryClaim(1))
	retry := memoryClaim(0)
	retry.Token = "retry"
	res := mustMemoryClaim(t, s, retry, idempotency.Finished)
	assert.Equal(t, bodyResponse(10_000, 'a').Body, res.Response.Body)

	// Its expiry brings the store back under the bound.
	mustMemoryClaim(t, s, memoryAt(memoryClaim(1), owner.TTL), idempotency.Claimed)
}

func TestMemoryFinishTwice(t *testing.T) {
	ctx := context.Background()
	s := idempotency.NewMemoryStore()
	owner := memoryClaim(0)
	mustMemoryClaim(t, s, owner, idempotency.Claimed)
	require.NoError(t, s.Finish(ctx, owner, bodyResponse(10, 'a')))
	before := s.Stats()

	require.NoError(t, s.Finish(ctx, memoryAt(owner, time.Second), bodyResponse(20, 'b')),
		"Finish again for the same claim, as after a call whose answer was lost")
	assert.Equal(t, before, s.Stats(), "the second Finish stores nothing")
	retry := memoryAt(memoryClaim(0), 2*time.Second)
	retry.Token = "retry"
	res := mustMemoryClaim(t, s, retry, idempotency.Finished)
	assert.Equal(t, bodyResponse(10, 'a').Body, res.Response.Body, "the first response stays")

	assert.ErrorIs(t, s.Renew(ctx, owner), idempotency.ErrLeaseLost)
	assert.ErrorIs(t, s.Release(ctx, owner), idempotency.ErrLeaseLost)
	stranger := owner
	stranger.Token = "not-the-owner"
	assert.ErrorIs(t, s.Finish(ctx, stranger, bodyResponse(20, 'b')), idempotency.ErrLeaseLost)
	mustMemoryClaim(t, s, retry, idempotency.Finished)
	assert.Equal(t, before, s.Stats())
}

func TestMemoryUnbounded(t *testing.T) {
	ctx := context.Background()
	assert.Equal(t, idempotency.MemoryStats{
		MaxRecords: idempotency.DefaultMemoryMaxRecords,
		MaxBytes:   idempotency.DefaultMemoryMaxBytes,
	}, idempotency.NewMemoryStore().Stats())

	// A bound of zero or less removes the one an earlier option set.
	s := idempotency.NewMemoryStore(
		idempotency.WithMemoryMaxRecords(5), idempotency.WithMemoryMaxRecords(0),
		idempotency.WithMemoryMaxBytes(1000), idempotency.WithMemoryMaxBytes(-1),
	)
	const n = 50
	for i := range n {
		mustMemoryClaim(t, s, memoryClaim(i), idempotency.Claimed)
		require.NoError(t, s.Finish(ctx, memoryClaim(i), bodyResponse(1000, 'a')))
	}
	st := s.Stats()
	assert.Equal(t, n, st.Records)
	assert.Greater(t, st.Bytes, int64(n*1000))
	assert.Zero(t, st.Refused)
	assert.Zero(t, st.MaxRecords)
	assert.Zero(t, st.MaxBytes)
}

// TestMemoryConcurrentBound races claims of new keys against a small bound,
// releasing some and finishing others: the store never holds more records
// than the bound, never refuses a claim it had room for at the end, and
// never gives a key to two owners at once.
func TestMemoryConcurrentBound(t *testing.T) {
	const (
		bound      = 32
		keys       = 400
		goroutines = 8
	)
	ctx := context.Background()
	s := idempotency.NewMemoryStore(idempotency.WithMemoryMaxRecords(bound))
	var (
		owners   [keys]atomic.Int32 // current owners of each key
		finished [keys]atomic.Int32 // how often each key was finished
		claimed  atomic.Int64
		released atomic.Int64
		refused  atomic.Int64
		wg       sync.WaitGroup
	)
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range keys {
				k := (j*7 + g*50) % keys
				c := memoryClaim(k)
				c.Token = fmt.Sprintf("token-%d-%d", g, j)
				res, err := s.Claim(ctx, c)
				if err != nil {
					assert.ErrorIs(t, err, idempotency.ErrStoreFull)
					refused.Add(1)
					continue
				}
				if res.State != idempotency.Claimed {
					continue
				}
				claimed.Add(1)
				assert.Equal(t, int32(1), owners[k].Add(1), "key %d has two owners", k)
				assert.LessOrEqual(t, s.Stats().Records, bound)
				if k%3 == 0 {
					owners[k].Add(-1)
					assert.NoError(t, s.Release(ctx, c))
					released.Add(1)
				} else {
					assert.NoError(t, s.Finish(ctx, c, bodyResponse(10, 'a')))
					finished[k].Add(1)
				}
			}
		}()
	}
	wg.Wait()

	st := s.Stats()
	assert.Equal(t, bound, st.Records, "the store filled up")
	assert.Equal(t, bound, s.Len())
	assert.Equal(t, claimed.Load()-released.Load(), int64(st.Records))
	assert.Equal(t, uint64(refused.Load()), st.Refused)
	n := 0
	for k := range keys {
		require.LessOrEqual(t, finished[k].Load(), int32(1), "key %d finished twice", k)
		if finished[k].Load() == 1 {
			n++
			c := memoryClaim(k)
			c.Token = "retry"
			mustMemoryClaim(t, s, c, idempotency.Finished)
		}
	}
	assert.Equal(t, bound, n)
}

// TestMemoryRaceForTheLastRoom starts many claims of new keys at once on a
// store with room for a few: exactly that many win, however they interleave.
func TestMemoryRaceForTheLastRoom(t *testing.T) {
	const bound, racers, rounds = 4, 64, 200
	ctx := context.Background()
	for range rounds {
		s := idempotency.NewMemoryStore(idempotency.WithMemoryMaxRecords(bound))
		var wg sync.WaitGroup
		var claimed atomic.Int32
		start := make(chan struct{})
		for i := range racers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				if _, err := s.Claim(ctx, memoryClaim(i)); err == nil {
					claimed.Add(1)
				}
			}()
		}
		close(start)
		wg.Wait()
		require.Equal(t, int32(bound), claimed.Load())
		require.Equal(t, bound, s.Stats().Records)
	}
}
