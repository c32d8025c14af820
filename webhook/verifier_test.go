package webhook_test

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/webhook"
)

const (
	stripeSecret    = "whsec_test_stripe_secret_0123456789"
	stripeOldSecret = "whsec_test_stripe_secret_retired"
	// The secret, message and signature of the Standard Webhooks
	// libraries' own test vector.
	standardSecret  = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
	standardOld     = "whsec_" + "c2Vjb25kIHNlY3JldCwgdG8gYmUgcmV0aXJlZCEh" // "second secret, to be retired!!"
	stripePayload   = `{"id":"evt_1","object":"event","type":"charge.succeeded"}`
	standardPayload = `{"type":"charge.succeeded","data":{"id":"ch_1"}}`
)

// epoch is the verifiers' clock in these tests, a whole second.
var epoch = time.Unix(1_800_000_000, 0)

func clockAt(t time.Time) webhook.VerifierOption {
	return webhook.WithClock(func() time.Time { return t })
}

func stripeVerifier(t *testing.T, secrets []string, opts ...webhook.VerifierOption) *webhook.Verifier {
	t.Helper()
	v, err := webhook.NewVerifier(webhook.Stripe, secrets, append([]webhook.VerifierOption{clockAt(epoch)}, opts...)...)
	require.NoError(t, err)
	return v
}

func standardVerifier(t *testing.T, secrets []string, opts ...webhook.VerifierOption) *webhook.Verifier {
	t.Helper()
	v, err := webhook.NewVerifier(webhook.StandardWebhooks, secrets, append([]webhook.VerifierOption{clockAt(epoch)}, opts...)...)
	require.NoError(t, err)
	return v
}

func signStripe(t *testing.T, payload string, at time.Time, secrets ...string) string {
	t.Helper()
	h, err := webhook.SignStripe([]byte(payload), at, secrets...)
	require.NoError(t, err)
	return h
}

func signStandard(t *testing.T, id string, at time.Time, payload string, secrets ...string) string {
	t.Helper()
	h, err := webhook.SignStandard(id, at, []byte(payload), secrets...)
	require.NoError(t, err)
	return h
}

func stripeHeader(sig string) http.Header {
	h := http.Header{}
	h.Set(webhook.HeaderStripeSignature, sig)
	return h
}

func standardHeader(id string, at time.Time, sig string) http.Header {
	h := http.Header{}
	h.Set(webhook.HeaderWebhookID, id)
	h.Set(webhook.HeaderWebhookTimestamp, strconv.FormatInt(at.Unix(), 10))
	h.Set(webhook.HeaderWebhookSignature, sig)
	return h
}

func TestSignStripeFormat(t *testing.T) {
	h := signStripe(t, stripePayload, epoch, stripeSecret, stripeOldSecret)
	parts := strings.Split(h, ",")
	require.Len(t, parts, 3)
	assert.Equal(t, "t=1800000000", parts[0])
	for _, p := range parts[1:] {
		sig, ok := strings.CutPrefix(p, "v1=")
		require.True(t, ok, p)
		b, err := hex.DecodeString(sig)
		require.NoError(t, err)
		assert.Len(t, b, 32)
	}
	assert.NotEqual(t, parts[1], parts[2], "one signature per secret")

	_, err := webhook.SignStripe([]byte(stripePayload), epoch)
	assert.Error(t, err, "no secret")
	_, err = webhook.SignStripe([]byte(stripePayload), epoch, "")
	assert.Error(t, err, "empty secret")
}

// The Standard Webhooks libraries' own test vector.
func TestSignStandardVector(t *testing.T) {
	sig, err := webhook.SignStandard("msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0),
		[]byte(`{"test": 2432232314}`), standardSecret)
	require.NoError(t, err)
	assert.Equal(t, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=", sig)

	// The whsec_ prefix may be left out.
	bare, err := webhook.SignStandard("msg_p5jXN8AQM9LWM0D4loKWxJek", time.Unix(1614265330, 0),
		[]byte(`{"test": 2432232314}`), strings.TrimPrefix(standardSecret, "whsec_"))
	require.NoError(t, err)
	assert.Equal(t, sig, bare)

	two := signStandard(t, "msg_1", epoch, standardPayload, standardSecret, standardOld)
	assert.Len(t, strings.Split(two, " "), 2)

	_, err = webhook.SignStandard("msg.1", epoch, nil, standardSecret)
	assert.ErrorIs(t, err, webhook.ErrInvalidID, "a full stop makes the signed content ambiguous")
	_, err = webhook.SignStandard("msg_1", epoch, nil, "whsec_not base64!")
	assert.Error(t, err)
}

func TestVerifyStripe(t *testing.T) {
	good := signStripe(t, stripePayload, epoch, stripeSecret)
	goodSig := strings.TrimPrefix(good, "t=1800000000,")
	wrong := signStripe(t, stripePayload, epoch, "whsec_wrong")
	wrongSig := strings.TrimPrefix(wrong, "t=1800000000,")
	at := func(d time.Duration) string { return signStripe(t, stripePayload, epoch.Add(d), stripeSecret) }

	tests := []struct {
		name    string
		secrets []string
		opts    []webhook.VerifierOption
		header  http.Header
		payload string
		want    error
	}{
		{name: "valid", header: stripeHeader(good)},
		{name: "valid among others", header: stripeHeader("t=1800000000," + wrongSig + ",v1=zz," + goodSig + ",v0=abc,x=y")},
		{name: "v0 and unknown keys ignored", header: stripeHeader("v0=00,t=1800000000,scheme=new," + goodSig)},
		{name: "rotation: old secret still accepted", secrets: []string{stripeSecret, "whsec_wrong"}, header: stripeHeader(wrong)},
		{name: "rotation: both signatures sent", secrets: []string{stripeSecret}, header: stripeHeader(signStripe(t, stripePayload, epoch, "whsec_wrong", stripeSecret))},
		{name: "retired secret refused", header: stripeHeader(wrong), want: webhook.ErrNoMatchingSignature},
		{name: "no header", header: http.Header{}, want: webhook.ErrNoSignature},
		{name: "empty header", header: stripeHeader(""), want: webhook.ErrNoSignature},
		{name: "two headers", header: http.Header{webhook.HeaderStripeSignature: {good, good}}, want: webhook.ErrMalformedHeader},
		{name: "not key=value", header: stripeHeader("garbage"), want: webhook.ErrMalformedHeader},
		{name: "trailing comma", header: stripeHeader(good + ","), want: webhook.ErrMalformedHeader},
		{name: "value with =", header: stripeHeader("t=1800000000,v1=a=b"), want: webhook.ErrMalformedHeader},
		{name: "t not a number", header: stripeHeader("t=abc," + goodSig), want: webhook.ErrMalformedHeader},
		{name: "t with a sign", header: stripeHeader("t=+1800000000," + goodSig), want: webhook.ErrMalformedHeader},
		{name: "t negative", header: stripeHeader("t=-1," + goodSig), want: webhook.ErrMalformedHeader},
		{name: "t with spaces", header: stripeHeader("t= 1800000000," + goodSig), want: webhook.ErrMalformedHeader},
		{name: "no t", header: stripeHeader(goodSig), want: webhook.ErrMalformedHeader},
		{name: "two t", header: stripeHeader("t=1800000000,t=1800000000," + goodSig), want: webhook.ErrMalformedHeader},
		{name: "no v1", header: stripeHeader("t=1800000000,v0=" + strings.TrimPrefix(goodSig, "v1=")), want: webhook.ErrNoMatchingSignature},
		{name: "v1 not hex", header: stripeHeader("t=1800000000,v1=zz"), want: webhook.ErrNoMatchingSignature},
		{name: "v1 truncated", header: stripeHeader(good[:len(good)-2]), want: webhook.ErrNoMatchingSignature},
		{name: "another t than signed", header: stripeHeader("t=1800000001," + goodSig), want: webhook.ErrNoMatchingSignature},
		{name: "tampered payload", header: stripeHeader(good), payload: `{"id":"evt_1","object":"event","type":"charge.refunded"}`, want: webhook.ErrNoMatchingSignature},
		{name: "payload re-encoded", header: stripeHeader(good), payload: `{"id": "evt_1", "object": "event", "type": "charge.succeeded"}`, want: webhook.ErrNoMatchingSignature},
		{name: "wrong secret", secrets: []string{"whsec_other"}, header: stripeHeader(good), want: webhook.ErrNoMatchingSignature},
		{name: "old at the tolerance", header: stripeHeader(at(-webhook.DefaultTolerance))},
		{name: "too old by a second", header: stripeHeader(at(-webhook.DefaultTolerance - time.Second)), want: webhook.ErrTooOld},
		{name: "ahead at the tolerance", header: stripeHeader(at(webhook.DefaultTolerance))},
		{name: "too new by a second", header: stripeHeader(at(webhook.DefaultTolerance + time.Second)), want: webhook.ErrTooNew},
		{name: "narrower tolerance", opts: []webhook.VerifierOption{webhook.WithTolerance(10 * time.Second)}, header: stripeHeader(at(-11 * time.Second)), want: webhook.ErrTooOld},
		{name: "wider tolerance", opts: []webhook.VerifierOption{webhook.WithTolerance(time.Hour)}, header: stripeHeader(at(-59 * time.Minute))},
		{name: "t far in the past", header: stripeHeader("t=0," + goodSig), want: webhook.ErrTooOld},
		{name: "t far in the future", header: stripeHeader("t=999999999999999999," + goodSig), want: webhook.ErrTooNew},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secrets := tt.secrets
			if secrets == nil {
				secrets = []string{stripeSecret}
			}
			payload := tt.payload
			if payload == "" {
				payload = stripePayload
			}
			d, err := stripeVerifier(t, secrets, tt.opts...).Verify(tt.header, []byte(payload))
			if tt.want != nil {
				require.ErrorIs(t, err, tt.want)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, webhook.Stripe, d.Scheme)
			assert.Equal(t, "evt_1", d.ID)
		})
	}
}

func TestVerifyStripeEventID(t *testing.T) {
	long := strings.Repeat("e", 256)
	tests := []struct {
		payload string
		want    error
		id      string
	}{
		{payload: `{"id":"evt_2","object":"event"}`, id: "evt_2"},
		{payload: ` {"data":{"id":"ch_1"},"id":"evt_3"} `, id: "evt_3"},
		{payload: `{"id":"evt_\"q"}`, id: `evt_"q`},
		{payload: `{"object":"event"}`, want: webhook.ErrMissingID},
		{payload: `{"ID":"evt_1"}`, want: webhook.ErrMissingID},
		{payload: `{"data":{"id":"ch_1"}}`, want: webhook.ErrMissingID},
		{payload: `{"id":""}`, want: webhook.ErrMissingID},
		{payload: `{"id":null}`, want: webhook.ErrInvalidPayload},
		{payload: `{"id":42}`, want: webhook.ErrInvalidPayload},
		{payload: `["evt_1"]`, want: webhook.ErrInvalidPayload},
		{payload: `null`, want: webhook.ErrInvalidPayload},
		{payload: `not json`, want: webhook.ErrInvalidPayload},
		{payload: ``, want: webhook.ErrInvalidPayload},
		{payload: `{"id":"evt 1"}`, want: webhook.ErrInvalidID},
		{payload: `{"id":"évt_1"}`, want: webhook.ErrInvalidID},
		{payload: `{"id":"` + long + `"}`, want: webhook.ErrInvalidID},
	}
	v := stripeVerifier(t, []string{stripeSecret})
	for _, tt := range tests {
		t.Run(tt.payload, func(t *testing.T) {
			d, err := v.Verify(stripeHeader(signStripe(t, tt.payload, epoch, stripeSecret)), []byte(tt.payload))
			if tt.want != nil {
				require.ErrorIs(t, err, tt.want)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.id, d.ID)
			assert.Equal(t, epoch, d.Timestamp)
		})
	}
}

func TestVerifyStandard(t *testing.T) {
	const id = "msg_1"
	good := signStandard(t, id, epoch, standardPayload, standardSecret)
	other := signStandard(t, id, epoch, standardPayload, standardOld)
	at := func(d time.Duration) http.Header {
		return standardHeader(id, epoch.Add(d), signStandard(t, id, epoch.Add(d), standardPayload, standardSecret))
	}
	with := func(h http.Header, name string, values ...string) http.Header {
		h = h.Clone()
		h.Del(name)
		for _, v := range values {
			h.Add(name, v)
		}
		return h
	}
	base := standardHeader(id, epoch, good)

	tests := []struct {
		name    string
		secrets []string
		opts    []webhook.VerifierOption
		header  http.Header
		payload string
		want    error
	}{
		{name: "valid", header: base},
		{name: "valid among others", header: with(base, webhook.HeaderWebhookSignature,
			"v1a,aGVsbG8= v2,"+strings.TrimPrefix(good, "v1,")+" v1,bm9wZQ== v1,!!! nocomma "+other+"  "+good)},
		{name: "secret without prefix", secrets: []string{strings.TrimPrefix(standardSecret, "whsec_")}, header: base},
		{name: "rotation: old secret still accepted", secrets: []string{standardSecret, standardOld}, header: standardHeader(id, epoch, other)},
		{name: "rotation: both signatures sent", header: standardHeader(id, epoch, signStandard(t, id, epoch, standardPayload, standardOld, standardSecret))},
		{name: "retired secret refused", header: standardHeader(id, epoch, other), want: webhook.ErrNoMatchingSignature},
		{name: "no signature header", header: with(base, webhook.HeaderWebhookSignature), want: webhook.ErrNoSignature},
		{name: "empty signature header", header: with(base, webhook.HeaderWebhookSignature, ""), want: webhook.ErrNoSignature},
		{name: "no id", header: with(base, webhook.HeaderWebhookID), want: webhook.ErrMissingID},
		{name: "id with a full stop", header: with(base, webhook.HeaderWebhookID, "msg.1"), want: webhook.ErrInvalidID},
		{name: "id with a space", header: with(base, webhook.HeaderWebhookID, "msg 1"), want: webhook.ErrInvalidID},
		{name: "id too long", header: with(base, webhook.HeaderWebhookID, strings.Repeat("m", 256)), want: webhook.ErrInvalidID},
		{name: "no timestamp", header: with(base, webhook.HeaderWebhookTimestamp), want: webhook.ErrMalformedHeader},
		{name: "timestamp not a number", header: with(base, webhook.HeaderWebhookTimestamp, "soon"), want: webhook.ErrMalformedHeader},
		{name: "timestamp in milliseconds' clothes", header: with(base, webhook.HeaderWebhookTimestamp, "1800000000.0"), want: webhook.ErrMalformedHeader},
		{name: "negative timestamp", header: with(base, webhook.HeaderWebhookTimestamp, "-1"), want: webhook.ErrMalformedHeader},
		{name: "two ids", header: with(base, webhook.HeaderWebhookID, id, "msg_2"), want: webhook.ErrMalformedHeader},
		{name: "two timestamps", header: with(base, webhook.HeaderWebhookTimestamp, "1800000000", "1800000000"), want: webhook.ErrMalformedHeader},
		{name: "two signature headers", header: with(base, webhook.HeaderWebhookSignature, good, good), want: webhook.ErrMalformedHeader},
		{name: "only v1a", header: with(base, webhook.HeaderWebhookSignature, "v1a,"+strings.TrimPrefix(good, "v1,")), want: webhook.ErrNoMatchingSignature},
		{name: "v1 not base64", header: with(base, webhook.HeaderWebhookSignature, "v1,***"), want: webhook.ErrNoMatchingSignature},
		{name: "another id than signed", header: with(base, webhook.HeaderWebhookID, "msg_2"), want: webhook.ErrNoMatchingSignature},
		{name: "another timestamp than signed", header: with(base, webhook.HeaderWebhookTimestamp, "1800000001"), want: webhook.ErrNoMatchingSignature},
		{name: "tampered payload", header: base, payload: `{"type":"charge.refunded","data":{"id":"ch_1"}}`, want: webhook.ErrNoMatchingSignature},
		{name: "wrong secret", secrets: []string{standardOld}, header: base, want: webhook.ErrNoMatchingSignature},
		{name: "old at the tolerance", header: at(-webhook.DefaultTolerance)},
		{name: "too old by a second", header: at(-webhook.DefaultTolerance - time.Second), want: webhook.ErrTooOld},
		{name: "ahead at the tolerance", header: at(webhook.DefaultTolerance)},
		{name: "too new by a second", header: at(webhook.DefaultTolerance + time.Second), want: webhook.ErrTooNew},
		{name: "narrower tolerance", opts: []webhook.VerifierOption{webhook.WithTolerance(time.Second)}, header: at(2 * time.Second), want: webhook.ErrTooNew},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secrets := tt.secrets
			if secrets == nil {
				secrets = []string{standardSecret}
			}
			payload := tt.payload
			if payload == "" {
				payload = standardPayload
			}
			d, err := standardVerifier(t, secrets, tt.opts...).Verify(tt.header, []byte(payload))
			if tt.want != nil {
				require.ErrorIs(t, err, tt.want)
				return
			}
			require.NoError(t, err)
			assert.Equal(t, webhook.Delivery{Scheme: webhook.StandardWebhooks, ID: id, Timestamp: d.Timestamp}, d)
		})
	}
}

// The clock a verifier is given is the one it reads, at every call.
func TestVerifierClockMoves(t *testing.T) {
	now := epoch
	v, err := webhook.NewVerifier(webhook.Stripe, []string{stripeSecret}, webhook.WithClock(func() time.Time { return now }))
	require.NoError(t, err)
	h := stripeHeader(signStripe(t, stripePayload, epoch, stripeSecret))
	_, err = v.Verify(h, []byte(stripePayload))
	require.NoError(t, err)
	now = epoch.Add(webhook.DefaultTolerance + time.Second)
	_, err = v.Verify(h, []byte(stripePayload))
	require.ErrorIs(t, err, webhook.ErrTooOld)
}

func TestNewVerifierRefuses(t *testing.T) {
	secret := "whsec_this is not base64 and is secret"
	tests := []struct {
		name    string
		scheme  webhook.Scheme
		secrets []string
		opts    []webhook.VerifierOption
	}{
		{"unknown scheme", "github", []string{stripeSecret}, nil},
		{"no secret", webhook.Stripe, nil, nil},
		{"empty secret", webhook.Stripe, []string{stripeSecret, ""}, nil},
		{"standard secret not base64", webhook.StandardWebhooks, []string{standardSecret, secret}, nil},
		{"standard secret empty key", webhook.StandardWebhooks, []string{"whsec_"}, nil},
		{"zero tolerance", webhook.Stripe, []string{stripeSecret}, []webhook.VerifierOption{webhook.WithTolerance(0)}},
		{"nil clock", webhook.Stripe, []string{stripeSecret}, []webhook.VerifierOption{webhook.WithClock(nil)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := webhook.NewVerifier(tt.scheme, tt.secrets, tt.opts...)
			require.Error(t, err)
			assert.NotContains(t, err.Error(), "this is not base64 and is secret")
			assert.NotContains(t, err.Error(), stripeSecret)
		})
	}
}

// No error says what the secret is, or what signature was expected: a
// verifier that did would sign a forger's payloads for him.
func TestErrorsHoldNoSecret(t *testing.T) {
	payload := []byte(stripePayload)
	expected := signStripe(t, stripePayload, epoch, stripeSecret)
	expectedHex := strings.TrimPrefix(expected, "t=1800000000,v1=")
	sv := stripeVerifier(t, []string{stripeSecret})
	stdExpected := strings.TrimPrefix(signStandard(t, "msg_1", epoch, standardPayload, standardSecret), "v1,")
	stdExpected2 := strings.TrimPrefix(signStandard(t, "msg_2", epoch, standardPayload, standardSecret), "v1,")
	key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(standardSecret, "whsec_"))
	require.NoError(t, err)
	stdv := standardVerifier(t, []string{standardSecret})

	var errs []error
	for _, h := range []string{"", "garbage", "t=1800000000,v1=00", "t=1,v1=00", "t=1800000000,v1=" + expectedHex[:10]} {
		_, err := sv.Verify(stripeHeader(h), payload)
		errs = append(errs, err)
	}
	for _, h := range []http.Header{
		standardHeader("msg_1", epoch, "v1,AAAA"),
		standardHeader("msg_2", epoch, "v1,"+stdExpected),
		standardHeader("msg.1", epoch, "v1,AAAA"),
		standardHeader("msg_1", epoch.Add(time.Hour), "v1,AAAA"),
	} {
		_, err := stdv.Verify(h, []byte(standardPayload))
		errs = append(errs, err)
	}
	for _, err := range errs {
		require.Error(t, err)
		msg := err.Error()
		for _, secret := range []string{stripeSecret, "test_stripe_secret", expectedHex, standardSecret, strings.TrimPrefix(standardSecret, "whsec_"), stdExpected, stdExpected2, string(key), fmt.Sprintf("%x", key)} {
			assert.NotContains(t, msg, secret)
		}
	}
}

// A header map built by hand, with lower-case keys, is read as a received
// one is; a header under two spellings is sent twice.
func TestVerifyFindsHeadersCaseInsensitively(t *testing.T) {
	sv := stripeVerifier(t, []string{stripeSecret})
	sig := signStripe(t, stripePayload, epoch, stripeSecret)
	d, err := sv.Verify(http.Header{"stripe-signature": {sig}}, []byte(stripePayload))
	require.NoError(t, err)
	assert.Equal(t, "evt_1", d.ID)
	_, err = sv.Verify(http.Header{"stripe-signature": {sig}, "Stripe-Signature": {sig}}, []byte(stripePayload))
	assert.ErrorIs(t, err, webhook.ErrMalformedHeader)

	stv := standardVerifier(t, []string{standardSecret})
	ssig := signStandard(t, "msg_1", epoch, standardPayload, standardSecret)
	d, err = stv.Verify(http.Header{
		"webhook-id":        {"msg_1"},
		"webhook-timestamp": {strconv.FormatInt(epoch.Unix(), 10)},
		"WEBHOOK-SIGNATURE": {ssig},
	}, []byte(standardPayload))
	require.NoError(t, err)
	assert.Equal(t, "msg_1", d.ID)
	h := standardHeader("msg_1", epoch, ssig)
	h["webhook-id"] = []string{"msg_2"}
	_, err = stv.Verify(h, []byte(standardPayload))
	assert.ErrorIs(t, err, webhook.ErrMalformedHeader)
}
