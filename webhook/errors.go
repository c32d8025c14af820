package webhook

import (
	"errors"
	"fmt"
)

// The errors a [Verifier] returns, each wrapped with what exactly was wrong:
// test for them with [errors.Is]. No error ever holds a secret, nor the
// signature the verifier expected, so they are safe to log and to send back.
var (
	// ErrNoSignature: the request carries no signature header (or an empty
	// one).
	ErrNoSignature = errors.New("webhook: no signature header")
	// ErrMalformedHeader: a signature header cannot be parsed: a pair that is
	// not key=value, a timestamp that is not a whole number of seconds, a
	// missing timestamp, a header sent twice.
	ErrMalformedHeader = errors.New("webhook: malformed signature header")
	// ErrTooOld: the signed timestamp is further in the past than the
	// tolerance allows; a replay of an old delivery looks like this.
	ErrTooOld = errors.New("webhook: timestamp too old")
	// ErrTooNew: the signed timestamp is further in the future than the
	// tolerance allows.
	ErrTooNew = errors.New("webhook: timestamp too far in the future")
	// ErrNoMatchingSignature: no signature in the header matches the payload
	// under any of the secrets: a forgery, a payload changed on the way (a
	// body parsed and encoded again), or the wrong secret.
	ErrNoMatchingSignature = errors.New("webhook: no matching signature")
	// ErrMissingID: the delivery names no event: no webhook-id header
	// (Standard Webhooks), or no top-level "id" in the payload (Stripe).
	ErrMissingID = errors.New("webhook: missing event id")
	// ErrInvalidID: the event id cannot serve as an idempotency key: longer
	// than [idempotency.MaxKeyLength] bytes, not visible ASCII, or (Standard
	// Webhooks) holding a full stop, which would make the signed content
	// ambiguous.
	ErrInvalidID = errors.New("webhook: invalid event id")
	// ErrInvalidPayload: the payload of a Stripe delivery, although signed,
	// is not a JSON object whose "id" is a string.
	ErrInvalidPayload = errors.New("webhook: invalid payload")
)

func wrap(sentinel error, detail string) error {
	return fmt.Errorf("%w: %s", sentinel, detail)
}
