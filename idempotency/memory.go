package idempotency

import (
	"container/heap"
	"context"
	"encoding/binary"
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

// The layout is chosen for a store of millions of keys, where every pointer
// followed is likely a cache miss. The map is keyed by the record's id (see
// appendID) and holds entries by value, and the id and the fingerprint are
// two halves of one allocation: a lookup touches the map's slot and that one
// string, and never the response until it is replayed.
type memoryEntry struct {
	id          string // the map key, for the expiry heap
	fingerprint string // the other half of id's allocation
	token       string // owner of the lease; empty once finished
	resp        *Response
	expires     time.Time
}

type memoryShard struct {
	mu      sync.Mutex
	entries map[string]memoryEntry
	expiry  expiryHeap
}

// NewMemoryStore returns an empty in-memory store.
func NewMemoryStore() *MemoryStore {
	s := &MemoryStore{seed: maphash.MakeSeed()}
	for i := range s.shards {
		s.shards[i].entries = make(map[string]memoryEntry)
	}
	return s
}

// idBuf is room on the stack for the id of any key the middleware accepts
// under a short scope, so that a lookup does not allocate.
type idBuf [16 + MaxKeyLength]byte

// appendID appends the id of scope and key to b: the length of the scope,
// then the scope and the key, so that no two pairs share an id.
func appendID(b []byte, scope, key string) []byte {
	b = binary.AppendUvarint(b, uint64(len(scope)))
	b = append(b, scope...)
	return append(b, key...)
}

func (s *MemoryStore) shard(id []byte) *memoryShard {
	return &s.shards[maphash.Bytes(s.seed, id)%memoryShards]
}

// Claim implements [Store].
func (s *MemoryStore) Claim(_ context.Context, c Claim) (Result, error) {
	var buf idBuf
	id := appendID(buf[:0], c.Scope, c.Key)
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.sweep(c.Now)

	if e, ok := sh.entries[string(id)]; ok && c.Now.Before(e.expires) {
		switch {
		case e.fingerprint != c.Fingerprint:
			return Result{State: Mismatch}, nil
		case e.resp != nil:
			return Result{State: Finished, Response: e.resp}, nil
		default:
			return Result{State: InFlight}, nil
		}
	}
	both := string(append(id, c.Fingerprint...))
	k := both[:len(id)]
	e := memoryEntry{id: k, fingerprint: both[len(id):], token: c.Token, expires: c.Now.Add(c.Lease)}
	sh.entries[k] = e
	heap.Push(&sh.expiry, expiryItem{k, e.expires})
	return Result{State: Claimed}, nil
}

// Renew implements [Store].
func (s *MemoryStore) Renew(_ context.Context, c Claim) error {
	return s.update(c, func(e *memoryEntry) bool {
		e.expires = c.Now.Add(c.Lease)
		return true
	})
}

// Finish implements [Store]. It keeps its own copy of resp.
func (s *MemoryStore) Finish(_ context.Context, c Claim, resp *Response) error {
	stored := &Response{StatusCode: resp.StatusCode, Header: resp.Header.Clone(), Body: append([]byte(nil), resp.Body...)}
	if stored.Header == nil {
		stored.Header = http.Header{}
	}
	return s.update(c, func(e *memoryEntry) bool {
		e.token = ""
		e.resp = stored
		e.expires = c.Now.Add(c.TTL)
		return true
	})
}

// Release implements [Store].
func (s *MemoryStore) Release(_ context.Context, c Claim) error {
	return s.update(c, func(*memoryEntry) bool { return false })
}

// update applies f to the in-flight record that c.Token holds, if it still
// holds it, and keeps the result, or deletes the record when f returns
// false. A lease that ran out still counts until another request claims
// the key: nobody else executed, so the owner's result is the only one.
func (s *MemoryStore) update(c Claim, f func(*memoryEntry) bool) error {
	var buf idBuf
	id := appendID(buf[:0], c.Scope, c.Key)
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.entries[string(id)]
	if !ok || e.token != c.Token || e.resp != nil {
		return ErrLeaseLost
	}
	if !f(&e) {
		delete(sh.entries, e.id)
		return nil
	}
	sh.entries[e.id] = e
	heap.Push(&sh.expiry, expiryItem{e.id, e.expires})
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
	key     string
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
