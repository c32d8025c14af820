package mock_test

import (
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/mock"
)

func refundOf(t *testing.T, r *resp) mock.Refund {
	t.Helper()
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	var ref mock.Refund
	require.NoError(t, json.Unmarshal(r.Body, &ref))
	return ref
}

func TestRefunds(t *testing.T) {
	h := setup(t)

	t.Run("what remains by default", func(t *testing.T) {
		ch := h.charge(1000)
		ref := refundOf(t, h.post("/v1/refunds", h.key(), `{"charge":"`+ch.ID+`"}`))
		assert.Regexp(t, `^re_[a-z2-7]{24}$`, ref.ID)
		assert.Equal(t, mock.Refund{ID: ref.ID, Object: "refund", Amount: 1000, Charge: ch.ID, Currency: "usd",
			Status: "succeeded", Metadata: map[string]string{}, Created: h.srv.Now().Unix()}, ref)
		got := h.get("/v1/charges/" + ch.ID).charge(t)
		assert.Equal(t, int64(1000), got.AmountRefunded)
		assert.True(t, got.Refunded)
		assert.Equal(t, ref, refundOf(t, h.get("/v1/refunds/"+ref.ID)))
	})

	t.Run("in parts, then nothing remains", func(t *testing.T) {
		ch := h.charge(1000)
		reason := "requested_by_customer"
		ref := refundOf(t, h.post("/v1/refunds", h.key(),
			`{"charge":"`+ch.ID+`","amount":300,"reason":"requested_by_customer","metadata":{"ticket":"9"}}`))
		assert.Equal(t, int64(300), ref.Amount)
		assert.Equal(t, &reason, ref.Reason)
		assert.Equal(t, map[string]string{"ticket": "9"}, ref.Metadata)
		got := h.get("/v1/charges/" + ch.ID).charge(t)
		assert.Equal(t, int64(300), got.AmountRefunded)
		assert.False(t, got.Refunded)

		key := h.key()
		r := h.post("/v1/refunds", key, `{"charge":"`+ch.ID+`","amount":701}`)
		require.Equal(t, http.StatusBadRequest, r.Status)
		assert.Equal(t, apiErr{Type: "invalid_request_error", Code: "amount_too_large", Param: "amount", Message: r.err(t).Message}, r.err(t))
		again := h.post("/v1/refunds", key, `{"charge":"`+ch.ID+`","amount":701}`)
		assert.True(t, again.replayed(), "a business-rule 400 is stored")
		assert.Equal(t, r.Body, again.Body)

		assert.Equal(t, int64(700), refundOf(t, h.post("/v1/refunds", h.key(), `{"charge":"`+ch.ID+`"}`)).Amount)
		got = h.get("/v1/charges/" + ch.ID).charge(t)
		assert.Equal(t, int64(1000), got.AmountRefunded)
		assert.True(t, got.Refunded)

		key = h.key()
		r = h.post("/v1/refunds", key, `{"charge":"`+ch.ID+`"}`)
		require.Equal(t, http.StatusBadRequest, r.Status)
		assert.Equal(t, "charge_already_refunded", r.err(t).Code)
		assert.True(t, h.post("/v1/refunds", key, `{"charge":"`+ch.ID+`"}`).replayed())
	})

	t.Run("partial capture bounds the refund", func(t *testing.T) {
		ch := h.post("/v1/charges", h.key(), `{"amount":1000,"currency":"usd","payment_method":"tok_visa","capture":false}`).charge(t)
		key := h.key()
		r := h.post("/v1/refunds", key, `{"charge":"`+ch.ID+`"}`)
		require.Equal(t, http.StatusBadRequest, r.Status)
		assert.Equal(t, "charge_not_captured", r.err(t).Code)
		assert.True(t, h.post("/v1/refunds", key, `{"charge":"`+ch.ID+`"}`).replayed(), "stored")

		h.post("/v1/charges/"+ch.ID+"/capture", h.key(), `{"amount":400}`).charge(t)
		assert.Equal(t, int64(400), refundOf(t, h.post("/v1/refunds", h.key(), `{"charge":"`+ch.ID+`"}`)).Amount)
		assert.True(t, h.get("/v1/charges/"+ch.ID).charge(t).Refunded)
	})

	t.Run("unknown charge is not stored", func(t *testing.T) {
		key := h.key()
		r := h.post("/v1/refunds", key, `{"charge":"ch_missing"}`)
		require.Equal(t, http.StatusNotFound, r.Status)
		assert.Equal(t, apiErr{Type: "invalid_request_error", Code: "resource_missing", Param: "charge", Message: r.err(t).Message}, r.err(t))
		ch := h.charge(100)
		refundOf(t, h.post("/v1/refunds", key, `{"charge":"`+ch.ID+`"}`)) // the key was free
	})

	t.Run("validation", func(t *testing.T) {
		ch := h.charge(500)
		for _, tc := range []struct{ body, code, param string }{
			{`{}`, "parameter_missing", "charge"},
			{`{"charge":7}`, "parameter_invalid_string", "charge"},
			{`{"charge":"` + ch.ID + `","amount":0}`, "amount_too_small", "amount"},
			{`{"charge":"` + ch.ID + `","amount":1.5}`, "parameter_invalid_integer", "amount"},
			{`{"charge":"` + ch.ID + `","reason":"changed_mind"}`, "invalid_refund_reason", "reason"},
			{`{"charge":"` + ch.ID + `","reason":1}`, "parameter_invalid_string", "reason"},
			{`{"charge":"` + ch.ID + `","metadata":{"a":true}}`, "invalid_metadata", "metadata"},
			{`{"charge":"` + ch.ID + `","currency":"usd"}`, "parameter_unknown", "currency"},
		} {
			key := h.key()
			r := h.post("/v1/refunds", key, tc.body)
			require.Equal(t, http.StatusBadRequest, r.Status, tc.body)
			assert.Equal(t, tc.code, r.err(t).Code, tc.body)
			assert.Equal(t, tc.param, r.err(t).Param, tc.body)
			// Not stored: the key is free.
			refundOf(t, h.post("/v1/refunds", key, `{"charge":"`+ch.ID+`","amount":1}`))
		}
		for _, reason := range []string{"duplicate", "fraudulent", "requested_by_customer"} {
			refundOf(t, h.post("/v1/refunds", h.key(), `{"charge":"`+ch.ID+`","amount":1,"reason":"`+reason+`"}`))
		}
	})

	t.Run("unknown refund", func(t *testing.T) {
		r := h.get("/v1/refunds/re_missing")
		require.Equal(t, http.StatusNotFound, r.Status)
		assert.Equal(t, "resource_missing", r.err(t).Code)
		assert.Equal(t, "id", r.err(t).Param)
	})
}
