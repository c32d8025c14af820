package payonce

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func clearEnv(t *testing.T) {
	t.Setenv(EnvAPIKey, "")
	t.Setenv(EnvBaseURL, "")
}

func TestNewClientRefusesBadConfig(t *testing.T) {
	clearEnv(t)
	ok := WithBaseURL("https://gw.test")
	cases := []struct {
		name string
		key  string
		opts []Option
		want string
	}{
		{"empty API key", "", []Option{ok}, "PAYONCE_API_KEY"},
		{"API key with a space", "sk_test_a b", []Option{ok}, "visible ASCII"},
		{"API key with a newline", "sk_test_a\nX-Evil: 1", []Option{ok}, "visible ASCII"},
		{"no base URL", "sk_test_1", nil, "WithBaseURL"},
		{"empty base URL option", "sk_test_1", []Option{WithBaseURL("")}, "empty URL"},
		{"relative base URL", "sk_test_1", []Option{WithBaseURL("gw.test/v1")}, "not absolute"},
		{"path only", "sk_test_1", []Option{WithBaseURL("/v1")}, "not absolute"},
		{"unparsable", "sk_test_1", []Option{WithBaseURL("https://gw.test:port")}, "base URL"},
		{"other scheme", "sk_test_1", []Option{WithBaseURL("ftp://gw.test")}, "scheme"},
		{"credentials", "sk_test_1", []Option{WithBaseURL("https://user:pw@gw.test")}, "credentials"},
		{"query", "sk_test_1", []Option{WithBaseURL("https://gw.test/?x=1")}, "query"},
		{"plain http", "sk_test_1", []Option{WithBaseURL("http://gw.test")}, "plain http"},
		{"plain http to a private IP", "sk_test_1", []Option{WithBaseURL("http://10.0.0.1:8080")}, "plain http"},
		{"plain http, allow false", "sk_test_1", []Option{WithBaseURL("http://gw.test"), WithAllowPlainHTTP(false)}, "plain http"},
		{"nil option", "sk_test_1", []Option{ok, nil}, "option 1 is nil"},
		{"nil http client", "sk_test_1", []Option{ok, WithHTTPClient(nil)}, "nil *http.Client"},
		{"negative retries", "sk_test_1", []Option{ok, WithMaxRetries(-1)}, "outside 0..20"},
		{"too many retries", "sk_test_1", []Option{ok, WithMaxRetries(21)}, "outside 0..20"},
		{"min > max", "sk_test_1", []Option{ok, WithBackoff(2*time.Second, time.Second)}, "min <= max"},
		{"zero min", "sk_test_1", []Option{ok, WithBackoff(0, time.Second)}, "0 < min"},
		{"zero attempt timeout", "sk_test_1", []Option{ok, WithAttemptTimeout(0)}, "not positive"},
		{"negative retry-after cap", "sk_test_1", []Option{ok, WithMaxRetryAfter(-time.Second)}, "not positive"},
		{"nil logger", "sk_test_1", []Option{ok, WithLogger(nil)}, "nil *slog.Logger"},
		{"nil policy", "sk_test_1", []Option{ok, WithRetryPolicy(nil)}, "nil policy"},
		{"nil backoff", "sk_test_1", []Option{ok, WithBackoffFunc(nil)}, "nil function"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var c *Client
			var err error
			require.NotPanics(t, func() { c, err = NewClient(tc.key, tc.opts...) })
			require.ErrorIs(t, err, ErrInvalidConfig)
			assert.Nil(t, c)
			assert.Contains(t, err.Error(), tc.want)
			assert.NotContains(t, err.Error(), "pw@", "credentials are not echoed")
		})
	}
}

func TestNewClientAcceptsLoopbackAndOptIn(t *testing.T) {
	clearEnv(t)
	for _, u := range []string{
		"https://gw.test", "https://gw.test/prefix/", "http://127.0.0.1:12111", "http://127.9.8.7",
		"http://[::1]:8080", "http://localhost:12111", "http://LOCALHOST",
	} {
		c, err := NewClient("sk_test_1", WithBaseURL(u))
		require.NoError(t, err, u)
		assert.NotNil(t, c.Charges)
		assert.NotNil(t, c.Refunds)
	}
	_, err := NewClient("sk_test_1", WithAllowPlainHTTP(true), WithBaseURL("http://gw.internal:8080"))
	require.NoError(t, err, "the option order does not matter")
}

func TestNewClientEnvironment(t *testing.T) {
	f := newFake(t)
	t.Setenv(EnvAPIKey, testAPIKey)
	t.Setenv(EnvBaseURL, f.URL)
	c, err := NewClient("")
	require.NoError(t, err)
	_, err = c.Charges.Create(context.Background(), chargeParams("order_env"))
	require.NoError(t, err)
	assert.Equal(t, "Bearer "+testAPIKey, f.requests()[0].Auth)

	// Arguments and options win over the environment.
	other := newFake(t)
	c, err = NewClient("sk_test_explicit", WithBaseURL(other.URL))
	require.NoError(t, err)
	_, err = c.Charges.Create(context.Background(), chargeParams("order_env2"))
	require.NoError(t, err)
	assert.Len(t, f.requests(), 1)
	require.Len(t, other.requests(), 1)
	assert.Equal(t, "Bearer sk_test_explicit", other.requests()[0].Auth)

	t.Setenv(EnvBaseURL, "http://gw.test")
	_, err = NewClient("")
	require.ErrorIs(t, err, ErrInvalidConfig, "the environment is validated too")
}

func TestClientPrintsWithoutAPIKey(t *testing.T) {
	c, err := NewClient(testAPIKey, WithBaseURL("https://gw.test"))
	require.NoError(t, err)
	outputs := []string{
		fmt.Sprintf("%v", c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), fmt.Sprintf("%s", c),
		fmt.Sprintf("%v", *c), fmt.Sprintf("%+v", *c), fmt.Sprintf("%#v", *c),
		fmt.Sprintf("%+v", c.cfg), fmt.Sprintf("%#v", c.cfg), fmt.Sprintf("%v %s %#v", c.cfg.apiKey, c.cfg.apiKey, c.cfg.apiKey),
		fmt.Sprintf("%+v", c.Charges), fmt.Sprintf("%#v", c.Refunds),
	}
	var buf strings.Builder
	slog.New(slog.NewTextHandler(&buf, nil)).Info("client", "key", c.cfg.apiKey, "cfg", c.cfg)
	outputs = append(outputs, buf.String())
	for _, out := range outputs {
		assert.NotContains(t, out, "S3CRET", out)
	}
	assert.Contains(t, fmt.Sprintf("%+v", c), "sk_test_[redacted]")
	assert.Contains(t, fmt.Sprintf("%+v", c), "MaxRetries:3")
	assert.Equal(t, testAPIKey, c.cfg.apiKey.reveal())
}

func TestNewRequestResolvesPaths(t *testing.T) {
	c, err := NewClient("sk_test_1", WithBaseURL("https://gw.test/api/"))
	require.NoError(t, err)
	for path, want := range map[string]string{
		"v1/charges":                 "https://gw.test/api/v1/charges",
		"/v1/charges":                "https://gw.test/api/v1/charges",
		"v1/charges?limit=3":         "https://gw.test/api/v1/charges?limit=3",
		"v1/things/a%2Fb":            "https://gw.test/api/v1/things/a%2Fb",
		"v1/charges/ch_1/capture":    "https://gw.test/api/v1/charges/ch_1/capture",
		"v1/charges?starting_after=": "https://gw.test/api/v1/charges?starting_after=",
	} {
		req, err := c.NewRequest(http.MethodGet, path, nil, "")
		require.NoError(t, err, path)
		assert.Equal(t, want, req.URL(), path)
		assert.Empty(t, req.IdempotencyKey(), "a GET gets no generated key")
	}
	for _, path := range []string{
		"https://evil.test/v1/charges", "//evil.test/v1", "", "/", "v1/../admin", "./v1", "v1/charges#x", "mailto:x",
	} {
		_, err := c.NewRequest(http.MethodGet, path, nil, "")
		require.ErrorIs(t, err, ErrInvalidRequest, "%q", path)
	}
	_, err = c.NewRequest("post", "v1/charges", nil, "")
	require.ErrorIs(t, err, ErrInvalidRequest)
}

func TestNewRequestKeysAndBody(t *testing.T) {
	c, err := NewClient("sk_test_1", WithBaseURL("https://gw.test"))
	require.NoError(t, err)

	for _, m := range []string{http.MethodPost, http.MethodPatch, http.MethodPut, http.MethodDelete} {
		req, err := c.NewRequest(m, "v1/x", nil, "")
		require.NoError(t, err)
		require.NoError(t, ValidateKey(req.IdempotencyKey()), "%s always carries a key", m)
	}
	req, err := c.NewRequest(http.MethodPost, "v1/x", map[string]int{"a": 1}, "my_key")
	require.NoError(t, err)
	assert.Equal(t, "my_key", req.IdempotencyKey())
	assert.Equal(t, `{"a":1}`, string(req.Body()))
	req.Body()[0] = 'X'
	assert.Equal(t, `{"a":1}`, string(req.Body()), "a Request is immutable")
	assert.Equal(t, http.MethodPost, req.Method())

	raw, err := c.NewRequest(http.MethodPost, "v1/x", json.RawMessage(`{"b": 2}`), "")
	require.NoError(t, err)
	assert.Equal(t, `{"b": 2}`, string(raw.Body()), "raw JSON is sent as it is")

	_, err = c.NewRequest(http.MethodPost, "v1/x", map[string]any{"f": func() {}}, "")
	require.Error(t, err)

	for _, bad := range []string{"has space", `"q"`, strings.Repeat("k", 256), "é"} {
		_, err := c.NewRequest(http.MethodPost, "v1/x", nil, bad)
		require.ErrorIs(t, err, ErrInvalidKey, "%q", bad)
	}
}

func TestInvalidKeyRefusedBeforeAnyRequest(t *testing.T) {
	f := newFake(t)
	c := f.client(t)
	_, err := c.Charges.Create(context.Background(), chargeParams("invoice 456"))
	require.ErrorIs(t, err, ErrInvalidKey)
	_, err = c.Refunds.Create(context.Background(), &RefundParams{Charge: "ch_1", IdempotencyKey: "ü"})
	require.ErrorIs(t, err, ErrInvalidKey)
	_, err = c.Charges.Capture(context.Background(), "ch_1", &CaptureParams{IdempotencyKey: strings.Repeat("k", 300)})
	require.ErrorIs(t, err, ErrInvalidKey)
	assert.Empty(t, f.requests())
}

func TestDoReachesUncoveredEndpoint(t *testing.T) {
	var gotKey, gotBody string
	var calls int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		defer mu.Unlock()
		calls++
		if calls == 1 {
			w.WriteHeader(http.StatusBadGateway)
			return
		}
		gotKey, gotBody = r.Header.Get("Idempotency-Key"), string(b)
		w.Header().Set("Request-Id", "req_w")
		w.Header().Set("Idempotent-Replayed", "true")
		fmt.Fprint(w, `{"id":"wd_1","size":3}`)
	}))
	defer srv.Close()
	c := (&fakeGateway{URL: srv.URL}).client(t)
	req, err := c.NewRequest(http.MethodPost, "/v1/widgets", map[string]int{"size": 3}, "widget_1")
	require.NoError(t, err)
	var out struct {
		ID   string `json:"id"`
		Size int    `json:"size"`
	}
	resp, err := c.Do(context.Background(), req, &out)
	require.NoError(t, err)
	assert.Equal(t, "wd_1", out.ID)
	assert.Equal(t, "widget_1", gotKey)
	assert.Equal(t, `{"size":3}`, gotBody)
	assert.Equal(t, &Response{StatusCode: 200, RequestID: "req_w", IdempotencyKey: "widget_1", Replayed: true,
		Attempts: 2, Header: resp.Header}, resp)

	_, err = c.Do(context.Background(), nil, nil)
	require.ErrorIs(t, err, ErrInvalidRequest)
	var zero Client
	_, err = zero.NewRequest(http.MethodGet, "v1/charges", nil, "")
	require.ErrorIs(t, err, ErrInvalidRequest, "a zero Client fails cleanly")
	_, err = zero.Do(context.Background(), req, nil)
	require.ErrorIs(t, err, ErrInvalidRequest)
	assert.Equal(t, "payonce.Client{}", fmt.Sprint(&zero))
	_, err = c.Do(context.Background(), &Request{}, nil)
	require.ErrorIs(t, err, ErrInvalidRequest)
	//nolint:staticcheck // a nil context is refused, not a panic
	_, err = c.Do(nil, req, nil)
	require.ErrorIs(t, err, ErrInvalidRequest)
}

func TestRedirectsAreNotFollowed(t *testing.T) {
	var hits int
	var mu sync.Mutex
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
		http.Redirect(w, r, "https://elsewhere.test/steal", http.StatusTemporaryRedirect)
	}))
	defer srv.Close()
	c := (&fakeGateway{URL: srv.URL}).client(t)
	_, err := c.Charges.Create(context.Background(), chargeParams("order_redir"))
	var apiErr *Error
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, http.StatusTemporaryRedirect, apiErr.StatusCode)
	assert.Equal(t, 1, hits)
}

func TestConcurrentUse(t *testing.T) {
	f := newFake(t)
	c := f.client(t, WithMaxRetries(10))
	ctx := context.Background()
	var wg sync.WaitGroup
	const workers, each = 16, 5
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				key, err := BusinessKey("order", fmt.Sprint(w), fmt.Sprint(i))
				assert.NoError(t, err)
				_, err = c.Charges.Create(ctx, chargeParams(key))
				assert.NoError(t, err)
			}
		}()
	}
	// Many goroutines racing with one key: exactly one charge.
	ids := make(chan string, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch, err := c.Charges.Create(ctx, chargeParams("order_shared"))
			if assert.NoError(t, err) {
				ids <- ch.ID
			}
		}()
	}
	wg.Wait()
	close(ids)
	var first string
	for id := range ids {
		if first == "" {
			first = id
		}
		assert.Equal(t, first, id)
	}
	assert.Equal(t, workers*each+1, f.chargeCount())
	n := 0
	for ch, err := range c.Charges.List(ctx, &ChargeListParams{Limit: 100}) {
		require.NoError(t, err)
		require.NotEmpty(t, ch.ID)
		n++
	}
	assert.Equal(t, workers*each+1, n)
}
