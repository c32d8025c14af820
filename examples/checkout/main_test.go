package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce"
	"github.com/payonce/payonce/mock"
)

// waitLimit bounds every wait, so that a broken page fails instead of
// hanging.
const waitLimit = 60 * time.Second

// newTestShop starts a mock gateway and the shop in front of it, as run
// does, and returns the shop's server.
func newTestShop(t *testing.T) (*httptest.Server, *mock.Server) {
	t.Helper()
	gw := mock.NewServer()
	t.Cleanup(gw.Close)
	client, err := payonce.NewClient("sk_test_checkout_demo", payonce.WithBaseURL(gw.URL))
	require.NoError(t, err)
	srv := httptest.NewServer(NewShop(client, gw.Gateway).Handler())
	t.Cleanup(srv.Close)
	return srv, gw
}

// visitor is a browser without a browser: an HTTP client with a cookie jar
// that has loaded the page, and so holds a cart.
type visitor struct {
	t    *testing.T
	url  string
	hc   *http.Client
	cart string
}

func newVisitor(t *testing.T, srv *httptest.Server) *visitor {
	t.Helper()
	jar, err := cookiejar.New(nil)
	require.NoError(t, err)
	v := &visitor{t: t, url: srv.URL, hc: &http.Client{Jar: jar, Timeout: waitLimit}}
	resp, err := v.hc.Get(srv.URL + "/")
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
	for _, c := range resp.Cookies() {
		if c.Name == cartCookie {
			v.cart = c.Value
		}
	}
	require.NotEmpty(t, v.cart, "the page set no cart cookie")
	return v
}

// pay sends POST /pay for the cart's current attempt.
func (v *visitor) pay(keyed, flaky bool, card string) (int, payResult) {
	return v.send(payRequest{Keyed: keyed, Flaky: flaky, Card: card})
}

// send sends POST /pay as the page does. It is safe to call from several
// goroutines, and reports failures with t.Error, never t.Fatal.
func (v *visitor) send(req payRequest) (int, payResult) {
	body, _ := json.Marshal(req)
	resp, err := v.hc.Post(v.url+"/pay", "application/json", bytes.NewReader(body))
	if err != nil {
		v.t.Errorf("POST /pay: %v", err)
		return 0, payResult{}
	}
	defer resp.Body.Close()
	var res payResult
	if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
		v.t.Errorf("POST /pay: status %d, body not a payResult: %v", resp.StatusCode, err)
	}
	return resp.StatusCode, res
}

// Three clicks that reach the handler at the same time charge the cart once
// when its key comes from the cart, and three times when each request makes
// its own key. With the network losing the gateway's answers, the client's
// retries get them back without charging again.
func TestPayConcurrentClicks(t *testing.T) {
	for _, tc := range []struct {
		name         string
		keyed, flaky bool
		wantCharges  int
	}{
		{"keys on", true, false, 1},
		{"keys off", false, false, 3},
		{"keys on, flaky network", true, true, 1},
		{"keys off, flaky network", false, true, 3},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, gw := newTestShop(t)
			v := newVisitor(t, srv)

			const clicks = 3
			results := make([]payResult, clicks)
			start := make(chan struct{})
			var wg sync.WaitGroup
			for i := range clicks {
				wg.Add(1)
				go func() {
					defer wg.Done()
					<-start
					status, res := v.pay(tc.keyed, tc.flaky, "tok_visa")
					assert.Equal(t, http.StatusOK, status, "click %d: %+v", i, res)
					results[i] = res
				}()
			}
			close(start)
			wg.Wait()

			requireCharges(t, gw, v.cart, tc.wantCharges)
			ids := map[string]bool{}
			keys := map[string]bool{}
			for _, res := range results {
				assert.True(t, res.OK, "%+v", res)
				ids[res.ChargeID] = true
				keys[res.Key] = true
			}
			assert.Len(t, ids, tc.wantCharges, "distinct charge ids answered")
			if tc.keyed {
				assert.Equal(t, map[string]bool{"cart:" + v.cart + ":attempt_1": true}, keys, "every click is keyed by the cart")
			} else {
				assert.Len(t, keys, clicks, "every click has its own key")
			}
			if tc.flaky {
				assert.NotZero(t, droppedAnswers(gw), "the flaky network lost no answer")
			} else {
				assert.Zero(t, droppedAnswers(gw))
			}
		})
	}
}

// Clicks that arrive while the first is still being charged are told by the
// gateway to wait (409); the client retries them, and they get the first
// click's charge.
func TestPayWhileFirstChargeIsInFlight(t *testing.T) {
	srv, gw := newTestShop(t)
	v := newVisitor(t, srv)
	release := make(chan struct{})
	holding := make(chan struct{}, 1)
	require.NoError(t, gw.InjectFault(mock.Fault{
		Kind: mock.Delay, Method: http.MethodPost, Path: "/v1/charges", Release: release, Holding: holding,
	}))
	var wg sync.WaitGroup
	t.Cleanup(wg.Wait)
	var once sync.Once
	releaseFirst := func() { once.Do(func() { close(release) }) }
	t.Cleanup(releaseFirst) // runs before wg.Wait

	results := make([]payResult, 3)
	wg.Add(1)
	go func() { defer wg.Done(); _, results[0] = v.pay(true, false, "tok_visa") }()
	select {
	case <-holding:
	case <-time.After(waitLimit):
		t.Fatal("the first charge never reached the gateway")
	}
	var others sync.WaitGroup
	for i := 1; i < len(results); i++ {
		others.Add(1)
		go func() { defer others.Done(); _, results[i] = v.pay(true, false, "tok_visa") }()
	}
	othersDone := make(chan struct{})
	wg.Add(1)
	go func() { defer wg.Done(); others.Wait(); close(othersDone) }()

	// Release the first charge once the gateway has told the two others to
	// wait, or once they are answered anyway (which is the bug this test is
	// after: they did not wait for the first).
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	deadline := time.After(waitLimit)
wait:
	for gw.Stats().Conflicts < 2 {
		select {
		case <-othersDone:
			break wait
		case <-tick.C:
		case <-deadline:
			t.Fatalf("the gateway told %d of 2 clicks to wait", gw.Stats().Conflicts)
		}
	}
	releaseFirst()
	wg.Wait()

	requireCharges(t, gw, v.cart, 1)
	assert.False(t, results[0].Replayed, "the first click: %+v", results[0])
	for _, res := range results[1:] {
		assert.True(t, res.OK && res.Replayed, "a later click should replay the first: %+v", res)
		assert.GreaterOrEqual(t, res.Attempts, 2, "a later click should have been retried after a 409: %+v", res)
		assert.Equal(t, results[0].ChargeID, res.ChargeID)
	}
}

// A declined card leaves the cart payable with another card: the next
// payment is a new attempt, under a new key. Clicks on one attempt, even
// one answered after its decline, share its key, and a charged attempt is
// never followed by another.
func TestDeclineThenAnotherCard(t *testing.T) {
	srv, gw := newTestShop(t)
	v := newVisitor(t, srv)
	key := func(n int) string { return fmt.Sprintf("cart:%s:attempt_%d", v.cart, n) }

	// A double click with the card that declines: one attempt, one key.
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			status, res := v.send(payRequest{Keyed: true, Card: "tok_chargeDeclined", Attempt: 1})
			assert.Equal(t, http.StatusPaymentRequired, status, "%+v", res)
			assert.Equal(t, "declined", res.Error)
			assert.Equal(t, key(1), res.Key)
			assert.Equal(t, 2, res.NextAttempt, "the next payment is a new attempt")
		}()
	}
	wg.Wait()
	// A click on that attempt that arrives after its decline is still that
	// attempt: the gateway replays the decline.
	status, res := v.send(payRequest{Keyed: true, Card: "tok_chargeDeclined", Attempt: 1})
	assert.Equal(t, http.StatusPaymentRequired, status)
	assert.Equal(t, key(1), res.Key)
	var executed int
	for _, r := range gw.Requests() {
		if r.IdempotencyKey == key(1) && r.Outcome == mock.OutcomeExecuted {
			executed++
		}
	}
	assert.Equal(t, 1, executed, "the declined attempt went to the card network once")

	// Another card: attempt 2 is charged, and its double click replayed.
	status, paid := v.send(payRequest{Keyed: true, Card: "tok_visa", Attempt: 2})
	require.Equal(t, http.StatusOK, status, "%+v", paid)
	assert.Equal(t, key(2), paid.Key)
	assert.Equal(t, 2, paid.NextAttempt, "a charge starts no new attempt")
	status, again := v.send(payRequest{Keyed: true, Card: "tok_visa", Attempt: 2})
	require.Equal(t, http.StatusOK, status)
	assert.True(t, again.Replayed)
	assert.Equal(t, paid.ChargeID, again.ChargeID)

	// No click can start a third attempt, nor pay the second with another
	// card.
	status, res = v.send(payRequest{Keyed: true, Card: "tok_visa", Attempt: 3})
	assert.Equal(t, http.StatusBadRequest, status, "%+v", res)
	status, res = v.send(payRequest{Keyed: true, Card: "tok_chargeDeclined", Attempt: 2})
	assert.Equal(t, http.StatusConflict, status, "%+v", res)
	requireCharges(t, gw, v.cart, 1)

	resp, err := v.hc.Get(v.url + "/state")
	require.NoError(t, err)
	defer resp.Body.Close()
	var st cartState
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&st))
	assert.Equal(t, 2, st.Attempt)
}

// With the flaky network on, the gateway charges and loses its answer; the
// client's retry with the same key gets the stored charge, and the page says
// so, from the attempts the client counted: every attempt the gateway
// received. The first payment warms the client's kept-alive connection to
// the gateway, over which net/http used to resend the lost request on its
// own, where the client could not count it and the toggle showed nothing.
func TestFlakyNetworkShowsTheRetry(t *testing.T) {
	srv, gw := newTestShop(t)
	v := newVisitor(t, srv)
	status, first := v.pay(true, false, "tok_visa")
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, "charged at the first attempt", first.Note)

	v.newCart()
	status, res := v.pay(true, true, "tok_visa")
	require.Equal(t, http.StatusOK, status, "%+v", res)
	var received int
	for _, r := range gw.Requests() {
		if r.IdempotencyKey == res.Key {
			received++
		}
	}
	assert.Equal(t, 2, received, "the gateway received the lost attempt and its retry")
	assert.Equal(t, received, res.Attempts, "the page counts every attempt the gateway received")
	assert.True(t, res.Replayed)
	assert.Contains(t, res.Note, "charged after 2 attempts (1 retry with the same key)")
	requireCharges(t, gw, v.cart, 1)
}

// What the page says of a charge, from the client's attempts.
func TestAttemptsNote(t *testing.T) {
	for _, tc := range []struct {
		attempts int
		replayed bool
		want     string
	}{
		{1, false, "charged at the first attempt"},
		{1, true, "replayed at the first attempt: the gateway had already charged under this key"},
		{2, true, "charged after 2 attempts (1 retry with the same key): an earlier answer was lost"},
		{4, true, "charged after 4 attempts (3 retries with the same key)"},
		{3, false, "charged after 3 attempts (2 retries with the same key): the earlier ones failed before the gateway charged"},
	} {
		assert.Contains(t, attemptsNote(tc.attempts, tc.replayed), tc.want, "%d attempts, replayed %v", tc.attempts, tc.replayed)
	}
}

// newCart starts a new cart, as the page's button does.
func (v *visitor) newCart() {
	v.t.Helper()
	resp, err := v.hc.Post(v.url+"/cart", "application/json", strings.NewReader("{}"))
	require.NoError(v.t, err)
	defer resp.Body.Close()
	var body map[string]string
	require.NoError(v.t, json.NewDecoder(resp.Body).Decode(&body))
	require.NotEqual(v.t, v.cart, body["cart"])
	v.cart = body["cart"]
}

// requireCharges checks that the gateway's ledger holds want charges for
// cart.
func requireCharges(t *testing.T, gw *mock.Server, cart string, want int) {
	t.Helper()
	charges := cartCharges(gw.Gateway, cart)
	if len(charges) == want {
		return
	}
	var b strings.Builder
	for _, ch := range charges {
		fmt.Fprintf(&b, "\n\t%s, key %s", ch.ID, ch.IdempotencyKey)
	}
	t.Fatalf("the gateway holds %d charges for cart %s, want %d:%s", len(charges), cart, want, b.String())
}

// droppedAnswers counts the charge requests whose answer the gateway lost
// after executing them.
func droppedAnswers(gw *mock.Server) int {
	n := 0
	for _, r := range gw.Requests() {
		if r.Path == "/v1/charges" && r.Fault == mock.DropAfter {
			n++
		}
	}
	return n
}

func TestPayErrors(t *testing.T) {
	t.Run("declined", func(t *testing.T) {
		srv, gw := newTestShop(t)
		v := newVisitor(t, srv)
		status, res := v.pay(true, false, "tok_chargeDeclined")
		assert.Equal(t, http.StatusPaymentRequired, status)
		assert.Equal(t, "declined", res.Error)
		assert.NotEmpty(t, res.Message)
		assert.Equal(t, 2, res.NextAttempt, "another card may be tried")
		requireCharges(t, gw, v.cart, 0)
	})

	// Only a decline lets another card try: a paid cart is paid.
	t.Run("another card for a paid cart", func(t *testing.T) {
		srv, gw := newTestShop(t)
		v := newVisitor(t, srv)
		status, _ := v.pay(true, false, "tok_visa")
		require.Equal(t, http.StatusOK, status)
		status, res := v.pay(true, false, "tok_mastercard")
		assert.Equal(t, http.StatusBadRequest, status, "not a card the page offers: %+v", res)
		status, res = v.pay(true, false, "tok_chargeDeclined")
		assert.Equal(t, http.StatusConflict, status)
		assert.Equal(t, "key_reused", res.Error)
		assert.Equal(t, 1, res.NextAttempt)
		requireCharges(t, gw, v.cart, 1)
	})

	// A click with another card on an attempt already declined (a second
	// tab, or a click sent before the decline came back) is told that the
	// attempt was declined, and which attempt to pay, not to pay with the
	// declining card again.
	t.Run("another card for a declined attempt", func(t *testing.T) {
		srv, gw := newTestShop(t)
		v := newVisitor(t, srv)
		status, res := v.send(payRequest{Keyed: true, Card: "tok_chargeDeclined", Attempt: 1})
		require.Equal(t, http.StatusPaymentRequired, status, "%+v", res)
		require.Equal(t, 2, res.NextAttempt)

		status, res = v.send(payRequest{Keyed: true, Card: "tok_visa", Attempt: 1})
		assert.Equal(t, http.StatusConflict, status, "%+v", res)
		assert.Equal(t, "key_reused", res.Error)
		assert.NotContains(t, res.Message, "was not declined", "attempt 1 was declined")
		assert.Contains(t, res.Message, "was declined")
		assert.Equal(t, 2, res.NextAttempt, "the page is told the attempt to pay")
		requireCharges(t, gw, v.cart, 0)

		status, res = v.send(payRequest{Keyed: true, Card: "tok_visa", Attempt: res.NextAttempt})
		assert.Equal(t, http.StatusOK, status, "%+v", res)
		requireCharges(t, gw, v.cart, 1)
	})

	// When every answer is lost, the outcome is unknown; paying again with
	// the same key settles it without charging twice.
	t.Run("outcome unknown, then settled", func(t *testing.T) {
		srv, gw := newTestShop(t)
		v := newVisitor(t, srv)
		require.NoError(t, gw.InjectFault(mock.Fault{
			Kind: mock.DropAfter, Method: http.MethodPost, Path: "/v1/charges", Times: payonce.DefaultMaxRetries + 1,
		}))
		status, res := v.pay(true, false, "tok_visa")
		assert.Equal(t, http.StatusGatewayTimeout, status)
		assert.Equal(t, "outcome_unknown", res.Error)
		assert.Equal(t, payonce.DefaultMaxRetries+1, res.Attempts)
		assert.Equal(t, "cart:"+v.cart+":attempt_1", res.Key)
		assert.Equal(t, 1, res.NextAttempt, "an unknown outcome is settled with the same key")

		status, res = v.pay(true, false, "tok_visa")
		assert.Equal(t, http.StatusOK, status)
		assert.True(t, res.Replayed, "the second payment should replay the first: %+v", res)
		requireCharges(t, gw, v.cart, 1)
	})

	t.Run("bad requests", func(t *testing.T) {
		srv, gw := newTestShop(t)
		post := func(hc *http.Client, contentType, body string) int {
			resp, err := hc.Post(srv.URL+"/pay", contentType, strings.NewReader(body))
			require.NoError(t, err)
			resp.Body.Close()
			return resp.StatusCode
		}
		assert.Equal(t, http.StatusBadRequest, post(srv.Client(), "application/json", `{"keyed":true,"card":"tok_visa"}`), "no cart cookie")
		v := newVisitor(t, srv)
		assert.Equal(t, http.StatusUnsupportedMediaType, post(v.hc, "application/x-www-form-urlencoded", "keyed=true&card=tok_visa"))
		assert.Equal(t, http.StatusBadRequest, post(v.hc, "application/json", `{"keyed":true,"card":"tok_amex"}`))
		assert.Equal(t, http.StatusBadRequest, post(v.hc, "application/json", `{"keyed":true,"card":"tok_visa","amount":1}`))
		assert.Empty(t, gw.Charges())
	})
}

// The program prints the page's URL, serves it, and stops when asked.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- run(ctx, "127.0.0.1:0", pw)
		pw.Close()
	}()

	line, err := bufio.NewReader(pr).ReadString('\n')
	require.NoError(t, err)
	go io.Copy(io.Discard, pr)
	url := regexp.MustCompile(`http://127\.0\.0\.1:\d+/`).FindString(line)
	require.NotEmpty(t, url, "no URL in %q", line)

	resp, err := http.Get(url)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(body), `id="pay"`)

	cancel()
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(waitLimit):
		t.Fatal("run did not return after its context ended")
	}
}

// findBrowser returns the Chromium or Chrome to drive: $CHROME_PATH, or the
// first of the usual names on $PATH. Without one the test skips, except in
// CI, where it fails.
func findBrowser(t *testing.T) string {
	t.Helper()
	if p := os.Getenv("CHROME_PATH"); p != "" {
		path, err := exec.LookPath(p)
		if err != nil {
			t.Fatalf("CHROME_PATH=%s: %v", p, err)
		}
		return path
	}
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "google-chrome-stable"} {
		if path, err := exec.LookPath(name); err == nil {
			return path
		}
	}
	const msg = "no Chromium or Chrome found (looked for $CHROME_PATH, chromium, chromium-browser, google-chrome): " +
		"install one with `sudo apt-get install chromium`, or set CHROME_PATH"
	if ci, _ := strconv.ParseBool(os.Getenv("CI")); ci {
		t.Fatal(msg + "; CI=true, so the browser test must run")
	}
	t.Skip(msg)
	return ""
}

// page is what the checkout page shows, read from its DOM.
type page struct {
	Cart       string   `json:"cart"`
	Charges    int      `json:"charges"`
	Duplicates int      `json:"duplicates"`
	State      string   `json:"state"`
	Title      string   `json:"title"`
	Results    []string `json:"results"`  // each click's data-result: ok, error or pending
	Replayed   []bool   `json:"replayed"` // each click's replayed flag
	Attempts   []int    `json:"attempts"` // each click's attempts, as the client counted them
	Texts      []string `json:"texts"`    // each click's line in the log
}

const readPage = `(() => {
	const s = document.getElementById('status');
	const lis = [...document.querySelectorAll('#log li')];
	return {
		cart: s.dataset.cart || '',
		charges: Number(s.dataset.charges),
		duplicates: Number(s.dataset.duplicates),
		state: s.dataset.state,
		title: document.getElementById('status-title').textContent,
		results: lis.map(li => li.dataset.result),
		replayed: lis.map(li => li.dataset.replayed === 'true'),
		attempts: lis.map(li => Number(li.dataset.attempts || 0)),
		texts: lis.map(li => li.textContent),
	};
})()`

// mainHTML returns the page's content, for failure messages.
func mainHTML(ctx context.Context) string {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var html string
	err := chromedp.Run(ctx, chromedp.OuterHTML("main", &html, chromedp.ByQuery))
	if err != nil {
		return fmt.Sprintf("(cannot read the page: %v)", err)
	}
	return html
}

// stopBrowserLeftovers kills the processes that still run with dir as their
// user data directory, and returns once none is left. The allocator's cancel
// only waits for the process it started: with a launcher script that does not
// exec Chromium (Debian's /usr/bin/chromium), or for Chromium's children (the
// zygotes, the storage and network services), processes outlive it and write
// to dir while the test removes it. Chromium passes --user-data-dir to its
// children, so their command lines tell them apart. A child may fork as its
// parent dies, so it looks again until a few passes in a row find nothing.
// It reads /proc, and does nothing where there is none.
func stopBrowserLeftovers(dir string) {
	want := []byte("--user-data-dir=" + dir)
	deadline := time.Now().Add(10 * time.Second)
	for quiet := 0; quiet < 3 && time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if killProcessesWithArg(want) == 0 {
			quiet++
		} else {
			quiet = 0
		}
	}
}

// killProcessesWithArg kills the processes that have arg in their command
// line, and returns how many it found. A process that has exited, a zombie
// included, has no command line.
func killProcessesWithArg(arg []byte) int {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	n := 0
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cmdline, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		for a := range bytes.SplitSeq(cmdline, []byte{0}) {
			if bytes.Equal(a, arg) {
				if p, err := os.FindProcess(pid); err == nil {
					p.Kill()
					p.Release()
				}
				n++
				break
			}
		}
	}
	return n
}

// The page, in a real headless Chromium: three rapid clicks on Pay charge
// the cart once with keys per cart, three times without, and once with keys
// and a flaky network. The gateway's ledger and the page agree.
func TestCheckoutInBrowser(t *testing.T) {
	chrome := findBrowser(t)
	srv, gw := newTestShop(t)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	t.Cleanup(cancel)
	userDataDir := t.TempDir() // removed after the browser has exited (cleanups run last in, first out)
	// Runs after acancel, before the removal.
	t.Cleanup(func() { stopBrowserLeftovers(userDataDir) })
	var browserOut bytes.Buffer
	actx, acancel := chromedp.NewExecAllocator(ctx,
		chromedp.ExecPath(chrome),
		chromedp.Headless,
		chromedp.NoSandbox, // CI runs as root, where the sandbox cannot start
		chromedp.DisableGPU,
		chromedp.NoFirstRun,
		chromedp.NoDefaultBrowserCheck,
		// The machine may have no network but loopback: keep Chromium
		// from dialling out, or its refused connections get in the way.
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-breakpad", true),
		chromedp.Flag("disable-dev-shm-usage", true),
		chromedp.WindowSize(1000, 1000),
		chromedp.UserDataDir(userDataDir),
		chromedp.CombinedOutput(&browserOut),
	)
	t.Cleanup(acancel)
	bctx, bcancel := chromedp.NewContext(actx)
	t.Cleanup(bcancel)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("browser output:\n%s", browserOut.String())
		}
	})

	err := chromedp.Run(bctx,
		chromedp.Navigate(srv.URL+"/"),
		chromedp.WaitVisible("#pay", chromedp.ByQuery),
		chromedp.Poll(`document.getElementById('status').dataset.cart`, nil,
			chromedp.WithPollingTimeout(waitLimit)),
	)
	require.NoError(t, err, "load the page")

	// Once the page is stuck, later subtests fail at once rather than wait
	// again.
	stuck := false

	// startCart starts a new cart and sets the toggles, and returns what
	// the page showed before.
	startCart := func(t *testing.T, keyed, flaky bool) (before page) {
		t.Helper()
		if stuck {
			t.Fatal("the page got stuck in an earlier subtest")
		}
		err := chromedp.Run(bctx, chromedp.Evaluate(readPage, &before))
		require.NoError(t, err)
		err = chromedp.Run(bctx,
			chromedp.Click("#new-cart", chromedp.ByQuery),
			chromedp.Poll(fmt.Sprintf(`(() => {
				const s = document.getElementById('status');
				return s.dataset.cart !== %q && s.dataset.synced === 'true' && s.dataset.charges === '0'
					&& document.querySelectorAll('#log li').length === 0;
			})()`, before.Cart), nil, chromedp.WithPollingTimeout(waitLimit)),
		)
		if err != nil {
			stuck = true
			t.Fatalf("the page did not start a new cart: %v\n%s", err, mainHTML(bctx))
		}

		for sel, want := range map[string]bool{"#keyed": keyed, "#flaky": flaky} {
			var checked bool
			err := chromedp.Run(bctx, chromedp.JavascriptAttribute(sel, "checked", &checked, chromedp.ByQuery))
			require.NoError(t, err)
			if checked != want {
				require.NoError(t, chromedp.Run(bctx, chromedp.Click(sel, chromedp.ByQuery)))
			}
			err = chromedp.Run(bctx, chromedp.JavascriptAttribute(sel, "checked", &checked, chromedp.ByQuery))
			require.NoError(t, err)
			require.Equal(t, want, checked, "toggle %s", sel)
		}
		return before
	}

	// click chooses card and clicks Pay n times in one task, so that all
	// the requests leave before the first answer can arrive. It waits until
	// the log holds want lines, all answered, and the page shows the
	// gateway's state after the last one.
	click := func(t *testing.T, card string, n, want int) (p page) {
		t.Helper()
		require.NoError(t, chromedp.Run(bctx, chromedp.SetValue("#card", card, chromedp.ByQuery)))
		require.NoError(t, chromedp.Run(bctx, chromedp.Evaluate(fmt.Sprintf(`{
			const pay = document.getElementById('pay');
			for (let i = 0; i < %d; i++) pay.click();
		}`, n), nil)))
		err := chromedp.Run(bctx, chromedp.Poll(fmt.Sprintf(`(() => {
			const lis = document.querySelectorAll('#log li');
			return lis.length === %d && !document.querySelector('#log li[data-result="pending"]')
				&& document.getElementById('status').dataset.synced === 'true';
		})()`, want), nil, chromedp.WithPollingTimeout(waitLimit)))
		if err != nil {
			stuck = true
			t.Fatalf("the page did not settle after %d clicks: %v\n%s", n, err, mainHTML(bctx))
		}
		require.NoError(t, chromedp.Run(bctx, chromedp.Evaluate(readPage, &p)))
		return p
	}

	// checkout starts a new cart, sets the toggles, clicks Pay three times
	// in a row without waiting, and returns the page once every click has
	// its answer.
	checkout := func(t *testing.T, keyed, flaky bool) (cart string, p page) {
		t.Helper()
		before := startCart(t, keyed, flaky)
		p = click(t, "tok_visa", 3, 3)
		require.NotEqual(t, before.Cart, p.Cart)
		assert.Equal(t, []string{"ok", "ok", "ok"}, p.Results, "each click's answer")
		return p.Cart, p
	}

	t.Run("keys on", func(t *testing.T) {
		cart, p := checkout(t, true, false)
		assert.Equal(t, 1, p.Charges)
		assert.Equal(t, 0, p.Duplicates)
		assert.Equal(t, "ok", p.State)
		assert.Equal(t, "1 charge — no duplicates", p.Title)
		// One click executed; the two that raced it got its result.
		assert.ElementsMatch(t, []bool{false, true, true}, p.Replayed, "replayed answers")
		requireCharges(t, gw, cart, 1)
	})

	t.Run("keys off", func(t *testing.T) {
		cart, p := checkout(t, false, false)
		assert.Equal(t, 3, p.Charges)
		assert.Equal(t, 2, p.Duplicates)
		assert.Equal(t, "duplicates", p.State)
		assert.Equal(t, "3 charges — 2 duplicates", p.Title)
		if path := os.Getenv("PAYONCE_SCREENSHOT"); path != "" {
			var png []byte
			err := chromedp.Run(bctx, chromedp.FullScreenshot(&png, 100))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(path, png, 0o644))
			t.Logf("screenshot of the page with duplicates: %s", path)
		}
		requireCharges(t, gw, cart, 3)
	})

	// A declined card, double-clicked, then another card: the cart is
	// charged once, under the second attempt's key.
	t.Run("declined, then another card", func(t *testing.T) {
		startCart(t, true, false)
		p := click(t, "tok_chargeDeclined", 2, 2)
		assert.Equal(t, []string{"error", "error"}, p.Results)
		for _, text := range p.Texts {
			assert.Contains(t, text, "declined")
			assert.Contains(t, text, "Choose another card and pay again.")
			assert.Contains(t, text, "key cart:"+p.Cart+":attempt_1", "a double click is one attempt")
		}
		assert.Equal(t, 0, p.Charges)

		p = click(t, "tok_visa", 1, 3)
		assert.Equal(t, []string{"error", "error", "ok"}, p.Results)
		assert.Contains(t, p.Texts[2], "key cart:"+p.Cart+":attempt_2", "another card is a new attempt")
		assert.Equal(t, 1, p.Charges)
		assert.Equal(t, "1 charge — no duplicates", p.Title)
		requireCharges(t, gw, p.Cart, 1)
	})

	// The flaky network loses answers after charging; the page shows the
	// client's retries that got them back.
	t.Run("keys on, flaky network", func(t *testing.T) {
		dropped := droppedAnswers(gw)
		cart, p := checkout(t, true, true)
		assert.Equal(t, 1, p.Charges)
		assert.Equal(t, 0, p.Duplicates)
		assert.Equal(t, "1 charge — no duplicates", p.Title)
		assert.Greater(t, droppedAnswers(gw), dropped, "the flaky network lost no answer")
		retried := 0
		for i, n := range p.Attempts {
			if n >= 2 {
				retried++
				assert.Contains(t, p.Texts[i], fmt.Sprintf("%d attempts", n), "the click's line shows its attempts")
				assert.Contains(t, p.Texts[i], "with the same key", "…and its note says how")
			}
		}
		assert.Positive(t, retried, "some click was retried after its answer was lost: %q", p.Texts)
		requireCharges(t, gw, cart, 1)
	})
}

// -h names the command and says what it does, not a temporary binary's
// path; a bad flag fails with the usage.
func TestUsage(t *testing.T) {
	var out bytes.Buffer
	_, err := parseFlags([]string{"-h"}, &out)
	require.ErrorIs(t, err, flag.ErrHelp)
	usage := out.String()
	assert.True(t, strings.HasPrefix(usage, "usage: go run ./examples/checkout [-addr HOST:PORT]\n"), "%s", usage)
	assert.Contains(t, usage, "the cart is charged once")
	assert.Contains(t, usage, "-addr address")
	assert.NotContains(t, usage, os.TempDir())

	addr, err := parseFlags([]string{"-addr", "127.0.0.1:0"}, &out)
	require.NoError(t, err)
	assert.Equal(t, "127.0.0.1:0", addr)
	for _, args := range [][]string{{"-nope"}, {"extra"}} {
		out.Reset()
		_, err := parseFlags(args, &out)
		assert.Error(t, err, "%q", args)
		assert.Contains(t, out.String(), "usage: go run ./examples/checkout", "%q", args)
	}
}
