package idempotency

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// ErrLeaseExpired is the cause of a handler's context, and the [Event].Err
// of a [NotStored] request, when the middleware gave the claim up in time:
// while the handler ran, because it could not renew the claim for three
// quarters of its lease, past which another instance may soon take the key
// over; once the handler had returned, because its response could not be
// stored within a lease.
var ErrLeaseExpired = errors.New("idempotency: the claim could not be renewed before its lease would run out")

// stopper is what the middleware keeps of a scheduled call: a *time.Timer,
// or a test's fake.
type stopper interface{ Stop() bool }

// owner holds a claimed key for one request, from the claim until its
// response is stored. It renews the lease every third of it, retrying a
// failed renewal with backoff, and knows until when the claim is surely its
// own: the lease's end as the store last confirmed it.
//
// While the handler runs, the fence stands a quarter of the lease before
// that end. When it passes without a renewal, or the store says the claim
// is gone, the owner is lost: it cancels the handler's context, so that the
// handler stops acting before another request may take the key, and stores
// nothing of what the handler then answers, since that answer may be the
// cancellation's. Once the handler has returned, its response only waits
// to be stored, and a Finish lands only if the token still holds the claim,
// so the fence moves to one lease after the handler returned: Finish is
// retried until then, and renewals go on meanwhile, but do not move it, so
// that a store that renews but cannot store gets the client its 503.
//
// The times are the middleware's clock, as the store compares them; the
// schedule runs on timers.
type owner struct {
	m          *Middleware
	c          Claim           // as claimed; every call sends a copy with Now set
	base       context.Context // store calls derive from it: never cancelled by the client
	handlerCtx context.Context // cancelled, with the cause, when the owner is lost
	cancel     context.CancelCauseFunc

	mu        sync.Mutex
	until     time.Time // the lease's end as the store last confirmed it
	failures  int       // renewals that failed in a row
	finishing bool      // the handler is done, and Finish's answers decide
	finishBy  time.Time // when finishing, the time to give up storing
	done      bool      // stored or given up: no more renewals
	cause     error     // why the claim is no longer surely this owner's
	renewT    stopper
	fenceT    stopper   // nil until the first renewal, with real timers
	fenceDue  time.Time // while fenceT is nil, when it is to fire
}

// own starts holding c, which the store has just granted.
func (m *Middleware) own(base context.Context, c Claim) *owner {
	hctx, cancel := context.WithCancelCause(base)
	o := &owner{m: m, c: c, base: base, handlerCtx: hctx, cancel: cancel,
		until: c.Now.Add(c.Lease)}
	o.mu.Lock()
	defer o.mu.Unlock()
	o.renewT = m.after(renewTimer, m.lease/3, o.renew)
	o.armFenceLocked()
	return o
}

func (o *owner) fenceAtLocked() time.Time {
	if o.finishing {
		return o.finishBy
	}
	return o.until.Add(-o.m.lease / 4)
}

// armFenceLocked schedules the fence. With real timers, the first one is
// only armed when the first renewal runs, a third of the lease after the
// claim: before that the fence cannot fire (it stands at three quarters of
// the lease, or a lease after the handler returned), and most requests are
// done by then, so they never pay for its timer. Until it is armed,
// fenceDue keeps the time, on the monotonic clock, that the timer would
// have been set for, so that the schedule is the same either way, however
// the middleware's own clock jumps meanwhile.
func (o *owner) armFenceLocked() {
	d := o.fenceAtLocked().Sub(o.m.now())
	if o.fenceT == nil && o.m.afterFunc == nil {
		o.fenceDue = time.Now().Add(d)
		return
	}
	if o.fenceT != nil {
		o.fenceT.Stop()
	}
	o.fenceT = o.m.after(fenceTimer, d, o.fence)
}

// armDueFenceLocked arms the fence whose timer armFenceLocked put off.
func (o *owner) armDueFenceLocked() {
	if o.fenceT == nil {
		o.fenceT = o.m.after(fenceTimer, time.Until(o.fenceDue), o.fence)
	}
}

// fence loses the claim if it was not renewed in time.
func (o *owner) fence() {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.done || o.cause != nil {
		return
	}
	if d := o.fenceAtLocked().Sub(o.m.now()); d > 0 {
		// Renewed meanwhile, or the clock runs behind the timer.
		o.fenceT = o.m.after(fenceTimer, d, o.fence)
		return
	}
	o.loseLocked(ErrLeaseExpired)
}

// lostCause returns why the owner is lost, or nil. Only the fence's timer
// decides that the claim ran out, not a look at the clock: a clock that
// jumps, as a test's or the mock's does, would give up claims that nobody
// else has taken, and a Finish conditional on the token is safe anyway.
func (o *owner) lostCause() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.cause
}

// renew extends the lease, and schedules the next renewal: a third of the
// lease after the time this one confirmed, however long it took to come
// back, or sooner, with backoff, after a failure.
func (o *owner) renew() {
	o.mu.Lock()
	stopped := o.done || o.cause != nil
	if !stopped {
		// Before the store call, which may hang until its deadline.
		o.armDueFenceLocked()
	}
	o.mu.Unlock()
	if stopped {
		return
	}
	c := o.c
	c.Now = o.m.now()
	ctx, cancel := o.m.callContext(o.base)
	err := o.m.store.Renew(ctx, c)
	cancel()

	o.mu.Lock()
	defer o.mu.Unlock()
	if o.done || o.cause != nil {
		return
	}
	next := o.m.lease / 3
	switch {
	case err == nil:
		if u := c.Now.Add(c.Lease); u.After(o.until) {
			o.until = u
		}
		next = max(0, c.Now.Add(o.m.lease/3).Sub(o.m.now()))
		o.failures = 0
		o.armFenceLocked()
	case errors.Is(err, ErrLeaseLost):
		if o.finishing {
			// A Finish whose answer was lost may have landed; the next
			// Finish says whether it did.
			return
		}
		o.loseLocked(ErrLeaseLost)
		return
	default:
		o.failures++
		next = o.m.backoff(o.failures)
	}
	o.renewT = o.m.after(renewTimer, next, o.renew)
}

func (o *owner) loseLocked(cause error) {
	o.cause = cause
	o.cancel(cause)
	o.stopTimersLocked()
}

func (o *owner) stopTimersLocked() {
	o.renewT.Stop()
	if o.fenceT != nil {
		o.fenceT.Stop()
	}
}

// remaining returns how long the lease has to run, by the store's last word.
func (o *owner) remaining() time.Duration {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.until.Sub(o.m.now())
}

// handlerReturned tells the owner that the handler is done, and moves the
// fence to one lease from now. It returns why the owner was lost while the
// handler ran, if it was: then nothing of the handler's may be stored.
func (o *owner) handlerReturned() error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.cause != nil || o.finishing {
		return o.cause
	}
	o.finishing = true
	o.finishBy = o.m.now().Add(o.m.lease)
	o.armFenceLocked()
	return nil
}

// stop ends the renewals: the response is stored, or will not be.
func (o *owner) stop() {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.done = true
	o.stopTimersLocked()
}

// close stops the owner and cancels the handler's context.
func (o *owner) close() {
	o.stop()
	o.cancel(context.Canceled)
}

// finish stores resp, once [owner.handlerReturned] has been called,
// retrying with backoff for up to a lease; the lease keeps being renewed
// meanwhile. It returns nil once resp is stored, ErrLeaseLost if the store
// says the claim is another's, or ErrLeaseExpired with the store's last
// error.
func (o *owner) finish(resp *memoryResponse) error {
	var last error
	for attempt := 1; ; attempt++ {
		if cause := o.lostCause(); cause != nil {
			if last == nil {
				return cause
			}
			return fmt.Errorf("%w; the store last said: %w", cause, last)
		}
		c := o.c
		c.Now = o.m.now()
		ctx, cancel := o.m.callContext(o.base)
		err := o.m.storeFinish(ctx, c, resp)
		cancel()
		if err == nil || errors.Is(err, ErrLeaseLost) {
			o.stop()
			return err
		}
		last = err
		wake := make(chan struct{})
		t := o.m.after(backoffTimer, o.m.backoff(attempt), func() { close(wake) })
		select {
		case <-wake:
		case <-o.handlerCtx.Done():
			// The owner is lost: before close, nothing else cancels
			// handlerCtx. (Its channel is made when first asked for, so a
			// request whose Finish never fails does not pay for one.)
			t.Stop()
		}
	}
}

// finishTx stores resp in tx and commits it, once [owner.handlerReturned]
// has been called. Unlike finish, it does not retry: a commit whose answer
// was lost may have landed, and a second one would find the transaction
// gone. The client's retry finds out which it was.
func (o *owner) finishTx(tx Tx, resp *Response) error {
	c := o.c
	c.Now = o.m.now()
	ctx, cancel := o.m.callContext(o.base)
	defer cancel()
	err := tx.Finish(ctx, c, resp)
	o.stop()
	return err
}

// storeFinish stores resp, which the middleware built for this one call
// and never changes: a [*MemoryStore] keeps it without a copy.
func (m *Middleware) storeFinish(ctx context.Context, c Claim, resp *memoryResponse) error {
	if s, ok := m.store.(*MemoryStore); ok {
		return s.finishOwned(c, resp)
	}
	return m.store.Finish(ctx, c, &resp.Response)
}

// backoff returns the wait before retry n (from 1) of a store call: it
// doubles from 50ms up to a tenth of the lease, and is jittered over its
// upper half, so that the owners of many keys do not retry in step.
func (m *Middleware) backoff(n int) time.Duration {
	d := min(m.lease/10, 50*time.Millisecond<<min(n-1, 20))
	return d/2 + rand.N(d/2+1)
}

// What each timer is for, so that a test that schedules them by hand can
// tell them apart.
const (
	renewTimer    = "renew"    // the next renewal, or its retry
	fenceTimer    = "fence"    // the end of the claim's safe time
	backoffTimer  = "backoff"  // the wait before Finish is retried
	deadlineTimer = "deadline" // the end of one store call
)

// after calls f after d, on the middleware's timers.
func (m *Middleware) after(kind string, d time.Duration, f func()) stopper {
	if m.afterFunc != nil {
		return m.afterFunc(kind, d, f)
	}
	return time.AfterFunc(d, f)
}

// callContext returns the context of one store call: parent, with the store
// timeout as its deadline. A [*MemoryStore] never waits, so its calls get
// parent as it is, which saves a timer and a context on every call; a type
// that wraps one (a test's fault injector) may wait, and gets the deadline.
func (m *Middleware) callContext(parent context.Context) (context.Context, context.CancelFunc) {
	if _, ok := m.store.(*MemoryStore); ok && m.afterFunc == nil {
		return parent, func() {}
	}
	ctx, cancel := context.WithTimeout(parent, m.storeTimeout)
	if m.afterFunc == nil {
		return ctx, cancel
	}
	t := m.afterFunc(deadlineTimer, m.storeTimeout, cancel)
	return ctx, func() { t.Stop(); cancel() }
}
