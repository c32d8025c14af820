package mock_test

import (
	"context"
	"encoding/base64"
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v85"

	"github.com/payonce/payonce/mock"
)

// The real stripe-go, unmodified apart from its URL, against the mock's
// Stripe dialect (docs/protocol.md §9).

// stripeClient starts a gateway and returns stripe-go pointed at it, with
// API key apiKey.
func stripeClient(t *testing.T, apiKey string, opts ...mock.Option) (*stripe.Client, *mock.Server) {
	t.Helper()
	srv := mock.NewServer(append([]mock.Option{mock.WithStartTime(start)}, opts...)...)
	t.Cleanup(srv.Close)
	return stripeClientFor(srv, apiKey), srv
}

func stripeClientFor(srv *mock.Server, apiKey string) *stripe.Client {
	quiet := &stripe.LeveledLogger{Level: stripe.LevelNull}
	return stripe.NewClient(apiKey, stripe.WithBackends(stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL:               stripe.String(srv.URL),
		HTTPClient:        srv.Client(),
		LeveledLogger:     quiet,
		EnableTelemetry:   stripe.Bool(false),
		MaxNetworkRetries: stripe.Int64(0),
	})))
}

func chargeParams(amount int64, pm, key string) *stripe.ChargeCreateParams {
	p := &stripe.ChargeCreateParams{Amount: stripe.Int64(amount), Currency: stripe.String("usd"), Source: &stripe.PaymentSourceSourceParams{Token: stripe.String(pm)}}
	if key != "" {
		p.SetIdempotencyKey(key)
	}
	return p
}

func stripeErr(t *testing.T, err error) *stripe.Error {
	t.Helper()
	var se *stripe.Error
	require.True(t, errors.As(err, &se), "want a *stripe.Error, got %T: %v", err, err)
	return se
}

func TestStripeCharge(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	ctx := context.Background()
	p := chargeParams(2000, "tok_visa", "order_1")
	p.Description = stripe.String("Order 1")
	p.AddMetadata("order", "1")
	ch, err := sc.V1Charges.Create(ctx, p)
	require.NoError(t, err)
	assert.Equal(t, "charge", ch.Object)
	assert.Equal(t, int64(2000), ch.Amount)
	assert.Equal(t, int64(2000), ch.AmountCaptured)
	assert.Equal(t, stripe.Currency("usd"), ch.Currency)
	assert.Equal(t, stripe.ChargeStatusSucceeded, ch.Status)
	assert.True(t, ch.Paid)
	assert.True(t, ch.Captured)
	assert.False(t, ch.Livemode)
	assert.Equal(t, "Order 1", ch.Description)
	assert.Equal(t, map[string]string{"order": "1"}, ch.Metadata)
	assert.Equal(t, start.Unix(), ch.Created)
	assert.Nil(t, ch.PaymentIntent)
	require.NotNil(t, ch.Outcome)
	assert.Equal(t, "authorized", ch.Outcome.Type)
	assert.Equal(t, "approved_by_network", ch.Outcome.NetworkStatus)
	require.NotNil(t, ch.Source)
	require.NotNil(t, ch.Source.Card, "a source charge has its card")
	assert.Equal(t, "4242", ch.Source.Card.Last4)
	require.NotNil(t, ch.PaymentMethodDetails)
	require.NotNil(t, ch.PaymentMethodDetails.Card)
	assert.Equal(t, "4242", ch.PaymentMethodDetails.Card.Last4)
	assert.Equal(t, "order_1", ch.LastResponse.IdempotencyKey)
	assert.NotEmpty(t, ch.LastResponse.RequestID)

	got, err := sc.V1Charges.Retrieve(ctx, ch.ID, nil)
	require.NoError(t, err)
	assert.Equal(t, ch.ID, got.ID)
	assert.Equal(t, ch.Amount, got.Amount)

	// A pm_card_ twin, and an authorization only.
	p = chargeParams(500, "pm_card_mastercard", "")
	p.Capture = stripe.Bool(false)
	auth, err := sc.V1Charges.Create(ctx, p)
	require.NoError(t, err)
	assert.Equal(t, stripe.ChargeStatusSucceeded, auth.Status, "Stripe calls an authorization succeeded")
	assert.False(t, auth.Captured)
	assert.Equal(t, int64(0), auth.AmountCaptured)
	assert.Equal(t, "pm_card_mastercard", auth.PaymentMethod)
	assert.Equal(t, "4444", auth.PaymentMethodDetails.Card.Last4)
	assert.Len(t, srv.Charges(), 2)

	_, err = sc.V1Charges.Retrieve(ctx, "ch_missing", nil)
	se := stripeErr(t, err)
	assert.Equal(t, stripe.ErrorTypeInvalidRequest, se.Type)
	assert.Equal(t, stripe.ErrorCodeResourceMissing, se.Code)
	assert.Equal(t, http.StatusNotFound, se.HTTPStatusCode)
}

func TestStripeReplay(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	ctx := context.Background()
	first, err := sc.V1Charges.Create(ctx, chargeParams(1500, "tok_visa", "cart_7"))
	require.NoError(t, err)
	assert.Empty(t, first.LastResponse.Header.Get("Idempotent-Replayed"))
	again, err := sc.V1Charges.Create(ctx, chargeParams(1500, "tok_visa", "cart_7"))
	require.NoError(t, err)
	assert.Equal(t, first.ID, again.ID)
	assert.Equal(t, "true", again.LastResponse.Header.Get("Idempotent-Replayed"))
	assert.Equal(t, "cart_7", again.LastResponse.IdempotencyKey)
	assert.Equal(t, first.LastResponse.RawJSON, again.LastResponse.RawJSON)
	assert.Len(t, srv.Charges(), 1)
	assert.Empty(t, srv.SuspectedDuplicates(time.Minute))
}

func TestStripeMismatch(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	ctx := context.Background()
	_, err := sc.V1Charges.Create(ctx, chargeParams(1500, "tok_visa", "cart_8"))
	require.NoError(t, err)
	_, err = sc.V1Charges.Create(ctx, chargeParams(1501, "tok_visa", "cart_8"))
	se := stripeErr(t, err)
	assert.Equal(t, stripe.ErrorTypeIdempotency, se.Type)
	assert.Equal(t, http.StatusBadRequest, se.HTTPStatusCode)
	var ie *stripe.IdempotencyError
	assert.True(t, errors.As(err, &ie), "stripe-go maps it to its IdempotencyError")
	assert.Len(t, srv.Charges(), 1)
}

func TestStripeDecline(t *testing.T) {
	for pm, decline := range map[string]stripe.DeclineCode{
		"tok_chargeDeclined":                      stripe.DeclineCodeGenericDecline,
		"pm_card_chargeDeclined":                  stripe.DeclineCodeGenericDecline,
		"tok_chargeDeclinedInsufficientFunds":     stripe.DeclineCodeInsufficientFunds,
		"pm_card_chargeDeclinedInsufficientFunds": stripe.DeclineCodeInsufficientFunds,
	} {
		t.Run(pm, func(t *testing.T) {
			sc, srv := stripeClient(t, keyA)
			ctx := context.Background()
			_, err := sc.V1Charges.Create(ctx, chargeParams(1000, pm, "d1"))
			se := stripeErr(t, err)
			assert.Equal(t, stripe.ErrorTypeCard, se.Type)
			assert.Equal(t, stripe.ErrorCodeCardDeclined, se.Code)
			assert.Equal(t, decline, se.DeclineCode)
			assert.Equal(t, http.StatusPaymentRequired, se.HTTPStatusCode)
			var ce *stripe.CardError
			require.True(t, errors.As(err, &ce))
			assert.Equal(t, decline, ce.DeclineCode)
			require.NotEmpty(t, se.ChargeID, "the error names the failed charge")

			failed, err := sc.V1Charges.Retrieve(ctx, se.ChargeID, nil)
			require.NoError(t, err)
			assert.Equal(t, stripe.ChargeStatusFailed, failed.Status)
			assert.False(t, failed.Paid)
			assert.False(t, failed.Captured)
			assert.Equal(t, "card_declined", failed.FailureCode)
			require.NotNil(t, failed.Outcome)
			assert.Equal(t, "issuer_declined", failed.Outcome.Type)
			assert.Equal(t, string(decline), failed.Outcome.Reason)

			// Stored: the retry replays the decline, and makes no new charge.
			_, err = sc.V1Charges.Create(ctx, chargeParams(1000, pm, "d1"))
			again := stripeErr(t, err)
			assert.Equal(t, se.ChargeID, again.ChargeID)
			assert.Equal(t, "true", again.LastResponse.Header.Get("Idempotent-Replayed"))
			require.Len(t, srv.Charges(), 1)
			assert.Equal(t, mock.StatusFailed, srv.Charges()[0].Status)
		})
	}
}

func TestStripeConcurrentSameKey(t *testing.T) {
	srv := mock.NewServer(mock.WithStartTime(start))
	t.Cleanup(srv.Close)
	sc := stripe.NewClient(keyA, stripe.WithBackends(stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL: stripe.String(srv.URL), HTTPClient: srv.Client(), EnableTelemetry: stripe.Bool(false),
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull}, MaxNetworkRetries: stripe.Int64(10),
	})))
	const n = 20
	ids := make([]string, n) // stripe-go does not retry a 409 with a JSON body: some get it
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch, err := sc.V1Charges.Create(context.Background(), chargeParams(4200, "tok_visa", "race_1"))
			errs[i] = err
			if err == nil {
				ids[i] = ch.ID
			}
		}()
	}
	wg.Wait()
	require.Len(t, srv.Charges(), 1, "one key, one charge")
	for i := range n {
		if errs[i] != nil {
			// Sent while the first still executed: a 409, not stored.
			se := stripeErr(t, errs[i])
			assert.Equal(t, http.StatusConflict, se.HTTPStatusCode)
			assert.Equal(t, stripe.ErrorCodeIdempotencyKeyInUse, se.Code)
			continue
		}
		assert.Equal(t, srv.Charges()[0].ID, ids[i])
	}
}

// An in-flight duplicate gets Stripe's 409, and nothing is stored for it.
func TestStripeInFlightConflict(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	release, holding := make(chan struct{}), make(chan struct{}, 1)
	require.NoError(t, srv.InjectFault(mock.Fault{Kind: mock.Delay, Method: "POST", Path: "/v1/charges",
		Release: release, Holding: holding}))
	done := make(chan error, 1)
	go func() {
		_, err := sc.V1Charges.Create(context.Background(), chargeParams(900, "tok_visa", "slow_1"))
		done <- err
	}()
	<-holding
	_, err := sc.V1Charges.Create(context.Background(), chargeParams(900, "tok_visa", "slow_1"))
	se := stripeErr(t, err)
	assert.Equal(t, http.StatusConflict, se.HTTPStatusCode)
	assert.Equal(t, stripe.ErrorTypeIdempotency, se.Type)
	assert.Equal(t, stripe.ErrorCodeIdempotencyKeyInUse, se.Code)
	close(release)
	require.NoError(t, <-done)
	ch, err := sc.V1Charges.Create(context.Background(), chargeParams(900, "tok_visa", "slow_1"))
	require.NoError(t, err)
	assert.Equal(t, "true", ch.LastResponse.Header.Get("Idempotent-Replayed"))
	assert.Len(t, srv.Charges(), 1)
}

func TestStripeCapture(t *testing.T) {
	sc, _ := stripeClient(t, keyA)
	ctx := context.Background()
	p := chargeParams(3000, "tok_visa", "")
	p.Capture = stripe.Bool(false)
	auth, err := sc.V1Charges.Create(ctx, p)
	require.NoError(t, err)
	require.False(t, auth.Captured)

	cp := &stripe.ChargeCaptureParams{Amount: stripe.Int64(2500)}
	cp.SetIdempotencyKey("cap_1")
	captured, err := sc.V1Charges.Capture(ctx, auth.ID, cp)
	require.NoError(t, err)
	assert.True(t, captured.Captured)
	assert.Equal(t, int64(2500), captured.AmountCaptured)
	assert.Equal(t, stripe.ChargeStatusSucceeded, captured.Status)

	// Captured once: a capture under another key is refused.
	_, err = sc.V1Charges.Capture(ctx, auth.ID, nil)
	se := stripeErr(t, err)
	assert.Equal(t, stripe.ErrorCodeChargeAlreadyCaptured, se.Code)
}

func TestStripeRefund(t *testing.T) {
	sc, _ := stripeClient(t, keyA)
	ctx := context.Background()
	ch, err := sc.V1Charges.Create(ctx, chargeParams(1000, "pm_card_visa", "r1"))
	require.NoError(t, err)

	rp := &stripe.RefundCreateParams{Charge: stripe.String(ch.ID), Amount: stripe.Int64(600),
		Reason: stripe.String(string(stripe.RefundReasonRequestedByCustomer))}
	rp.AddMetadata("ticket", "T-1")
	ref, err := sc.V1Refunds.Create(ctx, rp)
	require.NoError(t, err)
	assert.Equal(t, "refund", ref.Object)
	assert.Equal(t, int64(600), ref.Amount)
	require.NotNil(t, ref.Charge)
	assert.Equal(t, ch.ID, ref.Charge.ID)
	assert.Equal(t, stripe.RefundStatusSucceeded, ref.Status)
	assert.Equal(t, stripe.RefundReasonRequestedByCustomer, ref.Reason)
	assert.Equal(t, map[string]string{"ticket": "T-1"}, ref.Metadata)

	got, err := sc.V1Refunds.Retrieve(ctx, ref.ID, nil)
	require.NoError(t, err)
	assert.Equal(t, ref.ID, got.ID)

	// 400 remain: 500 is too much.
	_, err = sc.V1Refunds.Create(ctx, &stripe.RefundCreateParams{Charge: stripe.String(ch.ID), Amount: stripe.Int64(500)})
	se := stripeErr(t, err)
	assert.Equal(t, stripe.ErrorTypeInvalidRequest, se.Type)
	assert.Equal(t, stripe.ErrorCodeAmountTooLarge, se.Code)

	rest, err := sc.V1Refunds.Create(ctx, &stripe.RefundCreateParams{Charge: stripe.String(ch.ID)})
	require.NoError(t, err)
	assert.Equal(t, int64(400), rest.Amount)
	after, err := sc.V1Charges.Retrieve(ctx, ch.ID, nil)
	require.NoError(t, err)
	assert.Equal(t, int64(1000), after.AmountRefunded)
	assert.True(t, after.Refunded)

	_, err = sc.V1Refunds.Create(ctx, &stripe.RefundCreateParams{Charge: stripe.String(ch.ID), Amount: stripe.Int64(1)})
	assert.Equal(t, stripe.ErrorCodeChargeAlreadyRefunded, stripeErr(t, err).Code)
}

func TestStripeAutoPagingList(t *testing.T) {
	sc, _ := stripeClient(t, keyA)
	ctx := context.Background()
	const n = 25
	want := make([]string, n)
	for i := range n {
		ch, err := sc.V1Charges.Create(ctx, chargeParams(int64(100+i), "tok_visa", ""))
		require.NoError(t, err)
		want[n-1-i] = ch.ID // newest first
	}
	lp := &stripe.ChargeListParams{}
	lp.Limit = stripe.Int64(10)
	var got []string
	for ch, err := range sc.V1Charges.List(ctx, lp).All(ctx) {
		require.NoError(t, err)
		got = append(got, ch.ID)
	}
	assert.Equal(t, want, got, "three pages, in order, nothing twice")

	// ending_before pages towards the newest.
	lp = &stripe.ChargeListParams{}
	lp.Limit = stripe.Int64(10)
	lp.EndingBefore = stripe.String(want[n-1])
	got = nil
	for ch, err := range sc.V1Charges.List(ctx, lp).All(ctx) {
		require.NoError(t, err)
		got = append(got, ch.ID)
	}
	assert.ElementsMatch(t, want[:n-1], got)
}

func TestStripeAccountScopesKeys(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	ctx := context.Background()
	var ids []string
	for _, acct := range []string{"acct_one", "acct_two", "acct_one"} {
		p := chargeParams(700, "tok_visa", "shared_key")
		p.SetStripeAccount(acct)
		ch, err := sc.V1Charges.Create(ctx, p)
		require.NoError(t, err, acct)
		ids = append(ids, ch.ID)
	}
	assert.NotEqual(t, ids[0], ids[1], "the same key under two accounts: two charges")
	assert.Equal(t, ids[0], ids[2], "under the same account: a replay")
	assert.Len(t, srv.Charges(), 2)

	// Another API key is another scope, too.
	other := stripeClientFor(srv, keyB)
	p := chargeParams(700, "tok_visa", "shared_key")
	p.SetStripeAccount("acct_one")
	ch, err := other.V1Charges.Create(ctx, p)
	require.NoError(t, err)
	assert.NotContains(t, ids, ch.ID)
	assert.Len(t, srv.Charges(), 3)

	// A connected account's charges are its own.
	_, err = sc.V1Charges.Retrieve(ctx, ids[0], nil)
	assert.Equal(t, stripe.ErrorCodeResourceMissing, stripeErr(t, err).Code)
	rp := &stripe.ChargeRetrieveParams{}
	rp.SetStripeAccount("acct_one")
	got, err := sc.V1Charges.Retrieve(ctx, ids[0], rp)
	require.NoError(t, err)
	assert.Equal(t, ids[0], got.ID)
}

// Faults apply to the Stripe dialect too. stripe-go retries a network
// error with the same key and gets the stored charge; it never retries an
// error with a JSON body, so a fail_after is settled by resending the key.
func TestStripeFaultsAndRetries(t *testing.T) {
	srv := mock.NewServer(mock.WithStartTime(start))
	t.Cleanup(srv.Close)
	sc := stripe.NewClient(keyA, stripe.WithBackends(stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL: stripe.String(srv.URL), HTTPClient: srv.Client(), EnableTelemetry: stripe.Bool(false),
		LeveledLogger: &stripe.LeveledLogger{Level: stripe.LevelNull}, MaxNetworkRetries: stripe.Int64(3),
	})))
	require.NoError(t, srv.InjectFault(mock.Fault{Kind: mock.DropAfter, Method: "POST", Path: "/v1/charges"}))
	ch, err := sc.V1Charges.Create(context.Background(), chargeParams(1234, "tok_visa", ""))
	require.NoError(t, err, "stripe-go retries the drop with its own key and gets the stored charge")
	assert.Equal(t, "true", ch.LastResponse.Header.Get("Idempotent-Replayed"))
	assert.Len(t, srv.Charges(), 1)

	require.NoError(t, srv.InjectFault(mock.Fault{Kind: mock.FailAfter, Method: "POST", Path: "/v1/charges", Status: 500}))
	_, err = sc.V1Charges.Create(context.Background(), chargeParams(4321, "tok_visa", "after_1"))
	se := stripeErr(t, err)
	assert.Equal(t, stripe.ErrorTypeAPI, se.Type)
	assert.Equal(t, 500, se.HTTPStatusCode)
	ch, err = sc.V1Charges.Create(context.Background(), chargeParams(4321, "tok_visa", "after_1"))
	require.NoError(t, err)
	assert.Equal(t, "true", ch.LastResponse.Header.Get("Idempotent-Replayed"))
	assert.Len(t, srv.Charges(), 2)
	assert.Empty(t, srv.SuspectedDuplicates(time.Minute))

	require.NoError(t, srv.InjectFault(mock.Fault{Kind: mock.FailBefore, Method: "POST", Path: "/v1/charges", Status: 402}))
	_, err = sc.V1Charges.Create(context.Background(), chargeParams(99, "tok_visa", ""))
	se = stripeErr(t, err)
	assert.Equal(t, stripe.ErrorTypeAPI, se.Type, "an injected error is in Stripe's envelope")
	assert.Equal(t, 402, se.HTTPStatusCode)

	// Keyless repeats (stripe-go sends a fresh key per call) are flagged.
	for range 2 {
		_, err := sc.V1Charges.Create(context.Background(), chargeParams(5555, "tok_visa", ""))
		require.NoError(t, err)
	}
	assert.Len(t, srv.SuspectedDuplicates(time.Minute), 1)
}

func TestStripeValidationIsNotStored(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	ctx := context.Background()
	_, err := sc.V1Charges.Create(ctx, chargeParams(2000, "tok_nonsense", "v1"))
	se := stripeErr(t, err)
	assert.Equal(t, stripe.ErrorTypeInvalidRequest, se.Type)
	assert.Equal(t, http.StatusBadRequest, se.HTTPStatusCode)
	_, err = sc.V1Charges.Create(ctx, chargeParams(0, "tok_visa", "v1"))
	assert.Equal(t, stripe.ErrorCodeAmountTooSmall, stripeErr(t, err).Code)
	ch, err := sc.V1Charges.Create(ctx, chargeParams(2000, "tok_visa", "v1"))
	require.NoError(t, err, "the key stayed free")
	assert.Empty(t, ch.LastResponse.Header.Get("Idempotent-Replayed"))
	assert.Len(t, srv.Charges(), 1)
	for _, r := range srv.Requests() {
		assert.NotEqual(t, mock.OutcomeMissingKey, r.Outcome)
	}
	assert.Len(t, srv.Requests(), 3)
}

// The dialect rule, over raw HTTP: a form, or Stripe-Version, is Stripe's.
func TestStripeDialectRecognition(t *testing.T) {
	h := setup(t)
	form := map[string]string{"Authorization": "Bearer " + keyA, "Content-Type": "application/x-www-form-urlencoded"}
	// A keyless POST executes, every time, as on Stripe; both are flagged.
	for range 2 {
		r := h.raw("POST", "/v1/charges", "amount=777&currency=usd&source=tok_visa&metadata=", form)
		require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
		assert.Contains(t, string(r.Body), `"paid":true`)
		assert.Contains(t, string(r.Body), `"metadata":{}`)
	}
	assert.Len(t, h.srv.SuspectedDuplicates(time.Minute), 1)
	id := h.srv.Charges()[0].ID

	// A GET with Stripe-Version alone is Stripe's; without, payonce's.
	r := h.raw("GET", "/v1/charges/"+id+"?expand[0]=balance_transaction",
		"", map[string]string{"Authorization": "Bearer " + keyA, "Stripe-Version": "2025-01-01"})
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	assert.Contains(t, string(r.Body), `"livemode":false`)
	r = h.get("/v1/charges/" + id)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	assert.NotContains(t, string(r.Body), "livemode", "payonce's own object")

	// Basic credentials, as curl -u sk_test_…: sends them.
	r = h.raw("GET", "/v1/charges?limit=1", "", map[string]string{"Stripe-Version": "2025-01-01",
		"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte(keyA+":"))})
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	assert.Contains(t, string(r.Body), `"url":"/v1/charges"`)

	// An unknown parameter is refused, and every answer is JSON.
	r = h.raw("POST", "/v1/charges", "amount=1&currency=usd&source=tok_visa&amout=2", form)
	require.Equal(t, http.StatusBadRequest, r.Status)
	assert.Equal(t, apiErr{Type: "invalid_request_error", Code: "parameter_unknown", Param: "amout",
		Message: "Received unknown parameter: amout"}, r.err(t))
	r = h.raw("POST", "/v1/charges", "a[=1", form)
	assert.Equal(t, "invalid_form", r.err(t).Code)
}
