package payonce

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tests of issue 12 (client): fake successes, stored 5xx, hidden resends,
// the API key in errors, redirects.

// countingServer answers every request with status, header and body, and
// counts the requests it received.
func countingServer(t *testing.T, status int, header http.Header, body string) (*httptest.Server, *atomic.Int32) {
	t.Helper()
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		n.Add(1)
		for k, v := range header {
			w.Header()[k] = v
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv, &n
}

func TestSuccessStatusWithoutTheResourceIsNotASuccess(t *testing.T) {
	bodies := map[string]string{
		"error body":     `{"error":{"type":"card_error","code":"card_declined","message":"Your card was declined."}}`,
		"empty object":   `{}`,
		"null":           `null`,
		"array":          `[]`,
		"not JSON":       `OK`,
		"no id":          `{"object":"charge","amount":2000,"status":"succeeded"}`,
		"another object": `{"id":"wd_1","object":"widget"}`,
		"empty body":     ``,
	}
	for name, body := range bodies {
		t.Run(name, func(t *testing.T) {
			srv, n := countingServer(t, http.StatusOK, http.Header{"Request-Id": {"req_fake"}}, body)
			c := (&fakeGateway{URL: srv.URL}).client(t)
			ctx := context.Background()

			// A POST may have executed: the outcome is unknown, with the key.
			ch, err := c.Charges.Create(ctx, chargeParams("order_fake"))
			assert.Nil(t, ch, "never a zero charge")
			var unknown *OutcomeUnknownError
			require.ErrorAs(t, err, &unknown)
			assert.Equal(t, "order_fake", unknown.IdempotencyKey)
			assert.ErrorIs(t, err, ErrMalformedResponse)
			assert.Equal(t, int32(1), n.Load(), "a success status is not retried")

			re, err := c.Refunds.Create(ctx, &RefundParams{Charge: "ch_1", IdempotencyKey: "refund_fake"})
			assert.Nil(t, re)
			require.ErrorAs(t, err, &unknown)
			assert.Equal(t, "refund_fake", unknown.IdempotencyKey)

			ch, err = c.Charges.Capture(ctx, "ch_1", nil)
			assert.Nil(t, ch)
			require.ErrorIs(t, err, ErrOutcomeUnknown)

			// A GET executed nothing: a plain error.
			ch, err = c.Charges.Get(ctx, "ch_1")
			assert.Nil(t, ch)
			require.ErrorIs(t, err, ErrMalformedResponse)
			assert.NotErrorIs(t, err, ErrOutcomeUnknown)
			assert.Contains(t, err.Error(), "request_id req_fake")

			for ch, err := range c.Charges.List(ctx, nil) {
				assert.Nil(t, ch)
				require.ErrorIs(t, err, ErrMalformedResponse)
			}
		})
	}
}

func TestNoContentIsNotACharge(t *testing.T) {
	srv, _ := countingServer(t, http.StatusNoContent, nil, "")
	c := (&fakeGateway{URL: srv.URL}).client(t)
	ch, err := c.Charges.Get(context.Background(), "ch_1")
	assert.Nil(t, ch)
	require.ErrorIs(t, err, ErrMalformedResponse)

	// Do into a value of the caller's keeps accepting a 204 with no body.
	req, err := c.NewRequest(http.MethodPost, "v1/widgets/w_1/touch", nil, "")
	require.NoError(t, err)
	var out struct{ ID string }
	_, err = c.Do(context.Background(), req, &out)
	require.NoError(t, err)
}

func TestDoRefusesAnErrorBodyWithASuccessStatus(t *testing.T) {
	srv, _ := countingServer(t, http.StatusOK, nil, `{"error":{"type":"card_error","code":"card_declined"}}`)
	c := (&fakeGateway{URL: srv.URL}).client(t)
	req, err := c.NewRequest(http.MethodPost, "v1/widgets", map[string]int{"size": 1}, "widget_2")
	require.NoError(t, err)
	_, err = c.Do(context.Background(), req, nil)
	require.ErrorIs(t, err, ErrOutcomeUnknown, "even with no value to decode into")
	require.ErrorIs(t, err, ErrMalformedResponse)
	assert.Contains(t, err.Error(), `type "card_error", code "card_declined"`)
}

// TestReplayedServerErrorIsTheStoredOutcome: a 500 that the handler answered
// itself, replayed, is a definite failure.
func TestReplayedServerErrorIsTheStoredOutcome(t *testing.T) {
	srv, n := countingServer(t, http.StatusInternalServerError,
		http.Header{"Idempotent-Replayed": {"true"}, "Request-Id": {"req_stored"}, "Content-Type": {"application/json"}},
		`{"error":{"type":"api_error","code":"processor_failed","message":"The handler failed."}}`)
	var lb logBuffer
	retryAll := func(*Attempt) (bool, string) { return true, "always" }
	c := (&fakeGateway{URL: srv.URL}).client(t, WithLogger(lb.logger()), WithRetryPolicy(retryAll))
	ch, err := c.Charges.Create(context.Background(), chargeParams("order_stored"))
	assert.Nil(t, ch)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.True(t, e.Replayed)
	assert.Equal(t, 500, e.StatusCode)
	assert.Equal(t, "processor_failed", e.Code)
	assert.Equal(t, "order_stored", e.IdempotencyKey)
	assert.NotErrorIs(t, err, ErrOutcomeUnknown, "a definite answer is never reported as unknown")
	assert.Contains(t, err.Error(), "replayed")
	assert.Equal(t, int32(1), n.Load(), "not retried, whatever the policy: a retry replays it again")
	assert.NotContains(t, lb.String(), "retrying")
}

// TestReplayedStandInForTheAnswerIsUnknown: the gateway stores a 500 in
// place of the real answer when that answer was too large to store (the
// request executed, docs/protocol.md §5.6) or when the handler panicked
// after it may have executed (§5.8). Replayed, neither is a failure of the
// charge: the outcome is unknown, at once (a retry replays it again), with
// the key, and the replayed *Error is still reachable.
func TestReplayedStandInForTheAnswerIsUnknown(t *testing.T) {
	for _, code := range []string{"idempotency_response_too_large", "handler_panicked"} {
		t.Run(code, func(t *testing.T) {
			srv, n := countingServer(t, http.StatusInternalServerError,
				http.Header{"Idempotent-Replayed": {"true"}, "Content-Type": {"application/json"}},
				`{"error":{"type":"api_error","code":"`+code+`","message":"stored in place of the answer"}}`)
			retryAll := func(*Attempt) (bool, string) { return true, "always" }
			c := (&fakeGateway{URL: srv.URL}).client(t, WithRetryPolicy(retryAll))
			ch, err := c.Charges.Create(context.Background(), chargeParams("order_"+code))
			assert.Nil(t, ch)
			var unknown *OutcomeUnknownError
			require.ErrorAs(t, err, &unknown, "the charge executed, or may have: %v", err)
			assert.Equal(t, "order_"+code, unknown.IdempotencyKey)
			assert.Equal(t, 1, unknown.Attempts)
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.True(t, e.Replayed)
			assert.Equal(t, code, e.Code)
			assert.Contains(t, err.Error(), "look the result up")
			assert.Equal(t, int32(1), n.Load(), "not retried, whatever the policy: a retry replays it again")
		})
	}
}

func TestReplayedServerErrorAfterALostAttempt(t *testing.T) {
	// The first attempt executes and fails with a 500 that the gateway
	// stores, and the answer is lost; the retry gets the stored 500.
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			dropConn(t, w)
			return
		}
		w.Header().Set("Idempotent-Replayed", "true")
		writeErr(w, 500, "api_error", "", "", "The handler failed.")
	}))
	defer srv.Close()
	c := (&fakeGateway{URL: srv.URL}).client(t)
	_, err := c.Charges.Create(context.Background(), chargeParams("order_stored2"))
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.True(t, e.Replayed)
	assert.NotErrorIs(t, err, ErrOutcomeUnknown)
	assert.Equal(t, int32(2), n.Load())
}

// TestNoHiddenResendOnADeadKeepAliveConnection kills a reused keep-alive
// connection after reading its second request, without answering. net/http
// would resend such a request by itself (it carries an Idempotency-Key); the
// client must make that resend itself, so that the attempts it reports are
// what the server received, and the retry goes through its policy and log.
func TestNoHiddenResendOnADeadKeepAliveConnection(t *testing.T) {
	type connCount struct{ n atomic.Int32 }
	type ctxKey struct{}
	var received, killed atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		received.Add(1)
		if r.Context().Value(ctxKey{}).(*connCount).n.Add(1) == 2 {
			killed.Add(1)
			dropConn(t, w)
			return
		}
		writeRaw(w, 200, mustJSON(&Charge{ID: "ch_1", Object: "charge", Amount: 2000}))
	}))
	srv.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, ctxKey{}, &connCount{})
	}
	srv.Start()
	defer srv.Close()

	var lb logBuffer
	var policyCalls atomic.Int32
	policy := func(a *Attempt) (bool, string) {
		policyCalls.Add(1)
		return DefaultRetryPolicy(a)
	}
	budget, err := NewRetryBudget(RetryBudgetConfig{Capacity: 1000, TimeoutCost: 10, SuccessRefund: 1})
	require.NoError(t, err)
	c := (&fakeGateway{URL: srv.URL}).client(t, WithLogger(lb.logger()), WithRetryPolicy(policy), WithRetryBudget(budget))

	attempts := 0
	for i := 0; i < 20 && killed.Load() < 2; i++ {
		for _, get := range []bool{false, true} {
			var ch *Charge
			if get {
				ch, err = c.Charges.Get(context.Background(), "ch_1")
			} else {
				ch, err = c.Charges.Create(context.Background(), chargeParams(fmt.Sprintf("order_conn_%d", i)))
			}
			require.NoError(t, err)
			attempts += ch.LastResponse.Attempts
		}
	}
	require.GreaterOrEqual(t, killed.Load(), int32(2), "connections were reused and killed")
	assert.Equal(t, int(received.Load()), attempts, "Attempts counts every request the server received")
	assert.Equal(t, received.Load(), policyCalls.Load(), "the policy saw every attempt")
	retries := strings.Count(lb.String(), `"msg":"payonce: retrying request"`)
	assert.Equal(t, int(killed.Load()), retries, "each resend was logged as a retry")
}

// keyFragments returns every substring of key of minKeyFragment bytes.
func keyFragments(key string) []string {
	var out []string
	for i := 0; i+minKeyFragment <= len(key); i++ {
		out = append(out, key[i:i+minKeyFragment])
	}
	return out
}

// assertNoKey fails if s holds minKeyFragment or more consecutive bytes of
// the test key.
func assertNoKey(t *testing.T, what, s string) {
	t.Helper()
	for _, f := range keyFragments(testAPIKey) {
		if strings.Contains(s, f) {
			t.Errorf("%s holds %q of the API key: %q", what, f, s)
			return
		}
	}
}

// assertErrNoKey checks the error's text, its %+v and %#v-free forms, and
// the text of every error it wraps.
func assertErrNoKey(t *testing.T, err error) {
	t.Helper()
	assertNoKey(t, "err.Error()", err.Error())
	assertNoKey(t, "%+v", fmt.Sprintf("%+v", err))
	assertNoKey(t, "%v", fmt.Sprintf("%v", err))
	var walk func(error)
	walk = func(e error) {
		if e == nil {
			return
		}
		assertNoKey(t, fmt.Sprintf("wrapped %T", e), e.Error())
		switch u := e.(type) {
		case interface{ Unwrap() error }:
			walk(u.Unwrap())
		case interface{ Unwrap() []error }:
			for _, w := range u.Unwrap() {
				walk(w)
			}
		}
	}
	walk(err)
	var api *Error
	if errors.As(err, &api) {
		assertNoKey(t, "Error fields", fmt.Sprintf("%#v", *api))
	}
}

func TestRequestIDIsScrubbedBeforeItIsClipped(t *testing.T) {
	// A server that echoes Authorization into Request-Id, placed so that
	// clipping at maxHeaderLen cuts the key: clipped first, 16 bytes of it
	// would get through a scrub of the whole key.
	for name, rid := range map[string]string{
		"cut by the clip": strings.Repeat("x", maxHeaderLen-16) + "Bearer " + testAPIKey,
		"whole":           "Bearer " + testAPIKey,
		"prefix":          testAPIKey[:20],
		"repeated":        strings.Repeat(testAPIKey, 100000),
	} {
		t.Run(name, func(t *testing.T) {
			var lb logBuffer
			srv, _ := countingServer(t, http.StatusServiceUnavailable,
				http.Header{"Request-Id": {rid}, "Content-Type": {"application/json"}},
				`{"error":{"type":"api_error","message":"Try again."}}`)
			c := (&fakeGateway{URL: srv.URL}).client(t, WithLogger(lb.logger()), WithMaxRetries(1))
			_, err := c.Charges.Create(context.Background(), chargeParams("order_rid"))
			require.ErrorIs(t, err, ErrOutcomeUnknown)
			assertErrNoKey(t, err)
			assertNoKey(t, "log", lb.String())
			var e *Error
			require.ErrorAs(t, err, &e)
			assert.LessOrEqual(t, len(e.RequestID), maxHeaderLen+len("…"))

			_, err = c.Charges.Get(context.Background(), "ch_1")
			require.Error(t, err)
			assertErrNoKey(t, err)
			assertNoKey(t, "log", lb.String())
		})
	}
}

// hostileServer is a raw TCP server on loopback that reads each request and
// answers it with raw bytes, then closes the connection.
func hostileServer(t *testing.T, response string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				io.WriteString(conn, response)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// withBody completes a raw response head with a Content-Length and body.
func withBody(head, body string) string {
	return fmt.Sprintf("%sContent-Length: %d\r\n\r\n%s", head, len(body), body)
}

func TestErrorBodyWithAPrefixOfTheKeyIsScrubbed(t *testing.T) {
	// A server that cut the key it echoes: a whole-key scrub misses it.
	srv, _ := countingServer(t, http.StatusPaymentRequired, http.Header{"Content-Type": {"application/json"}},
		`{"error":{"type":"card_error","code":"card_declined","message":"declined for `+testAPIKey[:len(testAPIKey)-1]+`"}}`)
	c := (&fakeGateway{URL: srv.URL}).client(t)
	_, err := c.Charges.Create(context.Background(), chargeParams("order_prefix"))
	require.ErrorIs(t, err, ErrCardDeclined)
	assertErrNoKey(t, err)
	assert.Contains(t, err.Error(), "declined for "+redacted)
}

// malformedResponses are raw answers of a hostile server that echoes the
// test key where net/http or the client quotes it.
func malformedResponses() map[string]string {
	key, bearer := testAPIKey, "Bearer "+testAPIKey
	return map[string]string{
		"status code":       "HTTP/1.1 " + key + " OK\r\n\r\n",
		"reason":            "HTTP/1.1 2x0 " + bearer + "\r\n\r\n",
		"status line":       "HTTP/1.1" + key + "\r\n\r\n",
		"version":           key + " 200 OK\r\n\r\n",
		"header line":       "HTTP/1.1 200 OK\r\nRequest-Id: ok\r\n" + bearer + "\r\n\r\n",
		"header name":       "HTTP/1.1 200 OK\r\n" + key + " x: y\r\n\r\n",
		"content length":    "HTTP/1.1 200 OK\r\nContent-Length: " + key + "\r\n\r\n",
		"transfer encoding": "HTTP/1.1 200 OK\r\nTransfer-Encoding: " + key + "\r\n\r\n",
		"chunk":             "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + key + "\r\n",
		"success body":      withBody("HTTP/1.1 200 OK\r\n", `{"id":`+bearer),
		"error body": withBody("HTTP/1.1 402 Payment Required\r\nRequest-Id: "+bearer+"\r\n",
			`{"error":{"type":"card_error","message":"`+key[:17]+`"}}`),
	}
}

func TestMalformedResponsesNeverCarryTheKey(t *testing.T) {
	for name, raw := range malformedResponses() {
		t.Run(name, func(t *testing.T) {
			var lb logBuffer
			c, err := NewClient(testAPIKey, WithBaseURL(hostileServer(t, raw)), WithLogger(lb.logger()),
				WithMaxRetries(1), WithBackoff(time.Millisecond, time.Millisecond))
			require.NoError(t, err)
			calls := []func() error{
				func() error {
					_, err := c.Charges.Create(context.Background(), chargeParams("order_hostile"))
					return err
				},
				func() error { _, err := c.Charges.Get(context.Background(), "ch_1"); return err },
				func() error {
					for _, err := range c.Charges.List(context.Background(), nil) {
						return err
					}
					return nil
				},
			}
			for _, call := range calls {
				func() {
					defer func() {
						if r := recover(); r != nil {
							assertNoKey(t, "panic", fmt.Sprint(r))
							t.Errorf("panic: %s", c.scrub(fmt.Sprint(r)))
						}
					}()
					err := call()
					require.Error(t, err)
					assertErrNoKey(t, err)
				}()
			}
			assertNoKey(t, "log", lb.String())
		})
	}
}

// TestBodyReadErrorIsScrubbedForThePolicyAndTheLog: a chunked 2xx body whose
// trailer is malformed fails to read with net/http's "malformed MIME header:
// missing colon: %q", quoting the server's bytes. That error is made while
// the body is read, after the transport error was scrubbed; it must reach
// a RetryPolicy scrubbed too, and a reason that the policy builds from it
// must be scrubbed before it is logged.
func TestBodyReadErrorIsScrubbedForThePolicyAndTheLog(t *testing.T) {
	raw := "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" +
		"2\r\n{}\r\n0\r\nBearer " + testAPIKey + "\r\n\r\n"
	var mu sync.Mutex
	var seen []error
	policy := func(a *Attempt) (bool, string) {
		if a.Err != nil {
			mu.Lock()
			seen = append(seen, a.Err)
			mu.Unlock()
			return true, "retrying after: " + a.Err.Error() // a policy that explains itself
		}
		return DefaultRetryPolicy(a)
	}
	var lb logBuffer
	c, err := NewClient(testAPIKey, WithBaseURL(hostileServer(t, raw)), WithLogger(lb.logger()),
		WithRetryPolicy(policy), WithMaxRetries(1), WithBackoff(time.Millisecond, time.Millisecond))
	require.NoError(t, err)
	_, err = c.Charges.Create(context.Background(), chargeParams("order_trailer"))
	require.ErrorIs(t, err, ErrOutcomeUnknown)
	assertErrNoKey(t, err)
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, seen, 2, "both attempts failed to read the body")
	for _, e := range seen {
		assert.Contains(t, e.Error(), "malformed MIME header")
		assertErrNoKey(t, e)
	}
	assert.Contains(t, lb.String(), "retrying after: read response body")
	assertNoKey(t, "log", lb.String())
}

func TestScrubbedTransportErrorKeepsItsClass(t *testing.T) {
	c, err := NewClient(testAPIKey, WithBaseURL(hostileServer(t, "HTTP/1.1 "+testAPIKey+" OK\r\n\r\n")),
		WithMaxRetries(0))
	require.NoError(t, err)
	_, err = c.Charges.Create(context.Background(), chargeParams("order_class"))
	var unknown *OutcomeUnknownError
	require.ErrorAs(t, err, &unknown, "the request was sent: the outcome is unknown, with its key")
	assert.Equal(t, "order_class", unknown.IdempotencyKey)
	assert.Contains(t, err.Error(), "malformed HTTP status code")
	assert.Contains(t, err.Error(), redacted)
	assertErrNoKey(t, err)
}

// TestRedirectToAnotherPortIsNotFollowed: a caller's permissive CheckRedirect
// must not send the Bearer key to the same host on another port.
func TestRedirectToAnotherPortIsNotFollowed(t *testing.T) {
	var stolen atomic.Value
	var otherHits atomic.Int32
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		otherHits.Add(1)
		stolen.Store(r.Header.Get("Authorization"))
		writeRaw(w, 200, mustJSON(&Charge{ID: "ch_other", Object: "charge"}))
	}))
	defer other.Close()
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, other.URL+r.URL.Path, http.StatusTemporaryRedirect)
	}))
	defer gw.Close()
	permissive := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return nil }}
	c := (&fakeGateway{URL: gw.URL}).client(t, WithHTTPClient(permissive))

	ch, err := c.Charges.Get(context.Background(), "ch_1")
	assert.Nil(t, ch)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, http.StatusTemporaryRedirect, e.StatusCode)
	assert.NotErrorIs(t, err, ErrOutcomeUnknown, "a GET executes nothing")
	assert.Contains(t, e.Message, "not followed")

	ch, err = c.Charges.Create(context.Background(), chargeParams("order_port"))
	assert.Nil(t, ch)
	var unknown *OutcomeUnknownError
	require.ErrorAs(t, err, &unknown, "what happened before the redirect is unknown")
	assert.Equal(t, "order_port", unknown.IdempotencyKey)
	require.ErrorAs(t, err, &e)
	assert.Equal(t, http.StatusTemporaryRedirect, e.StatusCode)

	assert.Zero(t, otherHits.Load(), "the other origin was never contacted")
	assert.Nil(t, stolen.Load())
}

// TestRedirectFromHTTPSToHTTPIsNotFollowed: the key never goes in clear text.
func TestRedirectFromHTTPSToHTTPIsNotFollowed(t *testing.T) {
	var plainAuth atomic.Value
	var plainHits atomic.Int32
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		plainHits.Add(1)
		plainAuth.Store(r.Header.Get("Authorization"))
		writeRaw(w, 200, mustJSON(&Charge{ID: "ch_plain", Object: "charge"}))
	}))
	defer plain.Close()
	tlsSrv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Same host, plain http (only the port differs from https).
		http.Redirect(w, r, plain.URL+r.URL.Path, http.StatusFound)
	}))
	defer tlsSrv.Close()
	hc := tlsSrv.Client()
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return nil }
	c, err := NewClient(testAPIKey, WithBaseURL(tlsSrv.URL), WithHTTPClient(hc), WithMaxRetries(0))
	require.NoError(t, err)

	_, err = c.Charges.Get(context.Background(), "ch_1")
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, http.StatusFound, e.StatusCode)
	_, err = c.Charges.Create(context.Background(), chargeParams("order_tls"))
	require.ErrorIs(t, err, ErrOutcomeUnknown)
	assert.Zero(t, plainHits.Load(), "the plain server saw nothing")
	assert.Nil(t, plainAuth.Load(), "the plain server never saw the Authorization header")
}

// TestRedirectWithAnUnparsableLocationIsNotRetried: http.Client parses a
// 3xx's Location before CheckRedirect runs, and fails with a transport error
// when it does not parse, which the policy would retry. A 3xx is an *Error
// with its status, never retried, whatever its Location, and the policy and
// the caller see the Location the server sent.
func TestRedirectWithAnUnparsableLocationIsNotRetried(t *testing.T) {
	srv, n := countingServer(t, http.StatusFound, http.Header{"Location": {"ht%tp://x"}}, "")
	var locations []string
	policy := func(a *Attempt) (bool, string) {
		locations = append(locations, a.Header.Get("Location"))
		return DefaultRetryPolicy(a)
	}
	c := (&fakeGateway{URL: srv.URL}).client(t, WithMaxRetries(3), WithRetryPolicy(policy))

	_, err := c.Charges.Create(context.Background(), chargeParams("order_bad_location"))
	var unknown *OutcomeUnknownError
	require.ErrorAs(t, err, &unknown, "what happened before the redirect is unknown")
	assert.Equal(t, "order_bad_location", unknown.IdempotencyKey)
	var e *Error
	require.ErrorAs(t, err, &e, "a 3xx is an *Error with its status")
	assert.Equal(t, http.StatusFound, e.StatusCode)
	assert.Contains(t, e.Message, "an unparsable Location")
	assert.Equal(t, int32(1), n.Load(), "a 3xx is never retried")

	_, err = c.Charges.Get(context.Background(), "ch_1")
	require.ErrorAs(t, err, &e)
	assert.Equal(t, http.StatusFound, e.StatusCode)
	assert.NotErrorIs(t, err, ErrOutcomeUnknown, "a GET executes nothing")
	assert.Equal(t, int32(2), n.Load(), "a 3xx is never retried")
	assert.Equal(t, []string{"ht%tp://x", "ht%tp://x"}, locations, "the header is the server's")
}

// TestInformationalAnswerIsOutsideTheContract: a final answer below 200
// (101 Switching Protocols) is, like a 3xx, not the gateway's contract, and
// the POST may have executed before it: an unknown outcome, not a definite
// *Error. Its body, which after a 101 is the connection itself, is not read.
func TestInformationalAnswerIsOutsideTheContract(t *testing.T) {
	t.Run("closed", func(t *testing.T) {
		c, err := NewClient(testAPIKey, WithBaseURL(hostileServer(t, "HTTP/1.1 101 Switching Protocols\r\n\r\n")),
			WithMaxRetries(3), WithBackoff(time.Millisecond, time.Millisecond))
		require.NoError(t, err)
		ch, err := c.Charges.Create(context.Background(), chargeParams("order_101"))
		assert.Nil(t, ch)
		var unknown *OutcomeUnknownError
		require.ErrorAs(t, err, &unknown, "a POST answered outside the contract may have executed: %v", err)
		assert.Equal(t, "order_101", unknown.IdempotencyKey)
		assert.Equal(t, 1, unknown.Attempts, "not retried")
		var e *Error
		require.ErrorAs(t, err, &e)
		assert.Equal(t, http.StatusSwitchingProtocols, e.StatusCode)

		_, err = c.Charges.Get(context.Background(), "ch_1")
		require.ErrorAs(t, err, &e)
		assert.Equal(t, http.StatusSwitchingProtocols, e.StatusCode)
		assert.NotErrorIs(t, err, ErrOutcomeUnknown, "a GET executes nothing")
	})
	t.Run("upgraded connection left open", func(t *testing.T) {
		done := make(chan struct{})
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.Copy(io.Discard, r.Body)
			conn, buf, err := http.NewResponseController(w).Hijack()
			if err != nil {
				return
			}
			defer conn.Close()
			buf.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n")
			buf.Flush()
			<-done
		}))
		t.Cleanup(srv.Close)
		t.Cleanup(func() { close(done) })
		c := (&fakeGateway{URL: srv.URL}).client(t, WithAttemptTimeout(5*time.Second))
		start := time.Now()
		_, err := c.Charges.Create(context.Background(), chargeParams("order_101_open"))
		require.ErrorIs(t, err, ErrOutcomeUnknown)
		assert.Less(t, time.Since(start), 2*time.Second, "the connection is not read as a body")
	})
}

// TestPostRedirectIsNotTurnedIntoAGet: a 302 to a POST would make net/http
// send a GET whose 200 would be decoded as the charge.
func TestPostRedirectIsNotTurnedIntoAGet(t *testing.T) {
	var gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			http.Redirect(w, r, "/v1/charges/ch_elsewhere", http.StatusFound)
			return
		}
		gets.Add(1)
		writeRaw(w, 200, mustJSON(&Charge{ID: "ch_elsewhere", Object: "charge", Amount: 1}))
	}))
	defer srv.Close()
	permissive := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return nil }}
	c := (&fakeGateway{URL: srv.URL}).client(t, WithHTTPClient(permissive))
	ch, err := c.Charges.Create(context.Background(), chargeParams("order_302"))
	assert.Nil(t, ch, "no charge decoded from the redirect's target")
	require.ErrorIs(t, err, ErrOutcomeUnknown)
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, http.StatusFound, e.StatusCode)
	assert.Contains(t, e.Message, "a path on the same host")
	assert.Zero(t, gets.Load(), "no GET was sent")
}
