package stripecompat_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/stripe/stripe-go/v85"

	"github.com/payonce/payonce"
)

// echoingGateway is a raw TCP server that answers every request with a 503
// whose Request-Id and error message echo the request's Authorization
// header, as a hostile or broken gateway might.
func echoingGateway(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				req, err := http.ReadRequest(bufio.NewReader(conn))
				if err != nil {
					return
				}
				io.Copy(io.Discard, req.Body)
				auth := req.Header.Get("Authorization")
				body := `{"error":{"type":"api_error","message":"bad key ` + auth + `"}}`
				fmt.Fprintf(conn, "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\n"+
					"Request-Id: %s\r\nContent-Length: %d\r\n\r\n%s", auth, len(body), body)
			}()
		}
	}()
	return "http://" + ln.Addr().String()
}

// TestSDKKeyIsScrubbedThroughStripeGo: payonce's engine keeps stripe-go's
// API key, which it only sees in the Authorization header, out of the
// unknown outcome that stripe-go hands back, and out of the retry log.
func TestSDKKeyIsScrubbedThroughStripeGo(t *testing.T) {
	var log strings.Builder
	var mu sync.Mutex
	hc := payonceHC(t, payonce.WithLogger(slogTo(&mu, &log)))
	sc := stripe.NewClient(apiKey, stripe.WithBackends(stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		HTTPClient:        hc,
		MaxNetworkRetries: stripe.Int64(0),
		URL:               stripe.String(echoingGateway(t)),
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
		EnableTelemetry:   stripe.Bool(false),
	})))
	_, err := sc.V1Charges.Create(context.Background(), params(1001, ""))
	var unknown *payonce.OutcomeUnknownError
	require.True(t, errors.As(err, &unknown), "%T: %v", err, err)
	assert.Equal(t, maxRetries+1, unknown.Attempts)
	var pe *payonce.Error
	require.True(t, errors.As(err, &pe), "the gateway's error is inside")
	mu.Lock()
	defer mu.Unlock()
	for what, s := range map[string]string{
		"err": err.Error(), "%+v": fmt.Sprintf("%+v", err), "message": pe.Message,
		"request id": pe.RequestID, "log": log.String(),
	} {
		for i := 0; i+8 <= len(apiKey); i++ { // no 8 bytes of the key in a row, as payonce promises
			assert.NotContains(t, s, apiKey[i:i+8], what)
		}
	}
	assert.Contains(t, pe.Message, "bad key Bearer [redacted]")
	assert.Contains(t, log.String(), "payonce: retrying request", "the log was written, scrubbed")
}

// slogTo is a JSON logger writing into b under mu.
func slogTo(mu *sync.Mutex, b *strings.Builder) *slog.Logger {
	return slog.New(slog.NewJSONHandler(lockedWriter{mu, b}, nil))
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *strings.Builder
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}
