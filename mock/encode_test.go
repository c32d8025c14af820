package mock

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// FuzzStripeChargeEncoding pins the hand-written encoder of the Stripe
// charge to the bytes json.Marshal writes for it, whatever its strings hold:
// HTML characters, control bytes, invalid UTF-8, U+2028, nil and empty maps.
func FuzzStripeChargeEncoding(f *testing.F) {
	f.Add("ch_1", "<b>&'\"\\", "order", "42", int64(2000), true, true)
	f.Add("", "\u2028\u2029\x00\x1f\x7f", "", "", int64(-1), false, false)
	f.Add("\xff\xfe", "caf\u00e9 \xc3", "k\xff", "\xed\xa0\x80", int64(1)<<62, true, false)
	f.Fuzz(func(t *testing.T, id, text, key, value string, amount int64, flag, withSource bool) {
		var meta map[string]string
		if flag {
			meta = map[string]string{key: value, text: id}
		} else if key != "" {
			meta = map[string]string{}
		}
		desc := text
		c := stripeCharge{
			ID: id, Object: "charge", Amount: amount, AmountCaptured: amount / 2, AmountRefunded: -amount,
			Captured: flag, Created: amount, Currency: value, Disputed: !flag, Livemode: flag,
			Metadata: meta, Paid: !flag, PaymentMethod: text, Refunded: flag, Status: key,
			Outcome:              stripeOutcome{NetworkStatus: text, RiskLevel: value, SellerMessage: id, Type: key},
			PaymentMethodDetails: stripePMDetails{Type: "card", Card: stripeCardInfo{Brand: text, Last4: value, ExpYear: amount}},
		}
		if flag {
			c.Description, c.FailureCode, c.PaymentIntent = &desc, &key, &value
		}
		if withSource {
			c.Source = &stripeCard{ID: id, Object: "card", Brand: text, Customer: &key, Last4: value, Metadata: meta}
			c.Outcome.Reason = &text
		}
		want, err := json.Marshal(&c)
		require.NoError(t, err)
		require.Equal(t, string(want), string(c.appendJSON(nil)))
	})
}
