package mock

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lenBody is a request body that tells its length, as len says.
type lenBody struct {
	io.Reader
	len func() int
}

func (b lenBody) Len() int   { return b.len() }
func (lenBody) Close() error { return nil }

// readBody reads an in-memory body without a MaxBytesReader, but still
// refuses one over the bound, even if its Len said otherwise.
func TestReadBodyInMemory(t *testing.T) {
	read := func(body io.ReadCloser) ([]byte, error) {
		r := httptest.NewRequest("POST", "/v1/charges", nil)
		r.Body = body
		return readBody(httptest.NewRecorder(), r)
	}
	inMemory := func(b []byte) io.ReadCloser {
		br := bytes.NewReader(b)
		return lenBody{br, br.Len}
	}
	body, err := read(inMemory([]byte("amount=2000")))
	require.NoError(t, err)
	assert.Equal(t, "amount=2000", string(body))

	var tooLarge *http.MaxBytesError
	_, err = read(inMemory(make([]byte, maxBodyBytes+1)))
	assert.True(t, errors.As(err, &tooLarge), "over the bound, by its Len")
	_, err = read(lenBody{bytes.NewReader(make([]byte, maxBodyBytes+1)), func() int { return 1 }})
	assert.True(t, errors.As(err, &tooLarge), "over the bound, whatever its Len says")
	_, err = read(io.NopCloser(bytes.NewReader(make([]byte, maxBodyBytes+1))))
	assert.True(t, errors.As(err, &tooLarge), "over the bound, with no Len")

	// One that says it is empty and goes on for 8 times the bound is read
	// no further than the bound's first Read past it.
	long := &zeros{left: 8 * maxBodyBytes}
	_, err = read(lenBody{long, func() int { return 0 }})
	assert.True(t, errors.As(err, &tooLarge), "over the bound, though its Len says 0")
	assert.LessOrEqual(t, 8*maxBodyBytes-long.left, 2*maxBodyBytes+1, "bytes read before stopping")
}

// zeros reads as left zero bytes.
type zeros struct{ left int }

func (z *zeros) Read(p []byte) (int, error) {
	if z.left == 0 {
		return 0, io.EOF
	}
	n := min(len(p), z.left)
	clear(p[:n])
	z.left -= n
	return n, nil
}
