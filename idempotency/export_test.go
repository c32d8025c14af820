package idempotency

import "time"

// UseTimers makes m schedule its renewals, fences, backoffs and store
// deadlines with afterFunc instead of real timers, so that a test fires
// each one by hand. kind says what the timer is for: "renew", "fence",
// "backoff" or "deadline".
func UseTimers(m *Middleware, afterFunc func(kind string, d time.Duration, f func()) interface{ Stop() bool }) {
	m.afterFunc = func(kind string, d time.Duration, f func()) stopper { return afterFunc(kind, d, f) }
}
