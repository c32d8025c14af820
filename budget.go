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
// The costs make the rule that holds in the long run: a client retries at
// most one call for every five the gateway answers (SuccessRefund /
// RetryCost), so retries add at most 20% to the load of a struggling
// gateway, and nothing once it stops answering. Ordinary trouble never
// reaches that rate: a gateway that loses 2% of the answers costs 10 tokens
// per 100 calls and gives back 98. The capacity is the burst: 20 retries
// after answers, or 10 after timeouts, before the budget decides.
//
// For a checkout server, that means a few unlucky customers still get their
// retries in the first seconds of an outage, and then the fleet stops
// multiplying the load on a gateway that is trying to recover; the calls it
// does not retry fail at once with their key, instead of keeping a person
// waiting for retries that cannot succeed. For a billing batch, which makes
// calls back to back, the budget drains in well under a second of outage,
// so the rest of the run fails fast (with [ErrOutcomeUnknown] and the key
// where a call may have executed) and the rerun settles those records with
// the same keys.
const (
	DefaultBudgetCapacity      = 100
	DefaultBudgetRetryCost     = 5
	DefaultBudgetTimeoutCost   = 10
	DefaultBudgetSuccessRefund = 1
)

// ErrRetryBudgetExhausted means a call was not retried because the client's
// [RetryBudget] was empty: too many recent calls failed. The error wraps the
// failure of the last attempt too, and is still an [*OutcomeUnknownError]
// when that attempt may have executed.
var ErrRetryBudgetExhausted = errors.New("payonce: retry budget exhausted")

// RetryBudgetConfig sizes a [RetryBudget]. A zero field takes its default.
type RetryBudgetConfig struct {
	// Capacity is the number of tokens in a full bucket, which is how a
	// budget starts. Default: [DefaultBudgetCapacity].
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
// [WithRetryBudget]. A budget is safe for concurrent use, and one budget may
// be shared by several clients that talk to the same gateway.
type RetryBudget struct {
	cfg    RetryBudgetConfig
	mu     sync.Mutex
	tokens int
}

// NewRetryBudget returns a full budget. It refuses negative sizes, a zero
// capacity, and costs larger than the capacity (a budget that could never
// allow a retry is [WithMaxRetries](0)).
func NewRetryBudget(cfg RetryBudgetConfig) (*RetryBudget, error) {
	if cfg.Capacity < 0 || cfg.RetryCost < 0 || cfg.TimeoutCost < 0 || cfg.SuccessRefund < 0 {
		return nil, fmt.Errorf("%w: retry budget: negative size in %+v", ErrInvalidConfig, cfg)
	}
	if cfg.Capacity == 0 {
		cfg.Capacity = DefaultBudgetCapacity
	}
	if cfg.RetryCost == 0 {
		cfg.RetryCost = DefaultBudgetRetryCost
	}
	if cfg.TimeoutCost == 0 {
		cfg.TimeoutCost = DefaultBudgetTimeoutCost
	}
	if cfg.SuccessRefund == 0 {
		cfg.SuccessRefund = DefaultBudgetSuccessRefund
	}
	if cfg.RetryCost > cfg.Capacity || cfg.TimeoutCost > cfg.Capacity {
		return nil, fmt.Errorf("%w: retry budget: a retry costs more than the capacity (%+v), "+
			"so no retry could ever happen; use WithMaxRetries(0) to disable retries", ErrInvalidConfig, cfg)
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

// deposit gives n tokens back, up to the capacity.
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
