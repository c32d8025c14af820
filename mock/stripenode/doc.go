// Package stripenode holds no code: it is the home of the test that drives
// stripe-node, Stripe's own Node.js client, unmodified apart from its host,
// against the mock gateway, to check that the mock speaks Stripe's wire
// dialect as a real Stripe client expects.
//
// flows.mjs runs the flows with the stripe package pinned in package.json
// and package-lock.json, and prints what it saw; stripenode_test.go starts a
// [github.com/payonce/payonce/mock.Server], runs the flows against it and
// asserts the results. The Node dependencies are installed with
//
//	npm ci --prefix mock/stripenode --no-audit --no-fund
//
// which .ci/run does before the Go tests. Without Node 20 or later, or
// without that install, the test is skipped, except under CI=true, where it
// fails.
package stripenode
