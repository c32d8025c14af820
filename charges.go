package payonce

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"net/http"
	"net/url"
	"strconv"
)

// ChargesService creates, reads, captures and lists charges. Use it through
// [Client.Charges].
type ChargesService service

// Charge statuses.
const (
	ChargeStatusSucceeded       = "succeeded"        // captured
	ChargeStatusRequiresCapture = "requires_capture" // authorised with Capture: Bool(false)
)

// Charge is a payment: an amount authorised, and usually captured, on a
// payment method.
type Charge struct {
	ID             string            `json:"id"`
	Object         string            `json:"object"`
	Amount         int64             `json:"amount"`          // in minor units (cents)
	AmountCaptured int64             `json:"amount_captured"` // in minor units
	AmountRefunded int64             `json:"amount_refunded"` // in minor units
	Currency       string            `json:"currency"`        // ISO 4217, lower case
	Status         string            `json:"status"`          // ChargeStatusSucceeded or ChargeStatusRequiresCapture
	Captured       bool              `json:"captured"`
	Refunded       bool              `json:"refunded"` // fully refunded
	PaymentMethod  string            `json:"payment_method"`
	Description    string            `json:"description"`
	Metadata       map[string]string `json:"metadata"`
	Created        int64             `json:"created"` // Unix seconds

	// LastResponse tells how the charge was obtained: status, request id,
	// idempotency key, whether it was replayed, and the attempts made.
	LastResponse *Response `json:"-"`
}

// ChargeParams are the parameters of [ChargesService.Create].
type ChargeParams struct {
	Amount        int64             `json:"amount"`         // required, positive, in minor units
	Currency      string            `json:"currency"`       // required, ISO 4217 ("usd")
	PaymentMethod string            `json:"payment_method"` // required ("tok_visa")
	Description   string            `json:"description,omitempty"`
	Metadata      map[string]string `json:"metadata,omitempty"`
	// Capture false only authorises the charge; capture it later with
	// [ChargesService.Capture]. nil (the default) captures at once.
	Capture *bool `json:"capture,omitempty"`

	// IdempotencyKey identifies the operation: the same key charges at most
	// once. Use a key stored with the order ([NewKey]) or derived from it
	// ([BusinessKey]). When empty, a key is generated for this call and
	// reused by its retries only.
	IdempotencyKey string `json:"-"`
}

// CaptureParams are the parameters of [ChargesService.Capture].
type CaptureParams struct {
	// Amount to capture, in minor units, at most the authorised amount;
	// 0 captures it all.
	Amount int64 `json:"amount,omitempty"`

	// IdempotencyKey: see ChargeParams.IdempotencyKey.
	IdempotencyKey string `json:"-"`
}

// ChargeListParams are the parameters of [ChargesService.List].
type ChargeListParams struct {
	// Limit is the page size, 1 to 100; 0 leaves the gateway's default (10).
	// It does not limit how many charges the iterator yields.
	Limit int
	// StartingAfter starts the listing after this charge id.
	StartingAfter string
}

// Bool returns a pointer to v, for optional fields such as
// ChargeParams.Capture.
func Bool(v bool) *bool { return &v }

// Create charges a payment method. Every attempt, including the client's
// retries, sends params.IdempotencyKey (or one generated for this call) and
// the same body, so the gateway charges at most once.
//
// A decline is an *[Error] matching [ErrCardDeclined]; an undetermined
// outcome is an *[OutcomeUnknownError] carrying the key to settle it.
func (s *ChargesService) Create(ctx context.Context, params *ChargeParams) (*Charge, error) {
	switch {
	case params == nil:
		return nil, invalidf("create charge: nil *ChargeParams")
	case params.Amount <= 0:
		return nil, invalidf("create charge: amount must be a positive number of minor units, got %d", params.Amount)
	case params.Currency == "":
		return nil, invalidf("create charge: currency is required")
	case params.PaymentMethod == "":
		return nil, invalidf("create charge: payment method is required")
	}
	return do[Charge](ctx, s.client, http.MethodPost, "/v1/charges", params, params.IdempotencyKey)
}

// Get returns the charge with the given id (an *[Error] matching
// [ErrNotFound] when there is none).
func (s *ChargesService) Get(ctx context.Context, id string) (*Charge, error) {
	if err := validateID("get charge", "charge id", id); err != nil {
		return nil, err
	}
	return do[Charge](ctx, s.client, http.MethodGet, "/v1/charges/"+id, nil, "")
}

// Capture captures an authorised charge. A nil params captures the full
// amount under a generated key. The gateway captures a charge only once;
// a second capture under another key is an *[Error] (400).
func (s *ChargesService) Capture(ctx context.Context, id string, params *CaptureParams) (*Charge, error) {
	if err := validateID("capture charge", "charge id", id); err != nil {
		return nil, err
	}
	if params == nil {
		params = &CaptureParams{}
	}
	if params.Amount < 0 {
		return nil, invalidf("capture charge: amount must not be negative, got %d", params.Amount)
	}
	return do[Charge](ctx, s.client, http.MethodPost, "/v1/charges/"+id+"/capture", params, params.IdempotencyKey)
}

// List iterates over the account's charges, newest first, fetching pages
// as the loop goes on (with starting_after). A nil params lists from the
// newest. The iteration stops at the first error, which it yields with a nil
// charge; breaking out of the loop stops fetching. Each charge's
// LastResponse is the response of the page it came in.
//
//	for ch, err := range client.Charges.List(ctx, nil) {
//		if err != nil {
//			return err
//		}
//		fmt.Println(ch.ID)
//	}
func (s *ChargesService) List(ctx context.Context, params *ChargeListParams) iter.Seq2[*Charge, error] {
	var p ChargeListParams
	if params != nil {
		p = *params
	}
	return func(yield func(*Charge, error) bool) {
		if p.Limit < 0 || p.Limit > 100 {
			yield(nil, invalidf("list charges: limit %d is outside 0..100", p.Limit))
			return
		}
		after := p.StartingAfter
		if after != "" {
			if err := validateID("list charges", "starting_after", after); err != nil {
				yield(nil, err)
				return
			}
		}
		for {
			q := url.Values{}
			if p.Limit > 0 {
				q.Set("limit", strconv.Itoa(p.Limit))
			}
			if after != "" {
				q.Set("starting_after", after)
			}
			path := "/v1/charges"
			if len(q) > 0 {
				path += "?" + q.Encode()
			}
			page, err := do[chargePage](ctx, s.client, http.MethodGet, path, nil, "")
			if err != nil {
				yield(nil, err)
				return
			}
			for _, ch := range page.Data {
				ch.LastResponse = page.LastResponse
				if !yield(ch, nil) {
					return
				}
			}
			if !page.HasMore || len(page.Data) == 0 {
				return
			}
			last := page.Data[len(page.Data)-1]
			if last.ID == after {
				yield(nil, invalidf("list charges: the gateway said has_more but the page does not advance"))
				return
			}
			after = last.ID
		}
	}
}

// chargePage is one page of GET /v1/charges.
type chargePage struct {
	Object       string    `json:"object"`
	Data         []*Charge `json:"data"`
	HasMore      bool      `json:"has_more"`
	LastResponse *Response `json:"-"`
}

func (p *chargePage) setLastResponse(r *Response) { p.LastResponse = r }
func (c *Charge) setLastResponse(r *Response)     { c.LastResponse = r }

// check makes a 2xx body that lacks the charge's id (or names another
// object) an error rather than a zero Charge.
func (c *Charge) check() error {
	switch {
	case c.ID == "":
		return errors.New("the body is not a charge: it has no id")
	case c.Object != "" && c.Object != "charge":
		return errors.New("the body is not a charge: its object is not \"charge\"")
	}
	return nil
}

// check requires the page's data member and a charge with an id in each
// of its places.
func (p *chargePage) check() error {
	switch {
	case p.Object != "" && p.Object != "list":
		return errors.New("the body is not a list: its object is not \"list\"")
	case p.Data == nil:
		return errors.New("the body is not a list of charges: it has no data")
	}
	for i, ch := range p.Data {
		if ch == nil {
			return fmt.Errorf("data[%d] is null", i)
		}
		if err := ch.check(); err != nil {
			return fmt.Errorf("data[%d]: %w", i, err)
		}
	}
	return nil
}
