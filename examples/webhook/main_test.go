package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func newServer(t *testing.T, rc *Receiver) *httptest.Server {
	t.Helper()
	h, err := rc.Handler()
	require.NoError(t, err)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// A redelivery that arrives while the first delivery is still being
// processed is told to come back (409), and then gets the first answer.
func TestRedeliveryWhileProcessingShipsOnce(t *testing.T) {
	entered := make(chan struct{})
	release := make(chan struct{})
	rc := NewReceiver()
	rc.process = func(ev Event) {
		close(entered)
		<-release
	}
	srv := newServer(t, rc)
	ev := Event{ID: "evt_1", Type: "charge.succeeded", OrderID: "ord_1"}

	// The first delivery: the sender gave up waiting, but the receiver is
	// still shipping.
	firstDone := make(chan error, 1)
	first := &Sender{URL: srv.URL, Client: srv.Client(), MaxAttempts: 1}
	go func() { _, err := first.Deliver(context.Background(), ev); firstDone <- err }()
	<-entered

	var waits []int
	redeliver := &Sender{
		URL: srv.URL, Client: srv.Client(), MaxAttempts: 5,
		Wait: func(attempt int) time.Duration {
			waits = append(waits, attempt)
			close(release) // the first delivery finishes shipping…
			require.NoError(t, <-firstDone)
			return 0 // …and only then does the sender try again
		},
	}
	attempts, err := redeliver.Deliver(context.Background(), ev)
	require.NoError(t, err)
	assert.Equal(t, 2, attempts, "one 409 while in flight, then the replay")
	assert.Equal(t, []int{1}, waits)

	orders, dups := rc.Shipped()
	assert.Equal(t, 1, orders)
	assert.Zero(t, dups)
}

// Many events, each delivered five times at once: one order per event.
func TestConcurrentDeliveriesShipOncePerEvent(t *testing.T) {
	rc := NewReceiver()
	srv := newServer(t, rc)
	sender := &Sender{
		URL: srv.URL, Client: srv.Client(), MaxAttempts: 50,
		Wait: func(int) time.Duration { return time.Millisecond },
	}
	const events, copies = 100, 5
	var wg sync.WaitGroup
	for i := range events {
		ev := Event{ID: fmt.Sprint("evt_", i), Type: "charge.succeeded", OrderID: fmt.Sprint("ord_", i)}
		for range copies {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := sender.Deliver(context.Background(), ev)
				assert.NoError(t, err)
			}()
		}
	}
	wg.Wait()
	orders, dups := rc.Shipped()
	assert.Equal(t, events, orders)
	assert.Zero(t, dups)
}

// Without the middleware the same deliveries ship twice: the test above
// can only pass because of it.
func TestWithoutMiddlewareRedeliveryShipsTwice(t *testing.T) {
	rc := NewReceiver()
	srv := httptest.NewServer(http.HandlerFunc(rc.ship))
	defer srv.Close()
	sender := &Sender{URL: srv.URL, Client: srv.Client(), MaxAttempts: 1}
	ev := Event{ID: "evt_1", OrderID: "ord_1"}
	for range 2 {
		_, err := sender.Deliver(context.Background(), ev)
		require.NoError(t, err)
	}
	orders, dups := rc.Shipped()
	assert.Equal(t, 2, orders)
	assert.Equal(t, 1, dups)
}

func TestBadEventShipsNothingAndFreesTheKey(t *testing.T) {
	rc := NewReceiver()
	srv := newServer(t, rc)
	req, _ := http.NewRequest(http.MethodPost, srv.URL, strings.NewReader(`not json`))
	req.Header.Set("Webhook-Id", "evt_9")
	resp, err := srv.Client().Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)

	sender := &Sender{URL: srv.URL, Client: srv.Client(), MaxAttempts: 1}
	_, err = sender.Deliver(context.Background(), Event{ID: "evt_9", OrderID: "ord_9"})
	require.NoError(t, err, "a corrected delivery with the same id is processed")
	orders, _ := rc.Shipped()
	assert.Equal(t, 1, orders)
}

// -h names the command and says what it does, not a temporary binary's
// path; a bad flag fails with the usage.
func TestUsage(t *testing.T) {
	var out bytes.Buffer
	_, err := parseFlags([]string{"-h"}, &out)
	require.ErrorIs(t, err, flag.ErrHelp)
	usage := out.String()
	assert.True(t, strings.HasPrefix(usage, "usage: go run ./examples/webhook [-events N]\n"), "%s", usage)
	assert.Contains(t, usage, "Every event ships exactly one order")
	assert.Contains(t, usage, "-events")
	assert.NotContains(t, usage, os.TempDir())

	n, err := parseFlags([]string{"-events", "5"}, &out)
	require.NoError(t, err)
	assert.Equal(t, 5, n)
	for _, args := range [][]string{{"-events", "0"}, {"-nope"}, {"extra"}} {
		out.Reset()
		_, err := parseFlags(args, &out)
		assert.Error(t, err, "%q", args)
		assert.Contains(t, out.String(), "usage: go run ./examples/webhook", "%q", args)
	}
}
