package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v85"

	"github.com/payonce/payonce/idempotency"
	"github.com/payonce/payonce/mock"
)

// testOptions drive a thousand events through the mock, as the program
// does.
var testOptions = options{events: 1000, seed: 1, forgeFor: 3}

// heldCopies is how many events with a concurrent copy the test holds in
// the shop until the copy has met the 409, so that the copy is sure to
// arrive while the first delivery is processed. Few, so that held
// deliveries never fill the mock's 32 attempts in flight.
const heldCopies = 5

// runCtx bounds a demo, so that a bug fails the test rather than hangs it.
func runCtx(t *testing.T) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// holdConcurrentCopies makes the shop hold the first n events planned with
// a concurrent copy until the Receiver has answered that copy 409, and
// returns the events it held once d has run.
func holdConcurrentCopies(t *testing.T, d *demo, n int) (held func() []string) {
	t.Helper()
	hold := make(map[string]bool) // orders
	for _, p := range d.plan {
		if p.fault != nil && p.fault.Kind == mock.ConcurrentCopy && len(hold) < n {
			hold[p.order] = true
		}
	}
	require.Len(t, hold, n, "the plan has %d events with a concurrent copy", n)

	var mu sync.Mutex
	conflicted := make(map[string]chan struct{}) // event id → closed at its first 409
	signal := func(event string) chan struct{} {
		mu.Lock()
		defer mu.Unlock()
		c, ok := conflicted[event]
		if !ok {
			c = make(chan struct{})
			conflicted[event] = c
		}
		return c
	}
	var heldEvents []string
	d.tally.conflict = func(event string) {
		c := signal(event)
		mu.Lock()
		defer mu.Unlock()
		select {
		case <-c:
		default:
			close(c)
		}
	}
	d.shop.pack = func(event, order string) {
		if !hold[order] {
			return
		}
		select {
		case <-signal(event):
			mu.Lock()
			heldEvents = append(heldEvents, event)
			mu.Unlock()
		case <-time.After(30 * time.Second):
			t.Errorf("the concurrent copy of %s (%s) never met a 409", event, order)
		}
	}
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), heldEvents...)
	}
}

// A thousand charge.succeeded events, delivered by the mock duplicated
// (1 to 5 copies at once), with concurrent copies, held back past later
// events and again after a dropped answer, while forgers try three of
// them: the Receiver ships each order exactly once, loses none, and every
// redelivery it did not execute it replayed.
func TestReceiverShipsEachEventOnce(t *testing.T) {
	ctx := runCtx(t)
	d, err := newDemo(ctx, testOptions)
	require.NoError(t, err)
	defer d.close()
	held := holdConcurrentCopies(t, d, heldCopies)
	s, err := d.run(ctx)
	require.NoError(t, err)
	logTable(t, s)

	// The endpoint was registered with stripe-go, and every delivery went
	// to it.
	assert.Regexp(t, `^we_`, d.endpoint.ID)
	assert.Regexp(t, `^whsec_`, d.endpoint.Secret)
	require.Equal(t, testOptions.events, len(s.events), "events")
	for _, rec := range s.deliveries {
		require.Equal(t, d.endpoint.ID, rec.Endpoint)
		require.Equal(t, d.url, rec.URL)
	}
	for _, ev := range s.events {
		require.Equal(t, string(stripe.EventTypeChargeSucceeded), ev.Type)
	}

	// Every kind of fault happened, and more than a few times.
	st := s.stats
	assert.Equal(t, int64(testOptions.events), st.Events)
	for _, kind := range []mock.DeliveryFaultKind{mock.DuplicateDelivery, mock.ConcurrentCopy, mock.DropAnswer, mock.DelayDelivery} {
		assert.GreaterOrEqual(t, s.faults[kind], 50, "deliveries with a %s fault", kind)
	}
	assert.Equal(t, int64(s.faults[mock.DropAnswer]), st.Dropped, "each dropped answer is recorded")
	copies := make(map[string]int) // event id → copies a duplicate fault made
	concurrent := 0                // copies a concurrent_copy fault made
	for _, rec := range s.deliveries {
		switch {
		case rec.Copy == 0 || rec.Attempt != 1:
		case rec.Fault == mock.DuplicateDelivery:
			copies[rec.Event]++
		case rec.Fault == mock.ConcurrentCopy:
			concurrent++
		}
	}
	assert.Equal(t, s.faults[mock.ConcurrentCopy], concurrent, "each concurrent_copy fault sent its copy")
	counts := make(map[int]int) // copies → events
	for _, n := range copies {
		counts[n]++
	}
	for n := 1; n <= 5; n++ {
		assert.GreaterOrEqual(t, counts[n], 5, "events duplicated with %d copies", n)
	}
	assert.GreaterOrEqual(t, s.overtaken, s.faults[mock.DelayDelivery]-1, "each held-back event, but perhaps the last made, shipped after later ones")
	assert.ElementsMatch(t, held(), heldEvents(d, heldCopies), "each held event's copy arrived while it was processed")
	assert.GreaterOrEqual(t, s.outcomes[idempotency.Conflict], heldCopies)

	// Exactly once: every event the mock made shipped its order once, and
	// nothing else shipped.
	require.Equal(t, len(s.events), len(s.executed), "events shipped for: none lost")
	for _, ev := range s.events {
		require.Equal(t, 1, s.executed[ev.ID], "event %s shipped once", ev.ID)
	}
	require.Equal(t, len(d.plan), len(s.shipped), "orders shipped")
	for _, p := range d.plan {
		require.Equal(t, 1, s.shipped[p.order], "order %s shipped once", p.order)
	}
	assert.Equal(t, len(s.events), s.outcomes[idempotency.Executed])

	// Every delivery ended with a 2xx, and each 2xx but an event's first was
	// a replay: the mock's records, event by event, are the receiver's
	// replays. Every failed attempt was a 409 for a delivery in flight.
	assert.Zero(t, st.GaveUp)
	assert.Equal(t, st.Deliveries, st.Delivered)
	answered := make(map[string]int) // event id → attempts answered 2xx
	failed := 0
	for _, rec := range s.deliveries {
		switch {
		case rec.Status >= 200 && rec.Status < 300:
			answered[rec.Event]++
		default:
			require.Equal(t, http.StatusConflict, rec.Status, "%+v", rec)
			failed++
		}
	}
	for _, ev := range s.events {
		require.Equal(t, answered[ev.ID]-1, s.replays[ev.ID], "event %s: its 2xx answers after the first were replays", ev.ID)
	}
	assert.Equal(t, int(st.Failed), failed)
	assert.Equal(t, failed, s.outcomes[idempotency.Conflict])
	assert.Equal(t, int(st.Delivered+st.Dropped)-len(s.events), s.outcomes[idempotency.Replayed])
	assert.Greater(t, s.outcomes[idempotency.Replayed], len(s.events)/2, "redeliveries were many")
	assert.Equal(t, int(st.Attempts), s.verified, "every delivery of the mock's was verified")
	assert.Equal(t, s.verified+len(s.forged), s.arrived)

	// The forgeries were refused, each for its reason, and claimed nothing:
	// the real deliveries held back behind them shipped their orders.
	checkForgeries(t, d, s)
}

// heldEvents returns the ids of the events of the first n orders planned
// with a concurrent copy.
func heldEvents(d *demo, n int) []string {
	ids := make(map[string]string)
	for _, ev := range d.gw.Events() {
		ids[ev.IdempotencyKey] = ev.ID
	}
	var out []string
	for _, p := range d.plan {
		if p.fault != nil && p.fault.Kind == mock.ConcurrentCopy && len(out) < n {
			out = append(out, ids[chargeKey(p.order)])
		}
	}
	return out
}

// checkForgeries asserts that each forgery was refused with 400 for its
// reason, and that the real event it named shipped its order once anyway,
// its delivery held back until after the forgeries.
func checkForgeries(t *testing.T, d *demo, s *summary) {
	t.Helper()
	require.Len(t, s.forged, 3*testOptions.forgeFor)
	for _, f := range s.forged {
		assert.Equal(t, http.StatusBadRequest, f.status, "%s delivery of %s", f.kind, f.event)
		assert.Equal(t, 1, s.executed[f.event], "the real %s shipped after the %s delivery", f.event, f.kind)
	}
	assert.Equal(t, map[string]int{"no matching signature": 2 * testOptions.forgeFor, "timestamp too old": testOptions.forgeFor}, s.refused)
	for _, p := range d.plan[:testOptions.forgeFor] {
		assert.Equal(t, 1, s.shipped[p.order], "the forgers' target %s shipped", p.order)
	}
	assert.Zero(t, s.shipped["ord_forged"], "the forged order shipped")
	for _, rec := range s.deliveries {
		for _, f := range s.forged {
			if rec.Event == f.event && rec.Copy == 0 && rec.Attempt == 1 {
				assert.Equal(t, mock.DelayDelivery, rec.Fault, "the real delivery of %s came after the forgeries", f.event)
			}
		}
	}
}

// The control: the same run behind stripe-go's ConstructEvent alone. It
// accepts every delivery the mock makes and refuses the forgeries, but
// ships an order for every delivery: duplicates.
func TestControlShipsDuplicates(t *testing.T) {
	ctx := runCtx(t)
	o := testOptions
	o.plain = true
	d, err := newDemo(ctx, o)
	require.NoError(t, err)
	defer d.close()
	s, err := d.run(ctx)
	require.NoError(t, err)
	logTable(t, s)

	st := s.stats
	assert.Equal(t, int(st.Attempts), s.verified, "stripe-go's webhook.ConstructEvent accepts every delivery of the mock's")
	assert.Zero(t, st.Failed)
	orders, shipments, twice := s.shipments()
	assert.Equal(t, len(s.events), orders, "every order shipped")
	assert.Greater(t, shipments, len(s.events), "and some more than once")
	assert.Greater(t, twice, len(s.events)/10)
	assert.Equal(t, int(st.Delivered+st.Dropped), shipments, "one shipment per delivery answered")
	assert.False(t, s.exactlyOnce())
	for _, f := range s.forged {
		assert.Equal(t, http.StatusBadRequest, f.status, "%s delivery of %s", f.kind, f.event)
	}
	assert.Zero(t, s.shipped["ord_forged"], "the forged order shipped")
}

// The control of the forgeries: a receiver that claims the event id in the
// body before it checks the signature, as this example once did, lets each
// forgery burn its real event's id. The real delivery that follows gets
// the forgery's stored 400, or 422 for another body, on every attempt
// until the mock gives it up, and its order never ships. (Its fingerprint
// covers the body, so a redelivery that the mock rendered anew, with
// pending_webhooks down to 0, gets 422 too; package webhook's Receiver
// fingerprints the event by its id alone.)
func TestClaimingBeforeVerifyingLosesEvents(t *testing.T) {
	ctx := runCtx(t)
	o := testOptions
	o.events = 100
	d, err := newDemo(ctx, o)
	require.NoError(t, err)
	defer d.close()
	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/stripe", d.tally.count(claimFirst(t, d.endpoint.Secret, d.shop, d.tally)))
	d.srv.Handler = mux // before run serves anything
	s, err := d.run(ctx)
	require.NoError(t, err)

	burned := make(map[string]bool)
	for _, f := range s.forged {
		burned[f.event] = true
	}
	require.Len(t, burned, o.forgeFor)
	gaveUp := 0
	for _, rec := range s.deliveries {
		if burned[rec.Event] {
			assert.Contains(t, []int{http.StatusBadRequest, http.StatusUnprocessableEntity}, rec.Status, "%+v", rec)
			if rec.GaveUp {
				gaveUp++
			}
		}
	}
	assert.Equal(t, o.forgeFor, gaveUp, "the mock gave up each burned event")
	for _, p := range d.plan[:o.forgeFor] {
		assert.Zero(t, s.shipped[p.order], "order %s, whose event a forger named first", p.order)
	}
	assert.Equal(t, o.events-o.forgeFor, len(s.executed), "the others shipped")
}

// claimFirst is the bug: the idempotency middleware keyed by the id a
// request's body claims, with stripe-go's check behind it.
func claimFirst(t *testing.T, secret string, shop http.Handler, stats *tally) http.Handler {
	t.Helper()
	mw, err := idempotency.New(idempotency.NewMemoryStore(), idempotency.WithoutScope())
	require.NoError(t, err)
	keyed := mw.Wrap(verifyOnly(secret, shop, stats))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		var ev struct {
			ID string `json:"id"`
		}
		if err == nil {
			err = json.Unmarshal(body, &ev)
		}
		if err != nil {
			http.Error(w, "not an event", http.StatusBadRequest)
			return
		}
		r.Header.Set("Idempotency-Key", ev.ID)
		r.Body = io.NopCloser(bytes.NewReader(body))
		keyed.ServeHTTP(w, r)
	})
}

// logTable logs the figures of a run.
func logTable(t *testing.T, s *summary) {
	t.Helper()
	st := s.stats
	side := "webhook.Receiver"
	if s.plain {
		side = "control (ConstructEvent alone)"
	}
	orders, shipments, twice := s.shipments()
	var b strings.Builder
	row := func(name, format string, args ...any) {
		fmt.Fprintf(&b, "\n  %-24s "+format, append([]any{name}, args...)...)
	}
	b.WriteString(side)
	row("events", "%d", st.Events)
	row("deliveries", "%d (%d + %d copies)", st.Deliveries, st.Deliveries-int64(s.copies), s.copies)
	row("attempts", "%d: %d delivered, %d answers dropped, %d failed, %d given up", st.Attempts, st.Delivered, st.Dropped, st.Failed, st.GaveUp)
	dupCopies := 0
	for _, rec := range s.deliveries {
		if rec.Fault == mock.DuplicateDelivery && rec.Copy > 0 && rec.Attempt == 1 {
			dupCopies++
		}
	}
	row("duplicated (1-5 copies)", "%d events, %d copies", s.faults[mock.DuplicateDelivery], dupCopies)
	row("concurrent copy", "%d events", s.faults[mock.ConcurrentCopy])
	row("answer dropped", "%d events", s.faults[mock.DropAnswer])
	row("held back (delay)", "%d events; %d shipped after a later event", s.faults[mock.DelayDelivery], s.overtaken)
	row("requests", "%d: %d verified, refused %v", s.arrived, s.verified, s.refused)
	if !s.plain {
		row("executed", "%d", s.outcomes[idempotency.Executed])
		row("replayed", "%d", s.outcomes[idempotency.Replayed])
		row("in flight (409)", "%d", s.outcomes[idempotency.Conflict])
	}
	row("shipped", "%d shipments of %d orders, %d more than once", shipments, orders, twice)
	t.Log(b.String())
}

// The program runs both sides and says so.
func TestRun(t *testing.T) {
	var out bytes.Buffer
	require.NoError(t, run(runCtx(t), &out, options{events: 60, seed: 2, forgeFor: 3}), out.String())
	receiver, control, ok := strings.Cut(out.String(), "control: stripe-go's webhook.ConstructEvent")
	require.True(t, ok, out.String())
	assert.Contains(t, receiver, "shipped:  60 orders for 60 events, none twice")
	assert.Contains(t, receiver, "forgers:  9 deliveries for 3 real events (forged, stale, wrong secret): 9 refused with 400")
	assert.Contains(t, receiver, "9 refused (6 no matching signature, 3 timestamp too old)")
	assert.Regexp(t, `60 executed, \d+ replayed`, receiver)
	assert.Regexp(t, `shipped:  \d+ orders for 60 events, \d+ orders twice or more`, control)
	assert.Contains(t, control, "9 refused with 400")
}

// -h names the command and says what it does, not a temporary binary's
// path; a bad flag fails with the usage.
func TestUsage(t *testing.T) {
	var out bytes.Buffer
	_, err := parseFlags([]string{"-h"}, &out)
	require.ErrorIs(t, err, flag.ErrHelp)
	usage := out.String()
	assert.True(t, strings.HasPrefix(usage, "usage: go run ./examples/webhook [-events N] [-seed S]\n"), "%s", usage)
	assert.Contains(t, usage, "ships every order exactly once")
	assert.Contains(t, usage, "-events")
	assert.NotContains(t, usage, os.TempDir())

	o, err := parseFlags([]string{"-events", "5", "-seed", "7"}, &out)
	require.NoError(t, err)
	assert.Equal(t, options{events: 5, seed: 7, forgeFor: 3}, o)
	for _, args := range [][]string{{"-events", "2"}, {"-nope"}, {"extra"}} {
		out.Reset()
		_, err := parseFlags(args, &out)
		assert.Error(t, err, "%q", args)
		assert.Contains(t, out.String(), "usage: go run ./examples/webhook", "%q", args)
	}
}
