package mock

import (
	"encoding/json"
	"slices"
	"strconv"
	"strings"
)

// The Stripe charge is the answer to most requests in Stripe's dialect,
// and encoding it by reflection was a large part of what one costs. It is
// encoded by hand instead, to the very bytes json.Marshal writes for it:
// the fields in the struct's order, strings escaped as encoding/json
// escapes them (HTML characters included), map keys sorted.

// appendJSON appends c as json.Marshal encodes it.
func (c *stripeCharge) appendJSON(b []byte) []byte {
	b = append(b, `{"id":`...)
	b = appendJSONString(b, c.ID)
	b = append(b, `,"object":`...)
	b = appendJSONString(b, c.Object)
	b = append(b, `,"amount":`...)
	b = strconv.AppendInt(b, c.Amount, 10)
	b = append(b, `,"amount_captured":`...)
	b = strconv.AppendInt(b, c.AmountCaptured, 10)
	b = append(b, `,"amount_refunded":`...)
	b = strconv.AppendInt(b, c.AmountRefunded, 10)
	b = append(b, `,"balance_transaction":`...)
	b = appendJSONNullable(b, c.BalanceTransaction)
	b = append(b, `,"captured":`...)
	b = strconv.AppendBool(b, c.Captured)
	b = append(b, `,"created":`...)
	b = strconv.AppendInt(b, c.Created, 10)
	b = append(b, `,"currency":`...)
	b = appendJSONString(b, c.Currency)
	b = append(b, `,"customer":`...)
	b = appendJSONNullable(b, c.Customer)
	b = append(b, `,"description":`...)
	b = appendJSONNullable(b, c.Description)
	b = append(b, `,"disputed":`...)
	b = strconv.AppendBool(b, c.Disputed)
	b = append(b, `,"failure_code":`...)
	b = appendJSONNullable(b, c.FailureCode)
	b = append(b, `,"failure_message":`...)
	b = appendJSONNullable(b, c.FailureMessage)
	b = append(b, `,"livemode":`...)
	b = strconv.AppendBool(b, c.Livemode)
	b = append(b, `,"metadata":`...)
	b = appendJSONMap(b, c.Metadata)
	o := &c.Outcome
	b = append(b, `,"outcome":{"network_status":`...)
	b = appendJSONString(b, o.NetworkStatus)
	b = append(b, `,"reason":`...)
	b = appendJSONNullable(b, o.Reason)
	b = append(b, `,"risk_level":`...)
	b = appendJSONString(b, o.RiskLevel)
	b = append(b, `,"seller_message":`...)
	b = appendJSONString(b, o.SellerMessage)
	b = append(b, `,"type":`...)
	b = appendJSONString(b, o.Type)
	b = append(b, `},"paid":`...)
	b = strconv.AppendBool(b, c.Paid)
	b = append(b, `,"payment_intent":`...)
	b = appendJSONNullable(b, c.PaymentIntent)
	b = append(b, `,"payment_method":`...)
	b = appendJSONString(b, c.PaymentMethod)
	d := &c.PaymentMethodDetails
	b = append(b, `,"payment_method_details":{"type":`...)
	b = appendJSONString(b, d.Type)
	b = append(b, `,"card":{"brand":`...)
	b = appendJSONString(b, d.Card.Brand)
	b = append(b, `,"country":`...)
	b = appendJSONString(b, d.Card.Country)
	b = append(b, `,"exp_month":`...)
	b = strconv.AppendInt(b, d.Card.ExpMonth, 10)
	b = append(b, `,"exp_year":`...)
	b = strconv.AppendInt(b, d.Card.ExpYear, 10)
	b = append(b, `,"funding":`...)
	b = appendJSONString(b, d.Card.Funding)
	b = append(b, `,"last4":`...)
	b = appendJSONString(b, d.Card.Last4)
	b = append(b, `,"network":`...)
	b = appendJSONString(b, d.Card.Network)
	b = append(b, `}},"refunded":`...)
	b = strconv.AppendBool(b, c.Refunded)
	b = append(b, `,"source":`...)
	if s := c.Source; s == nil {
		b = append(b, "null"...)
	} else {
		b = append(b, `{"id":`...)
		b = appendJSONString(b, s.ID)
		b = append(b, `,"object":`...)
		b = appendJSONString(b, s.Object)
		b = append(b, `,"brand":`...)
		b = appendJSONString(b, s.Brand)
		b = append(b, `,"country":`...)
		b = appendJSONString(b, s.Country)
		b = append(b, `,"customer":`...)
		b = appendJSONNullable(b, s.Customer)
		b = append(b, `,"exp_month":`...)
		b = strconv.AppendInt(b, s.ExpMonth, 10)
		b = append(b, `,"exp_year":`...)
		b = strconv.AppendInt(b, s.ExpYear, 10)
		b = append(b, `,"funding":`...)
		b = appendJSONString(b, s.Funding)
		b = append(b, `,"last4":`...)
		b = appendJSONString(b, s.Last4)
		b = append(b, `,"metadata":`...)
		b = appendJSONMap(b, s.Metadata)
		b = append(b, '}')
	}
	b = append(b, `,"status":`...)
	b = appendJSONString(b, c.Status)
	return append(b, '}')
}

// appendJSONString appends s as a JSON string, as json.Marshal writes it.
// Plain ASCII is written as it is; anything else is left to json.Marshal.
func appendJSONString(b []byte, s string) []byte {
	for i := range len(s) {
		switch c := s[i]; {
		case c < 0x20 || c >= 0x7f, c == '"', c == '\\', c == '<', c == '>', c == '&':
			// A clone, so that s does not escape through the interface:
			// a charge being encoded can then stay on its caller's stack.
			enc, _ := json.Marshal(strings.Clone(s)) // a string always marshals
			return append(b, enc...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}

func appendJSONNullable(b []byte, s *string) []byte {
	if s == nil {
		return append(b, "null"...)
	}
	return appendJSONString(b, *s)
}

// appendJSONMap appends m with its keys sorted, null if it is nil.
func appendJSONMap(b []byte, m map[string]string) []byte {
	if m == nil {
		return append(b, "null"...)
	}
	b = append(b, '{')
	var keys []string
	switch len(m) {
	case 0:
	case 1:
		for k := range m {
			keys = append(keys, k)
		}
	default:
		keys = make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
	}
	for i, k := range keys {
		if i > 0 {
			b = append(b, ',')
		}
		b = appendJSONString(b, k)
		b = append(b, ':')
		b = appendJSONString(b, m[k])
	}
	return append(b, '}')
}
