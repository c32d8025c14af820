package webhook

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/payonce/payonce/idempotency"
)

// Defaults of the receiver's options.
const (
	// DefaultTTL is how long a receiver remembers an event it processed: a
	// week, longer than Stripe's three days of retries and the 75 hours of
	// the retry schedule that Standard Webhooks suggests.
	DefaultTTL = 7 * 24 * time.Hour
	// DefaultMaxBodyBytes bounds the payload of a delivery.
	DefaultMaxBodyBytes = idempotency.DefaultMaxBodyBytes
)

// Receiver is an [http.Handler] that verifies each webhook delivery and
// only then passes it on to its handler, behind an [idempotency.Middleware]
// keyed by the event id: never two deliveries of one event at once, and
// none once the handler has answered one with 2xx. See the package
// documentation for what a sender sees. Use [NewReceiver] to make one; a
// Receiver is safe for concurrent use.
type Receiver struct {
	verifier *Verifier
	keyed    http.Handler
	endpoint string
	maxBody  int64
	idem     []idempotency.Option
	refused  func(*http.Request, error)
}

var _ http.Handler = (*Receiver)(nil)

// A ReceiverOption configures a [Receiver].
type ReceiverOption func(*Receiver) error

// WithEndpoint names the endpoint whose events the receiver claims: its
// idempotency scope is "webhook:<scheme>:<name>". By default the name is the
// request's path, decoded and cleaned ([path.Clean] of URL.Path, so that
// /webhooks/%73tripe and /webhooks/stripe are one endpoint), so that
// receivers on different paths, or for different senders, sharing one
// store never claim each other's event ids. Name it if the path may change
// while deliveries are being retried, or if one receiver serves several
// paths that should count as one endpoint (the middleware's fingerprint
// still covers the decoded, cleaned path, so the same event sent to two of
// them gets 422 at the second).
func WithEndpoint(name string) ReceiverOption {
	return func(rc *Receiver) error {
		if name == "" {
			return errors.New("webhook: empty endpoint name")
		}
		rc.endpoint = name
		return nil
	}
}

// WithMaxBodyBytes bounds the payload the receiver reads (default
// [DefaultMaxBodyBytes]); a larger one gets 413 and is not verified.
func WithMaxBodyBytes(n int64) ReceiverOption {
	return func(rc *Receiver) error {
		if n <= 0 {
			return errors.New("webhook: max body bytes must be positive")
		}
		rc.maxBody = n
		return nil
	}
}

// WithIdempotencyOptions passes options to the idempotency middleware the
// receiver builds: [idempotency.WithObserver], [idempotency.WithLease],
// [idempotency.WithTTL] (the receiver's default is [DefaultTTL]) and the
// rest. The receiver's own scope comes after them, so
// [idempotency.WithScope] and [idempotency.WithoutScope] have no effect
// here (see [WithEndpoint]), and nor has [idempotency.WithMaxBodyBytes],
// since the receiver reads the payload itself (see [WithMaxBodyBytes]).
func WithIdempotencyOptions(opts ...idempotency.Option) ReceiverOption {
	return func(rc *Receiver) error {
		for _, o := range opts {
			if o == nil {
				return errors.New("webhook: nil idempotency option")
			}
		}
		rc.idem = append(rc.idem, opts...)
		return nil
	}
}

// WithRefused registers a function called for every request the receiver
// refuses before it claims an event id, with the reason: an unverified
// delivery, a body too large, a method other than POST. Log it: a wrong or
// rotated-away secret shows up here as every delivery refused with
// [ErrNoMatchingSignature]. It must not block.
func WithRefused(refused func(r *http.Request, err error)) ReceiverOption {
	return func(rc *Receiver) error {
		if refused == nil {
			return errors.New("webhook: nil refused function")
		}
		rc.refused = refused
		return nil
	}
}

// NewReceiver returns a Receiver that verifies deliveries with v and claims
// their event ids in store, then runs next for each event once.
//
// next gets the request body unchanged, the [Delivery] in its context (see
// [DeliveryFrom]), and the event id as its Idempotency-Key header. A 2xx it answers is stored and replayed to every
// redelivery; any other answer is sent without being stored, and releases
// the event id, so that the sender's retry runs next again. So answer
// non-2xx only when a retry may safely run next again; once side effects
// may have happened, answer 2xx. A panic in next, which may have executed,
// gets a 500 stored, as [idempotency.Middleware.Wrap] does.
func NewReceiver(v *Verifier, store idempotency.Store, next http.Handler, opts ...ReceiverOption) (*Receiver, error) {
	if v == nil {
		return nil, errors.New("webhook: nil verifier")
	}
	if store == nil {
		return nil, errors.New("webhook: nil store")
	}
	if next == nil {
		return nil, errors.New("webhook: nil handler")
	}
	rc := &Receiver{verifier: v, maxBody: DefaultMaxBodyBytes, refused: func(*http.Request, error) {}}
	for _, opt := range opts {
		if err := opt(rc); err != nil {
			return nil, err
		}
	}
	idem := make([]idempotency.Option, 0, len(rc.idem)+3)
	idem = append(idem, idempotency.WithTTL(DefaultTTL))
	idem = append(idem, rc.idem...)
	idem = append(idem, idempotency.WithScope(rc.scope))
	mw, err := idempotency.New(store, idem...)
	if err != nil {
		return nil, err
	}
	rc.keyed = mw.Wrap(withPayload(releaseFailures(next)))
	return rc, nil
}

// scope is the receiver's idempotency scope: one per scheme and endpoint.
// The default name is the path decoded and cleaned, so that a delivery
// replayed to another spelling of it (/webhooks/%73tripe, which ServeMux
// routes to the same receiver) is the same event: the path is not signed.
func (rc *Receiver) scope(r *http.Request) string {
	name := rc.endpoint
	if name == "" {
		name = cleanPath(r.URL.Path)
	}
	return "webhook:" + string(rc.verifier.scheme) + ":" + name
}

// cleanPath is p decoded (as URL.Path is) and cleaned, rooted.
func cleanPath(p string) string {
	if p == "" || p[0] != '/' {
		p = "/" + p
	}
	return path.Clean(p)
}

// ServeHTTP verifies the delivery, and only then claims its event id and
// runs the handler, or replays its stored answer.
func (rc *Receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		rc.refuse(w, r, http.StatusMethodNotAllowed, "method_not_allowed",
			errors.New("webhook: method "+r.Method+" not allowed: deliveries are POSTed"))
		return
	}
	// The cheap refusal first: a request with no signature header at all
	// is not worth reading.
	if !rc.verifier.hasSignature(r.Header) {
		err := wrap(ErrNoSignature, "no "+rc.verifier.signatureHeader()+" header")
		rc.refuse(w, r, http.StatusBadRequest, errorCode(err), err)
		return
	}
	body := r.Body
	if body == nil {
		body = http.NoBody
	}
	payload, err := io.ReadAll(http.MaxBytesReader(w, body, rc.maxBody))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			rc.refuse(w, r, http.StatusRequestEntityTooLarge, "body_too_large",
				fmt.Errorf("webhook: the payload is larger than %d bytes: %w", rc.maxBody, err))
			return
		}
		rc.refuse(w, r, http.StatusBadRequest, "body_unreadable",
			fmt.Errorf("webhook: the payload could not be read: %w", err))
		return
	}
	d, err := rc.verifier.Verify(r.Header, payload)
	if err != nil {
		rc.refuse(w, r, http.StatusBadRequest, errorCode(err), err)
		return
	}
	// Only now, verified, may the delivery claim its event's id. Whatever
	// Idempotency-Key the sender sent is replaced: the key is the event.
	//
	// The middleware gets no body, and the path decoded and cleaned
	// without a query, so that its fingerprint is the method and that path
	// alone: the event is its id, and a redelivery whose payload the sender
	// rendered anew is the same event, to be replayed, not refused with
	// 422; nor can a captured delivery replayed to /webhooks/%73tripe or
	// /webhooks/stripe?x=1, which are not signed, pass for another
	// request. The signature has vouched for the payload, which
	// withPayload hands the handler, with the URL as it came.
	ctx := context.WithValue(r.Context(), deliveryKey{}, d)
	ctx = context.WithValue(ctx, verifiedKey{}, verified{payload: payload, url: r.URL})
	r2 := r.Clone(ctx)
	r2.Header.Set("Idempotency-Key", keyHeader(d.ID))
	r2.Body = http.NoBody
	r2.ContentLength = 0
	r2.URL.Path, r2.URL.RawPath = cleanPath(r.URL.Path), ""
	r2.URL.RawQuery, r2.URL.ForceQuery = "", false
	rc.keyed.ServeHTTP(w, r2)
}

func (rc *Receiver) refuse(w http.ResponseWriter, r *http.Request, status int, code string, err error) {
	idempotency.WriteError(w, r, &idempotency.Error{StatusCode: status, Type: "invalid_request_error", Code: code, Message: err.Error()})
	rc.refused(r, err)
}

// errorCode is the code of the JSON error a refused delivery gets.
func errorCode(err error) string {
	switch {
	case errors.Is(err, ErrNoSignature):
		return "webhook_signature_missing"
	case errors.Is(err, ErrMalformedHeader):
		return "webhook_signature_malformed"
	case errors.Is(err, ErrTooOld):
		return "webhook_timestamp_too_old"
	case errors.Is(err, ErrTooNew):
		return "webhook_timestamp_too_new"
	case errors.Is(err, ErrNoMatchingSignature):
		return "webhook_signature_mismatch"
	case errors.Is(err, ErrMissingID):
		return "webhook_id_missing"
	case errors.Is(err, ErrInvalidID):
		return "webhook_id_invalid"
	case errors.Is(err, ErrInvalidPayload):
		return "webhook_payload_invalid"
	}
	return "webhook_unverified"
}

// keyHeader is the Idempotency-Key value that [idempotency.ParseKey] reads
// back as id: id itself, or quoted if it holds a quote.
func keyHeader(id string) string {
	if !strings.Contains(id, `"`) {
		return id
	}
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(id) + `"`
}

type (
	deliveryKey struct{}
	verifiedKey struct{}
)

// verified is what withPayload restores behind the middleware: the
// verified payload, and the request's URL as it came.
type verified struct {
	payload []byte
	url     *url.URL
}

// DeliveryFrom returns the verified delivery that a [Receiver] passes its
// handler in the request's context, and whether ctx holds one.
func DeliveryFrom(ctx context.Context) (Delivery, bool) {
	d, ok := ctx.Value(deliveryKey{}).(Delivery)
	return d, ok
}

// withPayload gives next, behind the middleware, the verified payload as
// its body, and the URL the request came with.
func withPayload(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, _ := r.Context().Value(verifiedKey{}).(verified)
		r = r.WithContext(r.Context())
		r.Body = io.NopCloser(bytes.NewReader(v.payload))
		r.ContentLength = int64(len(v.payload))
		if v.url != nil {
			r.URL = v.url
		}
		next.ServeHTTP(w, r)
	})
}

// releaseFailures tells the middleware that a handler answering anything
// but 2xx executed nothing, so that its answer is not stored and the
// sender's retry runs it again.
func releaseFailures(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		next.ServeHTTP(&failureWriter{ResponseWriter: w, release: func() { idempotency.NotExecuted(ctx) }}, r)
	})
}

type failureWriter struct {
	http.ResponseWriter
	release func() // tells the middleware nothing executed
	wrote   bool
}

func (fw *failureWriter) WriteHeader(code int) {
	if !fw.wrote && code >= 200 {
		fw.wrote = true
		if code > 299 {
			fw.release()
		}
	}
	fw.ResponseWriter.WriteHeader(code)
}

func (fw *failureWriter) Write(p []byte) (int, error) {
	if !fw.wrote {
		fw.WriteHeader(http.StatusOK)
	}
	return fw.ResponseWriter.Write(p)
}

// Unwrap lets [http.ResponseController] reach the writer underneath.
func (fw *failureWriter) Unwrap() http.ResponseWriter { return fw.ResponseWriter }
