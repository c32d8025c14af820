package mock_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/idempotency"
	"github.com/payonce/payonce/mock"
)

func TestReplayIsByteForByte(t *testing.T) {
	h := setup(t)
	first := h.post("/v1/charges", "order_1001", `{"amount":1001,"currency":"usd","payment_method":"tok_visa","metadata":{"b":"2","a":"1"}}`)
	require.Equal(t, http.StatusOK, first.Status)

	for _, tc := range []struct{ name, key, body string }{
		{"same bytes", "order_1001", `{"amount":1001,"currency":"usd","payment_method":"tok_visa","metadata":{"b":"2","a":"1"}}`},
		{"quoted key", `"order_1001"`, `{"amount":1001,"currency":"usd","payment_method":"tok_visa","metadata":{"b":"2","a":"1"}}`},
		{"other key order and spacing", "order_1001", "{ \"metadata\": {\"a\":\"1\", \"b\":\"2\"},\n \"payment_method\":\"tok_visa\", \"currency\":\"usd\", \"amount\":1001 }"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			again := h.post("/v1/charges", tc.key, tc.body)
			assert.Equal(t, first.Status, again.Status)
			assert.Equal(t, first.Body, again.Body)
			assert.Equal(t, "true", again.Header.Get("Idempotent-Replayed"))
			assert.Equal(t, first.Header.Get("Content-Type"), again.Header.Get("Content-Type"))
			assert.NotEqual(t, first.Header.Get("Request-Id"), again.Header.Get("Request-Id"), "Request-Id is fresh")
			assert.Regexp(t, `^req_`, again.Header.Get("Request-Id"))
		})
	}
	assert.Len(t, h.srv.Charges(), 1)
	assert.Equal(t, "order_1001", h.srv.Charges()[0].IdempotencyKey)
}

// The bug stateless mocks miss: one key, two amounts.
func TestKeyReusedWithAnotherAmount(t *testing.T) {
	for _, tc := range []struct {
		name   string
		opts   []mock.Option
		status int
	}{
		{"default 422", nil, http.StatusUnprocessableEntity},
		{"Stripe's 400", []mock.Option{mock.WithMismatchStatus(400)}, http.StatusBadRequest},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := setup(t, tc.opts...)
			first := h.post("/v1/charges", "order_1001", chargeBody(1001))
			first.charge(t)
			r := h.post("/v1/charges", "order_1001", chargeBody(1002))
			require.Equal(t, tc.status, r.Status)
			assert.Equal(t, apiErr{Type: "idempotency_error", Code: "idempotency_key_reused", Message: r.err(t).Message}, r.err(t))
			assert.Regexp(t, `^req_`, r.Header.Get("Request-Id"))
			require.Len(t, h.srv.Charges(), 1)
			assert.Equal(t, int64(1001), h.srv.Charges()[0].Amount)
			// The record is untouched: the original still replays.
			assert.Equal(t, first.Body, h.post("/v1/charges", "order_1001", chargeBody(1001)).Body)
		})
	}
	_, err := mock.New(mock.WithMismatchStatus(409))
	assert.Error(t, err)
}

func TestKeyReusedOnAnotherEndpoint(t *testing.T) {
	h := setup(t)
	ch := h.post("/v1/charges", "k", chargeBody(100)).charge(t)
	r := h.post("/v1/refunds", "k", `{"charge":"`+ch.ID+`"}`)
	require.Equal(t, http.StatusUnprocessableEntity, r.Status)
	assert.Equal(t, "idempotency_key_reused", r.err(t).Code)
	assert.Zero(t, h.get("/v1/charges/"+ch.ID).charge(t).AmountRefunded)
}

func TestMissingAndInvalidKeys(t *testing.T) {
	h := setup(t)
	r := h.post("/v1/charges", "", chargeBody(100))
	require.Equal(t, http.StatusBadRequest, r.Status)
	assert.Equal(t, apiErr{Type: "idempotency_error", Code: "idempotency_key_missing", Message: r.err(t).Message}, r.err(t))

	for _, key := range []string{
		`""`, `"unbalanced`, `"a"b"`, `"bad\escape"`, "with space", "tab\there", "ünïcode",
		strings.Repeat("k", 256), `"` + strings.Repeat("k", 256) + `"`,
	} {
		r := h.post("/v1/charges", key, chargeBody(100))
		require.Equal(t, http.StatusBadRequest, r.Status, "%q", key)
		assert.Equal(t, "idempotency_key_invalid", r.err(t).Code, "%q", key)
	}
	assert.Empty(t, h.srv.Charges())

	// Two Idempotency-Key lines are refused too.
	hr, _ := http.NewRequest("POST", h.srv.URL+"/v1/charges", strings.NewReader(chargeBody(100)))
	hr.Header.Set("Authorization", "Bearer "+keyA)
	hr.Header.Add("Idempotency-Key", "a")
	hr.Header.Add("Idempotency-Key", "b")
	res, err := h.c.Do(hr)
	require.NoError(t, err)
	res.Body.Close()
	assert.Equal(t, http.StatusBadRequest, res.StatusCode)

	// The longest key, and the escapes, are fine.
	h.post("/v1/charges", strings.Repeat("k", 255), chargeBody(100)).charge(t)
	ch := h.post("/v1/charges", `"a\"b\\c"`, chargeBody(100)).charge(t)
	assert.Equal(t, `a"b\c`, h.srv.Charges()[1].IdempotencyKey)
	assert.Equal(t, ch.ID, h.srv.Charges()[1].ID)

	// GETs ignore keys, even invalid ones.
	r = h.send(req{method: "GET", path: "/v1/charges/" + ch.ID, apiKey: keyA, idemKey: "not valid"})
	assert.Equal(t, http.StatusOK, r.Status)
}

// Lenient mode lets keyless POSTs through, and each one executes.
func TestOptionalKey(t *testing.T) {
	h := setup(t, mock.WithOptionalKey())
	a := h.post("/v1/charges", "", chargeBody(1500)).charge(t)
	b := h.post("/v1/charges", "", chargeBody(1500)).charge(t)
	assert.NotEqual(t, a.ID, b.ID, "the double charge a missing key allows")
	assert.Len(t, h.srv.SuspectedDuplicates(time.Minute), 1)

	// Keyed requests are still held to their key.
	h.post("/v1/charges", "k", chargeBody(1)).charge(t)
	assert.True(t, h.post("/v1/charges", "k", chargeBody(1)).replayed())
	assert.Equal(t, http.StatusUnprocessableEntity, h.post("/v1/charges", "k", chargeBody(2)).Status)

	stats := h.srv.Stats()
	assert.Equal(t, int64(3), stats.Executed)
	assert.Zero(t, stats.MissingKey)
}

// However many identical requests race, exactly one executes and the
// others get 409 while it is in flight.
func TestRacingIdenticalRequests(t *testing.T) {
	h := setup(t)
	release := make(chan struct{})
	require.NoError(t, h.srv.InjectFault(mock.Fault{Kind: mock.Delay, Method: "POST", Path: "/v1/charges", Release: release}))

	const n = 32
	results := make(chan *resp, n)
	var wg sync.WaitGroup
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := h.try(h.c, req{method: "POST", path: "/v1/charges", apiKey: keyA, idemKey: "cart_77", body: chargeBody(1500)})
			if !assert.NoError(t, err) {
				r = &resp{}
			}
			results <- r
		}()
	}
	// The one that claimed the key is held; every other one gets 409.
	for range n - 1 {
		r := recv(t, results)
		require.Equal(t, http.StatusConflict, r.Status, "%s", r.Body)
		assert.Equal(t, "1", r.Header.Get("Retry-After"))
		assert.Equal(t, apiErr{Type: "idempotency_error", Code: "idempotency_key_in_use", Message: r.err(t).Message}, r.err(t))
	}
	assert.Empty(t, h.srv.Charges(), "nothing executed while held")
	close(release)
	wg.Wait()
	first := recv(t, results)
	ch := first.charge(t)
	assert.False(t, first.replayed())

	require.Len(t, h.srv.Charges(), 1)
	assert.Equal(t, ch.ID, h.srv.Charges()[0].ID)
	again := h.post("/v1/charges", "cart_77", chargeBody(1500))
	assert.True(t, again.replayed())
	assert.Equal(t, first.Body, again.Body)

	stats := h.srv.Stats()
	assert.Equal(t, int64(n-1), stats.Conflicts)
	assert.Equal(t, int64(1), stats.Executed)
	assert.Equal(t, int64(1), stats.Replayed)
}

// Without any fault holding the first, a racing crowd still gives one charge.
func TestRacingWithoutDelay(t *testing.T) {
	h := setup(t)
	const n = 50
	var wg sync.WaitGroup
	statuses := make(chan int, n)
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := h.try(h.c, req{method: "POST", path: "/v1/charges", apiKey: keyA, idemKey: "same", body: chargeBody(10)})
			if assert.NoError(t, err) {
				statuses <- r.Status
			}
		}()
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		assert.Contains(t, []int{200, 409}, s)
	}
	assert.Len(t, h.srv.Charges(), 1)
}

// While a request is in flight, the same key with another body gets 422,
// not 409: the fingerprint is checked first.
func TestInFlightMismatch(t *testing.T) {
	h := setup(t)
	release, holding := make(chan struct{}), make(chan struct{})
	require.NoError(t, h.srv.InjectFault(mock.Fault{Kind: mock.Delay, Path: "/v1/charges", Release: release, Holding: holding}))
	done := make(chan *resp)
	go func() { done <- h.post("/v1/charges", "k", chargeBody(100)) }()
	recv(t, holding)

	r := h.post("/v1/charges", "k", chargeBody(200))
	assert.Equal(t, http.StatusUnprocessableEntity, r.Status)
	r = h.post("/v1/charges", "k", chargeBody(100))
	assert.Equal(t, http.StatusConflict, r.Status)

	close(release)
	assert.Equal(t, int64(100), recv(t, done).charge(t).Amount)
	assert.Len(t, h.srv.Charges(), 1)
}

// Keys expire after the TTL, on the gateway's clock: no waiting.
func TestKeyExpiry(t *testing.T) {
	h := setup(t, mock.WithTTL(time.Hour))
	first := h.post("/v1/charges", "k", chargeBody(100)).charge(t)

	h.srv.AdvanceClock(59 * time.Minute)
	r := h.post("/v1/charges", "k", chargeBody(100))
	assert.True(t, r.replayed())
	assert.Equal(t, first.ID, r.charge(t).ID)
	assert.Equal(t, http.StatusUnprocessableEntity, h.post("/v1/charges", "k", chargeBody(200)).Status)

	h.srv.AdvanceClock(time.Minute)
	second := h.post("/v1/charges", "k", chargeBody(200))
	assert.False(t, second.replayed(), "expired: the key is free, even for another body")
	ch := second.charge(t)
	assert.NotEqual(t, first.ID, ch.ID)
	assert.Equal(t, first.Created+3600, ch.Created, "the clock dates charges")

	_, err := mock.New(mock.WithTTL(0))
	assert.Error(t, err)
	assert.Panics(t, func() { h.srv.AdvanceClock(-time.Second) })
}

func TestDefaultTTLIs24Hours(t *testing.T) {
	h := setup(t)
	h.post("/v1/charges", "k", chargeBody(100)).charge(t)
	h.srv.AdvanceClock(24*time.Hour - time.Second)
	assert.True(t, h.post("/v1/charges", "k", chargeBody(100)).replayed())
	h.srv.AdvanceClock(time.Second)
	assert.False(t, h.post("/v1/charges", "k", chargeBody(100)).replayed())
	assert.Len(t, h.srv.Charges(), 2)
}

// failingStore cannot answer.
type failingStore struct{ idempotency.Store }

var errDown = errors.New("store down")

func (failingStore) Claim(context.Context, idempotency.Claim) (idempotency.Result, error) {
	return idempotency.Result{}, errDown
}

func TestStoreUnavailable(t *testing.T) {
	h := setup(t, mock.WithStore(failingStore{}))
	r := h.post("/v1/charges", "k", chargeBody(100))
	require.Equal(t, http.StatusServiceUnavailable, r.Status)
	assert.Equal(t, "1", r.Header.Get("Retry-After"))
	assert.Equal(t, apiErr{Type: "api_error", Code: "idempotency_store_unavailable", Message: r.err(t).Message}, r.err(t))
	assert.Empty(t, h.srv.Charges(), "nothing executes")
	assert.Equal(t, mock.OutcomeRejected, h.srv.Requests()[0].Outcome)

	_, err := mock.New(mock.WithStore(nil))
	assert.Error(t, err)
}

// With a store of its own, Reset moves to a fresh scope in it.
func TestWithStoreAndReset(t *testing.T) {
	store := idempotency.NewMemoryStore()
	h := setup(t, mock.WithStore(store))
	first := h.post("/v1/charges", "k", chargeBody(100)).charge(t)
	assert.Equal(t, 1, store.Len(), "the gateway uses the given store")
	h.srv.Reset()
	second := h.post("/v1/charges", "k", chargeBody(200)).charge(t)
	assert.NotEqual(t, first.ID, second.ID)
	assert.True(t, h.post("/v1/charges", "k", chargeBody(200)).replayed())
	assert.Equal(t, 2, store.Len())
}

// Gateways that share a store replay each other's keys; a reset moves one
// of them alone to a scope that no other gateway reaches, even one that has
// been reset as often.
func TestWithStoreSharedAndReset(t *testing.T) {
	store := idempotency.NewMemoryStore()
	a, b := setup(t, mock.WithStore(store)), setup(t, mock.WithStore(store))
	first := a.post("/v1/charges", "k", chargeBody(100)).charge(t)
	res := b.post("/v1/charges", "k", chargeBody(100))
	require.True(t, res.replayed(), "b replays a's key")
	assert.Equal(t, first.ID, res.charge(t).ID)

	a.srv.Reset()
	b.srv.Reset()
	second := a.post("/v1/charges", "k", chargeBody(200))
	assert.False(t, second.replayed())
	third := b.post("/v1/charges", "k", chargeBody(200))
	assert.False(t, third.replayed(), "b's reset shows none of a's records")
	assert.NotEqual(t, second.charge(t).ID, third.charge(t).ID)
	assert.Equal(t, 3, store.Len())
}
