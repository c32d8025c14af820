package mock

import (
	"slices"
	"strconv"
	"strings"
)

// Payment intents, in the core: one state machine over the charges it
// makes (docs/protocol.md §9.5). Only the Stripe dialect serves them.
//
//	create ──────────────▶ requires_payment_method ◀──────────┐ decline
//	create with a card ──▶ requires_confirmation              │
//	confirm ─▶ a charge ─▶ succeeded (automatic capture) ─────┤
//	                     ▶ requires_capture (manual) ─capture─▶ succeeded
//	cancel, from requires_payment_method, requires_confirmation or
//	requires_capture (which releases the authorization) ─▶ canceled
//
// Every transition happens under the account's lock, with the charge it
// makes or changes, so an intent and its latest charge never disagree.

// Payment intent statuses.
const (
	intentRequiresPaymentMethod = "requires_payment_method"
	intentRequiresConfirmation  = "requires_confirmation"
	intentRequiresCapture       = "requires_capture"
	intentSucceeded             = "succeeded"
	intentCanceled              = "canceled"
)

// Capture methods. automatic_async, Stripe's default, captures as
// automatic does: the mock has no asynchronous settlement.
const (
	captureAutomatic      = "automatic"
	captureAutomaticAsync = "automatic_async"
	captureManual         = "manual"
)

// Cancellation reasons a request may give.
const ReasonAbandoned = "abandoned"

// The parameters of the intents' endpoints. return_url is accepted and
// ignored: no test card redirects.
var (
	intentFields        = []string{"amount", "currency", "payment_method", "confirm", "capture_method", "description", "metadata", "payment_method_types", "automatic_payment_methods", "return_url"}
	confirmFields       = []string{"payment_method", "return_url"}
	intentCaptureFields = []string{"amount_to_capture"}
	cancelFields        = []string{"cancellation_reason"}
)

// paymentIntent is a stored payment intent. It changes only under its
// account's lock; what its pointers and slices hold never changes, so a
// copy is a snapshot.
type paymentIntent struct {
	id                 string
	amount             int64
	amountCapturable   int64
	amountReceived     int64
	currency           string
	status             string
	captureMethod      string
	paymentMethod      string // "" for none
	card               card   // what paymentMethod stands for
	methodTypes        []string
	automatic          *bool // automatic_payment_methods[enabled]; nil when methodTypes were given
	description        *string
	metadata           map[string]string
	created            int64
	canceledAt         int64 // 0 until canceled
	cancellationReason *string
	latestCharge       string    // "" until confirmed
	lastError          *apiError // the decline of the last confirmation; nil after a success
	lastErrorPM        string    // the payment method that lastError declined
	secret             string    // of its client_secret
	index              int       // position in account.intents
}

func (pi *paymentIntent) snapshot() *paymentIntent {
	snap := *pi
	return &snap
}

// intentParams are the fields of an intent's creation.
type intentParams struct {
	amount        int64
	currency      string
	paymentMethod string // "" for none yet
	confirm       bool
	captureMethod string
	description   *string
	metadata      map[string]string
	methodTypes   []string
	automatic     *bool
}

func parseIntentParams(p fields) (ip intentParams, e *apiError) {
	if ip.amount, _, e = p.amount("amount", true); e != nil {
		return ip, e
	}
	cur, _, e := p.str("currency", true)
	if e != nil {
		return ip, e
	}
	var ok bool
	if ip.currency, ok = currencyCode(cur); !ok {
		return ip, invalidParam("invalid_currency", "currency", "currency must be an ISO 4217 code, such as usd")
	}
	if ip.paymentMethod, _, e = p.str("payment_method", false); e != nil {
		return ip, e
	}
	if ip.confirm, _, e = p.boolean("confirm"); e != nil {
		return ip, e
	}
	if ip.confirm && ip.paymentMethod == "" {
		return ip, invalidParam("parameter_missing", "payment_method",
			"a payment intent created with confirm=true needs a payment_method")
	}
	method, given, e := p.str("capture_method", false)
	switch {
	case e != nil:
		return ip, e
	case !given:
		ip.captureMethod = captureAutomaticAsync // Stripe's default
	case method == captureAutomatic || method == captureAutomaticAsync || method == captureManual:
		ip.captureMethod = method
	default:
		return ip, invalidParam("parameter_invalid_string", "capture_method",
			"capture_method must be automatic, automatic_async or manual")
	}
	if ip.description, e = description(p); e != nil {
		return ip, e
	}
	if ip.metadata, e = p.metadata(); e != nil {
		return ip, e
	}
	if _, _, e = p.str("return_url", false); e != nil {
		return ip, e
	}
	types, typesGiven, e := p.list("payment_method_types")
	if e != nil {
		return ip, e
	}
	apm, apmGiven, e := p.object("automatic_payment_methods", "enabled")
	if e != nil {
		return ip, e
	}
	switch {
	case typesGiven && apmGiven:
		return ip, invalidParam("parameters_exclusive", "automatic_payment_methods",
			"send automatic_payment_methods or payment_method_types, not both")
	case typesGiven:
		for i, t := range types {
			if t == "" {
				return ip, invalidParam("parameter_invalid_string", "payment_method_types["+strconv.Itoa(i)+"]",
					"payment method types must not be empty")
			}
		}
		ip.methodTypes = types
		if ip.paymentMethod != "" && !slices.Contains(types, "card") {
			return ip, incompatibleMethod(ip.paymentMethod)
		}
	default:
		enabled := true // Stripe's default
		if apmGiven {
			var given bool
			if enabled, given, e = apm.boolean("enabled"); e != nil {
				e.Param = "automatic_payment_methods[enabled]"
				e.Message = e.Param + " must be true or false"
				return ip, e
			} else if !given {
				return ip, missing("automatic_payment_methods[enabled]")
			}
		}
		ip.methodTypes, ip.automatic = []string{"card"}, &enabled
	}
	return ip, nil
}

func incompatibleMethod(pm string) *apiError {
	return invalidParam("payment_intent_incompatible_payment_method", "payment_method",
		"the payment method "+strconv.Quote(pm)+" is a card, and card is not among the payment_method_types")
}

// parseCancellationReason reads an optional cancellation_reason.
func parseCancellationReason(p fields) (*string, *apiError) {
	reason, ok, e := p.str("cancellation_reason", false)
	if e != nil || !ok {
		return nil, e
	}
	switch reason {
	case ReasonDuplicate, ReasonFraudulent, ReasonRequestedByCustomer, ReasonAbandoned:
		return &reason, nil
	}
	return nil, invalidParam("parameter_invalid_string", "cancellation_reason",
		"cancellation_reason must be duplicate, fraudulent, requested_by_customer or abandoned")
}

// noSuchIntent is the error of an unknown intent id, which is not stored.
func noSuchIntent(param, id string) *apiError {
	return missingResource(param, "no such payment_intent: "+strconv.Quote(id))
}

// unexpectedState is the stored error of an operation that pi's status
// does not allow, naming the statuses that would.
func unexpectedState(pi *paymentIntent, verb, done string, allowed ...string) *apiError {
	e := invalidParam("payment_intent_unexpected_state", "",
		"You cannot "+verb+" this PaymentIntent because it has a status of "+pi.status+
			". Only a PaymentIntent with one of the following statuses may be "+done+": "+strings.Join(allowed, ", ")+".")
	e.stored, e.intent = true, pi.snapshot()
	return e
}

// createIntent creates a payment intent for acct and, with ip.confirm,
// confirms it under key, as one operation.
func (w *world) createIntent(acct *account, ip *intentParams, key string) (paymentIntent, *apiError) {
	pi := &paymentIntent{
		id: newID("pi_", 15), amount: ip.amount, currency: ip.currency, status: intentRequiresPaymentMethod,
		captureMethod: ip.captureMethod, paymentMethod: ip.paymentMethod, methodTypes: ip.methodTypes,
		automatic: ip.automatic, description: ip.description, metadata: ip.metadata,
		created: w.g.Now().Unix(), secret: newID("secret_", 15),
	}
	if ip.paymentMethod != "" {
		c, e := cardOf(ip.paymentMethod)
		if e != nil {
			return paymentIntent{}, e
		}
		pi.card, pi.status = c, intentRequiresConfirmation
	}
	acct.mu.Lock()
	defer acct.mu.Unlock()
	pi.index = len(acct.intents)
	acct.intents = append(acct.intents, pi)
	acct.intentByID[pi.id] = pi
	var e *apiError
	if ip.confirm {
		e = w.confirmLocked(acct, pi, key)
	}
	return *pi, e
}

// getIntent returns a copy of acct's payment intent id.
func (acct *account) getIntent(id string) (paymentIntent, *apiError) {
	acct.mu.Lock()
	defer acct.mu.Unlock()
	pi := acct.intentByID[id]
	if pi == nil {
		return paymentIntent{}, noSuchIntent("intent", id)
	}
	return *pi, nil
}

// listIntents returns a page of acct's payment intents, newest first, and
// whether more lie beyond it.
func (acct *account) listIntents(pg page) ([]paymentIntent, bool, *apiError) {
	acct.mu.Lock()
	defer acct.mu.Unlock()
	items, more, e := pageOf(acct.intents, pg, "payment_intent",
		func(id string) *paymentIntent { return acct.intentByID[id] },
		func(pi *paymentIntent) int { return pi.index })
	out := make([]paymentIntent, len(items))
	for i, pi := range items {
		out[i] = *pi
	}
	return out, more, e
}

// confirmIntent confirms acct's intent id under key, with the payment
// method pm if given ("" to use the intent's own).
func (w *world) confirmIntent(acct *account, id, pm, key string) (paymentIntent, *apiError) {
	acct.mu.Lock()
	defer acct.mu.Unlock()
	pi := acct.intentByID[id]
	if pi == nil {
		return paymentIntent{}, noSuchIntent("intent", id)
	}
	var c card
	if pm != "" {
		var e *apiError
		if c, e = cardOf(pm); e != nil {
			return *pi, e
		}
	}
	// From here on the answer depends on the intent's state: stored.
	switch {
	case pi.status != intentRequiresPaymentMethod && pi.status != intentRequiresConfirmation:
		return *pi, unexpectedState(pi, "confirm", "confirmed", intentRequiresPaymentMethod, intentRequiresConfirmation)
	case pm != "" && !slices.Contains(pi.methodTypes, "card"):
		e := incompatibleMethod(pm)
		e.stored, e.intent = true, pi.snapshot()
		return *pi, e
	case pm != "":
		pi.paymentMethod, pi.card = pm, c
	case pi.paymentMethod == "":
		e := invalidParam("payment_intent_unexpected_state", "payment_method",
			"You cannot confirm this PaymentIntent because it's missing a payment method: send payment_method.")
		e.stored, e.intent = true, pi.snapshot()
		return *pi, e
	}
	e := w.confirmLocked(acct, pi, key)
	return *pi, e
}

// confirmLocked charges pi's payment method for its amount, under key: a
// decline sends it back to requires_payment_method with last_payment_error
// and answers the decline, naming the intent; a success leaves it
// requires_capture (manual capture) or succeeded.
func (w *world) confirmLocked(acct *account, pi *paymentIntent, key string) *apiError {
	cp := chargeParams{amount: pi.amount, currency: pi.currency, paymentMethod: pi.paymentMethod,
		description: pi.description, metadata: pi.metadata, capture: pi.captureMethod != captureManual,
		recordDecline: true}
	ch, decline := w.addCharge(acct, &cp, &pi.card, key, pi.id)
	pi.latestCharge = ch.ID
	if decline != nil {
		last := *decline
		pi.status, pi.lastError, pi.lastErrorPM = intentRequiresPaymentMethod, &last, pi.paymentMethod
		pi.paymentMethod, pi.card = "", card{}
		decline.intent = pi.snapshot()
		return decline
	}
	pi.lastError, pi.lastErrorPM = nil, ""
	if pi.captureMethod == captureManual {
		pi.status, pi.amountCapturable = intentRequiresCapture, pi.amount
	} else {
		pi.status, pi.amountReceived = intentSucceeded, pi.amount
	}
	return nil
}

// captureIntent captures acct's intent id, amount if given or else all
// that is capturable.
func (acct *account) captureIntent(id string, amount int64, given bool) (paymentIntent, *apiError) {
	acct.mu.Lock()
	defer acct.mu.Unlock()
	pi := acct.intentByID[id]
	if pi == nil {
		return paymentIntent{}, noSuchIntent("intent", id)
	}
	e := acct.captureIntentLocked(pi, amount, given, "amount_to_capture")
	return *pi, e
}

// captureIntentLocked captures pi and its latest charge; param names the
// amount in errors. Its errors are stored.
func (acct *account) captureIntentLocked(pi *paymentIntent, amount int64, given bool, param string) *apiError {
	if pi.status != intentRequiresCapture {
		return unexpectedState(pi, "capture", "captured", intentRequiresCapture)
	}
	if given && amount > pi.amountCapturable {
		e := invalidParam("amount_too_large", param,
			"the amount to capture is larger than the payment intent's amount_capturable ("+
				strconv.FormatInt(pi.amountCapturable, 10)+")")
		e.stored, e.intent = true, pi.snapshot()
		return e
	}
	if !given {
		amount = pi.amountCapturable
	}
	ch := acct.changeCharge(acct.byID[pi.latestCharge])
	ch.Status, ch.Captured, ch.AmountCaptured = StatusSucceeded, true, amount
	pi.status, pi.amountReceived, pi.amountCapturable = intentSucceeded, amount, 0
	return nil
}

// cancelIntent cancels acct's intent id. An authorized charge is released:
// it shows as refunded in full, and nothing can capture it.
func (w *world) cancelIntent(acct *account, id string, reason *string) (paymentIntent, *apiError) {
	now := w.g.Now()
	acct.mu.Lock()
	defer acct.mu.Unlock()
	pi := acct.intentByID[id]
	if pi == nil {
		return paymentIntent{}, noSuchIntent("intent", id)
	}
	switch pi.status {
	case intentRequiresCapture:
		ch := acct.changeCharge(acct.byID[pi.latestCharge])
		ch.AmountRefunded, ch.Refunded = ch.Amount, true
		pi.amountCapturable = 0
	case intentRequiresPaymentMethod, intentRequiresConfirmation:
	default:
		return *pi, unexpectedState(pi, "cancel", "canceled",
			intentRequiresPaymentMethod, intentRequiresCapture, intentRequiresConfirmation)
	}
	pi.status, pi.canceledAt, pi.cancellationReason = intentCanceled, now.Unix(), reason
	return *pi, nil
}
