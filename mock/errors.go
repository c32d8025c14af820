package mock

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
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
// gateway answers with does).
func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		panic("mock: cannot encode response: " + err.Error())
	}
	writeBody(w, status, body)
}

func writeBody(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h["Content-Type"] = []string{"application/json"}
	h["Content-Length"] = []string{strconv.Itoa(len(body) + 1)}
	w.WriteHeader(status)
	w.Write(body)
	io.WriteString(w, "\n")
}
