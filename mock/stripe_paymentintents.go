package mock

import (
	"net/http"
	"slices"

	"github.com/payonce/payonce/mock/internal/form"
)

// Stripe's payment intents (docs/protocol.md §9.5): the codec over the
// core's state machine in paymentintents.go.

// stripePaymentIntent is a payment intent as Stripe's API shows it. Fields
// Stripe has and the mock does not model are null.
type stripePaymentIntent struct {
	ID                        string                  `json:"id"`
	Object                    string                  `json:"object"` // "payment_intent"
	Amount                    int64                   `json:"amount"`
	AmountCapturable          int64                   `json:"amount_capturable"`
	AmountReceived            int64                   `json:"amount_received"`
	Application               *string                 `json:"application"`
	ApplicationFeeAmount      *int64                  `json:"application_fee_amount"`
	AutomaticPaymentMethods   *stripeAutomaticMethods `json:"automatic_payment_methods"`
	CanceledAt                *int64                  `json:"canceled_at"`
	CancellationReason        *string                 `json:"cancellation_reason"`
	CaptureMethod             string                  `json:"capture_method"`
	ClientSecret              string                  `json:"client_secret"`
	ConfirmationMethod        string                  `json:"confirmation_method"` // "automatic"
	Created                   int64                   `json:"created"`
	Currency                  string                  `json:"currency"`
	Customer                  *string                 `json:"customer"`
	Description               *string                 `json:"description"`
	LastPaymentError          *stripePaymentError     `json:"last_payment_error"`
	LatestCharge              any                     `json:"latest_charge"` // its id, the charge when expanded, or null
	Livemode                  bool                    `json:"livemode"`
	Metadata                  map[string]string       `json:"metadata"`
	NextAction                *struct{}               `json:"next_action"`
	OnBehalfOf                *string                 `json:"on_behalf_of"`
	PaymentMethod             *string                 `json:"payment_method"`
	PaymentMethodTypes        []string                `json:"payment_method_types"`
	Processing                *struct{}               `json:"processing"`
	ReceiptEmail              *string                 `json:"receipt_email"`
	Review                    *string                 `json:"review"`
	SetupFutureUsage          *string                 `json:"setup_future_usage"`
	Shipping                  *struct{}               `json:"shipping"`
	Source                    *string                 `json:"source"`
	StatementDescriptor       *string                 `json:"statement_descriptor"`
	StatementDescriptorSuffix *string                 `json:"statement_descriptor_suffix"`
	Status                    string                  `json:"status"`
	TransferData              *struct{}               `json:"transfer_data"`
	TransferGroup             *string                 `json:"transfer_group"`
}

type stripeAutomaticMethods struct {
	Enabled bool `json:"enabled"`
}

// stripePaymentError is a payment intent's last_payment_error: the
// decline's error object, with the payment method it declined.
type stripePaymentError struct {
	apiError
	PaymentMethod *stripePaymentMethod `json:"payment_method,omitempty"`
}

// stripePaymentMethod is the little of a payment method object the mock
// shows: its id is the test token, as a charge's payment_method is.
type stripePaymentMethod struct {
	ID       string         `json:"id"`
	Object   string         `json:"object"` // "payment_method"
	Type     string         `json:"type"`   // "card"
	Card     stripeCardInfo `json:"card"`
	Livemode bool           `json:"livemode"`
}

// stripeIntentOf encodes pi; latest is its latest charge, when expanded.
func stripeIntentOf(pi *paymentIntent, latest *charge) *stripePaymentIntent {
	out := &stripePaymentIntent{
		ID: pi.id, Object: "payment_intent", Amount: pi.amount, AmountCapturable: pi.amountCapturable,
		AmountReceived: pi.amountReceived, CaptureMethod: pi.captureMethod,
		ClientSecret: pi.id + "_" + pi.secret, ConfirmationMethod: "automatic", Created: pi.created,
		Currency: pi.currency, Description: pi.description, Metadata: pi.metadata,
		PaymentMethod: nullable(pi.paymentMethod), PaymentMethodTypes: pi.methodTypes, Status: pi.status,
		CancellationReason: pi.cancellationReason,
	}
	if pi.automatic != nil {
		out.AutomaticPaymentMethods = &stripeAutomaticMethods{Enabled: *pi.automatic}
	}
	if pi.canceledAt != 0 {
		out.CanceledAt = &pi.canceledAt
	}
	switch {
	case latest != nil:
		out.LatestCharge = stripeChargeOf(latest)
	case pi.latestCharge != "":
		out.LatestCharge = pi.latestCharge
	}
	if pi.lastError != nil {
		c, _ := testCard(pi.lastErrorPM)
		out.LastPaymentError = &stripePaymentError{apiError: *pi.lastError, PaymentMethod: &stripePaymentMethod{
			ID: pi.lastErrorPM, Object: "payment_method", Type: "card",
			Card: stripeCardInfo{Brand: c.brand, Country: "US", ExpMonth: testCardExpMonth, ExpYear: testCardExpYear,
				Funding: c.funding, Last4: c.last4, Network: c.brand},
		}}
	}
	return out
}

// failStripe answers e, with the payment intent it names encoded.
func failStripe(rw http.ResponseWriter, r *http.Request, e *apiError) {
	if e.intent != nil {
		e.PaymentIntent = stripeIntentOf(e.intent, nil)
	}
	fail(rw, r, e)
}

// writeIntent answers pi, its latest charge expanded if f's expand names
// latest_charge.
func writeIntent(rw http.ResponseWriter, r *http.Request, f formFields, pi *paymentIntent) {
	var latest *charge
	if pi.latestCharge != "" && expands(f, "latest_charge") {
		if ch, e := exchangeOf(r.Context()).account.getCharge(pi.latestCharge); e == nil {
			latest = ch
		}
	}
	writeJSON(rw, http.StatusOK, stripeIntentOf(pi, latest))
}

// expands reports whether f's expand list names field.
func expands(f formFields, field string) bool {
	items, _ := form.List(f["expand"])
	return slices.Contains(items, any(field))
}

func (w *world) createIntentStripe(rw http.ResponseWriter, r *http.Request) {
	f, e := readForm(rw, r, intentFields...)
	if e != nil {
		reject(rw, r, e)
		return
	}
	ip, e := parseIntentParams(f)
	if e != nil {
		reject(rw, r, e)
		return
	}
	pi, e := w.createIntent(exchangeOf(r.Context()).account, &ip, requestKey(r))
	w.emitIntent(r, intentCreate, &pi, e)
	if e != nil {
		failStripe(rw, r, e)
		return
	}
	writeIntent(rw, r, f, &pi)
}

func (w *world) getIntentStripe(rw http.ResponseWriter, r *http.Request) {
	f, e := readForm(rw, r)
	if e != nil {
		reject(rw, r, e)
		return
	}
	pi, e := exchangeOf(r.Context()).account.getIntent(r.PathValue("id"))
	if e != nil {
		failStripe(rw, r, e)
		return
	}
	writeIntent(rw, r, f, &pi)
}

func (w *world) listIntentsStripe(rw http.ResponseWriter, r *http.Request) {
	pg, e := stripePage(rw, r)
	if e != nil {
		reject(rw, r, e)
		return
	}
	intents, more, e := exchangeOf(r.Context()).account.listIntents(pg)
	if e != nil {
		failStripe(rw, r, e)
		return
	}
	list := stripeList[*stripePaymentIntent]{Object: "list", Data: make([]*stripePaymentIntent, len(intents)),
		HasMore: more, URL: "/v1/payment_intents"}
	for i := range intents {
		list.Data[i] = stripeIntentOf(&intents[i], nil)
	}
	writeJSON(rw, http.StatusOK, &list)
}

func (w *world) confirmIntentStripe(rw http.ResponseWriter, r *http.Request) {
	f, e := readForm(rw, r, confirmFields...)
	if e != nil {
		reject(rw, r, e)
		return
	}
	pm, _, e := f.str("payment_method", false)
	if e == nil {
		_, _, e = f.str("return_url", false)
	}
	if e != nil {
		reject(rw, r, e)
		return
	}
	pi, e := w.confirmIntent(exchangeOf(r.Context()).account, r.PathValue("id"), pm, requestKey(r))
	w.emitIntent(r, intentConfirm, &pi, e)
	if e != nil {
		failStripe(rw, r, e)
		return
	}
	writeIntent(rw, r, f, &pi)
}

func (w *world) captureIntentStripe(rw http.ResponseWriter, r *http.Request) {
	f, e := readForm(rw, r, intentCaptureFields...)
	if e != nil {
		reject(rw, r, e)
		return
	}
	amount, given, e := f.amount("amount_to_capture", false)
	if e != nil {
		reject(rw, r, e)
		return
	}
	pi, e := exchangeOf(r.Context()).account.captureIntent(r.PathValue("id"), amount, given)
	w.emitIntent(r, intentCapture, &pi, e)
	if e != nil {
		failStripe(rw, r, e)
		return
	}
	writeIntent(rw, r, f, &pi)
}

func (w *world) cancelIntentStripe(rw http.ResponseWriter, r *http.Request) {
	f, e := readForm(rw, r, cancelFields...)
	if e != nil {
		reject(rw, r, e)
		return
	}
	reason, e := parseCancellationReason(f)
	if e != nil {
		reject(rw, r, e)
		return
	}
	pi, e := w.cancelIntent(exchangeOf(r.Context()).account, r.PathValue("id"), reason)
	w.emitIntent(r, intentCancel, &pi, e)
	if e != nil {
		failStripe(rw, r, e)
		return
	}
	writeIntent(rw, r, f, &pi)
}
