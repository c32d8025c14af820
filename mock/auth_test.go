package mock_test

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/mock"
)

func TestAuthentication(t *testing.T) {
	h := setup(t)
	for _, tc := range []struct {
		name, header, code string
	}{
		{"missing", "", "api_key_missing"},
		{"no scheme", keyA, "api_key_invalid"},
		{"basic scheme", "Basic " + keyA, "api_key_invalid"},
		{"scheme alone", "Bearer", "api_key_invalid"},
		{"live key", "Bearer sk_live_abc", "api_key_invalid"},
		{"prefix alone", "Bearer sk_test_", "api_key_invalid"},
		{"space inside", "Bearer sk_test_a b", "api_key_invalid"},
		{"non-ASCII", "Bearer sk_test_é", "api_key_invalid"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := h.key()
			hr, err := http.NewRequest("POST", h.srv.URL+"/v1/charges", strings.NewReader(chargeBody(100)))
			require.NoError(t, err)
			if tc.header != "" {
				hr.Header.Set("Authorization", tc.header)
			}
			hr.Header.Set("Idempotency-Key", key)
			hr.Header.Set("Content-Type", "application/json")
			res, err := h.c.Do(hr)
			require.NoError(t, err)
			defer res.Body.Close()
			require.Equal(t, http.StatusUnauthorized, res.StatusCode)
			assert.Contains(t, res.Header.Get("WWW-Authenticate"), "Bearer")
			var env struct{ Error apiErr }
			require.NoError(t, json.NewDecoder(res.Body).Decode(&env))
			assert.Equal(t, "authentication_error", env.Error.Type)
			assert.Equal(t, tc.code, env.Error.Code)
			assert.NotContains(t, env.Error.Message, "alice", "the key is never echoed")

			h.post("/v1/charges", key, chargeBody(100)).charge(t) // not stored: the key is free
		})
	}
	// The scheme is case-insensitive.
	r := h.send(req{method: "GET", path: "/v1/charges", body: ""})
	assert.Equal(t, http.StatusUnauthorized, r.Status)
	hr, _ := http.NewRequest("GET", h.srv.URL+"/v1/charges", nil)
	hr.Header.Set("Authorization", "bearer "+keyA)
	res, err := h.c.Do(hr)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode)
}

func TestAccountID(t *testing.T) {
	sum := sha256.Sum256([]byte(keyA))
	assert.Equal(t, "acct_"+hex.EncodeToString(sum[:])[:16], mock.AccountID(keyA))
	assert.NotEqual(t, mock.AccountID(keyA), mock.AccountID(keyB))

	h := setup(t)
	h.charge(100)
	require.Len(t, h.srv.Charges(), 1)
	assert.Equal(t, mock.AccountID(keyA), h.srv.Charges()[0].Account)
	assert.Equal(t, mock.AccountID(keyA), h.srv.Requests()[0].Account)
}

func TestWithAPIKeys(t *testing.T) {
	h := setup(t, mock.WithAPIKeys(keyA))
	h.charge(100)
	r := h.send(req{method: "POST", path: "/v1/charges", apiKey: keyB, idemKey: "k", body: chargeBody(100)})
	require.Equal(t, http.StatusUnauthorized, r.Status)
	assert.Equal(t, "api_key_invalid", r.err(t).Code)
	assert.Len(t, h.srv.Charges(), 1)

	for _, bad := range [][]string{nil, {"sk_live_x"}, {""}, {keyA, "pk_test_x"}} {
		_, err := mock.New(mock.WithAPIKeys(bad...))
		assert.Error(t, err, "%q", bad)
	}
}

// One account can never read, list, capture, refund or replay another's.
func TestAccountIsolation(t *testing.T) {
	h := setup(t)
	asB := func(method, path, idemKey, body string) *resp {
		return h.send(req{method: method, path: path, apiKey: keyB, idemKey: idemKey, body: body})
	}
	authorized := h.post("/v1/charges", "shared-key", `{"amount":1000,"currency":"usd","payment_method":"tok_visa","capture":false}`).charge(t)
	captured := h.charge(2000)

	r := asB("GET", "/v1/charges/"+authorized.ID, "", "")
	assert.Equal(t, http.StatusNotFound, r.Status)
	assert.Equal(t, "resource_missing", r.err(t).Code)

	r = asB("GET", "/v1/charges", "", "")
	require.Equal(t, http.StatusOK, r.Status)
	assert.JSONEq(t, `{"object":"list","data":[],"has_more":false}`, string(r.Body))

	r = asB("GET", "/v1/charges?starting_after="+captured.ID, "", "")
	assert.Equal(t, http.StatusNotFound, r.Status)

	r = asB("POST", "/v1/charges/"+authorized.ID+"/capture", "b-1", `{}`)
	assert.Equal(t, http.StatusNotFound, r.Status)
	assert.False(t, h.get("/v1/charges/"+authorized.ID).charge(t).Captured)

	r = asB("POST", "/v1/refunds", "b-2", `{"charge":"`+captured.ID+`"}`)
	assert.Equal(t, http.StatusNotFound, r.Status)
	assert.Zero(t, h.get("/v1/charges/"+captured.ID).charge(t).AmountRefunded)

	// The same key and body under B executes for B: no replay of A's response.
	r = asB("POST", "/v1/charges", "shared-key", `{"amount":1000,"currency":"usd","payment_method":"tok_visa","capture":false}`)
	assert.False(t, r.replayed())
	chB := r.charge(t)
	assert.NotEqual(t, authorized.ID, chB.ID)
	// A's record under that key is untouched.
	r = h.post("/v1/charges", "shared-key", `{"amount":1000,"currency":"usd","payment_method":"tok_visa","capture":false}`)
	assert.True(t, r.replayed())
	assert.Equal(t, authorized.ID, r.charge(t).ID)

	byAccount := map[string]int{}
	for _, c := range h.srv.Charges() {
		byAccount[c.Account]++
	}
	assert.Equal(t, map[string]int{mock.AccountID(keyA): 2, mock.AccountID(keyB): 1}, byAccount)
}

// The API key appears nowhere: not in responses, history, ledger or logs.
func TestAPIKeyNeverShown(t *testing.T) {
	var logs bytes.Buffer
	h := setup(t, mock.WithLogger(slog.New(slog.NewTextHandler(&logs, nil))))
	secret := strings.TrimPrefix(keyA, "sk_test_")
	var bodies []byte
	for _, r := range []*resp{
		h.post("/v1/charges", "k1", chargeBody(100)),
		h.post("/v1/charges", "k1", chargeBody(100)),
		h.post("/v1/charges", "k1", chargeBody(101)),
		h.send(req{method: "POST", path: "/v1/charges", apiKey: "sk_test_bad key", idemKey: "k2", body: chargeBody(1)}),
		h.send(req{method: "GET", path: "/_mock/requests"}),
		h.send(req{method: "GET", path: "/_mock/charges"}),
	} {
		bodies = append(bodies, r.Body...)
		for k, v := range r.Header {
			bodies = append(bodies, (k + strings.Join(v, ","))...)
		}
	}
	assert.NotContains(t, string(bodies), secret)
	assert.NotContains(t, string(bodies), "bad key")
	assert.NotContains(t, logs.String(), secret)
	assert.NotContains(t, logs.String(), "bad key")
	assert.Contains(t, logs.String(), "account="+mock.AccountID(keyA))
}
