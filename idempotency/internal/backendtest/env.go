// Package backendtest holds what the tests of the PostgreSQL and Redis
// stores share: finding the servers, a TCP proxy that can cut them off, and
// the multi-instance, fail-closed, takeover and benchmark scenarios that
// every shared store must get through.
//
// Its helpers call t.Fatal on misuse and on any failure of the servers.
package backendtest

import (
	"testing"

	"github.com/payonce/payonce/internal/testenv"
)

// The environment variables that name the servers the tests use.
const (
	PostgresEnv = testenv.PostgresEnv
	RedisEnv    = testenv.RedisEnv
)

// PostgresURL is [testenv.PostgresURL]: the URL of the PostgreSQL server, or
// a skip (a failure under CI=true) that says how to start one.
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	return testenv.PostgresURL(tb)
}

// RedisURL is [testenv.RedisURL].
func RedisURL(tb testing.TB) string {
	tb.Helper()
	return testenv.RedisURL(tb)
}

// Name is [testenv.Name]: a name no other test run uses.
func Name(prefix string) string { return testenv.Name(prefix) }
