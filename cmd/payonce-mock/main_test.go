package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/internal/testenv"
	"github.com/payonce/payonce/mock"
)

const apiKey = "sk_test_cmd_secret_4eC39HqLyjWD"

// started is a run in progress.
type started struct {
	url   string
	lines chan string // stderr, line by line
	done  chan error  // run's result
	stop  context.CancelFunc
}

// start runs the command on a free loopback port and waits until it
// listens.
func start(t *testing.T, args ...string) *started {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	pr, pw := io.Pipe()
	s := &started{lines: make(chan string, 1000), done: make(chan error, 1), stop: cancel}
	go func() {
		s.done <- run(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), pw)
		pw.Close()
	}()
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			s.lines <- sc.Text()
		}
		close(s.lines)
	}()
	t.Cleanup(func() {
		cancel()
		<-s.done
	})
	first, ok := <-s.lines
	if !ok {
		t.Fatalf("run ended before listening: %v", <-s.done)
	}
	addr, found := strings.CutPrefix(first, "payonce-mock: listening on ")
	require.True(t, found, "first line: %q", first)
	s.url = addr
	return s
}

// waitLine returns the next stderr line that contains substr.
func (s *started) waitLine(t *testing.T, substr string) string {
	t.Helper()
	deadline := time.After(30 * time.Second) // only for a broken run: fail, not hang
	for {
		select {
		case line, ok := <-s.lines:
			if !ok {
				t.Fatalf("no line containing %q", substr)
			}
			if strings.Contains(line, substr) {
				return line
			}
		case <-deadline:
			t.Fatalf("no line containing %q", substr)
		}
	}
}

func post(t *testing.T, url, key, idemKey, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest("POST", url+"/v1/charges", strings.NewReader(body))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+key)
	req.Header.Set("Content-Type", "application/json")
	if idemKey != "" {
		req.Header.Set("Idempotency-Key", idemKey)
	}
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res
}

const charge = `{"amount":1001,"currency":"usd","payment_method":"tok_visa"}`

func TestRun(t *testing.T) {
	s := start(t, "-api-key", apiKey, "-api-key", "sk_test_other")
	res, err := http.Get(s.url + "/healthz")
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)

	assert.Equal(t, http.StatusOK, post(t, s.url, apiKey, "order_1", charge).StatusCode)
	line := s.waitLine(t, "msg=request")
	assert.Contains(t, line, "method=POST path=/v1/charges key=order_1")
	assert.Contains(t, line, "status=200 outcome=executed")
	assert.NotContains(t, line, "secret")

	res = post(t, s.url, apiKey, "order_1", charge)
	assert.Equal(t, "true", res.Header.Get("Idempotent-Replayed"))
	assert.Contains(t, s.waitLine(t, "msg=request"), "outcome=replayed")

	res = post(t, s.url, "sk_test_unknown", "order_2", charge)
	assert.Equal(t, http.StatusUnauthorized, res.StatusCode, "-api-key restricts the accounts")
	assert.Equal(t, http.StatusBadRequest, post(t, s.url, apiKey, "", charge).StatusCode, "keys are required by default")

	s.stop()
	require.NoError(t, <-s.done, "a clean shutdown")
	s.done <- nil // for the cleanup
	var rest strings.Builder
	for l := range s.lines {
		rest.WriteString(l + "\n")
	}
	assert.Contains(t, rest.String(), "shutting down")
	assert.NotContains(t, rest.String(), "secret")
}

func TestRunLenient(t *testing.T) {
	s := start(t, "-require-key=false", "-ttl", "1h", "-mismatch-status", "400")
	assert.Equal(t, http.StatusOK, post(t, s.url, apiKey, "", charge).StatusCode)
	assert.Equal(t, http.StatusOK, post(t, s.url, apiKey, "", charge).StatusCode)
	assert.Equal(t, http.StatusOK, post(t, s.url, apiKey, "k", charge).StatusCode)
	assert.Equal(t, http.StatusBadRequest, post(t, s.url, apiKey, "k", strings.Replace(charge, "1001", "1002", 1)).StatusCode)

	res, err := http.Get(s.url + "/_mock/charges")
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	assert.Equal(t, 3, strings.Count(string(body), `"object":"charge"`))
}

func TestRunChaos(t *testing.T) {
	s := start(t, "-chaos", "1", "-seed", "3")
	res, err := http.Get(s.url + "/_mock/chaos")
	require.NoError(t, err)
	body, _ := io.ReadAll(res.Body)
	res.Body.Close()
	assert.JSONEq(t, `{"rate":1,"seed":3}`, string(body))
}

func TestRunRefusesBadArguments(t *testing.T) {
	// Canceled, so that a run that wrongly starts ends at once with no error.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	for _, args := range [][]string{
		{"-addr", "0.0.0.0:0"},
		{"-addr", "[::]:0"},
		{"-addr", "192.0.2.1:80"},
		{"-addr", "example.com:80"},
		{"-addr", "no-port"},
		{"-ttl", "0s"},
		{"-chaos", "1.5"},
		{"-mismatch-status", "418"},
		{"-api-key", "pk_live_x"},
		{"-history", "0"},
		{"-history-bytes", "0"},
		{"-events", "0"},
		{"-delivery-records", "-1"},
		{"-control-token", "has space"},
		{"-no-such-flag"},
		{"extra"},
	} {
		var stderr strings.Builder
		err := run(ctx, args, &stderr)
		assert.Error(t, err, "%q", args)
	}
	var stderr strings.Builder
	err := run(ctx, []string{"-addr", "0.0.0.0:0"}, &stderr)
	assert.ErrorContains(t, err, "-allow-remote")
}

// -allow-remote says at start what it exposes, and that a token is advised.
func TestRunAllowRemoteWarns(t *testing.T) {
	s := start(t, "-allow-remote", "-addr", "0.0.0.0:0")
	var warning strings.Builder
	for range 3 {
		warning.WriteString(s.waitLine(t, "WARNING") + "\n")
	}
	w := warning.String()
	assert.Contains(t, w, "-allow-remote")
	assert.Contains(t, w, "beyond this machine")
	assert.Contains(t, w, "no authentication")
	assert.Contains(t, w, "inject faults")
	assert.Contains(t, w, "reset all state")
	assert.Contains(t, w, "the request history")
	assert.Contains(t, w, "-control-token is strongly advised")
	assert.Contains(t, w, "-api-key restricts it")

	s = start(t, "-allow-remote", "-addr", "0.0.0.0:0", "-control-token", "ctl_secret_token", "-api-key", apiKey)
	line := s.waitLine(t, "WARNING")
	assert.Contains(t, line, "beyond this machine")
	line = s.waitLine(t, "WARNING")
	assert.Contains(t, line, "requires the -control-token")
	assert.NotContains(t, line, "ctl_secret_token", "the token is never printed")
}

// With -control-token, the control surface wants the token, under any Host.
func TestRunControlToken(t *testing.T) {
	s := start(t, "-control-token", "ctl_secret_token")
	get := func(auth, host string) int {
		req, err := http.NewRequest("GET", s.url+"/_mock/charges", nil)
		require.NoError(t, err)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		if host != "" {
			req.Host = host
		}
		res, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}
	assert.Equal(t, http.StatusUnauthorized, get("", ""))
	assert.Equal(t, http.StatusUnauthorized, get("Bearer ctl_secret_tokeN", ""))
	assert.Equal(t, http.StatusOK, get("Bearer ctl_secret_token", ""))
	assert.Equal(t, http.StatusOK, get("Bearer ctl_secret_token", "mock.ci.internal"))

	s = start(t)
	assert.Equal(t, http.StatusForbidden, get("", "attacker.example"), "no token: a loopback Host only")
}

// The server bounds slow clients: here with small values, to watch them.
func TestServerTimeouts(t *testing.T) {
	d := newServer(http.NotFoundHandler(), slog.New(slog.DiscardHandler), defaultTimeouts)
	assert.Positive(t, d.ReadHeaderTimeout)
	assert.Positive(t, d.ReadTimeout)
	assert.Positive(t, d.IdleTimeout)
	assert.Greater(t, d.WriteTimeout, mock.MaxFaultDelay, "a delay fault's longest hold still answers")

	srv := newServer(http.NotFoundHandler(), slog.New(slog.DiscardHandler),
		timeouts{readHeader: 100 * time.Millisecond, read: time.Second, write: time.Second, idle: 100 * time.Millisecond})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	for _, send := range []string{
		"GET /healthz HTTP/1.1\r\nHost: localhost\r\nX-Slow: ", // slowloris: headers never end
		"", // a connection that stays idle
	} {
		conn, err := net.Dial("tcp", ln.Addr().String())
		require.NoError(t, err)
		_, err = io.WriteString(conn, send)
		require.NoError(t, err)
		require.NoError(t, conn.SetReadDeadline(time.Now().Add(10*time.Second))) // only for a broken server
		began := time.Now()
		_, err = io.ReadAll(conn)
		var ne net.Error
		assert.False(t, errors.As(err, &ne) && ne.Timeout(), "%q: the server hung up, the client did not time out: %v", send, err)
		assert.Less(t, time.Since(began), 5*time.Second)
		conn.Close()
	}
}

func TestCheckLoopback(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:12111", "127.0.0.2:1", "[::1]:80", "localhost:0"} {
		assert.NoError(t, checkLoopback(ok), ok)
	}
	for _, bad := range []string{":12111", "0.0.0.0:1", "10.0.0.1:1", "[::]:1", "host:1"} {
		assert.Error(t, checkLoopback(bad), bad)
	}
}

// postgresStore returns -store flags for the test PostgreSQL server, on a
// table of the test's own that is dropped when it ends, and the URL.
func postgresStore(t *testing.T) ([]string, string) {
	t.Helper()
	raw := testenv.PostgresURL(t)
	table := testenv.Name("payonce_cmd_")
	t.Cleanup(func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, raw)
		require.NoError(t, err)
		defer conn.Close(ctx)
		_, err = conn.Exec(ctx, "DROP TABLE IF EXISTS "+pgx.Identifier{table}.Sanitize())
		assert.NoError(t, err)
	})
	return []string{"-store", raw, "-store-table", table}, raw
}

// redisStore is postgresStore for the test Redis server, on a key prefix of
// the test's own whose keys are deleted when it ends.
func redisStore(t *testing.T) ([]string, string) {
	t.Helper()
	raw := testenv.RedisURL(t)
	prefix := testenv.Name("payonce:cmd:") + ":"
	t.Cleanup(func() {
		opts, err := redis.ParseURL(raw)
		require.NoError(t, err)
		c := redis.NewClient(opts)
		defer c.Close()
		ctx := context.Background()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		for iter.Next(ctx) {
			c.Del(ctx, iter.Val())
		}
		assert.NoError(t, iter.Err())
	})
	return []string{"-store", raw, "-store-prefix", prefix}, raw
}

// count returns how many records a store holds, for the test's table or
// prefix.
func countRecords(t *testing.T, args []string) int {
	t.Helper()
	ctx := context.Background()
	switch args[2] {
	case "-store-table":
		conn, err := pgx.Connect(ctx, args[1])
		require.NoError(t, err)
		defer conn.Close(ctx)
		var n int
		require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{args[3]}.Sanitize()).Scan(&n))
		return n
	default:
		opts, err := redis.ParseURL(args[1])
		require.NoError(t, err)
		c := redis.NewClient(opts)
		defer c.Close()
		keys, err := c.Keys(ctx, args[3]+"*").Result()
		require.NoError(t, err)
		return len(keys)
	}
}

// With -store, the records live in the shared store: a second mock, with
// its own memory, replays the first one's key, and so does a mock started
// after both have stopped.
func TestRunSharedStore(t *testing.T) {
	for name, flags := range map[string]func(*testing.T) ([]string, string){
		"postgres": postgresStore,
		"redis":    redisStore,
	} {
		t.Run(name, func(t *testing.T) {
			args, raw := flags(t)
			a := start(t, args...)
			line := a.waitLine(t, "msg=started")
			assert.Contains(t, line, "store=")
			assert.Contains(t, line, redacted(t, raw))
			b := start(t, args...)

			res := post(t, a.url, apiKey, "order_shared", charge)
			require.Equal(t, http.StatusOK, res.StatusCode)
			assert.Empty(t, res.Header.Get("Idempotent-Replayed"))
			assert.Contains(t, a.waitLine(t, "msg=request"), "outcome=executed")
			assert.Equal(t, 1, countRecords(t, args), "the record is in the store")

			res = post(t, b.url, apiKey, "order_shared", charge)
			assert.Equal(t, http.StatusOK, res.StatusCode)
			assert.Equal(t, "true", res.Header.Get("Idempotent-Replayed"), "b replays a's key")
			assert.Contains(t, b.waitLine(t, "msg=request"), "outcome=replayed")

			res = post(t, b.url, apiKey, "order_shared", strings.Replace(charge, "1001", "1002", 1))
			assert.Equal(t, http.StatusUnprocessableEntity, res.StatusCode, "b knows the fingerprint too")

			for _, s := range []*started{a, b} {
				s.stop()
				require.NoError(t, <-s.done, "a clean shutdown, the store closed")
				s.done <- nil // for the cleanup
			}
			c := start(t, args...)
			res = post(t, c.url, apiKey, "order_shared", charge)
			assert.Equal(t, "true", res.Header.Get("Idempotent-Replayed"), "the record outlives the processes")
		})
	}
}

// Without -store, each process keeps its own records: the control for
// TestRunSharedStore.
func TestRunMemoryStoreIsPerProcess(t *testing.T) {
	a, b := start(t), start(t)
	assert.Contains(t, a.waitLine(t, "msg=started"), "store=memory")
	require.Equal(t, http.StatusOK, post(t, a.url, apiKey, "order_own", charge).StatusCode)
	res := post(t, b.url, apiKey, "order_own", charge)
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Empty(t, res.Header.Get("Idempotent-Replayed"), "b executes: it has its own memory")
}

// The URL's password shows in no log line. (TestRunStoreUnreachable and
// TestRunRefusesBadStore check the errors.)
func TestRunStoreRedactsPassword(t *testing.T) {
	const secret = "s3cr3t-pw"
	for name, flags := range map[string]func(*testing.T) ([]string, string){
		"postgres": postgresStore,
		"redis":    redisStore,
	} {
		t.Run(name, func(t *testing.T) {
			args, raw := flags(t)
			u, err := url.Parse(raw)
			require.NoError(t, err)
			// The test servers trust loopback connections: PostgreSQL
			// ignores the password, and go-redis tolerates Redis's
			// refusal of an AUTH it does not need.
			user := ""
			if u.User != nil {
				user = u.User.Username()
			}
			u.User = url.UserPassword(user, secret)
			args[1] = u.String()
			s := start(t, args...)
			line := s.waitLine(t, "msg=started")
			assert.Contains(t, line, "xxxxx")
			assert.Contains(t, line, u.Host)
			assert.NotContains(t, line, secret)
			assert.Equal(t, http.StatusOK, post(t, s.url, apiKey, "order_pw", charge).StatusCode)
			s.stop()
			require.NoError(t, <-s.done)
			s.done <- nil
			for l := range s.lines {
				assert.NotContains(t, l, secret)
			}
		})
	}
}

func TestRunRefusesBadStore(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-store", "mysql://root:hunter2@127.0.0.1/db"}, `unknown scheme "mysql"`},
		{[]string{"-store", "host=127.0.0.1 password=hunter2"}, "want a postgres://"},
		{[]string{"-store", "127.0.0.1:6379"}, "bad -store"},
		{[]string{"-store", "postgres://u:hunter2@127.0.0.1:bad/db"}, "bad -store URL"},
		{[]string{"-store-table", "t"}, "need a -store"},
		{[]string{"-store-prefix", "p:"}, "need a -store"},
		{[]string{"-store", "redis://:hunter2@127.0.0.1:1/0", "-store-table", "t"}, "-store-table is for a PostgreSQL"},
		{[]string{"-store", "postgres://u:hunter2@127.0.0.1:1/db", "-store-prefix", "p:"}, "-store-prefix is for a Redis"},
		{[]string{"-store", "postgres://u:hunter2@127.0.0.1:1/db", "-store-table", "Bad-Name"}, "invalid table name"},
		{[]string{"-store", "redis://:hunter2@127.0.0.1:1/0", "-store-prefix", "{p}"}, "brace"},
		{[]string{"-store", "redis://:hunter2@127.0.0.1:1/notadb"}, "invalid database"},
	} {
		var stderr strings.Builder
		err := run(context.Background(), append([]string{"-addr", "127.0.0.1:0"}, tc.args...), &stderr)
		if assert.Error(t, err, "%q", tc.args) {
			assert.Contains(t, err.Error(), tc.want, "%q", tc.args)
			assert.NotContains(t, err.Error(), "hunter2", "%q", tc.args)
		}
		assert.NotContains(t, stderr.String(), "hunter2", "%q", tc.args)
	}
}

// A -store server that does not answer is an error at startup, not a mock
// that fails every request later.
func TestRunStoreUnreachable(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	for _, raw := range []string{
		"postgres://postgres:hunter2@" + addr + "/db?sslmode=disable&connect_timeout=2",
		"redis://:hunter2@" + addr + "/0",
	} {
		var stderr strings.Builder
		err := run(context.Background(), []string{"-addr", "127.0.0.1:0", "-store", raw}, &stderr)
		if assert.Error(t, err, raw) {
			assert.Contains(t, err.Error(), addr)
			assert.NotContains(t, err.Error(), "hunter2")
		}
		assert.NotContains(t, stderr.String(), "listening on", "it never listened")
	}
}

// redacted is raw as the logs show it, its secrets taken out.
func redacted(t *testing.T, raw string) string {
	t.Helper()
	u, err := url.Parse(raw)
	require.NoError(t, err)
	return redactURL(u)
}

// createEndpoint creates a webhook endpoint at hookURL for every event,
// through Stripe's dialect, and returns the answer's status.
func createEndpoint(t *testing.T, s *started, hookURL string) int {
	t.Helper()
	form := url.Values{"url": {hookURL}, "enabled_events[0]": {"*"}}
	req, err := http.NewRequest("POST", s.url+"/v1/webhook_endpoints", strings.NewReader(form.Encode()))
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res.StatusCode
}

// -allow-remote-webhooks, and it alone, lets webhook endpoints be beyond
// loopback, and says so at start.
func TestRunAllowRemoteWebhooks(t *testing.T) {
	create := func(s *started) int { return createEndpoint(t, s, "https://hooks.example.com/stripe") }
	assert.Equal(t, http.StatusBadRequest, create(start(t)), "loopback endpoints only by default")
	assert.Equal(t, http.StatusBadRequest, create(start(t, "-allow-remote")), "-allow-remote is about the listener alone")
	s := start(t, "-allow-remote-webhooks")
	line := s.waitLine(t, "WARNING")
	assert.Contains(t, line, "-allow-remote-webhooks")
	assert.Contains(t, line, "any URL")
	assert.Equal(t, http.StatusOK, create(s))
}

// -events and -delivery-records bound what the mock keeps of them; the
// counters still count every one.
func TestRunLimits(t *testing.T) {
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	defer hook.Close()
	type counts struct {
		events, deliveries int
		attempts           int64
	}
	charge3 := func(s *started) counts {
		require.Equal(t, http.StatusOK, createEndpoint(t, s, hook.URL+"/stripe"))
		for i := range 3 {
			require.Equal(t, http.StatusOK, post(t, s.url, apiKey, "limit-"+strconv.Itoa(i), charge).StatusCode)
		}
		res, err := http.Post(s.url+"/_mock/deliveries/wait", "application/json", strings.NewReader(`{"timeout_ms":30000}`))
		require.NoError(t, err)
		var stats mock.DeliveryStats
		require.NoError(t, json.NewDecoder(res.Body).Decode(&stats))
		res.Body.Close()
		require.Equal(t, http.StatusOK, res.StatusCode)
		list := func(path string) int {
			res, err := http.Get(s.url + path)
			require.NoError(t, err)
			defer res.Body.Close()
			var page struct{ Data []json.RawMessage }
			require.NoError(t, json.NewDecoder(res.Body).Decode(&page))
			return len(page.Data)
		}
		assert.EqualValues(t, 3, stats.Events, "every event counted")
		assert.EqualValues(t, 3, stats.Attempts, "every attempt counted")
		return counts{events: list("/_mock/events"), deliveries: list("/_mock/deliveries"), attempts: stats.Attempts}
	}
	assert.Equal(t, counts{events: 3, deliveries: 3, attempts: 3}, charge3(start(t)), "the defaults keep all three")
	assert.Equal(t, counts{events: 2, deliveries: 1, attempts: 3},
		charge3(start(t, "-events", "2", "-delivery-records", "1")))
}
