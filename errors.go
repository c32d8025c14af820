package payonce

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Sentinel errors, for errors.Is. A [*Error] matches them through its Is
// method, from its status code, type and code; an [*OutcomeUnknownError]
// matches [ErrOutcomeUnknown]. Callers never need to match error strings.
var (
	// ErrCardDeclined means the card was declined (402, type card_error).
	// The decline is final for this key: sending it again replays the decline.
	ErrCardDeclined = errors.New("payonce: card declined")

	// ErrKeyReused means the idempotency key was already used for a
	// different request (422, code idempotency_key_reused). It is a bug in
	// the caller, never a transient failure, and nothing was executed.
	ErrKeyReused = errors.New("payonce: idempotency key reused for a different request")

	// ErrKeyInUse means a request with the same key is still executing
	// (409, code idempotency_key_in_use). The client retries it; callers see
	// it only inside an [*OutcomeUnknownError] when retries run out.
	ErrKeyInUse = errors.New("payonce: idempotency key in use by a request still executing")

	// ErrRateLimited means the gateway refused the request because of its
	// rate (429, type rate_limit_error). Nothing was executed.
	ErrRateLimited = errors.New("payonce: rate limited")

	// ErrAuthentication means the API key is missing or invalid (401).
	ErrAuthentication = errors.New("payonce: authentication failed")

	// ErrNotFound means the resource does not exist, or belongs to another
	// account (404, code resource_missing).
	ErrNotFound = errors.New("payonce: not found")

	// ErrInvalidRequest means the request was refused as invalid, either by
	// the client before anything was sent (nil params, a malformed id) or by
	// the gateway (400, 413).
	ErrInvalidRequest = errors.New("payonce: invalid request")

	// ErrInvalidKey means an idempotency key breaks the gateway's rules
	// (see [ValidateKey]). A caller-supplied invalid key is refused before
	// any request is sent.
	ErrInvalidKey = errors.New("payonce: invalid idempotency key")

	// ErrInvalidConfig means [NewClient] or one of its options was given an
	// unusable value.
	ErrInvalidConfig = errors.New("payonce: invalid configuration")

	// ErrMalformedResponse means the gateway answered with a success status
	// but a body that is not what the endpoint promises: not a JSON object,
	// an error body ({"error": ...}), or a resource without its id. For a
	// request that may have executed (a POST) it comes inside an
	// [*OutcomeUnknownError], as the gateway may have done the work; settle
	// it with the key like any unknown outcome.
	ErrMalformedResponse = errors.New("payonce: malformed success response")

	// ErrOutcomeUnknown means retries ran out (or the caller's context
	// ended) after at least one attempt that may have executed. The operation may
	// or may not have happened. Settle it by sending the same request again
	// later with the same idempotency key, taken from the
	// [*OutcomeUnknownError]: the gateway either executes it once or replays
	// the stored result.
	ErrOutcomeUnknown = errors.New("payonce: outcome unknown")
)

// Error types and codes of the wire contract that the client interprets.
const (
	typeCardError      = "card_error"
	typeAuthError      = "authentication_error"
	typeRateLimitError = "rate_limit_error"

	codeKeyReused        = "idempotency_key_reused"
	codeKeyInUse         = "idempotency_key_in_use"
	codeKeyInvalid       = "idempotency_key_invalid"
	codeResourceMissing  = "resource_missing"
	codeStoreUnavailable = "idempotency_store_unavailable"
	codeResponseTooLarge = "idempotency_response_too_large"
	codeHandlerPanicked  = "handler_panicked"
)

// Limits on what the client reads from a server, so that a hostile or broken
// server cannot exhaust its memory.
const (
	maxSuccessBody = 10 << 20 // 10 MiB for 2xx bodies
	maxErrorBody   = 64 << 10 // 64 KiB for error bodies
	maxMessageLen  = 1024     // server text kept in an Error
	maxHeaderLen   = 128      // request ids and the like
)

// Error is an error answer from the gateway: a non-2xx status, with the
// fields of its JSON error body when it had one. A body that is not the
// contract's JSON (an HTML page from a proxy, a truncated body) still gives
// an Error with StatusCode and RequestID, and a Message saying what was
// wrong with the body; the body itself is never copied in.
//
// Use errors.Is with the sentinels ([ErrCardDeclined], [ErrNotFound], ...)
// rather than comparing fields.
type Error struct {
	StatusCode     int    // HTTP status
	Type           string // error type: card_error, invalid_request_error, ...
	Code           string // machine-readable code: card_declined, resource_missing, ...
	DeclineCode    string // for card errors: generic_decline, insufficient_funds, ...
	Message        string // human-readable text from the gateway
	Param          string // the parameter at fault, if any
	RequestID      string // the gateway's Request-Id, for support
	IdempotencyKey string // the key the request carried, if any

	// Replayed reports that the gateway answered with the stored outcome of
	// IdempotencyKey (Idempotent-Replayed: true). Such an answer is final
	// for the key: the client does not retry it, and sending the request
	// again with the key replays it again until the key expires. A replayed
	// 5xx says the gateway's handler failed after it began executing, so the
	// operation may be partly done: look it up (list the charges, for
	// instance) before trying again under a new key.
	//
	// Two replayed 500s are not failures of the operation, and come inside
	// an [*OutcomeUnknownError] (this *Error is reached with errors.As):
	// code idempotency_response_too_large means the operation executed, its
	// answer too large to store: look the result up; code handler_panicked
	// means the handler panicked after it may have executed: look the result
	// up too. Sending the request again with the key only replays them.
	Replayed bool
}

// Error returns a one-line description: status, type, code, message and the
// ids needed to trace the request. It never contains the API key.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("payonce: ")
	if e.isKeyReused() {
		b.WriteString("idempotency key ")
		if e.IdempotencyKey != "" {
			fmt.Fprintf(&b, "%q ", e.IdempotencyKey)
		}
		b.WriteString("was already used for a DIFFERENT request (another body, method or path); " +
			"this is a bug in the calling code, not a transient failure: a key must identify exactly one " +
			"operation, and a retry must resend that operation unchanged; nothing was executed (")
		e.writeCodes(&b)
		b.WriteString(")")
		return b.String()
	}
	e.writeCodes(&b)
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	var ids []string
	if e.DeclineCode != "" {
		ids = append(ids, "decline_code="+e.DeclineCode)
	}
	if e.Param != "" {
		ids = append(ids, "param="+e.Param)
	}
	if e.RequestID != "" {
		ids = append(ids, "request_id="+e.RequestID)
	}
	if e.IdempotencyKey != "" {
		ids = append(ids, "idempotency_key="+e.IdempotencyKey)
	}
	if e.Replayed {
		ids = append(ids, "replayed")
	}
	if len(ids) > 0 {
		b.WriteString(" (" + strings.Join(ids, ", ") + ")")
	}
	return b.String()
}

func (e *Error) writeCodes(b *strings.Builder) {
	fmt.Fprintf(b, "status %d", e.StatusCode)
	if e.Type != "" || e.Code != "" {
		b.WriteString(" " + e.Type)
		if e.Code != "" {
			b.WriteString("/" + e.Code)
		}
	}
	if e.isKeyReused() && e.RequestID != "" {
		b.WriteString(", request_id=" + e.RequestID)
	}
}

func (e *Error) isKeyReused() bool {
	return e.Code == codeKeyReused || e.StatusCode == http.StatusUnprocessableEntity
}

// Is reports whether e matches one of the package's sentinel errors.
func (e *Error) Is(target error) bool {
	switch target {
	case ErrCardDeclined:
		return e.Type == typeCardError || e.StatusCode == http.StatusPaymentRequired
	case ErrKeyReused:
		return e.isKeyReused()
	case ErrKeyInUse:
		return e.Code == codeKeyInUse
	case ErrRateLimited:
		return e.Type == typeRateLimitError || e.StatusCode == http.StatusTooManyRequests
	case ErrAuthentication:
		return e.Type == typeAuthError || e.StatusCode == http.StatusUnauthorized
	case ErrNotFound:
		return e.Code == codeResourceMissing || e.StatusCode == http.StatusNotFound
	case ErrInvalidKey:
		return e.Code == codeKeyInvalid
	case ErrInvalidRequest:
		return e.StatusCode == http.StatusBadRequest || e.StatusCode == http.StatusRequestEntityTooLarge
	}
	return false
}

// OutcomeUnknownError is returned when retries ran out, the [RetryBudget]
// stopped them, or the caller's context ended, after at least one attempt
// that may have executed: a
// timeout or connection error after the request may have been sent, a 5xx, or
// a 409 saying the same key was still executing. It matches
// [ErrOutcomeUnknown].
//
// The operation happened at most once, but the client cannot tell whether it
// happened. Store IdempotencyKey with the operation and send the same request
// again later with it: the gateway executes it if it never ran, or replays
// the stored result if it did.
//
// It is also returned at once, not retried, for a replayed 500 that says the
// operation executed or may have (code idempotency_response_too_large or
// handler_panicked; see [Error.Replayed]). Err is then that *Error, and
// sending the request again with the key only replays it: look the result
// up instead.
type OutcomeUnknownError struct {
	Method         string // HTTP method of the operation
	Path           string // URL path of the operation
	IdempotencyKey string // the key that settles the outcome
	Attempts       int    // attempts made by this client (see Response.Attempts)
	Err            error  // the last failure; may be an *Error (5xx, 409)
}

// Error says that the outcome is unknown and names the key that settles it.
func (e *OutcomeUnknownError) Error() string {
	var stored *Error
	if errors.As(e.Err, &stored) && stored.Replayed {
		return fmt.Sprintf("payonce: outcome unknown for %s %s after %d attempt(s); "+
			"the gateway replays this stored answer for idempotency key %q, so look the result up: %v",
			e.Method, e.Path, e.Attempts, e.IdempotencyKey, e.Err)
	}
	return fmt.Sprintf("payonce: outcome unknown for %s %s after %d attempt(s); "+
		"send the same request later with idempotency key %q to settle it: %v",
		e.Method, e.Path, e.Attempts, e.IdempotencyKey, e.Err)
}

// Is reports whether target is [ErrOutcomeUnknown].
func (e *OutcomeUnknownError) Is(target error) bool { return target == ErrOutcomeUnknown }

// Unwrap returns the last failure, so errors.As reaches an *Error or a
// net.Error, and errors.Is reaches context.Canceled.
func (e *OutcomeUnknownError) Unwrap() error { return e.Err }

// invalidf returns a client-side validation error wrapping ErrInvalidRequest.
func invalidf(format string, args ...any) error {
	return fmt.Errorf("%w: "+format, append([]any{ErrInvalidRequest}, args...)...)
}

// newAPIError builds an *Error from a non-2xx response. body is what was read
// (at most maxErrorBody bytes), tooLarge says there was more, and readErr
// says the body could not be read. sc scrubs the API key from every text the
// server sent, in case a hostile server echoes it.
func newAPIError(status int, h http.Header, body []byte, tooLarge bool, readErr error, key string, sc *scrubber) *Error {
	e := &Error{
		StatusCode:     status,
		RequestID:      h.Get("Request-Id"),
		IdempotencyKey: key,
		Replayed:       isReplayed(h),
	}
	var env struct {
		Error *struct {
			Type        string `json:"type"`
			Code        string `json:"code"`
			DeclineCode string `json:"decline_code"`
			Message     string `json:"message"`
			Param       string `json:"param"`
		} `json:"error"`
	}
	switch {
	case status < 200:
		e.Message = fmt.Sprintf("informational status %s as the final answer: not the gateway's contract",
			http.StatusText(status))
	case status >= 300 && status < 400:
		e.Message = fmt.Sprintf("redirect to %s not followed: the client never follows redirects; check the base URL",
			redirectTarget(h.Get("Location")))
	case readErr != nil:
		e.Message = fmt.Sprintf("error body unreadable after %d bytes: %v", len(body), readErr)
	case tooLarge:
		e.Message = fmt.Sprintf("error body larger than %d KiB, not parsed", maxErrorBody>>10)
	case len(body) == 0:
		e.Message = "empty error body: " + http.StatusText(status)
	case json.Unmarshal(body, &env) != nil || env.Error == nil:
		e.Message = fmt.Sprintf("unexpected error body (%d bytes, content-type %q): %s",
			len(body), clip(h.Get("Content-Type"), 64), http.StatusText(status))
	default:
		e.Type, e.Code, e.DeclineCode = env.Error.Type, env.Error.Code, env.Error.DeclineCode
		e.Param, e.Message = env.Error.Param, env.Error.Message
	}
	// Scrub first, then clip, so that no fragment of the key survives (see
	// minKeyFragment).
	for _, f := range []*string{&e.Type, &e.Code, &e.DeclineCode, &e.Param, &e.Message, &e.RequestID} {
		limit := maxHeaderLen
		if f == &e.Message {
			limit = maxMessageLen
		}
		*f = sc.clean(*f, limit)
	}
	return e
}

// isReplayed reports whether a response is a replay of a key's stored
// outcome.
func isReplayed(h http.Header) bool {
	return strings.EqualFold(headerValue(h, "Idempotent-Replayed"), "true")
}

// headerValue is h.Get(key) for a key already in canonical form, which it
// does not canonicalise again: the client reads a few headers of every
// response, several times.
func headerValue(h http.Header, key string) string {
	if v := h[key]; len(v) > 0 {
		return v[0]
	}
	return ""
}

// redirectTarget names where a redirect pointed, by origin only: a path or
// query from the server is not worth copying into an error.
func redirectTarget(loc string) string {
	u, err := url.Parse(loc)
	switch {
	case loc == "":
		return "nowhere (no Location)"
	case err != nil:
		return "an unparsable Location"
	case u.Host == "":
		return "a path on the same host"
	}
	return fmt.Sprintf("%q", u.Scheme+"://"+u.Host)
}

// clip shortens s to at most n bytes of valid UTF-8, so that a hostile server
// cannot put megabytes into an error string or a log line.
func clip(s string, n int) string {
	if len(s) > n {
		s = s[:n] + "…"
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return s
}
