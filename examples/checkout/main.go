// Command checkout serves a checkout page whose Pay button can be clicked as
// often as you like: the cart is charged once.
//
// Customers double-click, browsers resend a POST after a slow answer, and
// networks lose the answer to a charge that went through. The handler keys
// each charge by the cart and its payment attempt
// (payonce.BusinessKey("cart", cartID, "attempt_1")), so every one of those
// requests is the same operation to the gateway, which charges once and
// replays the result to the others. Only a declined card ends an attempt:
// the customer picks another card, and pays a new attempt under a new key.
// Switch "Idempotency key per cart" off to get a fresh key per request, the
// classic bug, and watch the duplicates pile up; switch "Flaky network" on to
// have the gateway lose its answers after charging, and each click's line
// shows the client's retries that got them back.
//
// The gateway is the in-process mock from package mock, so nothing needs
// setting up:
//
//	go run ./examples/checkout [-addr 127.0.0.1:8080]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/payonce/payonce"
	"github.com/payonce/payonce/mock"
)

func main() {
	addr, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		return
	}
	if err != nil {
		os.Exit(2) // the flag package has said why, and the usage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, addr, os.Stdout); err != nil {
		log.Fatal(err)
	}
}

// parseFlags parses the command line and returns the address to serve on.
// Errors and -h output, the usage, go to stderr.
func parseFlags(args []string, stderr io.Writer) (addr string, err error) {
	fs := flag.NewFlagSet("checkout", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: go run ./examples/checkout [-addr HOST:PORT]

Serves a checkout page whose Pay button can be clicked as often as you like:
each payment is keyed by the cart, so the cart is charged once. Toggles on
the page turn the key off (every click charges) and make the network lose
the gateway's answers (the client retries with the same key). The gateway
is a mock in this process; nothing needs setting up. Open the URL it prints.

`)
		fs.PrintDefaults()
	}
	fs.StringVar(&addr, "addr", "127.0.0.1:8080", "the `address` to serve the checkout on")
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	if fs.NArg() > 0 {
		err := fmt.Errorf("unexpected arguments %q", fs.Args())
		fmt.Fprintln(fs.Output(), "checkout:", err)
		fs.Usage()
		return "", err
	}
	return addr, nil
}

// run serves the checkout on addr until ctx ends. It prints the page's URL
// to out once the server listens.
func run(ctx context.Context, addr string, out io.Writer) error {
	gw := mock.NewServer()
	defer gw.Close()
	client, err := payonce.NewClient("sk_test_checkout_demo", payonce.WithBaseURL(gw.URL))
	if err != nil {
		return err
	}

	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{
		Handler:           NewShop(client, gw.Gateway).Handler(),
		ReadHeaderTimeout: 10 * time.Second,
	}
	fmt.Fprintf(out, "checkout: open http://%s/ (gateway: mock at %s; Ctrl-C to stop)\n", ln.Addr(), gw.URL)

	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.Background(), payTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		return err
	}
	if err := <-errc; !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
