package mock

import (
	"bytes"
	"cmp"
	"container/heap"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/payonce/payonce/webhook"
)

// Delivery (docs/protocol.md §10.3): every event is POSTed, signed, to each
// enabled endpoint of its account that wants it, at least once: an attempt
// that gets no 2xx is retried with exponential backoff, on the gateway's
// clock, until one does or the policy gives up. Deliveries run
// concurrently, in no promised order, on goroutines that start with the
// first delivery and end with [Gateway.Close] (or [Server.Close]) or a
// [Gateway.Reset].

// Defaults of a [DeliveryPolicy].
const (
	DefaultDeliveryAttempts    = 8
	DefaultDeliveryMaxAge      = 72 * time.Hour
	DefaultDeliveryTimeout     = 10 * time.Second
	DefaultDeliveryConcurrency = 32
)

// maxAnswerBytes bounds how much of an endpoint's answer is read.
const maxAnswerBytes = 64 << 10

// DeliveryPolicy says how webhook deliveries are retried. Its zero fields
// take the defaults.
type DeliveryPolicy struct {
	// MaxAttempts is how many attempts a delivery gets before it is given
	// up (default [DefaultDeliveryAttempts]).
	MaxAttempts int
	// MaxAge gives up a delivery whose next attempt would come later than
	// this after its event was created, on the gateway's clock (default
	// [DefaultDeliveryMaxAge], Stripe's three days).
	MaxAge time.Duration
	// Backoff returns how long to wait, on the gateway's clock, after the
	// attempt-th failed attempt (1 for the first); default
	// [DefaultDeliveryBackoff]. Return 0 to retry at once.
	Backoff func(attempt int) time.Duration
	// Timeout bounds one attempt, answer included (default
	// [DefaultDeliveryTimeout]).
	Timeout time.Duration
	// Concurrency bounds the attempts in flight at once (default
	// [DefaultDeliveryConcurrency]).
	Concurrency int
}

// DefaultDeliveryBackoff waits 1 s after the first failed attempt, and
// twice as long after each one after it, up to an hour.
func DefaultDeliveryBackoff(attempt int) time.Duration {
	if attempt < 1 {
		attempt = 1
	}
	if attempt > 13 {
		return time.Hour
	}
	return min(time.Second<<(attempt-1), time.Hour)
}

// hookConfig is the webhook part of a gateway's config.
type hookConfig struct {
	remote      bool
	policy      DeliveryPolicy
	chaosRate   float64
	chaosSeed   int64
	policySet   bool
	eventLimit  int // 0: DefaultEventLimit
	recordLimit int // 0: DefaultDeliveryRecordLimit
}

// DefaultDeliveryRecordLimit is how many delivery attempts
// [Gateway.Deliveries] keeps by default, as [DefaultHistoryLimit] is for
// requests.
const DefaultDeliveryRecordLimit = DefaultHistoryLimit

// WithDeliveryRecordLimit sets how many of the latest delivery attempts
// [Gateway.Deliveries] and GET /_mock/deliveries keep (default
// [DefaultDeliveryRecordLimit]). Older ones are forgotten, oldest first, so
// that a long-running gateway stays bounded; [Gateway.DeliveryStats]
// counts them all.
func WithDeliveryRecordLimit(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("mock: delivery record limit must be positive, got %d", n)
		}
		c.hooks.recordLimit = n
		return nil
	}
}

// WithDeliveryPolicy sets how webhook deliveries are retried and bounded.
// A test that wants retries at exact moments keeps the default backoff
// and moves the clock with [Gateway.AdvanceClock]: a retry is due the
// moment the clock reaches it. One that wants them at once sets a Backoff
// that returns 0.
func WithDeliveryPolicy(p DeliveryPolicy) Option {
	return func(c *config) error {
		if p.MaxAttempts < 0 || p.MaxAge < 0 || p.Timeout < 0 || p.Concurrency < 0 {
			return errors.New("mock: delivery policy fields must not be negative")
		}
		if p.MaxAttempts == 0 {
			p.MaxAttempts = DefaultDeliveryAttempts
		}
		if p.MaxAge == 0 {
			p.MaxAge = DefaultDeliveryMaxAge
		}
		if p.Backoff == nil {
			p.Backoff = DefaultDeliveryBackoff
		}
		if p.Timeout == 0 {
			p.Timeout = DefaultDeliveryTimeout
		}
		if p.Concurrency == 0 {
			p.Concurrency = DefaultDeliveryConcurrency
		}
		c.hooks.policy, c.hooks.policySet = p, true
		return nil
	}
}

// WithRemoteWebhooks lets webhook endpoints have any http or https URL. By
// default an endpoint's URL must be loopback (localhost, 127.0.0.0/8,
// [::1]), and the delivery client connects to loopback addresses only,
// whatever a name resolves to, so that a mock cannot be made to post to
// other machines. cmd/payonce-mock -allow-remote-webhooks sets it (and
// -allow-remote, which is about the listener, does not).
func WithRemoteWebhooks() Option {
	return func(c *config) error {
		c.hooks.remote = true
		return nil
	}
}

func (c *hookConfig) effectivePolicy() DeliveryPolicy {
	if c.policySet {
		return c.policy
	}
	return DeliveryPolicy{MaxAttempts: DefaultDeliveryAttempts, MaxAge: DefaultDeliveryMaxAge,
		Backoff: DefaultDeliveryBackoff, Timeout: DefaultDeliveryTimeout, Concurrency: DefaultDeliveryConcurrency}
}

// DeliveryOutcome is what came of one delivery attempt.
type DeliveryOutcome string

// The outcomes of an attempt.
const (
	// DeliveryDelivered: the endpoint answered 2xx, and the delivery is
	// done.
	DeliveryDelivered DeliveryOutcome = "delivered"
	// DeliveryFailed: the endpoint answered another status (a redirect
	// included, which is not followed), or not at all.
	DeliveryFailed DeliveryOutcome = "failed"
	// DeliveryAnswerDropped: the endpoint answered 2xx, and a drop_answer
	// fault made the gateway ignore it: the event is delivered again.
	DeliveryAnswerDropped DeliveryOutcome = "answer_dropped"
)

// DeliveryRecord is one attempt to deliver an event to an endpoint, as
// [Gateway.Deliveries] and GET /_mock/deliveries show it.
type DeliveryRecord struct {
	Event    string `json:"event"`
	Type     string `json:"type"`
	Endpoint string `json:"endpoint"`
	Account  string `json:"account"`
	URL      string `json:"url"`
	// Attempt counts the attempts of this delivery, from 1.
	Attempt int `json:"attempt"`
	// Copy is 0 for the event's own delivery to the endpoint, and n for
	// the n-th extra copy a duplicate or concurrent_copy fault made.
	Copy int `json:"copy"`
	// Status is the endpoint's answer, 0 if none came.
	Status int `json:"status"`
	// Error says why no answer came: the network error, the timeout.
	Error   string          `json:"error,omitempty"`
	Outcome DeliveryOutcome `json:"outcome"`
	// Fault names the delivery fault, injected or drawn by delivery chaos,
	// that shaped this attempt, if any.
	Fault DeliveryFaultKind `json:"fault,omitempty"`
	// GaveUp marks the attempt after which the delivery was given up.
	GaveUp bool `json:"gave_up,omitempty"`
	// At is when the attempt was sent, on the gateway's clock.
	At time.Time `json:"at"`
	// Duration is how long the attempt took, until its answer was read.
	Duration time.Duration `json:"-"`
}

// MarshalJSON encodes r with its Duration as duration_ms.
func (r DeliveryRecord) MarshalJSON() ([]byte, error) {
	type plain DeliveryRecord
	return json.Marshal(struct {
		plain
		DurationMS float64 `json:"duration_ms"`
	}{plain(r), float64(r.Duration) / float64(time.Millisecond)})
}

// DeliveryStats counts events and deliveries since the gateway started or
// was reset.
type DeliveryStats struct {
	// Events counts the events created, delivered or not.
	Events int64 `json:"events"`
	// Deliveries counts what is to be delivered: one per event and
	// endpoint that wants it, plus the copies delivery faults make.
	Deliveries int64 `json:"deliveries"`
	// Attempts counts the POSTs sent (or tried) to endpoints.
	Attempts int64 `json:"attempts"`
	// Delivered counts the deliveries that ended with a 2xx.
	Delivered int64 `json:"delivered"`
	// Failed counts the attempts answered other than 2xx, or not at all.
	Failed int64 `json:"failed"`
	// Dropped counts the 2xx answers a drop_answer fault ignored.
	Dropped int64 `json:"dropped"`
	// GaveUp counts the deliveries given up: after their last attempt, or,
	// when their endpoint is deleted or disabled, at once and without one.
	GaveUp int64 `json:"gave_up"`
	// Pending counts the deliveries neither delivered nor given up:
	// scheduled, held by a delay fault, waiting to retry or in flight.
	Pending int64 `json:"pending"`
}

// hookState is a world's webhook endpoints, events and deliveries.
type hookState struct {
	accounts      sync.Map // account id → *hookAccount
	seq           atomic.Uint64
	events        atomic.Int64 // made, kept or not
	endpointCount atomic.Int64 // live endpoints, in every account
	retained      eventFIFO    // the events kept, in every account
	dl            deliverer
}

// delivery is one event to deliver to one endpoint.
type delivery struct {
	ev      *event
	ep      *endpoint
	account *hookAccount // ep's
	copy    int
	fault   *DeliveryFault // shapes the first attempt
	attempt int            // attempts made
	due     time.Time      // on the gateway's clock
	index   int            // in the queue
}

// deliverer runs a world's deliveries.
type deliverer struct {
	mu      sync.Mutex
	queue   deliveryQueue
	records recordRing
	stats   DeliveryStats
	changed chan struct{} // closed, and replaced, whenever stats change; nil until a wait
	waiters atomic.Int32  // WaitDeliveryStats calls under way
	wake    chan struct{} // a token: the queue or the clock changed
	started bool
	stopped bool
	ctx     context.Context
	cancel  context.CancelFunc
	client  *http.Client
	flying  sync.WaitGroup // this world's attempts, which the scheduler waits for as it ends
	sem     chan struct{}
	policy  DeliveryPolicy
	faults  deliveryFaultSet
	chaos   deliveryChaos
}

// deliveryQueue is a min-heap of deliveries by due time.
type deliveryQueue []*delivery

func (q deliveryQueue) Len() int           { return len(q) }
func (q deliveryQueue) Less(i, j int) bool { return q[i].due.Before(q[j].due) }
func (q deliveryQueue) Swap(i, j int) {
	q[i], q[j] = q[j], q[i]
	q[i].index, q[j].index = i, j
}
func (q *deliveryQueue) Push(x any) {
	d := x.(*delivery)
	d.index = len(*q)
	*q = append(*q, d)
}
func (q *deliveryQueue) Pop() any {
	old := *q
	d := old[len(old)-1]
	old[len(old)-1] = nil
	*q = old[:len(old)-1]
	return d
}

// deliveryRoot is the gateway's share of delivery: what Close stops and
// waits for, across resets.
type deliveryRoot struct {
	mu     sync.Mutex
	closed bool
	wg     sync.WaitGroup
}

// initHooks sets up w's delivery state from the gateway's options.
func (w *world) initHooks() {
	d := &w.hooks.dl
	d.policy = w.g.cfg.hooks.effectivePolicy()
	d.wake = make(chan struct{}, 1)
	d.ctx, d.cancel = context.WithCancel(context.Background())
	d.chaos.set(w.g.cfg.hooks.chaosRate, w.g.cfg.hooks.chaosSeed)
	d.records.limit = cmp.Or(w.g.cfg.hooks.recordLimit, DefaultDeliveryRecordLimit)
	w.hooks.retained.limit = cmp.Or(w.g.cfg.hooks.eventLimit, DefaultEventLimit)
}

// stopHooks ends w's deliveries: those in flight are cancelled, the rest
// never run. Close waits for their goroutines.
func (w *world) stopHooks() {
	d := &w.hooks.dl
	d.mu.Lock()
	d.stopped = true
	d.mu.Unlock()
	d.cancel()
}

// Close ends the gateway's webhook deliveries, and every held Delay or
// DelayAfter fault, and waits until the goroutines that ran them have
// returned; by then the delivery client's idle connections are closed too,
// after the last attempt that could return one. Deliveries not yet made
// are never made. A Gateway that delivers no webhooks starts no
// goroutines, so one used only as an [http.Handler] needs no Close;
// [Server.Close] calls it. It is safe to call more than once.
func (g *Gateway) Close() {
	g.stopOnce.Do(func() { close(g.stop) })
	g.dl.mu.Lock()
	g.dl.closed = true
	g.dl.mu.Unlock()
	g.world.Load().stopHooks()
	g.dl.wg.Wait()
}

// clockMoved tells the deliveries that the clock jumped, so that those now
// due go at once.
func (g *Gateway) clockMoved() {
	g.world.Load().hooks.dl.poke()
}

func (d *deliverer) poke() {
	select {
	case d.wake <- struct{}{}:
	default:
	}
}

// fanOut schedules ev's deliveries: one to each endpoint of its account
// that wants it, and, for an event of a connected account, to each
// connect endpoint of the platform account.
func (w *world) fanOut(ev *event) {
	type target struct {
		ep *endpoint
		h  *hookAccount
	}
	var targets []target
	collect := func(id string, connectOnly bool) {
		v, ok := w.hooks.accounts.Load(id)
		if !ok {
			return
		}
		h := v.(*hookAccount)
		h.mu.Lock()
		for _, ep := range h.endpoints {
			if (!connectOnly || ep.connect) && ep.wants(ev.typ) {
				targets = append(targets, target{ep, h})
			}
		}
		h.mu.Unlock()
	}
	if w.hooks.endpointCount.Load() > 0 {
		collect(ev.account, false)
	}
	if platform, _, ok := strings.Cut(ev.account, "/"); ok && w.hooks.endpointCount.Load() > 0 {
		collect(platform, true)
	}
	d := &w.hooks.dl
	if len(targets) == 0 {
		if d.waiters.Load() > 0 {
			d.mu.Lock()
			d.changedLocked()
			d.mu.Unlock()
		}
		return
	}
	now := w.g.Now()
	ev.pending.Add(int64(len(targets)))
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, t := range targets {
		dv := &delivery{ev: ev, ep: t.ep, account: t.h, due: now}
		dv.fault = d.faults.match(ev.typ, t.ep.id)
		if dv.fault == nil {
			dv.fault = d.chaos.draw()
		}
		d.pushLocked(dv)
		if f := dv.fault; f != nil {
			switch f.Kind {
			case DelayDelivery:
				dv.due = now.Add(f.Delay)
				heap.Fix(&d.queue, dv.index)
			case DuplicateDelivery:
				for i := 1; i <= f.Copies; i++ {
					d.pushLocked(&delivery{ev: ev, ep: t.ep, account: t.h, copy: i, fault: f,
						due: now.Add(time.Duration(i) * f.Spacing)})
				}
			}
		}
	}
	d.startLocked(w)
	d.changedLocked()
	d.poke()
}

// dropEndpoint gives up, at once, every queued delivery to ep, which was
// deleted or disabled: retries, delayed deliveries and copies alone. They
// count as given up, not as attempts, since nothing is sent; those already
// on their way to an attempt are given up there, and an attempt in flight
// is not retried.
func (d *deliverer) dropEndpoint(ep *endpoint) {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	kept := d.queue[:0]
	for _, dv := range d.queue {
		if dv.ep == ep {
			n++
			continue
		}
		kept = append(kept, dv)
	}
	if n == 0 {
		return
	}
	clear(d.queue[len(kept):])
	d.queue = kept
	for i, dv := range d.queue {
		dv.index = i
	}
	heap.Init(&d.queue)
	d.stats.GaveUp += int64(n)
	d.stats.Pending -= int64(n)
	d.changedLocked()
	d.poke()
}

// pushLocked queues a new delivery. d.mu is held.
func (d *deliverer) pushLocked(dv *delivery) {
	heap.Push(&d.queue, dv)
	d.stats.Deliveries++
	d.stats.Pending++
}

// startLocked starts the scheduler on the first delivery, unless the
// gateway or the world has stopped. d.mu is held.
func (d *deliverer) startLocked(w *world) {
	if d.started || d.stopped {
		return
	}
	root := &w.g.dl
	root.mu.Lock()
	defer root.mu.Unlock()
	if root.closed {
		return
	}
	d.started = true
	p := d.policy
	d.sem = make(chan struct{}, p.Concurrency)
	d.client = deliveryClient(p.Timeout, p.Concurrency, w.g.cfg.hooks.remote)
	root.wg.Add(1)
	go w.schedule()
}

// errNotLoopback refuses a connection beyond loopback.
var errNotLoopback = errors.New("the mock delivers webhooks only to loopback addresses (see mock.WithRemoteWebhooks)")

// deliveryClient returns the client deliveries are sent with: no proxy,
// no redirects followed, a timeout per attempt, as many idle connections
// kept per host as attempts may be in flight, and unless remote,
// connections to loopback addresses only.
func deliveryClient(timeout time.Duration, concurrency int, remote bool) *http.Client {
	dialer := &net.Dialer{Timeout: min(timeout, 5*time.Second)}
	if !remote {
		dialer.Control = func(_, address string, _ syscall.RawConn) error {
			host, _, err := net.SplitHostPort(address)
			if ip := net.ParseIP(host); err != nil || ip == nil || !ip.IsLoopback() {
				return errNotLoopback
			}
			return nil
		}
	}
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         dialer.DialContext,
			TLSHandshakeTimeout: min(timeout, 5*time.Second),
			MaxIdleConnsPerHost: concurrency,
			IdleConnTimeout:     30 * time.Second,
		},
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// schedule launches deliveries as they fall due, until the world stops.
// Then it waits for the attempts it launched, and closes the client's idle
// connections, so that none outlives [Gateway.Close] or a reset: an
// attempt that ended after the world stopped may have returned one.
func (w *world) schedule() {
	defer w.g.dl.wg.Done()
	d := &w.hooks.dl
	defer func() {
		d.flying.Wait()
		d.client.CloseIdleConnections()
	}()
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	for {
		now := w.g.Now()
		d.mu.Lock()
		var ready []*delivery
		for len(d.queue) > 0 && !d.queue[0].due.After(now) {
			ready = append(ready, heap.Pop(&d.queue).(*delivery))
		}
		wait := time.Duration(-1)
		if len(d.queue) > 0 {
			wait = d.queue[0].due.Sub(now)
		}
		if len(ready) > 0 {
			w.g.dl.wg.Add(len(ready)) // the scheduler's own count keeps wg above 0
			d.flying.Add(len(ready))
		}
		d.mu.Unlock()
		for _, dv := range ready {
			go w.attempt(dv)
		}
		if wait >= 0 {
			timer.Reset(wait)
		}
		select {
		case <-d.wake:
		case <-timer.C:
		case <-d.ctx.Done():
			timer.Stop()
			return
		}
		timer.Stop()
	}
}

// attempt makes one attempt of dv, records it, and retries or ends dv.
func (w *world) attempt(dv *delivery) {
	defer w.g.dl.wg.Done()
	d := &w.hooks.dl
	defer d.flying.Done()
	select {
	case d.sem <- struct{}{}:
	case <-d.ctx.Done():
		return
	}
	defer func() { <-d.sem }()

	dv.account.mu.Lock()
	ep := *dv.ep
	dv.account.mu.Unlock()
	if ep.deleted || ep.disabled {
		// Gone since it was queued or popped: given up, with nothing sent
		// and no attempt counted, as dropEndpoint does.
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.ctx.Err() == nil {
			d.stats.GaveUp++
			d.stats.Pending--
			d.changedLocked()
		}
		return
	}
	dv.attempt++
	var fault DeliveryFaultKind
	if dv.fault != nil && dv.attempt == 1 {
		fault = dv.fault.Kind
	}
	rec := DeliveryRecord{Event: dv.ev.id, Type: dv.ev.typ, Endpoint: ep.id, Account: ep.account, URL: ep.url,
		Attempt: dv.attempt, Copy: dv.copy, Fault: fault, At: w.g.Now()}

	begin := time.Now()
	status, err := w.post(dv, &ep, fault == ConcurrentCopy && dv.copy == 0)
	rec.Duration = time.Since(begin)
	if d.ctx.Err() != nil {
		return // the gateway closed or reset: nothing more is recorded
	}
	rec.Status = status
	ok := err == nil && status >= 200 && status < 300
	switch {
	case err != nil:
		rec.Outcome, rec.Error = DeliveryFailed, err.Error()
	case ok && fault == DropAnswer:
		rec.Outcome, ok = DeliveryAnswerDropped, false
	case ok:
		rec.Outcome = DeliveryDelivered
	default:
		rec.Outcome = DeliveryFailed
	}

	dv.account.mu.Lock()
	gone := dv.ep.deleted || dv.ep.disabled // while the attempt was in flight
	dv.account.mu.Unlock()

	d.mu.Lock()
	defer d.mu.Unlock()
	d.stats.Attempts++
	switch rec.Outcome {
	case DeliveryDelivered:
		d.stats.Delivered++
		d.stats.Pending--
		if dv.copy == 0 {
			dv.ev.pending.Add(-1)
		}
	case DeliveryAnswerDropped:
		d.stats.Dropped++
	default:
		d.stats.Failed++
	}
	if !ok {
		now := w.g.Now()
		next := max(d.policy.Backoff(dv.attempt), 0)
		if gone || dv.attempt >= d.policy.MaxAttempts || now.Add(next).Sub(dv.ev.at) > d.policy.MaxAge {
			rec.GaveUp = true
			d.stats.GaveUp++
			d.stats.Pending--
		} else {
			dv.due = now.Add(next)
			heap.Push(&d.queue, dv)
			d.poke()
		}
	}
	d.records.add(rec)
	d.changedLocked()
}

// post sends ev to ep, signed, and returns the status of the answer, of
// which it reads at most maxAnswerBytes. With copyWhileWaiting, it
// schedules a copy of dv the moment the request is written, so that the
// copy arrives while the endpoint is still on the first.
func (w *world) post(dv *delivery, ep *endpoint, copyWhileWaiting bool) (int, error) {
	d := &w.hooks.dl
	body, err := json.Marshal(dv.ev.encode(ep.eventVersion()))
	if err != nil {
		return 0, err
	}
	ctx := d.ctx
	if copyWhileWaiting {
		var once sync.Once
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{WroteRequest: func(httptrace.WroteRequestInfo) {
			once.Do(func() {
				d.mu.Lock()
				defer d.mu.Unlock()
				d.pushLocked(&delivery{ev: dv.ev, ep: dv.ep, account: dv.account, copy: 1, fault: dv.fault, due: w.g.Now()})
				d.changedLocked()
				d.poke()
			})
		}})
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ep.url, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	h := req.Header
	h["Content-Type"] = []string{"application/json; charset=utf-8"}
	h["User-Agent"] = []string{"Stripe/1.0 (+https://stripe.com/docs/webhooks)"}
	sig, err := webhook.SignStripe(body, time.Now(), ep.secret)
	if err != nil {
		return 0, err
	}
	h["Stripe-Signature"] = []string{sig}
	h["Cache-Control"] = []string{"no-cache"}
	h[deliveryMarker] = []string{"1"} // the control surface refuses it
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, scrubURLError(err)
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, maxAnswerBytes))
	if err != nil {
		return resp.StatusCode, fmt.Errorf("read the answer: %w", err)
	}
	return resp.StatusCode, nil
}

// scrubURLError drops the URL from a client error, which the record shows
// apart.
func scrubURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

// changedLocked wakes the waits. d.mu is held.
func (d *deliverer) changedLocked() {
	if d.changed != nil {
		close(d.changed)
		d.changed = nil
	}
}

// Deliveries returns the delivery attempts, one record per POST sent (or
// tried) to an endpoint, in the order they ended: to which endpoint, which
// attempt, what the endpoint answered and how long it took. A delivery
// retried three times has three records; one given up without an attempt,
// its endpoint deleted or disabled, has none. It keeps the latest
// [WithDeliveryRecordLimit] attempts (default
// [DefaultDeliveryRecordLimit]), and forgets older ones;
// [Gateway.DeliveryStats] counts them all.
func (g *Gateway) Deliveries() []DeliveryRecord {
	d := &g.world.Load().hooks.dl
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.records.list()
}

// recordRing keeps the latest delivery records, up to limit, in a circular
// buffer that grows up to it.
type recordRing struct {
	limit    int
	ring     []DeliveryRecord
	first, n int
}

func (r *recordRing) add(rec DeliveryRecord) {
	if r.n == r.limit {
		r.ring[r.first] = DeliveryRecord{}
		r.first = (r.first + 1) % len(r.ring)
		r.n--
	}
	if r.n == len(r.ring) { // full but under limit: grow, oldest first
		grown := make([]DeliveryRecord, r.n, min(max(2*r.n, 64), r.limit))
		copy(grown, r.ring[r.first:])
		copy(grown[len(r.ring)-r.first:], r.ring[:r.first])
		r.ring, r.first = grown[:cap(grown)], 0
	}
	r.ring[(r.first+r.n)%len(r.ring)] = rec
	r.n++
}

// list returns the records kept, oldest first.
func (r *recordRing) list() []DeliveryRecord {
	out := make([]DeliveryRecord, r.n)
	for i := range r.n {
		out[i] = r.ring[(r.first+i)%len(r.ring)]
	}
	return out
}

// DeliveryStats returns the delivery counters.
func (g *Gateway) DeliveryStats() DeliveryStats {
	w := g.world.Load()
	d := &w.hooks.dl
	d.mu.Lock()
	defer d.mu.Unlock()
	st := d.stats
	st.Events = w.hooks.events.Load()
	return st
}

// WaitDeliveryStats waits until the delivery counters satisfy ok, and
// returns them, or returns ctx's error once ctx ends. ok is called
// whenever a delivery is scheduled or an attempt ends (and once at the
// start), so a test acts at an exact moment, such as moving the clock once
// the first attempt has failed, without polling. Events counts the events
// up to that moment. A [Gateway.Reset] during the wait leaves it watching
// the counters from before the reset.
func (g *Gateway) WaitDeliveryStats(ctx context.Context, ok func(DeliveryStats) bool) (DeliveryStats, error) {
	w := g.world.Load()
	d := &w.hooks.dl
	d.waiters.Add(1)
	defer d.waiters.Add(-1)
	for {
		d.mu.Lock()
		st := d.stats
		st.Events = w.hooks.events.Load()
		if ok(st) {
			d.mu.Unlock()
			return st, nil
		}
		if d.changed == nil {
			d.changed = make(chan struct{})
		}
		changed := d.changed
		d.mu.Unlock()
		select {
		case <-changed:
		case <-ctx.Done():
			return st, ctx.Err()
		}
	}
}

// WaitDeliveries waits until every delivery scheduled so far has been
// delivered or given up (Pending is 0), and returns the counters, or
// returns ctx's error once ctx ends. The events of a request are
// scheduled before its response is sent, so after the API calls of a
// test return, WaitDeliveries waits for all they caused. A delivery held
// by a delay fault, or waiting to retry, is pending until the clock
// reaches it: move it with [Gateway.AdvanceClock].
func (g *Gateway) WaitDeliveries(ctx context.Context) (DeliveryStats, error) {
	return g.WaitDeliveryStats(ctx, func(s DeliveryStats) bool { return s.Pending == 0 })
}
