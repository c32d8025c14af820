package stripebench

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// stripeMockVersion is the stripe-mock the benchmark builds.
const stripeMockVersion = "v0.203.0"

// stripeMockEnv and payonceMockEnv name prebuilt binaries to use instead
// of building them.
const (
	stripeMockEnv  = "PAYONCE_STRIPE_MOCK"
	payonceMockEnv = "PAYONCE_MOCK"
)

// clients is how many goroutines send each load, each on its own
// keep-alive connection.
const clients = 32

const apiKey = "sk_test_stripebench"

var (
	formBody = []byte("amount=2000&currency=usd&source=tok_visa")
	jsonBody = []byte(`{"amount":2000,"currency":"usd","payment_method":"tok_visa"}`)
)

// target is a server and the dialect a load speaks to it.
type target struct {
	name        string // the server= of the sub-benchmark
	url         string
	pid         int // the server's process, whose CPU time is measured
	contentType string
	body        []byte
	// replayHeader: the server says Idempotent-Replayed: true on a replay,
	// and the load checks it.
	replayHeader bool
}

// BenchmarkStripeDialect sends the same loads to stripe-mock and to
// payonce-mock's Stripe dialect, one server after the other; the package
// comment tells how to run it and what it reports.
func BenchmarkStripeDialect(b *testing.B) {
	stripeBin, err := stripeMockBinary()
	if err != nil {
		b.Skipf("no stripe-mock: %v\n"+
			"Build it with: GOBIN=/tmp/stripe-mock go install github.com/stripe/stripe-mock@%s\n"+
			"then run again with %s=/tmp/stripe-mock/stripe-mock", err, stripeMockVersion, stripeMockEnv)
	}
	payonceBin, err := payonceMockBinary()
	if err != nil {
		b.Fatalf("payonce-mock: %v\n(%s names a prebuilt one)", err, payonceMockEnv)
	}
	stripeURL, stripePID := startServer(b, "stripe-mock", stripeBin, "Listening for HTTP at address: ",
		"-http-addr", "127.0.0.1:0")
	payonceURL, payoncePID := startServer(b, "payonce-mock", payonceBin, "payonce-mock: listening on http://",
		"-addr", "127.0.0.1:0")

	const form = "application/x-www-form-urlencoded"
	stripe := target{name: "stripe-mock", url: stripeURL, pid: stripePID, contentType: form, body: formBody}
	payonce := target{name: "payonce-mock", url: payonceURL, pid: payoncePID, contentType: form, body: formBody,
		replayHeader: true}
	payonceJSON := target{name: "payonce-mock-json", url: payonceURL, pid: payoncePID, contentType: "application/json",
		body: jsonBody, replayHeader: true}

	if err := probe(stripe); err != nil {
		b.Fatalf("stripe-mock: %v", err)
	}
	targets := []target{stripe, payonce}
	formMissing := ""
	if err := probe(payonce); err != nil {
		var refused *refusedError
		if !errors.As(err, &refused) || refused.code != "invalid_content_type" {
			b.Fatalf("payonce-mock: %v", err)
		}
		formMissing = err.Error()
		b.Logf("payonce-mock has no Stripe dialect in this tree yet (%v): its form figures are not meaningful, "+
			"so its sub-benchmarks skip; server=payonce-mock-json measures the JSON dialect as an interim figure", err)
		if err := probe(payonceJSON); err != nil {
			b.Fatalf("payonce-mock, JSON dialect: %v", err)
		}
		targets = append(targets, payonceJSON)
	}

	for _, replays := range []bool{false, true} {
		load := "new_keys"
		if replays {
			load = "replays"
		}
		// What each server's repetitions measured, for the ratios.
		results := make(map[string]*repetitions, len(targets))
		b.Run(load, func(b *testing.B) {
			for _, t := range targets {
				reps := &repetitions{}
				results[t.name] = reps
				b.Run("server="+t.name, func(b *testing.B) {
					if t.name == payonce.name && formMissing != "" {
						b.Skipf("not meaningful yet: payonce-mock refuses the form body (%s)", formMissing)
					}
					reps.set(b, drive(b, t, replays))
					if t.name != stripe.name && b.N > 1 {
						// Logged here, as go test prints a parent's log
						// only with -v.
						logRatio(b, t.name, reps.values(), results[stripe.name].values(), formMissing)
					}
				})
			}
		})
	}
}

// result is what one run of a load measured.
type result struct {
	rate float64 // requests per second
	cpu  float64 // the server's CPU time per request, in ns; 0 if unknown
}

// logRatio logs how server compares with stripe-mock in the latest
// repetition, and over the medians of the repetitions so far: the ratio
// of their req/s, and the inverse ratio of their CPU time per request.
func logRatio(b *testing.B, server string, got, base []result, formMissing string) {
	i := len(got) - 1
	if i < 0 || i >= len(base) {
		return
	}
	base = base[:i+1]
	rate := func(r result) float64 { return r.rate }
	cpu := func(r result) float64 { return r.cpu }
	gotRate, baseRate := median(got, rate), median(base, rate)
	msg := fmt.Sprintf("%s/stripe-mock: %.2f× the req/s in this repetition; "+
		"%.2f× over the %d so far (medians %.0f / %.0f req/s)",
		server, got[i].rate/base[i].rate, gotRate/baseRate, i+1, gotRate, baseRate)
	if got[i].cpu > 0 && base[i].cpu > 0 {
		gotCPU, baseCPU := median(got, cpu), median(base, cpu)
		msg += fmt.Sprintf("; server CPU per request %.2f× less in this repetition, "+
			"%.2f× over the medians (%.0f / %.0f µs)",
			base[i].cpu/got[i].cpu, baseCPU/gotCPU, gotCPU/1e3, baseCPU/1e3)
	}
	b.Log(msg)
	if server != "payonce-mock" {
		b.Logf("INTERIM: payonce's JSON dialect, not the Stripe one: payonce-mock answers the form body %s", formMissing)
	}
}

// repetitions are the results of a sub-benchmark's repetitions, in order.
// go test calls a sub-benchmark with b.N = 1 before each repetition, on the
// *testing.B that then runs it (and, without -benchtime Nx, calls it again
// with a growing b.N): the last result set on a B is the one go test
// reports.
type repetitions struct {
	bs      []*testing.B
	results map[*testing.B]result
}

func (r *repetitions) set(b *testing.B, res result) {
	if r.results == nil {
		r.results = make(map[*testing.B]result)
	}
	if _, ok := r.results[b]; !ok {
		r.bs = append(r.bs, b)
	}
	r.results[b] = res
}

func (r *repetitions) values() []result {
	if r == nil {
		return nil
	}
	v := make([]result, len(r.bs))
	for i, b := range r.bs {
		v[i] = r.results[b]
	}
	return v
}

func median(rs []result, field func(result) float64) float64 {
	s := make([]float64, len(rs))
	for i, r := range rs {
		s[i] = field(r)
	}
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// drive sends b.N requests of the load to t from clients goroutines, and
// reports and returns their req/s and the server's CPU time per request.
// It fails b on any unexpected answer.
func drive(b *testing.B, t target, replays bool) result {
	newClient := newConnClient
	switch *clientFlag {
	case "conn":
	case "transport":
		tr := &http.Transport{MaxIdleConnsPerHost: clients, MaxConnsPerHost: clients, DisableCompression: true}
		defer tr.CloseIdleConnections()
		c := &http.Client{Transport: tr, Timeout: requestTimeout}
		newClient = func(t target) client { return &transportClient{c: c, t: t} }
	default:
		b.Fatalf("-stripebench.client=%q: want conn or transport", *clientFlag)
	}
	run := nonce() // so that no key of an earlier call is new again
	ctx := b.Context()

	var firstErr error
	var errOnce sync.Once
	var failed atomic.Bool
	fail := func(err error) {
		errOnce.Do(func() { firstErr = err })
		failed.Store(true)
	}
	// Each goroutine keeps its client, and so its connection, from the
	// untimed first requests to the timed ones.
	cs := make([]client, clients)
	for i := range cs {
		cs[i] = newClient(t)
		defer cs[i].close()
	}
	parallel := func(f func(i int, c client)) {
		var wg sync.WaitGroup
		for i, c := range cs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				f(i, c)
			}()
		}
		wg.Wait()
	}

	replayKey := func(client int) string { return run + "-c" + strconv.Itoa(client) }
	if replays {
		parallel(func(i int, c client) { // the first, executing request of each key
			if err := c.send(ctx, replayKey(i), false); err != nil {
				fail(err)
			}
		})
		if failed.Load() {
			b.Fatalf("%s: %v", t.name, firstErr)
		}
	}

	var next atomic.Int64
	cpu0, cpuOK := cpuTime(t.pid)
	self0, selfOK := cpuTime(os.Getpid())
	b.ResetTimer()
	parallel(func(ci int, c client) {
		for !failed.Load() {
			i := next.Add(1) - 1
			if i >= int64(b.N) {
				return
			}
			key := replayKey(ci)
			if !replays {
				key = run + "-" + strconv.FormatInt(i, 10)
			}
			if err := c.send(ctx, key, replays); err != nil {
				fail(err)
				return
			}
		}
	})
	b.StopTimer()
	cpu1, cpu1OK := cpuTime(t.pid)
	self1, self1OK := cpuTime(os.Getpid())
	if failed.Load() {
		b.Fatalf("%s: %v", t.name, firstErr)
	}
	res := result{rate: float64(b.N) / b.Elapsed().Seconds()}
	b.ReportMetric(res.rate, "req/s")
	if cpuOK && cpu1OK {
		// What the server spends per request, whoever else shares the
		// cores. /proc counts in 10 ms ticks: b.N should be in the
		// thousands.
		res.cpu = float64(cpu1-cpu0) / float64(b.N)
		b.ReportMetric(res.cpu, "server-cpu-ns/req")
	}
	if selfOK && self1OK {
		// And what the clients, this process, spend.
		b.ReportMetric(float64(self1-self0)/float64(b.N), "client-cpu-ns/req")
	}
	return res
}

// cpuTime returns the CPU time, user and system, that process pid has
// used so far, from /proc (Linux only), or false.
func cpuTime(pid int) (time.Duration, bool) {
	stat, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	// pid (comm) state ppid …: utime and stime are the 14th and 15th
	// fields, the 12th and 13th after the parenthesised command name.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return 0, false
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64)
	stime, err2 := strconv.ParseInt(f[12], 10, 64)
	if err1 != nil || err2 != nil {
		return 0, false
	}
	const userHZ = 100 // the clock ticks of /proc, on every Linux that Go supports
	return time.Duration(utime+stime) * time.Second / userHZ, true
}

// requestTimeout bounds each request of a load, so that a server that
// hangs fails the benchmark instead of stalling it.
const requestTimeout = time.Minute

// clientFlag picks what sends the loads; the package comment tells why
// "conn" is the default.
var clientFlag = flag.String("stripebench.client", "conn",
	"what sends the loads: conn (a keep-alive connection per goroutine, requests written whole, "+
		"answers read by net/http's parser) or transport (an http.Client)")

// A client sends one goroutine's requests of a load, one at a time.
type client interface {
	// send posts one charge with key and checks that the answer is 200,
	// and a replay exactly when replay is set, if the target says so.
	send(ctx context.Context, key string, replay bool) error
	close()
}

// checkAnswer checks a charge's answer, whose body is in body.
func checkAnswer(t target, key string, replay bool, res *http.Response, body []byte) error {
	if res.StatusCode != http.StatusOK {
		return fmt.Errorf("key %s: status %d: %.300s", key, res.StatusCode, body)
	}
	if got := res.Header.Get("Idempotent-Replayed") == "true"; t.replayHeader && got != replay {
		return fmt.Errorf("key %s: Idempotent-Replayed: %q, want a replay: %t", key,
			res.Header.Get("Idempotent-Replayed"), replay)
	}
	return nil
}

// connClient is the load's default client: its own keep-alive connection,
// on which it writes each request whole, prebuilt but for its key, in one
// write, and reads the answer with [http.ReadResponse], the parser behind
// http.Client. It does what wrk does, in Go: an http.Transport spends more
// CPU per request than payonce-mock does, on the two goroutines each of its
// connections runs and the hand-offs between them, and on these 2-core
// machines the clients' CPU comes out of the servers'.
type connClient struct {
	t      target
	addr   string // host:port
	conn   net.Conn
	br     *bufio.Reader
	head   []byte // the request up to the key's value
	tail   []byte // the rest of the request after it
	out    []byte // the request being sent
	buf    bytes.Buffer
	method *http.Request // for ReadResponse, which only reads its Method
}

func newConnClient(t target) client {
	addr := strings.TrimPrefix(t.url, "http://")
	head := "POST /v1/charges HTTP/1.1\r\n" +
		"Host: " + addr + "\r\n" +
		"User-Agent: payonce-stripebench\r\n" +
		"Authorization: Bearer " + apiKey + "\r\n" +
		"Content-Type: " + t.contentType + "\r\n" +
		"Content-Length: " + strconv.Itoa(len(t.body)) + "\r\n" +
		"Idempotency-Key: "
	tail := append([]byte("\r\n\r\n"), t.body...)
	return &connClient{t: t, addr: addr, head: []byte(head), tail: tail, method: &http.Request{Method: "POST"}}
}

func (c *connClient) send(ctx context.Context, key string, replay bool) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if c.conn == nil {
		conn, err := (&net.Dialer{Timeout: requestTimeout}).DialContext(ctx, "tcp", c.addr)
		if err != nil {
			return err
		}
		c.conn = conn
		if c.br == nil {
			c.br = bufio.NewReaderSize(conn, 16<<10)
		} else {
			c.br.Reset(conn)
		}
	}
	c.out = append(append(append(c.out[:0], c.head...), key...), c.tail...)
	if err := c.conn.SetDeadline(time.Now().Add(requestTimeout)); err != nil {
		return c.broken(err)
	}
	if _, err := c.conn.Write(c.out); err != nil {
		return c.broken(fmt.Errorf("key %s: send: %w", key, err))
	}
	res, err := http.ReadResponse(c.br, c.method)
	if err != nil {
		return c.broken(fmt.Errorf("key %s: read the answer: %w", key, err))
	}
	c.buf.Reset()
	_, err = c.buf.ReadFrom(io.LimitReader(res.Body, 1<<20))
	res.Body.Close()
	if err != nil {
		return c.broken(fmt.Errorf("key %s: read the response: %w", key, err))
	}
	if res.Close {
		c.broken(nil) // the server closes it: dial again for the next one
	}
	return checkAnswer(c.t, key, replay, res, c.buf.Bytes())
}

// broken drops the connection, to dial again on the next request, and
// returns err.
func (c *connClient) broken(err error) error {
	c.close()
	return err
}

func (c *connClient) close() {
	if c.conn != nil {
		c.conn.Close()
		c.conn = nil
	}
}

// transportClient sends through an http.Client, shared by all the
// goroutines, as a Go program would: -stripebench.client=transport.
type transportClient struct {
	c   *http.Client
	t   target
	buf bytes.Buffer
}

func (c *transportClient) send(ctx context.Context, key string, replay bool) error {
	req, err := http.NewRequestWithContext(ctx, "POST", c.t.url+"/v1/charges", bytes.NewReader(c.t.body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", c.t.contentType)
	req.Header.Set("Idempotency-Key", key)
	res, err := c.c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	c.buf.Reset()
	if _, err := c.buf.ReadFrom(io.LimitReader(res.Body, 1<<20)); err != nil {
		return fmt.Errorf("key %s: read the response: %w", key, err)
	}
	return checkAnswer(c.t, key, replay, res, c.buf.Bytes())
}

func (c *transportClient) close() {}

// refusedError is a non-200 answer to a probe.
type refusedError struct {
	status int
	code   string // the error's code, if the body has one
	body   string
}

func (e *refusedError) Error() string {
	if e.code != "" {
		return fmt.Sprintf("%d %s", e.status, e.code)
	}
	return fmt.Sprintf("status %d: %.300s", e.status, e.body)
}

// probe sends t one charge, and checks that a charge comes back. It
// returns a *refusedError for an answer other than 200.
func probe(t target) error {
	var buf bytes.Buffer
	c := &http.Client{Timeout: time.Minute}
	req, err := http.NewRequest("POST", t.url+"/v1/charges", bytes.NewReader(t.body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+apiKey)
	req.Header.Set("Content-Type", t.contentType)
	req.Header.Set("Idempotency-Key", "probe-"+nonce())
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if _, err := buf.ReadFrom(io.LimitReader(res.Body, 1<<20)); err != nil {
		return err
	}
	var answer struct {
		Object string `json:"object"`
		Amount int64  `json:"amount"`
		Error  struct {
			Code string `json:"code"`
		} `json:"error"`
	}
	jsonErr := json.Unmarshal(buf.Bytes(), &answer)
	if res.StatusCode != http.StatusOK {
		return &refusedError{status: res.StatusCode, code: answer.Error.Code, body: buf.String()}
	}
	if jsonErr != nil || answer.Object != "charge" || answer.Amount != 2000 {
		return fmt.Errorf("200, but not a charge of 2000: %.300s", buf.Bytes())
	}
	return nil
}

// startServer runs bin with args, its output going to a file, until b
// ends. It returns the base URL that the line of output beginning with
// listening names, once the server answers there, and the process ID.
func startServer(b *testing.B, name, bin, listening string, args ...string) (string, int) {
	b.Helper()
	logPath := filepath.Join(b.TempDir(), name+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		b.Fatal(err)
	}
	defer logFile.Close() // the child has its own descriptor
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = logFile, logFile
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	b.Cleanup(func() {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
	})
	tail := func() string {
		out, _ := os.ReadFile(logPath)
		return string(out[max(0, len(out)-2000):])
	}

	deadline := time.NewTimer(time.Minute)
	defer deadline.Stop()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	url := ""
	for {
		select {
		case err := <-exited:
			b.Fatalf("%s exited before answering: %v\n%s", name, err, tail())
		case <-deadline.C:
			b.Fatalf("%s did not answer within a minute\n%s", name, tail())
		case <-tick.C:
		}
		if url == "" {
			url = listenURL(logPath, listening)
			if url == "" {
				continue
			}
		}
		res, err := http.Get(url + "/healthz") // any answer will do
		if err == nil {
			res.Body.Close()
			return url, cmd.Process.Pid
		}
	}
}

// listenURL returns http:// and what follows prefix on the first line of
// the file at path that begins with it, or "".
func listenURL(path, prefix string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if addr, ok := strings.CutPrefix(sc.Text(), prefix); ok {
			return "http://" + strings.TrimSpace(addr)
		}
	}
	return ""
}

// stripeMockBinary returns the path of a stripe-mock: the one that
// PAYONCE_STRIPE_MOCK names, or one built once per go test into the user's
// cache directory, or built before.
var stripeMockBinary = sync.OnceValues(func() (string, error) {
	if p := os.Getenv(stripeMockEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s: %w", stripeMockEnv, err)
		}
		return p, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", err
	}
	dir := filepath.Join(cache, "payonce", "stripebench", "stripe-mock@"+stripeMockVersion)
	bin := filepath.Join(dir, "stripe-mock")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cmd := exec.Command(goTool(), "install", "github.com/stripe/stripe-mock@"+stripeMockVersion)
	cmd.Dir = tmp // outside this module, whose go.mod must not change
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "GOFLAGS=", "GOWORK=off")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go install github.com/stripe/stripe-mock@%s: %w\n%s", stripeMockVersion, err, out)
	}
	if err := os.Rename(filepath.Join(tmp, "stripe-mock"), bin); err != nil {
		return "", err
	}
	return bin, nil
})

// payonceMockBinary returns the path of a payonce-mock: the one that
// PAYONCE_MOCK names, or this tree's cmd/payonce-mock, built once per go
// test into the user's cache directory (or a temporary one).
var payonceMockBinary = sync.OnceValues(func() (string, error) {
	if p := os.Getenv(payonceMockEnv); p != "" {
		if _, err := os.Stat(p); err != nil {
			return "", fmt.Errorf("%s: %w", payonceMockEnv, err)
		}
		return p, nil
	}
	dir, err := os.UserCacheDir()
	if err == nil {
		dir = filepath.Join(dir, "payonce", "stripebench")
		err = os.MkdirAll(dir, 0o755)
	}
	if err != nil {
		dir = os.TempDir()
	}
	bin := filepath.Join(dir, "payonce-mock")
	tmp := bin + ".build-" + nonce()
	cmd := exec.Command(goTool(), "build", "-o", tmp, "github.com/payonce/payonce/cmd/payonce-mock")
	if out, err := cmd.CombinedOutput(); err != nil {
		os.Remove(tmp)
		return "", fmt.Errorf("%w\n%s", err, out)
	}
	if err := os.Rename(tmp, bin); err != nil { // so that a concurrent go test runs whole binaries
		return "", err
	}
	return bin, nil
})

// goTool is the go command: go test puts its own first on PATH.
func goTool() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return "go"
}

func nonce() string {
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
