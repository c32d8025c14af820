package mock

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"strings"
	"sync"
)

const keyPrefix = "sk_test_"

// account is one API key's share of the gateway: its charges, refunds and
// payment intents. Each has its own lock, so accounts never wait for each
// other.
type account struct {
	// "acct_" + the first 16 hex digits of SHA-256(API key), and in
	// Stripe's dialect "/" + the Stripe-Account it acts for, if any
	id string
	// stripeScope is the scope of its Stripe-dialect keys, worked out once
	// (see world.stripeScope).
	stripeScope string

	mu         sync.Mutex
	charges    []*charge // oldest first
	byID       map[string]*charge
	refunds    map[string]*Refund
	intents    []*paymentIntent // oldest first
	intentByID map[string]*paymentIntent
}

// wellFormedKey reports whether key is sk_test_ followed by at least one
// visible ASCII character.
func wellFormedKey(key string) bool {
	if len(key) <= len(keyPrefix) || !strings.HasPrefix(key, keyPrefix) {
		return false
	}
	for i := len(keyPrefix); i < len(key); i++ {
		if key[i] < 0x21 || key[i] > 0x7e {
			return false
		}
	}
	return true
}

// AccountID returns the non-secret account ID the gateway shows for the
// API key: "acct_" followed by the first 16 hexadecimal digits of the
// key's SHA-256. History records and ledger entries name accounts by it.
func AccountID(apiKey string) string {
	sum := sha256.Sum256([]byte(apiKey))
	return accountID(&sum)
}

func accountID(sum *[sha256.Size]byte) string {
	b := accountIDBytes(sum)
	return string(b[:])
}

func accountIDBytes(sum *[sha256.Size]byte) [5 + 16]byte {
	var b [5 + 16]byte
	copy(b[:], "acct_")
	hex.Encode(b[5:], sum[:8])
	return b
}

// authenticate finds the account of r's API key, creating it on first use.
// The key itself is neither kept nor echoed: accounts are found by digest.
// In Stripe's dialect the key may also come as Basic credentials, and a
// Stripe-Account header names a connected account: one of its own, within
// the key's.
func (w *world) authenticate(r *http.Request, d dialect) (*account, *apiError) {
	h := r.Header.Get("Authorization")
	if h == "" {
		return nil, &apiError{Status: http.StatusUnauthorized, Type: authError, Code: "api_key_missing",
			Message: "no API key provided: send Authorization: Bearer sk_test_…"}
	}
	scheme, key, ok := strings.Cut(h, " ")
	key = strings.TrimLeft(key, " ")
	if ok && d == stripeDialect && strings.EqualFold(scheme, "Basic") {
		scheme, key = "Bearer", basicKey(key)
	}
	if !ok || !strings.EqualFold(scheme, "Bearer") || !wellFormedKey(key) {
		return nil, &apiError{Status: http.StatusUnauthorized, Type: authError, Code: "api_key_invalid",
			Message: "malformed API key: send Authorization: Bearer sk_test_ followed by visible ASCII"}
	}
	sum := sha256.Sum256([]byte(key))
	if allowed := w.g.cfg.apiKeys; allowed != nil {
		found := 0
		for i := range allowed {
			found |= subtle.ConstantTimeCompare(sum[:], allowed[i][:])
		}
		if found == 0 {
			return nil, &apiError{Status: http.StatusUnauthorized, Type: authError, Code: "api_key_invalid",
				Message: "invalid API key: this gateway accepts only the keys it was started with"}
		}
	}
	b := accountIDBytes(&sum)
	if d == stripeDialect {
		connected, e := stripeAccount(r)
		if e != nil {
			return nil, e
		}
		if connected != "" {
			return w.account(string(b[:]) + "/" + connected), nil
		}
	}
	// A test suite sends most of its requests with one key: its account
	// is found again without building its ID or looking it up.
	if a := w.lastAccount.Load(); a != nil && a.id == string(b[:]) {
		return a, nil
	}
	a := w.account(string(b[:]))
	w.lastAccount.Store(a)
	return a, nil
}

func (w *world) account(id string) *account {
	if a, ok := w.accounts.Load(id); ok {
		return a.(*account)
	}
	a, _ := w.accounts.LoadOrStore(id, &account{id: id, stripeScope: w.scopePrefix + "stripe/" + id, byID: make(map[string]*charge),
		refunds: make(map[string]*Refund), intentByID: make(map[string]*paymentIntent)})
	return a.(*account)
}
