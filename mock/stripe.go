package mock

import (
	"encoding/base64"
	"errors"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/payonce/payonce/idempotency"
	"github.com/payonce/payonce/mock/internal/form"
)

// Stripe's dialect (docs/protocol.md §9): form bodies with bracketed
// names, Stripe's charge and refund objects, and Stripe's idempotency
// rules, over the same core as payonce's JSON protocol.

// dialect is the wire dialect a request speaks.
type dialect uint8

const (
	payonceDialect dialect = iota
	stripeDialect
	numDialects
)

// dialectOf recognises r's dialect: Stripe's if its Content-Type is
// application/x-www-form-urlencoded or it carries Stripe-Version, as every
// Stripe client sends (stripe-go sends both, on GETs and empty POSTs too);
// payonce's otherwise.
func dialectOf(r *http.Request) dialect {
	if len(r.Header["Stripe-Version"]) > 0 {
		return stripeDialect
	}
	ct := r.Header.Get("Content-Type")
	if ct == "application/x-www-form-urlencoded" {
		return stripeDialect
	}
	if ct != "" && !strings.HasPrefix(ct, "application/json") {
		if mt, _, err := mime.ParseMediaType(ct); err == nil && mt == "application/x-www-form-urlencoded" {
			return stripeDialect
		}
	}
	return payonceDialect
}

// maxStripeAccount bounds a Stripe-Account header.
const maxStripeAccount = 255

// stripeAccount returns the connected account r acts for, from its
// Stripe-Account header ("" for none), or an error if it is malformed.
func stripeAccount(r *http.Request) (string, *apiError) {
	v := r.Header.Values("Stripe-Account")
	if len(v) == 0 {
		return "", nil
	}
	bad := &apiError{Status: http.StatusBadRequest, Type: invalidRequest, Code: "stripe_account_invalid",
		Message: "send one Stripe-Account header, of 1 to 255 visible ASCII characters"}
	if len(v) > 1 || v[0] == "" || len(v[0]) > maxStripeAccount {
		return "", bad
	}
	for i := range len(v[0]) {
		if v[0][i] < 0x21 || v[0][i] > 0x7e {
			return "", bad
		}
	}
	return v[0], nil
}

// basicKey returns the API key of a Basic Authorization credential, the
// user name before the colon, as curl -u sk_test_…: sends it.
func basicKey(cred string) string {
	raw, err := base64.StdEncoding.DecodeString(cred)
	if err != nil {
		return ""
	}
	user, _, _ := strings.Cut(string(raw), ":")
	return user
}

// writeStripeMiddlewareError writes the idempotency middleware's errors in
// Stripe's words: a key reused with another request is a 400
// idempotency_error with no code, as Stripe sends it.
func writeStripeMiddlewareError(rw http.ResponseWriter, r *http.Request, e *idempotency.Error) {
	ae := &apiError{Status: e.StatusCode, Type: e.Type, Code: e.Code, Message: e.Message}
	if e.Code == "idempotency_key_reused" {
		ae.Status, ae.Code = http.StatusBadRequest, ""
		ae.Message = "Keys for idempotent requests can only be used with the same parameters they were first used with. " +
			"Try using a key other than " + strconv.Quote(requestKey(r)) + " if you meant to execute a different request."
	}
	writeError(rw, ae)
}

func (w *world) stripeRoutes() *http.ServeMux {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/charges", w.createChargeStripe)
	mux.HandleFunc("GET /v1/charges", w.listChargesStripe)
	mux.HandleFunc("GET /v1/charges/{id}", w.getChargeStripe)
	mux.HandleFunc("POST /v1/charges/{id}/capture", w.captureChargeStripe)
	mux.HandleFunc("POST /v1/payment_intents", w.createIntentStripe)
	mux.HandleFunc("GET /v1/payment_intents", w.listIntentsStripe)
	mux.HandleFunc("GET /v1/payment_intents/{id}", w.getIntentStripe)
	mux.HandleFunc("POST /v1/payment_intents/{id}/confirm", w.confirmIntentStripe)
	mux.HandleFunc("POST /v1/payment_intents/{id}/capture", w.captureIntentStripe)
	mux.HandleFunc("POST /v1/payment_intents/{id}/cancel", w.cancelIntentStripe)
	mux.HandleFunc("POST /v1/refunds", w.createRefundStripe)
	mux.HandleFunc("GET /v1/refunds/{id}", w.getRefundStripe)
	w.eventRoutes(mux)
	return mux
}

// The parameters of Stripe's charge and refund creation: the core's, and
// the dialect's own.
var (
	stripeChargeFields = append(chargeFields[:len(chargeFields):len(chargeFields)], "source")
	stripeRefundFields = append(refundFields[:len(refundFields):len(refundFields)], "payment_intent")
)

// formFields are a Stripe request's parameters, as [form.Parse] decodes
// them: strings, and maps for bracketed names.
type formFields map[string]any

// readForm decodes r's parameters: the query of a GET, the body of a POST
// (as a form, whatever its Content-Type). Only the allowed names and
// expand, which is accepted and ignored, may appear.
func readForm(rw http.ResponseWriter, r *http.Request, allowed ...string) (formFields, *apiError) {
	var raw string
	if r.Method == http.MethodGet {
		raw = r.URL.RawQuery
	} else {
		if r.URL.RawQuery != "" {
			name := firstQueryParam(r)
			return nil, invalidParam("parameter_unknown", name,
				"received unknown query parameter "+strconv.Quote(name)+": POST parameters go in the form body")
		}
		body, err := readBody(rw, r)
		if err != nil {
			var tooLarge *http.MaxBytesError
			if errors.As(err, &tooLarge) {
				return nil, &apiError{Status: http.StatusRequestEntityTooLarge, Type: invalidRequest, Code: "body_too_large",
					Message: "the request body is larger than 1 MiB"}
			}
			return nil, invalidParam("body_unreadable", "", "the request body could not be read")
		}
		raw = string(body)
	}
	tree, err := form.Parse(raw)
	if err != nil {
		var fe *form.Error
		errors.As(err, &fe)
		return nil, invalidParam("invalid_form", fe.Param, err.Error())
	}
	for name := range tree {
		if name != "expand" && !slices.Contains(allowed, name) {
			name = firstUnknown(tree, append(allowed, "expand")...)
			return nil, invalidParam("parameter_unknown", name, "Received unknown parameter: "+name)
		}
	}
	return formFields(tree), nil
}

// get returns a parameter; an absent one and an empty string are the same.
func (f formFields) get(name string) (any, bool) {
	v, ok := f[name]
	if s, isString := v.(string); !ok || isString && s == "" {
		return nil, false
	}
	return v, true
}

func (f formFields) amount(name string, required bool) (int64, bool, *apiError) {
	v, ok := f.get(name)
	if !ok {
		if required {
			return 0, false, missing(name)
		}
		return 0, false, nil
	}
	s, _ := v.(string)
	n, e := parseAmount(name, s)
	return n, e == nil, e
}

func (f formFields) str(name string, required bool) (string, bool, *apiError) {
	v, ok := f.get(name)
	if !ok {
		if required {
			return "", false, missing(name)
		}
		return "", false, nil
	}
	s, isString := v.(string)
	if !isString {
		return "", false, invalidParam("parameter_invalid_string", name, name+" must be a string")
	}
	return s, true, nil
}

func (f formFields) boolean(name string) (value, present bool, e *apiError) {
	v, ok := f.get(name)
	if !ok {
		return false, false, nil
	}
	switch v {
	case "true":
		return true, true, nil
	case "false":
		return false, true, nil
	}
	return false, false, invalidParam("parameter_invalid_boolean", name, name+" must be true or false")
}

func (f formFields) list(name string) ([]string, bool, *apiError) {
	v, ok := f.get(name)
	if !ok {
		return nil, false, nil
	}
	items, isList := form.List(v)
	if !isList {
		return nil, false, invalidParam("parameter_invalid_array", name, name+" must be an array: "+name+"[0]=…")
	}
	out := make([]string, len(items))
	for i, item := range items {
		s, isString := item.(string)
		if !isString {
			return nil, false, invalidParam("parameter_invalid_string", name+"["+strconv.Itoa(i)+"]", name+" must hold strings")
		}
		out[i] = s
	}
	return out, true, nil
}

func (f formFields) object(name string, allowed ...string) (fields, bool, *apiError) {
	v, ok := f.get(name)
	if !ok {
		return nil, false, nil
	}
	m, isMap := v.(map[string]any)
	if !isMap {
		return nil, false, invalidParam("parameter_invalid_object", name, name+" must be an object: "+name+"[…]=…")
	}
	if unknown := firstUnknown(m, allowed...); unknown != "" {
		param := name + "[" + unknown + "]"
		return nil, false, invalidParam("parameter_unknown", param, "Received unknown parameter: "+param)
	}
	return formFields(m), true, nil
}

// metadata reads metadata[key]=value pairs. "metadata=" clears, and so
// does an absent one on creation; a key sent empty is unset.
func (f formFields) metadata() (map[string]string, *apiError) {
	v, ok := f.get("metadata")
	if !ok {
		return map[string]string{}, nil
	}
	m, isMap := v.(map[string]any)
	if !isMap {
		return nil, invalidParam("parameter_invalid_object", "metadata", "metadata must be an object of strings")
	}
	md := make(map[string]string, len(m))
	for k, val := range m {
		s, isString := val.(string)
		if !isString {
			return nil, invalidParam("invalid_metadata", "metadata", "metadata values must be strings")
		}
		if e := metadataEntry(k, s); e != nil {
			return nil, e
		}
		if s != "" {
			md[k] = s
		}
	}
	if len(md) > MaxMetadataKeys {
		return nil, tooManyMetadataKeys()
	}
	return md, nil
}

// stripeCharge is a charge as Stripe's API shows it. Fields Stripe has and
// the mock does not model are null, or absent.
type stripeCharge struct {
	ID                   string            `json:"id"`
	Object               string            `json:"object"` // "charge"
	Amount               int64             `json:"amount"`
	AmountCaptured       int64             `json:"amount_captured"`
	AmountRefunded       int64             `json:"amount_refunded"`
	BalanceTransaction   *string           `json:"balance_transaction"`
	Captured             bool              `json:"captured"`
	Created              int64             `json:"created"`
	Currency             string            `json:"currency"`
	Customer             *string           `json:"customer"`
	Description          *string           `json:"description"`
	Disputed             bool              `json:"disputed"`
	FailureCode          *string           `json:"failure_code"`
	FailureMessage       *string           `json:"failure_message"`
	Livemode             bool              `json:"livemode"`
	Metadata             map[string]string `json:"metadata"`
	Outcome              stripeOutcome     `json:"outcome"`
	Paid                 bool              `json:"paid"`
	PaymentIntent        *string           `json:"payment_intent"` // null for a plain charge
	PaymentMethod        string            `json:"payment_method"`
	PaymentMethodDetails stripePMDetails   `json:"payment_method_details"`
	Refunded             bool              `json:"refunded"`
	Source               *stripeCard       `json:"source"`
	Status               string            `json:"status"` // succeeded, pending or failed
}

type stripeOutcome struct {
	NetworkStatus string  `json:"network_status"`
	Reason        *string `json:"reason"`
	RiskLevel     string  `json:"risk_level"`
	SellerMessage string  `json:"seller_message"`
	Type          string  `json:"type"`
}

type stripePMDetails struct {
	Type string         `json:"type"` // "card"
	Card stripeCardInfo `json:"card"`
}

type stripeCardInfo struct {
	Brand    string `json:"brand"`
	Country  string `json:"country"`
	ExpMonth int64  `json:"exp_month"`
	ExpYear  int64  `json:"exp_year"`
	Funding  string `json:"funding"`
	Last4    string `json:"last4"`
	Network  string `json:"network"`
}

// stripeCard is a charge's source, when it was paid with one.
type stripeCard struct {
	ID       string            `json:"id"`
	Object   string            `json:"object"` // "card"
	Brand    string            `json:"brand"`
	Country  string            `json:"country"`
	Customer *string           `json:"customer"`
	ExpMonth int64             `json:"exp_month"`
	ExpYear  int64             `json:"exp_year"`
	Funding  string            `json:"funding"`
	Last4    string            `json:"last4"`
	Metadata map[string]string `json:"metadata"`
}

// The test cards' expiry, which Stripe lets any future date be.
const testCardExpMonth, testCardExpYear = 12, 2034

// brandNames are the card brands as a source object names them.
func brandName(brand string) string {
	switch brand {
	case "visa":
		return "Visa"
	case "mastercard":
		return "MasterCard"
	case "amex":
		return "American Express"
	}
	return "Unknown"
}

func stripeChargeOf(ch *charge) *stripeCharge {
	out := stripeChargeWith(ch, new(stripeCard))
	if out.Source != nil {
		out.Source.Metadata = map[string]string{}
	}
	return &out
}

// writeStripeCharge answers ch to r, as writeJSON would, without putting
// its Stripe form on the heap: the charge, its source and the source's
// empty metadata all stay in this frame, and the header values go in r's
// exchange.
func writeStripeCharge(w http.ResponseWriter, r *http.Request, ch *charge) {
	var src stripeCard
	out := stripeChargeWith(ch, &src)
	if out.Source != nil {
		src.Metadata = map[string]string{}
	}
	var v *[2]string
	if x := exchangeOf(r.Context()); x != nil {
		v = &x.bodyHeaders
	}
	writeJSONOf(w, http.StatusOK, out.appendJSON, v)
}

// stripeChargeWith returns ch's Stripe form. A charge paid with a source
// gets src, filled in but for its Metadata, which the caller sets: where
// the caller makes the map, it stays on the caller's stack if the result
// does. (It returns the charge, rather than filling one the caller points
// to, so that escape analysis can see src go no further than the result.)
func stripeChargeWith(ch *charge, src *stripeCard) stripeCharge {
	card := ch.card()
	c := &card
	out := stripeCharge{
		ID: ch.ID, Object: "charge", Amount: ch.Amount, AmountCaptured: ch.AmountCaptured,
		AmountRefunded: ch.AmountRefunded, Captured: ch.Captured, Created: ch.Created, Currency: ch.Currency,
		Description: ch.Description, Metadata: ch.Metadata, Paid: ch.Status != StatusFailed,
		PaymentIntent: nullable(ch.paymentIntent),
		PaymentMethod: ch.PaymentMethod, Refunded: ch.Refunded, Status: StatusSucceeded,
		Outcome: stripeOutcome{NetworkStatus: "approved_by_network", RiskLevel: "normal",
			SellerMessage: "Payment complete.", Type: "authorized"},
		PaymentMethodDetails: stripePMDetails{Type: "card", Card: stripeCardInfo{Brand: c.brand, Country: "US",
			ExpMonth: testCardExpMonth, ExpYear: testCardExpYear, Funding: c.funding, Last4: c.last4, Network: c.brand}},
	}
	if ch.Status == StatusFailed {
		code, reason, msg := "card_declined", c.decline, c.message // not &c.message, which would put c on the heap
		out.Status, out.FailureCode, out.FailureMessage = StatusFailed, &code, &msg
		out.Outcome = stripeOutcome{NetworkStatus: "declined_by_network", Reason: &reason, RiskLevel: "normal",
			SellerMessage: sellerMessage(c.decline), Type: "issuer_declined"}
	}
	if ch.viaSource {
		*src = stripeCard{ID: ch.sourceID, Object: "card", Brand: brandName(c.brand), Country: "US",
			ExpMonth: testCardExpMonth, ExpYear: testCardExpYear, Funding: c.funding, Last4: c.last4}
		out.Source = src
	}
	return out
}

func sellerMessage(decline string) string {
	if decline == "generic_decline" {
		return "The bank did not return any further details with this decline."
	}
	return "The bank returned the decline code `" + decline + "`."
}

// stripeRefund is a refund as Stripe's API shows it.
type stripeRefund struct {
	ID                 string            `json:"id"`
	Object             string            `json:"object"` // "refund"
	Amount             int64             `json:"amount"`
	BalanceTransaction *string           `json:"balance_transaction"`
	Charge             string            `json:"charge"`
	Created            int64             `json:"created"`
	Currency           string            `json:"currency"`
	Metadata           map[string]string `json:"metadata"`
	PaymentIntent      *string           `json:"payment_intent"`
	Reason             *string           `json:"reason"`
	ReceiptNumber      *string           `json:"receipt_number"`
	Status             string            `json:"status"`
}

func stripeRefundOf(ref *Refund) *stripeRefund {
	return &stripeRefund{ID: ref.ID, Object: "refund", Amount: ref.Amount, Charge: ref.Charge, Created: ref.Created,
		Currency: ref.Currency, Metadata: ref.Metadata, PaymentIntent: nullable(ref.paymentIntent),
		Reason: ref.Reason, Status: ref.Status}
}

// nullable is s, or null for "". It allocates only for a non-empty s (see
// ptr).
func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return ptr(s)
}

// stripeList is Stripe's list envelope.
type stripeList[T any] struct {
	Object  string `json:"object"` // "list"
	Data    []T    `json:"data"`
	HasMore bool   `json:"has_more"`
	URL     string `json:"url"`
}

func (w *world) createChargeStripe(rw http.ResponseWriter, r *http.Request) {
	f, e := readForm(rw, r, stripeChargeFields...)
	if e != nil {
		reject(rw, r, e)
		return
	}
	viaSource := false
	if _, ok := f.get("payment_method"); !ok {
		if src, ok := f.get("source"); ok {
			f["payment_method"], viaSource = src, true
		}
	} else if _, ok := f.get("source"); ok {
		reject(rw, r, invalidParam("parameter_unknown", "source", "send source or payment_method, not both"))
		return
	}
	cp, e := parseChargeParams(f)
	if e != nil {
		if e.Param == "payment_method" && e.Code == "parameter_missing" {
			e.Param, e.Message = "source", "Must provide source or payment_method."
		}
		reject(rw, r, e)
		return
	}
	cp.viaSource, cp.recordDecline = viaSource, true
	ch, e := w.createCharge(exchangeOf(r.Context()).account, &cp, requestKey(r))
	w.emitCharge(r, ch, e)
	if e != nil {
		failStripe(rw, r, e)
		return
	}
	writeStripeCharge(rw, r, ch)
}

func (w *world) getChargeStripe(rw http.ResponseWriter, r *http.Request) {
	if _, e := readForm(rw, r); e != nil {
		reject(rw, r, e)
		return
	}
	ch, e := exchangeOf(r.Context()).account.getCharge(r.PathValue("id"))
	if e != nil {
		failStripe(rw, r, e)
		return
	}
	writeStripeCharge(rw, r, ch)
}

func (w *world) listChargesStripe(rw http.ResponseWriter, r *http.Request) {
	pg, e := stripePage(rw, r)
	if e != nil {
		reject(rw, r, e)
		return
	}
	charges, more, e := exchangeOf(r.Context()).account.listCharges(pg)
	if e != nil {
		failStripe(rw, r, e)
		return
	}
	list := stripeList[*stripeCharge]{Object: "list", Data: make([]*stripeCharge, len(charges)),
		HasMore: more, URL: "/v1/charges"}
	for i := range charges {
		list.Data[i] = stripeChargeOf(&charges[i])
	}
	writeJSON(rw, http.StatusOK, &list)
}

// stripePage reads a list's limit, starting_after and ending_before.
func stripePage(rw http.ResponseWriter, r *http.Request) (pg page, e *apiError) {
	f, e := readForm(rw, r, "limit", "starting_after", "ending_before")
	if e != nil {
		return pg, e
	}
	limit, given, e := f.str("limit", false)
	if e != nil {
		return pg, e
	}
	if pg.limit, e = parseLimit(limit, given); e != nil {
		return pg, e
	}
	if pg.startingAfter, _, e = f.str("starting_after", false); e != nil {
		return pg, e
	}
	pg.endingBefore, _, e = f.str("ending_before", false)
	return pg, e
}

func (w *world) captureChargeStripe(rw http.ResponseWriter, r *http.Request) {
	f, e := readForm(rw, r, captureFields...)
	if e != nil {
		reject(rw, r, e)
		return
	}
	amount, given, e := f.amount("amount", false)
	if e != nil {
		reject(rw, r, e)
		return
	}
	ch, e := exchangeOf(r.Context()).account.captureCharge(r.PathValue("id"), amount, given)
	w.emitCapture(r, ch, e)
	if e != nil {
		failStripe(rw, r, e)
		return
	}
	writeStripeCharge(rw, r, ch)
}

func (w *world) createRefundStripe(rw http.ResponseWriter, r *http.Request) {
	f, e := readForm(rw, r, stripeRefundFields...)
	if e != nil {
		reject(rw, r, e)
		return
	}
	rp, e := parseRefundParams(f)
	if e != nil {
		reject(rw, r, e)
		return
	}
	ref, e := w.createRefund(exchangeOf(r.Context()).account, &rp)
	w.emitRefund(r, ref, e)
	if e != nil {
		failStripe(rw, r, e)
		return
	}
	writeJSON(rw, http.StatusOK, stripeRefundOf(ref))
}

func (w *world) getRefundStripe(rw http.ResponseWriter, r *http.Request) {
	if _, e := readForm(rw, r); e != nil {
		reject(rw, r, e)
		return
	}
	ref, e := exchangeOf(r.Context()).account.getRefund(r.PathValue("id"))
	if e != nil {
		failStripe(rw, r, e)
		return
	}
	writeJSON(rw, http.StatusOK, stripeRefundOf(ref))
}
