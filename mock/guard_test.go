package mock_test

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/mock"
)

// raw sends a control request built by hand, so that a test sets every
// header, Host included.
func (h *harness) raw(method, path, body string, header map[string]string) *resp {
	h.t.Helper()
	var rd io.Reader = http.NoBody
	if body != "" {
		rd = strings.NewReader(body)
	}
	hr, err := http.NewRequest(method, h.srv.URL+path, rd)
	require.NoError(h.t, err)
	for k, v := range header {
		if k == "Host" {
			hr.Host = v
			continue
		}
		hr.Header.Set(k, v)
	}
	res, err := h.c.Do(hr)
	require.NoError(h.t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(h.t, err)
	return &resp{Status: res.StatusCode, Header: res.Header, Body: b}
}

// A web page can POST a form or a text/plain fetch anywhere without a CORS
// preflight. The control surface reads none of them.
func TestControlRefusesBodiesThatAreNotJSON(t *testing.T) {
	h := setup(t)
	fault := `{"kind":"fail_before","method":"POST","path":"/v1/charges"}`
	for _, ct := range []string{"text/plain", "text/plain;charset=UTF-8", "application/x-www-form-urlencoded",
		"multipart/form-data; boundary=x", "application/jsonp", "", "not a media type"} {
		r := h.raw("POST", "/_mock/faults", fault, map[string]string{"Content-Type": ct})
		require.Equal(t, http.StatusUnsupportedMediaType, r.Status, "Content-Type %q: %s", ct, r.Body)
		assert.Equal(t, "unsupported_media_type", r.err(t).Code, ct)
	}
	assert.Empty(t, pendingFaults(h), "no fault was added")
	assert.Equal(t, 200, h.post("/v1/charges", h.key(), chargeBody(100)).Status)

	// A form with an empty body is still a form.
	for _, path := range []string{"/_mock/reset", "/_mock/clock"} {
		r := h.raw("POST", path, "", map[string]string{"Content-Type": "application/x-www-form-urlencoded"})
		assert.Equal(t, http.StatusUnsupportedMediaType, r.Status, path)
	}
	assert.Len(t, h.srv.Charges(), 1, "no reset")

	r := h.raw("POST", "/_mock/faults", fault, map[string]string{"Content-Type": "application/json; charset=utf-8"})
	assert.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	assert.Len(t, pendingFaults(h), 1)
	r = h.raw("POST", "/_mock/reset", "", nil)
	assert.Equal(t, http.StatusOK, r.Status, "no body needs no Content-Type: %s", r.Body)
	assert.Empty(t, h.srv.Charges())
}

// DNS rebinding: a page on attacker.example, whose name now resolves to
// 127.0.0.1, reads and drives the mock as its own origin. Its requests
// still carry Host: attacker.example.
func TestControlRefusesForeignHosts(t *testing.T) {
	h := setup(t)
	h.charge(100)
	for _, host := range []string{"attacker.example", "attacker.example:12111", "localhost.attacker.example",
		"127.0.0.1.nip.io", "10.0.0.1", "[::2]:80", "0.0.0.0", "[::]"} {
		for _, rq := range [][2]string{{"GET", "/_mock/requests"}, {"GET", "/_mock/charges"}, {"GET", "/_mock/clock"},
			{"POST", "/_mock/clock"}, {"POST", "/_mock/reset"}, {"DELETE", "/_mock/faults"}, {"GET", "/_mock/nope"}} {
			body := ""
			if rq[1] == "/_mock/clock" && rq[0] == "POST" {
				body = `{"advance_seconds":86400}`
			}
			r := h.raw(rq[0], rq[1], body, map[string]string{"Host": host, "Content-Type": "application/json"})
			require.Equal(t, http.StatusForbidden, r.Status, "%s %v: %s", host, rq, r.Body)
			assert.Equal(t, "host_not_allowed", r.err(t).Code)
			assert.NotContains(t, string(r.Body), "ch_", "nothing leaks")
		}
	}
	assert.Len(t, h.srv.Charges(), 1, "no reset")
	assert.WithinDuration(t, start, h.srv.Now(), time.Hour, "the clock did not move")
	assert.Equal(t, http.StatusOK, h.raw("GET", "/healthz", "", map[string]string{"Host": "attacker.example"}).Status,
		"/healthz stays open")

	for _, host := range []string{"localhost", "localhost:12111", "LOCALHOST:1", "localhost.", "127.0.0.1",
		"127.0.0.1:80", "127.1.2.3:9", "[::1]", "[::1]:8080"} {
		r := h.raw("GET", "/_mock/charges", "", map[string]string{"Host": host})
		assert.Equal(t, http.StatusOK, r.Status, "%s: %s", host, r.Body)
	}
}

// A browser marks its cross-origin requests. Even one with no body, which
// needs no Content-Type and no preflight, is refused.
func TestControlRefusesCrossOriginBrowsers(t *testing.T) {
	h := setup(t)
	h.charge(100)
	host := strings.TrimPrefix(h.srv.URL, "http://")
	for _, hdr := range []map[string]string{
		{"Sec-Fetch-Site": "cross-site"},
		{"Sec-Fetch-Site": "same-site", "Origin": h.srv.URL},
		{"Origin": "http://attacker.example"},
		{"Origin": "null"},
	} {
		r := h.raw("POST", "/_mock/reset", "", hdr)
		require.Equal(t, http.StatusForbidden, r.Status, "%v: %s", hdr, r.Body)
		assert.Equal(t, "cross_origin_refused", r.err(t).Code)
	}
	assert.Len(t, h.srv.Charges(), 1, "no reset")
	assert.Equal(t, http.StatusOK, h.raw("GET", "/_mock/charges", "", map[string]string{"Sec-Fetch-Site": "cross-site"}).Status,
		"a GET changes nothing, and CORS keeps its answer from the page")
	for _, hdr := range []map[string]string{
		{"Sec-Fetch-Site": "same-origin"},
		{"Sec-Fetch-Site": "none"},
		{"Origin": "http://" + host},
	} {
		assert.Equal(t, http.StatusOK, h.raw("POST", "/_mock/reset", "", hdr).Status, hdr)
	}
}

func TestControlToken(t *testing.T) {
	const token = "ctl_4eC39HqLyjWDarjtT1zdp7dc"
	h := setup(t, mock.WithControlToken(token))
	h.charge(100)
	for _, auth := range []string{"", token, "Bearer", "Bearer ", "Bearer " + token[:len(token)-1],
		"Bearer " + token[:len(token)-1] + "x", "Bearer " + token + "x", "Bearer  " + token, "Basic " + token, "Bearer " + keyA} {
		for _, rq := range [][2]string{{"GET", "/_mock/requests"}, {"POST", "/_mock/reset"}, {"GET", "/_mock/nope"}} {
			r := h.raw(rq[0], rq[1], "", map[string]string{"Authorization": auth})
			require.Equal(t, http.StatusUnauthorized, r.Status, "%q %v: %s", auth, rq, r.Body)
			assert.Equal(t, "control_token_invalid", r.err(t).Code)
			assert.NotContains(t, string(r.Body), token)
		}
	}
	assert.Len(t, h.srv.Charges(), 1, "no reset")

	// The token replaces the Host rule: a mock reached under any name.
	ok := map[string]string{"Authorization": "Bearer " + token, "Host": "mock.ci.internal:12111"}
	assert.Equal(t, http.StatusOK, h.raw("GET", "/_mock/charges", "", ok).Status)
	ok["Content-Type"] = "application/json"
	assert.Equal(t, http.StatusOK, h.raw("POST", "/_mock/clock", `{"advance_seconds":1}`, ok).Status)
	delete(ok, "Content-Type")
	assert.Equal(t, http.StatusUnsupportedMediaType, h.raw("POST", "/_mock/clock", `{"advance_seconds":1}`, ok).Status,
		"and the JSON rule still holds")
	assert.Equal(t, http.StatusOK, h.raw("GET", "/healthz", "", nil).Status, "/healthz stays open")
	assert.Equal(t, http.StatusOK, h.get("/v1/charges").Status, "the API is unchanged")

	for _, bad := range []string{"", "has space", "tab\t", "é"} {
		_, err := mock.New(mock.WithControlToken(bad))
		assert.Error(t, err, "%q", bad)
	}
}

func pendingFaults(h *harness) []json.RawMessage {
	h.t.Helper()
	return decode[struct{ Data []json.RawMessage }](h.t, h.control("GET", "/_mock/faults", "")).Data
}
