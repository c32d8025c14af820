package mocktest

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce"
	"github.com/payonce/payonce/mock"
)

func TestRenewNeverChargesTwice(t *testing.T) {
	gateway := mock.NewServer()
	defer gateway.Close()

	// The worst network: the first answer is lost after the charge commits.
	gateway.InjectFault(mock.Fault{Kind: mock.DropAfter, Method: http.MethodPost, Path: "/v1/charges"})

	client, err := payonce.NewClient("sk_test_billing",
		payonce.WithBaseURL(gateway.URL),
		payonce.WithBackoff(time.Millisecond, 10*time.Millisecond))
	require.NoError(t, err)

	order := Order{ID: "ord_42", Period: "2026", Amount: 12000, PaymentMethod: "tok_visa"}
	ch, err := Renew(context.Background(), client, order)
	require.NoError(t, err)
	require.True(t, ch.LastResponse.Replayed, "the retry got the stored charge")

	// The job runs again, as after a crash: still one charge.
	_, err = Renew(context.Background(), client, order)
	require.NoError(t, err)

	require.Len(t, gateway.Charges(), 1)
	require.Empty(t, gateway.SuspectedDuplicates(time.Hour), "no double charge")
}
