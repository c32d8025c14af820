package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/stripe/stripe-go/v85"

	"github.com/payonce/payonce/mock"
	"github.com/payonce/payonce/webhook"
)

// apiKey is the key stripe-go charges with; the mock takes any.
const apiKey = "sk_test_example_webhook"

// holdBack is how long a delay fault holds an event's delivery, on the
// mock's clock: until the end of the run, when the clock is moved past it,
// so that every later event overtakes it.
const holdBack = time.Hour

// retrySoon is the mock's wait after a delivery's failed attempt (a 409, a
// dropped answer): 10 ms, doubling, where Stripe waits minutes to hours.
func retrySoon(attempt int) time.Duration {
	return 10 * time.Millisecond << min(max(attempt-1, 0), 6)
}

// options say what a demo does.
type options struct {
	events   int    // orders charged, one charge.succeeded event each
	seed     uint64 // draws the delivery faults
	forgeFor int    // the first orders, held back, whose event ids forgers try
	plain    bool   // the control: verifyOnly in place of a Receiver
}

// A planned order is charged, and its event's delivery gets fault.
type planned struct {
	order string
	fault *mock.DeliveryFault // nil for none
}

// makePlan draws the delivery fault of each order's event. The first
// forgeFor are held back, for the forgers to try first; of the rest, in
// ten: two duplicated (1 to 5 extra copies, all at once), two with a copy
// sent while the first is still being processed, two whose 2xx the mock
// drops, so that it delivers again, one held back, and three delivered as
// they are.
func makePlan(o options) []planned {
	rng := rand.New(rand.NewPCG(o.seed, o.seed))
	plan := make([]planned, o.events)
	for i := range plan {
		p := planned{order: fmt.Sprintf("ord_%04d", i+1)}
		draw := rng.IntN(10)
		if i < o.forgeFor {
			draw = 6
		}
		switch draw {
		case 0, 1:
			p.fault = &mock.DeliveryFault{Kind: mock.DuplicateDelivery, Copies: 1 + rng.IntN(5)}
		case 2, 3:
			p.fault = &mock.DeliveryFault{Kind: mock.ConcurrentCopy}
		case 4, 5:
			p.fault = &mock.DeliveryFault{Kind: mock.DropAnswer}
		case 6:
			p.fault = &mock.DeliveryFault{Kind: mock.DelayDelivery, Delay: holdBack}
		}
		plan[i] = p
	}
	return plan
}

// A demo is one run: a mock gateway in this process, a webhook endpoint
// registered on it with stripe-go, a receiver listening on 127.0.0.1 with
// the shop behind it, and the plan.
type demo struct {
	opts     options
	plan     []planned
	gw       *mock.Server
	sc       *stripe.Client
	endpoint *stripe.WebhookEndpoint
	ln       net.Listener
	url      string
	srv      *http.Server
	served   chan error
	shop     *Shop
	tally    *tally
	client   *http.Client // the forgers'
	forged   []forgery
}

// newDemo starts the gateway, listens for the receiver, and registers its
// URL as a webhook endpoint, which gives the secret it verifies with. It
// serves nothing until run.
func newDemo(ctx context.Context, o options) (*demo, error) {
	d := &demo{opts: o, plan: makePlan(o), shop: NewShop(), tally: newTally(),
		served: make(chan error, 1), client: &http.Client{Timeout: 10 * time.Second}}
	d.gw = mock.NewServer(mock.WithDeliveryPolicy(mock.DeliveryPolicy{Backoff: retrySoon}))
	d.sc = stripe.NewClient(apiKey, stripe.WithBackends(stripe.NewBackendsWithConfig(&stripe.BackendConfig{
		URL:               stripe.String(d.gw.URL),
		HTTPClient:        d.gw.Client(),
		MaxNetworkRetries: stripe.Int64(0), // the gateway here fails no request
		LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
		EnableTelemetry:   stripe.Bool(false),
	})))

	var err error
	if d.ln, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		d.gw.Close()
		return nil, err
	}
	d.url = "http://" + d.ln.Addr().String() + "/webhooks/stripe"
	d.endpoint, err = d.sc.V1WebhookEndpoints.Create(ctx, &stripe.WebhookEndpointCreateParams{
		URL:           stripe.String(d.url),
		EnabledEvents: stripe.StringSlice([]string{string(stripe.EventTypeChargeSucceeded)}),
	})
	if err != nil {
		d.close()
		return nil, fmt.Errorf("register the webhook endpoint: %w", err)
	}

	var endpoint http.Handler
	if o.plain {
		endpoint = verifyOnly(d.endpoint.Secret, d.shop, d.tally)
	} else if endpoint, err = newReceiver(d.endpoint.Secret, d.shop, d.tally); err != nil {
		d.close()
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("POST /webhooks/stripe", d.tally.count(endpoint))
	d.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	return d, nil
}

// close stops the receiver, if it still runs, and the gateway.
func (d *demo) close() {
	if d.srv != nil {
		d.srv.Close()
	}
	d.ln.Close() // if the receiver never served
	d.gw.Close()
}

// run serves the endpoint, charges every order, lets the forgers try, and
// once every delivery has settled, stops the receiver and sums up.
func (d *demo) run(ctx context.Context) (*summary, error) {
	go func() { d.served <- d.srv.Serve(d.ln) }()
	if err := d.chargeAll(ctx); err != nil {
		return nil, err
	}
	if err := d.forge(ctx); err != nil {
		return nil, err
	}

	// Release the held-back deliveries, which every later event has
	// overtaken, and wait for all to end with a 2xx or be given up.
	d.gw.AdvanceClock(holdBack)
	st, err := d.gw.WaitDeliveries(ctx)
	if err != nil {
		return nil, fmt.Errorf("deliveries still pending (%+v): %w", st, err)
	}
	// Stop the gateway, which closes its connections to the receiver, then
	// the receiver, waiting for the handlers still answering, so that the
	// counts are complete.
	d.gw.Close()
	if err := d.srv.Shutdown(ctx); err != nil {
		return nil, err
	}
	if err := <-d.served; !errors.Is(err, http.ErrServerClosed) {
		return nil, err
	}
	return d.summarize(st), nil
}

// chargeAll charges each order through stripe-go, one at a time, each with
// its fault injected just before: a delivery fault applies to the next
// event made, this order's charge.succeeded.
func (d *demo) chargeAll(ctx context.Context) error {
	for _, p := range d.plan {
		if p.fault != nil {
			if err := d.gw.InjectDeliveryFault(*p.fault); err != nil {
				return err
			}
		}
		params := &stripe.ChargeCreateParams{
			Amount:   stripe.Int64(2500),
			Currency: stripe.String(string(stripe.CurrencyUSD)),
			Source:   &stripe.PaymentSourceSourceParams{Token: stripe.String("tok_visa")},
		}
		params.AddMetadata("order", p.order)
		params.SetIdempotencyKey(chargeKey(p.order))
		if _, err := d.sc.V1Charges.Create(ctx, params); err != nil {
			return fmt.Errorf("charge %s: %w", p.order, err)
		}
	}
	return nil
}

func chargeKey(order string) string { return "charge-" + order }

// A forgery is a delivery a forger sent for a real event, and the status
// the receiver answered.
type forgery struct {
	kind   string // "forged", "stale" or "wrong secret"
	event  string
	status int
}

// forge sends, for each of the first forgeFor orders' events, whose real
// deliveries are held back, three deliveries a receiver must refuse:
//
//   - forged: the event's id on a body the forger wrote, shipping his
//     own order, with a signature he made up;
//   - stale: the real event, signed with the endpoint's secret ten minutes
//     ago, as a captured delivery replayed later would be;
//   - wrong secret: the real event, signed now, but with another secret.
//
// Had any of them claimed the id, the real delivery that follows would be
// answered with its outcome, and the order never shipped.
func (d *demo) forge(ctx context.Context) error {
	ids := make(map[string]string) // charge key → event id
	for _, ev := range d.gw.Events() {
		ids[ev.IdempotencyKey] = ev.ID
	}
	for _, p := range d.plan[:min(d.opts.forgeFor, len(d.plan))] {
		id := ids[chargeKey(p.order)]
		ev, err := d.sc.V1Events.Retrieve(ctx, id, nil)
		if err != nil {
			return fmt.Errorf("retrieve event %s: %w", id, err)
		}
		real := ev.LastResponse.RawJSON
		now := time.Now()
		forged := fmt.Appendf(nil, `{"id":%q,"object":"event","api_version":%q,"type":"charge.succeeded",`+
			`"data":{"object":{"id":"ch_forged","object":"charge","metadata":{"order":"ord_forged"}}}}`, id, stripe.APIVersion)
		stale, err := webhook.SignStripe(real, now.Add(-10*time.Minute), d.endpoint.Secret)
		if err != nil {
			return err
		}
		wrong, err := webhook.SignStripe(real, now, "whsec_of_another_endpoint")
		if err != nil {
			return err
		}
		for _, f := range []struct {
			kind, signature string
			body            []byte
		}{
			{"forged", fmt.Sprintf("t=%d,v1=%x", now.Unix(), sha256.Sum256(forged)), forged},
			{"stale", stale, real},
			{"wrong secret", wrong, real},
		} {
			status, err := d.post(ctx, f.body, f.signature)
			if err != nil {
				return fmt.Errorf("%s delivery of %s: %w", f.kind, id, err)
			}
			d.forged = append(d.forged, forgery{kind: f.kind, event: id, status: status})
		}
	}
	return nil
}

// post sends one delivery to the receiver, as a sender would, and returns
// the status it got.
func (d *demo) post(ctx context.Context, body []byte, signature string) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.url, strings.NewReader(string(body)))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json; charset=utf-8")
	req.Header.Set("Stripe-Signature", signature)
	resp, err := d.client.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	_, err = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	return resp.StatusCode, err
}
