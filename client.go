package payonce

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// Version is the version of this SDK, sent in the User-Agent header.
const Version = "0.1.0"

// userAgent is the User-Agent header of the typed client's requests.
const userAgent = "payonce-go/" + Version

// Environment variables that fill in what NewClient's arguments leave out.
const (
	EnvAPIKey  = "PAYONCE_API_KEY"
	EnvBaseURL = "PAYONCE_BASE_URL"
)

// Client talks to a payonce gateway. Create it with [NewClient]; a Client is
// safe for concurrent use by many goroutines and should be reused, as it
// holds a pool of connections.
type Client struct {
	cfg    config
	eng    *engine // the retry engine, which NewHTTPClient's transport runs too
	common service

	// Charges creates, reads, captures and lists charges.
	Charges *ChargesService
	// Refunds creates and reads refunds.
	Refunds *RefundsService
}

// service is shared by every service of a Client, as in go-github.
type service struct {
	client *Client
}

type config struct {
	apiKey         secret
	authorization  secret    // "Bearer " + apiKey, built once for every request
	scrubber       *scrubber // redacts apiKey from what the server sends back
	baseURL        *url.URL
	rawBaseURL     string
	httpClient     *http.Client
	maxRetries     int
	minBackoff     time.Duration
	maxBackoff     time.Duration
	attemptTimeout time.Duration
	maxRetryAfter  time.Duration
	logger         *slog.Logger
	allowPlainHTTP bool
	retryPolicy    RetryPolicy // nil: DefaultRetryPolicy, which checkRetry calls directly
	backoff        BackoffFunc
	budget         *RetryBudget // nil: retries are bounded by maxRetries alone
	budgetSet      bool
	keyHeader      string // canonical name of the idempotency header
	noNewKeys      bool   // NewHTTPClient: send a request without a key as it is
	maxRequestBody int64  // NewHTTPClient: the largest request body buffered
	clientOnly     string // the first option given that applies to NewClient only
	transportOnly  string // the first option given that applies to NewHTTPClient only
}

// newConfig returns the defaults with opts applied.
func newConfig(opts []Option) (config, error) {
	cfg := config{
		maxRetries:     DefaultMaxRetries,
		minBackoff:     DefaultMinBackoff,
		maxBackoff:     DefaultMaxBackoff,
		attemptTimeout: DefaultAttemptTimeout,
		maxRetryAfter:  DefaultMaxRetryAfter,
		logger:         slog.New(slog.DiscardHandler),
		backoff:        DefaultBackoff,
		keyHeader:      "Idempotency-Key",
		maxRequestBody: DefaultMaxRequestBody,
	}
	for i, opt := range opts {
		if opt == nil {
			return cfg, fmt.Errorf("%w: option %d is nil", ErrInvalidConfig, i)
		}
		if err := opt(&cfg); err != nil {
			return cfg, err
		}
	}
	if !cfg.budgetSet {
		cfg.budget, _ = NewRetryBudget(RetryBudgetConfig{}) // the defaults are valid
	}
	return cfg, nil
}

// appliesOnly records the name of an option that applies to one constructor.
func appliesOnly(name *string, option string) {
	if *name == "" {
		*name = option
	}
}

// An Option configures a Client. Options validate their argument; NewClient
// returns the first error.
type Option func(*config) error

// WithBaseURL sets the gateway's URL, such as "https://gateway.example.com"
// or "http://127.0.0.1:12111" for the mock. It must be absolute, without
// credentials, query or fragment; a path is kept as a prefix. Plain http is
// refused except to loopback addresses, unless [WithAllowPlainHTTP] is given.
// There is no default: without this option, $PAYONCE_BASE_URL is used.
func WithBaseURL(rawURL string) Option {
	return func(c *config) error {
		if rawURL == "" {
			return fmt.Errorf("%w: WithBaseURL: empty URL", ErrInvalidConfig)
		}
		c.rawBaseURL = rawURL
		appliesOnly(&c.clientOnly, "WithBaseURL")
		return nil
	}
}

// WithHTTPClient sets the HTTP client used for every attempt. The client is
// copied when NewClient runs (changes to it afterwards are not seen), and its
// Transport (http.DefaultTransport when nil) is wrapped to add the
// per-attempt timeout. The default client has dial, TLS handshake and idle
// timeouts, and keeps up to 32 idle connections per host.
//
// The client never follows a redirect, whatever hc.CheckRedirect says: the
// gateway's contract has no 3xx, and following one could send the API key
// to another origin (another host, or the same host on another port) or in
// clear text after an https→http downgrade, and would turn a POST into a
// GET whose answer reads as the POST's. A 3xx is returned as an *[Error]
// with its status, never retried, whatever its Location says; for a method
// that is not safe (POST, and any but GET, HEAD and OPTIONS) it comes inside
// an *[OutcomeUnknownError], as what happened before the redirect is
// unknown.
//
// The client makes every resend itself, so hc.Transport should not retry on
// its own: with http.Transport (the default) it cannot, as each attempt is
// sent so that net/http cannot replay it.
func WithHTTPClient(hc *http.Client) Option {
	return func(c *config) error {
		if hc == nil {
			return fmt.Errorf("%w: WithHTTPClient: nil *http.Client", ErrInvalidConfig)
		}
		c.httpClient = hc
		return nil
	}
}

// WithMaxRetries sets how many times a failed attempt is retried (0 to 20;
// 0 disables retries). Default: [DefaultMaxRetries].
func WithMaxRetries(n int) Option {
	return func(c *config) error {
		if n < 0 || n > 20 {
			return fmt.Errorf("%w: WithMaxRetries: %d is outside 0..20", ErrInvalidConfig, n)
		}
		c.maxRetries = n
		return nil
	}
}

// WithBackoff sets the bounds of the exponential backoff: retry n waits a
// random time in [0, min(max, min·2^n)]. 0 < min <= max. Default:
// [DefaultMinBackoff], [DefaultMaxBackoff].
func WithBackoff(min, max time.Duration) Option {
	return func(c *config) error {
		if min <= 0 || max < min {
			return fmt.Errorf("%w: WithBackoff: need 0 < min <= max, got min %v, max %v", ErrInvalidConfig, min, max)
		}
		c.minBackoff, c.maxBackoff = min, max
		return nil
	}
}

// WithBackoffFunc replaces the backoff computation (full jitter by default,
// see [DefaultBackoff]). Retry-After still takes precedence, and a result
// is clamped to [0, max].
func WithBackoffFunc(f BackoffFunc) Option {
	return func(c *config) error {
		if f == nil {
			return fmt.Errorf("%w: WithBackoffFunc: nil function", ErrInvalidConfig)
		}
		c.backoff = f
		return nil
	}
}

// WithRetryPolicy replaces the decision to retry (see [DefaultRetryPolicy],
// which a policy can wrap). Must be safe for concurrent use.
func WithRetryPolicy(p RetryPolicy) Option {
	return func(c *config) error {
		if p == nil {
			return fmt.Errorf("%w: WithRetryPolicy: nil policy", ErrInvalidConfig)
		}
		c.retryPolicy = p
		return nil
	}
}

// WithAttemptTimeout bounds each attempt, from sending the request to
// reading the whole response. An attempt that runs out is abandoned and
// retried with the same key; the caller's context bounds the whole call.
// Must be positive. Default: [DefaultAttemptTimeout].
func WithAttemptTimeout(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: WithAttemptTimeout: %v is not positive", ErrInvalidConfig, d)
		}
		c.attemptTimeout = d
		return nil
	}
}

// WithMaxRetryAfter caps the wait a gateway can ask for with Retry-After,
// which is honoured (in seconds or as an HTTP date) on every retried
// response in place of the backoff. Must be positive. Default:
// [DefaultMaxRetryAfter].
func WithMaxRetryAfter(d time.Duration) Option {
	return func(c *config) error {
		if d <= 0 {
			return fmt.Errorf("%w: WithMaxRetryAfter: %v is not positive", ErrInvalidConfig, d)
		}
		c.maxRetryAfter = d
		return nil
	}
}

// WithLogger sets the logger for retries (Info or Warn, with method, path,
// attempt, wait, reason, idempotency key and request id) and for calls that
// fail after retrying (Warn). The API key, headers and bodies are never
// logged. Default: a logger that discards everything.
func WithLogger(l *slog.Logger) Option {
	return func(c *config) error {
		if l == nil {
			return fmt.Errorf("%w: WithLogger: nil *slog.Logger", ErrInvalidConfig)
		}
		c.logger = l
		return nil
	}
}

// WithRetryBudget sets the [RetryBudget] that bounds this client's retries,
// made by [NewRetryBudget]. A budget is shared by all the calls of the
// client, and may be shared by several clients: give the clients of one
// process that talk to one gateway the same budget, so that quiet ones
// spend it as fast as busy ones in an outage. Default: a budget of its own
// with the defaults of [RetryBudgetConfig].
//
// A larger Capacity suits a client that must ride out long stretches of
// failures against a gateway known to cope with the extra load.
func WithRetryBudget(b *RetryBudget) Option {
	return func(c *config) error {
		if b == nil || b.cfg.Capacity == 0 {
			return fmt.Errorf("%w: WithRetryBudget: a nil or zero RetryBudget; make one with NewRetryBudget, "+
				"or use WithoutRetryBudget", ErrInvalidConfig)
		}
		c.budget, c.budgetSet = b, true
		return nil
	}
}

// WithoutRetryBudget lets every call retry up to [WithMaxRetries], whatever
// the client's other calls see. Only for tests that count retries, or for a
// client alone on a gateway that nobody else uses: a fleet without budgets
// multiplies the load of an outage by the number of attempts.
func WithoutRetryBudget() Option {
	return func(c *config) error {
		c.budget, c.budgetSet = nil, true
		return nil
	}
}

// WithAllowPlainHTTP(true) allows a plain http:// base URL to a host that is
// not loopback, which sends the API key and card data in clear text. Only
// for test networks.
func WithAllowPlainHTTP(allow bool) Option {
	return func(c *config) error {
		c.allowPlainHTTP = allow
		appliesOnly(&c.clientOnly, "WithAllowPlainHTTP")
		return nil
	}
}

// NewClient returns a client for the gateway, authenticated with apiKey
// ("sk_test_..."). An empty apiKey is taken from $PAYONCE_API_KEY, and
// without [WithBaseURL] the base URL is taken from $PAYONCE_BASE_URL; there
// is no default gateway. NewClient never panics: invalid arguments, options
// or environment give an error wrapping [ErrInvalidConfig].
func NewClient(apiKey string, opts ...Option) (*Client, error) {
	cfg, err := newConfig(opts)
	if err != nil {
		return nil, err
	}
	if cfg.transportOnly != "" {
		return nil, fmt.Errorf("%w: %s applies to NewHTTPClient only: the typed client sends its key "+
			"in Idempotency-Key and encodes its own bodies", ErrInvalidConfig, cfg.transportOnly)
	}

	if apiKey == "" {
		apiKey = os.Getenv(EnvAPIKey)
	}
	if apiKey == "" {
		return nil, fmt.Errorf("%w: no API key: pass one to NewClient or set %s", ErrInvalidConfig, EnvAPIKey)
	}
	for i := 0; i < len(apiKey); i++ {
		if c := apiKey[i]; c < 0x21 || c > 0x7e {
			return nil, fmt.Errorf("%w: the API key has a byte outside visible ASCII at offset %d", ErrInvalidConfig, i)
		}
	}
	cfg.apiKey = newSecret(apiKey)
	cfg.authorization = newSecret("Bearer " + apiKey)
	cfg.scrubber = newScrubber(apiKey)

	if cfg.rawBaseURL == "" {
		cfg.rawBaseURL = os.Getenv(EnvBaseURL)
	}
	if cfg.rawBaseURL == "" {
		return nil, fmt.Errorf("%w: no base URL: there is no default gateway; use WithBaseURL(\"https://...\") "+
			"or set %s (the mock listens on http://127.0.0.1:12111)", ErrInvalidConfig, EnvBaseURL)
	}
	u, err := parseBaseURL(cfg.rawBaseURL, cfg.allowPlainHTTP)
	if err != nil {
		return nil, err
	}
	cfg.baseURL = u

	c := &Client{cfg: cfg}
	c.eng = newEngine(&c.cfg)
	c.common.client = c
	c.Charges = (*ChargesService)(&c.common)
	c.Refunds = (*RefundsService)(&c.common)
	return c, nil
}

func parseBaseURL(raw string, allowPlain bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: base URL: %v", ErrInvalidConfig, err)
	}
	switch {
	case !u.IsAbs() || u.Host == "" || u.Opaque != "":
		return nil, fmt.Errorf("%w: base URL %q is not absolute (want https://host[:port][/prefix])", ErrInvalidConfig, raw)
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("%w: base URL scheme %q: want https (or http to loopback)", ErrInvalidConfig, u.Scheme)
	case u.User != nil:
		return nil, fmt.Errorf("%w: base URL must not contain credentials", ErrInvalidConfig)
	case u.RawQuery != "" || u.Fragment != "" || u.ForceQuery:
		return nil, fmt.Errorf("%w: base URL %q must not have a query or fragment", ErrInvalidConfig, u.Redacted())
	case u.Scheme == "http" && !allowPlain && !isLoopback(u.Hostname()):
		return nil, fmt.Errorf("%w: base URL %q uses plain http to a host that is not loopback, "+
			"which would send the API key and card data in clear text; use https, or WithAllowPlainHTTP(true) on a test network",
			ErrInvalidConfig, u.Redacted())
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = strings.TrimRight(u.RawPath, "/")
	return u, nil
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

func newHTTPClient(user *http.Client, attemptTimeout time.Duration) *http.Client {
	var hc http.Client
	var base http.RoundTripper
	if user != nil {
		hc = *user
		base = user.Transport
		if base == nil {
			base = http.DefaultTransport
		}
	} else {
		base = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			ForceAttemptHTTP2:     true,
			MaxIdleConns:          100,
			MaxIdleConnsPerHost:   32,
			IdleConnTimeout:       90 * time.Second,
			TLSHandshakeTimeout:   10 * time.Second,
			ExpectContinueTimeout: time.Second,
		}
	}
	// Never follow a redirect, whatever the caller's client says (see
	// WithHTTPClient).
	hc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	hc.Transport = &attemptTransport{base: base, timeout: attemptTimeout}
	return &hc
}

// Format prints the client's configuration, with the API key redacted, for
// every verb: fmt.Printf("%+v", client) is safe to log.
func (c *Client) Format(f fmt.State, _ rune) {
	if c.cfg.baseURL == nil {
		fmt.Fprint(f, "payonce.Client{}")
		return
	}
	budget := "off"
	if b := c.cfg.budget; b != nil {
		budget = fmt.Sprintf("%d/%d", b.Tokens(), b.cfg.Capacity)
	}
	fmt.Fprintf(f, "payonce.Client{BaseURL:%q APIKey:%s MaxRetries:%d Backoff:%v..%v AttemptTimeout:%v MaxRetryAfter:%v RetryBudget:%s}",
		c.cfg.baseURL.String(), c.cfg.apiKey, c.cfg.maxRetries, c.cfg.minBackoff, c.cfg.maxBackoff,
		c.cfg.attemptTimeout, c.cfg.maxRetryAfter, budget)
}

// secret holds the API key behind a pointer, so that printing a struct that
// contains it shows an address, and its own methods redact it.
type secret struct{ p *string }

func newSecret(s string) secret { return secret{p: &s} }

func (s secret) reveal() string {
	if s.p == nil {
		return ""
	}
	return *s.p
}

// String shows the key's well-known prefix, never the key.
func (s secret) String() string {
	k := s.reveal()
	for _, prefix := range []string{"sk_test_", "sk_live_"} {
		if strings.HasPrefix(k, prefix) {
			return prefix + "[redacted]"
		}
	}
	return "[redacted]"
}

// GoString redacts the key for %#v.
func (s secret) GoString() string { return s.String() }

// Format redacts the key for every verb.
func (s secret) Format(f fmt.State, _ rune) { fmt.Fprint(f, s.String()) }

// LogValue redacts the key in slog records.
func (s secret) LogValue() slog.Value { return slog.StringValue(s.String()) }

// scrub removes the API key from text that came from the server or the
// network stack before it reaches an error or a log.
func (c *Client) scrub(s string) string { return c.cfg.scrubber.scrub(s) }

// requestID is the gateway's Request-Id, scrubbed and then clipped.
func (cl *call) requestID(h http.Header) string {
	return cl.sc.clean(headerValue(h, "Request-Id"), maxHeaderLen)
}

// isSafeMethod reports whether a method is sent without a generated key.
func isSafeMethod(method string) bool {
	return method == http.MethodGet || method == http.MethodHead || method == http.MethodOptions
}

// Request is a request prepared by [Client.NewRequest]: the URL resolved,
// the body encoded once, the idempotency key fixed. It is immutable, so it
// can be sent again (with the same key) by another call to [Client.Do].
type Request struct {
	method string
	url    url.URL // absolute
	path   string
	body   []byte
	key    string
}

// Method returns the HTTP method.
func (r *Request) Method() string { return r.method }

// URL returns the absolute URL.
func (r *Request) URL() string { return r.url.String() }

// IdempotencyKey returns the key sent with every attempt ("" for a GET
// without one).
func (r *Request) IdempotencyKey() string { return r.key }

// Body returns a copy of the encoded body, nil when there is none.
func (r *Request) Body() []byte { return append([]byte(nil), r.body...) }

// NewRequest prepares a request to an endpoint, for calls the typed services
// do not cover yet; send it with [Client.Do]. path is relative to the base
// URL ("v1/charges" or "/v1/charges", with an optional query); absolute URLs
// and "." or ".." segments are refused. body, when not nil, is encoded with
// encoding/json once ([]byte and json.RawMessage are sent as they are), so
// every attempt sends the same bytes.
//
// Every method other than GET, HEAD and OPTIONS carries an idempotency key:
// key when it is not empty (it must pass [ValidateKey]), or else a new
// [NewKey]. A key given to a GET is sent too; the gateway ignores it.
func (c *Client) NewRequest(method, path string, body any, key string) (*Request, error) {
	if c == nil || c.cfg.baseURL == nil {
		return nil, invalidf("the Client was not created by NewClient")
	}
	if method == "" || strings.ContainsFunc(method, func(r rune) bool { return r < 'A' || r > 'Z' }) {
		return nil, invalidf("method %q: want an upper-case HTTP method", method)
	}
	ref := &url.URL{Path: path} // what url.Parse makes of a plain path, without its cost
	var err error
	if !isPlainPath(path) {
		if ref, err = url.Parse(path); err != nil {
			return nil, invalidf("path: %v", err)
		}
	}
	if ref.Scheme != "" || ref.Host != "" || ref.User != nil || ref.Opaque != "" || strings.HasPrefix(path, "//") {
		return nil, invalidf("path %q must be relative to the base URL", path)
	}
	if ref.Fragment != "" || strings.Contains(path, "#") {
		return nil, invalidf("path %q must not have a fragment", path)
	}
	p := strings.TrimPrefix(ref.Path, "/")
	if p == "" {
		return nil, invalidf("empty path")
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "." || seg == ".." {
			return nil, invalidf("path %q has a %q segment", path, seg)
		}
	}
	u := *c.cfg.baseURL
	if u.Path == "" && len(p) < len(ref.Path) {
		u.Path = ref.Path // "/" + p already (the services' paths start with "/")
	} else {
		u.Path = u.Path + "/" + p
	}
	u.RawPath = ""
	if ref.RawPath != "" || c.cfg.baseURL.RawPath != "" {
		u.RawPath = c.cfg.baseURL.EscapedPath() + "/" + strings.TrimPrefix(ref.EscapedPath(), "/")
	}
	u.RawQuery = ref.RawQuery

	if key != "" {
		if err := ValidateKey(key); err != nil {
			return nil, err
		}
	} else if !isSafeMethod(method) {
		key = NewKey()
	}

	var b []byte
	switch v := body.(type) {
	case nil:
	case json.RawMessage:
		b = append([]byte(nil), v...)
	case []byte:
		b = append([]byte(nil), v...)
	default:
		if b, err = json.Marshal(body); err != nil {
			return nil, fmt.Errorf("payonce: encode request body: %w", err)
		}
	}
	return &Request{method: method, url: u, path: u.Path, body: b, key: key}, nil
}

// isPlainPath reports whether url.Parse would return path as the Path alone:
// letters, digits, '-', '_', '.' and '/' only (no scheme, host, query,
// fragment or escapes), and not starting with "//".
func isPlainPath(path string) bool {
	if strings.HasPrefix(path, "//") {
		return false
	}
	for i := 0; i < len(path); i++ {
		if c := path[i]; !isIDByte(c) && c != '.' && c != '/' {
			return false
		}
	}
	return true
}

// do is the typed services' single path to the gateway: NewRequest, then
// Do, so keys and retries live in one place. It returns a nil resource on
// any error.
func do[T any, PT interface {
	*T
	setLastResponse(*Response)
}](ctx context.Context, c *Client, method, path string, body any, key string) (PT, error) {
	req, err := c.NewRequest(method, path, body, key)
	if err != nil {
		return nil, err
	}
	v := PT(new(T))
	resp, err := c.Do(ctx, req, v)
	if err != nil {
		return nil, err
	}
	v.setLastResponse(resp)
	return v, nil
}

// Response describes how a result was obtained. Every resource carries the
// Response of the call that returned it in LastResponse.
type Response struct {
	StatusCode     int         // HTTP status of the last attempt
	RequestID      string      // the gateway's Request-Id of the last attempt
	IdempotencyKey string      // the key sent with every attempt, "" for a GET without one
	Replayed       bool        // the gateway replayed a stored result (Idempotent-Replayed: true)
	Attempts       int         // attempts made by this client; see Client.Do
	Header         http.Header // headers of the last response
}

// Do sends req with retries, and decodes a 2xx JSON body into v unless v is
// nil. Every attempt sends the same idempotency key and the same bytes.
//
// Attempts counts the attempts this client made. Every request the gateway
// received is counted: each attempt is sent so that net/http cannot resend
// it on its own (it would, on a dead keep-alive connection, for a request
// with an Idempotency-Key), and the client makes every resend itself. The
// count also includes attempts that never reached the gateway: a refused or
// failed dial, and an attempt skipped because the context had ended.
//
// A 2xx body must not be an error body ({"error": ...}). With v nil, any
// other body is accepted, empty or not JSON included. Otherwise it must be a
// JSON object that decodes into v (a 204 with no body leaves a v that is not
// a typed resource as it is), and a typed resource must have its id. See
// [ErrMalformedResponse]. A 3xx is never followed (see [WithHTTPClient]).
//
// The error is:
//   - an *[Error] for a definite non-2xx answer (402, 404, 422, a replayed
//     5xx with Replayed set, a 3xx or 1xx to a GET, ...);
//   - an *[OutcomeUnknownError] (errors.Is [ErrOutcomeUnknown]) when a keyed
//     request failed after an attempt that may have executed, including a
//     2xx whose body is not the resource, a 3xx or 1xx, and a replayed 500
//     idempotency_response_too_large or handler_panicked (see
//     [Error.Replayed]);
//   - otherwise a wrapped transport, context or decoding error. When the
//     context ends during a wait, the error matches the context's error and
//     still wraps the last attempt's failure.
//
// The Response is returned whenever the last attempt got a response, with
// or without an error.
func (c *Client) Do(ctx context.Context, req *Request, v any) (*Response, error) {
	if c == nil || c.eng == nil {
		return nil, invalidf("the Client was not created by NewClient")
	}
	if ctx == nil {
		return nil, invalidf("nil context")
	}
	if req == nil || req.method == "" {
		return nil, invalidf("nil or zero Request: use Client.NewRequest")
	}
	if req.key == "" && !isSafeMethod(req.method) {
		return nil, invalidf("%s without an idempotency key", req.method) // unreachable through NewRequest
	}
	cl := newCall(c, req)
	ctx = cl.context(ctx)
	// The header values share the call's allocation; each slice is capped at
	// its length, so that an append to one never writes into the next.
	cl.hdr = [...]string{c.cfg.authorization.reveal(), "application/json", userAgent, "application/json", req.key}
	vs := cl.hdr[:]
	h := make(http.Header, 5)
	h["Authorization"] = vs[0:1:1]
	h["Accept"] = vs[1:2:2]
	h["User-Agent"] = vs[2:3:3]
	if req.body != nil {
		h["Content-Type"] = vs[3:4:4]
	}
	if req.key != "" {
		h["Idempotency-Key"] = vs[4:5:5]
	}
	// What http.NewRequestWithContext would build from the URL's string,
	// without parsing it again, inside the call: the URL is the call's copy
	// of req's.
	cl.req = *(&http.Request{
		Method:        req.method,
		URL:           &cl.url,
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		ContentLength: int64(len(req.body)),
		Host:          cl.url.Host,
	}).WithContext(ctx)
	c.eng.do(&cl.req, req.body, cl)

	r, err := cl.finish(ctx, v)
	return r, cl.sc.scrubResult(err)
}

// finish turns the last attempt into the call's result.
func (cl *call) finish(ctx context.Context, v any) (*Response, error) {
	cl.settleBudget()
	o := &cl.last
	var resp *Response
	if o.StatusCode != 0 {
		resp = &Response{
			StatusCode:     o.StatusCode,
			RequestID:      cl.requestID(o.Header),
			IdempotencyKey: cl.key,
			Replayed:       isReplayed(o.Header),
			Attempts:       cl.attempts,
			Header:         o.Header,
		}
	}
	answered, failure := cl.verdict()
	switch {
	case answered && failure != nil:
		return resp, failure
	case answered:
		err := cl.decodeSuccess(o.body, v)
		if err == nil {
			return resp, nil
		}
		failure = fmt.Errorf("%w (status %d, request_id %s, %d bytes): %w",
			ErrMalformedResponse, o.StatusCode, resp.RequestID, len(o.body), err)
		cl.ambiguous = true // it may have executed, but its result cannot be read
	}
	return resp, cl.fail(ctx, failure)
}

// settleBudget gives back the tokens of a retry that the context's end
// kept from being sent.
func (cl *call) settleBudget() {
	if b := cl.e.cfg.budget; b != nil && cl.pendingCost > 0 {
		b.deposit(cl.pendingCost)
		cl.pendingCost = 0
	}
}

// verdict says what the last attempt is. answered is true when it is the
// gateway's definite answer: a 2xx (failure nil), whose body is in
// cl.last.body, or an *Error. Otherwise failure is why the call failed, and
// cl.ambiguous is set when that failure may hide an execution.
func (cl *call) verdict() (answered bool, failure error) {
	o := &cl.last
	// A replayed 5xx is the key's stored outcome: definite, as retrying
	// with the key would only replay it again.
	definite := o.Err == nil && !o.retry &&
		(!(o.StatusCode >= 500 && o.StatusCode != http.StatusNotImplemented) || isReplayed(o.Header))
	switch {
	case definite && o.APIError != nil:
		if (o.StatusCode < 200 || (o.StatusCode >= 300 && o.StatusCode < 400)) && !isSafeMethod(cl.method) {
			// Outside the contract (a 3xx is not followed, see
			// WithHTTPClient): whether the request executed before it is
			// unknown.
			return false, o.APIError
		}
		if executedOrMayHave(o.APIError) && !isSafeMethod(cl.method) {
			// A stored answer that is not the operation's own: it
			// executed (or may have), and its result must be looked up.
			cl.ambiguous = true
			return false, o.APIError
		}
		return true, o.APIError
	case definite && o.bodyErr != nil:
		cl.ambiguous = true // it executed, but its result cannot be read
		return false, fmt.Errorf("%w: %w (status %d, request_id %s)", ErrMalformedResponse, o.bodyErr,
			o.StatusCode, cl.requestID(o.Header))
	case definite:
		return true, nil
	case o.Err != nil:
		return false, o.Err
	case o.APIError != nil:
		return false, o.APIError
	}
	return false, fmt.Errorf("unexpected status %d", o.StatusCode)
}

// fail builds the error of a call that ended without an answer: an
// *OutcomeUnknownError when an attempt may have executed a method that is
// not safe, else an error naming the attempts, both wrapping failure.
func (cl *call) fail(ctx context.Context, failure error) error {
	o := &cl.last
	if cl.budgetStopped {
		failure = &budgetError{last: failure}
	}
	if ctxErr := ctx.Err(); ctxErr != nil && !errors.Is(failure, ctxErr) {
		failure = fmt.Errorf("%w; last attempt: %w", ctxErr, failure)
	}
	if cl.deadlineWait > 0 {
		failure = fmt.Errorf("gave up before the context deadline, which the next wait (%v) would pass: %w",
			cl.deadlineWait, failure)
	}
	unknown := cl.unknown()
	if o.retry || unknown {
		cl.log(ctx, slog.LevelWarn, "payonce: request failed", slog.Bool("outcome_unknown", unknown),
			slog.Bool("retry_budget_exhausted", cl.budgetStopped))
	}
	if unknown {
		return &OutcomeUnknownError{Method: cl.method, Path: cl.path, IdempotencyKey: cl.key,
			Attempts: cl.attempts, Err: failure}
	}
	return fmt.Errorf("payonce: %s %s failed after %d attempt(s): %w", cl.method, cl.path, cl.attempts, failure)
}

// unknown reports whether the call's outcome is unknown: an attempt may have
// executed a method that is not safe, and no answer settled it.
func (cl *call) unknown() bool { return cl.ambiguous && !isSafeMethod(cl.method) }

// executedOrMayHave reports whether e is a replayed 500 that the gateway
// stored in place of the operation's own answer, after the operation
// executed (idempotency_response_too_large) or may have (handler_panicked):
// an unknown outcome, not a failure. A 5xx that the handler answered itself
// stays a definite failure.
func executedOrMayHave(e *Error) bool {
	return e.Replayed && e.StatusCode == http.StatusInternalServerError &&
		(e.Code == codeResponseTooLarge || e.Code == codeHandlerPanicked)
}

// A resource is what a typed endpoint promises in a 2xx body. check reports
// what the decoded value lacks: a charge without its id is not a charge.
type resource interface {
	check() error
}

// decodeSuccess decodes a 2xx body into v, and refuses a body that is not
// what the endpoint promises, so that no call ever returns a zero resource
// with a nil error:
//   - the body must be one JSON object ({}, null, [], a string or non-JSON
//     are refused), and not an error envelope ({"error": {...}});
//   - a typed resource (a *Charge, a *Refund, a page) must pass its check:
//     its id, and its "object" when the body has one.
//
// With v nil, only an error envelope is refused. With v not a typed
// resource, a 204 with no body leaves v as it is.
func (cl *call) decodeSuccess(body []byte, v any) error {
	_, typed := v.(resource)
	trimmed := bytes.TrimLeft(body, " \t\r\n")
	switch {
	case len(trimmed) == 0 && (v == nil || (!typed && cl.last.StatusCode == http.StatusNoContent)):
		return nil
	case len(trimmed) == 0:
		return errors.New("empty body")
	case trimmed[0] != '{':
		if v == nil {
			return nil
		}
		return fmt.Errorf("the body is not a JSON object (it starts with %q)",
			cl.sc.clean(string(trimmed[:min(len(trimmed), 16)]), 16))
	}
	if mayHaveErrorMember(trimmed) {
		if err := refuseErrorEnvelope(body, v, cl.sc); err != nil {
			return err
		}
	}
	if v == nil {
		return nil
	}
	if err := json.Unmarshal(body, v); err != nil {
		return err
	}
	if r, ok := v.(resource); ok {
		return r.check()
	}
	return nil
}

// mayHaveErrorMember reports whether a JSON text could have a member that
// encoding/json would decode as "error". It is exact for the negative: json
// matches member names without regard to case (and no byte outside ASCII
// folds to 'e', 'r' or 'o'), and a name spelled with escapes has a
// backslash. So a 2xx body without either skips the envelope's decoding,
// which would find nothing, and a charge is decoded once, as a plain
// json.Decoder would.
func mayHaveErrorMember(b []byte) bool {
	if bytes.IndexByte(b, '\\') >= 0 {
		return true
	}
	for _, e := range []byte{'e', 'E'} {
		for rest := b; ; {
			i := bytes.IndexByte(rest, e)
			if i < 0 || len(rest)-i < 5 {
				break
			}
			// x|0x20 is 'r' only for 'r' and 'R', and 'o' only for 'o' and 'O'.
			if rest[i+1]|0x20 == 'r' && rest[i+2]|0x20 == 'r' && rest[i+3]|0x20 == 'o' && rest[i+4]|0x20 == 'r' {
				return true
			}
			rest = rest[i+1:]
		}
	}
	return false
}

// refuseErrorEnvelope returns an error when body is an error envelope
// ({"error": {...}}), or when it is not JSON and v is not nil (the error
// json.Unmarshal(body, v) would return too).
func refuseErrorEnvelope(body []byte, v any, sc *scrubber) error {
	var envelope struct {
		Error json.RawMessage `json:"error"`
	}
	if err := json.Unmarshal(body, &envelope); err != nil {
		if v == nil {
			return nil
		}
		return err
	}
	if len(envelope.Error) > 0 && string(envelope.Error) != "null" {
		var e struct {
			Type string `json:"type"`
			Code string `json:"code"`
		}
		_ = json.Unmarshal(envelope.Error, &e) // best effort, for the message
		return fmt.Errorf("a success status with an error body (type %q, code %q)",
			sc.clean(e.Type, maxHeaderLen), sc.clean(e.Code, maxHeaderLen))
	}
	return nil
}
