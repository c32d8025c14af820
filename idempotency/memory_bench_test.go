package idempotency_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/payonce/payonce/idempotency"
)

// fullChargeJSON is a charge as an API answers it, with its billing
// details and outcome: about 600 bytes, as many stored responses are.
const fullChargeJSON = `{"id":"ch_3NfK2x8vYb2QmT0a1b2c3d4e","object":"charge","amount":2000,` +
	`"amount_captured":2000,"amount_refunded":0,"balance_transaction":"txn_3NfK2x8vYb2QmT0a1b2c3d4e",` +
	`"billing_details":{"email":"jenny@example.com","name":"Jenny Rosen","postal_code":"94103"},` +
	`"captured":true,"created":1795435200,"currency":"usd","customer":"cus_PqR5sT6uV7wX8y",` +
	`"description":"Invoice 456","metadata":{"order":"456"},` +
	`"outcome":{"network_status":"approved_by_network","risk_level":"normal","seller_message":"Paid.","type":"authorized"},` +
	`"paid":true,"payment_method":"pm_1NfK2x8vYb2QmT0a","refunded":false,"status":"succeeded"}`

// realisticClaim is a claim as the middleware makes it: a UUID key, a
// fingerprint of 64 hex digits in a string of its own, and a token from
// rand.Text.
func realisticClaim(i int, now time.Time) idempotency.Claim {
	return idempotency.Claim{
		Key:         fmt.Sprintf("8e03978e-40d5-43e8-bc93-%012d", i),
		Fingerprint: strings.Clone(chargeFingerprint),
		Token:       rand.Text(),
		Now:         now,
		Lease:       idempotency.DefaultLease,
		TTL:         idempotency.DefaultTTL,
	}
}

// A recordShape is what a benchmark stores for every key.
type recordShape struct {
	name string
	resp *idempotency.Response // nil: the claim stays in flight
}

var recordShapes = []recordShape{
	{"charge600", &idempotency.Response{StatusCode: http.StatusOK,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(fullChargeJSON)}},
	{"charge276", &idempotency.Response{StatusCode: http.StatusOK,
		Header: http.Header{"Content-Type": {"application/json"}}, Body: []byte(chargeJSON)},
	},
	{"empty", &idempotency.Response{StatusCode: http.StatusNoContent}},
	{"headers5", &idempotency.Response{StatusCode: http.StatusCreated, Header: http.Header{
		"Content-Type":     {"application/json"},
		"Content-Language": {"en"},
		"Location":         {"/v1/charges/ch_3NfK2x8vYb2QmT0a1b2c3d4e"},
		"Request-Id":       {"req_8e03978e40d543e8"},
		"X-Account":        {"acct_1NfK2x8vYb2QmT0a"},
	}, Body: bytes.Repeat([]byte("x"), 1000)}},
	{"inflight", nil},
}

// store puts a record of this shape for c in s, and reports whether s had
// room for it.
func (r recordShape) store(b *testing.B, s *idempotency.MemoryStore, c idempotency.Claim) bool {
	ctx := context.Background()
	res, err := s.Claim(ctx, c)
	if errors.Is(err, idempotency.ErrStoreFull) {
		return false
	}
	if err != nil || res.State != idempotency.Claimed {
		b.Fatalf("Claim: %v, %v", res.State, err)
	}
	if r.resp != nil {
		if err := s.Finish(ctx, c, r.resp); err != nil {
			b.Fatal(err)
		}
	}
	return true
}

// heapInUse is the bytes in the heap's spans in use, after a collection:
// the live heap with what the allocator's size classes waste.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// procStatus reads a figure in kB from /proc/self/status, such as VmRSS,
// in bytes. It reports 0 where there is no such file.
func procStatus(field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), field+":"); ok {
			kB, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 64)
			return kB * 1024
		}
	}
	return 0
}

// BenchmarkMemoryStoreCost checks the store's accounting against the Go
// heap: for records of several shapes, it reports the heap in use per key
// (heap-bytes/key, from runtime.MemStats) next to what the store charges
// per key (accounted-bytes/key), which should be about the same and not
// less. Time stands still, as in a burst of new keys, so every finished
// record still has its claim's entry in the expiry heap. Run it with
// -benchtime=1x.
func BenchmarkMemoryStoreCost(b *testing.B) {
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	for _, n := range []int{10_000, 100_000, 300_000} {
		for _, shape := range recordShapes {
			b.Run(fmt.Sprintf("keys=%d/record=%s", n, shape.name), func(b *testing.B) {
				for b.Loop() {
					before := heapInUse()
					s := idempotency.NewMemoryStore(idempotency.WithMemoryMaxRecords(0), idempotency.WithMemoryMaxBytes(0))
					for i := range n {
						shape.store(b, s, realisticClaim(i, now))
					}
					after := heapInUse()
					b.ReportMetric(float64(after-before)/float64(n), "heap-bytes/key")
					b.ReportMetric(float64(s.Stats().Bytes)/float64(n), "accounted-bytes/key")
					runtime.KeepAlive(s)
				}
			})
		}
	}
}

// BenchmarkMemoryStoreFull fills a store with the default bounds with
// charges of 600 bytes until it refuses a claim, and reports how many
// records fit, what each cost (heap in use and as accounted), and the
// process's RSS once full: after a collection that returns the garbage of
// filling it to the OS (rss-MiB, against the bound's 256), and at its
// highest while filling (peak-rss-MiB), which includes the garbage the
// collector had not yet collected. Run it with -benchtime=1x.
func BenchmarkMemoryStoreFull(b *testing.B) {
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	shape := recordShapes[0]
	for b.Loop() {
		debug.FreeOSMemory()
		// Writing 5 resets VmHWM to the current RSS, on Linux.
		os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
		rssBefore := procStatus("VmRSS")
		heapBefore := heapInUse()
		s := idempotency.NewMemoryStore()
		n := 0
		for shape.store(b, s, realisticClaim(n, now)) {
			n++
		}
		heap := heapInUse() - heapBefore
		debug.FreeOSMemory()
		st := s.Stats()
		b.ReportMetric(float64(n), "records")
		b.ReportMetric(float64(heap)/float64(n), "heap-bytes/key")
		b.ReportMetric(float64(st.Bytes)/float64(n), "accounted-bytes/key")
		b.ReportMetric(float64(heap)/(1<<20), "heap-MiB")
		b.ReportMetric((procStatus("VmRSS")-rssBefore)/(1<<20), "rss-MiB")
		b.ReportMetric(procStatus("VmHWM")/(1<<20), "peak-rss-MiB")
		runtime.KeepAlive(s)
	}
}

// BenchmarkMemoryStoreRefused measures what a full store costs a claim of a
// new key that it refuses, with nothing expired to evict: the flood of new
// keys the bounds are there for. Its cost should be that of a lookup, plus
// a look at every shard.
func BenchmarkMemoryStoreRefused(b *testing.B) {
	now := time.Date(2026, 11, 23, 0, 0, 0, 0, time.UTC)
	const n = 10_000
	s := idempotency.NewMemoryStore(idempotency.WithMemoryMaxRecords(n))
	for i := range n {
		recordShapes[0].store(b, s, realisticClaim(i, now))
	}
	c := realisticClaim(n, now)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		for pb.Next() {
			if _, err := s.Claim(ctx, c); !errors.Is(err, idempotency.ErrStoreFull) {
				b.Fatalf("Claim: %v", err)
			}
		}
	})
}
