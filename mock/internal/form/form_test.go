package form_test

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/mock/internal/form"
)

func TestParseNests(t *testing.T) {
	got, err := form.Parse("amount=2000&currency=usd&metadata%5Border%5D=42&metadata[note]=a+b%26c" +
		"&shipping[address][line1]=1+Main+St&expand[0]=latest_charge&expand[1]=customer" +
		"&payment_method_types[]=card&payment_method_types[]=link&capture=false&description=")
	require.NoError(t, err)
	assert.Equal(t, map[string]any{
		"amount":               "2000",
		"currency":             "usd",
		"metadata":             map[string]any{"order": "42", "note": "a b&c"},
		"shipping":             map[string]any{"address": map[string]any{"line1": "1 Main St"}},
		"expand":               map[string]any{"0": "latest_charge", "1": "customer"},
		"payment_method_types": map[string]any{"0": "card", "1": "link"},
		"capture":              "false",
		"description":          "",
	}, got)

	list, ok := form.List(got["expand"])
	require.True(t, ok)
	assert.Equal(t, []any{"latest_charge", "customer"}, list)
	list, ok = form.List(got["payment_method_types"])
	require.True(t, ok)
	assert.Equal(t, []any{"card", "link"}, list)
	_, ok = form.List(got["metadata"])
	assert.False(t, ok, "named keys are no array")
}

func TestParseEmpty(t *testing.T) {
	for _, body := range []string{"", "&", "&&"} {
		got, err := form.Parse(body)
		require.NoError(t, err)
		assert.Empty(t, got)
	}
}

func TestParseRefuses(t *testing.T) {
	for body, param := range map[string]string{
		"a=1&a=2":             "a",
		"a=1&a[b]=2":          "a[b]",
		"a[b]=2&a=1":          "a",
		"a[b]=1&a[b][c]=2":    "a[b][c]",
		"a[b=1":               "a[b",
		"a]=1":                "a]",
		"[a]=1":               "[a]",
		"a[b]c=1":             "a[b]c",
		"a[b[c]]=1":           "a[b[c]]",
		"=1":                  "",
		"a%zz=1":              "a%zz",
		"a=%zz":               "a",
		"a[0]=x&a[]=y&a[1]=z": "a[1]",
		"a[1]=x&a[]=y":        "a[]",
		"a" + strings.Repeat("[b]", form.MaxDepth+1) + "=1": "a" + strings.Repeat("[b]", form.MaxDepth+1),
	} {
		_, err := form.Parse(body)
		var fe *form.Error
		require.ErrorAs(t, err, &fe, body)
		assert.Equal(t, param, fe.Param, body)
		assert.NotEmpty(t, fe.Reason)
	}
	var many strings.Builder
	for i := range form.MaxPairs + 1 {
		fmt.Fprintf(&many, "p%d=1&", i)
	}
	_, err := form.Parse(many.String())
	assert.True(t, errors.Is(err, form.ErrTooLarge))
	_, err = form.Parse("a" + strings.Repeat("[b]", form.MaxDepth+1) + "=1")
	assert.True(t, errors.Is(err, form.ErrTooLarge))
}

func TestList(t *testing.T) {
	for v, want := range map[string][]any{"": nil} {
		got, ok := form.List(v)
		assert.True(t, ok)
		assert.Equal(t, want, got)
	}
	for _, v := range []any{
		map[string]any{"1": "a"},
		map[string]any{"0": "a", "2": "b"},
		map[string]any{"00": "a"},
		map[string]any{"-0": "a"},
		map[string]any{"x": "a"},
		"nonempty",
	} {
		_, ok := form.List(v)
		assert.False(t, ok, "%v", v)
	}
}

func TestEncodeRoundTrips(t *testing.T) {
	tree := map[string]any{
		"amount":   "2000",
		"metadata": map[string]any{"order id": "42&43", "empty": ""},
		"expand":   []any{"latest_charge", "customer"},
		"items":    []any{map[string]any{"price": "p_1", "qty": "2"}},
	}
	body := form.Encode(tree)
	assert.Equal(t, "amount=2000&expand%5B0%5D=latest_charge&expand%5B1%5D=customer&items%5B0%5D%5Bprice%5D=p_1&"+
		"items%5B0%5D%5Bqty%5D=2&metadata%5Bempty%5D=&metadata%5Border+id%5D=42%2643", body)
	got, err := form.Parse(body)
	require.NoError(t, err)
	assert.Equal(t, "42&43", got["metadata"].(map[string]any)["order id"])
	list, ok := form.List(got["expand"])
	require.True(t, ok)
	assert.True(t, reflect.DeepEqual([]any{"latest_charge", "customer"}, list))
}
