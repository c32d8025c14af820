package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"time"
)

// Backoff of the driver's retries. Short, since a key whose request died
// with the service is free again once its lease runs out, a second or less.
const (
	minBackoff = 20 * time.Millisecond
	maxBackoff = 250 * time.Millisecond
)

// attemptTimeout bounds one attempt. A request held at a crash point ends
// when the service is killed, well within it.
const attemptTimeout = 30 * time.Second

// driver places orders with the service as a client that never gives up
// does: it sends each order with its Idempotency-Key until it gets a final
// answer, retrying connection errors (the service was killed, or is
// restarting), 409 (the key's lease has not run out yet), 502 and 503.
type driver struct {
	hc   *http.Client
	url  func(context.Context) (string, error) // the service's URL now
	auth string                                // the Authorization header, the middleware's scope
}

// placed is the outcome of placing one order.
type placed struct {
	status   int   // of the final answer
	order    order // the order answered, for a 2xx
	attempts int
	replayed bool // the final answer was a replay

	// What the attempts before the final answer got.
	connErrors, conflicts, unavailable int
}

// newDriver returns a driver for the service that url finds, with up to
// conns connections open to it.
func newDriver(url func(context.Context) (string, error), conns int) *driver {
	return &driver{
		hc: &http.Client{
			Timeout:   attemptTimeout,
			Transport: &http.Transport{MaxIdleConnsPerHost: conns, IdleConnTimeout: time.Minute},
		},
		url:  url,
		auth: "Bearer cus_orders_demo",
	}
}

// place sends the order of amount under key until it gets a final answer,
// or ctx ends. A final answer other than 2xx is not an error: it is in the
// result's status.
func (d *driver) place(ctx context.Context, key string, amount int64) (placed, error) {
	body := []byte(`{"amount":` + strconv.FormatInt(amount, 10) + `}`)
	var p placed
	for {
		p.attempts++
		status, resBody, replayed, err := d.attempt(ctx, key, body)
		switch {
		case err == nil && status/100 == 2:
			if err := json.Unmarshal(resBody, &p.order); err != nil {
				return p, fmt.Errorf("order %s: answer %d: %w", key, status, err)
			}
			p.status, p.replayed = status, replayed
			return p, nil
		case err == nil && status != http.StatusConflict && status != http.StatusServiceUnavailable &&
			status != http.StatusBadGateway:
			p.status, p.replayed = status, replayed
			return p, nil
		case errors.Is(err, errNotRunning):
			return p, fmt.Errorf("order %s: %w", key, err)
		case err != nil:
			p.connErrors++
		case status == http.StatusConflict:
			p.conflicts++
		default:
			p.unavailable++
		}
		if ctx.Err() != nil {
			return p, fmt.Errorf("order %s: %d attempts: %w", key, p.attempts, ctx.Err())
		}
		if err := wait(ctx, backoff(p.attempts)); err != nil {
			return p, fmt.Errorf("order %s: %d attempts: %w", key, p.attempts, err)
		}
	}
}

func (d *driver) attempt(ctx context.Context, key string, body []byte) (status int, resBody []byte, replayed bool, err error) {
	url, err := d.url(ctx)
	if err != nil {
		return 0, nil, false, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url+"/orders", bytes.NewReader(body))
	if err != nil {
		return 0, nil, false, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", d.auth)
	req.Header.Set("Idempotency-Key", key)
	res, err := d.hc.Do(req)
	if err != nil {
		return 0, nil, false, err
	}
	defer res.Body.Close()
	resBody, err = io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return 0, nil, false, err
	}
	return res.StatusCode, resBody, res.Header.Get("Idempotent-Replayed") == "true", nil
}

// backoff returns the wait before retry n (from 1): min·2^(n-1) capped at
// max, half of it fixed and half random.
func backoff(n int) time.Duration {
	d := maxBackoff
	if n < 5 {
		d = min(minBackoff<<(n-1), maxBackoff)
	}
	return d/2 + rand.N(d/2+1)
}

// wait waits for d, or until ctx ends.
func wait(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
