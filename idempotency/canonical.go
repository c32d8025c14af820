package idempotency

import (
	"encoding/json"
	"slices"
	"strconv"
	"unicode/utf16"
	"unicode/utf8"
)

// canonicalJSON returns body in canonical form if it is one JSON value, and
// body unchanged otherwise. The two cannot be confused: canonical JSON is
// itself valid JSON, and a body that is not JSON is never rewritten.
//
// The canonical form is what encoding/json produces when it decodes the body
// into an interface value (with UseNumber) and encodes it again without HTML
// escaping: object keys sorted and, when repeated, the last one kept; no
// insignificant white space; strings escaped one way; numbers as written.
// It is computed here without building that interface value, which made
// fingerprinting the largest cost of a request; FuzzCanonicalJSON holds the
// two to the same bytes.
func canonicalJSON(body []byte) []byte {
	if !json.Valid(body) {
		return body
	}
	c := canonicalizer{in: body}
	out := c.value(make([]byte, 0, len(body)+1))
	return append(out, '\n')
}

type canonicalizer struct {
	in  []byte
	pos int
}

func (c *canonicalizer) skipSpace() {
	for c.pos < len(c.in) {
		switch c.in[c.pos] {
		case ' ', '\t', '\n', '\r':
			c.pos++
		default:
			return
		}
	}
}

// value appends the canonical form of the value at c.pos to out. The input
// is known to be valid JSON.
func (c *canonicalizer) value(out []byte) []byte {
	c.skipSpace()
	switch c.in[c.pos] {
	case '{':
		return c.object(out)
	case '[':
		c.pos++
		out = append(out, '[')
		c.skipSpace()
		if c.in[c.pos] == ']' {
			c.pos++
			return append(out, ']')
		}
		for {
			out = c.value(out)
			c.skipSpace()
			if c.in[c.pos] == ']' {
				c.pos++
				return append(out, ']')
			}
			c.pos++ // ','
			out = append(out, ',')
		}
	case '"':
		return appendString(out, c.str())
	default: // number, true, false, null: copied as written
		start := c.pos
		for c.pos < len(c.in) && !isDelim(c.in[c.pos]) {
			c.pos++
		}
		return append(out, c.in[start:c.pos]...)
	}
}

type member struct {
	key   string
	value []byte
}

func (c *canonicalizer) object(out []byte) []byte {
	c.pos++ // '{'
	var members []member
	c.skipSpace()
	if c.in[c.pos] == '}' {
		c.pos++
		return append(out, '{', '}')
	}
	for {
		c.skipSpace()
		key := c.str()
		c.skipSpace()
		c.pos++ // ':'
		members = append(members, member{key, c.value(nil)})
		c.skipSpace()
		if c.in[c.pos] == '}' {
			c.pos++
			break
		}
		c.pos++ // ','
	}
	// Sort stably, so that of repeated keys the last stays last, and keep
	// only that one, as decoding into a map does.
	slices.SortStableFunc(members, func(a, b member) int { return compareStrings(a.key, b.key) })
	out = append(out, '{')
	first := true
	for i, m := range members {
		if i+1 < len(members) && members[i+1].key == m.key {
			continue
		}
		if !first {
			out = append(out, ',')
		}
		first = false
		out = appendString(out, m.key)
		out = append(out, ':')
		out = append(out, m.value...)
	}
	return append(out, '}')
}

func compareStrings(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func isDelim(b byte) bool {
	switch b {
	case ',', '}', ']', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

// str decodes the string at c.pos as encoding/json does: escapes resolved,
// and invalid UTF-8 or unpaired surrogates turned into U+FFFD.
func (c *canonicalizer) str() string {
	c.pos++ // opening quote
	start := c.pos
	// Fast path: no escapes and plain ASCII.
	for c.pos < len(c.in) {
		b := c.in[c.pos]
		if b == '"' {
			s := string(c.in[start:c.pos])
			c.pos++
			return s
		}
		if b == '\\' || b >= utf8.RuneSelf {
			break
		}
		c.pos++
	}
	buf := append([]byte(nil), c.in[start:c.pos]...)
	for {
		b := c.in[c.pos]
		switch {
		case b == '"':
			c.pos++
			return string(buf)
		case b == '\\':
			c.pos++
			switch e := c.in[c.pos]; e {
			case 'u':
				r := hex4(c.in[c.pos+1:])
				c.pos += 5
				if utf16.IsSurrogate(r) {
					r2 := rune(-1)
					if c.pos+6 <= len(c.in) && c.in[c.pos] == '\\' && c.in[c.pos+1] == 'u' {
						r2 = hex4(c.in[c.pos+2:])
					}
					if dec := utf16.DecodeRune(r, r2); dec != utf8.RuneError {
						c.pos += 6
						r = dec
					} else {
						r = utf8.RuneError
					}
				}
				buf = utf8.AppendRune(buf, r)
			default:
				c.pos++
				buf = append(buf, unescape[e])
			}
		case b < utf8.RuneSelf:
			buf = append(buf, b)
			c.pos++
		default:
			r, size := utf8.DecodeRune(c.in[c.pos:])
			c.pos += size
			buf = utf8.AppendRune(buf, r)
		}
	}
}

var unescape = [256]byte{'"': '"', '\\': '\\', '/': '/', 'b': '\b', 'f': '\f', 'n': '\n', 'r': '\r', 't': '\t'}

func hex4(b []byte) rune {
	n, _ := strconv.ParseUint(string(b[:4]), 16, 32)
	return rune(n)
}

// appendString appends s quoted as encoding/json does without HTML
// escaping. s is valid UTF-8.
func appendString(out []byte, s string) []byte {
	const hex = "0123456789abcdef"
	out = append(out, '"')
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			switch {
			case b == '"' || b == '\\':
				out = append(out, '\\', b)
			case b >= 0x20:
				out = append(out, b)
			case b == '\b':
				out = append(out, '\\', 'b')
			case b == '\f':
				out = append(out, '\\', 'f')
			case b == '\n':
				out = append(out, '\\', 'n')
			case b == '\r':
				out = append(out, '\\', 'r')
			case b == '\t':
				out = append(out, '\\', 't')
			default:
				out = append(out, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xf])
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			out = append(out, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			out = append(out, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			out = append(out, s[i:i+size]...)
		}
		i += size
	}
	return append(out, '"')
}
