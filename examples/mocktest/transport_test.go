package mocktest

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/jarcoal/httpmock"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce"
	"github.com/payonce/payonce/mock"
)

// The gateway as an http.Handler: no socket, no port.
func TestGatewayAsHandler(t *testing.T) {
	gw, err := mock.New()
	require.NoError(t, err)

	body := `{"amount":2000,"currency":"usd","payment_method":"tok_visa"}`
	for range 2 {
		req := httptest.NewRequest(http.MethodPost, "/v1/charges", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer sk_test_handler")
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", "order_42")
		rec := httptest.NewRecorder()
		gw.ServeHTTP(rec, req)
		require.Equal(t, http.StatusOK, rec.Code)
	}
	require.Len(t, gw.Charges(), 1, "the second request was a replay")
}

// The gateway behind httpmock, for suites that already mock their HTTP
// transport with it.
func TestGatewayWithHTTPMock(t *testing.T) {
	gw, err := mock.New()
	require.NoError(t, err)
	transport := httpmock.NewMockTransport()
	transport.RegisterResponder(http.MethodPost, `=~^https://gateway\.test/`, gw.Responder())
	gw.InjectFault(mock.Fault{Kind: mock.DropAfter, Method: http.MethodPost, Path: "/v1/charges"})

	client, err := payonce.NewClient("sk_test_httpmock",
		payonce.WithBaseURL("https://gateway.test"),
		payonce.WithHTTPClient(&http.Client{Transport: transport}))
	require.NoError(t, err)

	order := Order{ID: "ord_7", Period: "2026", Amount: 500, PaymentMethod: "tok_visa"}
	ch, err := Renew(context.Background(), client, order)
	require.NoError(t, err)
	require.True(t, ch.LastResponse.Replayed)
	require.Len(t, gw.Charges(), 1)
}
