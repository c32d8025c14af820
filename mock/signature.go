package mock

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"time"
)

// signStripe returns the Stripe-Signature header of payload, signed with
// secret at t: "t=<unix seconds>,v1=<hex HMAC-SHA256 of "t.payload">".
//
// It stands in for package webhook's signer until that lands on this
// branch; then it goes, and delivery calls webhook.SignStripe.
func signStripe(payload []byte, secret string, t time.Time) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte("."))
	mac.Write(payload)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}
