package webhook_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"time"

	"github.com/payonce/payonce/idempotency"
	"github.com/payonce/payonce/webhook"
)

// A receiver for Stripe's webhooks: the sender delivers one event twice and
// a forger tries his own, and one order ships.
func ExampleReceiver() {
	const secret = "whsec_example"
	shipped := 0
	ship := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		d, _ := webhook.DeliveryFrom(r.Context())
		shipped++
		w.Header().Set("Content-Type", "application/json")
		fmt.Fprintf(w, `{"shipped_for":%q}`, d.ID)
	})

	v, err := webhook.NewVerifier(webhook.Stripe, []string{secret})
	if err != nil {
		panic(err)
	}
	rc, err := webhook.NewReceiver(v, idempotency.NewMemoryStore(), ship)
	if err != nil {
		panic(err)
	}

	deliver := func(payload, secret string) {
		sig, err := webhook.SignStripe([]byte(payload), time.Now(), secret)
		if err != nil {
			panic(err)
		}
		req := httptest.NewRequest(http.MethodPost, "/webhooks/stripe", strings.NewReader(payload))
		req.Header.Set("Stripe-Signature", sig)
		w := httptest.NewRecorder()
		rc.ServeHTTP(w, req)
		fmt.Println(w.Code, strings.TrimSpace(w.Body.String()), "replayed:", w.Header().Get("Idempotent-Replayed") == "true")
	}
	deliver(`{"id":"evt_1","object":"event","type":"payment_intent.succeeded"}`, "whsec_forged")
	deliver(`{"id":"evt_1","object":"event","type":"payment_intent.succeeded"}`, secret)
	deliver(`{"id":"evt_1","object":"event","type":"payment_intent.succeeded"}`, secret)
	fmt.Println("orders shipped:", shipped)
	// Output:
	// 400 {"error":{"code":"webhook_signature_mismatch","message":"webhook: no matching signature: none of the 1 v1 signatures matches the payload under any of the 1 secrets","type":"invalid_request_error"}} replayed: false
	// 200 {"shipped_for":"evt_1"} replayed: false
	// 200 {"shipped_for":"evt_1"} replayed: true
	// orders shipped: 1
}

// A sender signs a Standard Webhooks delivery with three headers.
func ExampleSignStandard() {
	payload := []byte(`{"type":"charge.succeeded","data":{"id":"ch_1"}}`)
	at := time.Unix(1800000000, 0)
	sig, err := webhook.SignStandard("msg_2KWPBgLlAfxdpx2AI54pPJ85f4W", at, payload, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		panic(err)
	}
	req := httptest.NewRequest(http.MethodPost, "/webhooks", strings.NewReader(string(payload)))
	req.Header.Set(webhook.HeaderWebhookID, "msg_2KWPBgLlAfxdpx2AI54pPJ85f4W")
	req.Header.Set(webhook.HeaderWebhookTimestamp, fmt.Sprint(at.Unix()))
	req.Header.Set(webhook.HeaderWebhookSignature, sig)
	fmt.Println(sig)

	v, err := webhook.NewVerifier(webhook.StandardWebhooks, []string{"whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"},
		webhook.WithClock(func() time.Time { return at.Add(time.Minute) }))
	if err != nil {
		panic(err)
	}
	d, err := v.Verify(req.Header, payload)
	fmt.Println(d.ID, err)
	// Output:
	// v1,d8TWgtGFTdEIJQt5ptsX/fyPF4VvAEj3QPFYRiX33yk=
	// msg_2KWPBgLlAfxdpx2AI54pPJ85f4W <nil>
}

// A Stripe signature, made with two secrets while the first is rolled.
func ExampleSignStripe() {
	sig, err := webhook.SignStripe([]byte(`{"id":"evt_1"}`), time.Unix(1800000000, 0), "whsec_new", "whsec_old")
	if err != nil {
		panic(err)
	}
	fmt.Println(sig)
	// Output:
	// t=1800000000,v1=bcd5b8f84c1762e896c564b29f53d2d26064aba6607250fa924f75df06e0f8a4,v1=a85586098ed25668b9475bf48d42d1f057a0a8a99fb0ec5cf4574c0cdd237ef5
}
