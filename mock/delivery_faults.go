package mock

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// DeliveryFaultKind names what a [DeliveryFault] does to a webhook
// delivery. Each breaks an assumption a receiver must not make: that an
// event arrives once, in order, one at a time, and that a 2xx it sent was
// heard.
type DeliveryFaultKind string

// The kinds of delivery fault.
const (
	// DuplicateDelivery delivers the event Copies more times, each copy a
	// delivery of its own (retried until it gets a 2xx): all at once if
	// Spacing is 0, else Spacing apart on the gateway's clock.
	DuplicateDelivery DeliveryFaultKind = "duplicate"
	// DelayDelivery holds the event's first attempt for Delay, on the
	// gateway's clock, so that later events overtake it.
	DelayDelivery DeliveryFaultKind = "delay"
	// ConcurrentCopy sends a copy of the event the moment the first
	// attempt's request has been written, while the endpoint is still
	// processing it.
	ConcurrentCopy DeliveryFaultKind = "concurrent_copy"
	// DropAnswer ignores the endpoint's answer to the first attempt, 2xx
	// included, so that the event, processed once, is delivered again
	// after the backoff.
	DropAnswer DeliveryFaultKind = "drop_answer"
)

// A DeliveryFault is injected with [Gateway.InjectDeliveryFault] and
// applies to the next Times deliveries (an event to an endpoint) that
// match its EventType and Endpoint, when the event is created. When
// several match, the one injected first applies. A delivery gets at most
// one fault; the copies a fault makes get none.
//
// Over HTTP (POST /_mock/delivery_faults) it is the JSON object
// {"kind","event_type","endpoint","times","copies","spacing_ms","delay_ms"}.
type DeliveryFault struct {
	Kind DeliveryFaultKind
	// EventType matches the event's type: exactly, or as a prefix if it
	// ends in "*" ("charge.*"). "" and "*" match any.
	EventType string
	// Endpoint matches the endpoint's id (we_…); "" matches any.
	Endpoint string
	// Times is how many deliveries the fault applies to (default 1).
	Times int
	// Copies is how many extra copies DuplicateDelivery sends (default 1).
	Copies int
	// Spacing is the time between DuplicateDelivery's copies, on the
	// gateway's clock; 0 sends them all at once. The last copy may come at
	// most [MaxDeliveryFaultDelay] after the event.
	Spacing time.Duration
	// Delay is how long DelayDelivery holds the first attempt, on the
	// gateway's clock (default [DefaultFaultDelay], at most
	// [MaxDeliveryFaultDelay]).
	Delay time.Duration
}

// Bounds of a DeliveryFault. Its times run on the gateway's clock, which
// a test moves at will, so they may be long.
const (
	maxDeliveryCopies     = 100
	MaxDeliveryFaultDelay = DefaultDeliveryMaxAge
)

func (f DeliveryFault) normalize() (DeliveryFault, error) {
	if f.Times < 0 || f.Copies < 0 || f.Spacing < 0 || f.Delay < 0 {
		return f, errors.New("mock: delivery fault times, copies, spacing and delay must not be negative")
	}
	if f.Times == 0 {
		f.Times = 1
	}
	if f.EventType == "*" {
		f.EventType = ""
	}
	switch f.Kind {
	case DuplicateDelivery:
		if f.Delay != 0 {
			return f, errors.New("mock: a duplicate delivery fault does not delay: use spacing")
		}
		if f.Copies == 0 {
			f.Copies = 1
		}
		if f.Copies > maxDeliveryCopies {
			return f, fmt.Errorf("mock: at most %d copies", maxDeliveryCopies)
		}
		if f.Spacing > MaxDeliveryFaultDelay/time.Duration(f.Copies) { // Copies*Spacing, which may overflow
			return f, fmt.Errorf("mock: delivery fault copies spaced over %v", MaxDeliveryFaultDelay)
		}
	case DelayDelivery:
		if f.Copies != 0 || f.Spacing != 0 {
			return f, errors.New("mock: a delay delivery fault makes no copies")
		}
		if f.Delay == 0 {
			f.Delay = DefaultFaultDelay
		}
		if f.Delay > MaxDeliveryFaultDelay {
			return f, fmt.Errorf("mock: delivery fault delay over %v", MaxDeliveryFaultDelay)
		}
	case ConcurrentCopy, DropAnswer:
		if f.Copies != 0 || f.Spacing != 0 || f.Delay != 0 {
			return f, fmt.Errorf("mock: a %s delivery fault takes no copies, spacing or delay", f.Kind)
		}
	default:
		return f, fmt.Errorf("mock: unknown delivery fault kind %q (want duplicate, delay, concurrent_copy or drop_answer)", f.Kind)
	}
	return f, nil
}

func (f *DeliveryFault) matches(typ, endpoint string) bool {
	return (f.EventType == "" || eventTypeMatches(f.EventType, typ)) && (f.Endpoint == "" || f.Endpoint == endpoint)
}

type deliveryFaultJSON struct {
	Kind      DeliveryFaultKind `json:"kind"`
	EventType string            `json:"event_type"`
	Endpoint  string            `json:"endpoint"`
	Times     int               `json:"times"`
	Copies    int               `json:"copies,omitempty"`
	SpacingMS int64             `json:"spacing_ms,omitempty"`
	DelayMS   int64             `json:"delay_ms,omitempty"`
}

// MarshalJSON encodes f as the control surface shows it.
func (f DeliveryFault) MarshalJSON() ([]byte, error) {
	return json.Marshal(deliveryFaultJSON{Kind: f.Kind, EventType: f.EventType, Endpoint: f.Endpoint, Times: f.Times,
		Copies: f.Copies, SpacingMS: f.Spacing.Milliseconds(), DelayMS: f.Delay.Milliseconds()})
}

// UnmarshalJSON decodes f as POST /_mock/delivery_faults takes it. Unknown
// fields are an error.
func (f *DeliveryFault) UnmarshalJSON(data []byte) error {
	var j deliveryFaultJSON
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&j); err != nil {
		return err
	}
	limit := MaxDeliveryFaultDelay.Milliseconds()
	if j.SpacingMS < 0 || j.DelayMS < 0 || j.SpacingMS > limit || j.DelayMS > limit {
		return errors.New("mock: spacing_ms or delay_ms out of range")
	}
	*f = DeliveryFault{Kind: j.Kind, EventType: j.EventType, Endpoint: j.Endpoint, Times: j.Times, Copies: j.Copies,
		Spacing: time.Duration(j.SpacingMS) * time.Millisecond, Delay: time.Duration(j.DelayMS) * time.Millisecond}
	return nil
}

// InjectDeliveryFault adds f after the delivery faults already pending. It
// returns an error, and adds nothing, if f is invalid.
func (g *Gateway) InjectDeliveryFault(f DeliveryFault) error {
	f, err := f.normalize()
	if err != nil {
		return err
	}
	g.world.Load().hooks.dl.faults.add(f)
	return nil
}

// ClearDeliveryFaults removes every pending delivery fault. Delivery chaos
// stays as it is.
func (g *Gateway) ClearDeliveryFaults() {
	g.world.Load().hooks.dl.faults.clear()
}

// DeliveryFaults returns the pending delivery faults, with the uses they
// have left.
func (g *Gateway) DeliveryFaults() []DeliveryFault {
	return g.world.Load().hooks.dl.faults.list()
}

// SetDeliveryChaos turns delivery chaos on with the given rate and seed,
// or off with rate 0. See [WithDeliveryChaos].
func (g *Gateway) SetDeliveryChaos(rate float64, seed int64) error {
	if err := checkRate(rate); err != nil {
		return err
	}
	g.world.Load().hooks.dl.chaos.set(rate, seed)
	return nil
}

// WithDeliveryChaos turns delivery chaos on from the start: each delivery
// that no injected delivery fault took gets, with probability rate, a
// fault drawn with equal odds from: two copies at once (duplicate), one
// copy 50 ms later (duplicate), a 50 ms delay, a concurrent copy, and a
// dropped answer. The draws come from a generator seeded with seed, in
// the order deliveries are scheduled, so the same seed and the same
// events in the same order get the same faults. [Gateway.Reset] restarts
// it with this rate and seed.
func WithDeliveryChaos(rate float64, seed int64) Option {
	return func(c *config) error {
		if err := checkRate(rate); err != nil {
			return err
		}
		c.hooks.chaosRate, c.hooks.chaosSeed = rate, seed
		return nil
	}
}

// deliveryFaultSet holds the pending delivery faults, oldest first.
type deliveryFaultSet struct {
	n       atomic.Int32
	mu      sync.Mutex
	pending []*DeliveryFault
}

func (s *deliveryFaultSet) add(f DeliveryFault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = append(s.pending, &f)
	s.n.Store(int32(len(s.pending)))
}

func (s *deliveryFaultSet) clear() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending = nil
	s.n.Store(0)
}

func (s *deliveryFaultSet) list() []DeliveryFault {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]DeliveryFault, len(s.pending))
	for i, f := range s.pending {
		out[i] = *f
	}
	return out
}

// match consumes one use of the first pending fault for a delivery of an
// event of type typ to endpoint.
func (s *deliveryFaultSet) match(typ, endpoint string) *DeliveryFault {
	if s.n.Load() == 0 {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, f := range s.pending {
		if !f.matches(typ, endpoint) {
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

// chaosDeliveryDelay is the delay and the spacing of the faults delivery
// chaos draws: short, so that a suite under chaos settles fast.
const chaosDeliveryDelay = 50 * time.Millisecond

// deliveryChaos draws random delivery faults from a seeded generator.
type deliveryChaos struct {
	mu   sync.Mutex
	rate float64
	seed int64
	rng  *rand.Rand
}

func (c *deliveryChaos) set(rate float64, seed int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rate, c.seed = rate, seed
	c.rng = rand.New(rand.NewPCG(uint64(seed), 0x9e3779b97f4a7c15))
}

func (c *deliveryChaos) settings() (float64, int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.rate, c.seed
}

// draw returns a fault for the next delivery, or nil.
func (c *deliveryChaos) draw() *DeliveryFault {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.rate == 0 || c.rng.Float64() >= c.rate {
		return nil
	}
	var f DeliveryFault
	switch c.rng.IntN(5) {
	case 0:
		f = DeliveryFault{Kind: DuplicateDelivery, Copies: 2}
	case 1:
		f = DeliveryFault{Kind: DuplicateDelivery, Copies: 1, Spacing: chaosDeliveryDelay}
	case 2:
		f = DeliveryFault{Kind: DelayDelivery, Delay: chaosDeliveryDelay}
	case 3:
		f = DeliveryFault{Kind: ConcurrentCopy}
	default:
		f = DeliveryFault{Kind: DropAnswer}
	}
	f.Times = 1
	return &f
}
