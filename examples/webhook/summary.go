package main

import (
	"cmp"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"

	"github.com/payonce/payonce/idempotency"
	"github.com/payonce/payonce/mock"
)

// A summary is what one demo did, as the gateway and the receiver saw it.
type summary struct {
	plain bool

	// The gateway's side.
	events     []mock.EventRecord
	deliveries []mock.DeliveryRecord
	stats      mock.DeliveryStats
	faults     map[mock.DeliveryFaultKind]int // events' deliveries each kind of fault took
	copies     int                            // deliveries that were copies a fault made

	// The receiver's side.
	arrived  int                         // requests, forgeries included
	verified int                         // deliveries whose signature held
	refused  map[string]int              // reason → requests
	outcomes map[idempotency.Outcome]int // behind a Receiver
	replays  map[string]int              // event id → deliveries replayed
	forged   []forgery

	// The shop's.
	executed  map[string]int // event id → times the shop shipped for it
	shipped   map[string]int // order → times shipped
	overtaken int            // events shipped for after an event made later
}

func (d *demo) summarize(st mock.DeliveryStats) *summary {
	s := &summary{plain: d.opts.plain, events: d.gw.Events(), deliveries: d.gw.Deliveries(), stats: st,
		faults: make(map[mock.DeliveryFaultKind]int), forged: d.forged}
	for _, rec := range s.deliveries {
		switch {
		case rec.Attempt != 1:
		case rec.Copy > 0:
			s.copies++
		case rec.Fault != "":
			s.faults[rec.Fault]++
		}
	}

	t := d.tally
	t.mu.Lock()
	s.arrived, s.verified = t.arrived, t.verify
	s.refused, s.outcomes, s.replays = maps.Clone(t.refusals), maps.Clone(t.outcomes), maps.Clone(t.replays)
	t.mu.Unlock()
	if !s.plain {
		for _, n := range s.outcomes {
			s.verified += n // each verified delivery reaches the middleware once
		}
	}

	s.shipped, s.executed = d.shop.Shipments()
	made := make(map[string]int, len(s.events))
	for i, ev := range s.events {
		made[ev.ID] = i
	}
	latest := -1
	for _, id := range d.shop.Sequence() {
		if made[id] < latest {
			s.overtaken++
		}
		latest = max(latest, made[id])
	}
	return s
}

// shipments counts the orders shipped, the shipments, and the orders
// shipped more than once.
func (s *summary) shipments() (orders, shipments, twice int) {
	for _, n := range s.shipped {
		orders++
		shipments += n
		if n > 1 {
			twice++
		}
	}
	return orders, shipments, twice
}

// exactlyOnce reports whether every event shipped its order once, and
// every forgery was refused.
func (s *summary) exactlyOnce() bool {
	orders, shipments, twice := s.shipments()
	if orders != len(s.events) || shipments != len(s.events) || twice != 0 || len(s.executed) != len(s.events) {
		return false
	}
	for _, ev := range s.events {
		if s.executed[ev.ID] != 1 {
			return false
		}
	}
	for _, f := range s.forged {
		if f.status != 400 {
			return false
		}
	}
	return true
}

func (s *summary) print(w io.Writer) {
	st := s.stats
	fmt.Fprintf(w, "  gateway:  %d events; %d deliveries (%d + %d copies), %d attempts: %d delivered, %d answers dropped, %d failed",
		st.Events, st.Deliveries, st.Deliveries-int64(s.copies), s.copies, st.Attempts, st.Delivered, st.Dropped, st.Failed)
	if st.GaveUp > 0 {
		fmt.Fprintf(w, ", %d given up", st.GaveUp)
	}
	fmt.Fprintln(w)
	fmt.Fprintf(w, "  faults:   %d duplicated (1-5 copies at once), %d with a concurrent copy, %d answers dropped, %d held back\n",
		s.faults[mock.DuplicateDelivery], s.faults[mock.ConcurrentCopy], s.faults[mock.DropAnswer], s.faults[mock.DelayDelivery])

	refused := 0
	var reasons []string
	for _, r := range slices.SortedFunc(maps.Keys(s.refused), func(a, b string) int {
		return cmp.Or(cmp.Compare(s.refused[b], s.refused[a]), cmp.Compare(a, b))
	}) {
		refused += s.refused[r]
		reasons = append(reasons, fmt.Sprintf("%d %s", s.refused[r], r))
	}
	fmt.Fprintf(w, "  receiver: %d requests: %d verified, %d refused", s.arrived, s.verified, refused)
	if refused > 0 {
		fmt.Fprintf(w, " (%s)", strings.Join(reasons, ", "))
	}
	fmt.Fprintln(w)
	if s.plain {
		fmt.Fprintf(w, "            no idempotency: every verified delivery ships\n")
	} else {
		fmt.Fprintf(w, "            %d executed, %d replayed, %d in flight (409, retried later)\n",
			s.outcomes[idempotency.Executed], s.outcomes[idempotency.Replayed], s.outcomes[idempotency.Conflict])
	}
	refusedForged := 0
	for _, f := range s.forged {
		if f.status == 400 {
			refusedForged++
		}
	}
	fmt.Fprintf(w, "  forgers:  %d deliveries for %d real events (forged, stale, wrong secret): %d refused with 400\n",
		len(s.forged), len(s.forged)/3, refusedForged)

	orders, shipments, twice := s.shipments()
	fmt.Fprintf(w, "  shipped:  %d orders for %d events, ", shipments, len(s.events))
	switch {
	case twice == 0 && orders == len(s.events):
		fmt.Fprint(w, "none twice")
	case twice == 0:
		fmt.Fprintf(w, "%d never", len(s.events)-orders)
	default:
		fmt.Fprintf(w, "%d orders twice or more", twice)
	}
	fmt.Fprintf(w, "; %d after an event made later\n", s.overtaken)
}
