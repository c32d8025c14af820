package main

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"sync"

	"github.com/stripe/stripe-go/v85"
)

// Shop is the handler behind the webhook endpoint: for each charge.succeeded
// event it ships the order the charge paid for. On its own it is not
// idempotent, as a real one (a call to a warehouse, a label printed) is not:
// every call ships.
type Shop struct {
	mu      sync.Mutex
	shipped map[string]int // order → times shipped
	ran     map[string]int // event id → times shipped for it
	seq     []string       // event ids, in the order they shipped

	// pack, if set, runs just before an order ships. The test holds some
	// orders there.
	pack func(event, order string)
}

// NewShop returns a shop that has shipped nothing.
func NewShop() *Shop {
	return &Shop{shipped: make(map[string]int), ran: make(map[string]int)}
}

// ServeHTTP ships the order of a charge.succeeded event and answers 200
// with the shipment. It answers 204 to the events it has nothing to do for,
// and 400 to a body that is no event: in both, nothing happened, so a
// failure is safe to retry.
func (s *Shop) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var ev stripe.Event
	if err == nil {
		err = json.Unmarshal(body, &ev)
	}
	if err != nil || ev.Data == nil {
		http.Error(w, "not a Stripe event", http.StatusBadRequest)
		return
	}
	if ev.Type != stripe.EventTypeChargeSucceeded {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	var ch stripe.Charge
	if err := json.Unmarshal(ev.Data.Raw, &ch); err != nil || ch.Metadata["order"] == "" {
		http.Error(w, "a charge without an order", http.StatusBadRequest)
		return
	}
	order := ch.Metadata["order"]
	if s.pack != nil {
		s.pack(ev.ID, order)
	}
	shipment := s.ship(ev.ID, order)
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprintf(w, `{"order":%q,"shipment":%q}`+"\n", order, shipment)
}

func (s *Shop) ship(event, order string) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.shipped[order]++
	s.ran[event]++
	s.seq = append(s.seq, event)
	return fmt.Sprintf("shp_%d", len(s.seq))
}

// Shipments returns how many times each order shipped, and how many
// times the shop shipped for each event, in copies the caller owns.
func (s *Shop) Shipments() (orders, events map[string]int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.shipped), maps.Clone(s.ran)
}

// Sequence returns the event ids in the order the shop shipped for them.
func (s *Shop) Sequence() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.seq...)
}
