package webhook_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v85"
	stripewebhook "github.com/stripe/stripe-go/v85/webhook"

	"github.com/payonce/payonce/webhook"
)

// An event that stripe-go's ConstructEvent takes: object "event", and the
// API version it was built for.
var stripeEvent = []byte(fmt.Sprintf(`{"id":"evt_1NG8Du2eZvKYlo2CUI79vXWy","object":"event","api_version":%q,`+
	`"type":"charge.succeeded","created":1800000000,"data":{"object":{"id":"ch_1","object":"charge"}}}`, stripe.APIVersion))

// What SignStripe signs, stripe-go accepts, with every secret it signed
// with.
func TestStripeGoAcceptsSignStripe(t *testing.T) {
	now := time.Now()
	header, err := webhook.SignStripe(stripeEvent, now, stripeSecret, stripeOldSecret)
	require.NoError(t, err)

	for _, secret := range []string{stripeSecret, stripeOldSecret} {
		ev, err := stripewebhook.ConstructEvent(stripeEvent, header, secret)
		require.NoError(t, err, secret)
		assert.Equal(t, "evt_1NG8Du2eZvKYlo2CUI79vXWy", ev.ID)
		require.NoError(t, stripewebhook.ValidatePayload(stripeEvent, header, secret))
	}
	err = stripewebhook.ValidatePayload(stripeEvent, header, "whsec_other")
	assert.ErrorIs(t, err, stripewebhook.ErrNoValidSignature)

	// And both agree that an old signature is too old.
	old, err := webhook.SignStripe(stripeEvent, now.Add(-stripewebhook.DefaultTolerance-time.Minute), stripeSecret)
	require.NoError(t, err)
	assert.ErrorIs(t, stripewebhook.ValidatePayload(stripeEvent, old, stripeSecret), stripewebhook.ErrTooOld)
}

// What stripe-go's test signer signs, the verifier accepts; and their
// signatures are the same bytes.
func TestVerifierAcceptsStripeGo(t *testing.T) {
	at := time.Unix(1_800_000_000, 0)
	signed := stripewebhook.GenerateTestSignedPayload(&stripewebhook.UnsignedPayload{
		Payload: stripeEvent, Secret: stripeSecret, Timestamp: at,
	})
	v := stripeVerifier(t, []string{stripeOldSecret, stripeSecret})
	d, err := v.Verify(stripeHeader(signed.Header), stripeEvent)
	require.NoError(t, err)
	assert.Equal(t, webhook.Delivery{Scheme: webhook.Stripe, ID: "evt_1NG8Du2eZvKYlo2CUI79vXWy", Timestamp: at}, d)

	ours, err := webhook.SignStripe(stripeEvent, at, stripeSecret)
	require.NoError(t, err)
	assert.Equal(t, signed.Header, ours)

	// A v0 signature, which stripe-go's signer makes when asked, is not a
	// v1 one.
	v0 := stripewebhook.GenerateTestSignedPayload(&stripewebhook.UnsignedPayload{
		Payload: stripeEvent, Secret: stripeSecret, Timestamp: at, Scheme: "v0",
	})
	_, err = v.Verify(stripeHeader(v0.Header), stripeEvent)
	assert.ErrorIs(t, err, webhook.ErrNoMatchingSignature)
}
