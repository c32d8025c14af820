package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// The crash points: the moments of a request at which `orders serve -crash
// POINT:N` stops the service for a kill, in the order a request reaches
// them.
const (
	// pointClaimed: the middleware has claimed the key, and the handler
	// has just been entered.
	pointClaimed = "claimed"
	// pointInserted: the order row is inserted, in a transaction not yet
	// committed.
	pointInserted = "inserted"
	// pointCharged: the gateway has charged the card and answered; the
	// order is not yet marked paid.
	pointCharged = "charged"
	// pointHandled: the handler has done all its writes and is about to
	// answer. In the control (-transactional=false) it has committed them
	// in its own transaction, and the middleware has not stored the
	// response yet. With -transactional=true nothing is committed yet: the
	// middleware commits the writes with the response once the handler
	// returns.
	pointHandled = "handled"
	// pointStored: the middleware has stored the response (with
	// -transactional=true, committed it with the handler's writes) and is
	// writing it to the connection; not a byte has left.
	pointStored = "stored"
)

// crashPoints lists the crash points in the order a request reaches them.
var crashPoints = []string{pointClaimed, pointInserted, pointCharged, pointHandled, pointStored}

// crashMarker begins the line the service prints when a request reaches
// the crash point it was told to stop at.
const crashMarker = "orders: crash point "

// crashSpec is a crash point and the request that stops there: the nth to
// reach it since the process started.
type crashSpec struct {
	point string
	n     int
}

// String returns the spec as -crash takes it, POINT:N, or "" for none.
func (c crashSpec) String() string {
	if c.point == "" {
		return ""
	}
	return c.point + ":" + strconv.Itoa(c.n)
}

// parseCrashSpec parses -crash: "" for none, or POINT:N.
func parseCrashSpec(s string) (crashSpec, error) {
	if s == "" {
		return crashSpec{}, nil
	}
	point, count, ok := strings.Cut(s, ":")
	n, err := strconv.Atoi(count)
	if !ok || err != nil || n < 1 {
		return crashSpec{}, fmt.Errorf("bad -crash %q: want POINT:N, N a positive count", s)
	}
	for _, p := range crashPoints {
		if p == point {
			return crashSpec{point: point, n: n}, nil
		}
	}
	return crashSpec{}, fmt.Errorf("bad -crash %q: the points are %s", s, strings.Join(crashPoints, ", "))
}

// crasher stops the process at a crash point, for a test to kill it there:
// when the nth request reaches the point, it prints a line that starts
// with crashMarker, names the point and the request's Idempotency-Key, and
// blocks that request for ever. The rest of the process runs on until the
// kill, as a real process does up to the moment it dies.
//
// A nil *crasher, or one with no point, does nothing.
type crasher struct {
	spec    crashSpec
	reached atomic.Int64
	mu      sync.Mutex // serialises writes to out
	out     io.Writer
}

// at is called by a request when it reaches point.
func (c *crasher) at(point, key string) {
	if c == nil || c.spec.point != point {
		return
	}
	if c.reached.Add(1) != int64(c.spec.n) {
		return
	}
	c.mu.Lock()
	fmt.Fprintf(c.out, "%s%s reached by %s\n", crashMarker, point, key)
	c.mu.Unlock()
	select {} // until the kill
}

// parseCrashLine parses a line the crasher printed. ok is false for any
// other line.
func parseCrashLine(line string) (point, key string, ok bool) {
	rest, ok := strings.CutPrefix(line, crashMarker)
	if !ok {
		return "", "", false
	}
	point, key, ok = strings.Cut(rest, " reached by ")
	return point, key, ok
}
