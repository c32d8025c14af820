package mock

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/payonce/payonce/idempotency"
)

// DefaultHistoryLimit is how many requests the history keeps by default.
const DefaultHistoryLimit = 10000

// DefaultHistoryBytes is how many bytes of records the history keeps by
// default. Each record counts its strings plus a fixed overhead, and stores
// at most 2 KiB of path (see [RequestRecord]), so the default count limit
// binds first unless records are long.
const DefaultHistoryBytes = 32 << 20

// An Option configures a [Gateway]. Options check their arguments: [New]
// returns the first error, and [NewServer] panics with it.
type Option func(*config) error

type config struct {
	ttl            time.Duration
	optionalKey    bool
	mismatchStatus int
	chaosRate      float64
	chaosSeed      int64
	apiKeys        [][sha256.Size]byte // digests of the accepted keys; nil accepts any
	store          idempotency.Store   // nil: a fresh MemoryStore per reset
	historyLimit   int
	historyBytes   int
	controlToken   *[sha256.Size]byte // digest of the control token; nil checks the Host instead
	logger         *slog.Logger
	start          time.Time
	hooks          hookConfig
}

// WithTTL sets how long a finished idempotency key is remembered (default
// [idempotency.DefaultTTL], 24 hours). Time is the gateway's clock, so
// [Gateway.AdvanceClock] expires keys without waiting.
func WithTTL(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("mock: TTL must be positive, got %v", d)
		}
		c.ttl = d
		return nil
	}
}

// WithOptionalKey makes Idempotency-Key optional: a POST without one executes
// every time, as on gateways that do not require keys. It exists so that a
// test can show the double charge a missing key allows. Requests that carry
// a key still follow every rule.
func WithOptionalKey() Option {
	return func(c *config) error {
		c.optionalKey = true
		return nil
	}
}

// WithMismatchStatus sets the status for a key reused with a different
// request: 422 (the default, as the IETF draft says) or 400 (as Stripe).
func WithMismatchStatus(status int) Option {
	return func(c *config) error {
		if status != http.StatusUnprocessableEntity && status != http.StatusBadRequest {
			return fmt.Errorf("mock: mismatch status must be 422 or 400, got %d", status)
		}
		c.mismatchStatus = status
		return nil
	}
}

// WithChaos turns on chaos from the start: each POST outside the control
// surface gets, with probability rate, a fault drawn at random from
// fail_before 503, fail_before 429 (Retry-After 1), fail_after 500,
// fail_after 503, drop_before and drop_after. Chaos never delays. A rate of
// 0 turns it off. [Gateway.Reset] restarts chaos with this rate and seed.
//
// Each draw is a hash of the seed and the request: its Authorization
// header, method, path, Idempotency-Key, and how many POSTs with those four
// chaos has seen before it. So the same seed and the same requests give the
// same faults in any order, concurrent runs included: the n-th attempt of a
// key meets the same fault however the attempts of other keys interleave.
// Requests without a key are told apart only by that count. The counts
// start over with [Gateway.SetChaos] and [Gateway.Reset]; chaos remembers
// those of the latest 65,536 to 131,072 distinct requests, so in a run with
// more, a request whose previous attempt is older than that counts from 0
// again.
func WithChaos(rate float64, seed int64) Option {
	return func(c *config) error {
		if err := checkRate(rate); err != nil {
			return err
		}
		c.chaosRate, c.chaosSeed = rate, seed
		return nil
	}
}

// WithAPIKeys restricts the gateway to the given API keys; by default any
// well-formed sk_test_ key is accepted and is its own account. The gateway
// keeps only their SHA-256 digests and compares in constant time.
func WithAPIKeys(keys ...string) Option {
	return func(c *config) error {
		if len(keys) == 0 {
			return errors.New("mock: WithAPIKeys needs at least one key")
		}
		for _, k := range keys {
			if !wellFormedKey(k) {
				return errors.New("mock: an API key given to WithAPIKeys is not of the form sk_test_<visible ASCII>")
			}
			c.apiKeys = append(c.apiKeys, sha256.Sum256([]byte(k)))
		}
		return nil
	}
}

// WithStore keeps idempotency records in store instead of a fresh
// [idempotency.MemoryStore], for instance to exercise a shared store:
// gateways given stores that share their records (one PostgreSQL table, one
// Redis) replay each other's keys. Since the gateway cannot empty a store
// it does not own, [Gateway.Reset] then moves this gateway alone to a new,
// randomly named scope in it: older records become unreachable to it and
// expire with their TTL, and other gateways keep theirs.
func WithStore(store idempotency.Store) Option {
	return func(c *config) error {
		if store == nil {
			return errors.New("mock: nil store")
		}
		c.store = store
		return nil
	}
}

// WithHistoryLimit sets how many of the latest requests [Gateway.Requests]
// keeps (default [DefaultHistoryLimit]). Older ones are forgotten, so a
// long-running gateway stays bounded; [Gateway.Stats] counts them all.
func WithHistoryLimit(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("mock: history limit must be positive, got %d", n)
		}
		c.historyLimit = n
		return nil
	}
}

// WithHistoryBytes bounds the history in bytes (default
// [DefaultHistoryBytes]) as well as in count ([WithHistoryLimit]): the
// oldest records are forgotten until both bounds hold, though the latest
// is always kept. A record counts the bytes of its strings plus 256 for the
// rest.
func WithHistoryBytes(n int) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("mock: history bytes must be positive, got %d", n)
		}
		c.historyBytes = n
		return nil
	}
}

// WithControlToken makes the control surface (everything under /_mock/;
// /healthz stays open) require Authorization: Bearer token, compared in
// constant time, in place of the default rule that a control request's
// Host be a loopback name or address. Use it when the gateway is reached
// under another name, as cmd/payonce-mock -allow-remote -control-token
// does. The token must be visible ASCII, with no spaces.
func WithControlToken(token string) Option {
	return func(c *config) error {
		if token == "" {
			return errors.New("mock: empty control token")
		}
		for i := range len(token) {
			if token[i] <= ' ' || token[i] > '~' {
				return errors.New("mock: a control token must be visible ASCII with no spaces")
			}
		}
		sum := sha256.Sum256([]byte(token))
		c.controlToken = &sum
		return nil
	}
}

// WithLogger logs one line per request at level Info: method, path,
// idempotency key, account, status, outcome and any injected fault. API
// keys are never logged. By default nothing is logged.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return errors.New("mock: nil logger")
		}
		c.logger = l
		return nil
	}
}

// WithStartTime starts the gateway's clock at t instead of the current
// time; it then runs at the speed of the real one. Use it to get the same
// created timestamps on every run.
func WithStartTime(t time.Time) Option {
	return func(c *config) error {
		if t.IsZero() {
			return errors.New("mock: zero start time")
		}
		c.start = t
		return nil
	}
}

func checkRate(rate float64) error {
	if !(rate >= 0 && rate <= 1) { // also refuses NaN
		return fmt.Errorf("mock: chaos rate must be between 0 and 1, got %v", rate)
	}
	return nil
}
