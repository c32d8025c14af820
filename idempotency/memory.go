package idempotency

import (
	"context"
	"encoding/binary"
	"hash/maphash"
	"math"
	"math/bits"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
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

// makeRoomPasses bounds how often a claim that finds the store full looks
// for expired records to evict before it is refused (see makeRoom).
const makeRoomPasses = 2

// The default bounds of a [MemoryStore], sized for one instance.
//
// DefaultMemoryMaxBytes is the one that binds. A store filled to it with
// finished charges of 600 bytes holds about 176,000 of them, charged 1,528
// bytes each, which is what BenchmarkMemoryStoreFull measures them to take
// in the heap: the process's RSS grows by about 250 MiB, and by 290 MiB at
// its peak while the store fills. The Go runtime keeps garbage on top of
// the live heap (with GOGC=100, up to as much again before it collects), so
// a server under load should set GOMEMLIMIT with the bound in mind.
//
// DefaultMemoryMaxRecords is a backstop for a store whose bytes bound is
// raised or removed. The smallest record the middleware stores, an empty
// response, is charged about 490 bytes, so under the default bytes bound a
// store holds at most about 550,000 records; a million of them take 490 MB.
const (
	DefaultMemoryMaxRecords       = 1_000_000
	DefaultMemoryMaxBytes   int64 = 256 << 20
)

// What a record costs beyond the bytes it holds, measured on amd64 with Go
// 1.26 by BenchmarkMemoryStoreCost, with the allocator's rounding of each
// allocation on top (see allocSize):
//   - memoryRecordCost is its slot in a map (a 16-byte key, an 80-byte
//     memoryEntry and a control byte) at the load a map averages, between
//     7/16 and 7/8 full, with the allocator's waste at the end of its spans;
//   - memoryItemCost is an expiryItem (24 bytes) in a heap slice that grows
//     by a quarter when full;
//   - memoryResponseCost is a memoryResponse and the map header of its
//     Header, which is there even when empty;
//   - memoryHeaderGroupCost is the first group of a non-empty Header, room
//     for eight names, and memoryHeaderSlotCost a slot of a larger one.
//
// The map's load varies with its size, so what a record takes varies by
// about 5% either way around what it is charged.
const (
	memoryRecordCost      = 200
	memoryItemCost        = 32
	memoryResponseCost    = 48 + 48
	memoryHeaderGroupCost = 352
	memoryHeaderSlotCost  = 48
)

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
// The store is bounded, by default to [DefaultMemoryMaxBytes] and
// [DefaultMemoryMaxRecords], so that a client sending new keys in a loop
// cannot grow it until the process runs out of memory. When it is full, a
// claim that would add a record evicts expired records to make room, and
// if none have expired it fails with [ErrStoreFull]: the middleware answers
// 503 and executes nothing. A record that has not expired is never evicted,
// since the request it answers for may be retried until it does. Claims of
// keys the store holds are answered as usual when it is full.
//
// Such a client can still fill the store, and then every new key waits for
// records to expire, so limit how fast each client may send new keys in
// front of the middleware. [MemoryStore.Stats] tells how full it is.
//
// It is not a [TxStore]: its records live outside any database the
// handler writes to, so [Transaction] reports [ErrNoTransaction].
//
// The zero value is not usable; call [NewMemoryStore].
type MemoryStore struct {
	seed       maphash.Seed
	epoch      time.Time // when the store was made: what stamp counts from
	maxRecords int64     // math.MaxInt64 when unbounded
	maxBytes   int64     // math.MaxInt64 when unbounded

	// The counters change with every new record, in every shard. The
	// padding keeps them off the cache line that every call reads.
	_       [64]byte
	records atomic.Int64
	bytes   atomic.Int64
	refused atomic.Uint64
	_       [64]byte

	shards [memoryShards]memoryShard
}

// The layout is chosen for a store of millions of keys, where every pointer
// followed is likely a cache miss. The map is keyed by the record's id (see
// appendID) and holds entries by value, and the id, the fingerprint and the
// token are three parts of one allocation: a lookup touches the map's slot
// and that one string, and never the response until it is replayed.
type memoryEntry struct {
	id          string // the map key, for the expiry heap
	fingerprint string // the next part of id's allocation
	token       string // owner of the claim, kept once finished; the last part
	resp        *memoryResponse
	expires     time.Time
}

// memoryResponse is a stored response with what it costs, which is worked
// out once, so that a caller that changes the Response it was handed cannot
// make the store lose count. The middleware records every response it
// stores as one, so that a MemoryStore keeps it without another
// allocation (see finishOwned).
type memoryResponse struct {
	Response
	cost int64
}

type memoryShard struct {
	mu      sync.Mutex
	entries map[string]memoryEntry
	expiry  expiryHeap

	// next is the earliest expiry in the heap, as stamp gives it, or
	// math.MaxInt64 when it is empty. It is written under mu and read
	// without it by makeRoom, which only needs a hint of which shards hold
	// anything to evict.
	next atomic.Int64
}

// A MemoryOption configures a [MemoryStore].
type MemoryOption func(*MemoryStore)

// WithMemoryMaxRecords bounds how many records the store holds (default
// [DefaultMemoryMaxRecords]), expired ones not yet evicted included. A bound
// of zero or less removes it.
func WithMemoryMaxRecords(n int) MemoryOption {
	return func(s *MemoryStore) { s.maxRecords = bound(int64(n)) }
}

// WithMemoryMaxBytes bounds the memory the store's records hold (default
// [DefaultMemoryMaxBytes]). A bound of zero or less removes it.
//
// A record is charged what it holds in the heap: its id, fingerprint and
// token, the status, headers and body of its response, and the map slot,
// heap entries and structs that keep them, as measured for the Go runtime.
// Filling a store to the bound grows the heap by about the bound. Records
// that are evicted free their charge, but not their map slots, which the
// store keeps to reuse (Go's maps never shrink): the heap stays near its
// high-water mark, which the bound caps.
//
// The bound is checked when a claim adds a record. [MemoryStore.Finish]
// always stores its response, even when that takes the store past the
// bound, since the request has executed by then and refusing would leave
// it unanswerable for retries. The overshoot is at most the responses of
// the claims in flight when the bound was reached, each bounded by the
// middleware (see [WithMaxResponseBytes]): leave room for your concurrency
// times that bound. New claims are refused until expired records bring the
// store back under the bound.
func WithMemoryMaxBytes(n int64) MemoryOption {
	return func(s *MemoryStore) { s.maxBytes = bound(n) }
}

func bound(n int64) int64 {
	if n <= 0 {
		return math.MaxInt64
	}
	return n
}

// NewMemoryStore returns an empty in-memory store, bounded by
// [DefaultMemoryMaxRecords] and [DefaultMemoryMaxBytes] unless opts say
// otherwise.
func NewMemoryStore(opts ...MemoryOption) *MemoryStore {
	s := &MemoryStore{seed: maphash.MakeSeed(), epoch: time.Now(), maxRecords: DefaultMemoryMaxRecords, maxBytes: DefaultMemoryMaxBytes}
	for _, o := range opts {
		o(s)
	}
	for i := range s.shards {
		s.shards[i].entries = make(map[string]memoryEntry)
		s.shards[i].next.Store(math.MaxInt64)
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

func (s *MemoryStore) shardIndex(id []byte) int {
	return int(maphash.Bytes(s.seed, id) % memoryShards)
}

func (s *MemoryStore) shard(id []byte) *memoryShard {
	return &s.shards[s.shardIndex(id)]
}

// Claim implements [Store]. It returns [ErrStoreFull] if the claim would
// add a record and the store has no room for it, even after evicting
// expired records.
func (s *MemoryStore) Claim(_ context.Context, c Claim) (Result, error) {
	var buf idBuf
	id := appendID(buf[:0], c.Scope, c.Key)
	i := s.shardIndex(id)
	sh := &s.shards[i]
	size := len(id) + len(c.Fingerprint) + len(c.Token)
	cost := recordCost(size) + memoryItemCost
	for pass := 0; ; pass++ {
		sh.mu.Lock()
		s.sweep(sh, c.Now, sweepBatch)
		if e, ok := sh.entries[string(id)]; ok {
			if c.Now.Before(e.expires) {
				sh.mu.Unlock()
				switch {
				case e.fingerprint != c.Fingerprint:
					return Result{State: Mismatch}, nil
				case e.resp != nil:
					return Result{State: Finished, Response: &e.resp.Response}, nil
				default:
					return Result{State: InFlight}, nil
				}
			}
			// Expired, so its room is the new record's.
			s.remove(sh, e)
		}
		if s.reserve(cost) {
			var b strings.Builder
			b.Grow(size)
			b.Write(id)
			b.WriteString(c.Fingerprint)
			b.WriteString(c.Token)
			all := b.String()
			k, fp := len(id), len(id)+len(c.Fingerprint)
			e := memoryEntry{id: all[:k], fingerprint: all[k:fp], token: all[fp:], expires: c.Now.Add(c.Lease)}
			sh.entries[e.id] = e
			sh.push(e.id, s.stamp(e.expires))
			sh.mu.Unlock()
			return Result{State: Claimed}, nil
		}
		sh.mu.Unlock()
		// The shard lock is not held here, so that makeRoom can take the
		// others' without two claims waiting for each other's.
		if pass == makeRoomPasses || !s.makeRoom(c.Now, i, cost) {
			s.refused.Add(1)
			return Result{}, ErrStoreFull
		}
	}
}

// Renew implements [Store].
func (s *MemoryStore) Renew(_ context.Context, c Claim) error {
	var buf idBuf
	id := appendID(buf[:0], c.Scope, c.Key)
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.entries[string(id)]
	if !ok || e.token != c.Token || e.resp != nil {
		return ErrLeaseLost
	}
	e.expires = c.Now.Add(c.Lease)
	sh.entries[e.id] = e
	sh.push(e.id, s.stamp(e.expires))
	s.bytes.Add(memoryItemCost)
	return nil
}

// Finish implements [Store]. It keeps its own copy of resp, and stores it
// even if that takes the store past its bytes bound (see
// [WithMemoryMaxBytes]).
//
// A lease that ran out still counts until another request claims the key,
// or the store evicts the record to make room: nobody else executed, so the
// owner's result is the only one.
func (s *MemoryStore) Finish(_ context.Context, c Claim, resp *Response) error {
	return s.finish(c, &memoryResponse{Response: Response{
		StatusCode: resp.StatusCode,
		Header:     resp.Header.Clone(),
		Body:       append([]byte(nil), resp.Body...),
	}})
}

// finishOwned is Finish for a response that nothing else will change or
// keep, which the middleware hands over: the store keeps resp itself, with
// its header as it is, and its body too unless copying it would take less
// memory.
func (s *MemoryStore) finishOwned(c Claim, resp *memoryResponse) error {
	if int64(cap(resp.Body)) > allocSize(len(resp.Body)) {
		resp.Body = append([]byte(nil), resp.Body...)
	}
	return s.finish(c, resp)
}

// finish stores resp, which is the store's own, and works out its cost.
func (s *MemoryStore) finish(c Claim, stored *memoryResponse) error {
	if stored.Header == nil {
		stored.Header = http.Header{}
	}
	stored.cost = responseCost(&stored.Response)

	var buf idBuf
	id := appendID(buf[:0], c.Scope, c.Key)
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.entries[string(id)]
	switch {
	case !ok || e.token != c.Token:
		return ErrLeaseLost
	case e.resp != nil:
		// An earlier Finish of this claim landed and its caller never
		// heard. What it stored stays: retries may have been answered
		// with it already.
		return nil
	}
	e.resp = stored
	e.expires = c.Now.Add(c.TTL)
	sh.entries[e.id] = e
	sh.push(e.id, s.stamp(e.expires))
	s.bytes.Add(stored.cost + memoryItemCost)
	return nil
}

// Release implements [Store].
func (s *MemoryStore) Release(_ context.Context, c Claim) error {
	var buf idBuf
	id := appendID(buf[:0], c.Scope, c.Key)
	sh := s.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e, ok := sh.entries[string(id)]
	if !ok || e.token != c.Token || e.resp != nil {
		return ErrLeaseLost
	}
	s.remove(sh, e)
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

// MemoryStats is what [MemoryStore.Stats] reports.
type MemoryStats struct {
	Records int    // records held, expired ones not yet evicted included
	Bytes   int64  // what they cost, as [WithMemoryMaxBytes] charges it
	Refused uint64 // claims refused with ErrStoreFull, since the store was made

	MaxRecords int   // the records bound, or 0 if there is none
	MaxBytes   int64 // the bytes bound, or 0 if there is none
}

// Stats reports how full the store is, and how often it refused a claim for
// lack of room. It takes no lock, so it is cheap enough to export as a
// metric on every scrape; its figures may be a moment apart.
func (s *MemoryStore) Stats() MemoryStats {
	st := MemoryStats{
		Records: int(s.records.Load()),
		Bytes:   s.bytes.Load(),
		Refused: s.refused.Load(),
	}
	if s.maxRecords != math.MaxInt64 {
		st.MaxRecords = int(s.maxRecords)
	}
	if s.maxBytes != math.MaxInt64 {
		st.MaxBytes = s.maxBytes
	}
	return st
}

// reserve counts a new record of cost bytes, if the store has room for it.
// Compare-and-swap, rather than add and check, keeps the counts within the
// bounds at every moment, however many claims race for the last room.
func (s *MemoryStore) reserve(cost int64) bool {
	for {
		n := s.records.Load()
		if n >= s.maxRecords {
			return false
		}
		if s.records.CompareAndSwap(n, n+1) {
			break
		}
	}
	for {
		b := s.bytes.Load()
		if b > s.maxBytes-cost {
			s.records.Add(-1)
			return false
		}
		if s.bytes.CompareAndSwap(b, b+cost) {
			return true
		}
	}
}

func (s *MemoryStore) hasRoom(cost int64) bool {
	return s.records.Load() < s.maxRecords && s.bytes.Load() <= s.maxBytes-cost
}

// makeRoom evicts expired records, from any shard, until there is room for
// a record of cost bytes, and reports whether there is. The counts are
// global, so the expired records that make room for a key may sit in other
// shards than its own. Starting from the claim's shard spreads concurrent
// claims over the shards.
//
// It reads every shard's next expiry without a lock, and locks only the
// shards that hold expired records, where it evicts up to sweepBatch
// records each. A claim refused when nothing has expired pays 64 atomic
// loads for it. A claim calls it again only when the room it made was
// taken by another, and at most makeRoomPasses times, so no claim sweeps
// more than 128 shards, or evicts more than 1,024 records.
// Each record is evicted once, so over time the evictions cost what the
// insertions did.
func (s *MemoryStore) makeRoom(now time.Time, start int, cost int64) bool {
	t := s.stamp(now)
	for i := range memoryShards {
		sh := &s.shards[(start+i)%memoryShards]
		if sh.next.Load() > t {
			continue
		}
		sh.mu.Lock()
		s.sweep(sh, now, sweepBatch)
		sh.mu.Unlock()
		if s.hasRoom(cost) {
			return true
		}
	}
	return false
}

// sweep evicts up to limit records of sh that expired before now, and frees
// their room. Heap items whose record has since been renewed, finished,
// released or replaced are stale and are dropped without touching the
// record. sh.mu must be held.
func (s *MemoryStore) sweep(sh *memoryShard, now time.Time, limit int) {
	var freed, evicted int64
	n := 0
	t := s.stamp(now)
	for ; n < limit && len(sh.expiry) > 0 && sh.expiry[0].expires <= t; n++ {
		it := sh.pop()
		if e, ok := sh.entries[it.key]; ok && s.stamp(e.expires) == it.expires {
			delete(sh.entries, it.key)
			freed += e.cost()
			evicted++
		}
	}
	if n == 0 {
		return
	}
	s.bytes.Add(-freed - int64(n)*memoryItemCost)
	if evicted > 0 {
		s.records.Add(-evicted)
	}
}

// remove deletes e from sh and frees its room, but for its heap items,
// which are freed as they are dropped. sh.mu must be held.
func (s *MemoryStore) remove(sh *memoryShard, e memoryEntry) {
	delete(sh.entries, e.id)
	s.bytes.Add(-e.cost())
	s.records.Add(-1)
}

// cost is what e is charged, but for its heap items.
func (e *memoryEntry) cost() int64 {
	n := recordCost(len(e.id) + len(e.fingerprint) + len(e.token))
	if e.resp != nil {
		n += e.resp.cost
	}
	return n
}

// recordCost is what a record is charged whose id, fingerprint and token
// take size bytes.
func recordCost(size int) int64 {
	return memoryRecordCost + allocSize(size)
}

// responseCost is what the store is charged for keeping r, a copy made by
// Finish: its body shares nothing, and its header shares the names and
// values of the caller's, which are charged too, since the store keeps them
// alive.
func responseCost(r *Response) int64 {
	n := memoryResponseCost + int64(cap(r.Body))
	if len(r.Header) == 0 {
		return n
	}
	if len(r.Header) <= 8 {
		n += memoryHeaderGroupCost
	} else {
		// Go's map keeps at most 7/8 of a power of two slots full.
		slots := 1 << bits.Len(uint(len(r.Header)*8/7))
		n += int64(slots) * memoryHeaderSlotCost
	}
	values := 0
	for k, vs := range r.Header {
		n += allocSize(len(k))
		values += len(vs)
		for _, v := range vs {
			n += allocSize(len(v))
		}
	}
	// Clone puts every value in one slice.
	return n + allocSize(values*16)
}

// allocSize is about what the allocator hands out for n bytes: size
// classes are 16 bytes apart up to 256, and an eighth of a power of two
// apart above it, up to 32 KiB. Above, it is a whole number of pages,
// whose rounding is not worth the arithmetic.
func allocSize(n int) int64 {
	if n == 0 {
		return 0
	}
	step := 16
	if n > 256 {
		step = 1 << (bits.Len(uint(n-1)) - 3)
	}
	return int64((n + step - 1) &^ (step - 1))
}

// stamp is t as the expiry heap holds it: the nanoseconds since the store
// was made. An int64 rather than a time.Time makes a heap item 24 bytes
// rather than 40, for an item of every call that dates a record, and a
// comparison of two integers. It is not t.UnixNano: Sub measures on the
// monotonic clock when both times carry its reading, as time.Now's do, so
// the heap orders and evicts records as Claim's checks (t.Before) judge
// them, and a step of the wall clock, as NTP or a resumed VM makes, evicts
// nothing early. (Times more than 292 years from the store's making all
// stamp as the same instant.)
func (s *MemoryStore) stamp(t time.Time) int64 { return int64(t.Sub(s.epoch)) }

// expiryItem is a record's expiry in the heap, as stamp gives it.
type expiryItem struct {
	key     string
	expires int64
}

// expiryHeap is a min-heap of expiry times. It is not a container/heap,
// whose interface would move every item through an allocation.
type expiryHeap []expiryItem

// push adds an item to sh's heap. sh.mu must be held.
func (sh *memoryShard) push(key string, expires int64) {
	h := append(sh.expiry, expiryItem{key, expires})
	i := len(h) - 1
	for i > 0 {
		parent := (i - 1) / 2
		if h[i].expires >= h[parent].expires {
			break
		}
		h[i], h[parent] = h[parent], h[i]
		i = parent
	}
	sh.expiry = h
	if i == 0 {
		sh.next.Store(expires)
	}
}

// pop removes the earliest item from sh's heap, which must not be empty.
// sh.mu must be held.
func (sh *memoryShard) pop() expiryItem {
	h := sh.expiry
	it := h[0]
	last := len(h) - 1
	h[0] = h[last]
	h[last] = expiryItem{}
	h = h[:last]
	for i := 0; ; {
		least, l, r := i, 2*i+1, 2*i+2
		if l < len(h) && h[l].expires < h[least].expires {
			least = l
		}
		if r < len(h) && h[r].expires < h[least].expires {
			least = r
		}
		if least == i {
			break
		}
		h[i], h[least] = h[least], h[i]
		i = least
	}
	sh.expiry = h
	if len(h) == 0 {
		sh.next.Store(math.MaxInt64)
	} else {
		sh.next.Store(h[0].expires)
	}
	return it
}
