package mock_test

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/idempotency"
	"github.com/payonce/payonce/mock"
)

// FuzzCreateCharge sends any body under any idempotency key to POST
// /v1/charges. It must never panic. A charge it creates must say what the
// body said, and replay byte for byte; a refusal must be a 400 naming a code
// (and a param when a field is at fault) and must leave the key free.
// The seed corpus is in testdata/fuzz/FuzzCreateCharge.
func FuzzCreateCharge(f *testing.F) {
	f.Add([]byte(`{"amount":1000,"currency":"usd","payment_method":"tok_visa"}`), "k")
	f.Fuzz(func(t *testing.T, body []byte, key string) {
		g, err := mock.New()
		require.NoError(t, err)
		send := func(body []byte) *httptest.ResponseRecorder {
			r := httptest.NewRequest("POST", "/v1/charges", bytes.NewReader(body))
			r.Header.Set("Authorization", "Bearer sk_test_fuzz")
			r.Header.Set("Content-Type", "application/json")
			if key != "" {
				r.Header["Idempotency-Key"] = []string{key}
			}
			w := httptest.NewRecorder()
			g.ServeHTTP(w, r)
			return w
		}
		w := send(body)

		_, keyErr := idempotency.ParseKey(key)
		switch {
		case key == "":
			requireError(t, w, 400, "idempotency_key_missing")
			return
		case keyErr != nil:
			requireError(t, w, 400, "idempotency_key_invalid")
			return
		}

		switch w.Code {
		case http.StatusOK:
			var ch mock.Charge
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &ch))
			checkRoundTrip(t, body, ch)
			again := send(body)
			assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
			assert.Equal(t, w.Body.Bytes(), again.Body.Bytes())
			assert.Len(t, g.Charges(), 1)
		case http.StatusPaymentRequired:
			e := requireError(t, w, 402, "card_declined")
			assert.Contains(t, []string{"generic_decline", "insufficient_funds"}, e.DeclineCode)
			assert.Empty(t, g.Charges())
		case http.StatusBadRequest:
			e := requireError(t, w, 400, "")
			assert.Equal(t, "invalid_request_error", e.Type)
			switch {
			case e.Code == "invalid_json" || e.Code == "invalid_content_type":
			case e.Code == "parameter_unknown" && e.Param == "":
				// A member whose name is the empty string: the param is that name.
				assert.Contains(t, e.Message, `received unknown parameter ""`)
			default:
				assert.NotEmpty(t, e.Param, "code %s names no param", e.Code)
			}
			assert.Empty(t, g.Charges())
			// Not stored: the key is free for a corrected body.
			fixed := send([]byte(`{"amount":1,"currency":"usd","payment_method":"tok_visa"}`))
			assert.Equal(t, http.StatusOK, fixed.Code, "%s", fixed.Body)
		case http.StatusRequestEntityTooLarge:
			assert.Greater(t, len(body), 1<<20)
		default:
			t.Fatalf("unexpected status %d: %s", w.Code, w.Body)
		}
	})
}

func requireError(t *testing.T, w *httptest.ResponseRecorder, status int, code string) apiErr {
	t.Helper()
	require.Equal(t, status, w.Code, "%s", w.Body)
	var env struct{ Error apiErr }
	require.NoError(t, json.Unmarshal(w.Body.Bytes(), &env))
	require.NotEmpty(t, env.Error.Code)
	require.NotEmpty(t, env.Error.Message)
	if code != "" {
		require.Equal(t, code, env.Error.Code)
	}
	return env.Error
}

// checkRoundTrip checks that ch is what body asked for.
func checkRoundTrip(t *testing.T, body []byte, ch mock.Charge) {
	var in map[string]any
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	require.NoError(t, dec.Decode(&in))

	amount, err := strconv.ParseInt(string(in["amount"].(json.Number)), 10, 64)
	require.NoError(t, err)
	assert.Equal(t, amount, ch.Amount)
	assert.Equal(t, strings.ToLower(in["currency"].(string)), ch.Currency)
	assert.Equal(t, in["payment_method"], ch.PaymentMethod)
	if d, ok := in["description"].(string); ok {
		require.NotNil(t, ch.Description)
		assert.Equal(t, d, *ch.Description)
	} else {
		assert.Nil(t, ch.Description)
	}
	md := map[string]string{}
	if m, ok := in["metadata"].(map[string]any); ok {
		for k, v := range m {
			md[k] = v.(string)
		}
	}
	assert.Equal(t, md, ch.Metadata)
	capture, _ := in["capture"].(bool)
	if _, set := in["capture"].(bool); !set {
		capture = true
	}
	assert.Equal(t, capture, ch.Captured)
	if capture {
		assert.Equal(t, mock.StatusSucceeded, ch.Status)
		assert.Equal(t, ch.Amount, ch.AmountCaptured)
	} else {
		assert.Equal(t, mock.StatusRequiresCapture, ch.Status)
	}
}

// FuzzStripeCreateCharge sends any form body under any idempotency key to
// POST /v1/charges in Stripe's dialect. It must never panic, and every
// answer must be JSON. A charge it creates replays byte for byte; a
// decline leaves one failed charge, named in the error; a refusal is a
// 400 invalid_request_error with a code, which leaves the key free. The
// seed corpus is in testdata/fuzz/FuzzStripeCreateCharge.
func FuzzStripeCreateCharge(f *testing.F) {
	f.Add("amount=2000&currency=usd&source=tok_visa&metadata[order]=42&expand[0]=balance_transaction", "k")
	f.Add("amount=500&currency=eur&payment_method=pm_card_chargeDeclined&capture=false", "")
	f.Fuzz(func(t *testing.T, body, key string) {
		g, err := mock.New()
		require.NoError(t, err)
		send := func(body string) *httptest.ResponseRecorder {
			r := httptest.NewRequest("POST", "/v1/charges", strings.NewReader(body))
			r.Header.Set("Authorization", "Bearer sk_test_fuzz")
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			r.Header.Set("Stripe-Version", "2025-01-01")
			if key != "" {
				r.Header["Idempotency-Key"] = []string{key}
			}
			w := httptest.NewRecorder()
			g.ServeHTTP(w, r)
			return w
		}
		w := send(body)
		require.True(t, json.Valid(w.Body.Bytes()), "not JSON: %q", w.Body)
		if _, keyErr := idempotency.ParseKey(key); key != "" && keyErr != nil {
			requireError(t, w, 400, "idempotency_key_invalid")
			return
		}
		switch w.Code {
		case http.StatusOK:
			var ch struct {
				ID     string `json:"id"`
				Object string `json:"object"`
				Paid   bool   `json:"paid"`
			}
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &ch))
			assert.Equal(t, "charge", ch.Object)
			assert.True(t, ch.Paid)
			require.Len(t, g.Charges(), 1)
			assert.Equal(t, ch.ID, g.Charges()[0].ID)
			if key != "" {
				again := send(body)
				assert.Equal(t, "true", again.Header().Get("Idempotent-Replayed"))
				assert.Equal(t, w.Body.Bytes(), again.Body.Bytes())
				assert.Len(t, g.Charges(), 1)
			}
		case http.StatusPaymentRequired:
			var env struct {
				Error struct {
					apiErr
					Charge string `json:"charge"`
				}
			}
			require.NoError(t, json.Unmarshal(w.Body.Bytes(), &env))
			assert.Equal(t, "card_error", env.Error.Type)
			require.Len(t, g.Charges(), 1)
			assert.Equal(t, env.Error.Charge, g.Charges()[0].ID)
			assert.Equal(t, mock.StatusFailed, g.Charges()[0].Status)
		case http.StatusBadRequest:
			e := requireError(t, w, 400, "")
			assert.Equal(t, "invalid_request_error", e.Type)
			assert.Empty(t, g.Charges())
			fixed := send("amount=1&currency=usd&source=tok_visa")
			assert.Equal(t, http.StatusOK, fixed.Code, "the key stayed free: %s", fixed.Body)
		case http.StatusRequestEntityTooLarge:
			assert.Greater(t, len(body), 1<<20)
		default:
			t.Fatalf("unexpected status %d: %s", w.Code, w.Body)
		}
	})
}
