package payonce

import (
	"errors"
	"fmt"
	"sync"
)

// Retry budget defaults: a token bucket in the manner of aws-sdk-go-v2's,
// with the same costs and a smaller bucket, so that it reacts within seconds
// for a client that makes a payment every second or so.
//
// What the budget bounds is retries that do not help. A retry that succeeds
// gives its cost back, so transient trouble that one retry cures (a lost
// answer, a brief 503) costs nothing in the long run, however often it
// happens. A retry that fails again keeps its cost, and the bucket refills
// only by calls the gateway answers at their first attempt, one token each.
// So a client spends on failed retries at most the capacity plus one retry's
// worth for every five calls answered at once; when the gateway answers
// nothing at all, each client makes at most 20 retries (10 after timeouts)
// in all, and then sends only its first attempts. The capacity is that
// burst: enough for a handful of unlucky calls, small enough to be spent
// within seconds of an outage by a client that makes a call every second.
//
// For a checkout server, that means the first customers of an outage still
// get their retries, and then the fleet stops multiplying the load of a
// gateway trying to recover; the calls it does not retry fail at once with
// their key instead of keeping a person waiting for retries that cannot
// succeed. For a billing batch, a run that meets an outage spends the budget
// on its first few records (about seven when it charges them one at a time,
// a few seconds of backoff), and the rest fail at their first attempt,
// with [ErrOutcomeUnknown] and the key where a call may have executed, so
// the rerun settles them with the same keys.
//
// The bucket does not refill with time: after an outage a client's retries
// come back with its first successes, not by waiting. Its first attempts are
// never held back.
const (
	DefaultBudgetCapacity      = 100
	DefaultBudgetRetryCost     = 5
	DefaultBudgetTimeoutCost   = 10
	DefaultBudgetSuccessRefund = 1
)

// ErrRetryBudgetExhausted means a call was not retried because the client's
// [RetryBudget] was empty: too many retries failed since the gateway last
// answered enough calls at once. The error wraps the failure of the last
// attempt too, and is still an [*OutcomeUnknownError] when that attempt may
// have executed.
var ErrRetryBudgetExhausted = errors.New("payonce: retry budget exhausted")

// RetryBudgetConfig sizes a [RetryBudget]. A zero field takes its default.
type RetryBudgetConfig struct {
	// Capacity is the number of tokens in a full bucket, which is how a
	// budget starts; at least each cost and the refund. Default:
	// [DefaultBudgetCapacity].
	Capacity int
	// RetryCost is what a retry takes after the gateway answered with a
	// status that is retried (429, 5xx, 409 in use). Default:
	// [DefaultBudgetRetryCost].
	RetryCost int
	// TimeoutCost is what a retry takes after a timeout or a transport
	// failure, which says more about the gateway's health than a status
	// does. Default: [DefaultBudgetTimeoutCost].
	TimeoutCost int
	// SuccessRefund is what a call gives back when its first attempt gets
	// an answer that is not retried (a charge, a decline, a 404). A call
	// that succeeds after retrying gives back the cost of its last retry
	// instead. Default: [DefaultBudgetSuccessRefund].
	SuccessRefund int
}

// RetryBudget is a token bucket that bounds the retries of every call that
// shares it, so that a fleet of clients does not turn a gateway's outage
// into a retry storm that keeps it down. Each retry takes tokens; calls the
// gateway answers give some back. When a retry would take more tokens than
// the bucket holds, the call is not retried and fails at once with
// [ErrRetryBudgetExhausted].
//
// Every [Client] has its own budget with the defaults unless given one with
// [WithRetryBudget], or none with [WithoutRetryBudget]. A budget is safe for
// concurrent use, and one budget may be shared by several clients that talk
// to the same gateway. The zero value is not usable; call [NewRetryBudget].
type RetryBudget struct {
	cfg    RetryBudgetConfig
	mu     sync.Mutex
	tokens int
}

// NewRetryBudget returns a full budget. It refuses negative sizes, and
// costs or a refund larger than the capacity, naming the field at fault
// (mind that a zero field takes its default: {Capacity: 9} leaves the
// TimeoutCost at 10, more than the capacity).
func NewRetryBudget(cfg RetryBudgetConfig) (*RetryBudget, error) {
	fields := []struct {
		name string
		v    *int
		def  int
	}{
		{"Capacity", &cfg.Capacity, DefaultBudgetCapacity},
		{"RetryCost", &cfg.RetryCost, DefaultBudgetRetryCost},
		{"TimeoutCost", &cfg.TimeoutCost, DefaultBudgetTimeoutCost},
		{"SuccessRefund", &cfg.SuccessRefund, DefaultBudgetSuccessRefund},
	}
	for _, f := range fields {
		switch {
		case *f.v < 0:
			return nil, fmt.Errorf("%w: retry budget: %s %d is negative", ErrInvalidConfig, f.name, *f.v)
		case *f.v == 0:
			*f.v = f.def
		}
	}
	for _, f := range fields[1:] {
		if *f.v > cfg.Capacity {
			return nil, fmt.Errorf("%w: retry budget: %s %d is more than the Capacity %d "+
				"(a zero field takes its default)", ErrInvalidConfig, f.name, *f.v, cfg.Capacity)
		}
	}
	return &RetryBudget{cfg: cfg, tokens: cfg.Capacity}, nil
}

// Config returns the budget's sizes, defaults filled in.
func (b *RetryBudget) Config() RetryBudgetConfig { return b.cfg }

// Tokens returns the tokens the budget holds now, for metrics and tests.
func (b *RetryBudget) Tokens() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.tokens
}

// cost is what a retry after the attempt a takes.
func (b *RetryBudget) cost(a *Attempt) int {
	if a.Err != nil {
		return b.cfg.TimeoutCost
	}
	return b.cfg.RetryCost
}

// withdraw takes n tokens if the budget holds them.
func (b *RetryBudget) withdraw(n int) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.tokens < n {
		return false
	}
	b.tokens -= n
	return true
}

// deposit gives n tokens back, up to the capacity. n is never more than the
// capacity (NewRetryBudget sees to it), so the sum cannot overflow.
func (b *RetryBudget) deposit(n int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.tokens = min(b.tokens+n, b.cfg.Capacity)
}

// budgetError is the failure of a call whose retry the budget refused. It
// matches both ErrRetryBudgetExhausted and the last attempt's failure.
type budgetError struct{ last error }

func (e *budgetError) Error() string {
	return "retry budget exhausted, so not retried: " + e.last.Error()
}

func (e *budgetError) Unwrap() []error { return []error{ErrRetryBudgetExhausted, e.last} }
