package main

import (
	"context"
	"crypto/rand"
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"mime"
	"net/http"
	"regexp"
	"strconv"
	"sync"
	"time"

	"github.com/payonce/payonce"
	"github.com/payonce/payonce/mock"
)

// The cart is fixed: one annual plan.
const (
	cartAmount      = 120_00 // minor units
	cartCurrency    = "usd"
	cartDescription = "Annual plan"
	cartCookie      = "cart"
)

// payTimeout bounds one payment, retries included. It is longer than the
// client's own worst case with the default retry settings.
const payTimeout = 30 * time.Second

// cards are the test cards the page offers.
var cards = map[string]bool{"tok_visa": true, "tok_chargeDeclined": true}

//go:embed static
var static embed.FS

// cartIDPattern matches the cart ids newCartID makes (rand.Text is 26
// characters of base32).
var cartIDPattern = regexp.MustCompile(`^cart_[A-Z2-7]{26}$`)

// Shop is the checkout: it serves the page, keeps each visitor's cart id in a
// cookie, and charges carts through a payonce client.
type Shop struct {
	client *payonce.Client

	// gateway is the demo's window into the gateway, which a real shop does
	// not have: the page shows its ledger, and the "flaky network" toggle
	// injects faults into it.
	gateway *mock.Gateway

	// attempts holds each cart's current payment attempt, where it is past
	// the first; a real shop keeps it with the cart. See payKey.
	mu       sync.Mutex
	attempts map[string]int
}

// NewShop returns a shop that charges through client, which must point at
// gateway.
func NewShop(client *payonce.Client, gateway *mock.Gateway) *Shop {
	return &Shop{client: client, gateway: gateway, attempts: make(map[string]int)}
}

// attempt returns cart's current payment attempt, 1 at first.
func (s *Shop) attempt(cart string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return max(s.attempts[cart], 1)
}

// declined ends attempt n of cart, which the gateway declined, and returns
// the cart's current attempt: the next one, unless another request had
// already ended it.
func (s *Shop) declined(cart string, n int) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	if cur := max(s.attempts[cart], 1); cur != n {
		return cur
	}
	s.attempts[cart] = n + 1
	return n + 1
}

// payKey is the idempotency key of attempt n to pay for cart.
//
// The key names the operation "pay for this cart", not an HTTP request. A
// double click, a browser or proxy resending the POST after a slow answer,
// a second tab: each is a new request for the same payment. Derived from
// the cart, they all carry the same key, so the gateway executes the first
// and replays its result to the others, and nothing needs storing. A key
// made per request (payonce.NewKey) gives each of them a new key, and the
// gateway, which can only tell operations apart by their keys, charges
// every one. The client's retries use one key per call either way; they
// protect one request from the network, not the customer from their own
// second click.
//
// A declined card ends an attempt: the customer may try another card, and
// that is a new operation, which needs a new key (the gateway keeps the
// decline under the old one, and would refuse the old key with another
// card). So the key names the attempt too, and only a decline, which the
// gateway answers when it charged nothing, starts the next one. A charge,
// an unknown outcome or a request in flight never does, so no click can
// ever charge a cart twice. The page sends the attempt it was showing when
// clicked: a second click on a declined attempt gets its decline replayed,
// and is not taken for a new attempt.
//
// A cart is paid once: if its content can change after a failed payment,
// put its version in the key too.
func payKey(cart string, n int) (string, error) {
	return payonce.BusinessKey("cart", cart, "attempt_"+strconv.Itoa(n))
}

// Handler returns the shop's routes:
//
//	GET  /        the checkout page (it gives a new visitor a cart)
//	GET  /static/ its script and style
//	GET  /state   the cart's payment attempt and the gateway's charges for it, as JSON
//	POST /pay     pays for the visitor's cart, answers a payResult
//	POST /cart    starts a new cart
func (s *Shop) Handler() http.Handler {
	mux := http.NewServeMux()
	sub, err := fs.Sub(static, "static")
	if err != nil {
		panic(err) // the embedded tree always has static/
	}
	mux.HandleFunc("GET /{$}", s.page)
	mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(sub)))
	mux.HandleFunc("GET /state", s.state)
	mux.HandleFunc("POST /pay", s.pay)
	mux.HandleFunc("POST /cart", s.newCart)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Content-Security-Policy", "default-src 'self'; frame-ancestors 'none'")
		mux.ServeHTTP(w, r)
	})
}

func (s *Shop) page(w http.ResponseWriter, r *http.Request) {
	if _, ok := cartFrom(r); !ok {
		setCart(w, newCartID())
	}
	w.Header().Set("Cache-Control", "no-store")
	http.ServeFileFS(w, r, static, "static/index.html")
}

// payRequest is the body of POST /pay: the page's toggles.
type payRequest struct {
	Keyed bool   `json:"keyed"` // "Idempotency key per cart"
	Flaky bool   `json:"flaky"` // "Flaky network"
	Card  string `json:"card"`  // a test token, see cards
	// Attempt is the cart's payment attempt the page showed when clicked
	// (see payKey); 0 for the cart's current one.
	Attempt int `json:"attempt,omitempty"`
}

// payResult is the answer to POST /pay, for the page's log.
type payResult struct {
	OK       bool   `json:"ok"`
	ChargeID string `json:"charge_id,omitempty"`
	Replayed bool   `json:"replayed"`           // the gateway replayed a stored result
	Attempts int    `json:"attempts,omitempty"` // attempts the client made, retries included
	// Note tells a person how the answer came: at the first attempt, or
	// after retries, and whether the gateway replayed a stored charge.
	Note string `json:"note,omitempty"`
	Key  string `json:"key,omitempty"` // the idempotency key the charge was sent with
	// NextAttempt is the cart's payment attempt after this answer, which
	// the page sends with its next click: one more than the attempt paid
	// after a decline, the same otherwise. 0 when keys are off.
	NextAttempt int `json:"next_attempt,omitempty"`
	// Error is "declined", "outcome_unknown", "key_reused", "bad_request"
	// or "failed"; Message says it for a person.
	Error   string `json:"error,omitempty"`
	Message string `json:"message,omitempty"`
}

func (s *Shop) pay(w http.ResponseWriter, r *http.Request) {
	if !isJSON(r) {
		// A cross-site form cannot send application/json without a CORS
		// preflight, which this server never grants: the cookie alone
		// cannot be used to pay from another site.
		writeJSON(w, http.StatusUnsupportedMediaType, payResult{Error: "bad_request", Message: "send application/json"})
		return
	}
	cart, ok := cartFrom(r)
	if !ok {
		writeJSON(w, http.StatusBadRequest, payResult{Error: "bad_request", Message: "no cart: reload the page"})
		return
	}
	var req payRequest
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 4<<10))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil || !cards[req.Card] {
		writeJSON(w, http.StatusBadRequest, payResult{Error: "bad_request", Message: "want {keyed, flaky, card}, with a known card"})
		return
	}

	// The key names the payment, not this request: see payKey.
	key := payonce.NewKey() // the classic bug, for the "off" position of the toggle
	attempt := 0
	if req.Keyed {
		attempt = s.attempt(cart)
		switch {
		case req.Attempt > attempt || req.Attempt < 0:
			writeJSON(w, http.StatusBadRequest, payResult{Error: "bad_request", NextAttempt: attempt,
				Message: fmt.Sprintf("this cart has no payment attempt %d: reload the page", req.Attempt)})
			return
		case req.Attempt > 0:
			attempt = req.Attempt
		}
		var err error
		if key, err = payKey(cart, attempt); err != nil {
			writeJSON(w, http.StatusInternalServerError, payResult{Error: "failed", Message: err.Error()})
			return
		}
	}

	if req.Flaky {
		// The next charge request is executed and stored, and then its
		// answer is lost; the client's retry gets the stored one. Faults
		// are the gateway's, not this request's: with clicks racing, one
		// click may lose another's answer, which is as flaky as networks
		// are.
		if err := s.gateway.InjectFault(mock.Fault{Kind: mock.DropAfter, Method: http.MethodPost, Path: "/v1/charges"}); err != nil {
			writeJSON(w, http.StatusInternalServerError, payResult{Error: "failed", Message: err.Error()})
			return
		}
	}

	// The payment goes on if the browser goes away: a charge abandoned
	// halfway is an unknown outcome that someone must settle later.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), payTimeout)
	defer cancel()
	ch, err := s.client.Charges.Create(ctx, &payonce.ChargeParams{
		Amount:         cartAmount,
		Currency:       cartCurrency,
		PaymentMethod:  req.Card,
		Description:    cartDescription,
		Metadata:       map[string]string{"cart": cart},
		IdempotencyKey: key,
	})
	if err != nil {
		status, res := failure(err)
		res.Key = key
		if req.Keyed {
			res.NextAttempt = s.attempt(cart)
			switch {
			case res.Error == "declined":
				res.NextAttempt = s.declined(cart, attempt)
			case res.Error == "key_reused" && attempt < res.NextAttempt:
				// Only a decline ends an attempt: this click (a second
				// tab, or one sent before the decline came back) paid
				// with another card under an attempt already declined.
				res.Message = fmt.Sprintf("This payment attempt was declined, so this card was not charged: "+
					"pay again to send it as the next attempt (%d).", res.NextAttempt)
			}
		}
		writeJSON(w, status, res)
		return
	}
	res := payResult{
		OK:       true,
		ChargeID: ch.ID,
		Replayed: ch.LastResponse.Replayed,
		Attempts: ch.LastResponse.Attempts,
		Note:     attemptsNote(ch.LastResponse.Attempts, ch.LastResponse.Replayed),
		Key:      key,
	}
	if req.Keyed {
		res.NextAttempt = s.attempt(cart)
	}
	writeJSON(w, http.StatusOK, res)
}

// attemptsNote tells how a charge was obtained, from the attempts the client
// made (every attempt the gateway received, retries included) and whether
// the last was answered with a stored charge.
func attemptsNote(attempts int, replayed bool) string {
	switch {
	case attempts <= 1 && !replayed:
		return "charged at the first attempt"
	case attempts <= 1:
		return "replayed at the first attempt: the gateway had already charged under this key, " +
			"and answered with that charge instead of a second one"
	case replayed:
		return fmt.Sprintf("charged after %d attempts (%s with the same key): an earlier answer was lost, "+
			"or the key was still in use, and the gateway answered the retry with the charge it had made, "+
			"not a second one", attempts, retries(attempts-1))
	default:
		return fmt.Sprintf("charged after %d attempts (%s with the same key): the earlier ones failed "+
			"before the gateway charged", attempts, retries(attempts-1))
	}
}

func retries(n int) string {
	if n == 1 {
		return "1 retry"
	}
	return strconv.Itoa(n) + " retries"
}

// failure turns a payment error into the page's answer.
func failure(err error) (int, payResult) {
	var unknown *payonce.OutcomeUnknownError
	switch {
	case errors.Is(err, payonce.ErrCardDeclined):
		return http.StatusPaymentRequired, payResult{Error: "declined", Message: "The card was declined."}
	case errors.As(err, &unknown):
		// The charge happened at most once. Paying again with the same
		// key settles it: the gateway charges if it never did, or
		// replays the charge it made.
		return http.StatusGatewayTimeout, payResult{Error: "outcome_unknown", Attempts: unknown.Attempts,
			Note: fmt.Sprintf("no answer after %d attempts with the same key", unknown.Attempts),
			Message: "The gateway did not answer, so the payment may or may not have gone through. " +
				"With the key per cart on, paying again is safe: it cannot charge twice."}
	case errors.Is(err, payonce.ErrKeyReused):
		// Only a decline lets another card try: this attempt was paid, or
		// its outcome is still unknown.
		return http.StatusConflict, payResult{Error: "key_reused",
			Message: "This payment was already sent to the gateway with another card, and was not declined: " +
				"pay with that card again to learn its outcome, or start a new cart."}
	default:
		return http.StatusBadGateway, payResult{Error: "failed", Message: err.Error()}
	}
}

// cartState is the answer to GET /state: what the gateway holds for the cart.
type cartState struct {
	Cart       string       `json:"cart"`
	Attempt    int          `json:"attempt"` // the cart's payment attempt, which the next click pays (see payKey)
	Amount     int64        `json:"amount"`  // the cart's price, in minor units
	Charges    []chargeView `json:"charges"`
	Charged    int64        `json:"charged"`    // the sum of the charges, in minor units
	Duplicates int          `json:"duplicates"` // charges beyond the first
}

type chargeView struct {
	ID      string `json:"id"`
	Amount  int64  `json:"amount"`
	Key     string `json:"key"`
	Created int64  `json:"created"`
}

func (s *Shop) state(w http.ResponseWriter, r *http.Request) {
	cart, _ := cartFrom(r)
	st := cartState{Cart: cart, Amount: cartAmount, Charges: []chargeView{}}
	if cart != "" {
		st.Attempt = s.attempt(cart)
		for _, ch := range cartCharges(s.gateway, cart) {
			st.Charges = append(st.Charges, chargeView{ID: ch.ID, Amount: ch.Amount, Key: ch.IdempotencyKey, Created: ch.Created})
			st.Charged += ch.Amount
		}
	}
	st.Duplicates = max(0, len(st.Charges)-1)
	writeJSON(w, http.StatusOK, st)
}

// cartCharges returns the gateway's charges for cart, oldest first.
func cartCharges(gw *mock.Gateway, cart string) []mock.LedgerCharge {
	var out []mock.LedgerCharge
	for _, ch := range gw.Charges() {
		if ch.Metadata["cart"] == cart {
			out = append(out, ch)
		}
	}
	return out
}

func (s *Shop) newCart(w http.ResponseWriter, r *http.Request) {
	if !isJSON(r) {
		writeJSON(w, http.StatusUnsupportedMediaType, payResult{Error: "bad_request", Message: "send application/json"})
		return
	}
	id := newCartID()
	setCart(w, id)
	writeJSON(w, http.StatusOK, map[string]string{"cart": id})
}

func newCartID() string { return "cart_" + rand.Text() }

func cartFrom(r *http.Request) (string, bool) {
	c, err := r.Cookie(cartCookie)
	if err != nil || !cartIDPattern.MatchString(c.Value) {
		return "", false
	}
	return c.Value, true
}

func setCart(w http.ResponseWriter, id string) {
	http.SetCookie(w, &http.Cookie{Name: cartCookie, Value: id, Path: "/", HttpOnly: true, SameSite: http.SameSiteStrictMode})
}

func isJSON(r *http.Request) bool {
	mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	return err == nil && mt == "application/json"
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}
