package webhook

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

const fuzzSecret = "whsec_fuzz_secret"

var fuzzKey = []byte("fuzz standard-webhooks key, 32 b")

var sentinels = []error{ErrNoSignature, ErrMalformedHeader, ErrTooOld, ErrTooNew,
	ErrNoMatchingSignature, ErrMissingID, ErrInvalidID, ErrInvalidPayload}

func isSentinel(err error) bool {
	for _, s := range sentinels {
		if errors.Is(err, s) {
			return true
		}
	}
	return false
}

// FuzzStripeHeader holds the Stripe-Signature parser to its rules: it never
// panics, it fails only with ErrMalformedHeader, a header it takes verifies
// only if it carries the true signature, and it verifies once that is
// added.
func FuzzStripeHeader(f *testing.F) {
	payload := []byte(`{"id":"evt_fuzz","object":"event"}`)
	for _, seed := range []string{
		"t=1800000000,v1=00",
		"t=1800000000,v1=5257a869e7ecebeda32affa62cdca3fa51cad7e77a0e56ff536d0ce8e108d8bd,v0=6ffbb59b2300aae63f272406069a9788598b792a944a07aba816edb039989a39",
		"v1=ab,t=1,x=y",
		"t=,v1=",
		"t=1800000000,,v1=00",
		"garbage",
		"",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, h string) {
		sh, err := parseStripeHeader(h)
		if err != nil {
			if !errors.Is(err, ErrMalformedHeader) {
				t.Fatalf("parseStripeHeader(%q) = %v, not ErrMalformedHeader", h, err)
			}
			return
		}
		for _, sig := range sh.signatures {
			if !strings.Contains(strings.ToLower(h), "v1="+hex.EncodeToString(sig)) {
				t.Fatalf("signature %x is not in %q", sig, h)
			}
		}
		at := time.Unix(sh.timestamp, 0)
		v := &Verifier{scheme: Stripe, keys: [][]byte{[]byte(fuzzSecret)}, tolerance: DefaultTolerance, now: func() time.Time { return at }}
		real := hex.EncodeToString(stripeMAC([]byte(fuzzSecret), sh.timestamp, payload))
		_, err = v.Verify(http.Header{"Stripe-Signature": {h}}, payload)
		if err == nil && !strings.Contains(strings.ToLower(h), real) {
			t.Fatalf("%q verified without the signature", h)
		}
		if err != nil && !isSentinel(err) {
			t.Fatalf("Verify: %v is no sentinel", err)
		}
		if _, err := v.Verify(http.Header{"Stripe-Signature": {h + ",v1=" + real}}, payload); err != nil {
			t.Fatalf("%q with the true signature added: %v", h, err)
		}
	})
}

// FuzzStandardHeaders does the same for the three headers of Standard
// Webhooks.
func FuzzStandardHeaders(f *testing.F) {
	payload := []byte(`{"type":"fuzz"}`)
	f.Add("msg_1", "1800000000", "v1,AAAA")
	f.Add("msg_1", "1800000000", "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE= v1a,aGVsbG8=")
	f.Add("msg.1", "1800000000", "v1,AAAA")
	f.Add("", "", "")
	f.Add("msg_1", "-1", "v1, v1,,  v2,x")
	f.Add("msg_1", "+1800000000", "v1,AAAA==")
	f.Fuzz(func(t *testing.T, id, ts, sig string) {
		for _, s := range parseStandardSignatures(sig) {
			if !strings.Contains(sig, "v1,"+base64.StdEncoding.EncodeToString(s)) {
				t.Fatalf("signature %x is not in %q", s, sig)
			}
		}
		unix, tsOK := parseTimestamp(ts)
		if tsOK && strconv.FormatInt(unix, 10) != strings.TrimLeft(ts, "0") && unix != 0 {
			t.Fatalf("parseTimestamp(%q) = %d", ts, unix)
		}
		at := time.Unix(unix, 0)
		v := &Verifier{scheme: StandardWebhooks, keys: [][]byte{fuzzKey}, tolerance: DefaultTolerance, now: func() time.Time { return at }}
		h := http.Header{"Webhook-Id": {id}, "Webhook-Timestamp": {ts}, "Webhook-Signature": {sig}}
		d, err := v.Verify(h, payload)
		if err != nil {
			if !isSentinel(err) {
				t.Fatalf("Verify: %v is no sentinel", err)
			}
			if !tsOK || checkStandardID(id) != nil || strings.TrimSpace(sig) == "" {
				return
			}
		}
		real := "v1," + base64.StdEncoding.EncodeToString(standardMAC(fuzzKey, id, unix, payload))
		if err == nil {
			if !strings.Contains(sig, real) {
				t.Fatalf("%q verified without the signature", sig)
			}
			if d.ID != id {
				t.Fatalf("Delivery.ID = %q, want %q", d.ID, id)
			}
			return
		}
		h.Set("Webhook-Signature", sig+" "+real)
		if _, err := v.Verify(h, payload); err != nil {
			t.Fatalf("id %q, timestamp %q, %q with the true signature added: %v", id, ts, sig, err)
		}
	})
}
