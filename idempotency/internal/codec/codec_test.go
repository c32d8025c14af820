package codec

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/idempotency"
)

func TestResponseRoundTrip(t *testing.T) {
	for _, r := range []*idempotency.Response{
		{StatusCode: 201, Header: http.Header{}, Body: nil},
		{StatusCode: 402, Header: http.Header{
			"Content-Type": {"application/json"},
			"X-Odd":        {"a\x00b", "\xff\xfe", ""},
			"":             {},
		}, Body: []byte("{\"x\":1}\n\x00\xff")},
	} {
		b := AppendResponse(nil, r)
		got, err := Response(b)
		require.NoError(t, err)
		assert.Equal(t, r.StatusCode, got.StatusCode)
		assert.Equal(t, r.Header, got.Header)
		assert.Equal(t, string(r.Body), string(got.Body))

		h, err := Header(AppendHeader(nil, r.Header))
		require.NoError(t, err)
		assert.Equal(t, r.Header, h)
	}
}

func TestCorruptInputIsRefused(t *testing.T) {
	good := AppendResponse(nil, &idempotency.Response{StatusCode: 200, Header: http.Header{"A": {"b"}}, Body: []byte("x")})
	for _, b := range [][]byte{nil, {}, {9}, {version}, {version, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, good[:4]} {
		_, err := Response(b)
		assert.ErrorIs(t, err, ErrCorrupt, "% x", b)
	}
	_, err := Header(append(AppendHeader(nil, http.Header{"A": {"b"}}), 0))
	assert.ErrorIs(t, err, ErrCorrupt, "trailing bytes")
}

func FuzzResponse(f *testing.F) {
	f.Add(AppendResponse(nil, &idempotency.Response{StatusCode: 200, Header: http.Header{"A": {"b", "c"}}, Body: []byte("x")}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := Response(b)
		if err != nil {
			return
		}
		again, err := Response(AppendResponse(nil, r))
		require.NoError(t, err)
		require.Equal(t, r, again)
	})
}
