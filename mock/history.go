package mock

import "sync"

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

// RequestRecord is one API request in the history.
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

// history keeps the latest requests in a ring, and counts them all.
type history struct {
	mu    sync.Mutex
	limit int
	ring  []RequestRecord // grows to limit, then wraps
	next  int             // where the next record goes once full
	stats Stats
}

func (h *history) add(rec *RequestRecord) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.ring) < h.limit {
		h.ring = append(h.ring, *rec)
	} else {
		h.ring[h.next] = *rec
		h.next = (h.next + 1) % h.limit
	}
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
}

// Requests returns the latest API requests, oldest first: at most the
// history limit (see [WithHistoryLimit]). A request is recorded once its
// response is sent, so one still in flight is not there yet.
func (g *Gateway) Requests() []RequestRecord {
	h := &g.world.Load().hist
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]RequestRecord, 0, len(h.ring))
	out = append(out, h.ring[h.next:]...)
	return append(out, h.ring[:h.next]...)
}

// Stats returns the request counters.
func (g *Gateway) Stats() Stats {
	h := &g.world.Load().hist
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.stats
}
