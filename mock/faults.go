package mock

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FaultKind names what a [Fault] does to a request.
type FaultKind string

// The kinds of fault. "Before" and "after" refer to the moment the request
// executes and its response is stored under its idempotency key.
const (
	// FailBefore answers Fault.Status without executing or storing
	// anything: the key stays free.
	FailBefore FaultKind = "fail_before"
	// FailAfter executes the request and stores its real response, then
	// answers Fault.Status instead. A retry with the key gets the real one.
	FailAfter FaultKind = "fail_after"
	// DropBefore closes the connection without executing anything.
	DropBefore FaultKind = "drop_before"
	// DropAfter executes and stores, then closes the connection without an
	// answer.
	DropAfter FaultKind = "drop_after"
	// Delay holds the request once its key is claimed, before it executes:
	// identical requests meanwhile get 409, different ones 422.
	Delay FaultKind = "delay"
	// DelayAfter executes and stores, then holds the response, so that a
	// client's timeout strikes after the commit.
	DelayAfter FaultKind = "delay_after"
)

// Defaults of a [Fault]'s fields.
const (
	DefaultFaultStatus = http.StatusInternalServerError
	DefaultFaultDelay  = time.Second
	// MaxFaultDelay bounds Fault.Delay, so a typo cannot hang a suite.
	MaxFaultDelay = 10 * time.Minute
)

// A Fault is injected with [Gateway.InjectFault] and applies to the next
// Times requests that match its Method and Path. When several faults match
// a request, the one injected first applies. Faults never apply to the
// control surface or /healthz.
//
// Over HTTP (POST /_mock/faults) a Fault is the JSON object
// {"kind","method","path","times","status","retry_after","delay_ms"}, with
// RetryAfter in whole seconds and Delay in milliseconds; Release and Holding
// exist only in Go.
type Fault struct {
	Kind FaultKind
	// Method matches the request method; "" matches any.
	Method string
	// Path matches the request path exactly or, if it ends in "*", as a
	// prefix: "/v1/charges*" matches every charge route. "" matches any.
	Path string
	// Times is how many requests the fault applies to (default 1).
	Times int
	// Status is the status FailBefore and FailAfter answer (default
	// [DefaultFaultStatus]). 429 gets a rate_limit_error/rate_limited body,
	// any other status an api_error/fault_injected one.
	Status int
	// RetryAfter, if positive, is sent as Retry-After, in whole seconds
	// rounded up (FailBefore, FailAfter).
	RetryAfter time.Duration
	// Delay is how long Delay and DelayAfter hold a request (default
	// [DefaultFaultDelay], or no time limit when Release is set).
	Delay time.Duration
	// Release, if set, holds Delay and DelayAfter requests until it is
	// closed, so that a test decides exactly when they go on.
	Release <-chan struct{}
	// Holding, if set, receives a value each time a Delay or DelayAfter
	// fault starts holding a request, so that a test knows the request got
	// that far. The send blocks until received (or the request ends), so
	// receive from it or give it a buffer.
	Holding chan<- struct{}
}

// normalize checks f and fills in its defaults.
func (f Fault) normalize() (Fault, error) {
	f.Method = strings.ToUpper(f.Method)
	if f.Times < 0 {
		return f, fmt.Errorf("mock: fault times must not be negative, got %d", f.Times)
	}
	if f.Times == 0 {
		f.Times = 1
	}
	if f.Status < 0 || f.RetryAfter < 0 || f.Delay < 0 {
		return f, errors.New("mock: fault status, retry_after and delay must not be negative")
	}
	if f.Path != "" && !strings.HasPrefix(f.Path, "/") {
		return f, fmt.Errorf("mock: fault path %q does not start with /", f.Path)
	}
	switch f.Kind {
	case FailBefore, FailAfter:
		if f.Delay != 0 || f.Release != nil || f.Holding != nil {
			return f, fmt.Errorf("mock: a %s fault does not delay", f.Kind)
		}
		if f.Status == 0 {
			f.Status = DefaultFaultStatus
		}
		if f.Status < 400 || f.Status > 599 {
			return f, fmt.Errorf("mock: fault status must be 4xx or 5xx, got %d", f.Status)
		}
	case DropBefore, DropAfter, Delay, DelayAfter:
		if f.Status != 0 || f.RetryAfter != 0 {
			return f, fmt.Errorf("mock: a %s fault sends no status or Retry-After", f.Kind)
		}
		if f.Kind == DropBefore || f.Kind == DropAfter {
			if f.Delay != 0 || f.Release != nil || f.Holding != nil {
				return f, fmt.Errorf("mock: a %s fault does not delay", f.Kind)
			}
			break
		}
		if f.Delay == 0 && f.Release == nil {
			f.Delay = DefaultFaultDelay
		}
		if f.Delay > MaxFaultDelay {
			return f, fmt.Errorf("mock: fault delay over %v", MaxFaultDelay)
		}
	default:
		return f, fmt.Errorf("mock: unknown fault kind %q (want fail_before, fail_after, drop_before, drop_after, delay or delay_after)", f.Kind)
	}
	return f, nil
}

func (f *Fault) matches(r *http.Request) bool {
	if f.Method != "" && f.Method != r.Method {
		return false
	}
	if prefix, ok := strings.CutSuffix(f.Path, "*"); ok {
		return strings.HasPrefix(r.URL.Path, prefix)
	}
	return f.Path == "" || f.Path == r.URL.Path
}

// faultJSON is a Fault on the wire.
type faultJSON struct {
	Kind       FaultKind `json:"kind"`
	Method     string    `json:"method"`
	Path       string    `json:"path"`
	Times      int       `json:"times"`
	Status     int       `json:"status,omitempty"`
	RetryAfter int64     `json:"retry_after,omitempty"`
	DelayMS    int64     `json:"delay_ms,omitempty"`
}

// MarshalJSON encodes f as the control surface shows it.
func (f Fault) MarshalJSON() ([]byte, error) {
	return json.Marshal(faultJSON{
		Kind: f.Kind, Method: f.Method, Path: f.Path, Times: f.Times, Status: f.Status,
		RetryAfter: int64(retryAfterSeconds(f.RetryAfter)), DelayMS: f.Delay.Milliseconds(),
	})
}

// UnmarshalJSON decodes f as POST /_mock/faults takes it. Unknown fields
// are an error.
func (f *Fault) UnmarshalJSON(data []byte) error {
	var j faultJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return err
	}
	if j.RetryAfter < 0 || j.DelayMS < 0 || j.DelayMS > MaxFaultDelay.Milliseconds() || j.RetryAfter > 1<<31 {
		return errors.New("mock: retry_after or delay_ms out of range")
	}
	*f = Fault{
		Kind: j.Kind, Method: j.Method, Path: j.Path, Times: j.Times, Status: j.Status,
		RetryAfter: time.Duration(j.RetryAfter) * time.Second, Delay: time.Duration(j.DelayMS) * time.Millisecond,
	}
	return nil
}

func retryAfterSeconds(d time.Duration) int {
	if d <= 0 {
		return 0
	}
	return int((d + time.Second - 1) / time.Second)
}

// InjectFault adds f after the faults already pending. It returns an error,
// and adds nothing, if f is invalid.
func (g *Gateway) InjectFault(f Fault) error {
	f, err := f.normalize()
	if err != nil {
		return err
	}
	g.world.Load().faults.add(f)
	return nil
}

// ClearFaults removes every pending fault. Chaos stays as it is.
func (g *Gateway) ClearFaults() {
	g.world.Load().faults.clear()
}

// SetChaos turns chaos on with the given rate and seed, or off with rate 0.
// See [WithChaos].
func (g *Gateway) SetChaos(rate float64, seed int64) error {
	if err := checkRate(rate); err != nil {
		return err
	}
	g.world.Load().chaos.set(rate, seed)
	return nil
}

// faultSet holds the pending faults, oldest first.
type faultSet struct {
	n       atomic.Int32 // len(pending), read without the lock
	mu      sync.Mutex
	pending []*Fault // Times counts down
}

func (s *faultSet) add(f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = append(s.pending, &f)
	s.n.Store(int32(len(s.pending)))
}

func (s *faultSet) clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = nil
	s.n.Store(0)
}

// match consumes one use of the first pending fault that matches r, among
// the delay faults (Delay) if delay is true, or the others if false.
func (s *faultSet) match(r *http.Request, delay bool) *Fault {
	if s.n.Load() == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.pending {
		if (f.Kind == Delay) != delay || !f.matches(r) {
			continue
		}
		hit := *f
		if f.Times--; f.Times == 0 {
			s.pending = append(s.pending[:i:i], s.pending[i+1:]...)
			s.n.Store(int32(len(s.pending)))
		}
		return &hit
	}
	return nil
}

func (s *faultSet) list() []Fault {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Fault, len(s.pending))
	for i, f := range s.pending {
		out[i] = *f
	}
	return out
}

// chaos draws random faults for a fraction of POSTs. Each draw hashes the
// seed with the request and its attempt number (see [WithChaos]), so that
// the order in which requests arrive does not matter.
type chaos struct {
	on   atomic.Bool
	mu   sync.Mutex
	rate float64
	seed int64
	// attempts counts the POSTs chaos has seen per request identity, in two
	// generations: when cur fills, it becomes old and a new cur starts, so
	// memory stays bounded and a key retried recently keeps its count.
	cur, old map[[sha256.Size]byte]uint64
}

// chaosGeneration is how many request identities one generation of
// attempt counts holds.
const chaosGeneration = 1 << 16

// numChaosFaults is how many faults chaos picks from.
const numChaosFaults = 6

// chaosFault returns the i-th fault chaos picks from, with equal odds. None
// delays, so that suites under chaos stay fast.
func chaosFault(i int) Fault {
	switch i {
	case 0:
		return Fault{Kind: FailBefore, Status: http.StatusServiceUnavailable, Times: 1}
	case 1:
		return Fault{Kind: FailBefore, Status: http.StatusTooManyRequests, RetryAfter: time.Second, Times: 1}
	case 2:
		return Fault{Kind: FailAfter, Status: http.StatusInternalServerError, Times: 1}
	case 3:
		return Fault{Kind: DropBefore, Times: 1}
	case 4:
		return Fault{Kind: DropAfter, Times: 1}
	default:
		return Fault{Kind: FailAfter, Status: http.StatusServiceUnavailable, Times: 1}
	}
}

func (c *chaos) set(rate float64, seed int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rate, c.seed = rate, seed
	c.cur, c.old = nil, nil
	c.on.Store(rate > 0)
}

// draw decides r's chaos fault, if any.
func (c *chaos) draw(r *http.Request) *Fault {
	if !c.on.Load() {
		return nil
	}
	id := requestIdentity(r)
	c.mu.Lock()
	if c.rate == 0 {
		c.mu.Unlock()
		return nil
	}
	rate, seed := c.rate, c.seed
	attempt := c.attempt(id)
	c.mu.Unlock()

	var b [sha256.Size + 16]byte
	copy(b[:], id[:])
	binary.BigEndian.PutUint64(b[sha256.Size:], uint64(seed))
	binary.BigEndian.PutUint64(b[sha256.Size+8:], attempt)
	sum := sha256.Sum256(b[:])
	u := float64(binary.BigEndian.Uint64(sum[:8])>>11) / (1 << 53) // uniform in [0, 1)
	if u >= rate {
		return nil
	}
	f := chaosFault(int(binary.BigEndian.Uint64(sum[8:16]) % numChaosFaults))
	return &f
}

// attempt returns how many times chaos has seen id before, and counts this
// time. c.mu must be held.
func (c *chaos) attempt(id [sha256.Size]byte) uint64 {
	n, ok := c.cur[id]
	if !ok {
		n = c.old[id]
		if len(c.cur) >= chaosGeneration {
			c.old, c.cur = c.cur, nil
		}
		if c.cur == nil {
			c.cur = make(map[[sha256.Size]byte]uint64)
		}
	}
	c.cur[id] = n + 1
	return n
}

// requestIdentity is a digest of what tells one POST from another before
// authentication: its Authorization header (so accounts never share
// counts), method, path and Idempotency-Key. Each field is length-prefixed,
// so no two requests run together.
func requestIdentity(r *http.Request) [sha256.Size]byte {
	h := sha256.New()
	for _, s := range []string{r.Header.Get("Authorization"), r.Method, r.URL.Path, r.Header.Get("Idempotency-Key")} {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		io.WriteString(h, s)
	}
	var id [sha256.Size]byte
	h.Sum(id[:0])
	return id
}

func (c *chaos) settings() (rate float64, seed int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rate, c.seed
}

// outerFault picks the fault of the outer layer for r: an injected one, or
// else one from chaos if r is a POST.
func (w *world) outerFault(r *http.Request) *Fault {
	if f := w.faults.match(r, false); f != nil {
		return f
	}
	if r.Method == http.MethodPost {
		return w.chaos.draw(r)
	}
	return nil
}

// writeFault answers with f's status and error body.
func writeFault(w http.ResponseWriter, f *Fault) {
	if s := retryAfterSeconds(f.RetryAfter); s > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(s))
	}
	e := &apiError{Status: f.Status, Type: apiErrorType, Code: "fault_injected",
		Message: "injected " + string(f.Kind) + " fault (" + strconv.Itoa(f.Status) + ")"}
	if f.Status == http.StatusTooManyRequests {
		e.Type, e.Code = rateLimitError, "rate_limited"
	}
	writeError(w, e)
}

// hold waits as a Delay or DelayAfter fault says, or until ctx ends or the
// server closes.
func (g *Gateway) hold(ctx context.Context, f *Fault) {
	if f.Holding != nil {
		select {
		case f.Holding <- struct{}{}:
		case <-ctx.Done():
			return
		case <-g.stop:
			return
		}
	}
	var timeout <-chan time.Time
	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case <-f.Release: // a nil channel: wait for the others
	case <-timeout:
	case <-ctx.Done():
	case <-g.stop:
	}
}
