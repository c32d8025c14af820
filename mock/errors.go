package mock

import (
	"encoding/json"
	"io"
	"net/http"
	"strconv"
)

// apiError is the body of every error response:
// {"error":{"type","code","message","param","decline_code"}}.
type apiError struct {
	Status      int    `json:"-"`
	Type        string `json:"type"`
	Code        string `json:"code,omitempty"`
	Message     string `json:"message"`
	Param       string `json:"param,omitempty"`
	DeclineCode string `json:"decline_code,omitempty"`
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
