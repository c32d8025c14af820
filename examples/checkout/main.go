// Command checkout serves a checkout page whose Pay button can be clicked as
// often as you like: the cart is charged once.
//
// Customers double-click, browsers resend a POST after a slow answer, and
// networks lose the answer to a charge that went through. The handler keys
// each charge by the cart (payonce.BusinessKey("cart", cartID)), so every one
// of those requests is the same operation to the gateway, which charges once
// and replays the result to the others. Switch "Idempotency key per cart" off
// to get a fresh key per request, the classic bug, and watch the duplicates
// pile up; switch "Flaky network" on to have the gateway lose its answers
// after charging.
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
	addr := flag.String("addr", "127.0.0.1:8080", "address to serve the checkout on")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, *addr, os.Stdout); err != nil {
		log.Fatal(err)
	}
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
