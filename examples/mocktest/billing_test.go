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
	ctx := context.Background()

	order := Order{ID: "ord_42", Period: "2026", Amount: 12000, PaymentMethod: "tok_visa"}
	ch, err := Renew(ctx, client, order)
	require.NoError(t, err)
	require.True(t, ch.LastResponse.Replayed, "the retry got the stored charge")

	// The job runs again, as after a crash: still one charge.
	_, err = Renew(ctx, client, order)
	require.NoError(t, err)
	require.Empty(t, gateway.SuspectedDuplicates(time.Hour), "no double charge")
	require.Len(t, gateway.Charges(), 1)

	// The check can fail: the same renewal charged again under a new key,
	// as code that makes a key per call would do, is reported.
	again, err := client.Charges.Create(ctx, &payonce.ChargeParams{Amount: order.Amount,
		Currency: "usd", PaymentMethod: order.PaymentMethod, IdempotencyKey: payonce.NewKey()})
	require.NoError(t, err)
	dups := gateway.SuspectedDuplicates(time.Hour)
	require.Len(t, dups, 1, "the double charge is seen")
	require.Equal(t, []string{ch.ID, again.ID}, []string{dups[0].First.ID, dups[0].Second.ID})
}
