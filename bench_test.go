package payonce

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/google/uuid"
)

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

// BenchmarkChargesCreate is one Charges.Create, with a generated key, the
// retry machinery armed, and the response decoded.
func BenchmarkChargesCreate(b *testing.B) {
	srv := benchGateway(b)
	c, err := NewClient(testAPIKey, WithBaseURL(srv.URL))
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	params := chargeParams("")
	b.ReportAllocs()
	for b.Loop() {
		ch, err := c.Charges.Create(ctx, params)
		if err != nil || ch.ID != "ch_1" {
			b.Fatal(ch, err)
		}
	}
}

// BenchmarkPlainPost is what a caller would write with net/http alone: the
// same JSON, headers and random key, to the same server, decoded the same way,
// with no timeout and no retries.
func BenchmarkPlainPost(b *testing.B) {
	plainPost(b, &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone()})
}

// BenchmarkPlainPostTimeout adds the one thing production code cannot do
// without, a timeout (http.Client.Timeout), to separate the cost of a
// deadline from the cost of the client.
func BenchmarkPlainPostTimeout(b *testing.B) {
	plainPost(b, &http.Client{Transport: http.DefaultTransport.(*http.Transport).Clone(), Timeout: DefaultAttemptTimeout})
}

func plainPost(b *testing.B, hc *http.Client) {
	srv := benchGateway(b)
	ctx := context.Background()
	params := chargeParams("")
	b.ReportAllocs()
	for b.Loop() {
		body, err := json.Marshal(params)
		if err != nil {
			b.Fatal(err)
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, srv.URL+"/v1/charges", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		req.Header.Set("Authorization", "Bearer "+testAPIKey)
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", uuid.NewString())
		resp, err := hc.Do(req)
		if err != nil {
			b.Fatal(err)
		}
		var ch Charge
		err = json.NewDecoder(resp.Body).Decode(&ch)
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 || ch.ID != "ch_1" {
			b.Fatal(resp.StatusCode, err)
		}
	}
}
