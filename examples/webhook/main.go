// Command webhook shows the receiving side of payments: a Stripe webhook
// endpoint that ships exactly one order per charge, however the gateway
// delivers its events, and that forgers cannot stop from shipping.
//
//	go run ./examples/webhook [-events N] [-seed S]
//
// It starts a mock gateway in this process (mock.NewServer), registers a
// webhook endpoint on it with stripe-go (V1WebhookEndpoints.Create, which
// answers the endpoint's signing secret), and listens on 127.0.0.1 for the
// deliveries. Then it charges N orders through stripe-go, one
// charge.succeeded event each, and breaks the delivery of most with a
// mock.DeliveryFault drawn from the seed:
//
//   - duplicate: 1 to 5 extra copies of the event, all at once, so that
//     they race each other;
//   - concurrent copy: a copy sent while the receiver is still processing
//     the first delivery;
//   - drop answer: the receiver's 200 ignored, so that the event it
//     processed is delivered again;
//   - delay: the delivery held back an hour on the mock's clock, until the
//     end of the run, so that every later event overtakes it.
//
// Meanwhile forgers post, for the first three held-back events, three
// deliveries each: a forged body with a made-up signature, the real event
// signed ten minutes ago (a captured delivery replayed), and the real event
// signed with another secret. The mock retries every failed delivery until
// it gets a 2xx.
//
// The endpoint is package webhook's Receiver: webhook.NewVerifier checks the
// Stripe-Signature with the endpoint's secret and the timestamp against a
// five-minute tolerance, and webhook.NewReceiver only then claims the
// verified event id in an idempotency store, so that the shop behind it
// runs once per event: a redelivery gets the first answer replayed, and one
// that arrives while the first runs gets 409 and comes back later. A
// forgery gets 400 and claims nothing, so the real event that follows
// ships its order.
//
// The control runs the same plan against an endpoint as most are written:
// stripe-go's webhook.ConstructEvent checks the signature, and the shop
// runs for every delivery that passes. It refuses the forgeries too, and
// ships an order again for every redelivery.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"time"
)

func main() {
	opts, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		os.Exit(2) // the flag package has said why, and the usage
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if err := run(ctx, os.Stdout, opts); err != nil {
		log.Fatal(err)
	}
}

// parseFlags parses the command line. Errors and -h output, the usage, go
// to stderr.
func parseFlags(args []string, stderr io.Writer) (options, error) {
	o := options{forgeFor: 3}
	fs := flag.NewFlagSet("webhook", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: go run ./examples/webhook [-events N] [-seed S]

Charges N orders with stripe-go against an in-process mock gateway whose
webhook deliveries come duplicated, concurrently, out of order and again
after a dropped answer, while forgers post deliveries of their own. A
webhook.Receiver ships every order exactly once; the control, stripe-go's
ConstructEvent alone, ships some twice. Nothing needs setting up.

`)
		fs.PrintDefaults()
	}
	fs.IntVar(&o.events, "events", 500, "how many orders to charge, one charge.succeeded event each (3 or more)")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the delivery faults")
	err := fs.Parse(args)
	switch {
	case err != nil:
		return o, err
	case fs.NArg() > 0:
		err = fmt.Errorf("unexpected arguments %q", fs.Args())
	case o.events < o.forgeFor:
		err = fmt.Errorf("-events %d: want %d or more", o.events, o.forgeFor)
	}
	if err != nil {
		fmt.Fprintln(fs.Output(), "webhook:", err)
		fs.Usage()
	}
	return o, err
}

func run(ctx context.Context, out io.Writer, o options) error {
	fmt.Fprintf(out, "%d orders charged with stripe-go; their charge.succeeded events delivered by the mock, with faults (seed %d)\n\n",
		o.events, o.seed)

	fmt.Fprintln(out, "webhook.Receiver: verify the signature, then claim the event id")
	good, err := runDemo(ctx, o)
	if err != nil {
		return err
	}
	good.print(out)

	fmt.Fprintln(out, "\ncontrol: stripe-go's webhook.ConstructEvent, no idempotency")
	o.plain = true
	control, err := runDemo(ctx, o)
	if err != nil {
		return err
	}
	control.print(out)

	if !good.exactlyOnce() {
		return errors.New("the receiver did not ship every order exactly once")
	}
	return nil
}

// runDemo runs one demo to its end.
func runDemo(ctx context.Context, o options) (*summary, error) {
	d, err := newDemo(ctx, o)
	if err != nil {
		return nil, err
	}
	defer d.close()
	return d.run(ctx)
}
