package idempotency

import (
	"bytes"
	"encoding/json"
	"slices"
	"sync"
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
	if !mayBeJSON(body) || !json.Valid(body) {
		return body
	}
	c := canonicalizers.Get().(*canonicalizer)
	c.in, c.pos = body, 0
	out := c.value(make([]byte, 0, len(body)+1))
	c.in = nil
	if cap(c.tmp) <= maxPooledScratch && cap(c.str) <= maxPooledScratch {
		canonicalizers.Put(c)
	}
	return append(out, '\n')
}

// mayBeJSON reports whether body, after any white space, starts as a JSON
// value does. It saves json.Valid, and the error it allocates, on a body
// that is plainly something else, such as a form.
func mayBeJSON(body []byte) bool {
	for _, c := range body {
		switch c {
		case ' ', '\t', '\n', '\r':
			continue
		case '{', '[', '"', '-', 't', 'f', 'n', '0', '1', '2', '3', '4', '5', '6', '7', '8', '9':
			return true
		}
		return false
	}
	return false
}

// canonicalizers keeps the scratch space of canonicalJSON between calls, so
// that canonicalising a body allocates nothing but its result.
var canonicalizers = sync.Pool{New: func() any { return new(canonicalizer) }}

// maxPooledScratch bounds the scratch buffers kept in the pool, so that one
// large body does not pin its size in memory.
const maxPooledScratch = 64 << 10

type canonicalizer struct {
	in  []byte
	pos int
	// members is a stack of the members of the objects being canonicalised,
	// the innermost last.
	members []member
	tmp     []byte // an object's members while they are reordered
	str     []byte // a string being decoded
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
		if raw, ok := c.plainString(); ok {
			return append(out, raw...) // already in canonical form
		}
		c.str = c.decodeString(c.str[:0])
		return appendString(out, c.str)
	default: // number, true, false, null: copied as written
		start := c.pos
		for c.pos < len(c.in) && !isDelim(c.in[c.pos]) {
			c.pos++
		}
		return append(out, c.in[start:c.pos]...)
	}
}

// A member is one member of an object: its decoded key, and where its
// canonical form ("key":value) lies in the output, or in tmp while the
// object's members are reordered.
type member struct {
	key        []byte
	start, end int
}

// object appends the canonical form of the object at c.pos to out. It
// writes the members as they come; only when their keys are not already in
// strictly increasing order does it sort them, keeping of repeated keys the
// last, as decoding into a map does.
func (c *canonicalizer) object(out []byte) []byte {
	c.pos++ // '{'
	c.skipSpace()
	if c.in[c.pos] == '}' {
		c.pos++
		return append(out, '{', '}')
	}
	out = append(out, '{')
	base := len(c.members)
	inOrder := true
	for {
		c.skipSpace()
		var key []byte
		start := len(out)
		if raw, ok := c.plainString(); ok {
			key = raw[1 : len(raw)-1]
			out = append(out, raw...)
		} else {
			// Kept until the object is written: a copy of its own.
			key = c.decodeString(nil)
			out = appendString(out, key)
		}
		if n := len(c.members); n > base && bytes.Compare(c.members[n-1].key, key) >= 0 {
			inOrder = false
		}
		c.skipSpace()
		c.pos++ // ':'
		out = append(out, ':')
		out = c.value(out)
		c.members = append(c.members, member{key, start, len(out)})
		c.skipSpace()
		if c.in[c.pos] == '}' {
			c.pos++
			break
		}
		c.pos++ // ','
		out = append(out, ',')
	}
	members := c.members[base:]
	c.members = c.members[:base]
	if inOrder {
		return append(out, '}')
	}
	// Move the members aside and write them back in order. Sort stably, so
	// that of repeated keys the last stays last, and keep only that one.
	first := members[0].start
	c.tmp = append(c.tmp[:0], out[first:]...)
	out = out[:first]
	slices.SortStableFunc(members, func(a, b member) int { return bytes.Compare(a.key, b.key) })
	for i, m := range members {
		if i+1 < len(members) && bytes.Equal(members[i+1].key, m.key) {
			continue
		}
		if len(out) > first {
			out = append(out, ',')
		}
		out = append(out, c.tmp[m.start-first:m.end-first]...)
	}
	return append(out, '}')
}

// plainString returns the string at c.pos, quotes included, and moves past
// it, if it is printable ASCII without escapes: then it is its own
// canonical form. Otherwise it reports false and stays.
func (c *canonicalizer) plainString() ([]byte, bool) {
	for i := c.pos + 1; i < len(c.in); i++ {
		switch b := c.in[i]; {
		case b == '"':
			raw := c.in[c.pos : i+1]
			c.pos = i + 1
			return raw, true
		case b == '\\' || b >= utf8.RuneSelf:
			return nil, false
		}
	}
	return nil, false
}

func isDelim(b byte) bool {
	switch b {
	case ',', '}', ']', ' ', '\t', '\n', '\r':
		return true
	}
	return false
}

// decodeString appends the string at c.pos to buf, decoded as encoding/json
// does: escapes resolved, and invalid UTF-8 or unpaired surrogates turned
// into U+FFFD.
func (c *canonicalizer) decodeString(buf []byte) []byte {
	c.pos++ // opening quote
	for {
		b := c.in[c.pos]
		switch {
		case b == '"':
			c.pos++
			return buf
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
	var r rune
	for _, h := range b[:4] {
		switch {
		case h >= '0' && h <= '9':
			h -= '0'
		case h >= 'a' && h <= 'f':
			h -= 'a' - 10
		default: // 'A' to 'F': the input is valid JSON
			h -= 'A' - 10
		}
		r = r<<4 | rune(h)
	}
	return r
}

// appendString appends s quoted as encoding/json does without HTML
// escaping. s is valid UTF-8.
func appendString(out []byte, s []byte) []byte {
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
		r, size := utf8.DecodeRune(s[i:])
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
