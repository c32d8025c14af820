package payonce

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// MaxKeyLength is the longest idempotency key the gateway accepts, in bytes.
const MaxKeyLength = 255

// NewKey returns a new random idempotency key: a UUID version 4, 122 random
// bits from crypto/rand, so two operations never share a key by accident.
//
// A key protects one logical operation, so it must be born with the
// operation, not with the HTTP request. The pattern that survives crashes
// and restarts:
//
//  1. when the customer places the order, call NewKey and store the key in
//     the same database row (or transaction) as the order;
//  2. pass the stored key in every call for that order: the first attempt,
//     the client's automatic retries, and any retry after a crash, a
//     deployment or an [ErrOutcomeUnknown];
//  3. the gateway executes the charge once and replays the result to every
//     later request with that key.
//
// Calling NewKey again for a retry defeats the purpose: the gateway sees a
// new operation and charges again. When a key is left empty in a params
// struct, the client generates one per method call, which protects the
// client's own retries but not a retry made by calling the method again.
func NewKey() string {
	return uuid.NewString()
}

// ValidateKey reports whether key follows the gateway's rules: 1 to 255
// bytes of visible ASCII (0x21 to 0x7E, so no spaces or control
// characters), without a double quote: the gateway reads a quoted header as
// a structured-field string, where "abc" and abc are the same key, so a key
// with quotes in it would be ambiguous.
// The error wraps [ErrInvalidKey].
func ValidateKey(key string) error {
	if key == "" {
		return fmt.Errorf("%w: the key is empty", ErrInvalidKey)
	}
	if len(key) > MaxKeyLength {
		return fmt.Errorf("%w: the key is %d bytes, the limit is %d", ErrInvalidKey, len(key), MaxKeyLength)
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x21 || c > 0x7e {
			return fmt.Errorf("%w: byte %d is %#02x; only visible ASCII (0x21-0x7E) is allowed", ErrInvalidKey, i, c)
		}
	}
	if i := strings.IndexByte(key, '"'); i >= 0 {
		return fmt.Errorf("%w: byte %d is a double quote, which the gateway reads as quoting", ErrInvalidKey, i)
	}
	return nil
}

// BusinessKey builds a deterministic idempotency key from a business event:
// a namespace naming the kind of event and the identifiers of the event
// itself, for example BusinessKey("invoice", "456") or
// BusinessKey("refund", orderID, lineID). The same event always gives the
// same key, so a crash, a double-clicked button or a redelivered message
// cannot charge twice, with no key to store.
//
// The key is the namespace and the ids joined by ':', with '%' and ':' in
// the ids percent-escaped ('"' too, which keys may not contain), so
// distinct inputs never give the same key:
// ("a", "b:c") gives "ns:a:b%3Ac" and ("a:b", "c") gives "ns:a%3Ab:c".
//
// The namespace must be 1 to 64 letters, digits, '_', '-' or '.'. Each id
// must be non-empty visible ASCII (no spaces). The key must fit in
// [MaxKeyLength] bytes; it is never truncated, as that could make two events
// collide. Errors wrap [ErrInvalidKey].
//
// Use a namespace per kind of operation: a charge and a refund for the same
// invoice are different operations and need different keys.
func BusinessKey(namespace string, ids ...string) (string, error) {
	if namespace == "" || len(namespace) > 64 {
		return "", fmt.Errorf("%w: namespace must be 1 to 64 bytes, got %d", ErrInvalidKey, len(namespace))
	}
	for i := 0; i < len(namespace); i++ {
		c := namespace[i]
		if !isIDByte(c) && c != '.' {
			return "", fmt.Errorf("%w: namespace byte %d is %q; use letters, digits, '_', '-' or '.'", ErrInvalidKey, i, c)
		}
	}
	if len(ids) == 0 {
		return "", fmt.Errorf("%w: business key %q needs at least one id", ErrInvalidKey, namespace)
	}
	var b strings.Builder
	b.WriteString(namespace)
	for n, id := range ids {
		if id == "" {
			return "", fmt.Errorf("%w: id %d is empty", ErrInvalidKey, n)
		}
		b.WriteByte(':')
		for i := 0; i < len(id); i++ {
			switch c := id[i]; {
			case c < 0x21 || c > 0x7e:
				return "", fmt.Errorf("%w: id %d byte %d is %#02x; only visible ASCII (0x21-0x7E) is allowed", ErrInvalidKey, n, i, c)
			case c == '%':
				b.WriteString("%25")
			case c == ':':
				b.WriteString("%3A")
			case c == '"':
				b.WriteString("%22")
			default:
				b.WriteByte(c)
			}
		}
	}
	if b.Len() > MaxKeyLength {
		return "", fmt.Errorf("%w: business key is %d bytes, the limit is %d; shorten the ids (or hash them yourself)",
			ErrInvalidKey, b.Len(), MaxKeyLength)
	}
	return b.String(), nil
}

// ContentKey derives an idempotency key from the content of a request and a
// time window: the SHA-256 of the content and of the window that now falls
// in (windows are aligned on multiples of window since the Unix epoch). It is
// for requests whose origin you do not control and which carry no id of
// their own, such as a form or a webhook relayed by a system that may resend
// it.
//
// The trade-off is real and must be acceptable for the use:
//   - two distinct operations with identical content in the same window
//     collapse into one: a customer who really buys the same thing twice
//     within the window is charged once;
//   - a resend that straddles a window boundary gets a different key and
//     executes again, however short the gap.
//
// Prefer [BusinessKey] whenever the content carries an identifier, and
// [NewKey] stored with the operation otherwise. The content should include
// everything that makes the operation what it is (the endpoint, the amount,
// the customer), and must be the same bytes on every resend. window must be
// positive; the error wraps [ErrInvalidKey].
func ContentKey(content []byte, window time.Duration, now time.Time) (string, error) {
	if window <= 0 {
		return "", fmt.Errorf("%w: content key window must be positive, got %v", ErrInvalidKey, window)
	}
	ns, w := now.UnixNano(), int64(window)
	bucket := ns / w
	if ns%w < 0 {
		bucket-- // floor division, for times before 1970
	}
	var hdr [16]byte
	binary.BigEndian.PutUint64(hdr[:8], uint64(w))
	binary.BigEndian.PutUint64(hdr[8:], uint64(bucket))
	h := sha256.New()
	h.Write([]byte("payonce content key v1\x00"))
	h.Write(hdr[:])
	h.Write(content)
	return "ck_" + hex.EncodeToString(h.Sum(nil)), nil
}

// isIDByte reports whether c may appear in a resource id or a namespace.
func isIDByte(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}
