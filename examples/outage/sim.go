package main

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/payonce/payonce"
	"github.com/payonce/payonce/mock"
)

// apiKey is the merchant's test key. The whole fleet shares it, as the
// checkout servers of one shop do, so every charge lands in one account of
// the gateway and suspected duplicates are looked for across the fleet.
const apiKey = "sk_test_outage_fleet"

// settleWorkers is how many unknown payments are resent at once after the
// run: enough to be quick, few enough to leave the machine's other cores alone.
const settleWorkers = 4

// maxCallTime bounds, in simulated time, how long the run waits after the
// last arrival for the calls still retrying. With the client's defaults a
// call takes at most 4 attempts of 15 s and 3 waits of at most 10 s.
const maxCallTime = 2 * time.Minute

// config is a simulation's parameters. Durations are simulated time except
// scale, which is the real duration of one simulated second.
type config struct {
	clients int     // checkout servers, each with its own *payonce.Client
	rate    float64 // payments per simulated second per client (Poisson)
	before  time.Duration
	outage  time.Duration
	after   time.Duration
	late    time.Duration // the start of the outage the late ratio leaves out
	scale   time.Duration
	drop    bool // the outage drops connections instead of answering 503
	seed    int64
	svgPath string
}

func (c *config) outageStart() time.Duration { return c.before }
func (c *config) outageEnd() time.Duration   { return c.before + c.outage }
func (c *config) timeline() time.Duration    { return c.before + c.outage + c.after }

// toReal converts a simulated duration into the real one the clients wait.
func (c *config) toReal(sim time.Duration) time.Duration {
	return time.Duration(float64(sim) * float64(c.scale) / float64(time.Second))
}

// outageKind names what the gateway does during the outage, for the output.
func (c *config) outageKind() string {
	if c.drop {
		return "every connection dropped"
	}
	return "every request answered 503"
}

// A strategy is one way of configuring the fleet's clients.
type strategy struct {
	name string
	// options returns the options that make the strategy, given the client
	// defaults converted to real time.
	options func(d scaledDefaults) []payonce.Option
}

// scaledDefaults are the client's duration defaults in real time, so that
// every strategy waits what a real client would wait, only faster.
type scaledDefaults struct {
	minBackoff, maxBackoff, attemptTimeout, maxRetryAfter time.Duration
}

func (d scaledDefaults) options() []payonce.Option {
	return []payonce.Option{
		payonce.WithBackoff(d.minBackoff, d.maxBackoff),
		payonce.WithAttemptTimeout(d.attemptTimeout),
		payonce.WithMaxRetryAfter(d.maxRetryAfter),
	}
}

// strategies are the four compared, the baseline first: the ratios of the
// table are relative to strategies[0].
func strategies() []strategy {
	return []strategy{
		{name: "no retries", options: func(d scaledDefaults) []payonce.Option {
			return append(d.options(), payonce.WithMaxRetries(0))
		}},
		{name: "backoff, no jitter", options: func(d scaledDefaults) []payonce.Option {
			return append(d.options(), payonce.WithBackoffFunc(noJitter), payonce.WithoutRetryBudget())
		}},
		{name: "full jitter", options: func(d scaledDefaults) []payonce.Option {
			return append(d.options(), payonce.WithoutRetryBudget())
		}},
		{name: "full jitter + budget (default)", options: func(d scaledDefaults) []payonce.Option {
			return d.options() // the client's own defaults: full jitter and a budget per client
		}},
	}
}

// noJitter is the exponential backoff of go-retryablehttp's DefaultBackoff:
// min·2^retry capped at max, the same for every client.
func noJitter(retry int, lo, hi time.Duration) time.Duration {
	d := lo
	for i := 0; i < retry && d < hi; i++ {
		d *= 2
	}
	return min(d, hi)
}

// results are what simulate measured, one row per strategy.
type results struct {
	cfg  config
	rows []row
	lag  time.Duration // the largest lag of an arrival behind schedule, simulated
}

// row is one strategy's run.
type row struct {
	name     string
	payments int

	// Calls the gateway received: in total, during the outage, and during
	// the outage after its first cfg.late. perSecond counts them per
	// simulated second.
	totalCalls, outageCalls, lateCalls int64
	perSecond                          []int64
	peak                               int64

	// settled is the simulated time from the outage's start until the last
	// call for a payment born before the outage ended returned.
	settled time.Duration

	charged int // charges in the ledger at the end of the run
	failed  int // calls that failed with a definite error
	unknown int // calls that failed with payonce.ErrOutcomeUnknown
	// settledLater counts the unknown payments that, sent again with their
	// key after the run, ended charged exactly once.
	settledLater int

	duplicates int // ledger charges sharing a key beyond the first, plus suspected duplicates
	lost       int // payments the client saw charged that are not in the ledger exactly once
	strays     int // ledger charges under a key no payment used
}

// arrival is a payment's birth: which client, at what simulated time.
type arrival struct {
	at     time.Duration
	client int
}

// payment is one customer's checkout, written by its own goroutine only.
type payment struct {
	params   payonce.ChargeParams
	chargeID string        // the charge the client returned, "" on error
	err      error         // the client's error
	returned time.Duration // simulated time the call returned
}

// schedule draws every client's arrivals, a Poisson process of cfg.rate per
// simulated second, from the seed, so that each strategy meets the same
// customers at the same moments.
func schedule(cfg *config) []arrival {
	var out []arrival
	end := cfg.timeline().Seconds()
	for c := range cfg.clients {
		rng := rand.New(rand.NewPCG(uint64(cfg.seed), uint64(c)))
		for t := rng.ExpFloat64() / cfg.rate; t < end; t += rng.ExpFloat64() / cfg.rate {
			out = append(out, arrival{at: time.Duration(t * float64(time.Second)), client: c})
		}
	}
	slices.SortFunc(out, func(a, b arrival) int { return cmp.Compare(a.at, b.at) })
	return out
}

// simulate runs the strategies side by side, each with its own fleet
// against its own fresh gateway, on one clock and one stream of customers,
// and measures them.
//
// They run at the same time rather than one after the other so that the
// whole run fits in the default's seconds at a slow enough time scale, and
// so that a moment when the machine is busy (and simulated time stutters)
// hits every strategy alike.
func simulate(ctx context.Context, cfg config) (*results, error) {
	arrivals := schedule(&cfg)
	if len(arrivals) == 0 {
		return nil, errors.New("no payments: raise -clients, -rate or the timeline")
	}
	clock := &simClock{speed: float64(time.Second) / float64(cfg.scale)}
	var fleets []*fleet
	for _, s := range strategies() {
		f, err := newFleet(&cfg, s, clock, len(arrivals))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		fleets = append(fleets, f)
	}
	lag, err := drive(ctx, &cfg, clock, arrivals, fleets)
	if err != nil {
		return nil, err
	}
	res := &results{cfg: cfg, lag: lag}
	for _, f := range fleets {
		r, err := f.measure(ctx, &cfg, arrivals)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.name, err)
		}
		res.rows = append(res.rows, r)
	}
	return res, nil
}

// simClock tells simulated time: real time since start, sped up.
type simClock struct {
	start time.Time
	speed float64 // simulated seconds per real second
}

func (c *simClock) now() time.Duration {
	return time.Duration(float64(time.Since(c.start)) * c.speed)
}

// fleet is one strategy's clients, gateway and payments.
type fleet struct {
	name     string
	gw       *mock.Gateway
	front    *frontDoor
	clients  []*payonce.Client
	payments []payment // one per arrival, each written by its own goroutine
}

func newFleet(cfg *config, s strategy, clock *simClock, n int) (*fleet, error) {
	gw, err := mock.New(mock.WithHistoryLimit(100)) // the history is not used: keep it small
	if err != nil {
		return nil, err
	}
	f := &fleet{
		name:     s.name,
		gw:       gw,
		front:    &frontDoor{gw: gw, clock: clock, cfg: cfg},
		clients:  make([]*payonce.Client, cfg.clients),
		payments: make([]payment, n),
	}
	hc := &http.Client{Transport: handlerTransport{h: f.front}}
	defaults := scaledDefaults{
		minBackoff:     cfg.toReal(payonce.DefaultMinBackoff),
		maxBackoff:     cfg.toReal(payonce.DefaultMaxBackoff),
		attemptTimeout: cfg.toReal(payonce.DefaultAttemptTimeout),
		maxRetryAfter:  cfg.toReal(payonce.DefaultMaxRetryAfter),
	}
	for i := range f.clients {
		opts := append([]payonce.Option{payonce.WithBaseURL("http://127.0.0.1"), payonce.WithHTTPClient(hc)},
			s.options(defaults)...)
		if f.clients[i], err = payonce.NewClient(apiKey, opts...); err != nil {
			return nil, err
		}
	}
	f.front.counting.Store(true)
	return f, nil
}

// drive runs the timeline: it starts the clock, makes every payment of
// every fleet at its arrival time, each in its own goroutine, and waits for
// the calls to return. It returns the largest lag, in simulated time, of an
// arrival behind its schedule: how much the machine's load bent the clock.
func drive(ctx context.Context, cfg *config, clock *simClock, arrivals []arrival, fleets []*fleet) (time.Duration, error) {
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	timer := time.NewTimer(0)
	defer timer.Stop()
	var lag time.Duration
	clock.start = time.Now()
	for i, a := range arrivals {
		if d := time.Until(clock.start.Add(cfg.toReal(a.at))); d > 0 {
			timer.Reset(d)
			select {
			case <-timer.C:
			case <-ctx.Done():
				cancel()
				wg.Wait()
				return 0, ctx.Err()
			}
		}
		lag = max(lag, clock.now()-a.at)
		params := payonce.ChargeParams{
			Amount:        int64(100 + i), // distinct, so that two charges of one amount are a duplicate
			Currency:      "usd",
			PaymentMethod: "tok_visa",
			Description:   fmt.Sprintf("order %d of client %d", i, a.client),
		}
		for _, f := range fleets {
			p, c := &f.payments[i], f.clients[a.client]
			// The payment is born now, and its key with it, as a checkout
			// server makes one when the order is created and keeps it with
			// the order.
			p.params = params
			p.params.IdempotencyKey = payonce.NewKey()
			wg.Add(1)
			go func() {
				defer wg.Done()
				ch, err := c.Charges.Create(runCtx, &p.params)
				p.returned = clock.now()
				if err != nil {
					p.err = err
				} else {
					p.chargeID = ch.ID
				}
			}()
		}
	}

	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	timer.Reset(cfg.toReal(maxCallTime))
	select {
	case <-done:
	case <-timer.C:
		cancel()
		<-done
		return 0, fmt.Errorf("calls still running %v (simulated) after the last arrival", maxCallTime)
	case <-ctx.Done():
		cancel()
		<-done
		return 0, ctx.Err()
	}
	for _, f := range fleets {
		f.front.counting.Store(false) // what follows is not part of the outage's load
	}
	return lag, nil
}

// measure makes the fleet's row once its calls are over: the gateway's
// counts, the client's outcomes, then the unknown payments settled and the
// ledger checked.
func (f *fleet) measure(ctx context.Context, cfg *config, arrivals []arrival) (row, error) {
	r := f.front.measure()
	r.name = f.name
	r.payments = len(f.payments)
	for i := range f.payments {
		p := &f.payments[i]
		switch {
		case p.err == nil:
		case errors.Is(p.err, payonce.ErrOutcomeUnknown):
			r.unknown++
		default:
			r.failed++
		}
		if arrivals[i].at < cfg.outageEnd() {
			r.settled = max(r.settled, p.returned-cfg.outageStart())
		}
	}
	r.charged = len(f.gw.Charges())
	var err error
	if r.settledLater, err = settle(ctx, f.clients, arrivals, f.payments); err != nil {
		return row{}, err
	}
	check(f.gw, f.payments, &r)
	return r, nil
}

// settle resends every payment whose outcome is unknown, with its key, to
// the healed gateway, as a checkout server's reconciliation job would, and
// returns how many came back charged.
func settle(ctx context.Context, clients []*payonce.Client, arrivals []arrival, payments []payment) (int, error) {
	var todo []int
	for i := range payments {
		if errors.Is(payments[i].err, payonce.ErrOutcomeUnknown) {
			todo = append(todo, i)
		}
	}
	var next, charged atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	for range settleWorkers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := next.Add(1) - 1; j < int64(len(todo)); j = next.Add(1) - 1 {
				i := todo[j]
				p := &payments[i]
				ch, err := clients[arrivals[i].client].Charges.Create(ctx, &p.params)
				if err != nil {
					once.Do(func() { firstErr = fmt.Errorf("settle payment %d with key %s: %w", i, p.params.IdempotencyKey, err) })
					return
				}
				p.chargeID, p.err = ch.ID, nil
				charged.Add(1)
			}
		}()
	}
	wg.Wait()
	return int(charged.Load()), firstErr
}

// check compares the client's view with the gateway's ledger: every charge
// the client returned is in the ledger exactly once, under its key, and no
// key or payment is charged twice.
func check(gw *mock.Gateway, payments []payment, r *row) {
	byKey := make(map[string][]mock.LedgerCharge)
	for _, ch := range gw.Charges() {
		byKey[ch.IdempotencyKey] = append(byKey[ch.IdempotencyKey], ch)
	}
	known := make(map[string]bool, len(payments))
	for i := range payments {
		p := &payments[i]
		known[p.params.IdempotencyKey] = true
		if p.chargeID == "" {
			continue
		}
		if got := byKey[p.params.IdempotencyKey]; len(got) != 1 || got[0].ID != p.chargeID {
			r.lost++
		}
	}
	for key, charges := range byKey {
		r.duplicates += len(charges) - 1
		if !known[key] {
			r.strays += len(charges)
		}
	}
	// The amounts are distinct, so any pair of one amount is a double
	// charge; the window covers the whole run.
	r.duplicates += len(gw.SuspectedDuplicates(24 * time.Hour))
}

// frontDoor stands in front of the gateway: it counts every call it
// receives and, during the outage, fails it without letting the gateway
// execute anything.
type frontDoor struct {
	gw    *mock.Gateway
	clock *simClock
	cfg   *config

	counting                atomic.Bool
	total, inOutage, inLate atomic.Int64
	mu                      sync.Mutex
	perSecond               []int64
}

// outageBody is the wire contract's error for a gateway that cannot serve.
const outageBody = `{"error":{"type":"api_error","code":"gateway_unavailable","message":"the gateway is unavailable (simulated outage)"}}` + "\n"

func (f *frontDoor) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	now := f.clock.now()
	outage := now >= f.cfg.outageStart() && now < f.cfg.outageEnd()
	if f.counting.Load() {
		f.count(now, outage)
	}
	if !outage {
		f.gw.ServeHTTP(w, r)
		return
	}
	if f.cfg.drop {
		panic(http.ErrAbortHandler) // handlerTransport turns it into a dropped connection
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", fmt.Sprint(len(outageBody)))
	w.WriteHeader(http.StatusServiceUnavailable)
	io.WriteString(w, outageBody)
}

func (f *frontDoor) count(now time.Duration, outage bool) {
	f.total.Add(1)
	if outage {
		f.inOutage.Add(1)
		if now >= f.cfg.outageStart()+f.cfg.late {
			f.inLate.Add(1)
		}
	}
	sec := int(now / time.Second)
	f.mu.Lock()
	for len(f.perSecond) <= sec {
		f.perSecond = append(f.perSecond, 0)
	}
	f.perSecond[sec]++
	f.mu.Unlock()
}

// measure returns the counts, once the calls are over.
func (f *frontDoor) measure() row {
	f.mu.Lock()
	defer f.mu.Unlock()
	r := row{
		totalCalls:  f.total.Load(),
		outageCalls: f.inOutage.Load(),
		lateCalls:   f.inLate.Load(),
		perSecond:   slices.Clone(f.perSecond),
	}
	if len(r.perSecond) > 0 {
		r.peak = slices.Max(r.perSecond)
	}
	return r
}

// handlerTransport is an http.RoundTripper that serves each request with a
// handler in the same process: no sockets, so a fleet of clients neither
// waits on the kernel nor runs out of ports. A handler that panics with
// http.ErrAbortHandler drops the connection, as net/http's server would: the
// client gets an error wrapping io.ErrUnexpectedEOF.
type handlerTransport struct{ h http.Handler }

func (t handlerTransport) RoundTrip(req *http.Request) (resp *http.Response, err error) {
	if req.Body != nil {
		defer req.Body.Close()
	}
	// The request was made for a client: make it look as a server sees it.
	sreq := req.Clone(req.Context())
	if sreq.Body == nil {
		sreq.Body = http.NoBody
	}
	sreq.RequestURI = req.URL.RequestURI()
	sreq.RemoteAddr = "127.0.0.1:1"
	rec := httptest.NewRecorder()
	defer func() {
		if p := recover(); p != nil {
			if e, ok := p.(error); !ok || !errors.Is(e, http.ErrAbortHandler) {
				panic(p)
			}
			resp, err = nil, fmt.Errorf("connection dropped by the gateway: %w", io.ErrUnexpectedEOF)
		}
	}()
	t.h.ServeHTTP(rec, sreq)
	resp = rec.Result()
	resp.Request = req
	return resp, nil
}
