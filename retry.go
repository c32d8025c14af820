package payonce

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// Retry defaults, chosen for a checkout request that a person is waiting on.
// With them a call makes at most 4 attempts; the three waits add up to 0.9 s
// on average and 1.75 s at most unless the gateway asks for more with
// Retry-After. The caller's context deadline bounds everything: the client
// gives up as soon as the next wait would pass it.
const (
	// DefaultMaxRetries is 3, so 4 attempts: enough to ride out a dropped
	// connection or a brief 503, few enough not to feed a retry storm. It is
	// one attempt more than Google SRE's and aws-sdk-go-v2's 3, because a
	// response lost after the charge committed costs one retry just to
	// learn the result from the replay.
	DefaultMaxRetries = 3
	// DefaultMinBackoff is the base of the exponential backoff: short, as a
	// lost response is usually fixed by a quick retry.
	DefaultMinBackoff = 250 * time.Millisecond
	// DefaultMaxBackoff caps one wait. With the default 3 retries the
	// ceilings are 250 ms, 500 ms and 1 s, so it only matters with more
	// retries.
	DefaultMaxBackoff = 5 * time.Second
	// DefaultAttemptTimeout bounds one attempt, response body included. Card
	// authorisations take a few seconds at worst; an attempt still silent
	// after 15 s is abandoned and retried with the same key.
	DefaultAttemptTimeout = 15 * time.Second
	// DefaultMaxRetryAfter caps the gateway's Retry-After: a person will
	// not wait a minute for a checkout, and an unbounded Retry-After lets a
	// broken server hang the client.
	DefaultMaxRetryAfter = 10 * time.Second
)

// An Attempt is the outcome of one attempt, as seen by a [RetryPolicy].
//
// APIError and Err are scrubbed of the API key, like every error the client
// returns. Header is the raw response header, as the server sent it: it is
// not scrubbed, so a policy must not log it whole.
type Attempt struct {
	Number     int         // 1 for the first attempt
	Method     string      // HTTP method
	Path       string      // URL path, without the query
	StatusCode int         // 0 when no response arrived
	Header     http.Header // the raw response header, nil when no response arrived
	APIError   *Error      // the parsed error for a non-2xx response
	Err        error       // transport error, attempt timeout, or body read failure
}

// A RetryPolicy reports whether an attempt should be retried, and a short
// reason for the log, which the client scrubs of the API key before logging
// it. It is not consulted when the caller's context has
// ended, and a retry always reuses the same idempotency key and body.
type RetryPolicy func(a *Attempt) (retry bool, reason string)

// DefaultRetryPolicy retries what may succeed on a second try without risk
// of a double charge (the key makes every retry safe):
//   - transport failures: refused or reset connections, EOF, timeouts,
//     including the per-attempt timeout, except TLS certificate errors;
//   - 429, 500, 502, 503 and 504;
//   - 409 with code idempotency_key_in_use (the first request is still
//     executing; the retry will replay its result).
//
// A response with Stripe-Should-Retry "true" is retried, and one with
// "false" is not, whatever its status: the gateway knows best (Stripe's 429
// lock_timeout is a 429, retried either way).
//
// Everything else is a definite answer and is not retried: 400, 401, 402,
// 403, 404, 422, other 4xx, 501.
//
// Compose it to extend it:
//
//	policy := func(a *payonce.Attempt) (bool, string) {
//		if a.StatusCode == 520 {
//			return true, "origin error (520)"
//		}
//		return payonce.DefaultRetryPolicy(a)
//	}
func DefaultRetryPolicy(a *Attempt) (retry bool, reason string) {
	if a.Err != nil {
		if isCertError(a.Err) {
			return false, "tls certificate error"
		}
		return true, describeErr(a.Err)
	}
	switch headerValue(a.Header, "Stripe-Should-Retry") {
	case "true":
		return true, fmt.Sprintf("the gateway asked for a retry (%d, Stripe-Should-Retry)", a.StatusCode)
	case "false":
		return false, ""
	}
	switch a.StatusCode {
	case http.StatusTooManyRequests:
		return true, "rate limited (429)"
	case http.StatusInternalServerError, http.StatusBadGateway,
		http.StatusServiceUnavailable, http.StatusGatewayTimeout:
		return true, fmt.Sprintf("server error (%d)", a.StatusCode)
	case http.StatusConflict:
		if a.APIError != nil && a.APIError.Code == codeKeyInUse {
			return true, "idempotency key in use (409)"
		}
	}
	return false, ""
}

// A BackoffFunc returns how long to wait before retry number retry (0 for
// the first retry), given the client's minimum and maximum backoff. A
// Retry-After header from the gateway takes precedence over it.
type BackoffFunc func(retry int, min, max time.Duration) time.Duration

// DefaultBackoff is exponential backoff with full jitter: a uniformly random
// wait in [0, min(max, min·2^retry)]. Jitter spreads the retries of many
// clients hit by the same outage, which is what makes them succeed (see AWS's
// "Exponential Backoff and Jitter"). It draws from math/rand/v2, which is
// safe for concurrent use.
func DefaultBackoff(retry int, min, max time.Duration) time.Duration {
	return fullJitter(retry, min, max, rand.Int64N)
}

// NewJitterBackoff returns [DefaultBackoff] drawing from int64n, which must
// return a number in [0, n) and be safe for concurrent use. Tests use it to
// make waits exact.
func NewJitterBackoff(int64n func(n int64) int64) BackoffFunc {
	return func(retry int, min, max time.Duration) time.Duration {
		return fullJitter(retry, min, max, int64n)
	}
}

func fullJitter(retry int, lo, hi time.Duration, int64n func(int64) int64) time.Duration {
	ceil := min(lo, hi)
	for i := 0; i < retry && ceil > 0 && ceil < hi; i++ {
		if ceil > hi/2 {
			ceil = hi
			break
		}
		ceil *= 2
	}
	if ceil <= 0 {
		return 0
	}
	if ceil == math.MaxInt64 {
		ceil-- // so that ceil+1 cannot overflow
	}
	return time.Duration(int64n(int64(ceil) + 1))
}

// ParseRetryAfter parses a Retry-After header value, either a number of
// seconds or an HTTP date, into a wait relative to now. A date in the past
// gives 0. ok is false when the value is empty or malformed.
func ParseRetryAfter(value string, now time.Time) (wait time.Duration, ok bool) {
	v := strings.TrimSpace(value)
	if v == "" {
		return 0, false
	}
	if v[0] >= '0' && v[0] <= '9' {
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			var ne *strconv.NumError
			if errors.As(err, &ne) && ne.Err == strconv.ErrRange {
				return maxParsedRetryAfter, true
			}
			return 0, false
		}
		if n > uint64(maxParsedRetryAfter/time.Second) {
			return maxParsedRetryAfter, true
		}
		return time.Duration(n) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(t.Sub(now), 0), true
}

// maxParsedRetryAfter bounds a parsed Retry-After (about 31 years), so that
// the arithmetic cannot overflow; the client caps it much lower.
const maxParsedRetryAfter = 1e9 * time.Second

// retryWait is the wait before retry number retry: the gateway's
// Retry-After, capped by WithMaxRetryAfter, or else the backoff.
func (e *engine) retryWait(retry int, h http.Header, now time.Time) time.Duration {
	if d, ok := ParseRetryAfter(h.Get("Retry-After"), now); ok {
		return min(d, e.cfg.maxRetryAfter)
	}
	return min(max(e.cfg.backoff(retry, e.cfg.minBackoff, e.cfg.maxBackoff), 0), e.cfg.maxBackoff)
}

func (c *Client) retryWait(retry int, h http.Header, now time.Time) time.Duration {
	return c.eng.retryWait(retry, h, now)
}

// ---------------------------------------------------------------------------
// The mechanics: one call's state, which engine.do's loop consults.
//
// After every attempt, checkRetry reads and keeps the body, classifies the
// attempt, computes the wait (and gives up when it would pass the caller's
// deadline) and logs; engine.do then waits on a timer against ctx.Done().
// attemptTransport, under the attempt's http.Client, finds the call in the
// request's context.

type callKey struct{}

// call is the state of one Client.Do call. It is used by one goroutine at a
// time, except for the atomics, which net/http's trace hooks may set.
type call struct {
	e       *engine
	method  string
	path    string
	key     string
	unkeyed bool      // a method that is not safe, sent without a key: never resent once it may have reached the server
	sc      *scrubber // redacts the API key (or the request's Authorization credentials) from what the server sends

	attempts      int
	ambiguous     bool          // some attempt may have executed
	deadlineWait  time.Duration // the wait that would have passed the deadline
	retryCost     int           // tokens the last retry took from the budget
	pendingCost   int           // tokens taken for a retry not sent yet
	budgetStopped bool          // the budget refused a retry
	last          attemptOutcome
	wait          time.Duration // before the next attempt, when checkRetry asks for one

	// What the call sends, kept here so that a call costs few allocations:
	// its context, and, for Client.Do, its request, URL and header values;
	// the first attempt's body reader, and what attemptTransport makes for
	// the first attempt.
	ctx          callContext
	req          http.Request
	url          url.URL
	hdr          [5]string
	firstBody    bytes.Reader
	firstAttempt attempt

	trace            httptrace.ClientTrace
	getConn, gotConn atomic.Bool // per attempt: whether a connection was asked for, obtained
	skipped          atomic.Bool // per attempt: not sent, the context had ended
}

type attemptOutcome struct {
	Attempt
	body    []byte         // 2xx body
	raw     []byte         // the body as read, whatever the status (clipped at the limit)
	resp    *http.Response // the response, its body consumed; nil when none arrived
	bodyErr error          // 2xx body unusable (too large)
	retry   bool           // the policy asked for a retry
	reason  string
}

func newCall(c *Client, req *Request) *call {
	cl := c.eng.newCall(req.method, req.path, req.key)
	cl.sc = c.cfg.scrubber
	cl.url = req.url
	cl.url.Host = removeEmptyPort(cl.url.Host) // as http.NewRequest does
	return cl
}

// removeEmptyPort strips the empty port of "host:", as net/http's does.
func removeEmptyPort(host string) string {
	if strings.LastIndex(host, ":") > strings.LastIndex(host, "]") {
		return strings.TrimSuffix(host, ":")
	}
	return host
}

func (e *engine) newCall(method, path, key string) *call {
	cl := &call{e: e, method: method, path: path, key: key}
	cl.trace = httptrace.ClientTrace{
		GetConn: func(string) { cl.getConn.Store(true) },
		GotConn: func(httptrace.GotConnInfo) { cl.gotConn.Store(true) },
	}
	return cl
}

// checkRetry runs after every attempt, so it also counts attempts. It
// reports whether to retry, after cl.wait.
func (cl *call) checkRetry(ctx context.Context, resp *http.Response, err error) bool {
	cl.attempts++
	// A transport error may quote what the server sent (net/http's parse
	// errors do): scrub it before the policy, the log or the caller sees it.
	err = cl.sc.scrubErr(err)
	if !cl.skipped.Load() {
		cl.pendingCost = 0 // the retry it paid for was made
	}
	o := &cl.last
	*o = attemptOutcome{Attempt: Attempt{Number: cl.attempts, Method: cl.method, Path: cl.path, Err: err}}
	if resp != nil && err != nil {
		resp.Body.Close()
	} else if resp != nil {
		restoreLocation(resp)
		o.StatusCode, o.Header, o.resp = resp.StatusCode, resp.Header, resp
		cl.readResponse(resp, o)
	}
	if mayHaveExecuted(&o.Attempt, cl.sent()) {
		cl.ambiguous = true
	}
	if o.Err == nil && isReplayed(o.Header) {
		// The stored outcome of the key: a retry would replay it again, so
		// it is final whatever its status, and the policy is not asked.
		o.retry, o.reason = false, "replayed stored outcome"
	} else {
		if policy := cl.e.cfg.retryPolicy; policy == nil {
			o.retry, o.reason = DefaultRetryPolicy(&o.Attempt)
		} else {
			// The caller's policy gets an Attempt of its own, as it always
			// has: it may keep it, and what it changes counts.
			a := o.Attempt
			o.retry, o.reason = policy(&a)
			o.Attempt = a
		}
		// A policy may explain itself with what the server sent.
		o.reason = cl.sc.scrub(o.reason)
		if o.retry && cl.unkeyed && (o.StatusCode != 0 || (cl.sent() && !notSent(o.Err))) {
			// Without a key, a resend could execute it twice.
			o.retry, o.reason = false, "no idempotency key: not resent once it may have reached the gateway"
		}
	}
	if !o.retry {
		cl.refund(o)
	}
	if !o.retry || ctx.Err() != nil || cl.attempts > cl.e.cfg.maxRetries {
		return false
	}
	wait := cl.e.retryWait(cl.attempts-1, o.Header, time.Now())
	if deadline, ok := ctx.Deadline(); ok && time.Until(deadline) < wait {
		cl.deadlineWait = wait
		return false
	}
	if b := cl.e.cfg.budget; b != nil {
		cost := b.cost(&o.Attempt)
		if !b.withdraw(cost) {
			cl.budgetStopped = true
			return false
		}
		cl.retryCost, cl.pendingCost = cost, cost
	}
	cl.wait = wait
	level := slog.LevelInfo
	if mayHaveExecuted(&o.Attempt, true) {
		level = slog.LevelWarn
	}
	cl.log(ctx, level, "payonce: retrying request", slog.Duration("wait", wait))
	return true
}

// refund gives tokens back to the retry budget when the gateway gave an
// answer that is not retried, which shows that it is healthy: the cost of
// this call's last retry if it made one, or else the success refund.
func (cl *call) refund(o *attemptOutcome) {
	b := cl.e.cfg.budget
	if b == nil || o.StatusCode == 0 || (o.StatusCode >= 500 && !isReplayed(o.Header)) {
		return
	}
	if cl.retryCost > 0 {
		b.deposit(cl.retryCost)
	} else {
		b.deposit(b.cfg.SuccessRefund)
	}
}

// sent reports whether the last attempt may have reached the server. It is
// conservative: only a trace showing that no connection was obtained, or a
// context that had ended before the attempt, proves that nothing was sent.
func (cl *call) sent() bool {
	return !cl.skipped.Load() && !(cl.getConn.Load() && !cl.gotConn.Load())
}

// readResponse reads the body within the size limit, closes it, and keeps
// it in o: the 2xx bytes for decoding, the parsed error for the retry
// decision.
func (cl *call) readResponse(resp *http.Response, o *attemptOutcome) {
	orig := resp.Body
	defer orig.Close()
	if resp.StatusCode < 200 {
		// A 1xx has no body; after a 101 the body is the raw connection,
		// which may never end.
		resp.Body = http.NoBody
		o.APIError = newAPIError(resp.StatusCode, resp.Header, nil, false, nil, cl.key, cl.sc)
		return
	}
	success := resp.StatusCode >= 200 && resp.StatusCode < 300
	limit := int64(maxErrorBody)
	if success {
		limit = maxSuccessBody
	}
	var body []byte
	var err error
	if n := resp.ContentLength; n >= 0 && n <= limit {
		body = make([]byte, n)
		var k int
		k, err = io.ReadFull(orig, body)
		body = body[:k]
	} else {
		body, err = io.ReadAll(io.LimitReader(orig, limit+1))
	}
	tooLarge := int64(len(body)) > limit
	if tooLarge {
		body = body[:limit]
	}
	// The bytes are kept in the call's state, where Do decodes them; the
	// closed original must not be read again.
	resp.Body = http.NoBody
	o.raw = body
	switch {
	case !success:
		o.APIError = newAPIError(resp.StatusCode, resp.Header, body, tooLarge, err, cl.key, cl.sc)
	case err != nil:
		// net/http's body errors may quote the server's bytes (a malformed
		// chunk trailer does): scrub, as checkRetry did for transport errors.
		o.Err = cl.sc.scrubErr(fmt.Errorf("read response body: %w", err))
	case tooLarge:
		o.bodyErr = fmt.Errorf("response body larger than %d MiB", maxSuccessBody>>20)
	default:
		o.body = body
	}
}

// mayHaveExecuted reports whether an attempt may have executed on the
// gateway, so that its outcome is unknown unless a later attempt settles it.
func mayHaveExecuted(a *Attempt, sent bool) bool {
	switch {
	case a.Err != nil:
		return sent && !notSent(a.Err)
	case a.StatusCode < 200 || (a.StatusCode >= 300 && a.StatusCode < 400):
		// A 1xx as the final answer, or a 3xx: not the gateway's contract.
		// Who answered, and after what, is unknown.
		return true
	case a.StatusCode >= 500 && a.StatusCode != http.StatusNotImplemented:
		return a.APIError == nil || a.APIError.Code != codeStoreUnavailable
	case a.StatusCode == http.StatusConflict:
		return a.APIError != nil && a.APIError.Code == codeKeyInUse
	}
	return false
}

// notSent reports whether err proves the request never left the client: a
// failure to dial, resolve or verify the server.
func notSent(err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && (op.Op == "dial" || op.Op == "proxyconnect") {
		return true
	}
	var dns *net.DNSError
	return errors.As(err, &dns) || isCertError(err)
}

func isCertError(err error) bool {
	var verr *tls.CertificateVerificationError
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	return errors.As(err, &verr) || errors.As(err, &unknown) || errors.As(err, &invalid) || errors.As(err, &host)
}

// describeErr names a transport failure for logs and retry reasons.
func describeErr(err error) string {
	var ate *attemptTimeoutError
	var ne net.Error
	switch {
	case errors.As(err, &ate):
		return ate.Error()
	case errors.Is(err, syscall.ECONNREFUSED):
		return "connection refused"
	case errors.Is(err, syscall.ECONNRESET):
		return "connection reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "connection closed (EOF)"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	}
	return "transport error"
}

// log writes one record about this call. It never logs the API key, headers
// or bodies: only the method, path, key, attempt and the gateway's request id.
func (cl *call) log(ctx context.Context, level slog.Level, msg string, extra ...slog.Attr) {
	lg := cl.e.cfg.logger
	if !lg.Enabled(ctx, level) {
		return
	}
	o := &cl.last
	attrs := []slog.Attr{
		slog.String("method", cl.method),
		slog.String("path", cl.path),
		slog.Int("attempt", cl.attempts),
		slog.Int("max_attempts", cl.e.cfg.maxRetries+1),
		slog.String("reason", o.reason),
		slog.String("idempotency_key", cl.key),
	}
	if o.StatusCode != 0 {
		attrs = append(attrs, slog.Int("status", o.StatusCode), slog.String("request_id", cl.requestID(o.Header)))
	}
	if o.Err != nil {
		attrs = append(attrs, slog.String("error", cl.sc.scrub(o.Err.Error())))
	}
	lg.LogAttrs(ctx, level, msg, append(attrs, extra...)...)
}

// ---------------------------------------------------------------------------
// The per-attempt timeout, as a RoundTripper under the attempt's http.Client,
// so that a hung attempt is abandoned and retried while the caller's context
// lives on.

var errAttemptTimeout = errors.New("payonce: attempt timeout")

// attemptTransport deliberately has no CloseIdleConnections method, so that
// http.Client.CloseIdleConnections does nothing: go-retryablehttp, which the
// engine used to run, called it when a call's context ended during a wait,
// which made every other call of the Client redial, as callers time out in
// an outage, when dialling costs most.
type attemptTransport struct {
	base    http.RoundTripper
	timeout time.Duration
}

func (t *attemptTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	parent := req.Context()
	cl, _ := parent.Value(callKey{}).(*call)
	if cl != nil {
		cl.getConn.Store(false)
		cl.gotConn.Store(false)
		cl.skipped.Store(false)
	}
	if err := parent.Err(); err != nil {
		if cl != nil {
			cl.skipped.Store(true)
		}
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, err
	}
	ctx, cancel := context.WithTimeoutCause(parent, t.timeout, errAttemptTimeout)
	// The attempt's request and its response body's wrapper, in one
	// allocation, or none for the first attempt: RoundTrip runs once per
	// attempt, on the goroutine of engine.do, before checkRetry counts it.
	var a *attempt
	if cl != nil && cl.attempts == 0 {
		a = &cl.firstAttempt
	} else {
		a = new(attempt)
	}
	a.req = *req.WithContext(ctx)
	resp, err := t.base.RoundTrip(unreplayable(&a.req))
	if err != nil {
		err = t.mapErr(parent, ctx, err)
		cancel()
		return nil, err
	}
	hideLocation(resp)
	a.body = attemptBody{ReadCloser: resp.Body, t: t, parent: parent, ctx: ctx, cancel: cancel}
	resp.Body = &a.body
	return resp, nil
}

// attempt is what attemptTransport makes for one attempt.
type attempt struct {
	req  http.Request
	body attemptBody
}

// hiddenLocation holds a 3xx's Location between attemptTransport and
// checkRetry. It is not a valid field name, so no server can send it.
const hiddenLocation = "payonce hidden location"

// hideLocation takes a 3xx's Location out of sight of http.Client, which
// parses it before CheckRedirect runs and turns an unparsable one into a
// transport error, which the policy would retry: a 3xx must reach the
// client as the response it is, never followed and never retried (see
// WithHTTPClient). With no Location, http.Client returns the response as
// it is. restoreLocation puts it back.
func hideLocation(resp *http.Response) {
	if resp.StatusCode < 300 || resp.StatusCode >= 400 || resp.Header == nil {
		return
	}
	if loc, ok := resp.Header["Location"]; ok {
		delete(resp.Header, "Location")
		resp.Header[hiddenLocation] = loc
	}
}

// restoreLocation undoes hideLocation, so that the response header is what
// the server sent.
func restoreLocation(resp *http.Response) {
	if loc, ok := resp.Header[hiddenLocation]; ok {
		delete(resp.Header, hiddenLocation)
		resp.Header["Location"] = loc
	}
}

// unreplayable makes r, a copy that the attempt owns, impossible for
// net/http to resend by itself. net/http's Transport silently resends a
// request whose connection turns out to be dead when the request is
// "replayable": an idempotent method or an Idempotency-Key header, and a
// body that is nil, http.NoBody or rewindable with GetBody. That resend
// would be an attempt that the attempt count, the retry log, the backoff and
// the budget never see. So every attempt goes with GetBody nil and a body
// that is never nil: the client's engine makes every resend itself.
//
// The cost is small. A GET's empty body is probed and sent as no body at
// all; a POST with no body (only through Client.Do) goes as an empty
// chunked body instead of Content-Length: 0; and an attempt that died
// before writing anything is retried by the engine, counted, rather than
// by net/http.
func unreplayable(r *http.Request) *http.Request {
	r.GetBody = nil
	if r.Body == nil || r.Body == http.NoBody {
		r.Body = io.NopCloser(strings.NewReader(""))
	}
	return r
}

// mapErr turns a failure caused by the attempt timeout (and not by the
// caller's context) into an *attemptTimeoutError.
func (t *attemptTransport) mapErr(parent, ctx context.Context, err error) error {
	if parent.Err() == nil && errors.Is(context.Cause(ctx), errAttemptTimeout) {
		return &attemptTimeoutError{timeout: t.timeout}
	}
	return err
}

// attemptBody keeps the attempt's context alive while the body is read, and
// releases it on Close.
type attemptBody struct {
	io.ReadCloser
	t           *attemptTransport
	parent, ctx context.Context
	cancel      context.CancelFunc
}

func (b *attemptBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && err != io.EOF {
		err = b.t.mapErr(b.parent, b.ctx, err)
	}
	return n, err
}

func (b *attemptBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// attemptTimeoutError reports an attempt abandoned by the per-attempt
// timeout. It is a net.Error with Timeout true. It deliberately does not
// match context.DeadlineExceeded, which is the caller's own deadline.
type attemptTimeoutError struct{ timeout time.Duration }

var _ net.Error = (*attemptTimeoutError)(nil)

func (e *attemptTimeoutError) Error() string {
	return fmt.Sprintf("attempt timed out after %v", e.timeout)
}
func (e *attemptTimeoutError) Timeout() bool   { return true }
func (e *attemptTimeoutError) Temporary() bool { return true }
