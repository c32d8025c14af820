package idempotency_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/payonce/payonce/idempotency"
)

// chargeJSON is the size and shape of a real charge response.
const chargeJSON = `{"id":"ch_3NfK2x8vYb2QmT","object":"charge","amount":2000,"amount_captured":2000,` +
	`"amount_refunded":0,"currency":"usd","status":"succeeded","captured":true,"refunded":false,` +
	`"payment_method":"tok_visa","description":"Invoice 456","metadata":{"order":"456"},"created":1795435200}`

const chargeRequest = `{"amount":2000,"currency":"usd","payment_method":"tok_visa","description":"Invoice 456","metadata":{"order":"456"}}`

var chargeHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.Write([]byte(chargeJSON))
})

// discard is a ResponseWriter that keeps nothing, so the benchmark measures
// the middleware rather than a recorder.
type discard struct{ h http.Header }

func (d *discard) Header() http.Header         { return d.h }
func (d *discard) Write(p []byte) (int, error) { return len(p), nil }
func (d *discard) WriteHeader(int)             {}

func serve(b *testing.B, h http.Handler, key string) {
	r := httptest.NewRequest(http.MethodPost, "/v1/charges", strings.NewReader(chargeRequest))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("Idempotency-Key", key)
	h.ServeHTTP(&discard{h: http.Header{}}, r)
}

// BenchmarkMiddleware measures requests per second through the middleware
// over the in-memory store, against the bare handler as the baseline.
func BenchmarkMiddleware(b *testing.B) {
	// Unbounded, so that a long run measures new keys rather than 503s.
	mw, err := idempotency.New(idempotency.NewMemoryStore(idempotency.WithMemoryMaxBytes(0)))
	if err != nil {
		b.Fatal(err)
	}
	wrapped := mw.Wrap(chargeHandler)
	var seq atomic.Int64

	run := func(b *testing.B, h http.Handler, key func() string) {
		b.ReportAllocs()
		start := time.Now()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				serve(b, h, key())
			}
		})
		b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "req/s")
	}
	newKey := func() string { return "key-" + strconv.FormatInt(seq.Add(1), 10) }

	b.Run("baseline", func(b *testing.B) { run(b, chargeHandler, newKey) })
	b.Run("new_keys", func(b *testing.B) { run(b, wrapped, newKey) })
	serve(b, wrapped, "replayed-key")
	b.Run("replays", func(b *testing.B) { run(b, wrapped, func() string { return "replayed-key" }) })
}

// chargeFingerprint has the length and shape of a real Fingerprint.
var chargeFingerprint = func() string {
	sum := sha256.Sum256([]byte(chargeRequest))
	return hex.EncodeToString(sum[:])
}()

// finish stores a finished record for key, as the middleware would: the
// fingerprint is a string of its own, computed for that request.
func finish(store *idempotency.MemoryStore, key string, now time.Time) {
	c := idempotency.Claim{Key: key, Fingerprint: strings.Clone(chargeFingerprint), Token: key, Now: now, Lease: time.Minute, TTL: 24 * time.Hour}
	ctx := context.Background()
	store.Claim(ctx, c)
	store.Finish(ctx, c, &idempotency.Response{
		StatusCode: http.StatusOK,
		Header:     http.Header{"Content-Type": {"application/json"}},
		Body:       []byte(chargeJSON),
	})
}

// lookupOrder returns copies of keys in the order the lookup benchmarks
// visit them: a stride prime to n, which is cache-unfriendly. The copies
// are laid out one after another, so reading them in turn is cheap, as a
// key just parsed from a request is; what is measured is the table.
func lookupOrder(keys []string) []string {
	n := len(keys)
	var all strings.Builder
	for j := range n {
		all.WriteString(keys[(j+1)*7919%n])
	}
	s := all.String()
	order := make([]string, n)
	for j := range order {
		k := len(keys[(j+1)*7919%n])
		order[j], s = s[:k], s[k:]
	}
	return order
}

// BenchmarkMemoryStoreLookup measures a claim that finds a finished record,
// with the store holding from a thousand to a million keys.
//
// access=all visits every key in a cache-hostile order: at a million keys
// each lookup misses the caches, as it would in any hash table that size.
// access=recent visits only the 1,000 keys stored last, as retries and
// double clicks do (they come seconds after the first attempt): its cost
// should not grow with the keys the store holds.
//
// impl=map is the baseline for both: a bare map[string]*T with the same keys
// in the same order, whose record's fingerprint is compared, which is the
// least any store must do. What it pays is what the hardware charges; the
// rest of impl=store's cost is the store's own.
func BenchmarkMemoryStoreLookup(b *testing.B) {
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	type record struct {
		fingerprint string
		resp        *idempotency.Response
	}
	for _, n := range []int{1_000, 10_000, 100_000, 1_000_000} {
		keys := make([]string, n)
		for i := range keys {
			keys[i] = fmt.Sprintf("key-%d", i)
		}
		orders := []struct {
			name  string
			order []string
		}{
			{"all", lookupOrder(keys)},
			{"recent", lookupOrder(keys[n-1_000:])},
		}
		fp := strings.Clone(chargeFingerprint)

		store := idempotency.NewMemoryStore(idempotency.WithMemoryMaxBytes(0)) // a million keys outgrow the default bound
		for _, k := range keys {
			finish(store, k, now)
		}
		for _, o := range orders {
			b.Run(fmt.Sprintf("keys=%d/access=%s/impl=store", n, o.name), func(b *testing.B) {
				b.ReportAllocs()
				ctx := context.Background()
				i := 0
				for b.Loop() {
					res, _ := store.Claim(ctx, idempotency.Claim{Key: o.order[i], Fingerprint: fp, Token: "t", Now: now, Lease: time.Minute})
					if res.State != idempotency.Finished {
						b.Fatalf("state %v", res.State)
					}
					if i++; i == len(o.order) {
						i = 0
					}
				}
			})
		}
		store = nil

		m := make(map[string]*record)
		resp := &idempotency.Response{StatusCode: http.StatusOK}
		for _, k := range keys {
			m[k] = &record{strings.Clone(chargeFingerprint), resp}
		}
		for _, o := range orders {
			b.Run(fmt.Sprintf("keys=%d/access=%s/impl=map", n, o.name), func(b *testing.B) {
				b.ReportAllocs()
				i := 0
				for b.Loop() {
					r := m[o.order[i]]
					if r == nil || r.fingerprint != fp || r.resp == nil {
						b.Fatal("missing")
					}
					if i++; i == len(o.order) {
						i = 0
					}
				}
			})
		}
	}
}

// BenchmarkMemoryStoreBytesPerKey reports the heap held per finished key at
// 100,000 keys, with a realistic charge response of len(chargeJSON) bytes.
// Run it with -benchtime=1x.
func BenchmarkMemoryStoreBytesPerKey(b *testing.B) {
	const n = 100_000
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprintf("8e03978e-40d5-43e8-bc93-%012d", i)
	}
	for b.Loop() {
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		store := idempotency.NewMemoryStore(idempotency.WithMemoryMaxBytes(0)) // a million keys outgrow the default bound
		for _, k := range keys {
			finish(store, k, now)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "bytes/key")
		b.ReportMetric(float64(len(chargeJSON)), "body-bytes/key")
		runtime.KeepAlive(store)
	}
}
