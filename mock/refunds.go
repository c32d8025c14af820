package mock

// Refund is a refund as the API returns it.
type Refund struct {
	ID       string            `json:"id"`
	Object   string            `json:"object"` // "refund"
	Amount   int64             `json:"amount"`
	Charge   string            `json:"charge"`
	Currency string            `json:"currency"`
	Status   string            `json:"status"` // "succeeded"
	Reason   *string           `json:"reason"` // null when absent
	Metadata map[string]string `json:"metadata"`
	Created  int64             `json:"created"`

	paymentIntent string // Stripe: the payment intent of its charge, if any
}
