package stripenode_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/mock"
)

// apiKey is the test's account on the mock: any sk_test_ key is one.
const apiKey = "sk_test_stripenode_4eC39HqLyjWDarjtT1zdp7dc"

// flowTimeout bounds one run of flows.mjs, Node's start included.
const flowTimeout = time.Minute

// TestStripeNode runs the flows of flows.mjs, with stripe-node, against a
// mock server, and checks that stripe-node sees what it would see from
// Stripe. One node process runs them all; the concurrent flow runs again
// against a second server that holds its first create in flight.
func TestStripeNode(t *testing.T) {
	node := nodeOrSkip(t)
	srv := mock.NewServer()
	t.Cleanup(srv.Close)
	h := &harness{srv: srv, lines: runFlows(t, node, srv.URL)}

	// The first create is held half a second once it has claimed its key,
	// so that the other nine find the key in flight.
	held := mock.NewServer()
	t.Cleanup(held.Close)
	require.NoError(t, held.InjectFault(mock.Fault{Kind: mock.Delay, Method: "POST", Path: "/v1/charges", Delay: 500 * time.Millisecond}))
	hh := &harness{srv: held, lines: runFlows(t, node, held.URL, "concurrent")}

	t.Run("charge", func(t *testing.T) {
		var out struct {
			Key     string   `json:"key"`
			Created response `json:"created"`
		}
		h.run(t, "charge", &out)
		ch := out.Created.charge(t)
		assert.Equal(t, 200, out.Created.Status)
		assertStripeCharge(t, out.Created, 2000)
		assert.True(t, ch.Captured, "captured")
		assert.Equal(t, "succeeded", ch.Status, "status")
		assert.Equal(t, int64(2000), ch.AmountCaptured, "amount_captured")
		assert.Equal(t, map[string]string{"flow": "charge"}, ch.Metadata, "metadata")
		if assert.NotNil(t, ch.Description, "description") {
			assert.Equal(t, "stripenode charge", *ch.Description, "description")
		}
		assert.False(t, out.Created.replayed(), "a first response is not marked Idempotent-Replayed")
		if assert.NotNil(t, out.Created.RequestID, "Request-Id header") {
			assert.True(t, strings.HasPrefix(*out.Created.RequestID, "req_"), "Request-Id %q", *out.Created.RequestID)
		}
		n := 0
		for _, c := range srv.Charges() {
			if c.ID == ch.ID {
				n++
				assert.Equal(t, mock.AccountID(apiKey), c.Account, "the ledger's account of %s", ch.ID)
			}
		}
		assert.Equal(t, 1, n, "charges with ID %s in the gateway's ledger", ch.ID)
	})

	t.Run("replay", func(t *testing.T) {
		var out struct {
			Key   string   `json:"key"`
			First response `json:"first"`
			Again response `json:"again"`
		}
		h.run(t, "replay", &out)
		first, again := out.First.charge(t), out.Again.charge(t)
		assert.False(t, out.First.replayed(), "the first response is not marked Idempotent-Replayed")
		assert.Equal(t, first.ID, again.ID, "the replay's charge ID")
		assert.Equal(t, 200, out.Again.Status)
		assert.True(t, out.Again.replayed(), "the replay's Idempotent-Replayed header: %v", deref(out.Again.IdempotentReplayed))
		if assert.NotNil(t, out.Again.IdempotencyKey, "the replay's Idempotency-Key header") {
			assert.Equal(t, out.Key, *out.Again.IdempotencyKey, "the replay's Idempotency-Key header")
		}
		assert.JSONEq(t, string(out.First.Body), string(out.Again.Body), "the replayed body is the stored one")
	})

	t.Run("mismatch", func(t *testing.T) {
		var out struct {
			Key   string      `json:"key"`
			First response    `json:"first"`
			Other stripeError `json:"other"`
		}
		h.run(t, "mismatch", &out)
		assertStripeCharge(t, out.First, 2100)
		e := out.Other.require(t)
		assert.Equal(t, "StripeIdempotencyError", e.Class, "stripe-node's error class")
		assert.Equal(t, 400, e.Status, "status")
		assert.Equal(t, "idempotency_error", e.Type, "error type")
		assert.NotEmpty(t, e.Message, "error message")
		assert.False(t, e.replayed(), "a mismatch is not a replay")
	})

	t.Run("decline", func(t *testing.T) {
		var out struct {
			Key          string      `json:"key"`
			Declined     stripeError `json:"declined"`
			Again        stripeError `json:"again"`
			Insufficient stripeError `json:"insufficient"`
		}
		h.run(t, "decline", &out)
		declined := out.Declined.require(t)
		t.Run("generic_decline", func(t *testing.T) {
			assertDecline(t, declined, "generic_decline")
		})
		t.Run("insufficient_funds", func(t *testing.T) {
			assertDecline(t, out.Insufficient.require(t), "insufficient_funds")
		})
		t.Run("failed_charge", func(t *testing.T) {
			// Stripe records a declined charge as a failed one, and its
			// card_error names it in "charge".
			assert.True(t, strings.HasPrefix(declined.Charge, "ch_"), "the card error's charge: %q", declined.Charge)
		})
		t.Run("replayed", func(t *testing.T) {
			// A decline executed, so Stripe stores it under its key.
			again := out.Again.require(t)
			assertDecline(t, again, "generic_decline")
			assert.True(t, again.replayed(), "the repeated decline's Idempotent-Replayed header: %v", deref(again.IdempotentReplayed))
			assert.Equal(t, declined.Charge, again.Charge, "the replayed decline's charge")
		})
	})

	concurrent := func(t *testing.T, h *harness, inFlight bool) {
		var out struct {
			Key     string `json:"key"`
			Results []struct {
				ID                 string  `json:"id"`
				Amount             int64   `json:"amount"`
				Attempts           int     `json:"attempts"`
				Status             int     `json:"status"`
				IdempotentReplayed *string `json:"idempotent_replayed"`
			} `json:"results"`
			Conflicts []struct {
				stripeError
				Count int `json:"count"`
			} `json:"conflicts"`
		}
		h.run(t, "concurrent", &out)
		require.Len(t, out.Results, 10)
		ids := map[string]int{}
		originals := 0
		for _, r := range out.Results {
			ids[r.ID]++
			assert.Equal(t, int64(2400), r.Amount)
			if r.IdempotentReplayed == nil || *r.IdempotentReplayed != "true" {
				originals++
			}
		}
		assert.Len(t, ids, 1, "charge IDs of ten creates with one key: %v", ids)
		assert.Equal(t, 1, originals, "responses not marked Idempotent-Replayed: one executed, the rest replay")
		assert.Equal(t, 1, h.ledgerCount(2400), "charges the gateway made for the ten creates")
		conflicts := 0
		for _, c := range out.Conflicts {
			conflicts += c.Count
			// stripe-node maps only a 400 or 404 idempotency_error to
			// StripeIdempotencyError, so a 409 is a StripeAPIError.
			assert.Equal(t, 409, c.Status, "a conflict's status: %+v", c)
			assert.Equal(t, "idempotency_error", c.Type, "a conflict's error type: %+v", c)
			assert.Equal(t, "idempotency_key_in_use", c.Code, "a conflict's error code: %+v", c)
			assert.Equal(t, "StripeAPIError", c.Class, "stripe-node's class for a 409: %+v", c)
		}
		t.Logf("%d responses were 409s before their retry replayed", conflicts)
		if inFlight {
			assert.NotZero(t, conflicts, "requests while the first was held in flight got no 409")
		}
	}
	t.Run("concurrent", func(t *testing.T) { concurrent(t, h, false) })
	t.Run("concurrent_in_flight", func(t *testing.T) { concurrent(t, hh, true) })

	t.Run("capture", func(t *testing.T) {
		var out struct {
			Authorized response `json:"authorized"`
			Captured   response `json:"captured"`
		}
		h.run(t, "capture", &out)
		auth, capt := out.Authorized.charge(t), out.Captured.charge(t)
		assertStripeCharge(t, out.Authorized, 2500)
		assert.False(t, auth.Captured, "captured, before capture")
		assert.Equal(t, int64(0), auth.AmountCaptured, "amount_captured, before capture")
		// A charge's status is succeeded, pending or failed: an
		// authorization is a succeeded charge with captured false.
		assert.Equal(t, "succeeded", auth.Status, "status, before capture")
		assert.Equal(t, 200, out.Captured.Status)
		assert.Equal(t, auth.ID, capt.ID, "the captured charge's ID")
		assert.True(t, capt.Captured, "captured, after capture")
		assert.Equal(t, int64(2500), capt.AmountCaptured, "amount_captured, after capture")
		assert.Equal(t, "succeeded", capt.Status, "status, after capture")
		assert.True(t, capt.Paid, "paid, after capture")
	})

	t.Run("refund", func(t *testing.T) {
		var out struct {
			Charge       response `json:"charge"`
			Partial      response `json:"partial"`
			AfterPartial response `json:"after_partial"`
			Rest         response `json:"rest"`
			AfterRest    response `json:"after_rest"`
		}
		h.run(t, "refund", &out)
		ch := out.Charge.charge(t)
		assertRefund(t, out.Partial, ch.ID, 1000)
		after := out.AfterPartial.charge(t)
		assert.Equal(t, int64(1000), after.AmountRefunded, "amount_refunded after a partial refund")
		assert.False(t, after.Refunded, "refunded after a partial refund")
		assert.True(t, after.Captured, "captured after a partial refund")
		assertRefund(t, out.Rest, ch.ID, 2000)
		done := out.AfterRest.charge(t)
		assert.Equal(t, int64(3000), done.AmountRefunded, "amount_refunded after refunding the rest")
		assert.True(t, done.Refunded, "refunded after refunding the rest")
	})

	t.Run("over_refund", func(t *testing.T) {
		var out struct {
			Charge response    `json:"charge"`
			First  response    `json:"first"`
			Over   stripeError `json:"over"`
			After  response    `json:"after"`
			FullID string      `json:"full_id"`
			Again  stripeError `json:"again"`
		}
		h.run(t, "over_refund", &out)
		ch := out.Charge.charge(t)
		assertRefund(t, out.First, ch.ID, 1000)
		over := out.Over.require(t)
		assert.Equal(t, "StripeInvalidRequestError", over.Class, "stripe-node's error class")
		assert.Equal(t, 400, over.Status, "status")
		assert.Equal(t, "invalid_request_error", over.Type, "error type")
		t.Logf("over-refund: code %q, param %q: %s", over.Code, over.Param, over.Message)
		after := out.After.charge(t)
		assert.Equal(t, int64(1000), after.AmountRefunded, "amount_refunded after a refused over-refund")
		assert.False(t, after.Refunded, "refunded after a refused over-refund")
		again := out.Again.require(t)
		assert.Equal(t, "StripeInvalidRequestError", again.Class, "stripe-node's error class, refunding a refunded charge")
		assert.Equal(t, 400, again.Status, "status, refunding a refunded charge")
		assert.Equal(t, "charge_already_refunded", again.Code, "error code, refunding a refunded charge")
	})

	t.Run("list", func(t *testing.T) {
		var out struct {
			Created   []string `json:"created"`
			Listed    []string `json:"listed"`
			Pages     []string `json:"pages"`
			FirstPage struct {
				Object  string   `json:"object"`
				URL     string   `json:"url"`
				HasMore bool     `json:"has_more"`
				IDs     []string `json:"ids"`
			} `json:"first_page"`
		}
		h.run(t, "list", &out)
		require.Len(t, out.Created, 7)
		newestFirst := slices.Clone(out.Created)
		slices.Reverse(newestFirst)
		assert.Equal(t, newestFirst, out.Listed, "charges auto-paged three at a time, newest first")
		assert.Len(t, out.Pages, 3, "GETs to list seven charges three a page: %v", out.Pages)
		assert.Equal(t, "list", out.FirstPage.Object, "a page's object")
		assert.Equal(t, "/v1/charges", out.FirstPage.URL, "a page's url")
		assert.True(t, out.FirstPage.HasMore, "the first page's has_more")
		assert.Equal(t, newestFirst[:3], out.FirstPage.IDs, "the first page")
	})

	t.Run("accounts", func(t *testing.T) {
		var out struct {
			Key      string      `json:"key"`
			A        response    `json:"a"`
			B        response    `json:"b"`
			AAgain   response    `json:"a_again"`
			Plain    response    `json:"plain"`
			Other    response    `json:"other_api_key"`
			CrossGet stripeError `json:"cross_account_retrieve"`
		}
		h.run(t, "accounts", &out)
		a, b, aAgain := out.A.charge(t), out.B.charge(t), out.AAgain.charge(t)
		plain, other := out.Plain.charge(t), out.Other.charge(t)
		assert.NotEqual(t, a.ID, b.ID, "one key under two Stripe-Accounts makes two charges")
		assert.False(t, out.B.replayed(), "the second account's create is not a replay")
		assert.Equal(t, a.ID, aAgain.ID, "the key replays within its Stripe-Account")
		assert.True(t, out.AAgain.replayed(), "the replay's Idempotent-Replayed header: %v", deref(out.AAgain.IdempotentReplayed))
		assert.NotContains(t, []string{a.ID, b.ID}, plain.ID, "without Stripe-Account the key is in the API key's own scope")
		assert.False(t, out.Plain.replayed(), "the create without Stripe-Account is not a replay")
		assert.NotContains(t, []string{a.ID, b.ID, plain.ID}, other.ID, "another API key has its own keys")
		assert.False(t, out.Other.replayed(), "the other API key's create is not a replay")
		// A connected account's charge is not found under another.
		cross := out.CrossGet.require(t)
		assert.Equal(t, "StripeInvalidRequestError", cross.Class, "stripe-node's error class, retrieving a charge under another Stripe-Account")
		assert.Equal(t, 404, cross.Status, "status, retrieving a charge under another Stripe-Account")
		assert.Equal(t, "resource_missing", cross.Code, "error code, retrieving a charge under another Stripe-Account")
	})

	// PaymentIntents (docs/protocol.md §9.5).

	t.Run("pi_manual_capture", func(t *testing.T) {
		var out struct {
			Created    response `json:"created"`
			Authorized response `json:"authorized"`
			Captured   response `json:"captured"`
			Charge     response `json:"charge"`
		}
		h.run(t, "pi_manual_capture", &out)
		pi := out.Created.intent(t)
		assertStripeIntent(t, out.Created, 5000)
		assert.Equal(t, "manual", pi.CaptureMethod, "capture_method")
		assert.Equal(t, "requires_capture", pi.Status, "status, confirmed with capture_method=manual")
		assert.Equal(t, int64(5000), pi.AmountCapturable, "amount_capturable, before capture")
		assert.Equal(t, int64(0), pi.AmountReceived, "amount_received, before capture")
		chID := pi.latestCharge(t)

		auth := out.Authorized.charge(t)
		assert.Equal(t, chID, auth.ID, "the latest charge's ID")
		assert.False(t, auth.Captured, "the latest charge's captured, before capture")
		assert.Equal(t, int64(0), auth.AmountCaptured, "the latest charge's amount_captured, before capture")
		assert.Equal(t, "succeeded", auth.Status, "the latest charge's status, authorized")
		assert.Equal(t, pi.ID, out.Authorized.chargeIntent(t), "the latest charge's payment_intent, before capture")

		capt := out.Captured.intent(t)
		assert.Equal(t, 200, out.Captured.Status)
		assert.Equal(t, pi.ID, capt.ID, "the captured intent's ID")
		assert.Equal(t, "succeeded", capt.Status, "status, after capture")
		assert.Equal(t, int64(4000), capt.AmountReceived, "amount_received, after capturing 4000")
		assert.Equal(t, int64(0), capt.AmountCapturable, "amount_capturable, after capture")
		assert.Equal(t, chID, capt.latestCharge(t), "latest_charge, after capture")

		ch := out.Charge.charge(t)
		assert.Equal(t, chID, ch.ID, "the captured charge's ID")
		assert.Equal(t, pi.ID, out.Charge.chargeIntent(t), "the charge's payment_intent")
		assert.True(t, ch.Captured, "the charge's captured, after capture")
		assert.Equal(t, int64(4000), ch.AmountCaptured, "the charge's amount_captured, after capturing 4000")
		assert.Equal(t, int64(5000), ch.Amount, "the charge's amount")
		assert.Equal(t, "succeeded", ch.Status, "the charge's status, after capture")
		// Stripe releases the 1000 left uncaptured; the mock leaves
		// amount_refunded at 0, on purpose (docs/protocol.md §9.3, §9.5).
		t.Logf("after a partial capture of 4000 of 5000 the charge shows amount_refunded %d, refunded %v", ch.AmountRefunded, ch.Refunded)
	})

	t.Run("pi_replay", func(t *testing.T) {
		var out struct {
			Key   string   `json:"key"`
			First response `json:"first"`
			Again response `json:"again"`
		}
		h.run(t, "pi_replay", &out)
		first, again := out.First.intent(t), out.Again.intent(t)
		assertStripeIntent(t, out.First, 5100)
		// Stripe's default capture method since API version 2024-04-10.
		assert.Equal(t, "automatic_async", first.CaptureMethod, "the default capture_method")
		assert.Equal(t, "succeeded", first.Status, "status, confirmed at creation")
		assert.Equal(t, int64(5100), first.AmountReceived, "amount_received, confirmed at creation")
		assert.Equal(t, int64(0), first.AmountCapturable, "amount_capturable, confirmed at creation")
		chID := first.latestCharge(t)
		assert.Equal(t, map[string]string{"flow": "pi_replay"}, first.Metadata, "metadata")
		assert.False(t, out.First.replayed(), "the first response is not marked Idempotent-Replayed")

		assert.Equal(t, 200, out.Again.Status)
		assert.Equal(t, first.ID, again.ID, "the replay's payment intent ID")
		assert.True(t, out.Again.replayed(), "the replay's Idempotent-Replayed header: %v", deref(out.Again.IdempotentReplayed))
		if assert.NotNil(t, out.Again.IdempotencyKey, "the replay's Idempotency-Key header") {
			assert.Equal(t, out.Key, *out.Again.IdempotencyKey, "the replay's Idempotency-Key header")
		}
		assert.JSONEq(t, string(out.First.Body), string(out.Again.Body), "the replayed body is the stored one")
		assert.Equal(t, 1, h.ledgerCount(5100), "charges the gateway made for the create and its replay")
		n := 0
		for _, c := range h.srv.Charges() {
			if c.ID == chID {
				n++
				assert.Equal(t, out.Key, c.IdempotencyKey, "the ledger's key of the intent's charge")
				assert.True(t, c.Captured, "the ledger's captured of the intent's charge")
			}
		}
		assert.Equal(t, 1, n, "charges with ID %s in the gateway's ledger", chID)
	})

	t.Run("pi_confirm", func(t *testing.T) {
		var out struct {
			Created   response `json:"created"`
			Confirmed response `json:"confirmed"`
		}
		h.run(t, "pi_confirm", &out)
		pi := out.Created.intent(t)
		assertStripeIntent(t, out.Created, 5200)
		assert.Equal(t, "requires_confirmation", pi.Status, "status, created with a payment method and no confirm")
		assert.Nil(t, pi.LatestCharge, "latest_charge, before confirmation")
		assert.Equal(t, int64(0), pi.AmountReceived, "amount_received, before confirmation")

		conf := out.Confirmed.intent(t)
		assert.Equal(t, 200, out.Confirmed.Status)
		assert.Equal(t, pi.ID, conf.ID, "the confirmed intent's ID")
		assert.Equal(t, "succeeded", conf.Status, "status, after confirm")
		assert.Equal(t, int64(5200), conf.AmountReceived, "amount_received, after confirm")
		conf.latestCharge(t)
		assert.Nil(t, conf.LastPaymentError, "last_payment_error, after a successful confirm")
		assert.Equal(t, 1, h.ledgerCount(5200), "charges the gateway made for the confirmation")
	})

	t.Run("pi_cancel", func(t *testing.T) {
		var out struct {
			Created         response    `json:"created"`
			Canceled        response    `json:"canceled"`
			Succeeded       response    `json:"succeeded"`
			CancelSucceeded stripeError `json:"cancel_succeeded"`
		}
		h.run(t, "pi_cancel", &out)
		pi := out.Created.intent(t)
		assertStripeIntent(t, out.Created, 5300)
		assert.Equal(t, "requires_confirmation", pi.Status, "status, before cancel")
		c := out.Canceled.intent(t)
		assert.Equal(t, 200, out.Canceled.Status)
		assert.Equal(t, pi.ID, c.ID, "the canceled intent's ID")
		assert.Equal(t, "canceled", c.Status, "status, after cancel")
		if assert.NotNil(t, c.CancellationReason, "cancellation_reason") {
			assert.Equal(t, "requested_by_customer", *c.CancellationReason, "cancellation_reason")
		}
		if assert.NotNil(t, c.CanceledAt, "canceled_at") {
			assert.GreaterOrEqual(t, *c.CanceledAt, c.Created, "canceled_at")
		}
		assert.Nil(t, c.LatestCharge, "latest_charge of an intent canceled before confirmation")
		assert.Zero(t, h.ledgerCount(5300), "charges the gateway made for an intent canceled unconfirmed")

		done := out.Succeeded.intent(t)
		assert.Equal(t, "succeeded", done.Status, "status, confirmed at creation")
		e := out.CancelSucceeded.require(t)
		assert.Equal(t, "StripeInvalidRequestError", e.Class, "stripe-node's error class, canceling a succeeded intent")
		assert.Equal(t, 400, e.Status, "status, canceling a succeeded intent")
		assert.Equal(t, "invalid_request_error", e.Type, "error type, canceling a succeeded intent")
		assert.Equal(t, "payment_intent_unexpected_state", e.Code, "error code, canceling a succeeded intent")
		// Stripe's error names the intent, in its current state.
		ei := e.intent(t)
		assert.Equal(t, done.ID, ei.ID, "the error's payment_intent")
		assert.Equal(t, "succeeded", ei.Status, "the error's payment_intent.status")
		t.Logf("cancel of a succeeded intent: %s", e.Message)
	})

	t.Run("pi_decline", func(t *testing.T) {
		var out struct {
			Declined struct {
				stripeError
				RawPaymentIntent   json.RawMessage `json:"raw_payment_intent"`
				PaymentIntentIsRaw bool            `json:"payment_intent_is_raw"`
			} `json:"declined"`
			Retried *response `json:"retried"`
		}
		h.run(t, "pi_decline", &out)
		d := out.Declined.require(t)
		assertDecline(t, d, "generic_decline")
		assert.True(t, strings.HasPrefix(d.Charge, "ch_"), "the card error's charge: %q", d.Charge)
		// stripe-node exposes the envelope's payment_intent as
		// err.payment_intent, the same object as err.raw.payment_intent.
		require.NotEmpty(t, d.PaymentIntent, "err.payment_intent")
		assert.True(t, out.Declined.PaymentIntentIsRaw, "err.payment_intent is err.raw.payment_intent")
		assert.JSONEq(t, string(d.PaymentIntent), string(out.Declined.RawPaymentIntent), "err.raw.payment_intent")
		pi := d.intent(t)
		assert.True(t, strings.HasPrefix(pi.ID, "pi_"), "the error's payment_intent.id %q", pi.ID)
		assert.Equal(t, int64(5400), pi.Amount, "the error's payment_intent.amount")
		assert.Equal(t, "requires_payment_method", pi.Status, "the error's payment_intent.status")
		assert.Nil(t, pi.PaymentMethod, "the error's payment_intent.payment_method, after a decline")
		assert.Equal(t, int64(0), pi.AmountReceived, "the error's payment_intent.amount_received")
		assert.Equal(t, d.Charge, pi.latestCharge(t), "the error's payment_intent.latest_charge is the failed charge")
		if lpe := pi.LastPaymentError; assert.NotNil(t, lpe, "the error's payment_intent.last_payment_error") {
			assert.Equal(t, "card_error", lpe.Type, "last_payment_error.type")
			assert.Equal(t, "card_declined", lpe.Code, "last_payment_error.code")
			assert.Equal(t, "generic_decline", lpe.DeclineCode, "last_payment_error.decline_code")
			assert.Equal(t, d.Charge, lpe.Charge, "last_payment_error.charge")
			if assert.NotNil(t, lpe.PaymentMethod, "last_payment_error.payment_method") {
				assert.True(t, strings.HasPrefix(lpe.PaymentMethod.ID, "pm_"), "last_payment_error.payment_method.id %q", lpe.PaymentMethod.ID)
			}
		}

		require.NotNil(t, out.Retried, "the flow confirmed the declined intent again")
		r := out.Retried.intent(t)
		assert.Equal(t, 200, out.Retried.Status)
		assert.Equal(t, pi.ID, r.ID, "the retried intent's ID")
		assert.Equal(t, "succeeded", r.Status, "status, confirmed again with pm_card_visa")
		assert.Equal(t, int64(5400), r.AmountReceived, "amount_received, confirmed again")
		assert.Nil(t, r.LastPaymentError, "last_payment_error, after a successful confirm")
		newCharge := r.latestCharge(t)
		assert.NotEqual(t, d.Charge, newCharge, "the successful confirm makes a new charge")
		statuses := map[string]string{}
		for _, c := range h.srv.Charges() {
			if c.ID == d.Charge || c.ID == newCharge {
				statuses[c.ID] = c.Status
			}
		}
		assert.Equal(t, map[string]string{d.Charge: mock.StatusFailed, newCharge: mock.StatusSucceeded}, statuses,
			"the ledger's statuses of the declined and the successful charge")
	})

	t.Run("pi_refund", func(t *testing.T) {
		var out struct {
			Intent response    `json:"intent"`
			Refund response    `json:"refund"`
			Over   stripeError `json:"over"`
			Charge response    `json:"charge"`
		}
		h.run(t, "pi_refund", &out)
		pi := out.Intent.intent(t)
		assert.Equal(t, "succeeded", pi.Status, "status, confirmed at creation")
		chID := pi.latestCharge(t)
		assertRefund(t, out.Refund, chID, 1000)
		var re struct {
			PaymentIntent *string `json:"payment_intent"`
		}
		require.NoError(t, json.Unmarshal(out.Refund.Body, &re))
		if assert.NotNil(t, re.PaymentIntent, "the refund's payment_intent") {
			assert.Equal(t, pi.ID, *re.PaymentIntent, "the refund's payment_intent")
		}
		over := out.Over.require(t)
		assert.Equal(t, "StripeInvalidRequestError", over.Class, "stripe-node's error class, over-refunding an intent")
		assert.Equal(t, 400, over.Status, "status, over-refunding an intent")
		assert.Equal(t, "invalid_request_error", over.Type, "error type, over-refunding an intent")
		t.Logf("over-refund by payment_intent: code %q, param %q: %s", over.Code, over.Param, over.Message)
		ch := out.Charge.charge(t)
		assert.Equal(t, chID, ch.ID)
		assert.Equal(t, int64(1000), ch.AmountRefunded, "amount_refunded after a refused over-refund")
		assert.False(t, ch.Refunded, "refunded after a refused over-refund")
		assert.Equal(t, pi.ID, out.Charge.chargeIntent(t), "the charge's payment_intent")
	})

	t.Run("pi_list", func(t *testing.T) {
		var out struct {
			Created   []string `json:"created"`
			Listed    []string `json:"listed"`
			Pages     []string `json:"pages"`
			FirstPage struct {
				Object  string   `json:"object"`
				URL     string   `json:"url"`
				HasMore bool     `json:"has_more"`
				IDs     []string `json:"ids"`
				Objects []string `json:"objects"`
			} `json:"first_page"`
		}
		h.run(t, "pi_list", &out)
		require.Len(t, out.Created, 5)
		newestFirst := slices.Clone(out.Created)
		slices.Reverse(newestFirst)
		assert.Equal(t, newestFirst, out.Listed, "payment intents auto-paged two at a time, newest first")
		assert.Len(t, out.Pages, 3, "GETs to list five payment intents two a page: %v", out.Pages)
		assert.Equal(t, "list", out.FirstPage.Object, "a page's object")
		assert.Equal(t, "/v1/payment_intents", out.FirstPage.URL, "a page's url")
		assert.True(t, out.FirstPage.HasMore, "the first page's has_more")
		assert.Equal(t, newestFirst[:2], out.FirstPage.IDs, "the first page")
		assert.Equal(t, []string{"payment_intent", "payment_intent"}, out.FirstPage.Objects, "the first page's objects")
	})

	t.Run("webhook", func(t *testing.T) { checkWebhook(t, h) })
}

// harness is a mock server and the lines flows.mjs printed about it, by
// flow.
type harness struct {
	srv   *mock.Server
	lines map[string]json.RawMessage
}

// runFlows runs flows.mjs against the server at url, for the flows named or
// for all, and returns the line it printed for each flow. It fails the test
// if node does not finish within flowTimeout or prints a line that is not
// JSON; a flow that printed no line fails in [harness.run].
func runFlows(t *testing.T, node, url string, flows ...string) map[string]json.RawMessage {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), flowTimeout)
	defer cancel()
	args := append([]string{"flows.mjs", url, apiKey}, flows...)
	cmd := exec.CommandContext(ctx, node, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	cmd.WaitDelay = 5 * time.Second
	start := time.Now()
	err := cmd.Run()
	t.Logf("node flows.mjs %s sk_test_… %s: %v", url, strings.Join(flows, " "), time.Since(start).Round(time.Millisecond))
	if ctx.Err() != nil {
		t.Fatalf("node flows.mjs did not finish within %v\nstdout:\n%s\nstderr:\n%s", flowTimeout, &stdout, &stderr)
	}
	if err != nil {
		// A flow's unexpected error is reported by its subtest.
		t.Logf("node flows.mjs: %v\nstderr:\n%s", err, &stderr)
	}
	lines := map[string]json.RawMessage{}
	for line := range bytes.Lines(stdout.Bytes()) {
		var head struct {
			Flow string `json:"flow"`
		}
		if err := json.Unmarshal(line, &head); err != nil || head.Flow == "" {
			t.Fatalf("node flows.mjs printed %q, not a flow's line of JSON (%v)\nstderr:\n%s", line, err, &stderr)
		}
		lines[head.Flow] = bytes.TrimSpace(line)
	}
	return lines
}

// run decodes into out the line flows.mjs printed for flow. A flow that met
// an error it did not expect, or printed no line, fails the test.
func (h *harness) run(t *testing.T, flow string, out any) {
	t.Helper()
	line, ok := h.lines[flow]
	if !ok {
		t.Fatalf("flows.mjs printed no line for flow %s", flow)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("flows.mjs printed for flow %s:\n%s", flow, line)
		}
	})
	var head struct {
		Unexpected *stripeError `json:"unexpected"`
	}
	require.NoError(t, json.Unmarshal(line, &head), "decode flow %s", flow)
	if u := head.Unexpected; u != nil {
		t.Fatalf("flow %s met an error it did not expect: %s (status %d, type %q, code %q): %s",
			flow, u.Class, u.Status, u.Type, u.Code, u.Message)
	}
	require.NoError(t, json.Unmarshal(line, out), "decode flow %s", flow)
}

// ledgerCount counts the charges of amount the gateway holds for apiKey.
func (h *harness) ledgerCount(amount int64) int {
	n := 0
	for _, c := range h.srv.Charges() {
		if c.Account == mock.AccountID(apiKey) && c.Amount == amount {
			n++
		}
	}
	return n
}

// response is what flows.mjs records of a response stripe-node returned.
type response struct {
	Body               json.RawMessage `json:"body"`
	Status             int             `json:"status"`
	IdempotentReplayed *string         `json:"idempotent_replayed"`
	IdempotencyKey     *string         `json:"idempotency_key"`
	RequestID          *string         `json:"request_id"`
}

func (r response) replayed() bool {
	return r.IdempotentReplayed != nil && *r.IdempotentReplayed == "true"
}

// stripeCharge is the part of Stripe's charge object the flows check.
type stripeCharge struct {
	ID             string            `json:"id"`
	Object         string            `json:"object"`
	Amount         int64             `json:"amount"`
	AmountCaptured int64             `json:"amount_captured"`
	AmountRefunded int64             `json:"amount_refunded"`
	Currency       string            `json:"currency"`
	Status         string            `json:"status"`
	Paid           bool              `json:"paid"`
	Captured       bool              `json:"captured"`
	Refunded       bool              `json:"refunded"`
	Livemode       bool              `json:"livemode"`
	Description    *string           `json:"description"`
	Metadata       map[string]string `json:"metadata"`
	Created        int64             `json:"created"`
	Outcome        *struct {
		Type string `json:"type"`
	} `json:"outcome"`
}

// charge decodes r's body as a charge.
func (r response) charge(t *testing.T) stripeCharge {
	t.Helper()
	var ch stripeCharge
	require.NoError(t, json.Unmarshal(r.Body, &ch), "decode charge %s", r.Body)
	require.Equal(t, "charge", ch.Object, "object of %s", r.Body)
	return ch
}

// stripeError is what flows.mjs records of an error stripe-node threw:
// Class is the error's class (StripeCardError…), Type the "type" of
// Stripe's error envelope. Succeeded is set instead when a call that
// should have failed did not.
type stripeError struct {
	Class              string          `json:"class"`
	StripeError        bool            `json:"stripe_error"`
	Status             int             `json:"status"`
	Type               string          `json:"type"`
	Code               string          `json:"code"`
	DeclineCode        string          `json:"decline_code"`
	Param              string          `json:"param"`
	Charge             string          `json:"charge"`
	PaymentIntent      json.RawMessage `json:"payment_intent"` // err.payment_intent
	Message            string          `json:"message"`
	IdempotentReplayed *string         `json:"idempotent_replayed"`
	IdempotencyKey     *string         `json:"idempotency_key"`
	Succeeded          *response       `json:"succeeded"`
}

// require fails the test unless e is an error from Stripe's API.
func (e stripeError) require(t *testing.T) stripeError {
	t.Helper()
	if e.Succeeded != nil {
		t.Fatalf("the call succeeded, with %d %s", e.Succeeded.Status, e.Succeeded.Body)
	}
	if !e.StripeError {
		t.Fatalf("stripe-node threw %s, not a StripeError: %s", e.Class, e.Message)
	}
	return e
}

func (e stripeError) replayed() bool {
	return e.IdempotentReplayed != nil && *e.IdempotentReplayed == "true"
}

// assertStripeCharge checks the fields of Stripe's charge object that every
// successful card charge has.
func assertStripeCharge(t *testing.T, r response, amount int64) {
	t.Helper()
	ch := r.charge(t)
	var fields map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(r.Body, &fields))
	for _, f := range []string{"paid", "captured", "amount_captured", "amount_refunded", "status", "outcome", "payment_intent"} {
		assert.Contains(t, fields, f, "Stripe's charge object has %s", f)
	}
	assert.True(t, strings.HasPrefix(ch.ID, "ch_"), "id %q", ch.ID)
	assert.Equal(t, amount, ch.Amount, "amount")
	assert.Equal(t, "usd", ch.Currency, "currency")
	assert.True(t, ch.Paid, "paid")
	assert.Equal(t, int64(0), ch.AmountRefunded, "amount_refunded")
	assert.False(t, ch.Refunded, "refunded")
	assert.False(t, ch.Livemode, "livemode")
	assert.NotZero(t, ch.Created, "created")
	if assert.NotNil(t, ch.Outcome, "outcome") {
		assert.Equal(t, "authorized", ch.Outcome.Type, "outcome.type")
	}
	if pi, ok := fields["payment_intent"]; ok {
		assert.Equal(t, "null", string(pi), "payment_intent of a charge made with a source")
	}
}

// assertDecline checks a card decline as stripe-node raises it.
func assertDecline(t *testing.T, e stripeError, declineCode string) {
	t.Helper()
	assert.Equal(t, "StripeCardError", e.Class, "stripe-node's error class")
	assert.Equal(t, 402, e.Status, "status")
	assert.Equal(t, "card_error", e.Type, "error type")
	assert.Equal(t, "card_declined", e.Code, "error code")
	assert.Equal(t, declineCode, e.DeclineCode, "decline_code")
}

// assertRefund checks Stripe's refund object.
func assertRefund(t *testing.T, r response, chargeID string, amount int64) {
	t.Helper()
	var re struct {
		ID       string `json:"id"`
		Object   string `json:"object"`
		Amount   int64  `json:"amount"`
		Charge   string `json:"charge"`
		Currency string `json:"currency"`
		Status   string `json:"status"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &re), "decode refund %s", r.Body)
	assert.Equal(t, 200, r.Status)
	assert.Equal(t, "refund", re.Object, "object")
	assert.True(t, strings.HasPrefix(re.ID, "re_"), "id %q", re.ID)
	assert.Equal(t, amount, re.Amount, "amount")
	assert.Equal(t, chargeID, re.Charge, "charge")
	assert.Equal(t, "usd", re.Currency, "currency")
	assert.Equal(t, "succeeded", re.Status, "status")
}

// stripeIntent is the part of Stripe's payment intent object the flows
// check.
type stripeIntent struct {
	ID                 string            `json:"id"`
	Object             string            `json:"object"`
	Amount             int64             `json:"amount"`
	AmountCapturable   int64             `json:"amount_capturable"`
	AmountReceived     int64             `json:"amount_received"`
	Currency           string            `json:"currency"`
	Status             string            `json:"status"`
	CaptureMethod      string            `json:"capture_method"`
	ClientSecret       string            `json:"client_secret"`
	CancellationReason *string           `json:"cancellation_reason"`
	CanceledAt         *int64            `json:"canceled_at"`
	LatestCharge       *string           `json:"latest_charge"`
	PaymentMethod      *string           `json:"payment_method"`
	Livemode           bool              `json:"livemode"`
	Metadata           map[string]string `json:"metadata"`
	Created            int64             `json:"created"`
	LastPaymentError   *struct {
		Type          string `json:"type"`
		Code          string `json:"code"`
		DeclineCode   string `json:"decline_code"`
		Charge        string `json:"charge"`
		PaymentMethod *struct {
			ID string `json:"id"`
		} `json:"payment_method"`
	} `json:"last_payment_error"`
}

func decodeIntent(t *testing.T, b json.RawMessage) stripeIntent {
	t.Helper()
	var pi stripeIntent
	require.NoError(t, json.Unmarshal(b, &pi), "decode payment intent %s", b)
	require.Equal(t, "payment_intent", pi.Object, "object of %s", b)
	return pi
}

// intent decodes r's body as a payment intent.
func (r response) intent(t *testing.T) stripeIntent {
	t.Helper()
	return decodeIntent(t, r.Body)
}

// intent decodes the payment_intent that e names.
func (e stripeError) intent(t *testing.T) stripeIntent {
	t.Helper()
	require.NotEmpty(t, e.PaymentIntent, "the error's payment_intent")
	require.NotEqual(t, "null", string(e.PaymentIntent), "the error's payment_intent")
	return decodeIntent(t, e.PaymentIntent)
}

// latestCharge returns pi's latest_charge, which must name a charge.
func (pi stripeIntent) latestCharge(t *testing.T) string {
	t.Helper()
	require.NotNil(t, pi.LatestCharge, "latest_charge of %s", pi.ID)
	require.True(t, strings.HasPrefix(*pi.LatestCharge, "ch_"), "latest_charge %q", *pi.LatestCharge)
	return *pi.LatestCharge
}

// chargeIntent returns the payment_intent of the charge in r's body, ""
// when it is null.
func (r response) chargeIntent(t *testing.T) string {
	t.Helper()
	var ch struct {
		PaymentIntent *string `json:"payment_intent"`
	}
	require.NoError(t, json.Unmarshal(r.Body, &ch), "decode charge %s", r.Body)
	if ch.PaymentIntent == nil {
		return ""
	}
	return *ch.PaymentIntent
}

// assertStripeIntent checks the fields of Stripe's payment intent object
// that every intent the flows create has.
func assertStripeIntent(t *testing.T, r response, amount int64) {
	t.Helper()
	assert.Equal(t, 200, r.Status)
	pi := r.intent(t)
	assert.True(t, strings.HasPrefix(pi.ID, "pi_"), "id %q", pi.ID)
	assert.Equal(t, amount, pi.Amount, "amount")
	assert.Equal(t, "usd", pi.Currency, "currency")
	assert.False(t, pi.Livemode, "livemode")
	assert.NotZero(t, pi.Created, "created")
	assert.True(t, strings.HasPrefix(pi.ClientSecret, pi.ID+"_secret_"), "client_secret %q", pi.ClientSecret)
	if assert.NotNil(t, pi.PaymentMethod, "payment_method") {
		assert.True(t, strings.HasPrefix(*pi.PaymentMethod, "pm_"), "payment_method %q", *pi.PaymentMethod)
	}
	var fields map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(r.Body, &fields))
	for _, f := range []string{"amount_capturable", "amount_received", "capture_method", "confirmation_method",
		"latest_charge", "last_payment_error", "next_action", "payment_method_types", "cancellation_reason", "canceled_at"} {
		assert.Contains(t, fields, f, "Stripe's payment intent object has %s", f)
	}
}

func deref(s *string) any {
	if s == nil {
		return nil
	}
	return *s
}

const installHowTo = `to run them, install Node.js 20 or later and, from the repository's root:
  npm ci --prefix mock/stripenode --no-audit --no-fund
(.ci/run does the same and runs every test)`

// nodeOrSkip returns the path of node, after checking that it is Node 20 or
// later and that node_modules holds the stripe-node that package.json pins.
// When node or the install is missing it skips the test, saying how to
// install them, or fails it under CI=true, where .ci/run installs both. A
// stripe-node of another version fails the test.
func nodeOrSkip(t *testing.T) string {
	t.Helper()
	node, err := exec.LookPath("node")
	if err != nil {
		unavailable(t, "node is not on PATH")
	}
	v, err := exec.Command(node, "--version").Output()
	if err != nil {
		unavailable(t, fmt.Sprintf("%s --version: %v", node, err))
	}
	version := strings.TrimSpace(string(v))
	major, _, _ := strings.Cut(strings.TrimPrefix(version, "v"), ".")
	if n, err := strconv.Atoi(major); err != nil || n < 20 {
		unavailable(t, fmt.Sprintf("node is %s, and stripe-node needs 20 or later", version))
	}

	var pkg struct {
		Dependencies map[string]string `json:"dependencies"`
	}
	b, err := os.ReadFile("package.json")
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &pkg), "package.json")
	want := pkg.Dependencies["stripe"]
	require.NotEmpty(t, want, "package.json pins no stripe")

	b, err = os.ReadFile("node_modules/stripe/package.json")
	if errors.Is(err, fs.ErrNotExist) {
		unavailable(t, "stripe-node is not installed in mock/stripenode/node_modules")
	}
	require.NoError(t, err)
	var installed struct {
		Version string `json:"version"`
	}
	require.NoError(t, json.Unmarshal(b, &installed), "node_modules/stripe/package.json")
	if installed.Version != want {
		t.Fatalf("mock/stripenode/node_modules has stripe %s, but package.json pins %s: run npm ci --prefix mock/stripenode", installed.Version, want)
	}
	t.Logf("%s, stripe-node %s", version, installed.Version)
	return node
}

func unavailable(t *testing.T, why string) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf("%s, and CI=true: the CI machine has Node.js 20 or later, and .ci/run runs npm ci --prefix mock/stripenode", why)
	}
	t.Skipf("%s, so stripe-node's flows are skipped; %s", why, installHowTo)
}

// checkWebhook checks the webhook flow: stripe-node creates the endpoint,
// and its constructEvent verifies every copy the mock delivers.
func checkWebhook(t *testing.T, h *harness) {
	type verified struct {
		Verified bool   `json:"verified"`
		ID       string `json:"id"`
		Type     string `json:"type"`
		ObjectID string `json:"object_id"`
		Livemode bool   `json:"livemode"`
		Error    string `json:"error"`
	}
	var out struct {
		Endpoint struct {
			ID            string   `json:"id"`
			URL           string   `json:"url"`
			SecretPrefix  string   `json:"secret_prefix"`
			EnabledEvents []string `json:"enabled_events"`
		} `json:"endpoint"`
		FaultStatus int    `json:"fault_status"`
		ChargeID    string `json:"charge_id"`
		Waited      struct {
			Status int                `json:"status"`
			Body   mock.DeliveryStats `json:"body"`
		} `json:"waited"`
		Received []struct {
			Path   string `json:"path"`
			Signed bool   `json:"signed"`
			verified
		} `json:"received"`
		Forged   verified `json:"forged"`
		Tampered struct {
			Changed bool `json:"changed"`
			verified
		} `json:"tampered"`
		Deleted bool `json:"deleted"`
	}
	h.run(t, "webhook", &out)
	assert.True(t, strings.HasPrefix(out.Endpoint.ID, "we_"), "endpoint id %q", out.Endpoint.ID)
	assert.Equal(t, "whsec_", out.Endpoint.SecretPrefix, "the endpoint's secret, as stripe-node returns it")
	assert.Equal(t, []string{"charge.succeeded"}, out.Endpoint.EnabledEvents)
	assert.Equal(t, 200, out.FaultStatus, "the duplicate fault was injected")
	assert.Equal(t, 200, out.Waited.Status, "nothing left pending")
	stats := out.Waited.Body
	stats.Events = 0 // the other flows' events count too; only this one had an endpoint
	assert.Equal(t, mock.DeliveryStats{Deliveries: 3, Attempts: 3, Delivered: 3}, stats)

	require.Len(t, out.Received, 3, "the event and its two copies")
	first := out.Received[0]
	assert.True(t, strings.HasPrefix(first.ID, "evt_"), "event id %q", first.ID)
	for i, r := range out.Received {
		assert.Equal(t, "/hooks/stripe", r.Path, "delivery %d", i)
		assert.True(t, r.Signed, "delivery %d has a Stripe-Signature", i)
		assert.True(t, r.Verified, "stripe-node's constructEvent accepts delivery %d: %s", i, r.Error)
		assert.Equal(t, first.ID, r.ID, "every copy is the same event")
		assert.Equal(t, "charge.succeeded", r.Type, "delivery %d", i)
		assert.Equal(t, out.ChargeID, r.ObjectID, "delivery %d carries the charge", i)
		assert.False(t, r.Livemode, "delivery %d", i)
	}
	assert.False(t, out.Forged.Verified, "signed with another secret")
	assert.Equal(t, "StripeSignatureVerificationError", out.Forged.Error)
	assert.True(t, out.Tampered.Changed, "the flow altered the body")
	assert.False(t, out.Tampered.Verified, "a body altered after signing")
	assert.Equal(t, "StripeSignatureVerificationError", out.Tampered.Error)
	assert.True(t, out.Deleted, "the endpoint was deleted")
}
