// Package stripecompat holds only tests: stripe-go v85, unmodified, sending
// through payonce.NewHTTPClient to the mock's Stripe dialect, and stripe-go
// alone against the same faults. It keeps stripe-go out of the payonce
// package's dependencies.
package stripecompat
