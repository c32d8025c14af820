package main

import (
	"bufio"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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

func TestCheckLoopback(t *testing.T) {
	for _, ok := range []string{"127.0.0.1:12111", "127.0.0.2:1", "[::1]:80", "localhost:0"} {
		assert.NoError(t, checkLoopback(ok), ok)
	}
	for _, bad := range []string{":12111", "0.0.0.0:1", "10.0.0.1:1", "[::]:1", "host:1"} {
		assert.Error(t, checkLoopback(bad), bad)
	}
}
