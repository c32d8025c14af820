package mock_test

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v85"

	"github.com/payonce/payonce/mock"
)

func TestWebhookEndpointCRUD(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	ctx := context.Background()
	p := &stripe.WebhookEndpointCreateParams{URL: stripe.String("http://127.0.0.1:9/hooks"),
		EnabledEvents: stripe.StringSlice([]string{"charge.succeeded", "payment_intent.*"}),
		Description:   stripe.String("orders")}
	p.AddMetadata("team", "payments")
	we, err := sc.V1WebhookEndpoints.Create(ctx, p)
	require.NoError(t, err)
	assert.Equal(t, "webhook_endpoint", we.Object)
	assert.True(t, strings.HasPrefix(we.ID, "we_"), we.ID)
	assert.Regexp(t, `^whsec_[a-z2-7]{48}$`, we.Secret)
	assert.Equal(t, "http://127.0.0.1:9/hooks", we.URL)
	assert.Equal(t, []string{"charge.succeeded", "payment_intent.*"}, we.EnabledEvents)
	assert.Equal(t, "orders", we.Description)
	assert.Equal(t, map[string]string{"team": "payments"}, we.Metadata)
	assert.Equal(t, "enabled", we.Status)
	assert.Equal(t, start.Unix(), we.Created)
	assert.False(t, we.Livemode)

	got, err := sc.V1WebhookEndpoints.Retrieve(ctx, we.ID, nil)
	require.NoError(t, err)
	assert.Equal(t, we.ID, got.ID)
	assert.Empty(t, got.Secret, "the secret is shown only when created, as Stripe does")
	assert.Equal(t, we.URL, got.URL)

	up, err := sc.V1WebhookEndpoints.Update(ctx, we.ID, &stripe.WebhookEndpointUpdateParams{
		Disabled: stripe.Bool(true), EnabledEvents: stripe.StringSlice([]string{"*"})})
	require.NoError(t, err)
	assert.Equal(t, "disabled", up.Status)
	assert.Equal(t, []string{"*"}, up.EnabledEvents)
	assert.Equal(t, "orders", up.Description, "what the update leaves out stays")

	// Listing pages through all of them, newest first.
	ids := []string{we.ID}
	for range 4 {
		e, err := sc.V1WebhookEndpoints.Create(ctx, &stripe.WebhookEndpointCreateParams{
			URL: stripe.String("http://localhost:9/h"), EnabledEvents: stripe.StringSlice([]string{"*"})})
		require.NoError(t, err)
		ids = append([]string{e.ID}, ids...)
	}
	lp := &stripe.WebhookEndpointListParams{}
	lp.Limit = stripe.Int64(2)
	var listed []string
	for e, err := range sc.V1WebhookEndpoints.List(ctx, lp).All(ctx) {
		require.NoError(t, err)
		assert.Empty(t, e.Secret)
		listed = append(listed, e.ID)
	}
	assert.Equal(t, ids, listed)

	del, err := sc.V1WebhookEndpoints.Delete(ctx, we.ID, nil)
	require.NoError(t, err)
	assert.True(t, del.Deleted)
	assert.Equal(t, we.ID, del.ID)
	_, err = sc.V1WebhookEndpoints.Retrieve(ctx, we.ID, nil)
	se := stripeErr(t, err)
	assert.Equal(t, http.StatusNotFound, se.HTTPStatusCode)
	assert.Equal(t, stripe.ErrorCodeResourceMissing, se.Code)

	// Another account sees none of them.
	for _, err := range stripeClientFor(srv, keyB).V1WebhookEndpoints.List(ctx, &stripe.WebhookEndpointListParams{}).All(ctx) {
		require.NoError(t, err)
		t.Fatal("keyB lists none of keyA's endpoints")
	}
}

func TestWebhookEndpointLoopbackOnly(t *testing.T) {
	sc, _ := stripeClient(t, keyA)
	ctx := context.Background()
	create := func(sc *stripe.Client, url string, events ...string) (*stripe.WebhookEndpoint, error) {
		if events == nil {
			events = []string{"*"}
		}
		return sc.V1WebhookEndpoints.Create(ctx, &stripe.WebhookEndpointCreateParams{URL: stripe.String(url),
			EnabledEvents: stripe.StringSlice(events)})
	}
	for _, url := range []string{"http://localhost:8080/h", "http://127.0.0.1/h", "http://127.8.9.10:1/h", "https://[::1]:443/h", "http://LOCALHOST./h"} {
		_, err := create(sc, url)
		assert.NoError(t, err, url)
	}
	for _, url := range []string{"http://example.com/hooks", "https://10.0.0.1/h", "http://192.168.1.1:8080/h", "http://localhost.example.com/h", "http://[::2]/h"} {
		_, err := create(sc, url)
		se := stripeErr(t, err)
		assert.Equal(t, http.StatusBadRequest, se.HTTPStatusCode, url)
		assert.Equal(t, stripe.ErrorTypeInvalidRequest, se.Type, url)
		assert.Equal(t, stripe.ErrorCode("url_invalid"), se.Code, url)
		assert.Equal(t, "url", se.Param, url)
		assert.Contains(t, se.Msg, "loopback", url)
	}
	for _, url := range []string{"ftp://127.0.0.1/h", "127.0.0.1:80/h", "http:///h", "http://u:p@127.0.0.1/h"} {
		_, err := create(sc, url)
		se := stripeErr(t, err)
		assert.Equal(t, stripe.ErrorCode("url_invalid"), se.Code, url)
	}
	_, err := create(sc, "http://127.0.0.1/h", "Charge Succeeded")
	assert.Equal(t, "enabled_events[0]", stripeErr(t, err).Param)
	_, err = sc.V1WebhookEndpoints.Create(ctx, &stripe.WebhookEndpointCreateParams{URL: stripe.String("http://127.0.0.1/h")})
	assert.Equal(t, stripe.ErrorCodeParameterMissing, stripeErr(t, err).Code)

	// WithRemoteWebhooks (payonce-mock -allow-remote-webhooks) lifts the rule.
	remote, _ := stripeClient(t, keyA, mock.WithRemoteWebhooks())
	we, err := create(remote, "https://example.com/hooks")
	require.NoError(t, err)
	assert.Equal(t, "https://example.com/hooks", we.URL)
}

func TestWebhookEndpointsPerAccount(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	scB := stripeClientFor(srv, keyB)
	ctx := context.Background()
	rcA, rcB := newReceiver(t), newReceiver(t)
	weA := rcA.endpoint(sc)
	rcB.endpoint(scB)

	_, err := scB.V1WebhookEndpoints.Retrieve(ctx, weA.ID, nil)
	assert.Equal(t, http.StatusNotFound, stripeErr(t, err).HTTPStatusCode, "B cannot see A's endpoint")
	_, err = scB.V1WebhookEndpoints.Delete(ctx, weA.ID, nil)
	assert.Equal(t, http.StatusNotFound, stripeErr(t, err).HTTPStatusCode, "nor delete it")
	var listedB int
	for _, err := range scB.V1WebhookEndpoints.List(ctx, &stripe.WebhookEndpointListParams{}).All(ctx) {
		require.NoError(t, err)
		listedB++
	}
	assert.Equal(t, 1, listedB)

	ch, err := sc.V1Charges.Create(ctx, chargeParams(1000, "tok_visa", "a_1"))
	require.NoError(t, err)
	settle(t, srv)
	require.Len(t, rcA.events(), 1)
	assert.Empty(t, rcB.events(), "B receives none of A's events")

	ev := rcA.events()[0].event
	_, err = scB.V1Events.Retrieve(ctx, ev.ID, nil)
	assert.Equal(t, http.StatusNotFound, stripeErr(t, err).HTTPStatusCode, "B cannot read A's event")
	for _, err := range scB.V1Events.List(ctx, &stripe.EventListParams{}).All(ctx) {
		require.NoError(t, err)
		t.Fatal("B lists none of A's events")
	}
	assert.Equal(t, ch.ID, ev.GetObjectValue("id"))

	// A connected account (Stripe-Account) is an account of its own; the
	// platform's connect endpoints receive its events, which name it.
	rcConnect := newReceiver(t)
	we, err := sc.V1WebhookEndpoints.Create(ctx, &stripe.WebhookEndpointCreateParams{URL: stripe.String(rcConnect.url()),
		EnabledEvents: stripe.StringSlice([]string{"charge.succeeded"}), Connect: stripe.Bool(true)})
	require.NoError(t, err)
	rcConnect.secret.Store(&we.Secret)
	p := chargeParams(3000, "tok_visa", "c_1")
	p.SetStripeAccount("acct_connected_1")
	_, err = sc.V1Charges.Create(ctx, p)
	require.NoError(t, err)
	settle(t, srv)
	assert.Len(t, rcA.events(), 1, "the platform's plain endpoint does not receive the connected account's events")
	require.Len(t, rcConnect.events(), 1, "the connect endpoint receives the connected account's event")
	assert.Equal(t, "acct_connected_1", rcConnect.events()[0].event.Account)
	assert.Equal(t, "c_1", rcConnect.events()[0].event.Request.IdempotencyKey)
}
