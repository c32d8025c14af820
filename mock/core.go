package mock

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"unicode/utf8"
)

// The gateway's core: the operations on charges and refunds, once, for
// every wire dialect. A dialect (payonce.go, stripe.go) decodes a request
// into a [fields] reader, calls the core, and encodes what it returns: a
// result, or an *apiError whose stored flag says whether the request
// executed (a decline, a business rule) or was refused before anything
// happened (validation, an unknown token or id), which the edge turns into
// a released key.
//
// Adding a field means a line in the core's parser (parseChargeParams and
// its siblings) and, if the dialect shows it, a line in its encoder.

// fields reads the parameters of a request's body, whatever its dialect.
// An absent parameter and an empty one (JSON null, a form's "name=") are
// the same, except that an empty metadata clears it.
type fields interface {
	amount(name string, required bool) (n int64, present bool, e *apiError)
	str(name string, required bool) (s string, present bool, e *apiError)
	boolean(name string) (value, present bool, e *apiError)
	metadata() (map[string]string, *apiError)
	// list reads an array of strings.
	list(name string) (l []string, present bool, e *apiError)
	// object reads a nested object, whose fields must be allowed.
	object(name string, allowed ...string) (f fields, present bool, e *apiError)
}

var (
	_ fields = params(nil)
	_ fields = formFields(nil)
)

// The parameters each endpoint reads, in the order errors name them. A
// dialect refuses any other (and may add its own, such as Stripe's expand).
var (
	chargeFields  = []string{"amount", "currency", "payment_method", "description", "metadata", "capture"}
	captureFields = []string{"amount"}
	refundFields  = []string{"charge", "amount", "reason", "metadata"}
)

// chargeParams are the fields of a charge's creation.
type chargeParams struct {
	amount        int64
	currency      string
	paymentMethod string
	description   *string
	metadata      map[string]string
	capture       bool
	// Dialect rules, set by the dialect rather than read from the body.
	viaSource     bool // Stripe: the card came as source, not payment_method
	recordDecline bool // Stripe: a decline leaves a failed charge
}

func parseChargeParams(p fields) (cp chargeParams, e *apiError) {
	if cp.amount, _, e = p.amount("amount", true); e != nil {
		return cp, e
	}
	cur, _, e := p.str("currency", true)
	if e != nil {
		return cp, e
	}
	var ok bool
	if cp.currency, ok = currencyCode(cur); !ok {
		return cp, invalidParam("invalid_currency", "currency", "currency must be an ISO 4217 code, such as usd")
	}
	if cp.paymentMethod, _, e = p.str("payment_method", true); e != nil {
		return cp, e
	}
	if cp.description, e = description(p); e != nil {
		return cp, e
	}
	if cp.metadata, e = p.metadata(); e != nil {
		return cp, e
	}
	capture, present, e := p.boolean("capture")
	if e != nil {
		return cp, e
	}
	cp.capture = capture || !present
	return cp, nil
}

// description reads an optional description of at most
// MaxDescriptionLength characters.
func description(p fields) (*string, *apiError) {
	s, ok, e := p.str("description", false)
	if e != nil || !ok {
		return nil, e
	}
	if utf8.RuneCountInString(s) > MaxDescriptionLength {
		return nil, invalidParam("parameter_too_long", "description", "description must be at most 1000 characters")
	}
	return ptr(s), nil // not &s, which would allocate s even when absent
}

// ptr returns a pointer to a copy of s. Returning &s instead would move s
// to the heap on every call, including those that return before it.
func ptr(s string) *string {
	p := new(string)
	*p = s
	return p
}

// parseAmount reads s, the literal of an amount: a whole number of minor
// units from 1 to MaxAmount, in decimal digits with an optional minus.
func parseAmount(name, s string) (int64, *apiError) {
	if s == "" || s[0] != '-' && (s[0] < '0' || s[0] > '9') {
		return 0, invalidParam("parameter_invalid_integer", name, name+" must be an integer, in minor units")
	}
	n, err := strconv.ParseInt(s, 10, 64)
	switch {
	case err != nil && errors.Is(err, strconv.ErrRange):
		if s[0] == '-' {
			return 0, invalidParam("amount_too_small", name, name+" must be at least 1")
		}
		return 0, invalidParam("amount_too_large", name, name+" must be at most 99999999")
	case err != nil: // a fraction or an exponent
		return 0, invalidParam("parameter_invalid_integer", name, name+" must be a whole number, in minor units")
	case n < 1:
		return 0, invalidParam("amount_too_small", name, name+" must be at least 1")
	case n > MaxAmount:
		return 0, invalidParam("amount_too_large", name, name+" must be at most 99999999")
	}
	return n, nil
}

// metadataEntry checks one metadata key and value against the limits.
func metadataEntry(key, value string) *apiError {
	bad := func(msg string) *apiError { return invalidParam("invalid_metadata", "metadata", msg) }
	switch {
	case key == "":
		return bad("metadata keys must not be empty")
	case utf8.RuneCountInString(key) > MaxMetadataKeyLength:
		return bad("metadata keys must be at most 40 characters")
	case utf8.RuneCountInString(value) > MaxMetadataValLength:
		return bad("metadata values must be at most 500 characters")
	}
	return nil
}

func tooManyMetadataKeys() *apiError {
	return invalidParam("invalid_metadata", "metadata", "metadata has more than 50 keys")
}

// Refund reasons.
const (
	ReasonDuplicate           = "duplicate"
	ReasonFraudulent          = "fraudulent"
	ReasonRequestedByCustomer = "requested_by_customer"
)

type refundParams struct {
	charge        string
	paymentIntent string // Stripe: refund this intent's latest charge instead
	amount        int64  // 0: what remains
	reason        *string
	metadata      map[string]string
}

func parseRefundParams(p fields) (rp refundParams, e *apiError) {
	var byIntent bool
	if rp.paymentIntent, byIntent, e = p.str("payment_intent", false); e != nil {
		return rp, e
	}
	if rp.charge, _, e = p.str("charge", !byIntent); e != nil {
		return rp, e
	}
	if byIntent && rp.charge != "" {
		return rp, invalidParam("parameters_exclusive", "payment_intent", "send charge or payment_intent, not both")
	}
	if rp.amount, _, e = p.amount("amount", false); e != nil {
		return rp, e
	}
	reason, ok, e := p.str("reason", false)
	if e != nil {
		return rp, e
	}
	if ok {
		if reason != ReasonDuplicate && reason != ReasonFraudulent && reason != ReasonRequestedByCustomer {
			return rp, invalidParam("invalid_refund_reason", "reason",
				"reason must be duplicate, fraudulent or requested_by_customer")
		}
		rp.reason = ptr(reason) // not &reason, which would allocate it even when absent
	}
	rp.metadata, e = p.metadata()
	return rp, e
}

// card is what a test payment method stands for.
type card struct {
	brand, last4, funding string
	decline               string // the decline code; "" when approved
	message               string // the decline's message
}

// testCard looks up a test payment method: a tok_ token or its pm_card_
// twin, as Stripe's test mode names them. ok is false for any other.
func testCard(pm string) (c card, ok bool) {
	name, found := strings.CutPrefix(pm, "tok_")
	if !found {
		if name, found = strings.CutPrefix(pm, "pm_card_"); !found {
			return c, false
		}
	}
	declined := func(last4, code, msg string) card {
		return card{brand: "visa", last4: last4, funding: "credit", decline: code, message: msg}
	}
	switch name {
	case "visa":
		return card{brand: "visa", last4: "4242", funding: "credit"}, true
	case "visa_debit":
		return card{brand: "visa", last4: "5556", funding: "debit"}, true
	case "mastercard":
		return card{brand: "mastercard", last4: "4444", funding: "credit"}, true
	case "amex":
		return card{brand: "amex", last4: "8431", funding: "credit"}, true
	case "chargeDeclined":
		return declined("0002", "generic_decline", "Your card was declined."), true
	case "chargeDeclinedInsufficientFunds":
		return declined("9995", "insufficient_funds", "Your card has insufficient funds."), true
	case "chargeDeclinedLostCard":
		return declined("9987", "lost_card", "Your card was declined."), true
	case "chargeDeclinedStolenCard":
		return declined("9979", "stolen_card", "Your card was declined."), true
	case "chargeDeclinedFraudulent":
		return declined("0019", "fraudulent", "Your card was declined."), true
	}
	return c, false
}

// createCharge executes a charge for acct under key ("" for none). A
// decline is an error that is stored; with cp.recordDecline it also leaves
// a failed charge, which the error names and the result holds.
//
// The charge it returns is the stored one, which never changes (see
// charge): nil if none was made.
func (w *world) createCharge(acct *account, cp *chargeParams, key string) (*charge, *apiError) {
	c, e := cardOf(cp.paymentMethod)
	if e != nil {
		return nil, e
	}
	// From here on the request executes: a decline is stored like a charge.
	if c.decline != "" && !cp.recordDecline {
		return nil, declineOf(&c)
	}
	acct.mu.Lock()
	ch, decline := w.addCharge(acct, cp, &c, key, "")
	acct.mu.Unlock()
	return ch, decline
}

// cardOf looks up pm, a test payment method, or refuses it: nothing
// executes with an unknown one.
func cardOf(pm string) (card, *apiError) {
	c, ok := testCard(pm)
	if !ok {
		return c, invalidParam("invalid_payment_method", "payment_method",
			"no such payment method "+strconv.Quote(pm)+
				": use tok_visa, tok_mastercard, tok_chargeDeclined or tok_chargeDeclinedInsufficientFunds, or their pm_card_ twins")
	}
	return c, nil
}

// declineOf is the stored error of a payment with c, a declined card.
func declineOf(c *card) *apiError {
	return &apiError{Status: http.StatusPaymentRequired, Type: cardError, Code: "card_declined",
		DeclineCode: c.decline, Param: "payment_method", Message: c.message, stored: true}
}

// addCharge records a charge of cp, paid with c, cp.paymentMethod's card,
// on acct, whose lock the caller holds; intent is the payment intent it
// belongs to, if any. A declined card leaves a failed charge, and the
// decline names it.
func (w *world) addCharge(acct *account, cp *chargeParams, c *card, key, intent string) (*charge, *apiError) {
	now := w.g.Now()
	var id, sourceID string
	if cp.viaSource {
		id, sourceID = newIDPair("ch_", "card_")
	} else {
		id = newChargeID()
	}
	ch := &charge{
		Charge: Charge{
			ID: id, Object: "charge", Amount: cp.amount, Currency: cp.currency,
			Status: StatusRequiresCapture, PaymentMethod: cp.paymentMethod,
			Description: cp.description, Metadata: cp.metadata, Created: now.Unix(),
		},
		viaSource:     cp.viaSource,
		sourceID:      sourceID,
		paymentIntent: intent,
		key:           key,
		at:            now,
	}
	if len(ch.Metadata) == 0 && ch.Metadata != nil {
		ch.Metadata = w.noMetadata // one fewer object per charge for the garbage collector
	}
	var decline *apiError
	switch {
	case c.decline != "":
		decline = declineOf(c)
		ch.Status = StatusFailed
		decline.Charge = ch.ID
	case cp.capture:
		ch.Status, ch.Captured, ch.AmountCaptured = StatusSucceeded, true, cp.amount
	}
	ch.seq = w.seq.Add(1)
	ch.index = len(acct.charges)
	acct.charges = append(acct.charges, ch)
	acct.byID[ch.ID] = ch
	return ch, decline
}

// getCharge returns acct's charge id as it is now: the stored one, which
// never changes (see charge).
func (acct *account) getCharge(id string) (*charge, *apiError) {
	acct.mu.Lock()
	defer acct.mu.Unlock()
	ch := acct.byID[id]
	if ch == nil {
		return nil, missingResource("id", "no such charge: "+strconv.Quote(id))
	}
	return ch, nil
}

// changeCharge returns a copy of ch, one of acct's charges, to change, and
// stores it in ch's place; the caller holds acct's lock. A stored charge is
// never changed in place, so that what holds one, such as an event made
// when the charge was created, keeps it as it was, without a copy of its
// own.
func (acct *account) changeCharge(ch *charge) *charge {
	c := new(charge)
	*c = *ch
	acct.charges[c.index] = c
	acct.byID[c.ID] = c
	return c
}

// Charge list limits.
const (
	DefaultListLimit = 10
	MaxListLimit     = 100
)

// page says which charges a list asks for: at most limit, newest first,
// older than startingAfter or else newer than endingBefore (ids).
type page struct {
	limit                       int
	startingAfter, endingBefore string
}

// parseLimit reads a list's limit, "" for the default.
func parseLimit(s string, present bool) (int, *apiError) {
	if !present {
		return DefaultListLimit, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxListLimit {
		return 0, invalidParam("parameter_invalid_integer", "limit", "limit must be an integer from 1 to 100")
	}
	return n, nil
}

// listCharges returns a page of acct's charges, newest first, and whether
// more lie beyond it (older ones, or newer ones for endingBefore).
func (acct *account) listCharges(pg page) ([]charge, bool, *apiError) {
	acct.mu.Lock()
	defer acct.mu.Unlock()
	items, more, e := pageOf(acct.charges, pg, "charge",
		func(id string) *charge { return acct.byID[id] }, func(c *charge) int { return c.index })
	out := make([]charge, len(items))
	for i, c := range items {
		out[i] = *c
	}
	return out, more, e
}

// pageOf returns the page pg of items, which are oldest first and each at
// its index, newest first, and whether more lie beyond it. lookup finds a
// cursor's item by id; noun names the items in errors.
func pageOf[T any](items []*T, pg page, noun string, lookup func(string) *T, index func(*T) int) ([]*T, bool, *apiError) {
	cursor := func(param, id string) (*T, *apiError) {
		c := lookup(id)
		if c == nil {
			return nil, missingResource(param, "no such "+noun+": "+strconv.Quote(id))
		}
		return c, nil
	}
	if pg.endingBefore != "" && pg.startingAfter == "" {
		before, e := cursor("ending_before", pg.endingBefore)
		if e != nil {
			return nil, false, e
		}
		// The limit items just newer than the cursor, still newest first.
		lo := index(before) + 1
		hi := min(lo+pg.limit, len(items))
		out := make([]*T, 0, hi-lo)
		for i := hi - 1; i >= lo; i-- {
			out = append(out, items[i])
		}
		return out, hi < len(items), nil
	}
	next := len(items) - 1 // newest first
	if pg.startingAfter != "" {
		after, e := cursor("starting_after", pg.startingAfter)
		if e != nil {
			return nil, false, e
		}
		next = index(after) - 1
	}
	out := make([]*T, 0, min(pg.limit, next+1))
	for ; next >= 0 && len(out) < pg.limit; next-- {
		out = append(out, items[next])
	}
	return out, next >= 0, nil
}

// captureCharge captures acct's charge id, in full unless given. It
// returns the charge as it is then, nil if there is none.
func (acct *account) captureCharge(id string, amount int64, given bool) (*charge, *apiError) {
	acct.mu.Lock()
	defer acct.mu.Unlock()
	ch := acct.byID[id]
	if ch == nil {
		return nil, missingResource("id", "no such charge: "+strconv.Quote(id))
	}
	// Business rules: these answers are stored under the key.
	var e *apiError
	switch {
	case ch.Status == StatusFailed:
		e = invalidParam("charge_not_capturable", "", "charge "+ch.ID+" failed, so it cannot be captured")
	case ch.Captured:
		e = invalidParam("charge_already_captured", "", "charge "+ch.ID+" has already been captured")
	case ch.paymentIntent != "":
		// A payment intent's charge is captured through its intent, so
		// the two never disagree.
		pi := acct.intentByID[ch.paymentIntent]
		e = acct.captureIntentLocked(pi, amount, given, "amount")
	case given && amount > ch.Amount:
		e = invalidParam("amount_too_large", "amount", "the capture amount is larger than the charge's amount")
	default:
		if !given {
			amount = ch.Amount
		}
		ch = acct.changeCharge(ch)
		ch.Status, ch.Captured, ch.AmountCaptured = StatusSucceeded, true, amount
	}
	if e != nil {
		e.stored = true
	}
	return acct.byID[id], e // changed by the intent's capture, if it has one
}

// createRefund refunds part or all of what remains on a captured charge:
// rp's charge, or the latest charge of rp's payment intent.
func (w *world) createRefund(acct *account, rp *refundParams) (*Refund, *apiError) {
	now := w.g.Now()
	acct.mu.Lock()
	defer acct.mu.Unlock()
	var ch *charge
	if rp.paymentIntent != "" {
		pi := acct.intentByID[rp.paymentIntent]
		if pi == nil {
			return nil, missingResource("payment_intent", "no such payment_intent: "+strconv.Quote(rp.paymentIntent))
		}
		if pi.status != intentSucceeded { // a business rule: stored
			e := invalidParam("payment_intent_unexpected_state", "payment_intent",
				"payment intent "+pi.id+" has a status of "+pi.status+", so it has no successful charge to refund")
			e.stored, e.intent = true, pi.snapshot()
			return nil, e
		}
		ch = acct.byID[pi.latestCharge]
	} else if ch = acct.byID[rp.charge]; ch == nil {
		return nil, missingResource("charge", "no such charge: "+strconv.Quote(rp.charge))
	}
	// Business rules: these answers are stored under the key.
	remaining := ch.AmountCaptured - ch.AmountRefunded
	var e *apiError
	switch {
	case !ch.Captured:
		e = invalidParam("charge_not_captured", "charge", "charge "+ch.ID+" is not captured, so there is nothing to refund")
	case remaining == 0:
		e = invalidParam("charge_already_refunded", "charge", "charge "+ch.ID+" has already been fully refunded")
	case rp.amount > remaining:
		e = invalidParam("amount_too_large", "amount",
			"the refund amount is larger than what remains on the charge ("+strconv.FormatInt(remaining, 10)+")")
	}
	if e != nil {
		e.stored = true
		return nil, e
	}
	amount := rp.amount
	if amount == 0 {
		amount = remaining
	}
	ch = acct.changeCharge(ch)
	ch.AmountRefunded += amount
	ch.Refunded = ch.AmountRefunded == ch.AmountCaptured
	ref := &Refund{
		ID: newRefundID(), Object: "refund", Amount: amount, Charge: ch.ID, Currency: ch.Currency,
		Status: StatusSucceeded, Reason: rp.reason, Metadata: rp.metadata, Created: now.Unix(),
		paymentIntent: ch.paymentIntent,
	}
	acct.refunds[ref.ID] = ref // never changes from now on
	return ref, nil
}

// getRefund returns acct's refund id, which never changes.
func (acct *account) getRefund(id string) (*Refund, *apiError) {
	acct.mu.Lock()
	ref := acct.refunds[id]
	acct.mu.Unlock()
	if ref == nil {
		return nil, missingResource("id", "no such refund: "+strconv.Quote(id))
	}
	return ref, nil
}
