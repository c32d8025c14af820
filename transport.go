package payonce

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The retry engine, and the *http.Client that hands it to other SDKs.
//
// There is one engine: engine.do's loop, which a *call's checkRetry
// (retry.go) steers, over one attempt client whose attemptTransport sets the
// per-attempt timeout and makes every attempt impossible for net/http to
// resend. Client.Do and engine.RoundTrip differ only in how they build the
// request and what they make of the last attempt: a decoded resource for
// the typed client, an *http.Response or an error for an SDK.

// AttemptsHeader is set by the transport of [NewHTTPClient] on every
// response it returns: the number of attempts the engine made, in decimal.
// An SDK that exposes the response's headers (stripe-go's
// LastResponse.Header) shows it to its caller.
const AttemptsHeader = "Payonce-Attempts"

// engine runs payonce's retries. It is the Transport of NewHTTPClient's
// client, and Client.Do sends through it too.
type engine struct {
	cfg *config
	hc  *http.Client // one attempt: the per-attempt timeout, no redirects, no hidden resends

	// The scrubbers of the Authorization headers RoundTrip has seen: the
	// last one, and up to maxScrubbers in all.
	lastScrubber atomic.Pointer[authScrub]
	scrubMu      sync.Mutex
	scrubbers    map[string]*scrubber
}

// authScrub is the scrubber of one Authorization header value.
type authScrub struct {
	auth string
	sc   *scrubber
}

// maxScrubbers bounds the engine's cache of scrubbers: an SDK uses one key,
// or a few; a caller rotating short-lived tokens only rebuilds them.
const maxScrubbers = 16

// scrubberFor returns the scrubber of the credentials in an Authorization
// header value (see authScrubber), built once per distinct value.
func (e *engine) scrubberFor(auth string) *scrubber {
	if auth == "" {
		return e.cfg.scrubber
	}
	if last := e.lastScrubber.Load(); last != nil && last.auth == auth {
		return last.sc
	}
	e.scrubMu.Lock()
	sc, ok := e.scrubbers[auth]
	if !ok {
		sc = authScrubber(auth)
		if len(e.scrubbers) >= maxScrubbers || e.scrubbers == nil {
			e.scrubbers = make(map[string]*scrubber, maxScrubbers)
		}
		e.scrubbers[auth] = sc
	}
	e.scrubMu.Unlock()
	e.lastScrubber.Store(&authScrub{auth: auth, sc: sc})
	return sc
}

var _ http.RoundTripper = (*engine)(nil)

func newEngine(cfg *config) *engine {
	return &engine{cfg: cfg, hc: newHTTPClient(cfg.httpClient, cfg.attemptTimeout)}
}

// context returns ctx carrying the call, for attemptTransport, and its
// trace.
func (cl *call) context(ctx context.Context) context.Context {
	cl.ctx = callContext{Context: ctx, cl: cl}
	return httptrace.WithClientTrace(&cl.ctx, &cl.trace)
}

// callContext is a context carrying a call as the value of callKey{}, as
// context.WithValue(ctx, callKey{}, cl) would, but inside the call, so that
// it costs no allocation of its own.
type callContext struct {
	context.Context
	cl *call
}

func (c *callContext) Value(key any) any {
	if key == (callKey{}) {
		return c.cl
	}
	return c.Context.Value(key)
}

// do sends req, whose context carries cl, with every retry the policy, the
// attempt limit, the deadline and the budget allow; every attempt sends
// body, from its start. The outcome of the last attempt is in cl.last.
//
// It is the loop of go-retryablehttp's Client.Do, which the engine used to
// run, without its request wrapper: checkRetry reads the attempt and decides,
// and the wait it computed runs on a timer against the context, which ends
// the call without another attempt. Unlike go-retryablehttp, it does not
// ask the http.Client to close its idle connections then, which would make
// every other call of the Client redial.
func (e *engine) do(req *http.Request, body []byte, cl *call) {
	ctx := req.Context()
	for {
		if body != nil {
			req.Body = cl.requestBody(body)
		}
		resp, err := e.hc.Do(req)
		retry := cl.checkRetry(ctx, resp, err)
		if resp != nil {
			resp.Body.Close() // checkRetry has kept what it needs of it
		}
		if !retry {
			return
		}
		timer := time.NewTimer(cl.wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.C:
		}
		// The next attempt gets a request of its own, as the transport may
		// still hold this one (persistConn.writeLoop closes its body).
		next := *req
		req = &next
	}
}

// requestBody returns a reader of body for the next attempt. The first
// attempt's reader is part of the call; a retry gets a new one, as the
// transport may still hold the last one. It is an io.NopCloser around a
// *bytes.Reader, which net/http knows to be in memory: it sends the
// headers and a small body in one write.
func (cl *call) requestBody(body []byte) io.ReadCloser {
	r := &cl.firstBody
	if cl.attempts > 0 {
		r = new(bytes.Reader)
	}
	r.Reset(body)
	return io.NopCloser(r)
}

// NewHTTPClient returns an *http.Client whose Transport runs payonce's retry
// engine, the one [Client] uses, for SDKs that take an HTTP client, such as
// stripe-go:
//
//	hc, err := payonce.NewHTTPClient()
//	backends := stripe.NewBackendsWithConfig(&stripe.BackendConfig{
//		HTTPClient: hc, MaxNetworkRetries: stripe.Int64(0)}) // payonce retries, stripe-go does not
//
// It takes the Options of [NewClient] that concern retries: [WithMaxRetries],
// [WithBackoff], [WithBackoffFunc], [WithRetryPolicy], [WithAttemptTimeout],
// [WithMaxRetryAfter], [WithRetryBudget], [WithoutRetryBudget], [WithLogger]
// and [WithHTTPClient] (whose Transport is the base for every attempt; its
// Timeout bounds each attempt). [WithBaseURL] and [WithAllowPlainHTTP] are
// refused with an error naming them, as the SDK chooses each request's URL;
// [WithIdempotencyHeader], [WithoutGeneratedKeys] and [WithMaxRequestBody]
// apply here only.
//
// Each request is sent as follows:
//   - its body is read once, before anything is sent, and every attempt
//     sends the same bytes; GetBody is not needed. A body larger than
//     [WithMaxRequestBody] ([DefaultMaxRequestBody], 1 MiB) is refused,
//     unsent, with an error wrapping [ErrInvalidRequest];
//   - a request carrying the idempotency header (Idempotency-Key, or the
//     name set by WithIdempotencyHeader) keeps it, byte for byte, on every
//     attempt. A request with any method but GET, HEAD and OPTIONS that
//     carries none is given a new key ([NewKey], a UUID), unless
//     WithoutGeneratedKeys is given: then it is sent as it is and never
//     resent once it may have reached the gateway;
//   - the engine makes every resend itself: net/http cannot replay an
//     attempt, whatever base transport is given, so the attempt count, the
//     log, the backoff and the budget see each one; redirects are never
//     followed, and a 3xx is never retried (see below);
//   - what is retried is [DefaultRetryPolicy]'s (or WithRetryPolicy's):
//     among others 429 (Stripe's lock_timeout included), 5xx, 409
//     idempotency_key_in_use and transport failures; Stripe-Should-Retry
//     true or false overrides the status; Retry-After is honoured up to
//     WithMaxRetryAfter; a replay (Idempotent-Replayed: true) is final;
//   - the credentials of its Authorization header (a Bearer token, Basic
//     credentials, or a bare key) are scrubbed, as [NewClient] scrubs its
//     API key, from every error the transport returns, from the log and
//     from what a RetryPolicy sees, whatever the server echoes. A response
//     returned to the SDK is the server's, untouched but for
//     AttemptsHeader and an unparsable Location (see below).
//
// The result is the last response, its body buffered, with [AttemptsHeader]
// set, unless the outcome is unknown: when retries end after an attempt that
// may have executed a method that is not safe (a connection lost after the
// request was sent, a 5xx, a 409 in use), RoundTrip returns an
// *[OutcomeUnknownError] with the key, and no response. http.Client wraps it
// in a *url.Error, and errors.As reaches it through that and through the
// SDK's own wrapping (stripe-go returns the client's error as it is). A
// definite answer (a 2xx, a 4xx, a replay, a 429 after the last retry) is
// returned as the response, for the SDK to read.
//
// A 3xx is outside the gateway's contract. To a POST (any method but GET,
// HEAD and OPTIONS) its outcome is unknown, as what happened before the
// redirect is unknown. To a GET it is the answer: the response, never
// followed, whatever its Location says, with one change. http.Client parses
// the Location of a 301, 302, 303, 307 or 308 it could follow before asking
// CheckRedirect, and fails the request when it does not parse, with an
// error quoting it that the engine cannot scrub. So such a Location is
// dropped from the response, which reaches the SDK as every 3xx does.
func NewHTTPClient(opts ...Option) (*http.Client, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	if cfg.clientOnly != "" {
		return nil, fmt.Errorf("%w: %s does not apply to NewHTTPClient: the SDK using the client "+
			"sets the URL of each request", ErrInvalidConfig, cfg.clientOnly)
	}
	e := newEngine(&cfg)
	return &http.Client{
		Transport:     e,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}

// WithIdempotencyHeader names the header that carries a request's
// idempotency key, for a gateway whose name is not Idempotency-Key, such as
// Checkout.com's "Cko-Idempotency-Key". [NewHTTPClient] only.
func WithIdempotencyHeader(name string) Option {
	return func(c *config) error {
		if name == "" || !validHeaderName(name) {
			return fmt.Errorf("%w: WithIdempotencyHeader: %q is not a header name", ErrInvalidConfig, name)
		}
		c.keyHeader = textproto.CanonicalMIMEHeaderKey(name)
		appliesOnly(&c.transportOnly, "WithIdempotencyHeader")
		return nil
	}
}

// DefaultMaxRequestBody bounds the request body that [NewHTTPClient]'s
// transport buffers: 1 MiB, the bound of the mock and of the idempotency
// middleware. A payment request is a few KiB at most.
const DefaultMaxRequestBody = 1 << 20

// WithMaxRequestBody sets the largest request body, in bytes, that
// [NewHTTPClient]'s transport accepts (it buffers each body to resend the
// same bytes). A larger body is refused before anything is sent, with an
// error wrapping [ErrInvalidRequest]. Must be positive. Default:
// [DefaultMaxRequestBody]. [NewHTTPClient] only.
func WithMaxRequestBody(n int64) Option {
	return func(c *config) error {
		if n <= 0 {
			return fmt.Errorf("%w: WithMaxRequestBody: %d is not positive", ErrInvalidConfig, n)
		}
		c.maxRequestBody = n
		appliesOnly(&c.transportOnly, "WithMaxRequestBody")
		return nil
	}
}

// WithoutGeneratedKeys makes [NewHTTPClient]'s transport send a request
// without an idempotency key as it is, rather than give it a new one. Such a
// request, with any method but GET, HEAD and OPTIONS, is retried only when
// its attempt provably never reached the gateway (a refused dial); after
// that its outcome is unknown, an *[OutcomeUnknownError] with an empty key.
// [NewHTTPClient] only.
func WithoutGeneratedKeys() Option {
	return func(c *config) error {
		c.noNewKeys = true
		appliesOnly(&c.transportOnly, "WithoutGeneratedKeys")
		return nil
	}
}

func validHeaderName(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isIDByte(c) && c != '.' && c != '!' && c != '#' && c != '$' && c != '%' && c != '&' &&
			c != '\'' && c != '*' && c != '+' && c != '^' && c != '`' && c != '|' && c != '~' {
			return false
		}
	}
	return true
}

// RoundTrip sends req with payonce's retries; see [NewHTTPClient].
func (e *engine) RoundTrip(req *http.Request) (*http.Response, error) {
	body, err := e.readBody(req)
	if err != nil {
		return nil, err
	}
	h := req.Header
	key := h.Get(e.cfg.keyHeader)
	unkeyed := false
	if _, ok := h[e.cfg.keyHeader]; !ok && !isSafeMethod(req.Method) {
		if e.cfg.noNewKeys {
			unkeyed = true
		} else {
			key = NewKey()
			h = h.Clone() // a RoundTripper must not change the caller's request
			if h == nil {
				h = http.Header{}
			}
			h[e.cfg.keyHeader] = []string{key}
		}
	}

	cl := e.newCall(req.Method, req.URL.Path, key)
	cl.unkeyed = unkeyed
	// The SDK's API key is in its Authorization header, and a hostile
	// server may echo it: keep it out of the errors, the log and what the
	// policy sees, as the typed client keeps out its own.
	cl.sc = e.scrubberFor(req.Header.Get("Authorization"))
	r := req.WithContext(cl.context(req.Context())) // a shallow copy, which the engine may change
	r.Header, r.Body, r.GetBody = h, nil, nil
	if body != nil {
		r.ContentLength = int64(len(body))
	}
	e.do(r, body, cl)
	cl.settleBudget()
	answered, failure := cl.verdict()
	if answered {
		return cl.response(req), nil
	}
	err = cl.fail(req.Context(), failure)
	if !cl.unknown() && cl.last.resp != nil && cl.last.bodyErr == nil && cl.last.Err == nil {
		// Retries ran out on a status that executed nothing (a 429, a
		// GET's 503): the SDK reads the answer as it would without us.
		return cl.response(req), nil
	}
	return nil, cl.sc.scrubResult(err)
}

// readBody reads the request's body once, within the limit of
// WithMaxRequestBody, before anything is sent, and closes it, as a
// RoundTripper must.
func (e *engine) readBody(req *http.Request) ([]byte, error) {
	if req.Body == nil || req.Body == http.NoBody {
		return nil, nil
	}
	defer req.Body.Close()
	limit := e.cfg.maxRequestBody
	tooLarge := func() error {
		return fmt.Errorf("%w: %s %s: request body larger than %d bytes (WithMaxRequestBody): not sent",
			ErrInvalidRequest, req.Method, req.URL.Path, limit)
	}
	if req.ContentLength > limit {
		return nil, tooLarge()
	}
	body, err := io.ReadAll(io.LimitReader(req.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("payonce: %s %s: read request body: %w", req.Method, req.URL.Path, err)
	}
	if int64(len(body)) > limit {
		return nil, tooLarge()
	}
	return body, nil
}

// response rebuilds the last attempt's response around the bytes read from
// it, for the SDK.
func (cl *call) response(req *http.Request) *http.Response {
	o := &cl.last
	resp := *o.resp
	resp.Header = o.Header
	if resp.Header == nil {
		resp.Header = http.Header{}
	}
	resp.Header[AttemptsHeader] = []string{strconv.Itoa(cl.attempts)}
	dropUnparsableLocation(&resp, req)
	resp.Body = io.NopCloser(bytes.NewReader(o.raw))
	resp.ContentLength = int64(len(o.raw))
	resp.TransferEncoding = nil
	resp.Request = req
	return &resp
}

// dropUnparsableLocation removes the Location of resp, the answer to req,
// when http.Client would parse it, and fail the request because it does
// not parse (see NewHTTPClient). It parses it as http.Client does, and
// only for the statuses of a redirect it could follow (its
// redirectBehavior): a 307 or 308 to a request with a body it cannot
// rewind is returned as it is.
func dropUnparsableLocation(resp *http.Response, req *http.Request) {
	switch resp.StatusCode {
	case http.StatusMovedPermanently, http.StatusFound, http.StatusSeeOther:
	case http.StatusTemporaryRedirect, http.StatusPermanentRedirect:
		if req.GetBody == nil && req.Body != nil && req.Body != http.NoBody {
			return
		}
	default:
		return
	}
	if loc := resp.Header.Get("Location"); loc != "" {
		if _, err := req.URL.Parse(loc); err != nil {
			delete(resp.Header, "Location")
		}
	}
}
