package main

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/payonce/payonce/mock"
)

// demoConfig is what the demo is told on its command line.
type demoConfig struct {
	db    string
	lease time.Duration
	bin   string // the orders binary, which the demo runs as `orders serve`
}

// demoOrders is how many orders the demo places in each mode; the second
// is the one killed.
const demoOrders = 3

// demo runs the service transactional and then as the control, killing
// each in the middle of its second order, and prints what the orders table
// holds afterwards. It fails if the transactional run has a key with other
// than one paid row, or charged twice.
func demo(ctx context.Context, cfg demoConfig, out io.Writer) error {
	pool, err := pgxpool.New(ctx, cfg.db)
	if err != nil {
		return err
	}
	defer pool.Close()
	if err := pool.Ping(ctx); err != nil {
		return fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	gw := mock.NewServer()
	defer gw.Close()

	base := "orders_demo_" + strings.ToLower(rand.Text()[:10])
	fmt.Fprintf(out, "orders: tables in PostgreSQL schemas %s_*, dropped at the end; gateway: a mock at %s\n", base, gw.URL)
	var ok bool
	for _, transactional := range []bool{true, false} {
		schema, prefix := base+"_tx", "tx"
		if !transactional {
			schema, prefix = base+"_control", "control"
		}
		ok, err = demoRun(ctx, cfg, pool, gw, schema, prefix, transactional, out)
		// Leave nothing behind, whatever happened.
		if _, derr := pool.Exec(context.WithoutCancel(ctx), `DROP SCHEMA IF EXISTS `+pgx.Identifier{schema}.Sanitize()+` CASCADE`); derr != nil && err == nil {
			err = derr
		}
		if err != nil {
			return err
		}
		if transactional && !ok {
			return errors.New("the transactional service placed or charged an order twice")
		}
	}
	return nil
}

// demoRun places demoOrders orders with one service, kills it when the
// second reaches "handled", and prints the orders table. It reports
// whether every key has exactly one paid row and one charge.
func demoRun(ctx context.Context, cfg demoConfig, pool *pgxpool.Pool, gw *mock.Server, schema, prefix string,
	transactional bool, out io.Writer) (ok bool, err error) {
	if transactional {
		fmt.Fprintln(out, "\n-transactional=true: the order commits with the stored response, in one transaction")
	} else {
		fmt.Fprintln(out, "\n-transactional=false, the control: the handler commits the order, then the middleware stores the response")
	}
	crashes := []crashSpec{{point: pointHandled, n: 2}}
	sup := newSupervisor(cfg.bin, []string{"-db", cfg.db, "-schema", schema, "-gateway", gw.URL,
		fmt.Sprintf("-transactional=%t", transactional), "-lease", cfg.lease.String()}, io.Discard,
		func() crashSpec {
			if len(crashes) == 0 {
				return crashSpec{}
			}
			c := crashes[0]
			crashes = crashes[1:]
			return c
		})
	sctx, stop := context.WithCancel(ctx)
	supervised := make(chan error, 1)
	go func() { supervised <- sup.run(sctx) }()
	defer func() {
		stop()
		if serr := <-supervised; serr != nil && err == nil {
			err = serr
		}
	}()

	d := newDriver(sup.URL, 1)
	keys := make([]string, demoOrders)
	for i := range keys {
		keys[i] = fmt.Sprintf("%s-order-%d", prefix, i+1)
		kills := sup.kills.Load()
		start := time.Now()
		p, err := d.place(ctx, keys[i], int64(1000*(i+1)))
		if err != nil {
			return false, err
		}
		took := time.Since(start).Round(time.Millisecond)
		if sup.kills.Load() > kills {
			if transactional {
				fmt.Fprintf(out, "  %s: killed at %q: the order charged and written, in the middleware's transaction, not yet committed\n",
					keys[i], pointHandled)
			} else {
				fmt.Fprintf(out, "  %s: killed at %q: the order charged, written and committed, its response not stored\n",
					keys[i], pointHandled)
			}
			fmt.Fprintf(out, "  %s: restarted the service; the client retried with the key, and once the lease ran out it executed again\n", keys[i])
		}
		fmt.Fprintf(out, "  %s: %d %s %s %s, after %d attempt(s) in %v\n", keys[i], p.status, p.order.ID, p.order.Status,
			p.order.ChargeID, p.attempts, took)
	}

	rows, err := readOrders(ctx, pool, schema)
	if err != nil {
		return false, err
	}
	charges := chargesByDescription(gw.Charges())
	fmt.Fprintln(out, "  the orders table:")
	ok = true
	for _, key := range keys {
		var ids []string
		for _, r := range rows[key] {
			ids = append(ids, r.id+" "+r.status+" "+r.chargeID)
		}
		n := len(charges["order "+key])
		note := ""
		if len(rows[key]) != 1 {
			note = "   <- placed twice"
			ok = false
		}
		if n != 1 {
			ok = false
		}
		fmt.Fprintf(out, "    %-15s %d row(s): %s; %d charge(s) at the gateway%s\n", key, len(rows[key]),
			strings.Join(ids, ", "), n, note)
	}
	switch {
	case ok:
		fmt.Fprintln(out, "  every order has one row and one charge: the killed execution left nothing behind")
	case transactional:
		fmt.Fprintln(out, "  BUG: an order placed or charged twice despite the transaction")
	default:
		fmt.Fprintln(out, "  the killed execution's committed order stayed, and the retry placed another: one charge (the derived key), two orders")
	}
	return ok, nil
}

// orderRow is a row of the orders table.
type orderRow struct {
	id, key, status, chargeKey, chargeID string
	amount                               int64
}

// readOrders returns the orders table of schema, by idempotency key, each
// key's rows in the order they were created.
func readOrders(ctx context.Context, pool *pgxpool.Pool, schema string) (map[string][]orderRow, error) {
	rows, err := pool.Query(ctx, `SELECT id, idempotency_key, amount, status, charge_key, coalesce(charge_id, '')
FROM `+pgx.Identifier{schema, "orders"}.Sanitize()+` ORDER BY created_at, id`)
	if err != nil {
		return nil, err
	}
	byKey := make(map[string][]orderRow)
	var r orderRow
	_, err = pgx.ForEachRow(rows, []any{&r.id, &r.key, &r.amount, &r.status, &r.chargeKey, &r.chargeID}, func() error {
		byKey[r.key] = append(byKey[r.key], r)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the orders: %w", err)
	}
	return byKey, nil
}

// chargesByDescription groups the gateway's charges by description, which
// the service makes "order " and the order's key.
func chargesByDescription(ledger []mock.LedgerCharge) map[string][]mock.LedgerCharge {
	m := make(map[string][]mock.LedgerCharge)
	for _, c := range ledger {
		if c.Description != nil {
			m[*c.Description] = append(m[*c.Description], c)
		}
	}
	return m
}
