package payonce

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/google/uuid"
)

// The benchmarks compare Charges.Create with what a caller would write with
// net/http alone, sending the same request to the same in-process server.
// Report Charges.Create against both plain baselines: PlainPost has no
// timeout, which no production caller should ship, and PlainPostTimeout has
// one (http.Client.Timeout), as Charges.Create has its per-attempt timeout.
// Summarise with benchstat, for example:
//
//	go test -run '^$' -bench 'ChargesCreate|PlainPost' -count 10 . > bench.txt
//	benchstat -filter '.name:/^(PlainPost|PlainPostTimeout|ChargesCreate)$/' \
//		-col '.name@(PlainPost PlainPostTimeout ChargesCreate)' bench.txt
//
// The server shares the machine's cores with the client, so run the
// candidate and the baseline in the same session.

// benchGateway answers every POST with the same charge, as fast as it can,
// so that the benchmarks measure the client.
func benchGateway(b *testing.B) *httptest.Server {
	body := mustJSON(&Charge{ID: "ch_1", Object: "charge", Amount: 2000, Currency: "usd",
		Status: ChargeStatusSucceeded, Captured: true, PaymentMethod: "tok_visa", Description: "Invoice 456",
		Metadata: map[string]string{"order": "456"}, Created: 1700000000})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Request-Id", "req_1")
		w.Write(body)
	}))
	b.Cleanup(srv.Close)
	return srv
}

func benchClient(b *testing.B, srv *httptest.Server) *Client {
	c, err := NewClient(testAPIKey, WithBaseURL(srv.URL))
	if err != nil {
		b.Fatal(err)
	}
	return c
}

func createOnce(ctx context.Context, c *Client, params *ChargeParams) error {
	ch, err := c.Charges.Create(ctx, params)
	if err != nil {
		return err
	}
	if ch.ID != "ch_1" {
		return fmt.Errorf("charge id %q", ch.ID)
	}
	return nil
}

// BenchmarkChargesCreate is one Charges.Create, with a generated key, the
// retry machinery armed, the per-attempt timeout, and the response decoded.
func BenchmarkChargesCreate(b *testing.B) {
	c := benchClient(b, benchGateway(b))
	ctx := context.Background()
	params := chargeParams("")
	b.ReportAllocs()
	for b.Loop() {
		if err := createOnce(ctx, c, params); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkChargesCreateParallel is BenchmarkChargesCreate from GOMAXPROCS
// goroutines sharing one Client.
func BenchmarkChargesCreateParallel(b *testing.B) {
	c := benchClient(b, benchGateway(b))
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		params := chargeParams("")
		for pb.Next() {
			if err := createOnce(ctx, c, params); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// BenchmarkPlainPost is what a caller would write with net/http alone: the
// same JSON, headers and random key, to the same server, decoded the same
// way, with no timeout and no retries.
func BenchmarkPlainPost(b *testing.B) { benchPlain(b, plainHTTPClient(0)) }

// BenchmarkPlainPostTimeout adds the one thing production code cannot do
// without, a timeout (http.Client.Timeout, covering the body as the
// client's per-attempt timeout does). It is the fair baseline.
func BenchmarkPlainPostTimeout(b *testing.B) { benchPlain(b, plainHTTPClient(DefaultAttemptTimeout)) }

// BenchmarkPlainPostParallel is BenchmarkPlainPost from GOMAXPROCS
// goroutines sharing one http.Client.
func BenchmarkPlainPostParallel(b *testing.B) { benchPlainParallel(b, plainHTTPClient(0)) }

// BenchmarkPlainPostTimeoutParallel is BenchmarkPlainPostTimeout from
// GOMAXPROCS goroutines sharing one http.Client.
func BenchmarkPlainPostTimeoutParallel(b *testing.B) {
	benchPlainParallel(b, plainHTTPClient(DefaultAttemptTimeout))
}

// plainHTTPClient is a default transport keeping as many idle connections
// per host as the Client's default transport, so that the parallel
// benchmarks reuse connections alike.
func plainHTTPClient(timeout time.Duration) *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 32
	return &http.Client{Transport: tr, Timeout: timeout}
}

func benchPlain(b *testing.B, hc *http.Client) {
	srv := benchGateway(b)
	ctx := context.Background()
	params := chargeParams("")
	b.ReportAllocs()
	for b.Loop() {
		if err := plainPost(ctx, hc, srv.URL, params); err != nil {
			b.Fatal(err)
		}
	}
}

func benchPlainParallel(b *testing.B, hc *http.Client) {
	srv := benchGateway(b)
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		params := chargeParams("")
		for pb.Next() {
			if err := plainPost(ctx, hc, srv.URL, params); err != nil {
				b.Error(err)
				return
			}
		}
	})
}

// plainPost sends the request Charges.Create sends (the same headers, so
// that the server does the same work) and decodes the answer.
func plainPost(ctx context.Context, hc *http.Client, baseURL string, params *ChargeParams) error {
	body, err := json.Marshal(params)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, baseURL+"/v1/charges", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+testAPIKey)
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "payonce-go/"+Version)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", uuid.NewString())
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	var ch Charge
	err = json.NewDecoder(resp.Body).Decode(&ch)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch {
	case err != nil:
		return err
	case resp.StatusCode != http.StatusOK:
		return fmt.Errorf("status %d", resp.StatusCode)
	case ch.ID != "ch_1":
		return errors.New("wrong charge")
	}
	return nil
}

// BenchmarkOverhead measures Charges.Create against both plain baselines
// in one benchmark, alternating them in short rounds on one server, so that
// a neighbour's load on a shared machine slows all three alike. It reports
// the ratios, of the wall time and of the process's CPU time (server
// included, which does the same work for all three), per call:
//
//	go test -run '^$' -bench Overhead -count 10 . | benchstat -
//
// Its ns/op is that of one round, one call of each, and means little.
func BenchmarkOverhead(b *testing.B) {
	srv := benchGateway(b)
	c := benchClient(b, srv)
	plain, plainTimeout := plainHTTPClient(0), plainHTTPClient(DefaultAttemptTimeout)
	ctx := context.Background()
	params := chargeParams("")
	calls := [...]func() error{
		func() error { return createOnce(ctx, c, params) },
		func() error { return plainPost(ctx, plain, srv.URL, params) },
		func() error { return plainPost(ctx, plainTimeout, srv.URL, params) },
	}
	const round = 10 // calls of one kind in a row, timed together
	var wall, cpu [len(calls)]time.Duration
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		for k := range calls {
			k := (k + i) % len(calls) // each goes first in turn
			w0, c0 := time.Now(), processCPU()
			for range round {
				if err := calls[k](); err != nil {
					b.Fatal(err)
				}
			}
			wall[k] += time.Since(w0)
			cpu[k] += processCPU() - c0
		}
	}
	ratio := func(a, b time.Duration) float64 { return float64(a) / float64(max(b, 1)) }
	b.ReportMetric(ratio(wall[0], wall[1]), "client/plain")
	b.ReportMetric(ratio(wall[0], wall[2]), "client/plain-timeout")
	if cpu[1] > 0 {
		b.ReportMetric(ratio(cpu[0], cpu[1]), "client/plain-cpu")
		b.ReportMetric(ratio(cpu[0], cpu[2]), "client/plain-timeout-cpu")
	}
}
