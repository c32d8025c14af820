package idempotency

import (
	"container/heap"
	"context"
	"hash/maphash"
	"net/http"
	"sync"
	"time"
)

var _ Store = (*MemoryStore)(nil)

// memoryShards spreads keys over independent locks so that requests for
// different keys rarely wait for each other.
const memoryShards = 64

// sweepBatch bounds the expired records one call evicts, so no request pays
// for a large backlog at once; expiry still outpaces insertion, since every
// insertion sweeps.
const sweepBatch = 8

// MemoryStore is a [Store] that keeps records in the memory of one process.
// It is what tests and single-instance servers need: a key claimed on one
// instance is unknown to every other, so services that run on several
// machines need a shared store.
//
// Expired records are evicted as the store is used: each call on a shard
// evicts a few of that shard's expired records, oldest first, so memory
// follows the number of live keys. Time is whatever [Claim].Now says, which
// lets tests drive expiry with a fake clock.
//
// The zero value is not usable; call [NewMemoryStore].
type MemoryStore struct {
	seed   maphash.Seed
	shards [memoryShards]memoryShard
}

type memoryKey struct{ scope, key string }

type memoryEntry struct {
	fingerprint string
	token       string // owner of the lease; empty once finished
	resp        *Response
	expires     time.Time
}

type memoryShard struct {
	mu      sync.Mutex
	entries map[memoryKey]*memoryEntry
	expiry  expiryHeap
}

// NewMemoryStore returns an empty in-memory store.
func NewMemoryStore() *MemoryStore {
	s := &MemoryStore{seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].entries = make(map[memoryKey]*memoryEntry)
	}
	return s
}

func (s *MemoryStore) shard(k memoryKey) *memoryShard {
	var h maphash.Hash
	h.SetSeed(s.seed)
	h.WriteString(k.scope)
	h.WriteByte(0)
	h.WriteString(k.key)
	return &s.shards[h.Sum64()%memoryShards]
}

// Claim implements [Store].
func (s *MemoryStore) Claim(_ context.Context, c Claim) (Result, error) {
	k := memoryKey{c.Scope, c.Key}
	sh := s.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.sweep(c.Now)

	if e, ok := sh.entries[k]; ok && c.Now.Before(e.expires) {
		switch {
		case e.fingerprint != c.Fingerprint:
			return Result{State: Mismatch}, nil
		case e.resp != nil:
			return Result{State: Finished, Response: e.resp}, nil
		default:
			return Result{State: InFlight}, nil
		}
	}
	e := &memoryEntry{fingerprint: c.Fingerprint, token: c.Token, expires: c.Now.Add(c.Lease)}
	sh.entries[k] = e
	heap.Push(&sh.expiry, expiryItem{k, e.expires})
	return Result{State: Claimed}, nil
}

// Renew implements [Store].
func (s *MemoryStore) Renew(_ context.Context, c Claim) error {
	return s.update(c, func(sh *memoryShard, k memoryKey, e *memoryEntry) {
		e.expires = c.Now.Add(c.Lease)
		heap.Push(&sh.expiry, expiryItem{k, e.expires})
	})
}

// Finish implements [Store]. It keeps its own copy of resp.
func (s *MemoryStore) Finish(_ context.Context, c Claim, resp *Response) error {
	stored := &Response{StatusCode: resp.StatusCode, Header: resp.Header.Clone(), Body: append([]byte(nil), resp.Body...)}
	if stored.Header == nil {
		stored.Header = http.Header{}
	}
	return s.update(c, func(sh *memoryShard, k memoryKey, e *memoryEntry) {
		e.token = ""
		e.resp = stored
		e.expires = c.Now.Add(c.TTL)
		heap.Push(&sh.expiry, expiryItem{k, e.expires})
	})
}

// Release implements [Store].
func (s *MemoryStore) Release(_ context.Context, c Claim) error {
	return s.update(c, func(sh *memoryShard, k memoryKey, _ *memoryEntry) {
		delete(sh.entries, k)
	})
}

// update applies f to the in-flight record that c.Token holds, if it still
// holds it. A lease that ran out still counts until another request claims
// the key: nobody else executed, so the owner's result is the only one.
func (s *MemoryStore) update(c Claim, f func(*memoryShard, memoryKey, *memoryEntry)) error {
	k := memoryKey{c.Scope, c.Key}
	sh := s.shard(k)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.entries[k]
	if !ok || e.token != c.Token || e.resp != nil {
		return ErrLeaseLost
	}
	f(sh, k, e)
	return nil
}

// Len reports how many records the store holds, expired ones not yet
// evicted included.
func (s *MemoryStore) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.entries)
		sh.mu.Unlock()
	}
	return n
}

// sweep evicts up to sweepBatch records that expired before now. Heap items
// whose record has since been renewed, finished or replaced are stale and
// are dropped without touching the record.
func (sh *memoryShard) sweep(now time.Time) {
	for i := 0; i < sweepBatch && len(sh.expiry) > 0 && !now.Before(sh.expiry[0].expires); i++ {
		it := heap.Pop(&sh.expiry).(expiryItem)
		if e, ok := sh.entries[it.key]; ok && e.expires.Equal(it.expires) {
			delete(sh.entries, it.key)
		}
	}
}

type expiryItem struct {
	key     memoryKey
	expires time.Time
}

// expiryHeap is a min-heap of expiry times, for container/heap.
type expiryHeap []expiryItem

func (h expiryHeap) Len() int           { return len(h) }
func (h expiryHeap) Less(i, j int) bool { return h[i].expires.Before(h[j].expires) }
func (h expiryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *expiryHeap) Push(x any)        { *h = append(*h, x.(expiryItem)) }
func (h *expiryHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	old[len(old)-1] = expiryItem{}
	*h = old[:len(old)-1]
	return it
}
