package payonce

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Tests of NewHTTPClient: the engine as a plain *http.Client, as an SDK
// uses it (issue 14).

// seen is what a test server received.
type seen struct {
	mu   sync.Mutex
	reqs []fakeReq
}

func (s *seen) add(r *http.Request, body []byte, keyHeader string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, fakeReq{Method: r.Method, Path: r.URL.Path, Key: r.Header.Get(keyHeader), Body: body})
	return len(s.reqs)
}

func (s *seen) all() []fakeReq {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]fakeReq(nil), s.reqs...)
}

// scripted answers request n with answer(n, w); keyHeader names the
// header it records.
func scripted(t *testing.T, keyHeader string, answer func(n int, w http.ResponseWriter) bool) (*httptest.Server, *seen) {
	t.Helper()
	var s seen
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		n := s.add(r, body, keyHeader)
		if !answer(n, w) {
			dropConn(t, w)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, &s
}

func fastHTTPClient(t *testing.T, opts ...Option) *http.Client {
	t.Helper()
	hc, err := NewHTTPClient(append([]Option{WithBackoff(time.Millisecond, 2*time.Millisecond),
		WithMaxRetryAfter(2 * time.Millisecond), WithoutRetryBudget()}, opts...)...)
	require.NoError(t, err)
	return hc
}

// onlyReader hides a body's type, so that http.NewRequest sets no GetBody.
type onlyReader struct{ io.Reader }

func TestHTTPClientKeepsTheKeyAndTheBytes(t *testing.T) {
	for _, header := range []string{"Idempotency-Key", "Cko-Idempotency-Key"} {
		t.Run(header, func(t *testing.T) {
			srv, s := scripted(t, header, func(n int, w http.ResponseWriter) bool {
				switch n {
				case 1:
					return false // dropped after reading
				case 2:
					writeErr(w, 503, "api_error", "", "", "busy")
					return true
				}
				writeRaw(w, 200, []byte(`{"id":"ch_1"}`))
				return true
			})
			var opts []Option
			if header != "Idempotency-Key" {
				opts = append(opts, WithIdempotencyHeader(strings.ToLower(header)))
			}
			hc := fastHTTPClient(t, opts...)
			body := `amount=2000&currency=usd&metadata[order]=1`
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/charges", onlyReader{strings.NewReader(body)})
			require.NoError(t, err)
			require.Nil(t, req.GetBody, "a body that cannot be rewound")
			req.Header[header] = []string{`Key "as sent"/+=`} // not canonical, never rewritten
			resp, err := hc.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			assert.Equal(t, `{"id":"ch_1"}`, string(got))
			assert.Equal(t, "3", resp.Header.Get(AttemptsHeader))
			reqs := s.all()
			require.Len(t, reqs, 3)
			for _, r := range reqs {
				assert.Equal(t, `Key "as sent"/+=`, r.Key, "the key byte for byte")
				assert.Equal(t, body, string(r.Body), "the body byte for byte")
			}
			assert.Equal(t, []string{`Key "as sent"/+=`}, req.Header[header], "the caller's request is unchanged")
		})
	}
}

func TestHTTPClientGivesAKeyToAPOSTWithout(t *testing.T) {
	srv, s := scripted(t, "Idempotency-Key", func(n int, w http.ResponseWriter) bool {
		if n == 1 {
			return false
		}
		writeRaw(w, 200, []byte(`{}`))
		return true
	})
	hc := fastHTTPClient(t)
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/charges", strings.NewReader("amount=1"))
	require.NoError(t, err)
	resp, err := hc.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	reqs := s.all()
	require.Len(t, reqs, 2)
	_, err = uuid.Parse(reqs[0].Key)
	assert.NoError(t, err, "a UUID key")
	assert.Equal(t, reqs[0].Key, reqs[1].Key)
	assert.Empty(t, req.Header.Get("Idempotency-Key"), "set on the engine's copy only")

	// A GET gets none.
	get, err := http.NewRequest(http.MethodGet, srv.URL+"/v1/charges/ch_1", nil)
	require.NoError(t, err)
	resp, err = hc.Do(get)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Empty(t, s.all()[2].Key)
}

func TestHTTPClientWithoutGeneratedKeysNeverResendsWhatMayHaveArrived(t *testing.T) {
	srv, s := scripted(t, "Idempotency-Key", func(n int, w http.ResponseWriter) bool {
		writeErr(w, 503, "api_error", "", "", "busy")
		return true
	})
	hc := fastHTTPClient(t, WithoutGeneratedKeys())
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/charges", strings.NewReader("amount=1"))
	require.NoError(t, err)
	_, err = hc.Do(req)
	var unknown *OutcomeUnknownError
	require.ErrorAs(t, err, &unknown)
	assert.Empty(t, unknown.IdempotencyKey, "no key to settle it with")
	assert.Equal(t, 1, unknown.Attempts)
	assert.Len(t, s.all(), 1, "not resent")
	assert.Empty(t, s.all()[0].Key)

	// A refused dial never reached anyone: it is retried.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	ln.Close()
	req, err = http.NewRequest(http.MethodPost, "http://"+addr+"/v1/charges", strings.NewReader("amount=1"))
	require.NoError(t, err)
	_, err = hc.Do(req)
	require.Error(t, err)
	assert.NotErrorIs(t, err, ErrOutcomeUnknown)
	assert.Contains(t, err.Error(), "after 4 attempt(s)")
}

func TestHTTPClientGatewaySignals(t *testing.T) {
	stripeErr := func(w http.ResponseWriter, status int, code string, h http.Header) {
		for k, v := range h {
			w.Header()[k] = v
		}
		writeErr(w, status, "invalid_request_error", code, "", "x")
	}
	cases := []struct {
		name     string
		answer   func(w http.ResponseWriter)
		attempts int
		unknown  bool
		status   int
	}{
		{"lock_timeout 429 retried", func(w http.ResponseWriter) { stripeErr(w, 429, "lock_timeout", nil) }, 4, false, 429},
		{"Stripe-Should-Retry true on a 400", func(w http.ResponseWriter) {
			stripeErr(w, 400, "", http.Header{"Stripe-Should-Retry": {"true"}})
		}, 4, false, 400},
		{"Stripe-Should-Retry false on a 503", func(w http.ResponseWriter) {
			stripeErr(w, 503, "", http.Header{"Stripe-Should-Retry": {"false"}})
		}, 1, true, 0},
		{"a replay is final", func(w http.ResponseWriter) {
			stripeErr(w, 500, "", http.Header{"Idempotent-Replayed": {"true"}})
		}, 1, false, 500},
		{"Retry-After honoured", func(w http.ResponseWriter) {
			stripeErr(w, 503, "", http.Header{"Retry-After": {"1"}})
		}, 4, true, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv, s := scripted(t, "Idempotency-Key", func(_ int, w http.ResponseWriter) bool { tc.answer(w); return true })
			hc := fastHTTPClient(t, WithMaxRetryAfter(20*time.Millisecond))
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/charges", strings.NewReader("a=1"))
			require.NoError(t, err)
			req.Header.Set("Idempotency-Key", "k1")
			start := time.Now()
			resp, err := hc.Do(req)
			assert.Len(t, s.all(), tc.attempts)
			if tc.name == "Retry-After honoured" {
				assert.GreaterOrEqual(t, time.Since(start), 60*time.Millisecond, "three waits of 20 ms")
			}
			if tc.unknown {
				var unknown *OutcomeUnknownError
				require.ErrorAs(t, err, &unknown)
				assert.Equal(t, "k1", unknown.IdempotencyKey)
				assert.Equal(t, tc.attempts, unknown.Attempts)
				var e *Error
				require.ErrorAs(t, err, &e, "the gateway's error is inside")
				return
			}
			require.NoError(t, err)
			defer resp.Body.Close()
			assert.Equal(t, tc.status, resp.StatusCode)
			b, _ := io.ReadAll(resp.Body)
			assert.Contains(t, string(b), `"error"`, "the body as the gateway sent it")
		})
	}
}

func TestHTTPClientOptions(t *testing.T) {
	for name, opt := range map[string]Option{
		"WithBaseURL":        WithBaseURL("https://x.example"),
		"WithAllowPlainHTTP": WithAllowPlainHTTP(true),
	} {
		_, err := NewHTTPClient(opt)
		require.ErrorIs(t, err, ErrInvalidConfig)
		assert.Contains(t, err.Error(), name)
	}
	for name, opt := range map[string]Option{
		"WithIdempotencyHeader": WithIdempotencyHeader("Cko-Idempotency-Key"),
		"WithoutGeneratedKeys":  WithoutGeneratedKeys(),
	} {
		_, err := NewClient(testAPIKey, WithBaseURL("https://x.example"), opt)
		require.ErrorIs(t, err, ErrInvalidConfig)
		assert.Contains(t, err.Error(), name)
	}
	_, err := NewHTTPClient(WithIdempotencyHeader("Bad Header"))
	require.ErrorIs(t, err, ErrInvalidConfig)
	_, err = NewHTTPClient(WithMaxRetries(-1))
	require.ErrorIs(t, err, ErrInvalidConfig)
	_, err = NewHTTPClient(nil)
	require.ErrorIs(t, err, ErrInvalidConfig)
}

// TestHTTPClientNoHiddenResend: the keep-alive test of the typed client,
// through NewHTTPClient with the caller's own base transport, and with a
// body that has GetBody, which net/http would use to resend.
func TestHTTPClientNoHiddenResend(t *testing.T) {
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
		writeRaw(w, 200, []byte(`{"id":"ch_1"}`))
	}))
	srv.Config.ConnContext = func(ctx context.Context, _ net.Conn) context.Context {
		return context.WithValue(ctx, ctxKey{}, &connCount{})
	}
	srv.Start()
	defer srv.Close()

	base := &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()}
	budget, err := NewRetryBudget(RetryBudgetConfig{Capacity: 1000})
	require.NoError(t, err)
	hc, err := NewHTTPClient(WithHTTPClient(base), WithRetryBudget(budget), WithBackoff(time.Millisecond, time.Millisecond))
	require.NoError(t, err)
	attempts := 0
	for i := 0; i < 20 && killed.Load() < 2; i++ {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/charges", bytes.NewReader([]byte("a=1")))
		require.NoError(t, err)
		require.NotNil(t, req.GetBody)
		req.Header.Set("Idempotency-Key", uuid.NewString())
		resp, err := hc.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		n, err := strconv.Atoi(resp.Header.Get(AttemptsHeader))
		require.NoError(t, err)
		attempts += n
	}
	require.GreaterOrEqual(t, killed.Load(), int32(2), "connections were reused and killed")
	assert.Equal(t, int(received.Load()), attempts, "the engine counted every request the server received")
}

func TestHTTPClientContextEnds(t *testing.T) {
	srv, _ := scripted(t, "Idempotency-Key", func(n int, w http.ResponseWriter) bool {
		writeErr(w, 500, "api_error", "", "", "x")
		return true
	})
	hc, err := NewHTTPClient(WithBackoff(time.Second, time.Second), WithoutRetryBudget())
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/charges", strings.NewReader("a=1"))
	require.NoError(t, err)
	req.Header.Set("Idempotency-Key", "k_ctx")
	_, err = hc.Do(req)
	var unknown *OutcomeUnknownError
	require.ErrorAs(t, err, &unknown, "gave up before the deadline, outcome unknown")
	assert.Equal(t, "k_ctx", unknown.IdempotencyKey)
	assert.False(t, errors.Is(err, context.Canceled))
}

func TestHTTPClientRefusesABodyOverTheLimit(t *testing.T) {
	srv, s := scripted(t, "Idempotency-Key", func(_ int, w http.ResponseWriter) bool {
		w.WriteHeader(http.StatusOK)
		return true
	})
	hc := fastHTTPClient(t, WithMaxRequestBody(1024))
	for name, body := range map[string]func() io.Reader{
		"with ContentLength": func() io.Reader { return bytes.NewReader(make([]byte, 1025)) },
		"without":            func() io.Reader { return onlyReader{bytes.NewReader(make([]byte, 1025))} },
		"streamed, huge":     func() io.Reader { return onlyReader{io.LimitReader(zeros{}, 1<<30)} },
	} {
		t.Run(name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/charges", body())
			require.NoError(t, err)
			_, err = hc.Do(req)
			require.ErrorIs(t, err, ErrInvalidRequest)
			assert.Contains(t, err.Error(), "request body larger than 1024 bytes")
			assert.Empty(t, s.all(), "nothing was sent")
		})
	}
	t.Run("at the limit", func(t *testing.T) {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/charges", onlyReader{bytes.NewReader(make([]byte, 1024))})
		require.NoError(t, err)
		resp, err := hc.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Len(t, s.all(), 1)
		assert.Len(t, s.all()[0].Body, 1024)
	})
	t.Run("the default is 1 MiB", func(t *testing.T) {
		hc := fastHTTPClient(t)
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/charges", onlyReader{bytes.NewReader(make([]byte, DefaultMaxRequestBody+1))})
		require.NoError(t, err)
		_, err = hc.Do(req)
		require.ErrorIs(t, err, ErrInvalidRequest)
		assert.Len(t, s.all(), 1, "not sent")
	})
	_, err := NewHTTPClient(WithMaxRequestBody(0))
	require.ErrorIs(t, err, ErrInvalidConfig)
	_, err = NewClient(testAPIKey, WithBaseURL(srv.URL), WithMaxRequestBody(1))
	require.ErrorIs(t, err, ErrInvalidConfig, "NewHTTPClient only")
}

// zeros is an endless reader of zero bytes.
type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestHTTPClientReturnsARedirectWithAnUnparsableLocation: a 3xx to a GET is
// the answer, never followed and never retried, and the SDK gets it as the
// response whatever its Location says. http.Client parses the Location of a
// 301, 302, 303, 307 or 308 before its CheckRedirect runs, and fails the
// request, with an error quoting the header unscrubbed, when it does not
// parse: the engine drops such a Location from the response it returns.
func TestHTTPClientReturnsARedirectWithAnUnparsableLocation(t *testing.T) {
	get := func(t *testing.T, hc *http.Client, url string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(http.MethodGet, url+"/v1/charges/ch_1", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+testAPIKey)
		resp, err := hc.Do(req)
		require.NoError(t, err, "the 3xx is the answer")
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	hc, err := NewHTTPClient(WithMaxRetries(3))
	require.NoError(t, err)

	for _, status := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther,
		http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(strconv.Itoa(status), func(t *testing.T) {
			srv, n := countingServer(t, status, http.Header{"Location": {"ht%tp://x/" + testAPIKey}}, "moved")
			resp := get(t, hc, srv.URL)
			assert.Equal(t, status, resp.StatusCode)
			assert.NotContains(t, resp.Header, "Location", "http.Client would refuse the response")
			assert.Equal(t, "1", resp.Header.Get(AttemptsHeader))
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, "moved", string(body))
			assert.Equal(t, int32(1), n.Load(), "a 3xx is never retried")
		})
	}

	t.Run("a Location that parses is the server's", func(t *testing.T) {
		srv, n := countingServer(t, http.StatusFound, http.Header{"Location": {"/elsewhere"}}, "")
		resp := get(t, hc, srv.URL)
		assert.Equal(t, http.StatusFound, resp.StatusCode)
		assert.Equal(t, []string{"/elsewhere"}, resp.Header["Location"])
		assert.Equal(t, int32(1), n.Load(), "never followed")
	})

	t.Run("a status that http.Client does not follow keeps its Location", func(t *testing.T) {
		srv, _ := countingServer(t, http.StatusMultipleChoices, http.Header{"Location": {"ht%tp://x"}}, "")
		resp := get(t, hc, srv.URL)
		assert.Equal(t, http.StatusMultipleChoices, resp.StatusCode)
		assert.Equal(t, []string{"ht%tp://x"}, resp.Header["Location"])
	})

	t.Run("a POST's outcome is unknown, whatever the Location", func(t *testing.T) {
		srv, n := countingServer(t, http.StatusFound, http.Header{"Location": {"ht%tp://x/" + testAPIKey}}, "")
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/v1/charges", strings.NewReader("amount=2000"))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+testAPIKey)
		resp, err := hc.Do(req)
		if resp != nil {
			resp.Body.Close()
		}
		var unknown *OutcomeUnknownError
		require.ErrorAs(t, err, &unknown)
		assert.NotContains(t, err.Error(), testAPIKey)
		assert.Equal(t, int32(1), n.Load(), "a 3xx is never retried")
	})
}
