package idempotency

import (
	"errors"
	"fmt"
	"strings"
)

// MaxKeyLength is the longest key accepted, in bytes.
const MaxKeyLength = 255

// ErrInvalidKey is wrapped by the errors [ParseKey] returns.
var ErrInvalidKey = errors.New("invalid idempotency key")

// ParseKey returns the key carried by an Idempotency-Key header value.
//
// The IETF draft makes the value a Structured Field string, which is quoted
// ("8e03978e-40d5-43e8-bc93-6894a57f9324"), with \" and \\ as its only
// escapes. Many clients send the key bare, so a value without quotes is
// taken as it stands, and "abc" and abc name the same key; a bare value
// with a quote inside is refused as unbalanced. Either way the
// key must be 1 to [MaxKeyLength] bytes of visible ASCII (0x21 to 0x7E):
// spaces and control characters are refused rather than trimmed, because a
// key that two parties read differently would be no key at all.
func ParseKey(header string) (string, error) {
	key := header
	if strings.HasPrefix(header, `"`) {
		var err error
		if key, err = unquote(header); err != nil {
			return "", err
		}
	} else if strings.Contains(header, `"`) {
		return "", invalidKey("unbalanced quote: quote the whole key, or none of it")
	}
	if key == "" {
		return "", invalidKey("key is empty")
	}
	if len(key) > MaxKeyLength {
		return "", invalidKey("key is longer than 255 bytes")
	}
	for i := 0; i < len(key); i++ {
		if c := key[i]; c < 0x21 || c > 0x7e {
			return "", invalidKey("key must be visible ASCII, without spaces")
		}
	}
	return key, nil
}

// unquote decodes a Structured Field string (RFC 9651, section 3.3.3).
func unquote(s string) (string, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch c := s[i]; c {
		case '\\':
			i++
			if i >= len(s) || (s[i] != '"' && s[i] != '\\') {
				return "", invalidKey(`bad escape in quoted key: only \" and \\ are allowed`)
			}
			b.WriteByte(s[i])
		case '"':
			if i != len(s)-1 {
				return "", invalidKey("text after the closing quote")
			}
			return b.String(), nil
		default:
			b.WriteByte(c)
		}
	}
	return "", invalidKey("quoted key has no closing quote")
}

func invalidKey(reason string) error {
	return fmt.Errorf("%w: %s", ErrInvalidKey, reason)
}
