package mock

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"sync"
)

// apiError is the body of every error response:
// {"error":{"type","code","message","param","decline_code","charge"}}, in
// both dialects: payonce's envelope is Stripe's, which also names the
// payment intent of an error about one ("payment_intent").
type apiError struct {
	Status      int    `json:"-"`
	Type        string `json:"type"`
	Code        string `json:"code,omitempty"`
	Message     string `json:"message"`
	Param       string `json:"param,omitempty"`
	DeclineCode string `json:"decline_code,omitempty"`
	Charge      string `json:"charge,omitempty"` // the failed charge of a decline (Stripe dialect)
	// intent is the payment intent the error is about, as the core left
	// it; PaymentIntent is its encoding, which the dialect sets (Stripe's).
	PaymentIntent any `json:"payment_intent,omitempty"`
	intent        *paymentIntent
	// stored marks an error that is the outcome of an execution (a
	// decline, a business rule), stored under the key; any other error
	// from the core refused the request before anything executed.
	stored bool
}

// The error types of the wire contract.
const (
	invalidRequest = "invalid_request_error"
	authError      = "authentication_error"
	cardError      = "card_error"
	rateLimitError = "rate_limit_error"
	apiErrorType   = "api_error"
)

func invalidParam(code, param, msg string) *apiError {
	return &apiError{Status: http.StatusBadRequest, Type: invalidRequest, Code: code, Param: param, Message: msg}
}

func missingResource(param, msg string) *apiError {
	return &apiError{Status: http.StatusNotFound, Type: invalidRequest, Code: "resource_missing", Param: param, Message: msg}
}

// fail answers e from a resource handler: an outcome of execution is
// stored under the key, any other refusal is not, and frees the key.
func fail(w http.ResponseWriter, r *http.Request, e *apiError) {
	if e.stored {
		writeError(w, e)
		return
	}
	reject(w, r, e)
}

func writeError(w http.ResponseWriter, e *apiError) {
	body, _ := json.Marshal(struct {
		Error *apiError `json:"error"`
	}{e})
	writeBody(w, e.Status, body)
}

// writeJSON writes v, which must marshal without error (every type the
// gateway answers with does), as json.Marshal encodes it.
func writeJSON(w http.ResponseWriter, status int, v any) {
	if c, ok := v.(*stripeCharge); ok {
		writeJSONOf(w, status, c.appendJSON, nil)
		return
	}
	buf := encodeBuffers.Get().(*bytes.Buffer)
	defer putEncodeBuffer(buf)
	if err := json.NewEncoder(buf).Encode(v); err != nil { // Marshal and a newline
		panic("mock: cannot encode response: " + err.Error())
	}
	writeLine(w, status, buf.Bytes())
}

// writeJSONOf writes what appendJSON appends, a value's JSON encoding,
// with its header values in v (see writeLineIn), or in an allocation of
// their own if v is nil.
func writeJSONOf(w http.ResponseWriter, status int, appendJSON func([]byte) []byte, v *[2]string) {
	buf := encodeBuffers.Get().(*bytes.Buffer)
	defer putEncodeBuffer(buf)
	buf.Write(append(appendJSON(buf.AvailableBuffer()), '\n'))
	if v == nil {
		v = new([2]string)
	}
	writeLineIn(w, status, buf.Bytes(), v)
}

// encodeBuffers keeps writeJSON's buffers between responses. Every writer
// the gateway writes to copies what it is given, as io.Writer requires.
var encodeBuffers = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// maxPooledBuffer bounds the buffers kept, so that one long list does not
// pin its size in memory.
const maxPooledBuffer = 64 << 10

func putEncodeBuffer(buf *bytes.Buffer) {
	if buf.Cap() <= maxPooledBuffer {
		buf.Reset()
		encodeBuffers.Put(buf)
	}
}

func writeBody(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(body) + 1)}
	w.WriteHeader(status)
	w.Write(body)
	io.WriteString(w, "\n")
}

// writeLine writes body, which ends in a newline, in one Write.
func writeLine(w http.ResponseWriter, status int, body []byte) {
	// The two header values share one allocation.
	writeLineIn(w, status, body, new([2]string))
}

// writeLineIn is writeLine with the header values kept in v, which the
// caller has allocated already, such as the request's exchange: one
// allocation fewer per answer.
func writeLineIn(w http.ResponseWriter, status int, body []byte, v *[2]string) {
	h := w.Header()
	// Each slice is capped, so that appending to one never writes over the
	// other.
	v[0], v[1] = "application/json", strconv.Itoa(len(body))
	h["Content-Type"], h["Content-Length"] = v[0:1:1], v[1:2:2]
	w.WriteHeader(status)
	w.Write(body)
}
