package payonce

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestChargeLifecycle(t *testing.T) {
	f := newFake(t)
	c := f.client(t)
	ctx := context.Background()

	p := chargeParams("order_auth")
	p.Capture = Bool(false)
	ch, err := c.Charges.Create(ctx, p)
	require.NoError(t, err)
	assert.Equal(t, ChargeStatusRequiresCapture, ch.Status)
	assert.Equal(t, map[string]string{"order": "456"}, ch.Metadata)
	assert.Equal(t, 200, ch.LastResponse.StatusCode)
	assert.Equal(t, 1, ch.LastResponse.Attempts)
	assert.Contains(t, string(f.requests()[0].Body), `"capture":false`)

	got, err := c.Charges.Get(ctx, ch.ID)
	require.NoError(t, err)
	assert.Equal(t, ch.ID, got.ID)
	assert.Empty(t, got.LastResponse.IdempotencyKey, "a GET carries no key")

	capd, err := c.Charges.Capture(ctx, ch.ID, &CaptureParams{Amount: 1500, IdempotencyKey: "capture_auth"})
	require.NoError(t, err)
	assert.True(t, capd.Captured)
	assert.Equal(t, int64(1500), capd.AmountCaptured)
	assert.Equal(t, "capture_auth", capd.LastResponse.IdempotencyKey)

	again, err := c.Charges.Capture(ctx, ch.ID, &CaptureParams{Amount: 1500, IdempotencyKey: "capture_auth"})
	require.NoError(t, err)
	assert.True(t, again.LastResponse.Replayed, "the same key replays the capture")

	_, err = c.Charges.Capture(ctx, ch.ID, nil) // a new generated key: a second capture
	var e *Error
	require.ErrorAs(t, err, &e)
	assert.Equal(t, "charge_already_captured", e.Code)

	re, err := c.Refunds.Create(ctx, &RefundParams{Charge: ch.ID, Amount: 500, Reason: "requested_by_customer", IdempotencyKey: "refund_auth"})
	require.NoError(t, err)
	assert.Equal(t, int64(500), re.Amount)
	assert.Equal(t, ch.ID, re.Charge)
	gotRe, err := c.Refunds.Get(ctx, re.ID)
	require.NoError(t, err)
	assert.Equal(t, re.ID, gotRe.ID)
	_, err = c.Refunds.Create(ctx, &RefundParams{Charge: ch.ID, Amount: 5000})
	require.ErrorIs(t, err, ErrInvalidRequest)
	after, err := c.Charges.Get(ctx, ch.ID)
	require.NoError(t, err)
	assert.Equal(t, int64(500), after.AmountRefunded)
	_, err = c.Refunds.Get(ctx, "re_missing")
	require.ErrorIs(t, err, ErrNotFound)
}

func TestClientSideValidation(t *testing.T) {
	f := newFake(t)
	c := f.client(t)
	ctx := context.Background()
	badIDs := []string{"", "a/b", "../ch_1", "ch_1?x=1", "ch_1#f", "ch%2F1", "ch 1", "ch_1/capture", ".", "é", strings.Repeat("c", 256)}
	for _, id := range badIDs {
		_, err := c.Charges.Get(ctx, id)
		require.ErrorIs(t, err, ErrInvalidRequest, "%q", id)
		_, err = c.Charges.Capture(ctx, id, nil)
		require.ErrorIs(t, err, ErrInvalidRequest, "%q", id)
		_, err = c.Refunds.Get(ctx, id)
		require.ErrorIs(t, err, ErrInvalidRequest, "%q", id)
		_, err = c.Refunds.Create(ctx, &RefundParams{Charge: id})
		require.ErrorIs(t, err, ErrInvalidRequest, "%q", id)
	}
	_, err := c.Charges.Get(ctx, "a/b")
	assert.EqualError(t, err, `payonce: invalid request: get charge: charge id "a/b" has '/' at offset 1; ids contain only letters, digits, '_' and '-'`)

	for name, p := range map[string]*ChargeParams{
		"nil":            nil,
		"zero amount":    {Currency: "usd", PaymentMethod: "tok_visa"},
		"negative":       {Amount: -1, Currency: "usd", PaymentMethod: "tok_visa"},
		"no currency":    {Amount: 1, PaymentMethod: "tok_visa"},
		"no pay. method": {Amount: 1, Currency: "usd"},
	} {
		_, err := c.Charges.Create(ctx, p)
		require.ErrorIs(t, err, ErrInvalidRequest, name)
	}
	_, err = c.Refunds.Create(ctx, nil)
	require.ErrorIs(t, err, ErrInvalidRequest)
	_, err = c.Refunds.Create(ctx, &RefundParams{Charge: "ch_1", Amount: -5})
	require.ErrorIs(t, err, ErrInvalidRequest)
	_, err = c.Charges.Capture(ctx, "ch_1", &CaptureParams{Amount: -5})
	require.ErrorIs(t, err, ErrInvalidRequest)
	for _, p := range []*ChargeListParams{{Limit: -1}, {Limit: 101}, {StartingAfter: "a/b"}} {
		for _, err := range c.Charges.List(ctx, p) {
			require.ErrorIs(t, err, ErrInvalidRequest)
		}
	}
	assert.Empty(t, f.requests(), "nothing invalid was sent")
}

func TestListPaginates(t *testing.T) {
	f := newFake(t)
	c := f.client(t)
	ctx := context.Background()
	for i := range 25 {
		_, err := c.Charges.Create(ctx, chargeParams(fmt.Sprintf("order_%d", i)))
		require.NoError(t, err)
	}
	list := func(p *ChargeListParams, stopAfter int) (ids []string, gets int) {
		before := len(f.requests())
		for ch, err := range c.Charges.List(ctx, p) {
			require.NoError(t, err)
			require.NotNil(t, ch.LastResponse)
			ids = append(ids, ch.ID)
			if len(ids) == stopAfter {
				break
			}
		}
		return ids, len(f.requests()) - before
	}

	ids, gets := list(&ChargeListParams{Limit: 10}, 0)
	require.Len(t, ids, 25)
	assert.Equal(t, "ch_25", ids[0], "newest first")
	assert.Equal(t, "ch_1", ids[24])
	assert.Equal(t, 3, gets)
	reqs := f.requests()
	assert.Equal(t, "limit=10", reqs[len(reqs)-3].Query)
	assert.Equal(t, "limit=10&starting_after=ch_16", reqs[len(reqs)-2].Query)
	assert.Equal(t, "limit=10&starting_after=ch_6", reqs[len(reqs)-1].Query)

	ids, gets = list(&ChargeListParams{Limit: 10}, 12)
	assert.Len(t, ids, 12)
	assert.Equal(t, 2, gets, "breaking out stops fetching")

	ids, gets = list(&ChargeListParams{StartingAfter: "ch_5"}, 0)
	assert.Equal(t, []string{"ch_4", "ch_3", "ch_2", "ch_1"}, ids)
	assert.Equal(t, 1, gets)

	ids, _ = list(nil, 0)
	assert.Len(t, ids, 25, "nil params use the gateway's page size")
}

func TestListStopsAtFirstError(t *testing.T) {
	var n atomic.Int32
	f := newFake(t, func(f *fakeGateway) {
		f.before = func(_ int, w http.ResponseWriter, r *http.Request) bool {
			if r.Method == http.MethodGet && strings.Contains(r.URL.RawQuery, "starting_after") {
				n.Add(1)
				writeErr(w, 400, "invalid_request_error", "bad", "", "no")
				return true
			}
			return false
		}
	})
	c := f.client(t)
	for i := range 3 {
		_, err := c.Charges.Create(context.Background(), chargeParams(fmt.Sprint("o", i)))
		require.NoError(t, err)
	}
	var ids []string
	var errs []error
	for ch, err := range c.Charges.List(context.Background(), &ChargeListParams{Limit: 2}) {
		if err != nil {
			errs = append(errs, err)
			assert.Nil(t, ch)
			continue
		}
		ids = append(ids, ch.ID)
	}
	assert.Equal(t, []string{"ch_3", "ch_2"}, ids)
	require.Len(t, errs, 1)
	require.ErrorIs(t, errs[0], ErrInvalidRequest)
	assert.Equal(t, int32(1), n.Load())
}

func TestListSurvivesAHostileGateway(t *testing.T) {
	var gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gets.Add(1)
		if r.URL.Query().Get("limit") == "7" {
			fmt.Fprint(w, `{"object":"list","data":[null,{"id":"ch_1"}],"has_more":true}`) // a hole in data
			return
		}
		fmt.Fprint(w, `{"object":"list","data":[{"id":"ch_1"}],"has_more":true}`) // never advances
	}))
	defer srv.Close()
	c := (&fakeGateway{URL: srv.URL}).client(t)
	var seen, failures int
	for ch, err := range c.Charges.List(context.Background(), nil) {
		if err != nil {
			failures++
			assert.Contains(t, err.Error(), "does not advance")
			continue
		}
		seen++
		assert.Equal(t, "ch_1", ch.ID)
		if seen > 10 {
			t.Fatal("pagination loops on a page that does not advance")
		}
	}
	assert.Equal(t, 1, failures)
	assert.Equal(t, 2, seen)
	assert.Equal(t, int32(2), gets.Load())

	// A null where a charge should be is a malformed page, not a charge to
	// skip: nothing is yielded but the error.
	seen = 0
	for ch, err := range c.Charges.List(context.Background(), &ChargeListParams{Limit: 7}) {
		require.ErrorIs(t, err, ErrMalformedResponse)
		assert.Nil(t, ch)
		assert.Contains(t, err.Error(), "data[0] is null")
		seen++
	}
	assert.Equal(t, 1, seen)
}
