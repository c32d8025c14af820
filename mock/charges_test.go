package mock_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/mock"
)

func TestCreateCharge(t *testing.T) {
	h := setup(t)
	r := h.post("/v1/charges", "order_1", `{"amount":2000,"currency":"USD","payment_method":"tok_visa",
		"description":"Invoice 456","metadata":{"order":"456"}}`)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	assert.Equal(t, "application/json", r.Header.Get("Content-Type"))
	assert.Regexp(t, `^req_[a-z2-7]{16}$`, r.Header.Get("Request-Id"))
	assert.Empty(t, r.Header.Values("Idempotent-Replayed"), "a first execution sends no Idempotent-Replayed")

	ch := r.charge(t)
	assert.Regexp(t, `^ch_[a-z2-7]{24}$`, ch.ID)
	desc := "Invoice 456"
	assert.Equal(t, mock.Charge{
		ID: ch.ID, Object: "charge", Amount: 2000, AmountCaptured: 2000, Currency: "usd",
		Status: "succeeded", Captured: true, PaymentMethod: "tok_visa", Description: &desc,
		Metadata: map[string]string{"order": "456"}, Created: h.srv.Now().Unix(),
	}, ch)

	// The wire shape: every field present, description null when absent.
	r = h.post("/v1/charges", "order_2", chargeBody(100))
	var raw map[string]any
	require.NoError(t, json.Unmarshal(r.Body, &raw))
	for _, f := range []string{"id", "object", "amount", "amount_captured", "amount_refunded", "currency", "status",
		"captured", "refunded", "payment_method", "description", "metadata", "created"} {
		assert.Contains(t, raw, f)
	}
	assert.Len(t, raw, 13)
	assert.Nil(t, raw["description"])
	assert.Equal(t, map[string]any{}, raw["metadata"])

	// An empty description is one, not null.
	r = h.post("/v1/charges", "order_3", `{"amount":100,"currency":"usd","payment_method":"tok_visa","description":""}`)
	require.NoError(t, json.Unmarshal(r.Body, &raw))
	assert.Equal(t, "", raw["description"])
}

func TestCreateChargeAuthorizeOnly(t *testing.T) {
	h := setup(t)
	ch := h.post("/v1/charges", h.key(), `{"amount":500,"currency":"eur","payment_method":"tok_mastercard","capture":false}`).charge(t)
	assert.Equal(t, "requires_capture", ch.Status)
	assert.False(t, ch.Captured)
	assert.Zero(t, ch.AmountCaptured)

	ch = h.post("/v1/charges", h.key(), `{"amount":500,"currency":"eur","payment_method":"tok_visa","capture":true}`).charge(t)
	assert.Equal(t, "succeeded", ch.Status)
}

func TestCreateChargeValidation(t *testing.T) {
	long := func(n int) string { return strings.Repeat("é", n) } // characters, not bytes
	metadata := func(n int) string {
		kv := make([]string, n)
		for i := range kv {
			kv[i] = fmt.Sprintf(`"k%d":"v"`, i)
		}
		return `{` + strings.Join(kv, ",") + `}`
	}
	ok := `"currency":"usd","payment_method":"tok_visa"`
	tests := []struct {
		name, body, contentType string
		code, param             string
	}{
		{"malformed JSON", `{"amount":`, "", "invalid_json", ""},
		{"not an object", `[1,2]`, "", "invalid_json", ""},
		{"null body", `null`, "", "invalid_json", ""},
		{"wrong content type", `{"amount":100,` + ok + `}`, "text/plain", "invalid_content_type", ""},
		// A form is Stripe's dialect (docs/protocol.md §9), read as one.
		{"form content type", `amount=100`, "application/x-www-form-urlencoded", "parameter_missing", "currency"},
		{"unknown field", `{"amount":100,` + ok + `,"amout":1}`, "", "parameter_unknown", "amout"},
		{"field in wrong case", `{"Amount":100,` + ok + `}`, "", "parameter_unknown", "Amount"},
		{"first unknown field in order", `{"zz":1,"amount":100,` + ok + `,"aa":1}`, "", "parameter_unknown", "aa"},
		{"empty body", ``, "", "parameter_missing", "amount"},
		{"amount missing", `{` + ok + `}`, "", "parameter_missing", "amount"},
		{"amount null", `{"amount":null,` + ok + `}`, "", "parameter_missing", "amount"},
		{"amount a string", `{"amount":"100",` + ok + `}`, "", "parameter_invalid_integer", "amount"},
		{"amount a fraction", `{"amount":10.5,` + ok + `}`, "", "parameter_invalid_integer", "amount"},
		{"amount with a point", `{"amount":100.0,` + ok + `}`, "", "parameter_invalid_integer", "amount"},
		{"amount an exponent", `{"amount":1e3,` + ok + `}`, "", "parameter_invalid_integer", "amount"},
		{"amount a boolean", `{"amount":true,` + ok + `}`, "", "parameter_invalid_integer", "amount"},
		{"amount zero", `{"amount":0,` + ok + `}`, "", "amount_too_small", "amount"},
		{"amount negative", `{"amount":-5,` + ok + `}`, "", "amount_too_small", "amount"},
		{"amount too large", `{"amount":100000000,` + ok + `}`, "", "amount_too_large", "amount"},
		{"amount overflows", `{"amount":99999999999999999999999,` + ok + `}`, "", "amount_too_large", "amount"},
		{"currency missing", `{"amount":100,"payment_method":"tok_visa"}`, "", "parameter_missing", "currency"},
		{"currency unknown", `{"amount":100,"currency":"usx","payment_method":"tok_visa"}`, "", "invalid_currency", "currency"},
		{"currency too long", `{"amount":100,"currency":"usdd","payment_method":"tok_visa"}`, "", "invalid_currency", "currency"},
		{"currency a number", `{"amount":100,"currency":840,"payment_method":"tok_visa"}`, "", "parameter_invalid_string", "currency"},
		{"payment method missing", `{"amount":100,"currency":"usd"}`, "", "parameter_missing", "payment_method"},
		{"payment method an object", `{"amount":100,"currency":"usd","payment_method":{}}`, "", "parameter_invalid_string", "payment_method"},
		{"unknown token", `{"amount":100,"currency":"usd","payment_method":"tok_unknown"}`, "", "invalid_payment_method", "payment_method"},
		{"description a number", `{"amount":100,` + ok + `,"description":5}`, "", "parameter_invalid_string", "description"},
		{"description too long", `{"amount":100,` + ok + `,"description":"` + long(1001) + `"}`, "", "parameter_too_long", "description"},
		{"metadata an array", `{"amount":100,` + ok + `,"metadata":["a"]}`, "", "parameter_invalid_object", "metadata"},
		{"metadata value a number", `{"amount":100,` + ok + `,"metadata":{"a":1}}`, "", "invalid_metadata", "metadata"},
		{"metadata empty key", `{"amount":100,` + ok + `,"metadata":{"":"x"}}`, "", "invalid_metadata", "metadata"},
		{"metadata key too long", `{"amount":100,` + ok + `,"metadata":{"` + long(41) + `":"x"}}`, "", "invalid_metadata", "metadata"},
		{"metadata value too long", `{"amount":100,` + ok + `,"metadata":{"k":"` + long(501) + `"}}`, "", "invalid_metadata", "metadata"},
		{"metadata too many keys", `{"amount":100,` + ok + `,"metadata":` + metadata(51) + `}`, "", "invalid_metadata", "metadata"},
		{"capture a string", `{"amount":100,` + ok + `,"capture":"no"}`, "", "parameter_invalid_boolean", "capture"},
	}
	h := setup(t)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			key := h.key()
			r := h.send(req{method: "POST", path: "/v1/charges", apiKey: keyA, idemKey: key, body: tc.body, contentType: tc.contentType})
			require.Equal(t, http.StatusBadRequest, r.Status, "%s", r.Body)
			e := r.err(t)
			assert.Equal(t, "invalid_request_error", e.Type)
			assert.Equal(t, tc.code, e.Code)
			assert.Equal(t, tc.param, e.Param)
			assert.NotEmpty(t, e.Message)

			// Not stored: the key is free for the corrected request.
			ch := h.post("/v1/charges", key, chargeBody(100)).charge(t)
			assert.Equal(t, int64(100), ch.Amount)
		})
	}
}

func TestCreateChargeLimitsAccepted(t *testing.T) {
	h := setup(t)
	long := func(n int) string { return strings.Repeat("é", n) }
	kv := make([]string, 50)
	for i := range kv {
		kv[i] = fmt.Sprintf(`"%s":"%s"`, fmt.Sprint(i)+long(40-len(fmt.Sprint(i))), long(500))
	}
	body := `{"amount":99999999,"currency":"JPY","payment_method":"tok_visa","description":"` + long(1000) +
		`","metadata":{` + strings.Join(kv, ",") + `},"capture":null}`
	ch := h.post("/v1/charges", h.key(), body).charge(t)
	assert.Equal(t, int64(99999999), ch.Amount)
	assert.Equal(t, "jpy", ch.Currency)
	assert.Len(t, ch.Metadata, 50)
	assert.True(t, ch.Captured, "capture null means the default")

	ch = h.send(req{method: "POST", path: "/v1/charges", apiKey: keyA, idemKey: h.key(),
		body: chargeBody(1), contentType: "application/json; charset=utf-8"}).charge(t)
	assert.Equal(t, int64(1), ch.Amount)
}

func TestTestCards(t *testing.T) {
	tests := []struct {
		token   string
		status  int
		decline string
	}{
		{"tok_visa", 200, ""},
		{"tok_mastercard", 200, ""},
		{"tok_chargeDeclined", 402, "generic_decline"},
		{"tok_chargeDeclinedInsufficientFunds", 402, "insufficient_funds"},
	}
	for _, tc := range tests {
		t.Run(tc.token, func(t *testing.T) {
			h := setup(t)
			body := `{"amount":1000,"currency":"usd","payment_method":"` + tc.token + `"}`
			first := h.post("/v1/charges", "k", body)
			require.Equal(t, tc.status, first.Status, "%s", first.Body)
			if tc.decline != "" {
				e := first.err(t)
				assert.Equal(t, apiErr{Type: "card_error", Code: "card_declined", Message: e.Message,
					Param: "payment_method", DeclineCode: tc.decline}, e)
				assert.Empty(t, h.srv.Charges(), "a decline creates no charge")
			} else {
				assert.Len(t, h.srv.Charges(), 1)
			}
			// Executed, so stored: the retry replays it, decline included.
			again := h.post("/v1/charges", "k", body)
			assert.True(t, again.replayed())
			assert.Equal(t, first.Status, again.Status)
			assert.Equal(t, first.Body, again.Body)
		})
	}
}

func TestGetCharge(t *testing.T) {
	h := setup(t)
	ch := h.charge(700)
	got := h.get("/v1/charges/" + ch.ID).charge(t)
	assert.Equal(t, ch, got)

	r := h.get("/v1/charges/ch_missing")
	require.Equal(t, http.StatusNotFound, r.Status)
	assert.Equal(t, apiErr{Type: "invalid_request_error", Code: "resource_missing", Param: "id", Message: r.err(t).Message}, r.err(t))

	r = h.get("/v1/charges/" + ch.ID + "?expand=x")
	require.Equal(t, http.StatusBadRequest, r.Status)
	assert.Equal(t, "expand", r.err(t).Param)
}

func TestListCharges(t *testing.T) {
	h := setup(t)
	var ids []string
	for i := range 5 {
		ids = append(ids, h.charge(100+i).ID)
	}
	type list struct {
		Object  string        `json:"object"`
		Data    []mock.Charge `json:"data"`
		HasMore bool          `json:"has_more"`
	}
	page := func(query string) (list, *resp) {
		r := h.get("/v1/charges" + query)
		var l list
		if r.Status == http.StatusOK {
			require.NoError(t, json.Unmarshal(r.Body, &l))
		}
		return l, r
	}
	idsOf := func(l list) (out []string) {
		for _, c := range l.Data {
			out = append(out, c.ID)
		}
		return out
	}

	l, _ := page("")
	assert.Equal(t, "list", l.Object)
	assert.Equal(t, []string{ids[4], ids[3], ids[2], ids[1], ids[0]}, idsOf(l), "newest first")
	assert.False(t, l.HasMore)

	l, _ = page("?limit=2")
	assert.Equal(t, []string{ids[4], ids[3]}, idsOf(l))
	assert.True(t, l.HasMore)
	l, _ = page("?limit=2&starting_after=" + ids[3])
	assert.Equal(t, []string{ids[2], ids[1]}, idsOf(l))
	assert.True(t, l.HasMore)
	l, _ = page("?limit=2&starting_after=" + ids[1])
	assert.Equal(t, []string{ids[0]}, idsOf(l))
	assert.False(t, l.HasMore)
	l, _ = page("?starting_after=" + ids[0])
	assert.Empty(t, l.Data)
	assert.NotNil(t, l.Data, "data is [] rather than null")
	assert.False(t, l.HasMore)
	l, _ = page("?limit=100")
	assert.Len(t, l.Data, 5)

	for _, tc := range []struct{ query, code, param string }{
		{"?limit=0", "parameter_invalid_integer", "limit"},
		{"?limit=101", "parameter_invalid_integer", "limit"},
		{"?limit=ten", "parameter_invalid_integer", "limit"},
		{"?limit=", "parameter_invalid_integer", "limit"},
		{"?created=1", "parameter_unknown", "created"},
	} {
		_, r := page(tc.query)
		require.Equal(t, http.StatusBadRequest, r.Status, tc.query)
		assert.Equal(t, tc.code, r.err(t).Code, tc.query)
		assert.Equal(t, tc.param, r.err(t).Param, tc.query)
	}
	_, r := page("?starting_after=ch_nope")
	require.Equal(t, http.StatusNotFound, r.Status)
	assert.Equal(t, "resource_missing", r.err(t).Code)
	assert.Equal(t, "starting_after", r.err(t).Param)
}

func TestCapture(t *testing.T) {
	h := setup(t)
	auth := func() mock.Charge {
		return h.post("/v1/charges", h.key(), `{"amount":1000,"currency":"usd","payment_method":"tok_visa","capture":false}`).charge(t)
	}

	t.Run("full, with an empty body and no content type", func(t *testing.T) {
		ch := auth()
		r := h.send(req{method: "POST", path: "/v1/charges/" + ch.ID + "/capture", apiKey: keyA, idemKey: h.key()})
		got := r.charge(t)
		assert.Equal(t, "succeeded", got.Status)
		assert.True(t, got.Captured)
		assert.Equal(t, int64(1000), got.AmountCaptured)
		assert.Equal(t, got, h.get("/v1/charges/"+ch.ID).charge(t))
	})
	t.Run("partial", func(t *testing.T) {
		ch := auth()
		got := h.post("/v1/charges/"+ch.ID+"/capture", h.key(), `{"amount":600}`).charge(t)
		assert.Equal(t, int64(600), got.AmountCaptured)
		assert.Equal(t, int64(1000), got.Amount)
	})
	t.Run("more than the amount is stored", func(t *testing.T) {
		ch := auth()
		key := h.key()
		r := h.post("/v1/charges/"+ch.ID+"/capture", key, `{"amount":1001}`)
		require.Equal(t, http.StatusBadRequest, r.Status)
		assert.Equal(t, "amount_too_large", r.err(t).Code)
		assert.Equal(t, "amount", r.err(t).Param)
		again := h.post("/v1/charges/"+ch.ID+"/capture", key, `{"amount":1001}`)
		assert.True(t, again.replayed())
		assert.Equal(t, r.Body, again.Body)
	})
	t.Run("twice under a new key is stored", func(t *testing.T) {
		ch := auth()
		h.post("/v1/charges/"+ch.ID+"/capture", h.key(), `{}`).charge(t)
		key := h.key()
		r := h.post("/v1/charges/"+ch.ID+"/capture", key, `{}`)
		require.Equal(t, http.StatusBadRequest, r.Status)
		assert.Equal(t, "charge_already_captured", r.err(t).Code)
		assert.True(t, h.post("/v1/charges/"+ch.ID+"/capture", key, `{}`).replayed())
	})
	t.Run("a charge captured at creation", func(t *testing.T) {
		ch := h.charge(300)
		r := h.post("/v1/charges/"+ch.ID+"/capture", h.key(), `{}`)
		assert.Equal(t, "charge_already_captured", r.err(t).Code)
	})
	t.Run("unknown charge is not stored", func(t *testing.T) {
		key := h.key()
		r := h.post("/v1/charges/ch_missing/capture", key, `{}`)
		require.Equal(t, http.StatusNotFound, r.Status)
		assert.Equal(t, apiErr{Type: "invalid_request_error", Code: "resource_missing", Param: "id", Message: r.err(t).Message}, r.err(t))
		r = h.post("/v1/charges/ch_missing/capture", key, `{}`)
		assert.False(t, r.replayed(), "the 404 was not stored")
		assert.Equal(t, http.StatusNotFound, r.Status)
	})
	t.Run("validation", func(t *testing.T) {
		ch := auth()
		for _, tc := range []struct{ body, code, param string }{
			{`{"amount":0}`, "amount_too_small", "amount"},
			{`{"amount":"5"}`, "parameter_invalid_integer", "amount"},
			{`{"amount":5,"currency":"usd"}`, "parameter_unknown", "currency"},
		} {
			key := h.key()
			r := h.post("/v1/charges/"+ch.ID+"/capture", key, tc.body)
			require.Equal(t, http.StatusBadRequest, r.Status, tc.body)
			assert.Equal(t, tc.code, r.err(t).Code, tc.body)
			assert.Equal(t, tc.param, r.err(t).Param, tc.body)
		}
		assert.False(t, h.get("/v1/charges/"+ch.ID).charge(t).Captured)
	})
}

func TestBodyTooLarge(t *testing.T) {
	h := setup(t)
	key := h.key()
	big := `{"amount":100,"currency":"usd","payment_method":"tok_visa","description":"` + strings.Repeat("x", 1<<20) + `"}`
	r := h.post("/v1/charges", key, big)
	require.Equal(t, http.StatusRequestEntityTooLarge, r.Status)
	assert.Equal(t, "body_too_large", r.err(t).Code)
	h.post("/v1/charges", key, chargeBody(100)).charge(t) // the key is free

	// Without a key, in lenient mode, the handler enforces the limit itself.
	h = setup(t, mock.WithOptionalKey())
	r = h.post("/v1/charges", "", big)
	require.Equal(t, http.StatusRequestEntityTooLarge, r.Status)
	assert.Equal(t, "body_too_large", r.err(t).Code)
	assert.Empty(t, h.srv.Charges())
}

func TestUnknownRoutes(t *testing.T) {
	h := setup(t)
	for _, rq := range []req{
		{method: "POST", path: "/v1/charge"},
		{method: "POST", path: "/v1/charges/"},
		{method: "GET", path: "/v1/charges/"},
		{method: "POST", path: "/v1//charges"},
		{method: "POST", path: "/v1/../v1/charges"},
		{method: "DELETE", path: "/v1/charges"},
		{method: "PUT", path: "/v1/refunds"},
		{method: "GET", path: "/"},
		{method: "POST", path: "/v1/charges/ch_1/capture/now"},
	} {
		key := h.key()
		rq.apiKey, rq.idemKey, rq.body = keyA, key, chargeBody(100)
		r := h.send(rq)
		require.Equal(t, http.StatusNotFound, r.Status, "%s %s: %s", rq.method, rq.path, r.Body)
		assert.Equal(t, "unknown_route", r.err(t).Code)
		// The key was not consumed.
		h.post("/v1/charges", key, chargeBody(100)).charge(t)
	}
	// An unknown route needs no idempotency key, and says so first.
	r := h.send(req{method: "POST", path: "/v1/nope", apiKey: keyA, body: `{}`})
	assert.Equal(t, "unknown_route", r.err(t).Code)
}

// Charges without metadata share one empty map inside the gateway: what
// Charges returns is the caller's own, and writing into it changes no
// charge.
func TestChargesMetadataIsTheCallers(t *testing.T) {
	h := setup(t)
	a := h.charge(100)
	h.charge(200)
	ledger := h.srv.Charges()
	require.Len(t, ledger, 2)
	ledger[0].Metadata["order"] = "1"
	for _, c := range h.srv.Charges() {
		assert.Equal(t, map[string]string{}, c.Metadata)
	}
	assert.Equal(t, map[string]string{}, h.get("/v1/charges/"+a.ID).charge(t).Metadata)
}
