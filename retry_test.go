package payonce

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// ---- backoff and Retry-After, exact with injected randomness and clocks ----

func TestFullJitterBounds(t *testing.T) {
	var asked []int64
	top := NewJitterBackoff(func(n int64) int64 { asked = append(asked, n); return n - 1 })
	const ms = time.Millisecond
	for retry, want := range []time.Duration{1 * ms, 2 * ms, 4 * ms, 8 * ms, 8 * ms, 8 * ms} {
		assert.Equal(t, want, top(retry, ms, 8*ms), "retry %d", retry)
	}
	// The draw is uniform over [0, ceiling]: n is ceiling+1.
	require.NotEmpty(t, asked, "the draw must come from the injected source")
	assert.Equal(t, int64(ms)+1, asked[0])
	zero := NewJitterBackoff(func(int64) int64 { return 0 })
	assert.Equal(t, time.Duration(0), zero(3, ms, 8*ms), "full jitter can wait 0")

	// No overflow, however large the retry number or the bounds.
	assert.Equal(t, 8*ms, top(1_000_000, ms, 8*ms))
	assert.Equal(t, time.Duration(math.MaxInt64-1), top(100, 1<<62, math.MaxInt64))
	assert.Equal(t, time.Duration(0), top(5, 0, time.Second), "min 0 never grows")
}

func TestDefaultBackoffIsJittered(t *testing.T) {
	seen := map[time.Duration]bool{}
	for range 2000 {
		d := DefaultBackoff(2, 100*time.Millisecond, time.Second)
		require.GreaterOrEqual(t, d, time.Duration(0))
		require.LessOrEqual(t, d, 400*time.Millisecond)
		seen[d] = true
	}
	assert.Greater(t, len(seen), 100, "waits must be spread, not fixed")
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in   string
		want time.Duration
		ok   bool
	}{
		{"2", 2 * time.Second, true},
		{" 3 ", 3 * time.Second, true},
		{"0", 0, true},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{"Sunday, 01-Mar-26 12:00:05 GMT", 5 * time.Second, true}, // RFC 850
		{"Sun Mar  1 12:00:07 2026", 7 * time.Second, true},       // ANSI C
		{now.Add(-time.Hour).Format(http.TimeFormat), 0, true},    // in the past
		{"99999999999999999999999", maxParsedRetryAfter, true},
		{"4000000000", maxParsedRetryAfter, true},
		{"", 0, false},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{"0x10", 0, false},
		{"2026-03-01T12:00:00Z", 0, false},
	}
	for _, tc := range cases {
		got, ok := ParseRetryAfter(tc.in, now)
		assert.Equal(t, tc.ok, ok, "%q", tc.in)
		assert.Equal(t, tc.want, got, "%q", tc.in)
	}
}

func TestRetryWaitHonoursAndCapsRetryAfter(t *testing.T) {
	c, err := NewClient(testAPIKey, WithBaseURL("https://gw.test"), WithMaxRetryAfter(10*time.Second),
		WithBackoff(time.Second, 4*time.Second),
		WithBackoffFunc(NewJitterBackoff(func(n int64) int64 { return n - 1 })))
	require.NoError(t, err)
	now := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	hdr := func(v string) http.Header { return http.Header{"Retry-After": {v}} }

	assert.Equal(t, 3*time.Second, c.retryWait(0, hdr("3"), now), "seconds")
	assert.Equal(t, 10*time.Second, c.retryWait(0, hdr("3600"), now), "capped")
	assert.Equal(t, 7*time.Second, c.retryWait(0, hdr(now.Add(7*time.Second).Format(http.TimeFormat)), now), "date")
	assert.Equal(t, 10*time.Second, c.retryWait(0, hdr(now.Add(time.Hour).Format(http.TimeFormat)), now), "date capped")
	assert.Equal(t, time.Duration(0), c.retryWait(0, hdr("0"), now))
	assert.Equal(t, 2*time.Second, c.retryWait(1, hdr("garbage"), now), "malformed: backoff")
	assert.Equal(t, 4*time.Second, c.retryWait(5, nil, now), "no header: backoff, capped at max")
}

// ---- which statuses are retried, and how failures are classified ----

func TestRetryRulesByStatus(t *testing.T) {
	inUse := errBody("idempotency_error", "idempotency_key_in_use", "", "in flight")
	cases := []struct {
		name     string
		status   int
		body     []byte
		attempts int
		unknown  bool
		is       error
	}{
		{"409 in use", 409, inUse, 4, true, ErrKeyInUse},
		{"429", 429, errBody("rate_limit_error", "", "", "slow down"), 4, false, ErrRateLimited},
		{"500", 500, errBody("api_error", "", "", "oops"), 4, true, nil},
		{"502", 502, []byte("<html>bad gateway</html>"), 4, true, nil},
		{"503", 503, errBody("api_error", "", "", "unavailable"), 4, true, nil},
		{"504", 504, nil, 4, true, nil},
		{"400", 400, errBody("invalid_request_error", "parameter_missing", "currency", "no"), 1, false, ErrInvalidRequest},
		{"401", 401, errBody("authentication_error", "api_key_invalid", "", "no"), 1, false, ErrAuthentication},
		{"402", 402, errBodyDecline("generic_decline"), 1, false, ErrCardDeclined},
		{"403", 403, errBody("invalid_request_error", "forbidden", "", "no"), 1, false, nil},
		{"404", 404, errBody("invalid_request_error", "resource_missing", "id", "no"), 1, false, ErrNotFound},
		{"409 other", 409, errBody("invalid_request_error", "conflict", "", "no"), 1, false, nil},
		{"418", 418, nil, 1, false, nil},
		{"422", 422, errBody("idempotency_error", "idempotency_key_reused", "", "no"), 1, false, ErrKeyReused},
		{"501", 501, errBody("api_error", "", "", "no"), 1, false, nil},
		{"505", 505, nil, 1, true, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var hits atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				hits.Add(1)
				w.Header().Set("Request-Id", "req_x")
				w.WriteHeader(tc.status)
				w.Write(tc.body)
			}))
			defer srv.Close()
			c := (&fakeGateway{URL: srv.URL}).client(t)
			req, err := c.NewRequest(http.MethodPost, "v1/charges", chargeParams(""), "order_"+tc.name[:3])
			require.NoError(t, err)

			resp, err := c.Do(context.Background(), req, nil)
			require.Error(t, err)
			assert.Equal(t, tc.attempts, int(hits.Load()), "requests sent")
			require.NotNil(t, resp)
			assert.Equal(t, tc.attempts, resp.Attempts)
			assert.Equal(t, tc.status, resp.StatusCode)
			assert.Equal(t, tc.unknown, errors.Is(err, ErrOutcomeUnknown), "outcome unknown: %v", err)
			var apiErr *Error
			require.ErrorAs(t, err, &apiErr)
			assert.Equal(t, tc.status, apiErr.StatusCode)
			assert.Equal(t, "req_x", apiErr.RequestID)
			if tc.is != nil {
				assert.ErrorIs(t, err, tc.is)
			}
			if tc.attempts == 1 && !tc.unknown {
				assert.Same(t, apiErr, err, "a definite answer is the *Error itself")
			}
		})
	}
}

func TestRetrySucceedsAfterServerErrors(t *testing.T) {
	f := newFake(t, failFirst(2, 503, ""))
	ch, err := f.client(t).Charges.Create(context.Background(), chargeParams("order_1"))
	require.NoError(t, err)
	assert.Equal(t, "ch_1", ch.ID)
	assert.Equal(t, 3, ch.LastResponse.Attempts)
	assert.False(t, ch.LastResponse.Replayed)
	assert.Equal(t, "order_1", ch.LastResponse.IdempotencyKey)
	assert.Equal(t, "req_3", ch.LastResponse.RequestID)
	assert.Equal(t, 1, f.chargeCount())
}

func TestEveryAttemptSendsSameKeyAndBytes(t *testing.T) {
	for _, key := range []string{"order_same", ""} {
		f := newFake(t, failFirst(3, 500, ""))
		ch, err := f.client(t).Charges.Create(context.Background(), chargeParams(key))
		require.NoError(t, err)
		reqs := f.requests()
		require.Len(t, reqs, 4)
		sent := reqs[0].Key
		if key != "" {
			assert.Equal(t, key, sent)
		} else {
			u, err := uuid.Parse(sent)
			require.NoError(t, err, "a generated key is a UUID")
			assert.Equal(t, uuid.Version(4), u.Version())
		}
		for _, r := range reqs {
			assert.Equal(t, sent, r.Key)
			assert.Equal(t, reqs[0].Body, r.Body, "byte-identical body")
			assert.Equal(t, "application/json", r.ContentType)
			assert.Equal(t, "Bearer "+testAPIKey, r.Auth)
		}
		assert.Equal(t, sent, ch.LastResponse.IdempotencyKey)
		assert.JSONEq(t, `{"amount":2000,"currency":"usd","payment_method":"tok_visa",
			"description":"Invoice 456","metadata":{"order":"456"}}`, string(reqs[0].Body))
	}
}

func TestGeneratedKeyIsPerCall(t *testing.T) {
	f := newFake(t)
	c := f.client(t)
	_, err := c.Charges.Create(context.Background(), chargeParams(""))
	require.NoError(t, err)
	_, err = c.Charges.Create(context.Background(), chargeParams(""))
	require.NoError(t, err)
	reqs := f.requests()
	require.Len(t, reqs, 2)
	assert.NotEqual(t, reqs[0].Key, reqs[1].Key)
	assert.Equal(t, 2, f.chargeCount(), "two calls without keys are two operations")
}

// flipBody marshals differently each time it is marshalled.
type flipBody struct{ n *atomic.Int32 }

func (b flipBody) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]int32{"n": b.n.Add(1)})
}

func TestBodyIsMarshalledOnce(t *testing.T) {
	var bodies [][]byte
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		bodies = append(bodies, b)
		n := len(bodies)
		mu.Unlock()
		if n < 3 {
			w.WriteHeader(502)
			return
		}
		w.Write([]byte(`{}`))
	}))
	defer srv.Close()
	c := (&fakeGateway{URL: srv.URL}).client(t)
	counter := new(atomic.Int32)
	req, err := c.NewRequest(http.MethodPost, "v1/widgets", flipBody{counter}, "")
	require.NoError(t, err)
	_, err = c.Do(context.Background(), req, nil)
	require.NoError(t, err)
	assert.Equal(t, int32(1), counter.Load())
	require.Len(t, bodies, 3)
	assert.Equal(t, bodies[0], bodies[2])
}

// ---- transport failures, with httpmock ----

type timeoutErr struct{}

func (timeoutErr) Error() string   { return "i/o timeout" }
func (timeoutErr) Timeout() bool   { return true }
func (timeoutErr) Temporary() bool { return true }

var (
	errReset   = &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNRESET)}
	errRefused = &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ECONNREFUSED)}
)

const mockURL = "https://gw.test"

func mockClient(t *testing.T, responders ...httpmock.Responder) (*Client, *httpmock.MockTransport) {
	t.Helper()
	mt := httpmock.NewMockTransport()
	var mu sync.Mutex
	i := 0
	mt.RegisterNoResponder(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		resp := responders[min(i, len(responders)-1)]
		i++
		mu.Unlock()
		return resp(r)
	})
	c, err := NewClient(testAPIKey, WithBaseURL(mockURL), WithHTTPClient(&http.Client{Transport: mt}),
		WithBackoff(time.Millisecond, 2*time.Millisecond))
	require.NoError(t, err)
	return c, mt
}

func jsonResponder(status int, body []byte) httpmock.Responder {
	return func(*http.Request) (*http.Response, error) {
		r := httpmock.NewBytesResponse(status, body)
		r.Header.Set("Request-Id", "req_mock")
		return r, nil
	}
}

func TestRetryRulesTransportErrors(t *testing.T) {
	cases := []struct {
		name     string
		err      error
		attempts int
		unknown  bool
		is       error
	}{
		{"EOF", io.EOF, 4, true, io.EOF},
		{"unexpected EOF", io.ErrUnexpectedEOF, 4, true, io.ErrUnexpectedEOF},
		{"timeout", timeoutErr{}, 4, true, nil},
		{"reset", errReset, 4, true, syscall.ECONNRESET},
		{"refused: nothing sent", errRefused, 4, false, syscall.ECONNREFUSED},
		{"dns: nothing sent", &net.DNSError{Err: "no such host", Name: "gw.test", IsNotFound: true}, 4, false, nil},
		{"unknown authority", x509.UnknownAuthorityError{}, 1, false, nil},
		{"certificate verification", &tls.CertificateVerificationError{Err: x509.UnknownAuthorityError{}}, 1, false, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, mt := mockClient(t, httpmock.NewErrorResponder(tc.err))
			_, err := c.Charges.Create(context.Background(), chargeParams("order_t"))
			require.Error(t, err)
			assert.Equal(t, tc.attempts, mt.GetTotalCallCount())
			assert.Equal(t, tc.unknown, errors.Is(err, ErrOutcomeUnknown), "%v", err)
			if tc.is != nil {
				assert.ErrorIs(t, err, tc.is)
			}
			var ou *OutcomeUnknownError
			if tc.unknown {
				require.ErrorAs(t, err, &ou)
				assert.Equal(t, "order_t", ou.IdempotencyKey)
				assert.Equal(t, tc.attempts, ou.Attempts)
			} else {
				assert.Contains(t, err.Error(), "attempt(s)")
			}
		})
	}
}

func TestTransportErrorThenSuccess(t *testing.T) {
	ch := mustJSON(&Charge{ID: "ch_9", Status: ChargeStatusSucceeded})
	c, mt := mockClient(t, httpmock.NewErrorResponder(errReset), httpmock.NewErrorResponder(timeoutErr{}), jsonResponder(200, ch))
	got, err := c.Charges.Create(context.Background(), chargeParams("order_9"))
	require.NoError(t, err)
	assert.Equal(t, "ch_9", got.ID)
	assert.Equal(t, 3, got.LastResponse.Attempts)
	assert.Equal(t, 3, mt.GetTotalCallCount())
}

func TestDeclineAfterTimeoutsIsADecline(t *testing.T) {
	c, _ := mockClient(t, httpmock.NewErrorResponder(timeoutErr{}), httpmock.NewErrorResponder(io.EOF),
		jsonResponder(402, errBodyDecline("insufficient_funds")))
	_, err := c.Charges.Create(context.Background(), chargeParams("order_d"))
	require.ErrorIs(t, err, ErrCardDeclined)
	assert.NotErrorIs(t, err, ErrOutcomeUnknown, "the retry replayed a definite answer")
	var apiErr *Error
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, "insufficient_funds", apiErr.DeclineCode)
	assert.Equal(t, "order_d", apiErr.IdempotencyKey)
}

func TestConnectionRefusedEveryTimeIsNotUnknown(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there now
	c, err := NewClient(testAPIKey, WithBaseURL(url), WithBackoff(time.Millisecond, 2*time.Millisecond))
	require.NoError(t, err)
	_, err = c.Charges.Create(context.Background(), chargeParams("order_r"))
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrOutcomeUnknown, "nothing was sent")
	assert.ErrorIs(t, err, syscall.ECONNREFUSED)
	assert.Contains(t, err.Error(), "after 4 attempt(s)")
}

func TestHungDialIsNotUnknown(t *testing.T) {
	// The trace shows that no connection was obtained: nothing was sent,
	// although the error is a timeout and not a dial error.
	var dials atomic.Int32
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		dials.Add(1)
		<-ctx.Done()
		return nil, ctx.Err()
	}}}
	c, err := NewClient(testAPIKey, WithBaseURL("http://127.0.0.1:9"), WithHTTPClient(hc),
		WithAttemptTimeout(50*time.Millisecond), WithMaxRetries(1), WithBackoff(time.Millisecond, time.Millisecond))
	require.NoError(t, err)
	_, err = c.Charges.Create(context.Background(), chargeParams("order_dial"))
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrOutcomeUnknown)
	assert.Contains(t, err.Error(), "attempt timed out after 50ms")
	assert.Equal(t, int32(2), dials.Load())
}

func TestTLSCertificateErrorIsNotRetried(t *testing.T) {
	var hits atomic.Int32
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { hits.Add(1) }))
	defer srv.Close()
	lb := &logBuffer{}
	c, err := NewClient(testAPIKey, WithBaseURL(srv.URL), WithLogger(lb.logger()))
	require.NoError(t, err)
	_, err = c.Charges.Create(context.Background(), chargeParams("order_tls"))
	require.Error(t, err)
	var verr *tls.CertificateVerificationError
	require.ErrorAs(t, err, &verr)
	assert.NotErrorIs(t, err, ErrOutcomeUnknown)
	assert.Contains(t, err.Error(), "after 1 attempt(s)")
	assert.Zero(t, hits.Load())
	assert.NotContains(t, lb.String(), "retrying")
}

// ---- the per-attempt timeout, the caller's context and deadline ----

func TestAttemptTimeoutAbandonsHungAttempt(t *testing.T) {
	f := newFake(t, func(f *fakeGateway) {
		f.before = func(n int, _ http.ResponseWriter, r *http.Request) bool {
			if n == 1 {
				hang(r) // until the client gives up on it
				return true
			}
			return false
		}
	})
	lb := &logBuffer{}
	ch, err := f.client(t, WithAttemptTimeout(100*time.Millisecond), WithLogger(lb.logger())).
		Charges.Create(context.Background(), chargeParams("order_hung"))
	require.NoError(t, err)
	assert.Equal(t, 2, ch.LastResponse.Attempts)
	assert.Equal(t, 1, f.chargeCount())
	assert.Contains(t, lb.String(), "attempt timed out after 100ms")
}

func TestResponseLostAfterCommitIsReplayed(t *testing.T) {
	cases := map[string]func(t *testing.T, w http.ResponseWriter, r *http.Request){
		"delay after commit": func(_ *testing.T, _ http.ResponseWriter, r *http.Request) { hang(r) },
		"drop after commit":  func(t *testing.T, w http.ResponseWriter, _ *http.Request) { dropConn(t, w) },
	}
	for name, fault := range cases {
		t.Run(name, func(t *testing.T) {
			f := newFake(t, func(f *fakeGateway) {
				f.after = func(n int, w http.ResponseWriter, r *http.Request) bool {
					if n == 1 {
						fault(t, w, r)
						return true
					}
					return false
				}
			})
			ch, err := f.client(t, WithAttemptTimeout(100*time.Millisecond)).
				Charges.Create(context.Background(), chargeParams("order_lost"))
			require.NoError(t, err)
			assert.Equal(t, "ch_1", ch.ID)
			assert.True(t, ch.LastResponse.Replayed)
			assert.Equal(t, 2, ch.LastResponse.Attempts)
			assert.Equal(t, 1, f.chargeCount(), "exactly one charge")
		})
	}
}

func TestNetHTTPNeverResendsOnItsOwn(t *testing.T) {
	// On a reused keep-alive connection that dies, net/http would resend a
	// request carrying an Idempotency-Key on its own. The client sends each
	// attempt so that it cannot, and makes the resend itself: counted,
	// logged and paid for like any retry.
	var lb logBuffer
	f := newFake(t, func(f *fakeGateway) {
		f.after = func(n int, w http.ResponseWriter, _ *http.Request) bool {
			if n == 2 {
				dropConn(t, w)
				return true
			}
			return false
		}
	})
	c := f.client(t, WithLogger(lb.logger()))
	_, err := c.Charges.Get(context.Background(), "ch_0") // 404, warms up a keep-alive connection
	require.ErrorIs(t, err, ErrNotFound)
	ch, err := c.Charges.Create(context.Background(), chargeParams("order_wire"))
	require.NoError(t, err)
	assert.True(t, ch.LastResponse.Replayed)
	assert.Len(t, f.requests(), 3, "two POSTs on the wire")
	assert.Equal(t, 2, ch.LastResponse.Attempts, "both POSTs are attempts of ours")
	assert.Equal(t, 1, f.chargeCount())
	recs := lb.records(t)
	require.Len(t, recs, 1, "the resend went through the retry path")
	assert.Equal(t, "payonce: retrying request", recs[0]["msg"])
	assert.Equal(t, "order_wire", recs[0]["idempotency_key"])
}

func TestKeyInUseIsRetriedUntilReplayed(t *testing.T) {
	release := make(chan struct{})
	var once sync.Once
	f := newFake(t, func(f *fakeGateway) {
		f.during = func(n int, _ *http.Request) {
			if n == 1 { // keeps executing after the client gave up on it
				select {
				case <-release:
				case <-time.After(10 * time.Second): // watchdog only
				}
			}
		}
		f.conflict = func(int) { once.Do(func() { close(release) }) }
	})
	ch, err := f.client(t, WithAttemptTimeout(100*time.Millisecond), WithMaxRetries(10)).
		Charges.Create(context.Background(), chargeParams("order_inuse"))
	require.NoError(t, err)
	assert.True(t, ch.LastResponse.Replayed)
	assert.GreaterOrEqual(t, ch.LastResponse.Attempts, 3)
	assert.Equal(t, 1, f.chargeCount())
}

func TestOutcomeUnknownCarriesKeyAndSettlesLater(t *testing.T) {
	release, committed := make(chan struct{}), make(chan struct{})
	f := newFake(t, func(f *fakeGateway) {
		f.during = func(n int, _ *http.Request) {
			if n == 1 {
				select {
				case <-release:
				case <-time.After(10 * time.Second): // watchdog only
				}
			}
		}
		f.after = func(n int, _ http.ResponseWriter, _ *http.Request) bool {
			if n == 1 {
				close(committed)
			}
			return false
		}
	})
	c := f.client(t, WithAttemptTimeout(50*time.Millisecond))
	_, err := c.Charges.Create(context.Background(), chargeParams("order_unknown"))
	require.ErrorIs(t, err, ErrOutcomeUnknown)
	require.ErrorIs(t, err, ErrKeyInUse)
	var ou *OutcomeUnknownError
	require.ErrorAs(t, err, &ou)
	assert.Equal(t, "order_unknown", ou.IdempotencyKey)
	assert.Equal(t, 4, ou.Attempts)
	assert.Equal(t, "POST", ou.Method)
	assert.Equal(t, "/v1/charges", ou.Path)
	assert.Contains(t, err.Error(), `idempotency key "order_unknown"`)

	close(release) // the first attempt finishes on the gateway
	<-committed
	require.Equal(t, 1, f.chargeCount())
	ch, err := c.Charges.Create(context.Background(), chargeParams("order_unknown"))
	require.NoError(t, err)
	assert.True(t, ch.LastResponse.Replayed, "settled by the same key")
	assert.Equal(t, 1, f.chargeCount())
}

func TestOutcomeUnknownAfterServerErrors(t *testing.T) {
	f := newFake(t, failFirst(100, 500, ""))
	lb := &logBuffer{}
	_, err := f.client(t, WithLogger(lb.logger())).Charges.Create(context.Background(), chargeParams("order_500"))
	var msgs []any
	for _, r := range lb.records(t) {
		msgs = append(msgs, r["msg"])
	}
	assert.Equal(t, []any{"payonce: retrying request", "payonce: retrying request", "payonce: retrying request",
		"payonce: request failed"}, msgs, "3 retries logged, then the failure; no retry is announced after the last attempt")
	var ou *OutcomeUnknownError
	require.ErrorAs(t, err, &ou)
	assert.Equal(t, "order_500", ou.IdempotencyKey)
	assert.Equal(t, 4, ou.Attempts)
	var apiErr *Error
	require.ErrorAs(t, err, &apiErr, "the last 5xx is reachable")
	assert.Equal(t, 500, apiErr.StatusCode)
	assert.Equal(t, "req_4", apiErr.RequestID)
}

func TestNotUnknownWhenNothingCanHaveExecuted(t *testing.T) {
	t.Run("429 every time", func(t *testing.T) {
		f := newFake(t, failFirst(100, 429, ""))
		_, err := f.client(t).Charges.Create(context.Background(), chargeParams("order_429"))
		require.ErrorIs(t, err, ErrRateLimited)
		assert.NotErrorIs(t, err, ErrOutcomeUnknown)
		assert.Len(t, f.requests(), 4)
	})
	t.Run("idempotency store unavailable", func(t *testing.T) {
		f := newFake(t, func(f *fakeGateway) {
			f.before = func(_ int, w http.ResponseWriter, _ *http.Request) bool {
				writeErr(w, 503, "api_error", "idempotency_store_unavailable", "", "store down")
				return true
			}
		})
		_, err := f.client(t).Charges.Create(context.Background(), chargeParams("order_store"))
		require.Error(t, err)
		assert.NotErrorIs(t, err, ErrOutcomeUnknown)
	})
	t.Run("a GET is never unknown", func(t *testing.T) {
		f := newFake(t, failFirst(100, 503, ""))
		_, err := f.client(t).Charges.Get(context.Background(), "ch_1")
		require.Error(t, err)
		assert.NotErrorIs(t, err, ErrOutcomeUnknown)
		assert.Contains(t, err.Error(), "GET /v1/charges/ch_1 failed after 4 attempt(s)")
	})
}

func TestRetryAfterCapped(t *testing.T) {
	for name, ra := range map[string]string{
		"seconds": "3600",
		"date":    time.Now().Add(time.Hour).UTC().Format(http.TimeFormat),
	} {
		t.Run(name, func(t *testing.T) {
			f := newFake(t, failFirst(1, 503, ra))
			lb := &logBuffer{}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			ch, err := f.client(t, WithMaxRetryAfter(5*time.Millisecond), WithLogger(lb.logger())).
				Charges.Create(ctx, chargeParams("order_ra"))
			require.NoError(t, err)
			assert.Equal(t, 2, ch.LastResponse.Attempts)
			recs := lb.records(t)
			require.NotEmpty(t, recs)
			assert.Equal(t, float64(5*time.Millisecond), recs[0]["wait"])
		})
	}
}

func TestRetryAfterHonouredGivesUpBeforeDeadline(t *testing.T) {
	for _, status := range []int{503, 429} {
		f := newFake(t, failFirst(100, status, "2"))
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		start := time.Now()
		_, err := f.client(t, WithMaxRetryAfter(10*time.Second)).Charges.Create(ctx, chargeParams("order_dl"))
		cancel()
		require.Error(t, err)
		assert.Less(t, time.Since(start), 900*time.Millisecond, "gave up at once instead of sleeping to the deadline")
		assert.Len(t, f.requests(), 1, "the 2s Retry-After was honoured: no early retry")
		assert.NotErrorIs(t, err, context.DeadlineExceeded, "the real error, not a bare context error")
		var apiErr *Error
		require.ErrorAs(t, err, &apiErr)
		assert.Equal(t, status, apiErr.StatusCode)
		assert.Contains(t, err.Error(), "gave up before the context deadline")
		assert.Equal(t, status == 503, errors.Is(err, ErrOutcomeUnknown))
	}
}

func TestBackoffGivesUpBeforeDeadline(t *testing.T) {
	f := newFake(t, failFirst(100, 502, ""))
	c := f.client(t, WithBackoff(5*time.Second, 5*time.Second),
		WithBackoffFunc(NewJitterBackoff(func(n int64) int64 { return n - 1 })))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_, err := c.Charges.Create(ctx, chargeParams("order_bo"))
	require.ErrorIs(t, err, ErrOutcomeUnknown)
	assert.NotErrorIs(t, err, context.DeadlineExceeded)
	assert.Len(t, f.requests(), 1)
}

func TestCancelDuringBackoffReturnsPromptly(t *testing.T) {
	f := newFake(t, failFirst(100, 503, "30"))
	sig := &signalHandler{msg: "payonce: retrying request", ch: make(chan struct{}, 1)}
	c := f.client(t, WithMaxRetryAfter(time.Minute), WithLogger(slog.New(sig)))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := c.Charges.Create(ctx, chargeParams("order_cancel"))
		done <- err
	}()
	select {
	case <-sig.ch: // the client is about to wait 30s
	case err := <-done:
		t.Fatalf("returned before waiting: %v", err)
	}
	cancel()
	select {
	case err := <-done:
		require.ErrorIs(t, err, context.Canceled)
		require.ErrorIs(t, err, ErrOutcomeUnknown, "the 503 may have executed")
		var apiErr *Error
		require.ErrorAs(t, err, &apiErr, "the last response is kept")
		assert.Equal(t, 503, apiErr.StatusCode)
	case <-time.After(5 * time.Second):
		t.Fatal("the wait did not watch the context")
	}
	assert.Len(t, f.requests(), 1)
}

func TestCancelledContextSendsNothing(t *testing.T) {
	f := newFake(t)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := f.client(t).Charges.Create(ctx, chargeParams("order_pre"))
	require.ErrorIs(t, err, context.Canceled)
	assert.NotErrorIs(t, err, ErrOutcomeUnknown)
	assert.Empty(t, f.requests())
}

func TestCallerDeadlineDuringAttemptIsUnknown(t *testing.T) {
	f := newFake(t, func(f *fakeGateway) {
		f.before = func(_ int, _ http.ResponseWriter, r *http.Request) bool {
			hang(r)
			return true
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := f.client(t).Charges.Create(ctx, chargeParams("order_ctx"))
	require.ErrorIs(t, err, context.DeadlineExceeded)
	require.ErrorIs(t, err, ErrOutcomeUnknown, "the request was sent")
	assert.Len(t, f.requests(), 1, "the caller's deadline is not retried")
}

// ---- options that shape retries ----

func TestMaxRetriesZeroDisablesRetries(t *testing.T) {
	f := newFake(t, failFirst(100, 503, ""))
	_, err := f.client(t, WithMaxRetries(0)).Charges.Create(context.Background(), chargeParams("order_0"))
	require.ErrorIs(t, err, ErrOutcomeUnknown)
	assert.Len(t, f.requests(), 1)
}

func TestCustomPolicyAndBackoffCompose(t *testing.T) {
	f := newFake(t, failFirst(2, http.StatusTeapot, ""))
	var mu sync.Mutex
	var retries []int
	c := f.client(t,
		WithRetryPolicy(func(a *Attempt) (bool, string) {
			if a.StatusCode == http.StatusTeapot {
				return true, "teapot"
			}
			return DefaultRetryPolicy(a)
		}),
		WithBackoffFunc(func(retry int, _, _ time.Duration) time.Duration {
			mu.Lock()
			defer mu.Unlock()
			retries = append(retries, retry)
			return 0
		}))
	ch, err := c.Charges.Create(context.Background(), chargeParams("order_tea"))
	require.NoError(t, err)
	assert.Equal(t, 3, ch.LastResponse.Attempts)
	assert.Equal(t, []int{0, 1}, retries)
}

// ---- logging ----

func TestRetriesAreLoggedWithoutSecrets(t *testing.T) {
	f := newFake(t, func(f *fakeGateway) {
		f.before = func(n int, w http.ResponseWriter, _ *http.Request) bool {
			switch n {
			case 1:
				writeErr(w, 503, "api_error", "", "", "down")
			case 2:
				writeErr(w, 429, "rate_limit_error", "", "", "slow")
			default:
				return false
			}
			return true
		}
	})
	lb := &logBuffer{}
	_, err := f.client(t, WithLogger(lb.logger())).Charges.Create(context.Background(), chargeParams("order_log"))
	require.NoError(t, err)
	recs := lb.records(t)
	require.Len(t, recs, 2)
	want := map[string]any{
		"level": "WARN", "msg": "payonce: retrying request", "method": "POST", "path": "/v1/charges",
		"attempt": float64(1), "max_attempts": float64(4), "reason": "server error (503)",
		"idempotency_key": "order_log", "request_id": "req_1", "status": float64(503),
	}
	for k, v := range want {
		assert.Equal(t, v, recs[0][k], k)
	}
	assert.Contains(t, recs[0], "wait")
	assert.Equal(t, "INFO", recs[1]["level"], "a refusal that executed nothing is Info")
	assert.Equal(t, "rate limited (429)", recs[1]["reason"])
	assert.Equal(t, "req_2", recs[1]["request_id"])

	out := lb.String()
	for _, secret := range []string{testAPIKey, "Bearer", "tok_visa", "Invoice 456"} {
		assert.NotContains(t, out, secret)
	}
}

func TestSentTracking(t *testing.T) {
	// A real dial failure is classified from the trace, not only the error.
	cl := newCall(&Client{}, &Request{method: http.MethodPost})
	assert.True(t, cl.sent(), "no trace information: assume sent")
	cl.getConn.Store(true)
	assert.False(t, cl.sent(), "asked for a connection, never got one")
	cl.gotConn.Store(true)
	assert.True(t, cl.sent())
	cl.skipped.Store(true)
	assert.False(t, cl.sent())
	assert.Equal(t, "connection refused", describeErr(errRefused))
	assert.Equal(t, "connection reset", describeErr(errReset))
	assert.Equal(t, "connection closed (EOF)", describeErr(io.EOF))
	assert.Equal(t, "timeout", describeErr(timeoutErr{}))
	assert.Equal(t, "transport error", describeErr(errors.New("x")))
	assert.True(t, strings.HasPrefix(describeErr(&attemptTimeoutError{time.Second}), "attempt timed out"))
}

// A call that ends must not close the keep-alive connections that the
// Client's other calls share, as go-retryablehttp's loop does (it asks the
// http.Client to close them when the context ends during a wait).
func TestCancelledCallKeepsIdleConnections(t *testing.T) {
	var conns, n atomic.Int32
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if n.Add(1) == 2 { // the second call's attempt
			writeErr(w, http.StatusServiceUnavailable, "api_error", "", "", "Try again.")
			return
		}
		writeRaw(w, http.StatusOK, mustJSON(&Charge{ID: "ch_1", Object: "charge"}))
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	t.Cleanup(srv.Close)
	ctx, cancel := context.WithCancel(context.Background())
	// The caller gives up during the wait before the first retry.
	c, err := NewClient(testAPIKey, WithBaseURL(srv.URL), WithBackoffFunc(func(int, time.Duration, time.Duration) time.Duration {
		cancel()
		return time.Second
	}))
	require.NoError(t, err)

	_, err = c.Charges.Create(context.Background(), chargeParams(""))
	require.NoError(t, err)
	_, err = c.Charges.Create(ctx, chargeParams(""))
	require.ErrorIs(t, err, context.Canceled)
	_, err = c.Charges.Create(context.Background(), chargeParams(""))
	require.NoError(t, err)
	assert.Equal(t, int32(3), n.Load())
	assert.Equal(t, int32(1), conns.Load(), "one keep-alive connection served every attempt")
}
