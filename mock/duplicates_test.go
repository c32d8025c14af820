package mock_test

import (
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/mock"
)

func TestSuspectedDuplicates(t *testing.T) {
	h := setup(t, mock.WithTTL(time.Hour))
	charge := func(apiKey, idemKey string, amount int, currency, token string) mock.Charge {
		body := `{"amount":` + strconv.Itoa(amount) + `,"currency":"` + currency + `","payment_method":"` + token + `"}`
		return h.send(req{method: "POST", path: "/v1/charges", apiKey: apiKey, idemKey: idemKey, body: body}).charge(t)
	}

	first := charge(keyA, "order-1", 1000, "usd", "tok_visa")
	charge(keyA, "order-1", 1000, "usd", "tok_visa") // a replay: no new charge
	assert.Empty(t, h.srv.SuspectedDuplicates(time.Minute), "a retry under the same key is no duplicate")

	charge(keyA, "order-2", 1001, "usd", "tok_visa")       // another amount
	charge(keyA, "order-3", 1000, "eur", "tok_visa")       // another currency
	charge(keyA, "order-4", 1000, "usd", "tok_mastercard") // another card
	charge(keyB, "order-1", 1000, "usd", "tok_visa")       // another account
	assert.Empty(t, h.srv.SuspectedDuplicates(time.Minute))

	h.srv.AdvanceClock(30 * time.Second)
	second := charge(keyA, "order-1-retry-with-new-key", 1000, "usd", "tok_visa")
	dups := h.srv.SuspectedDuplicates(time.Minute)
	require.Len(t, dups, 1)
	assert.Equal(t, first.ID, dups[0].First.ID)
	assert.Equal(t, second.ID, dups[0].Second.ID)
	assert.Equal(t, "order-1", dups[0].First.IdempotencyKey)
	assert.Equal(t, "order-1-retry-with-new-key", dups[0].Second.IdempotencyKey)
	assert.Equal(t, mock.AccountID(keyA), dups[0].Second.Account)
	assert.Empty(t, h.srv.SuspectedDuplicates(29*time.Second), "outside a shorter window")

	// A third in a row gives a second pair.
	h.srv.AdvanceClock(time.Second)
	third := charge(keyA, "order-1-third", 1000, "usd", "tok_visa")
	dups = h.srv.SuspectedDuplicates(time.Minute)
	require.Len(t, dups, 2)
	assert.Equal(t, third.ID, dups[1].Second.ID)

	// The same key, executed again after it expired, is not reported.
	h2 := setup(t, mock.WithTTL(time.Minute))
	h2.post("/v1/charges", "k", chargeBody(100)).charge(t)
	h2.srv.AdvanceClock(time.Minute)
	h2.post("/v1/charges", "k", chargeBody(100)).charge(t)
	assert.Len(t, h2.srv.Charges(), 2)
	assert.Empty(t, h2.srv.SuspectedDuplicates(time.Hour))
}
