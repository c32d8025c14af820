package mock_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"testing"

	"github.com/payonce/payonce/mock"
)

// The benchmarks charge through the whole gateway (auth, idempotency with
// the in-memory store, ledger, history), socket-free and over loopback
// HTTP, and through a baseline handler that only decodes the JSON and
// writes a fixed charge, to show what the gateway costs on top of the
// bare minimum:
//
//	go test ./mock -run '^$' -bench . -benchtime 3s
//
// Compare ns/op and charges/s of Mock against Baseline in each pair.

var benchBody = []byte(`{"amount":2000,"currency":"usd","payment_method":"tok_visa","description":"Invoice 456","metadata":{"order":"456"}}`)

// baseline is the least a fake gateway can do: decode, answer a charge.
func baseline() http.Handler {
	fixed, _ := json.Marshal(mock.Charge{ID: "ch_baseline", Object: "charge", Amount: 2000, AmountCaptured: 2000,
		Currency: "usd", Status: "succeeded", Captured: true, PaymentMethod: "tok_visa", Metadata: map[string]string{}})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var p struct {
			Amount        int64             `json:"amount"`
			Currency      string            `json:"currency"`
			PaymentMethod string            `json:"payment_method"`
			Description   string            `json:"description"`
			Metadata      map[string]string `json:"metadata"`
		}
		if err := json.NewDecoder(r.Body).Decode(&p); err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(fixed)
	})
}

func newGateway(b *testing.B) *mock.Gateway {
	g, err := mock.New()
	if err != nil {
		b.Fatal(err)
	}
	return g
}

// sink is a reusable ResponseWriter that keeps only the status.
type sink struct {
	h    http.Header
	code int
}

func (s *sink) Header() http.Header         { return s.h }
func (s *sink) WriteHeader(code int)        { s.code = code }
func (s *sink) Write(p []byte) (int, error) { return len(p), nil }

var chargesURL = &url.URL{Path: "/v1/charges"}

// serveDirect calls h for each iteration, in parallel, with keys from
// next; it fails the benchmark on any status but 200.
func serveDirect(b *testing.B, h http.Handler, next func(worker int64) func() string) {
	var workers atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		key := next(workers.Add(1))
		s := &sink{h: make(http.Header)}
		for pb.Next() {
			r := &http.Request{
				Method: "POST", URL: chargesURL, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
				Header: http.Header{
					"Authorization":   {"Bearer sk_test_bench"},
					"Content-Type":    {"application/json"},
					"Idempotency-Key": {key()},
				},
				Body: io.NopCloser(bytes.NewReader(benchBody)), ContentLength: int64(len(benchBody)),
				Host: "gw.test", RemoteAddr: "127.0.0.1:1", RequestURI: "/v1/charges",
			}
			r = r.WithContext(b.Context())
			clear(s.h)
			s.code = 0
			h.ServeHTTP(s, r)
			if s.code != http.StatusOK && s.code != 0 {
				b.Errorf("status %d", s.code)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "charges/s")
}

// newKeys gives every request a key of its own.
func newKeys(worker int64) func() string {
	n := 0
	prefix := "w" + strconv.FormatInt(worker, 10) + "-"
	return func() string {
		n++
		return prefix + strconv.Itoa(n)
	}
}

// sameKey gives every request of a worker one key: all but the first are
// replays.
func sameKey(worker int64) func() string {
	k := "replay-" + strconv.FormatInt(worker, 10)
	return func() string { return k }
}

func BenchmarkHandler(b *testing.B) {
	b.Run("Mock/new-keys", func(b *testing.B) { serveDirect(b, newGateway(b), newKeys) })
	b.Run("Mock/replays", func(b *testing.B) { serveDirect(b, newGateway(b), sameKey) })
	b.Run("Baseline", func(b *testing.B) { serveDirect(b, baseline(), newKeys) })
}

// serveHTTP sends the charges over loopback HTTP from parallel keep-alive
// clients.
func serveHTTP(b *testing.B, h http.Handler, next func(worker int64) func() string) {
	srv := httptest.NewServer(h)
	defer srv.Close()
	const clientsPerProc = 8
	b.SetParallelism(clientsPerProc)
	tr := &http.Transport{MaxIdleConnsPerHost: 1024, MaxConnsPerHost: 0}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	var workers atomic.Int64
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		key := next(workers.Add(1))
		for pb.Next() {
			r, _ := http.NewRequest("POST", srv.URL+"/v1/charges", bytes.NewReader(benchBody))
			r.Header.Set("Authorization", "Bearer sk_test_bench")
			r.Header.Set("Content-Type", "application/json")
			r.Header.Set("Idempotency-Key", key())
			res, err := c.Do(r)
			if err != nil {
				b.Error(err)
				return
			}
			io.Copy(io.Discard, res.Body)
			res.Body.Close()
			if res.StatusCode != http.StatusOK {
				b.Errorf("status %d", res.StatusCode)
				return
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "charges/s")
}

func BenchmarkHTTP(b *testing.B) {
	b.Run("Mock/new-keys", func(b *testing.B) { serveHTTP(b, newGateway(b), newKeys) })
	b.Run("Mock/replays", func(b *testing.B) { serveHTTP(b, newGateway(b), sameKey) })
	b.Run("Baseline", func(b *testing.B) { serveHTTP(b, baseline(), newKeys) })
}

// The ledger and history must not slow down as they fill.
func BenchmarkHandlerAfterManyCharges(b *testing.B) {
	for _, n := range []int{0, 100_000} {
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			g := newGateway(b)
			s := &sink{h: make(http.Header)}
			for i := range n {
				r := httptest.NewRequest("POST", "/v1/charges", bytes.NewReader(benchBody))
				r.Header.Set("Authorization", "Bearer sk_test_bench")
				r.Header.Set("Content-Type", "application/json")
				r.Header.Set("Idempotency-Key", "pre-"+strconv.Itoa(i))
				g.ServeHTTP(s, r)
			}
			serveDirect(b, g, newKeys)
		})
	}
}

var stripeBenchBody = []byte("amount=2000&currency=usd&source=tok_visa")

// BenchmarkStripeDialect serves mock/stripebench's loads through the
// handler, socket-free: POST /v1/charges with a form body, with new keys
// and with replays. log=file logs every request as payonce-mock does, to a
// file, since that is where mock/stripebench sends payonce-mock's log.
// cpu-ns/op is the process's CPU time per request, garbage collection
// included, which depends less than ns/op on what else runs on the machine.
// Profile it with -cpuprofile; compare with benchstat:
//
//	go test ./mock -run '^$' -bench StripeDialect -count 6 -cpuprofile cpu.out
func BenchmarkStripeDialect(b *testing.B) {
	for _, load := range []struct {
		name string
		next func(worker int64) func() string
	}{{"new_keys", newKeys}, {"replays", sameKey}} {
		for _, logged := range []bool{false, true} {
			name := load.name + "/log=none"
			if logged {
				name = load.name + "/log=file"
			}
			b.Run(name, func(b *testing.B) {
				var opts []mock.Option
				if logged {
					f, err := os.Create(filepath.Join(b.TempDir(), "payonce-mock.log"))
					if err != nil {
						b.Fatal(err)
					}
					defer f.Close()
					opts = append(opts, mock.WithLogger(slog.New(slog.NewTextHandler(f, nil))))
				}
				g, err := mock.New(opts...)
				if err != nil {
					b.Fatal(err)
				}
				serveStripe(b, g, load.next)
			})
		}
	}
}

// serveStripe is serveDirect with mock/stripebench's Stripe request.
func serveStripe(b *testing.B, h http.Handler, next func(worker int64) func() string) {
	var workers atomic.Int64
	b.ReportAllocs()
	cpu0 := processCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		key := next(workers.Add(1))
		s := &sink{h: make(http.Header)}
		for pb.Next() {
			r := &http.Request{
				Method: "POST", URL: chargesURL, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
				Header: http.Header{
					"Authorization":   {"Bearer sk_test_stripebench"},
					"Content-Type":    {"application/x-www-form-urlencoded"},
					"Idempotency-Key": {key()},
				},
				Body:          io.NopCloser(bytes.NewReader(stripeBenchBody)),
				ContentLength: int64(len(stripeBenchBody)),
				Host:          "gw.test", RemoteAddr: "127.0.0.1:1", RequestURI: "/v1/charges",
			}
			r = r.WithContext(b.Context())
			clear(s.h)
			s.code = 0
			h.ServeHTTP(s, r)
			if s.code != http.StatusOK {
				b.Errorf("status %d", s.code)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
	if cpu0 >= 0 {
		b.ReportMetric(float64(processCPU(b)-cpu0)/float64(b.N), "cpu-ns/op")
	}
}
