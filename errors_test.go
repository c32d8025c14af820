package payonce

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"unicode"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var sentinels = []error{ErrCardDeclined, ErrKeyReused, ErrKeyInUse, ErrRateLimited, ErrAuthentication,
	ErrNotFound, ErrInvalidRequest, ErrInvalidKey, ErrOutcomeUnknown, ErrInvalidConfig, ErrMalformedResponse}

// only asserts that err matches want and no other sentinel.
func only(t *testing.T, err error, want ...error) {
	t.Helper()
	for _, s := range sentinels {
		is := false
		for _, w := range want {
			is = is || w == s
		}
		assert.Equal(t, is, errors.Is(err, s), "errors.Is(%v, %v)", err, s)
	}
}

func TestSentinelsFromTheGateway(t *testing.T) {
	f := newFake(t)
	c := f.client(t)
	ctx := context.Background()

	t.Run("402 decline", func(t *testing.T) {
		p := chargeParams("order_decline")
		p.PaymentMethod = "tok_chargeDeclinedInsufficientFunds"
		_, err := c.Charges.Create(ctx, p)
		only(t, err, ErrCardDeclined)
		var e *Error
		require.ErrorAs(t, err, &e)
		assert.Equal(t, &Error{StatusCode: 402, Type: "card_error", Code: "card_declined", DeclineCode: "insufficient_funds",
			Message: "Your card was declined.", RequestID: e.RequestID, IdempotencyKey: "order_decline"}, e)
		assert.Equal(t, "payonce: status 402 card_error/card_declined: Your card was declined. "+
			"(decline_code=insufficient_funds, request_id="+e.RequestID+", idempotency_key=order_decline)", e.Error())
		_, err = c.Charges.Create(ctx, p)
		require.ErrorIs(t, err, ErrCardDeclined, "the decline was stored and replays")
	})

	t.Run("422 key reused", func(t *testing.T) {
		_, err := c.Charges.Create(ctx, chargeParams("order_reuse"))
		require.NoError(t, err)
		p := chargeParams("order_reuse")
		p.Amount = 2001 // a different request under the same key
		_, err = c.Charges.Create(ctx, p)
		only(t, err, ErrKeyReused)
		msg := err.Error()
		assert.Contains(t, msg, `idempotency key "order_reuse" was already used for a DIFFERENT request`)
		assert.Contains(t, msg, "bug in the calling code")
		assert.Contains(t, msg, "nothing was executed")
		assert.Contains(t, msg, "status 422 idempotency_error/idempotency_key_reused")
		assert.Equal(t, 1, countCharges(t, c), "nothing executed")
	})

	t.Run("401 authentication", func(t *testing.T) {
		bad, err := NewClient("rk_wrong_key", WithBaseURL(f.URL))
		require.NoError(t, err)
		_, err = bad.Charges.Get(ctx, "ch_1")
		only(t, err, ErrAuthentication)
		assert.NotContains(t, err.Error(), "rk_wrong_key")
	})

	t.Run("404 not found", func(t *testing.T) {
		_, err := c.Charges.Get(ctx, "ch_nope")
		only(t, err, ErrNotFound)
		var e *Error
		require.ErrorAs(t, err, &e)
		assert.Equal(t, "id", e.Param)
		_, err = c.Refunds.Create(ctx, &RefundParams{Charge: "ch_nope"})
		only(t, err, ErrNotFound)
	})

	t.Run("400 invalid", func(t *testing.T) {
		p := chargeParams("order_badtok")
		p.PaymentMethod = "tok_nope"
		_, err := c.Charges.Create(ctx, p)
		only(t, err, ErrInvalidRequest)
	})
}

func countCharges(t *testing.T, c *Client) int {
	n := 0
	for _, err := range c.Charges.List(context.Background(), nil) {
		require.NoError(t, err)
		n++
	}
	return n
}

func TestErrorIsTable(t *testing.T) {
	cases := []struct {
		e    *Error
		want []error
	}{
		{&Error{StatusCode: 402, Type: "card_error", Code: "card_declined"}, []error{ErrCardDeclined}},
		{&Error{StatusCode: 402}, []error{ErrCardDeclined}},
		{&Error{StatusCode: 422}, []error{ErrKeyReused}},
		{&Error{StatusCode: 400, Type: "idempotency_error", Code: "idempotency_key_reused"}, []error{ErrKeyReused, ErrInvalidRequest}},
		{&Error{StatusCode: 409, Type: "idempotency_error", Code: "idempotency_key_in_use"}, []error{ErrKeyInUse}},
		{&Error{StatusCode: 409}, nil},
		{&Error{StatusCode: 429}, []error{ErrRateLimited}},
		{&Error{StatusCode: 400, Type: "rate_limit_error"}, []error{ErrRateLimited, ErrInvalidRequest}},
		{&Error{StatusCode: 401}, []error{ErrAuthentication}},
		{&Error{StatusCode: 401, Type: "authentication_error", Code: "api_key_missing"}, []error{ErrAuthentication}},
		{&Error{StatusCode: 404, Code: "resource_missing"}, []error{ErrNotFound}},
		{&Error{StatusCode: 400, Type: "idempotency_error", Code: "idempotency_key_invalid"}, []error{ErrInvalidKey, ErrInvalidRequest}},
		{&Error{StatusCode: 413, Code: "body_too_large"}, []error{ErrInvalidRequest}},
		{&Error{StatusCode: 500}, nil},
		{&Error{StatusCode: 403}, nil},
	}
	for _, tc := range cases {
		only(t, tc.e, tc.want...)
		only(t, fmt.Errorf("wrapped: %w", tc.e), tc.want...)
	}
	ou := &OutcomeUnknownError{IdempotencyKey: "k", Err: &Error{StatusCode: 409, Code: "idempotency_key_in_use"}}
	only(t, ou, ErrOutcomeUnknown, ErrKeyInUse)
}

func TestErrorStringsAreLowercaseWithoutFinalPunctuation(t *testing.T) {
	errs := []error{
		&Error{StatusCode: 500},
		&Error{StatusCode: 422, RequestID: "req_1"},
		&OutcomeUnknownError{Method: "POST", Path: "/v1/charges", IdempotencyKey: "k", Attempts: 4, Err: io.EOF},
		invalidf("create charge: nil *ChargeParams"),
	}
	errs = append(errs, sentinels...)
	_, err := NewClient("")
	errs = append(errs, err)
	for _, e := range errs {
		s := e.Error()
		assert.True(t, unicode.IsLower(rune(s[0])), s)
		assert.False(t, strings.HasSuffix(s, "."), s)
	}
}

func TestBodySizeLimits(t *testing.T) {
	huge := bytes.Repeat([]byte("x"), maxSuccessBody+10)
	var requests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		w.Header().Set("Request-Id", "req_big")
		switch r.URL.Path {
		case "/v1/charges/ch_big", "/v1/charges":
			w.Write([]byte(`{"id":"`))
			w.Write(huge)
		case "/v1/charges/ch_bigerr":
			w.WriteHeader(400)
			w.Write([]byte(`{"error":{"message":"`))
			w.Write(bytes.Repeat([]byte("y"), maxErrorBody))
		}
	}))
	defer srv.Close()
	c := (&fakeGateway{URL: srv.URL}).client(t)
	ctx := context.Background()

	_, err := c.Charges.Get(ctx, "ch_big")
	require.Error(t, err)
	assert.Contains(t, err.Error(), "response body larger than 10 MiB (status 200, request_id req_big)")
	assert.Less(t, len(err.Error()), 500)

	_, err = c.Charges.Create(ctx, chargeParams("order_big"))
	require.ErrorIs(t, err, ErrOutcomeUnknown, "it executed, but the answer cannot be read")
	assert.Contains(t, err.Error(), "larger than 10 MiB")

	_, err = c.Charges.Get(ctx, "ch_bigerr")
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, 400, e.StatusCode)
	assert.Equal(t, "req_big", e.RequestID)
	assert.Equal(t, "error body larger than 64 KiB, not parsed", e.Message)
	assert.Less(t, len(err.Error()), 500)
	assert.Equal(t, int32(3), requests.Load(), "oversized bodies are not retried")
}

func TestBrokenBodies(t *testing.T) {
	html := "<html><body>" + strings.Repeat("Bad Gateway ", 100) + "</body></html>"
	c, mt := mockClient(t, func(r *http.Request) (*http.Response, error) {
		var resp *http.Response
		switch r.URL.Path {
		case "/v1/charges/ch_html400":
			resp = httpmock.NewStringResponse(400, html)
			resp.Header.Set("Content-Type", "text/html")
		case "/v1/charges/ch_html502", "/v1/charges":
			resp = httpmock.NewStringResponse(502, html)
		case "/v1/charges/ch_trunc":
			resp = httpmock.NewStringResponse(200, `{"id":"ch_trunc","amount":`)
		case "/v1/charges/ch_empty":
			resp = httpmock.NewStringResponse(404, "")
		case "/v1/charges/ch_notjson":
			resp = httpmock.NewStringResponse(200, "OK")
		case "/v1/charges/ch_wrongshape":
			resp = httpmock.NewStringResponse(500, `{"message":"no envelope"}`)
		}
		resp.Header.Set("Request-Id", "req_broken")
		return resp, nil
	})
	ctx := context.Background()

	_, err := c.Charges.Get(ctx, "ch_html400")
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, 400, e.StatusCode)
	assert.Equal(t, "req_broken", e.RequestID)
	assert.Contains(t, e.Message, `unexpected error body (1226 bytes, content-type "text/html")`)
	assert.NotContains(t, err.Error(), "<html>")

	_, err = c.Charges.Get(ctx, "ch_html502")
	require.ErrorAs(t, err, &e)
	assert.Equal(t, 502, e.StatusCode, "retried, then reported with its status")
	assert.NotContains(t, err.Error(), "<html>")

	_, err = c.Charges.Create(ctx, chargeParams("order_html"))
	require.ErrorIs(t, err, ErrOutcomeUnknown)
	require.ErrorAs(t, err, &e)
	assert.Equal(t, 502, e.StatusCode)

	_, err = c.Charges.Get(ctx, "ch_trunc")
	require.Error(t, err)
	require.ErrorIs(t, err, ErrMalformedResponse)
	assert.Contains(t, err.Error(), "malformed success response (status 200, request_id req_broken, 26 bytes)")
	assert.NotErrorIs(t, err, ErrOutcomeUnknown)

	_, err = c.Charges.Get(ctx, "ch_notjson")
	require.ErrorIs(t, err, ErrMalformedResponse)
	assert.Contains(t, err.Error(), "not a JSON object")

	_, err = c.Charges.Get(ctx, "ch_empty")
	require.ErrorIs(t, err, ErrNotFound, "status decides even without a body")
	assert.Contains(t, err.Error(), "empty error body: Not Found")

	_, err = c.Charges.Get(ctx, "ch_wrongshape")
	require.ErrorAs(t, err, &e)
	assert.Contains(t, e.Message, "unexpected error body")
	assert.Positive(t, mt.GetTotalCallCount())
}

func TestTruncatedSuccessBodyIsRetried(t *testing.T) {
	var n atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			w.Header().Set("Content-Length", "1000")
			w.Write([]byte(`{"id":"ch_`))
			dropConn(t, w)
			return
		}
		w.Write([]byte(`{"id":"ch_1"}`))
	}))
	defer srv.Close()
	ch, err := (&fakeGateway{URL: srv.URL}).client(t).Charges.Get(context.Background(), "ch_1")
	require.NoError(t, err)
	assert.Equal(t, "ch_1", ch.ID)
	assert.Equal(t, 2, ch.LastResponse.Attempts)
}

func TestAPIKeyNeverLeaks(t *testing.T) {
	// A hostile gateway echoes the key back in every text it controls.
	f := newFake(t, func(f *fakeGateway) {
		f.before = func(n int, w http.ResponseWriter, r *http.Request) bool {
			key := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
			w.Header().Set("Request-Id", "req_"+key)
			switch n {
			case 1, 2:
				writeErr(w, 503, "api_error", key, key, "your key is "+key)
			case 3:
				writeErr(w, 401, "authentication_error", "api_key_invalid", "", "bad key "+key)
			default:
				return false
			}
			return true
		}
	})
	lb := &logBuffer{}
	c := f.client(t, WithLogger(lb.logger()), WithMaxRetries(1))
	_, err1 := c.Charges.Create(context.Background(), chargeParams("order_leak"))
	require.ErrorIs(t, err1, ErrOutcomeUnknown)
	_, err2 := c.Charges.Get(context.Background(), "ch_1")
	require.ErrorIs(t, err2, ErrAuthentication)

	// And transport failures.
	mc, _ := mockClient(t, httpmock.NewErrorResponder(io.EOF))
	_, err3 := mc.Charges.Create(context.Background(), chargeParams("order_leak2"))
	require.Error(t, err3)

	var apiErr *Error
	require.ErrorAs(t, err2, &apiErr)
	for _, s := range []string{err1.Error(), err2.Error(), err3.Error(), lb.String(), fmt.Sprintf("%+v %#v", apiErr, apiErr)} {
		assert.NotContains(t, s, "S3CRET")
	}
	assert.Contains(t, err2.Error(), "bad key [redacted]")
	assert.NotEmpty(t, lb.String())
}
