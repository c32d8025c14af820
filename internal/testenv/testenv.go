// Package testenv finds the real PostgreSQL and Redis servers that the
// tests of the shared idempotency stores, and of everything built on them,
// run against. It lives at the module's root so that any package's tests
// may use it, not only those under idempotency/.
package testenv

import (
	"crypto/rand"
	"os"
	"strings"
	"testing"
)

// The environment variables that name the servers the tests use.
const (
	PostgresEnv = "PAYONCE_TEST_POSTGRES_URL"
	RedisEnv    = "PAYONCE_TEST_REDIS_URL"
)

const postgresHowTo = `to run them against a local PostgreSQL, on Debian:
  sudo apt-get install postgresql
  PG=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  sudo install -d -o postgres /tmp/payonce-pg
  sudo -u postgres $PG/initdb -D /tmp/payonce-pg -U postgres -A trust
  sudo -u postgres $PG/pg_ctl -D /tmp/payonce-pg -l /tmp/payonce-pg/log -o "-h 127.0.0.1 -p 5433 -k /tmp/payonce-pg" start
  $PG/createdb -h 127.0.0.1 -p 5433 -U postgres payonce_test
  export PAYONCE_TEST_POSTGRES_URL='postgres://postgres@127.0.0.1:5433/payonce_test?sslmode=disable'
(.ci/run does the same and runs every test)`

const redisHowTo = `to run them against a local Redis, on Debian:
  sudo apt-get install redis-server
  redis-server --bind 127.0.0.1 --port 6380 --save '' --daemonize yes
  export PAYONCE_TEST_REDIS_URL='redis://127.0.0.1:6380/0'
(.ci/run does the same and runs every test)`

// PostgresURL returns the URL of the PostgreSQL server to test against. When
// none is set it skips the test, saying how to start one, or fails it under
// CI=true, where a missing server is a broken setup and not a reason to skip.
func PostgresURL(tb testing.TB) string {
	tb.Helper()
	return serverURL(tb, PostgresEnv, postgresHowTo)
}

// RedisURL is [PostgresURL] for the Redis server.
func RedisURL(tb testing.TB) string {
	tb.Helper()
	return serverURL(tb, RedisEnv, redisHowTo)
}

func serverURL(tb testing.TB, env, howTo string) string {
	tb.Helper()
	if u := os.Getenv(env); u != "" {
		return u
	}
	if os.Getenv("CI") == "true" {
		tb.Fatalf("%s is not set, and CI=true: .ci/run starts the server and sets it", env)
	}
	tb.Skipf("%s is not set, so these tests are skipped; %s", env, howTo)
	return ""
}

// Name returns a name no other test run uses, made of prefix and lower-case
// letters and digits, for a table or a key prefix: tests may run in
// parallel and reruns never meet the leftovers of an earlier run.
func Name(prefix string) string {
	return prefix + strings.ToLower(rand.Text()[:16])
}
