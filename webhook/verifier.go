package webhook

import (
	"crypto/hmac"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/payonce/payonce/idempotency"
)

// DefaultTolerance is how far a signed timestamp may be from the verifier's
// clock, either way: five minutes, as Stripe and Standard Webhooks both have
// it.
const DefaultTolerance = 5 * time.Minute

// The headers the two schemes sign with.
const (
	HeaderStripeSignature  = "Stripe-Signature"
	HeaderWebhookID        = "Webhook-Id"
	HeaderWebhookTimestamp = "Webhook-Timestamp"
	HeaderWebhookSignature = "Webhook-Signature"
)

// Scheme names a way of signing webhooks.
type Scheme string

// The schemes a [Verifier] knows.
const (
	// Stripe signs with Stripe-Signature: t=<unix>,v1=<hex>, an HMAC-SHA256
	// of "<t>.<payload>" keyed with the endpoint secret's bytes as they are
	// (whsec_ included). The event id is the payload's top-level "id".
	Stripe Scheme = "stripe"
	// StandardWebhooks signs as https://www.standardwebhooks.com/ says:
	// webhook-signature: v1,<base64>, an HMAC-SHA256 of
	// "<webhook-id>.<webhook-timestamp>.<payload>" keyed with the base64
	// part of a whsec_<base64> secret. The event id is the webhook-id.
	StandardWebhooks Scheme = "standard-webhooks"
)

// Delivery is what a verified delivery says about itself.
type Delivery struct {
	Scheme Scheme
	// ID is the event's id, the same on every delivery of one event:
	// Stripe's evt_…, or the webhook-id of Standard Webhooks.
	ID string
	// Timestamp is the signed time of this delivery attempt.
	Timestamp time.Time
}

// Verifier checks the signatures of one endpoint's deliveries. Use
// [NewVerifier] to make one; a Verifier is safe for concurrent use.
type Verifier struct {
	scheme    Scheme
	keys      [][]byte
	tolerance time.Duration
	now       func() time.Time
}

// A VerifierOption configures a [Verifier].
type VerifierOption func(*Verifier) error

// WithTolerance sets how far a signed timestamp may be from the clock, in
// the past or in the future (default [DefaultTolerance]). It bounds how long
// a captured delivery can be replayed; the receiver's idempotency store
// catches replays within it.
func WithTolerance(d time.Duration) VerifierOption {
	return func(v *Verifier) error {
		if d <= 0 {
			return errors.New("webhook: tolerance must be positive")
		}
		v.tolerance = d
		return nil
	}
}

// WithClock sets the clock that signed timestamps are held to (default
// [time.Now]). Tests use it to reach the tolerance's edges without waiting.
func WithClock(now func() time.Time) VerifierOption {
	return func(v *Verifier) error {
		if now == nil {
			return errors.New("webhook: nil clock")
		}
		v.now = now
		return nil
	}
}

// NewVerifier returns a Verifier for scheme that accepts a signature made
// with any of secrets. Give it more than one while a secret is rotated: the
// new one and the old one, until the sender has stopped signing with the
// old.
//
// A Stripe secret is used as it stands, whsec_ prefix and all, as Stripe
// does. A Standard Webhooks secret is whsec_ followed by the key in
// standard base64 (the prefix may be left out).
func NewVerifier(scheme Scheme, secrets []string, opts ...VerifierOption) (*Verifier, error) {
	v := &Verifier{scheme: scheme, tolerance: DefaultTolerance, now: time.Now}
	switch scheme {
	case Stripe, StandardWebhooks:
	default:
		return nil, fmt.Errorf("webhook: unknown scheme %q", string(scheme))
	}
	keys, err := decodeSecrets(scheme, secrets)
	if err != nil {
		return nil, err
	}
	v.keys = keys
	for _, opt := range opts {
		if err := opt(v); err != nil {
			return nil, err
		}
	}
	return v, nil
}

// decodeSecrets returns the HMAC keys of secrets. Its errors name a secret
// by its position, never by its value.
func decodeSecrets(scheme Scheme, secrets []string) ([][]byte, error) {
	if len(secrets) == 0 {
		return nil, errors.New("webhook: no secret")
	}
	keys := make([][]byte, len(secrets))
	for i, s := range secrets {
		if s == "" {
			return nil, fmt.Errorf("webhook: secret %d is empty", i+1)
		}
		if scheme == Stripe {
			keys[i] = []byte(s)
			continue
		}
		key, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whsec_"))
		if err != nil || len(key) == 0 {
			return nil, fmt.Errorf("webhook: secret %d is not whsec_ followed by standard base64", i+1)
		}
		keys[i] = key
	}
	return keys, nil
}

// Scheme returns the scheme v verifies.
func (v *Verifier) Scheme() Scheme { return v.scheme }

// Verify checks the signature that header carries for payload, the request
// body exactly as it was received, and returns what the delivery says about
// itself. It finds the headers under any spelling of their names, even in
// a map built by hand with lower-case keys, which [http.Header.Get] would
// miss; a header present under two spellings is sent twice, and malformed. It checks, in order: that the signature headers are there and
// well formed, that the signed timestamp is within the tolerance of the
// clock, that one signature matches under one of the secrets (compared in
// constant time), and that the delivery names an event id fit to be an
// idempotency key. Its errors wrap the package's sentinels, such as
// [ErrNoMatchingSignature].
func (v *Verifier) Verify(header http.Header, payload []byte) (Delivery, error) {
	if v.scheme == Stripe {
		return v.verifyStripe(header, payload)
	}
	return v.verifyStandard(header, payload)
}

// oneHeader returns the only value of header name, a canonical key;
// absent is "" and no error, and a header sent twice is malformed, since
// the two may disagree. It finds the header under any spelling of its
// name, so that a hand-built map with lower-case keys works too: two
// spellings of it count as two headers.
func oneHeader(header http.Header, name string) (string, error) {
	values := header[name]
	n := len(values)
	for k, vs := range header {
		if len(vs) > 0 && k != name && strings.EqualFold(k, name) {
			if n == 0 {
				values = vs
			}
			n += len(vs)
		}
	}
	switch n {
	case 0:
		return "", nil
	case 1:
		return values[0], nil
	}
	return "", wrap(ErrMalformedHeader, "more than one "+name+" header")
}

// signatureHeader is the name of the header that carries v's signatures.
func (v *Verifier) signatureHeader() string {
	if v.scheme == StandardWebhooks {
		return HeaderWebhookSignature
	}
	return HeaderStripeSignature
}

// hasSignature reports whether header carries the signature header of v's
// scheme at all, under any spelling of its name: the receiver's cheap
// refusal, before it reads the payload.
func (v *Verifier) hasSignature(header http.Header) bool {
	name := v.signatureHeader()
	if len(header[name]) > 0 {
		return true
	}
	for k, vs := range header {
		if len(vs) > 0 && strings.EqualFold(k, name) {
			return true
		}
	}
	return false
}

// parseTimestamp parses a signed timestamp: decimal digits only, so that
// "+1", " 1" and "-1" are refused rather than read as numbers.
func parseTimestamp(s string) (int64, bool) {
	if s == "" || len(s) > 18 {
		return 0, false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	return n, err == nil
}

// checkTime holds a signed timestamp to the tolerance, both ways. A
// timestamp exactly at the tolerance is accepted, as stripe-go and the
// Standard Webhooks libraries accept it.
func (v *Verifier) checkTime(unix int64) (time.Time, error) {
	t := time.Unix(unix, 0)
	now := v.now()
	if t.Before(now.Add(-v.tolerance)) {
		return t, wrap(ErrTooOld, "signed "+now.Sub(t).Truncate(time.Second).String()+" ago, more than the tolerance of "+v.tolerance.String())
	}
	if t.After(now.Add(v.tolerance)) {
		return t, wrap(ErrTooNew, "signed "+t.Sub(now).Truncate(time.Second).String()+" ahead of the clock, more than the tolerance of "+v.tolerance.String())
	}
	return t, nil
}

// match reports whether one of sigs equals one of expected, comparing in
// constant time.
func match(sigs, expected [][]byte) bool {
	for _, sig := range sigs {
		for _, e := range expected {
			if hmac.Equal(sig, e) {
				return true
			}
		}
	}
	return false
}

func noMatch(sigs, keys int) error {
	return wrap(ErrNoMatchingSignature, fmt.Sprintf("none of the %d v1 signatures matches the payload under any of the %d secrets", sigs, keys))
}

// checkID refuses an id that cannot be an idempotency key as it stands.
func checkID(id string) error {
	if id == "" {
		return wrap(ErrMissingID, "the event id is empty")
	}
	if len(id) > idempotency.MaxKeyLength {
		return wrap(ErrInvalidID, fmt.Sprintf("the event id is longer than %d bytes", idempotency.MaxKeyLength))
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c < 0x21 || c > 0x7e {
			return wrap(ErrInvalidID, "the event id must be visible ASCII, without spaces")
		}
	}
	return nil
}
