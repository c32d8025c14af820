package mock_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v85"

	"github.com/payonce/payonce/mock"
)

// An API key must not reach the control surface through a webhook: an
// endpoint's URL may not be the mock's control surface, however it is
// spelt, remote webhooks or not.
func TestWebhookEndpointRefusesControlURLs(t *testing.T) {
	for _, opts := range [][]mock.Option{nil, {mock.WithRemoteWebhooks()}} {
		sc, srv := stripeClient(t, keyA, opts...)
		ctx := context.Background()
		charge(t, sc, "")
		for _, p := range []string{"/_mock/reset", "/_mock", "/_mock/", "/healthz", "/%5Fmock/reset", "/%5fmock/reset",
			"/x/../_mock/reset", "//_mock/reset", "/_mock/./faults", "/_mock/reset?x=1"} {
			_, err := sc.V1WebhookEndpoints.Create(ctx, &stripe.WebhookEndpointCreateParams{URL: stripe.String(srv.URL + p),
				EnabledEvents: stripe.StringSlice([]string{"*"})})
			se := stripeErr(t, err)
			assert.Equal(t, http.StatusBadRequest, se.HTTPStatusCode, p)
			assert.Equal(t, stripe.ErrorCode("url_invalid"), se.Code, p)
			assert.Contains(t, se.Msg, "control surface", p)
		}
		// Nor may an update point an endpoint there.
		rc := newReceiver(t)
		we := rc.endpoint(sc)
		_, err := sc.V1WebhookEndpoints.Update(ctx, we.ID, &stripe.WebhookEndpointUpdateParams{URL: stripe.String(srv.URL + "/_mock/reset")})
		assert.Equal(t, stripe.ErrorCode("url_invalid"), stripeErr(t, err).Code)
		assert.Len(t, srv.Charges(), 1, "nothing was reset")
	}
}

// The control surface refuses every request the delivery client sends,
// even one that reaches it by a way the URL check cannot see, here a proxy
// on another loopback port.
func TestControlRefusesDeliveries(t *testing.T) {
	sc, srv := stripeClient(t, keyA, mock.WithDeliveryPolicy(mock.DeliveryPolicy{MaxAttempts: 1}))
	target, err := url.Parse(srv.URL)
	require.NoError(t, err)
	proxy := httputil.NewSingleHostReverseProxy(target)
	direct := proxy.Director
	proxy.Director = func(r *http.Request) {
		direct(r)
		r.URL.Path, r.URL.RawPath = "/_mock/reset", ""
	}
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)
	_, err = sc.V1WebhookEndpoints.Create(context.Background(), &stripe.WebhookEndpointCreateParams{
		URL: stripe.String(front.URL + "/hooks"), EnabledEvents: stripe.StringSlice([]string{"*"})})
	require.NoError(t, err)

	charge(t, sc, "")
	st := settle(t, srv)
	assert.Equal(t, int64(1), st.Events, "not reset")
	assert.Len(t, srv.Charges(), 1, "not reset")
	recs := srv.Deliveries()
	require.Len(t, recs, 1)
	assert.Equal(t, http.StatusForbidden, recs[0].Status)

	// By hand: the marker, or a Stripe signature, is refused from a
	// loopback Host, /healthz included.
	h := &harness{t: t, srv: srv, c: srv.Client()}
	for _, header := range []map[string]string{{"Payonce-Mock-Delivery": "1"}, {"Stripe-Signature": "t=1,v1=00"}} {
		for _, p := range []string{"/_mock/reset", "/_mock/requests", "/healthz"} {
			method := http.MethodPost
			if p != "/_mock/reset" {
				method = http.MethodGet
			}
			r := h.raw(method, p, "", header)
			assert.Equal(t, http.StatusForbidden, r.Status, "%v %s: %s", header, p, r.Body)
			assert.Equal(t, "webhook_delivery_refused", r.err(t).Code)
		}
	}
	assert.Len(t, srv.Charges(), 1, "not reset")
	assert.Equal(t, http.StatusOK, h.raw(http.MethodPost, "/_mock/reset", "", nil).Status)
	assert.Empty(t, srv.Charges())
}
