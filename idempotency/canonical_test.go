package idempotency

import (
	"bytes"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// referenceCanonical is the definition of the canonical form: decode into an
// interface value and encode it again.
func referenceCanonical(body []byte) []byte {
	if !json.Valid(body) {
		return body
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return body
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return body
	}
	return buf.Bytes()
}

var canonicalSeeds = []string{
	`{"amount":2000,"currency":"usd","metadata":{"order":"456","b":"x"}}`,
	` { "b" : [1, 2.50, -3e+7, true, false, null, {}, []] , "a" : "x" } `,
	`{"a":1,"a":2}`,
	`{"a":1,"b":2,"a":3}`,
	`"\u00e9\u2028\u2029\ud83d\ude00\ud800x\udc00\\\/\b\f\n\r\t\u0001<>&"`,
	"\"caf\xc3\xa9 \xff\xfe raw\"",
	`{"\u0061":1,"a":2}`,
	`[]`, `{}`, `0`, `"x"`, `not json`, `{"a":}`, ``, `{"a":1}garbage`,
	`{"emoji":"😀","ctl":"\u001f"}`,
}

func TestCanonicalJSONMatchesReference(t *testing.T) {
	for _, s := range canonicalSeeds {
		assert.Equal(t, string(referenceCanonical([]byte(s))), string(canonicalJSON([]byte(s))), "input %q", s)
	}
}

func TestCanonicalJSONIgnoresOrderAndSpace(t *testing.T) {
	a := canonicalJSON([]byte(`{"amount":100,"currency":"usd","metadata":{"x":"1","y":"2"}}`))
	b := canonicalJSON([]byte("{\n  \"metadata\": {\"y\": \"2\", \"x\": \"1\"},\n  \"currency\": \"usd\",\n  \"amount\": 100\n}"))
	assert.Equal(t, string(a), string(b))
	assert.NotEqual(t, string(a), string(canonicalJSON([]byte(`{"amount":101,"currency":"usd","metadata":{"x":"1","y":"2"}}`))))
}

// FuzzCanonicalJSON holds the fast canonicaliser to the reference, byte for
// byte, for every input: two bodies share a fingerprint exactly when
// encoding/json reads them as the same value.
func FuzzCanonicalJSON(f *testing.F) {
	for _, s := range canonicalSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, body []byte) {
		got := canonicalJSON(body)
		require.Equal(t, string(referenceCanonical(body)), string(got))
		if json.Valid(body) {
			require.Equal(t, string(got), string(canonicalJSON(got)), "canonical form is a fixed point")
		}
	})
}
