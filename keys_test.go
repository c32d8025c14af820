package payonce

import (
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestNewKeyUniqueRandomUUIDs(t *testing.T) {
	const n = 20000
	seen := make(map[string]bool, n)
	for range n {
		k := NewKey()
		require.False(t, seen[k], "duplicate key %s", k)
		seen[k] = true
		u, err := uuid.Parse(k)
		require.NoError(t, err)
		require.Equal(t, uuid.Version(4), u.Version())
		require.NoError(t, ValidateKey(k))
	}
}

func TestValidateKey(t *testing.T) {
	ok := []string{"a", "invoice_456", strings.Repeat("k", 255), "!~", `\x`}
	for _, k := range ok {
		assert.NoError(t, ValidateKey(k), "%q", k)
	}
	bad := map[string]string{
		"":                        "empty",
		strings.Repeat("k", 256):  "256 bytes",
		"has space":               "0x20",
		"tab\there":               "0x09",
		"del\x7f":                 "0x7f",
		"ünïcode":                 "visible ASCII",
		"new\nline":               "0x0a",
		`"quoted"`:                "double quote",
		"\x00":                    "0x00",
		"trailing ":               "0x20",
		strings.Repeat("é", 100):  "visible ASCII",
		"ok_until_the_end\xff":    "0xff",
		"\"unbalanced":            "double quote",
		strings.Repeat("x", 1000): "1000 bytes",
	}
	for k, want := range bad {
		err := ValidateKey(k)
		require.ErrorIs(t, err, ErrInvalidKey, "%q", k)
		assert.Contains(t, err.Error(), want, "%q", k)
	}
}

func TestBusinessKeyDeterministic(t *testing.T) {
	k1, err := BusinessKey("invoice", "456")
	require.NoError(t, err)
	k2, err := BusinessKey("invoice", "456")
	require.NoError(t, err)
	assert.Equal(t, "invoice:456", k1)
	assert.Equal(t, k1, k2)

	k3, err := BusinessKey("refund", "456")
	require.NoError(t, err)
	assert.NotEqual(t, k1, k3, "namespaces separate operations")

	k4, err := BusinessKey("refund", "ord:1", "line%2")
	require.NoError(t, err)
	assert.Equal(t, "refund:ord%3A1:line%252", k4)
	require.NoError(t, ValidateKey(k4))
}

func TestBusinessKeyNeverCollides(t *testing.T) {
	a, err := BusinessKey("ns", "a", "b:c")
	require.NoError(t, err)
	b, err := BusinessKey("ns", "a:b", "c")
	require.NoError(t, err)
	assert.NotEqual(t, a, b)

	// Exhaustively: every tuple of 1 to 3 ids over an alphabet rich in the
	// separator and the escape character maps to a distinct key.
	alphabet := []string{"a", ":", "%", "3", "A", "%3A", "::"}
	var ids []string
	for _, x := range alphabet {
		ids = append(ids, x)
		for _, y := range alphabet {
			ids = append(ids, x+y)
		}
	}
	seen := map[string]string{}
	check := func(tuple ...string) {
		k, err := BusinessKey("ns", tuple...)
		require.NoError(t, err)
		id := strings.Join(tuple, "\x00")
		if prev, dup := seen[k]; dup && prev != id {
			t.Fatalf("%q and %q both give %q", prev, id, k)
		}
		seen[k] = id
		require.NoError(t, ValidateKey(k))
	}
	for _, x := range ids {
		check(x)
		for _, y := range ids {
			check(x, y)
			for _, z := range alphabet {
				check(x, y, z)
			}
		}
	}
	require.Greater(t, len(seen), 10000)
}

func TestBusinessKeyRefusesBadInput(t *testing.T) {
	cases := []struct {
		name, ns string
		ids      []string
		want     string
	}{
		{"empty namespace", "", []string{"1"}, "namespace"},
		{"separator in namespace", "a:b", []string{"1"}, "namespace"},
		{"escape in namespace", "a%b", []string{"1"}, "namespace"},
		{"space in namespace", "a b", []string{"1"}, "namespace"},
		{"long namespace", strings.Repeat("n", 65), []string{"1"}, "namespace"},
		{"no ids", "invoice", nil, "at least one id"},
		{"empty id", "invoice", []string{"1", ""}, "id 1 is empty"},
		{"space in id", "invoice", []string{"4 5"}, "0x20"},
		{"non-ASCII id", "invoice", []string{"nº5"}, "visible ASCII"},
		{"too long", "invoice", []string{strings.Repeat("9", 248)}, "limit is 255"},
		{"too long after escaping", "invoice", []string{strings.Repeat(":", 100)}, "limit is 255"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := BusinessKey(tc.ns, tc.ids...)
			require.ErrorIs(t, err, ErrInvalidKey)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	k, err := BusinessKey("invoice", strings.Repeat("9", 247)) // exactly 255
	require.NoError(t, err)
	assert.Len(t, k, 255)
}

func TestContentKeyWindow(t *testing.T) {
	const w = time.Minute
	content := []byte(`{"amount":2000,"currency":"usd","customer":"cus_1"}`)
	start := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC) // a window boundary

	key := func(c []byte, window time.Duration, at time.Time) string {
		k, err := ContentKey(c, window, at)
		require.NoError(t, err)
		require.NoError(t, ValidateKey(k))
		return k
	}
	k0 := key(content, w, start)
	assert.Equal(t, k0, key(content, w, start.Add(59*time.Second)), "same window, same key")
	assert.Equal(t, k0, key(content, w, start.In(time.FixedZone("x", 3600))), "time zones do not matter")
	assert.NotEqual(t, k0, key(content, w, start.Add(w)), "next window")
	assert.NotEqual(t, k0, key([]byte(`{"amount":2001,"currency":"usd","customer":"cus_1"}`), w, start), "other content")
	assert.NotEqual(t, k0, key(content, 2*w, start), "other window size")

	// The documented trade-off: a resend straddling a boundary gets a new key.
	assert.NotEqual(t, key(content, w, start.Add(-time.Nanosecond)), key(content, w, start.Add(time.Nanosecond)))

	// Before 1970, windows are still aligned (floor, not truncation to 0).
	old := time.Date(1969, 12, 31, 23, 59, 30, 0, time.UTC)
	assert.NotEqual(t, key(content, w, old), key(content, w, old.Add(time.Minute)))
	assert.Equal(t, key(content, w, old), key(content, w, old.Add(-29*time.Second)))

	_, err := ContentKey(content, 0, start)
	require.ErrorIs(t, err, ErrInvalidKey)
	_, err = ContentKey(content, -time.Second, start)
	require.ErrorIs(t, err, ErrInvalidKey)
}
