package form_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/mock/internal/form"
)

// FuzzParse checks that Parse never panics, that every refusal is an
// *Error, and that what it accepts encodes to a body that parses back to
// the same tree (names with brackets aside, which no encoding keeps apart).
func FuzzParse(f *testing.F) {
	for _, seed := range []string{
		"amount=2000&currency=usd&metadata[order]=42",
		"shipping[address][line1]=1+Main+St&expand[0]=a&expand[1]=b",
		"payment_method_types[]=card&payment_method_types[]=link",
		"metadata=&a%5Bb%5D=%26",
		"a=1&a[b]=2", "a[b=1", "a]=1", "=", "&&", "a[0]=x&a[]=y",
	} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, body string) {
		tree, err := form.Parse(body)
		if err != nil {
			var fe *form.Error
			require.ErrorAs(t, err, &fe)
			return
		}
		if hasBracketKey(tree) {
			return
		}
		again, err := form.Parse(form.Encode(tree))
		require.NoError(t, err, "re-encoded %q", form.Encode(tree))
		require.Equal(t, tree, again)
	})
}

// hasBracketKey reports whether a key below the top holds a bracket, or a
// top-level name is one no body can carry back unchanged.
func hasBracketKey(m map[string]any) bool {
	for k, v := range m {
		if strings.ContainsAny(k, "[]") || k == "" {
			return true
		}
		if sub, ok := v.(map[string]any); ok && hasBracketKey(sub) {
			return true
		}
	}
	return false
}
