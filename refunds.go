package payonce

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// RefundsService creates and reads refunds. Use it through
// [Client.Refunds].
type RefundsService service

// Refund returns money from a captured charge.
type Refund struct {
	ID       string            `json:"id"`
	Object   string            `json:"object"`
	Amount   int64             `json:"amount"` // in minor units
	Charge   string            `json:"charge"` // the refunded charge's id
	Currency string            `json:"currency"`
	Status   string            `json:"status"`
	Reason   string            `json:"reason"`
	Metadata map[string]string `json:"metadata"`
	Created  int64             `json:"created"` // Unix seconds

	// LastResponse tells how the refund was obtained.
	LastResponse *Response `json:"-"`
}

// RefundParams are the parameters of [RefundsService.Create].
type RefundParams struct {
	Charge   string            `json:"charge"`           // required: the charge's id
	Amount   int64             `json:"amount,omitempty"` // 0 refunds what remains
	Reason   string            `json:"reason,omitempty"`
	Metadata map[string]string `json:"metadata,omitempty"`

	// IdempotencyKey identifies the refund: the same key refunds at most
	// once. A refund is a different operation from the charge it refunds,
	// so it needs its own key, e.g. BusinessKey("refund", orderID).
	IdempotencyKey string `json:"-"`
}

// Create refunds a captured charge, at most once per idempotency key.
func (s *RefundsService) Create(ctx context.Context, params *RefundParams) (*Refund, error) {
	if params == nil {
		return nil, invalidf("create refund: nil *RefundParams")
	}
	if err := validateID("create refund", "charge", params.Charge); err != nil {
		return nil, err
	}
	if params.Amount < 0 {
		return nil, invalidf("create refund: amount must not be negative, got %d", params.Amount)
	}
	return do[Refund](ctx, s.client, http.MethodPost, "/v1/refunds", params, params.IdempotencyKey)
}

// Get returns the refund with the given id (an *[Error] matching
// [ErrNotFound] when there is none).
func (s *RefundsService) Get(ctx context.Context, id string) (*Refund, error) {
	if err := validateID("get refund", "refund id", id); err != nil {
		return nil, err
	}
	return do[Refund](ctx, s.client, http.MethodGet, "/v1/refunds/"+id, nil, "")
}

func (r *Refund) setLastResponse(resp *Response) { r.LastResponse = resp }

// check makes a 2xx body that lacks the refund's id (or names another
// object) an error rather than a zero Refund.
func (r *Refund) check() error {
	switch {
	case r.ID == "":
		return errors.New("the body is not a refund: it has no id")
	case r.Object != "" && r.Object != "refund":
		return errors.New("the body is not a refund: its object is not \"refund\"")
	}
	return nil
}

// validateID refuses ids that are empty or could change the request's path:
// ids are letters, digits, '_' and '-', at most 255 bytes.
func validateID(op, what, id string) error {
	if id == "" {
		return invalidf("%s: %s is empty", op, what)
	}
	if len(id) > 255 {
		return invalidf("%s: %s is %d bytes, the limit is 255", op, what, len(id))
	}
	for i := 0; i < len(id); i++ {
		if !isIDByte(id[i]) {
			return invalidf("%s: %s %s has %q at offset %d; ids contain only letters, digits, '_' and '-'",
				op, what, quoteID(id), id[i], i)
		}
	}
	return nil
}

func quoteID(id string) string {
	return fmt.Sprintf("%q", clip(strings.ToValidUTF8(id, "?"), 64))
}
