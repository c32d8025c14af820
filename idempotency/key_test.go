package idempotency_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/idempotency"
)

func TestParseKey(t *testing.T) {
	valid := map[string]string{
		`abc`:                                  "abc",
		`"abc"`:                                "abc",
		`8e03978e-40d5-43e8-bc93-6894a57f9324`: "8e03978e-40d5-43e8-bc93-6894a57f9324",
		`"a\"b"`:                               `a"b`,
		`"a\\b"`:                               `a\b`,
		`invoice:456:2026`:                     "invoice:456:2026",
		strings.Repeat("k", 255):               strings.Repeat("k", 255),
		`"` + strings.Repeat("k", 255) + `"`:   strings.Repeat("k", 255),
	}
	for in, want := range valid {
		got, err := idempotency.ParseKey(in)
		require.NoError(t, err, "ParseKey(%q)", in)
		assert.Equal(t, want, got, "ParseKey(%q)", in)
	}

	invalid := []string{
		``, `""`, `"abc`, `"abc"x`, `a"b`, `abc"`, `"a\nb"`, `"a b"`, `a b`, " abc", "abc\t",
		"caf\u00e9", "a\x00b", "a\x7fb", strings.Repeat("k", 256),
		`"` + strings.Repeat("k", 256) + `"`, `"\`,
	}
	for _, in := range invalid {
		_, err := idempotency.ParseKey(in)
		require.Error(t, err, "ParseKey(%q)", in)
		assert.ErrorIs(t, err, idempotency.ErrInvalidKey, "ParseKey(%q)", in)
	}
}

// FuzzParseKey checks that every key ParseKey accepts obeys the rules, and
// that a valid key quoted by the Structured Field rules reads back the same.
func FuzzParseKey(f *testing.F) {
	for _, s := range []string{`abc`, `"abc"`, `"a\"b"`, `"a\\b"`, `"`, `""`, `"\x"`, "a b", strings.Repeat("x", 256)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		key, err := idempotency.ParseKey(header)
		if err != nil {
			require.ErrorIs(t, err, idempotency.ErrInvalidKey)
			return
		}
		require.NotEmpty(t, key)
		require.LessOrEqual(t, len(key), idempotency.MaxKeyLength)
		for i := 0; i < len(key); i++ {
			require.True(t, key[i] >= 0x21 && key[i] <= 0x7e, "byte %#x in accepted key %q", key[i], key)
		}
		quoted := `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(key) + `"`
		again, err := idempotency.ParseKey(quoted)
		require.NoError(t, err)
		require.Equal(t, key, again)
	})
}
