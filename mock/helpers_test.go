package mock_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/mock"
)

const (
	keyA = "sk_test_alice_4eC39HqLyjWDarjtT1zdp7dc"
	keyB = "sk_test_bob_BQokikJOvBiI2HlWgH4olfQ2"
)

// start is a fixed clock start, so that created timestamps are predictable.
var start = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

// harness is a gateway server and a client for one test.
type harness struct {
	t   *testing.T
	srv *mock.Server
	c   *http.Client
	n   atomic.Int64 // for fresh idempotency keys
}

// setup starts a gateway server that the test closes when it ends.
func setup(t *testing.T, opts ...mock.Option) *harness {
	t.Helper()
	srv := mock.NewServer(append([]mock.Option{mock.WithStartTime(start)}, opts...)...)
	t.Cleanup(srv.Close)
	return &harness{t: t, srv: srv, c: srv.Client()}
}

// resp is a response read in full.
type resp struct {
	Status int
	Header http.Header
	Body   []byte
}

// apiErr is the error envelope's content.
type apiErr struct {
	Type        string `json:"type"`
	Code        string `json:"code"`
	Message     string `json:"message"`
	Param       string `json:"param"`
	DeclineCode string `json:"decline_code"`
}

func (r *resp) err(t *testing.T) apiErr {
	t.Helper()
	var env struct {
		Error *apiErr `json:"error"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &env), "body: %s", r.Body)
	require.NotNil(t, env.Error, "no error envelope in %s", r.Body)
	return *env.Error
}

func (r *resp) charge(t *testing.T) mock.Charge {
	t.Helper()
	require.Equal(t, http.StatusOK, r.Status, "body: %s", r.Body)
	var ch mock.Charge
	require.NoError(t, json.Unmarshal(r.Body, &ch))
	return ch
}

func (r *resp) replayed() bool { return r.Header.Get("Idempotent-Replayed") == "true" }

// req describes one API request; the zero value of a field means "none".
type req struct {
	method, path string
	apiKey       string // "" sends no Authorization
	idemKey      string // "" sends no Idempotency-Key
	body         string
	contentType  string // defaults to application/json when there is a body
}

func (h *harness) send(rq req) *resp {
	h.t.Helper()
	r, err := h.try(h.c, rq)
	require.NoError(h.t, err)
	return r
}

// try sends rq with c and returns the transport error, if any.
func (h *harness) try(c *http.Client, rq req) (*resp, error) {
	h.t.Helper()
	hr, err := http.NewRequest(rq.method, h.srv.URL+rq.path, strings.NewReader(rq.body))
	require.NoError(h.t, err)
	if rq.apiKey != "" {
		hr.Header.Set("Authorization", "Bearer "+rq.apiKey)
	}
	if rq.idemKey != "" {
		hr.Header.Set("Idempotency-Key", rq.idemKey)
	}
	switch {
	case rq.contentType != "":
		hr.Header.Set("Content-Type", rq.contentType)
	case rq.body != "":
		hr.Header.Set("Content-Type", "application/json")
	}
	res, err := c.Do(hr)
	if err != nil {
		return nil, err
	}
	defer res.Body.Close()
	body, err := io.ReadAll(res.Body)
	require.NoError(h.t, err)
	return &resp{Status: res.StatusCode, Header: res.Header, Body: body}, nil
}

// post sends a POST as account A with the given idempotency key.
func (h *harness) post(path, idemKey, body string) *resp {
	h.t.Helper()
	return h.send(req{method: http.MethodPost, path: path, apiKey: keyA, idemKey: idemKey, body: body})
}

// get sends a GET as account A.
func (h *harness) get(path string) *resp {
	h.t.Helper()
	return h.send(req{method: http.MethodGet, path: path, apiKey: keyA})
}

// key returns a fresh idempotency key.
func (h *harness) key() string {
	return fmt.Sprintf("key-%s-%d", h.t.Name(), h.n.Add(1))
}

// charge creates a captured tok_visa charge for amount as account A.
func (h *harness) charge(amount int) mock.Charge {
	h.t.Helper()
	return h.post("/v1/charges", h.key(), chargeBody(amount)).charge(h.t)
}

func chargeBody(amount int) string {
	return fmt.Sprintf(`{"amount":%d,"currency":"usd","payment_method":"tok_visa"}`, amount)
}

// freshClient returns a client that opens a new connection per request, so
// that a dropped connection is not retried by net/http's transport (which
// retries a request carrying an Idempotency-Key once when a reused
// connection breaks).
func (h *harness) freshClient() *http.Client {
	tr := h.c.Transport.(*http.Transport).Clone()
	tr.DisableKeepAlives = true
	h.t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// recv receives from ch, failing the test if nothing comes within a
// deadline far beyond any correct run: a broken hold then fails instead of
// hanging the suite. It never waits for something to happen by itself.
func recv[T any](t *testing.T, ch <-chan T) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(30 * time.Second):
		t.Fatal("timed out waiting on a channel")
		panic("unreachable")
	}
}
