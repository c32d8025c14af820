package mock_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v85"

	"github.com/payonce/payonce/mock"
)

// The real stripe-go against the mock's payment intents (docs/protocol.md
// §9.5).

func intentParams(amount int64, pm string) *stripe.PaymentIntentCreateParams {
	p := &stripe.PaymentIntentCreateParams{Amount: stripe.Int64(amount), Currency: stripe.String("usd")}
	if pm != "" {
		p.PaymentMethod = stripe.String(pm)
	}
	return p
}

func TestStripeIntentManualCapture(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	ctx := context.Background()
	p := intentParams(5000, "")
	p.CaptureMethod = stripe.String(string(stripe.PaymentIntentCaptureMethodManual))
	p.Description = stripe.String("Order 9")
	p.AddMetadata("order", "9")
	pi, err := sc.V1PaymentIntents.Create(ctx, p)
	require.NoError(t, err)
	assert.Equal(t, "payment_intent", pi.Object)
	assert.Equal(t, stripe.PaymentIntentStatusRequiresPaymentMethod, pi.Status)
	assert.Equal(t, int64(5000), pi.Amount)
	assert.Equal(t, stripe.PaymentIntentCaptureMethodManual, pi.CaptureMethod)
	assert.Equal(t, "Order 9", pi.Description)
	assert.Equal(t, map[string]string{"order": "9"}, pi.Metadata)
	assert.Equal(t, start.Unix(), pi.Created)
	assert.Nil(t, pi.LatestCharge)
	assert.Nil(t, pi.PaymentMethod)
	assert.Contains(t, pi.ClientSecret, pi.ID+"_secret_")
	assert.Empty(t, srv.Charges(), "no charge before confirmation")

	cp := &stripe.PaymentIntentConfirmParams{PaymentMethod: stripe.String("pm_card_visa")}
	cp.SetIdempotencyKey("confirm_9")
	pi, err = sc.V1PaymentIntents.Confirm(ctx, pi.ID, cp)
	require.NoError(t, err)
	assert.Equal(t, stripe.PaymentIntentStatusRequiresCapture, pi.Status)
	assert.Equal(t, int64(5000), pi.AmountCapturable)
	assert.Equal(t, int64(0), pi.AmountReceived)
	require.NotNil(t, pi.PaymentMethod)
	assert.Equal(t, "pm_card_visa", pi.PaymentMethod.ID)
	require.NotNil(t, pi.LatestCharge)
	auth, err := sc.V1Charges.Retrieve(ctx, pi.LatestCharge.ID, nil)
	require.NoError(t, err)
	assert.False(t, auth.Captured, "authorized only")
	require.NotNil(t, auth.PaymentIntent)
	assert.Equal(t, pi.ID, auth.PaymentIntent.ID)

	// Nil params: stripe-go sends no key, and the capture executes.
	pi, err = sc.V1PaymentIntents.Capture(ctx, pi.ID, &stripe.PaymentIntentCaptureParams{AmountToCapture: stripe.Int64(4000)})
	require.NoError(t, err)
	assert.Equal(t, stripe.PaymentIntentStatusSucceeded, pi.Status)
	assert.Equal(t, int64(4000), pi.AmountReceived)
	assert.Equal(t, int64(0), pi.AmountCapturable)
	ch, err := sc.V1Charges.Retrieve(ctx, pi.LatestCharge.ID, nil)
	require.NoError(t, err)
	assert.True(t, ch.Captured)
	assert.Equal(t, int64(4000), ch.AmountCaptured)

	_, err = sc.V1PaymentIntents.Capture(ctx, pi.ID, nil)
	se := stripeErr(t, err)
	assert.Equal(t, stripe.ErrorCodePaymentIntentUnexpectedState, se.Code)
	require.NotNil(t, se.PaymentIntent, "the error names the intent, as Stripe's does")
	assert.Equal(t, stripe.PaymentIntentStatusSucceeded, se.PaymentIntent.Status)

	// The ledger holds the one charge, under the confirmation's key.
	require.Len(t, srv.Charges(), 1)
	assert.Equal(t, "confirm_9", srv.Charges()[0].IdempotencyKey)
	assert.Equal(t, "Order 9", *srv.Charges()[0].Description)
}

func TestStripeIntentOverCaptureRefused(t *testing.T) {
	sc, _ := stripeClient(t, keyA)
	ctx := context.Background()
	p := intentParams(1000, "pm_card_visa")
	p.CaptureMethod = stripe.String("manual")
	p.Confirm = stripe.Bool(true)
	pi, err := sc.V1PaymentIntents.Create(ctx, p)
	require.NoError(t, err)
	require.Equal(t, stripe.PaymentIntentStatusRequiresCapture, pi.Status)
	_, err = sc.V1PaymentIntents.Capture(ctx, pi.ID, &stripe.PaymentIntentCaptureParams{AmountToCapture: stripe.Int64(1001)})
	se := stripeErr(t, err)
	assert.Equal(t, stripe.ErrorCodeAmountTooLarge, se.Code)
	assert.Equal(t, "amount_to_capture", se.Param)
	// Captured in full, by default.
	pi, err = sc.V1PaymentIntents.Capture(ctx, pi.ID, nil)
	require.NoError(t, err)
	assert.Equal(t, int64(1000), pi.AmountReceived)
}

func TestStripeIntentConfirmAtCreate(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	ctx := context.Background()
	p := intentParams(2500, "pm_card_visa")
	p.Confirm = stripe.Bool(true)
	p.AutomaticPaymentMethods = &stripe.PaymentIntentCreateAutomaticPaymentMethodsParams{Enabled: stripe.Bool(true)}
	p.AddExpand("latest_charge")
	pi, err := sc.V1PaymentIntents.Create(ctx, p)
	require.NoError(t, err)
	assert.Equal(t, stripe.PaymentIntentStatusSucceeded, pi.Status)
	assert.Equal(t, int64(2500), pi.AmountReceived)
	assert.Equal(t, stripe.PaymentIntentCaptureMethodAutomaticAsync, pi.CaptureMethod, "Stripe's default")
	require.NotNil(t, pi.AutomaticPaymentMethods)
	assert.True(t, pi.AutomaticPaymentMethods.Enabled)
	require.NotNil(t, pi.LatestCharge)
	assert.True(t, pi.LatestCharge.Captured, "expanded")
	assert.Equal(t, int64(2500), pi.LatestCharge.AmountCaptured)

	ch, err := sc.V1Charges.Retrieve(ctx, pi.LatestCharge.ID, nil)
	require.NoError(t, err)
	require.NotNil(t, ch.PaymentIntent)
	assert.Equal(t, pi.ID, ch.PaymentIntent.ID)
	assert.Equal(t, stripe.ChargeStatusSucceeded, ch.Status)

	got, err := sc.V1PaymentIntents.Retrieve(ctx, pi.ID, nil)
	require.NoError(t, err)
	assert.Equal(t, pi.ID, got.ID)
	assert.Equal(t, ch.ID, got.LatestCharge.ID)
	assert.Len(t, srv.Charges(), 1)

	// capture_method=automatic, and payment_method_types, for the record.
	p = intentParams(700, "pm_card_mastercard")
	p.Confirm = stripe.Bool(true)
	p.CaptureMethod = stripe.String("automatic")
	p.PaymentMethodTypes = stripe.StringSlice([]string{"card"})
	pi, err = sc.V1PaymentIntents.Create(ctx, p)
	require.NoError(t, err)
	assert.Equal(t, stripe.PaymentIntentStatusSucceeded, pi.Status)
	assert.Equal(t, []string{"card"}, pi.PaymentMethodTypes)
	assert.Nil(t, pi.AutomaticPaymentMethods)

	_, err = sc.V1PaymentIntents.Retrieve(ctx, "pi_missing", nil)
	assert.Equal(t, stripe.ErrorCodeResourceMissing, stripeErr(t, err).Code)
}

func TestStripeIntentCancel(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	ctx := context.Background()
	// From requires_confirmation.
	pi, err := sc.V1PaymentIntents.Create(ctx, intentParams(1200, "pm_card_visa"))
	require.NoError(t, err)
	require.Equal(t, stripe.PaymentIntentStatusRequiresConfirmation, pi.Status)
	pi, err = sc.V1PaymentIntents.Cancel(ctx, pi.ID, &stripe.PaymentIntentCancelParams{
		CancellationReason: stripe.String(string(stripe.PaymentIntentCancellationReasonRequestedByCustomer))})
	require.NoError(t, err)
	assert.Equal(t, stripe.PaymentIntentStatusCanceled, pi.Status)
	assert.Equal(t, stripe.PaymentIntentCancellationReasonRequestedByCustomer, pi.CancellationReason)
	assert.Equal(t, start.Unix(), pi.CanceledAt)
	_, err = sc.V1PaymentIntents.Confirm(ctx, pi.ID, nil)
	assert.Equal(t, stripe.ErrorCodePaymentIntentUnexpectedState, stripeErr(t, err).Code)
	assert.Empty(t, srv.Charges())

	// From requires_capture: the authorization is released.
	p := intentParams(1300, "pm_card_visa")
	p.Confirm, p.CaptureMethod = stripe.Bool(true), stripe.String("manual")
	pi, err = sc.V1PaymentIntents.Create(ctx, p)
	require.NoError(t, err)
	pi, err = sc.V1PaymentIntents.Cancel(ctx, pi.ID, &stripe.PaymentIntentCancelParams{
		CancellationReason: stripe.String("abandoned")})
	require.NoError(t, err)
	assert.Equal(t, stripe.PaymentIntentStatusCanceled, pi.Status)
	assert.Equal(t, stripe.PaymentIntentCancellationReasonAbandoned, pi.CancellationReason)
	assert.Equal(t, int64(0), pi.AmountCapturable)
	ch, err := sc.V1Charges.Retrieve(ctx, pi.LatestCharge.ID, nil)
	require.NoError(t, err)
	assert.False(t, ch.Captured)
	assert.True(t, ch.Refunded)
	assert.Equal(t, int64(1300), ch.AmountRefunded)
	_, err = sc.V1Charges.Capture(ctx, ch.ID, nil)
	assert.Equal(t, stripe.ErrorCodePaymentIntentUnexpectedState, stripeErr(t, err).Code,
		"a released authorization cannot be captured through the charge either")

	// A reason Stripe does not know is a validation error.
	pi, err = sc.V1PaymentIntents.Create(ctx, intentParams(1400, ""))
	require.NoError(t, err)
	_, err = sc.V1PaymentIntents.Cancel(ctx, pi.ID, &stripe.PaymentIntentCancelParams{CancellationReason: stripe.String("bored")})
	se := stripeErr(t, err)
	assert.Equal(t, http.StatusBadRequest, se.HTTPStatusCode)
	assert.Equal(t, "cancellation_reason", se.Param)
}

func TestStripeIntentCancelAfterSuccessRefused(t *testing.T) {
	sc, _ := stripeClient(t, keyA)
	ctx := context.Background()
	p := intentParams(900, "pm_card_visa")
	p.Confirm = stripe.Bool(true)
	pi, err := sc.V1PaymentIntents.Create(ctx, p)
	require.NoError(t, err)
	cp := &stripe.PaymentIntentCancelParams{}
	cp.SetIdempotencyKey("cancel_late")
	_, err = sc.V1PaymentIntents.Cancel(ctx, pi.ID, cp)
	se := stripeErr(t, err)
	assert.Equal(t, http.StatusBadRequest, se.HTTPStatusCode)
	assert.Equal(t, stripe.ErrorTypeInvalidRequest, se.Type)
	assert.Equal(t, stripe.ErrorCodePaymentIntentUnexpectedState, se.Code)
	require.NotNil(t, se.PaymentIntent)
	assert.Equal(t, pi.ID, se.PaymentIntent.ID)
	assert.Equal(t, stripe.PaymentIntentStatusSucceeded, se.PaymentIntent.Status)

	// A business rule: stored, and replayed.
	_, err = sc.V1PaymentIntents.Cancel(ctx, pi.ID, cp)
	again := stripeErr(t, err)
	assert.Equal(t, "true", again.LastResponse.Header.Get("Idempotent-Replayed"))
	assert.Equal(t, stripe.ErrorCodePaymentIntentUnexpectedState, again.Code)
}

func TestStripeIntentDecline(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	ctx := context.Background()
	pi, err := sc.V1PaymentIntents.Create(ctx, intentParams(3100, "pm_card_chargeDeclinedInsufficientFunds"))
	require.NoError(t, err)
	cp := &stripe.PaymentIntentConfirmParams{}
	cp.SetIdempotencyKey("confirm_d")
	_, err = sc.V1PaymentIntents.Confirm(ctx, pi.ID, cp)
	se := stripeErr(t, err)
	assert.Equal(t, http.StatusPaymentRequired, se.HTTPStatusCode)
	assert.Equal(t, stripe.ErrorTypeCard, se.Type)
	assert.Equal(t, stripe.ErrorCodeCardDeclined, se.Code)
	assert.Equal(t, stripe.DeclineCodeInsufficientFunds, se.DeclineCode)
	var ce *stripe.CardError
	require.True(t, errors.As(err, &ce))
	require.NotNil(t, se.PaymentIntent, "the decline names the intent, as Stripe's does")
	assert.Equal(t, pi.ID, se.PaymentIntent.ID)
	assert.Equal(t, stripe.PaymentIntentStatusRequiresPaymentMethod, se.PaymentIntent.Status)
	require.NotEmpty(t, se.ChargeID)

	got, err := sc.V1PaymentIntents.Retrieve(ctx, pi.ID, nil)
	require.NoError(t, err)
	assert.Equal(t, stripe.PaymentIntentStatusRequiresPaymentMethod, got.Status)
	assert.Nil(t, got.PaymentMethod, "Stripe detaches the declined method")
	require.NotNil(t, got.LastPaymentError)
	assert.Equal(t, stripe.DeclineCodeInsufficientFunds, got.LastPaymentError.DeclineCode)
	assert.Equal(t, stripe.ErrorCodeCardDeclined, got.LastPaymentError.Code)
	assert.Equal(t, se.ChargeID, got.LastPaymentError.ChargeID)
	require.NotNil(t, got.LastPaymentError.PaymentMethod)
	assert.Equal(t, "pm_card_chargeDeclinedInsufficientFunds", got.LastPaymentError.PaymentMethod.ID)
	require.NotNil(t, got.LatestCharge)
	assert.Equal(t, se.ChargeID, got.LatestCharge.ID)
	failed, err := sc.V1Charges.Retrieve(ctx, se.ChargeID, nil)
	require.NoError(t, err)
	assert.Equal(t, stripe.ChargeStatusFailed, failed.Status)
	assert.Equal(t, pi.ID, failed.PaymentIntent.ID)

	// Stored: the retry replays the decline and charges nothing new.
	_, err = sc.V1PaymentIntents.Confirm(ctx, pi.ID, cp)
	assert.Equal(t, "true", stripeErr(t, err).LastResponse.Header.Get("Idempotent-Replayed"))
	require.Len(t, srv.Charges(), 1)

	// Another card, under another key: it succeeds, and the error clears.
	pi, err = sc.V1PaymentIntents.Confirm(ctx, pi.ID, &stripe.PaymentIntentConfirmParams{PaymentMethod: stripe.String("pm_card_visa")})
	require.NoError(t, err)
	assert.Equal(t, stripe.PaymentIntentStatusSucceeded, pi.Status)
	assert.Nil(t, pi.LastPaymentError)
	assert.NotEqual(t, se.ChargeID, pi.LatestCharge.ID)
	assert.Len(t, srv.Charges(), 2)

	// A decline at create also leaves the intent, which the error names.
	p := intentParams(3200, "pm_card_chargeDeclined")
	p.Confirm = stripe.Bool(true)
	_, err = sc.V1PaymentIntents.Create(ctx, p)
	se = stripeErr(t, err)
	assert.Equal(t, stripe.DeclineCodeGenericDecline, se.DeclineCode)
	require.NotNil(t, se.PaymentIntent)
	require.NotNil(t, se.PaymentIntent.LastPaymentError)
	assert.Equal(t, stripe.DeclineCodeGenericDecline, se.PaymentIntent.LastPaymentError.DeclineCode)
}

func TestStripeRefundByIntent(t *testing.T) {
	sc, _ := stripeClient(t, keyA)
	ctx := context.Background()
	p := intentParams(2000, "pm_card_visa")
	p.Confirm = stripe.Bool(true)
	pi, err := sc.V1PaymentIntents.Create(ctx, p)
	require.NoError(t, err)

	ref, err := sc.V1Refunds.Create(ctx, &stripe.RefundCreateParams{PaymentIntent: stripe.String(pi.ID), Amount: stripe.Int64(1500)})
	require.NoError(t, err)
	assert.Equal(t, int64(1500), ref.Amount)
	require.NotNil(t, ref.PaymentIntent)
	assert.Equal(t, pi.ID, ref.PaymentIntent.ID)
	require.NotNil(t, ref.Charge)
	assert.Equal(t, pi.LatestCharge.ID, ref.Charge.ID)

	// 500 remain: 501 is too much.
	_, err = sc.V1Refunds.Create(ctx, &stripe.RefundCreateParams{PaymentIntent: stripe.String(pi.ID), Amount: stripe.Int64(501)})
	se := stripeErr(t, err)
	assert.Equal(t, stripe.ErrorTypeInvalidRequest, se.Type)
	assert.Equal(t, stripe.ErrorCodeAmountTooLarge, se.Code)

	rest, err := sc.V1Refunds.Create(ctx, &stripe.RefundCreateParams{PaymentIntent: stripe.String(pi.ID)})
	require.NoError(t, err)
	assert.Equal(t, int64(500), rest.Amount)
	ch, err := sc.V1Charges.Retrieve(ctx, pi.LatestCharge.ID, nil)
	require.NoError(t, err)
	assert.True(t, ch.Refunded)
	_, err = sc.V1Refunds.Create(ctx, &stripe.RefundCreateParams{PaymentIntent: stripe.String(pi.ID)})
	assert.Equal(t, stripe.ErrorCodeChargeAlreadyRefunded, stripeErr(t, err).Code)

	// A refund by the charge names the intent too.
	p = intentParams(800, "pm_card_visa")
	p.Confirm = stripe.Bool(true)
	pi, err = sc.V1PaymentIntents.Create(ctx, p)
	require.NoError(t, err)
	ref, err = sc.V1Refunds.Create(ctx, &stripe.RefundCreateParams{Charge: stripe.String(pi.LatestCharge.ID)})
	require.NoError(t, err)
	assert.Equal(t, pi.ID, ref.PaymentIntent.ID)

	// An intent with no successful charge has nothing to refund.
	pi, err = sc.V1PaymentIntents.Create(ctx, intentParams(800, ""))
	require.NoError(t, err)
	_, err = sc.V1Refunds.Create(ctx, &stripe.RefundCreateParams{PaymentIntent: stripe.String(pi.ID)})
	assert.Equal(t, stripe.ErrorCodePaymentIntentUnexpectedState, stripeErr(t, err).Code)
	_, err = sc.V1Refunds.Create(ctx, &stripe.RefundCreateParams{PaymentIntent: stripe.String("pi_missing")})
	assert.Equal(t, stripe.ErrorCodeResourceMissing, stripeErr(t, err).Code)
}

func TestStripeIntentAutoPagingList(t *testing.T) {
	sc, _ := stripeClient(t, keyA)
	ctx := context.Background()
	const n = 23
	want := make([]string, n)
	for i := range n {
		pi, err := sc.V1PaymentIntents.Create(ctx, intentParams(int64(100+i), ""))
		require.NoError(t, err)
		want[n-1-i] = pi.ID // newest first
	}
	lp := &stripe.PaymentIntentListParams{}
	lp.Limit = stripe.Int64(10)
	var got []string
	for pi, err := range sc.V1PaymentIntents.List(ctx, lp).All(ctx) {
		require.NoError(t, err)
		got = append(got, pi.ID)
	}
	assert.Equal(t, want, got, "three pages, in order, nothing twice")

	lp = &stripe.PaymentIntentListParams{}
	lp.Limit = stripe.Int64(5)
	lp.EndingBefore = stripe.String(want[n-1])
	got = nil
	for pi, err := range sc.V1PaymentIntents.List(ctx, lp).All(ctx) {
		require.NoError(t, err)
		got = append(got, pi.ID)
	}
	assert.ElementsMatch(t, want[:n-1], got)
}

func TestStripeIntentReplay(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	ctx := context.Background()
	create := func(amount int64) (*stripe.PaymentIntent, error) {
		p := intentParams(amount, "pm_card_visa")
		p.Confirm = stripe.Bool(true)
		p.SetIdempotencyKey("checkout_3")
		return sc.V1PaymentIntents.Create(ctx, p)
	}
	first, err := create(4400)
	require.NoError(t, err)
	assert.Empty(t, first.LastResponse.Header.Get("Idempotent-Replayed"))
	again, err := create(4400)
	require.NoError(t, err)
	assert.Equal(t, first.ID, again.ID)
	assert.Equal(t, "true", again.LastResponse.Header.Get("Idempotent-Replayed"))
	assert.Equal(t, "checkout_3", again.LastResponse.IdempotencyKey)
	assert.Len(t, srv.Charges(), 1, "one key, one charge")
	assert.Empty(t, srv.SuspectedDuplicates(time.Minute))

	_, err = create(4401)
	var ie *stripe.IdempotencyError
	assert.True(t, errors.As(err, &ie), "another amount under the key: %v", err)

	n := 0
	for _, err := range sc.V1PaymentIntents.List(ctx, &stripe.PaymentIntentListParams{}).All(ctx) {
		require.NoError(t, err)
		n++
	}
	assert.Equal(t, 1, n, "one intent")
}

// Validation errors are not stored: the key stays free.
func TestStripeIntentValidationIsNotStored(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	ctx := context.Background()
	for _, p := range []*stripe.PaymentIntentCreateParams{
		intentParams(1000, "pm_card_nonsense"),
		{Amount: stripe.Int64(1000), Currency: stripe.String("usd"), Confirm: stripe.Bool(true)},
		{Amount: stripe.Int64(1000), Currency: stripe.String("usd"), CaptureMethod: stripe.String("later")},
		{Amount: stripe.Int64(1000), Currency: stripe.String("usd"), PaymentMethodTypes: stripe.StringSlice([]string{"card"}),
			AutomaticPaymentMethods: &stripe.PaymentIntentCreateAutomaticPaymentMethodsParams{Enabled: stripe.Bool(true)}},
	} {
		p.SetIdempotencyKey("v_1")
		_, err := sc.V1PaymentIntents.Create(ctx, p)
		se := stripeErr(t, err)
		assert.Equal(t, http.StatusBadRequest, se.HTTPStatusCode)
		assert.Equal(t, stripe.ErrorTypeInvalidRequest, se.Type)
	}
	p := intentParams(1000, "pm_card_visa")
	p.SetIdempotencyKey("v_1")
	pi, err := sc.V1PaymentIntents.Create(ctx, p)
	require.NoError(t, err, "the key stayed free")
	assert.Equal(t, stripe.PaymentIntentStatusRequiresConfirmation, pi.Status)
	assert.Empty(t, srv.Charges())
	for _, r := range srv.Requests() {
		assert.NotEqual(t, mock.OutcomeReplayed, r.Outcome)
	}
}

// The wire, raw: nested and indexed parameters, and the JSON dialect,
// which serves no payment intents.
func TestStripeIntentWire(t *testing.T) {
	h := setup(t)
	form := map[string]string{"Authorization": "Bearer " + keyA, "Content-Type": "application/x-www-form-urlencoded"}
	r := h.raw("POST", "/v1/payment_intents", "amount=100&currency=usd&payment_method_types[0]=card&payment_method_types[1]=link", form)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	assert.Contains(t, string(r.Body), `"payment_method_types":["card","link"]`)
	assert.Contains(t, string(r.Body), `"automatic_payment_methods":null`)
	assert.Contains(t, string(r.Body), `"latest_charge":null`)

	r = h.raw("POST", "/v1/payment_intents", "amount=100&currency=usd&automatic_payment_methods[enabled]=false", form)
	require.Equal(t, http.StatusOK, r.Status, "%s", r.Body)
	assert.Contains(t, string(r.Body), `"automatic_payment_methods":{"enabled":false}`)

	for body, want := range map[string]apiErr{
		"amount=100&currency=usd&automatic_payment_methods[allow]=x": {Type: "invalid_request_error", Code: "parameter_unknown",
			Param: "automatic_payment_methods[allow]", Message: "Received unknown parameter: automatic_payment_methods[allow]"},
		"amount=100&currency=usd&automatic_payment_methods[enabled]=maybe": {Type: "invalid_request_error",
			Code: "parameter_invalid_boolean", Param: "automatic_payment_methods[enabled]", Message: "automatic_payment_methods[enabled] must be true or false"},
		"amount=100&currency=usd&payment_method_types=card": {Type: "invalid_request_error", Code: "parameter_invalid_array",
			Param: "payment_method_types", Message: "payment_method_types must be an array: payment_method_types[0]=…"},
		"amount=100&currency=usd&payment_method=pm_card_visa&payment_method_types[0]=link": {Type: "invalid_request_error",
			Code: "payment_intent_incompatible_payment_method", Param: "payment_method",
			Message: `the payment method "pm_card_visa" is a card, and card is not among the payment_method_types`},
	} {
		r := h.raw("POST", "/v1/payment_intents", body, form)
		require.Equal(t, http.StatusBadRequest, r.Status, body)
		assert.Equal(t, want, r.err(t), body)
	}

	r = h.post("/v1/payment_intents", h.key(), `{"amount":100,"currency":"usd"}`)
	assert.Equal(t, http.StatusNotFound, r.Status)
	assert.Equal(t, "unknown_route", r.err(t).Code, "payonce's JSON protocol has no payment intents")
}

// A canceled authorization moved no money: authorizing again is no
// double charge.
func TestStripeIntentReleasedIsNoDuplicate(t *testing.T) {
	sc, srv := stripeClient(t, keyA)
	ctx := context.Background()
	p := intentParams(6100, "pm_card_visa")
	p.Confirm, p.CaptureMethod = stripe.Bool(true), stripe.String("manual")
	pi, err := sc.V1PaymentIntents.Create(ctx, p)
	require.NoError(t, err)
	_, err = sc.V1PaymentIntents.Cancel(ctx, pi.ID, nil)
	require.NoError(t, err)
	p = intentParams(6100, "pm_card_visa")
	p.Confirm = stripe.Bool(true)
	_, err = sc.V1PaymentIntents.Create(ctx, p)
	require.NoError(t, err)
	assert.Len(t, srv.Charges(), 2)
	assert.Empty(t, srv.SuspectedDuplicates(time.Minute))

	// Two that both went through are.
	p = intentParams(6100, "pm_card_visa")
	p.Confirm = stripe.Bool(true)
	_, err = sc.V1PaymentIntents.Create(ctx, p)
	require.NoError(t, err)
	assert.Len(t, srv.SuspectedDuplicates(time.Minute), 1)
}

// An intent's capture and cancel change its charge, and the charge.succeeded
// event made at its confirmation still shows the charge as it was then.
func TestStripeIntentEventKeepsChargeAsItWas(t *testing.T) {
	sc, _ := stripeClient(t, keyA)
	ctx := context.Background()
	authorize := func(amount int64) *stripe.PaymentIntent {
		p := intentParams(amount, "pm_card_visa")
		p.Confirm = stripe.Bool(true)
		p.CaptureMethod = stripe.String(string(stripe.PaymentIntentCaptureMethodManual))
		pi, err := sc.V1PaymentIntents.Create(ctx, p)
		require.NoError(t, err)
		require.Equal(t, stripe.PaymentIntentStatusRequiresCapture, pi.Status)
		return pi
	}
	captured, canceled := authorize(4100), authorize(4200)
	_, err := sc.V1PaymentIntents.Capture(ctx, captured.ID, nil)
	require.NoError(t, err)
	_, err = sc.V1PaymentIntents.Cancel(ctx, canceled.ID, nil)
	require.NoError(t, err)

	type object struct {
		Captured       bool  `json:"captured"`
		AmountCaptured int64 `json:"amount_captured"`
		AmountRefunded int64 `json:"amount_refunded"`
		Refunded       bool  `json:"refunded"`
	}
	got := map[string]object{} // by event type and intent
	for ev, err := range sc.V1Events.List(ctx, &stripe.EventListParams{Type: stripe.String("charge.*")}).All(ctx) {
		require.NoError(t, err)
		var o struct {
			object
			PaymentIntent string `json:"payment_intent"`
		}
		require.NoError(t, json.Unmarshal(ev.Data.Raw, &o))
		got[string(ev.Type)+" "+o.PaymentIntent] = o.object
	}
	assert.Equal(t, map[string]object{
		"charge.succeeded " + captured.ID: {},
		"charge.captured " + captured.ID:  {Captured: true, AmountCaptured: 4100},
		"charge.succeeded " + canceled.ID: {},
	}, got)
	ch, err := sc.V1Charges.Retrieve(ctx, canceled.LatestCharge.ID, nil)
	require.NoError(t, err)
	assert.True(t, ch.Refunded, "the canceled intent's charge, as it is now")
}
