package mock

import (
	"context"
	"strconv"
	"sync"
	"unicode/utf8"
)

// Outcome is what the gateway did with a request, as the history shows it.
type Outcome string

// The outcomes of a request.
const (
	// OutcomeExecuted: the request ran. For a POST its response, a stored
	// decline or business-rule error included, is stored under its key.
	OutcomeExecuted Outcome = "executed"
	// OutcomeReplayed: the stored response was sent again.
	OutcomeReplayed Outcome = "replayed"
	// OutcomeConflict: 409, the key was still in flight.
	OutcomeConflict Outcome = "conflict"
	// OutcomeMismatch: 422 (or 400), the key was used for another request.
	OutcomeMismatch Outcome = "mismatch"
	// OutcomeMissingKey: a POST came without an Idempotency-Key.
	OutcomeMissingKey Outcome = "missing_key"
	// OutcomeInvalidKey: the Idempotency-Key broke the syntax rules.
	OutcomeInvalidKey Outcome = "invalid_key"
	// OutcomeRejected: refused before anything executed, and not stored:
	// authentication, an unknown route, validation, an unknown resource,
	// a body over 1 MiB, or an idempotency store that could not answer.
	OutcomeRejected Outcome = "rejected"
	// OutcomeFault: a FailBefore, FailAfter, DropBefore or DropAfter fault
	// answered or dropped the request. (The request may have executed:
	// see RequestRecord.Fault.)
	OutcomeFault Outcome = "fault"
)

// RequestRecord is one API request in the history. Its Method and Path
// are clipped to 64 bytes and 2 KiB: a clipped one ends in
// "…[clipped from N bytes]", N being the original length.
type RequestRecord struct {
	Method         string  `json:"method"`
	Path           string  `json:"path"`
	IdempotencyKey string  `json:"idempotency_key"` // unquoted; the raw header if invalid
	Account        string  `json:"account"`         // "" if authentication failed or never ran
	Status         int     `json:"status"`          // sent to the client; 0 for a dropped connection
	Outcome        Outcome `json:"outcome"`
	// Fault names the injected fault, by hand or by chaos, that applied to
	// the request, if any. Delay and DelayAfter leave Outcome as it would
	// have been.
	Fault     FaultKind `json:"fault,omitempty"`
	RequestID string    `json:"request_id"`
}

// How much of a request's method and path the history and the log keep.
const (
	maxMethodBytes = 64
	maxPathBytes   = 2 << 10
)

// clip returns s if it is at most n bytes long, or else its first n bytes,
// cut back to a UTF-8 boundary, followed by a note of the original length.
func clip(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && cut > n-utf8.UTFMax && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…[clipped from " + strconv.Itoa(len(s)) + " bytes]"
}

// recordOverhead is what a record costs beyond the bytes of its strings:
// the struct and its string headers, rounded up.
const recordOverhead = 256

func (rec *RequestRecord) size() int {
	return recordOverhead + len(rec.Method) + len(rec.Path) + len(rec.IdempotencyKey) + len(rec.Account) +
		len(rec.Outcome) + len(rec.Fault) + len(rec.RequestID)
}

// Stats counts the API requests since the gateway started or was reset.
// The control surface and /healthz are not counted.
type Stats struct {
	Requests   int64 `json:"requests"`
	Executed   int64 `json:"executed"`
	Replayed   int64 `json:"replayed"`
	Conflicts  int64 `json:"conflicts"`
	Mismatches int64 `json:"mismatches"`
	MissingKey int64 `json:"missing_key"`
	InvalidKey int64 `json:"invalid_key"`
	Rejected   int64 `json:"rejected"`
	// Faults counts the requests an injected fault applied to, delays
	// included.
	Faults int64 `json:"faults"`
}

// history keeps the latest requests in a ring, bounded both in count and
// in bytes, and counts them all.
type history struct {
	mu       sync.Mutex
	limit    int // records
	maxBytes int
	ring     []RequestRecord // a circular buffer; grows up to limit
	first, n int             // the oldest record, and how many are kept
	bytes    int             // the size of the n records kept
	stats    Stats
	changed  chan struct{} // closed, and replaced, whenever stats change; nil until a WaitStats
}

func (h *history) add(rec *RequestRecord) {
	h.mu.Lock()
	defer h.mu.Unlock()
	size := rec.size()
	for h.n > 0 && (h.n == h.limit || h.bytes+size > h.maxBytes) {
		h.bytes -= h.ring[h.first].size()
		h.ring[h.first] = RequestRecord{}
		h.first = (h.first + 1) % len(h.ring)
		h.n--
	}
	if h.n == len(h.ring) { // full but under limit: grow, oldest first
		grown := make([]RequestRecord, h.n, min(max(2*h.n, 64), h.limit))
		copy(grown, h.ring[h.first:])
		copy(grown[len(h.ring)-h.first:], h.ring[:h.first])
		h.ring, h.first = grown[:cap(grown)], 0
	}
	h.ring[(h.first+h.n)%len(h.ring)] = *rec
	h.n++
	h.bytes += size
	s := &h.stats
	s.Requests++
	switch rec.Outcome {
	case OutcomeExecuted:
		s.Executed++
	case OutcomeReplayed:
		s.Replayed++
	case OutcomeConflict:
		s.Conflicts++
	case OutcomeMismatch:
		s.Mismatches++
	case OutcomeMissingKey:
		s.MissingKey++
	case OutcomeInvalidKey:
		s.InvalidKey++
	case OutcomeRejected:
		s.Rejected++
	}
	if rec.Fault != "" {
		s.Faults++
	}
	if h.changed != nil {
		close(h.changed)
		h.changed = nil
	}
}

// Requests returns the latest API requests, oldest first: at most the
// history limit (see [WithHistoryLimit]), and at most the history's bytes
// (see [WithHistoryBytes]). A request is recorded once its response is
// sent, so one still in flight is not there yet.
func (g *Gateway) Requests() []RequestRecord {
	h := &g.world.Load().hist
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]RequestRecord, h.n)
	for i := range h.n {
		out[i] = h.ring[(h.first+i)%len(h.ring)]
	}
	return out
}

// WaitStats waits until the request counters satisfy ok, and returns them,
// or returns ctx's error once ctx ends. A test uses it to act at an exact
// moment, such as releasing a held request once another has been answered
// 409, without polling. A [Gateway.Reset] during the wait leaves it
// watching the counters from before the reset.
func (g *Gateway) WaitStats(ctx context.Context, ok func(Stats) bool) (Stats, error) {
	h := &g.world.Load().hist
	for {
		h.mu.Lock()
		st := h.stats
		if ok(st) {
			h.mu.Unlock()
			return st, nil
		}
		if h.changed == nil {
			h.changed = make(chan struct{})
		}
		changed := h.changed
		h.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return st, ctx.Err()
		}
	}
}

// Stats returns the request counters.
func (g *Gateway) Stats() Stats {
	h := &g.world.Load().hist
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stats
}
