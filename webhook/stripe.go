package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// SignStripe returns the Stripe-Signature header value for payload sent at
// t, t=<unix>,v1=<hex> with one v1 per secret, in order, as Stripe signs
// while a secret is rolled. It is what stripe-go's webhook.ConstructEvent
// accepts, and what a [Verifier] for [Stripe] checks.
func SignStripe(payload []byte, t time.Time, secrets ...string) (string, error) {
	keys, err := decodeSecrets(Stripe, secrets)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	b.WriteString("t=")
	b.WriteString(strconv.FormatInt(t.Unix(), 10))
	for _, key := range keys {
		b.WriteString(",v1=")
		b.WriteString(hex.EncodeToString(stripeMAC(key, t.Unix(), payload)))
	}
	return b.String(), nil
}

// stripeMAC is Stripe's v1 signature: HMAC-SHA256 of "<t>.<payload>".
func stripeMAC(key []byte, t int64, payload []byte) []byte {
	mac := hmac.New(sha256.New, key)
	var buf [20]byte
	mac.Write(strconv.AppendInt(buf[:0], t, 10))
	mac.Write([]byte{'.'})
	mac.Write(payload)
	return mac.Sum(nil)
}

// stripeHeader is a parsed Stripe-Signature header.
type stripeHeader struct {
	timestamp  int64
	signatures [][]byte // the v1 signatures that are valid hex
}

// parseStripeHeader parses a Stripe-Signature value by stripe-go's rules:
// comma-separated key=value pairs, where t is the timestamp, each v1 a
// signature in hex, and any other key (v0, a future scheme) is ignored, as
// is a v1 that is not hex. Where stripe-go would go on, it is stricter: a
// header without t, or with two, is malformed rather than too old or
// decided by its last t.
func parseStripeHeader(h string) (stripeHeader, error) {
	var sh stripeHeader
	seenT := false
	for pair := range strings.SplitSeq(h, ",") {
		k, v, ok := strings.Cut(pair, "=")
		if !ok || strings.Contains(v, "=") {
			return sh, wrap(ErrMalformedHeader, "Stripe-Signature holds an item that is not key=value")
		}
		switch k {
		case "t":
			if seenT {
				return sh, wrap(ErrMalformedHeader, "Stripe-Signature holds more than one t")
			}
			seenT = true
			n, ok := parseTimestamp(v)
			if !ok {
				return sh, wrap(ErrMalformedHeader, "the t of Stripe-Signature is not a Unix time in seconds")
			}
			sh.timestamp = n
		case "v1":
			sig, err := hex.DecodeString(v)
			if err != nil {
				continue
			}
			sh.signatures = append(sh.signatures, sig)
		}
	}
	if !seenT {
		return sh, wrap(ErrMalformedHeader, "Stripe-Signature holds no t")
	}
	return sh, nil
}

func (v *Verifier) verifyStripe(header http.Header, payload []byte) (Delivery, error) {
	d := Delivery{Scheme: Stripe}
	value, err := oneHeader(header, HeaderStripeSignature)
	if err != nil {
		return d, err
	}
	if value == "" {
		return d, wrap(ErrNoSignature, "no Stripe-Signature header")
	}
	sh, err := parseStripeHeader(value)
	if err != nil {
		return d, err
	}
	if d.Timestamp, err = v.checkTime(sh.timestamp); err != nil {
		return d, err
	}
	if len(sh.signatures) == 0 {
		return d, wrap(ErrNoMatchingSignature, "Stripe-Signature holds no v1 signature")
	}
	expected := make([][]byte, len(v.keys))
	for i, key := range v.keys {
		expected[i] = stripeMAC(key, sh.timestamp, payload)
	}
	if !match(sh.signatures, expected) {
		return d, noMatch(len(sh.signatures), len(v.keys))
	}
	if d.ID, err = stripeEventID(payload); err != nil {
		return d, err
	}
	return d, nil
}

// stripeEventID returns the top-level "id" of a Stripe event, matched
// exactly: encoding/json would also take "ID" or "Id".
func stripeEventID(payload []byte) (string, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(payload, &fields); err != nil || fields == nil {
		return "", wrap(ErrInvalidPayload, "the payload is not a JSON object")
	}
	raw, ok := fields["id"]
	if !ok {
		return "", wrap(ErrMissingID, `the payload has no top-level "id"`)
	}
	var id string
	if string(raw) == "null" || json.Unmarshal(raw, &id) != nil {
		return "", wrap(ErrInvalidPayload, `the payload's "id" is not a string`)
	}
	return id, checkID(id)
}
