package mock_test

import (
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/mock"
)

func TestResponder(t *testing.T) {
	g, err := mock.New()
	require.NoError(t, err)
	mt := httpmock.NewMockTransport()
	api := regexp.MustCompile(`^https://api\.gateway\.test/`)
	mt.RegisterRegexpResponder("POST", api, g.Responder())
	mt.RegisterRegexpResponder("GET", api, g.Responder())
	c := &http.Client{Transport: mt}

	post := func(key, body string) (*http.Response, []byte, error) {
		hr, _ := http.NewRequest("POST", "https://api.gateway.test/v1/charges", strings.NewReader(body))
		hr.Header.Set("Authorization", "Bearer "+keyA)
		hr.Header.Set("Idempotency-Key", key)
		hr.Header.Set("Content-Type", "application/json")
		res, err := c.Do(hr)
		if err != nil {
			return nil, nil, err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		return res, b, err
	}

	res, first, err := post("k", chargeBody(100))
	require.NoError(t, err)
	assert.Equal(t, 200, res.StatusCode)
	assert.Equal(t, "application/json", res.Header.Get("Content-Type"))
	assert.Regexp(t, `^req_`, res.Header.Get("Request-Id"))

	res, again, err := post("k", chargeBody(100))
	require.NoError(t, err)
	assert.Equal(t, "true", res.Header.Get("Idempotent-Replayed"))
	assert.Equal(t, first, again)

	res, _, err = post("k", chargeBody(101))
	require.NoError(t, err)
	assert.Equal(t, 422, res.StatusCode)

	hr, _ := http.NewRequest("GET", "https://api.gateway.test/v1/charges", nil)
	hr.Header.Set("Authorization", "Bearer "+keyA)
	res, err = c.Do(hr)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, 200, res.StatusCode)

	// A drop is a transport error wrapping io.ErrUnexpectedEOF.
	require.NoError(t, g.InjectFault(mock.Fault{Kind: mock.DropAfter}))
	_, _, err = post("k2", chargeBody(100))
	require.Error(t, err)
	assert.ErrorIs(t, err, io.ErrUnexpectedEOF)
	assert.Len(t, g.Charges(), 2, "the charge behind the drop exists")
	res, _, err = post("k2", chargeBody(100))
	require.NoError(t, err)
	assert.Equal(t, "true", res.Header.Get("Idempotent-Replayed"))
}
