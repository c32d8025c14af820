package mock

import (
	"encoding/json"
	"errors"
	"io"
	"maps"
	"mime"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/payonce/payonce/idempotency"
)

// Limits of request parameters.
const (
	MaxAmount            = 99_999_999
	MaxDescriptionLength = 1000 // characters
	MaxMetadataKeys      = 50
	MaxMetadataKeyLength = 40  // characters
	MaxMetadataValLength = 500 // characters
)

// maxBodyBytes bounds request bodies, as the idempotency middleware does.
const maxBodyBytes = idempotency.DefaultMaxBodyBytes

// params are the members of a request's JSON object, in order: their names
// and raw values, sliced out of the body without copying. Fields are looked
// up by exact name (encoding/json would match a struct's fields
// case-insensitively), and when a name repeats the last one counts, as in
// the fingerprint.
type params []member

type member struct {
	name []byte // unquoted
	raw  []byte // the value as sent
}

// readParams reads and decodes r's body, which must be a JSON object with
// no other fields than allowed. An empty body is {}. Every error it returns
// is a validation failure.
func readParams(w http.ResponseWriter, r *http.Request, allowed ...string) (params, *apiError) {
	if r.URL.RawQuery != "" {
		name := firstQueryParam(r)
		return nil, invalidParam("parameter_unknown", name,
			"received unknown query parameter "+strconv.Quote(name)+": POST parameters go in the JSON body")
	}
	body, err := readBody(w, r)
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, &apiError{Status: http.StatusRequestEntityTooLarge, Type: invalidRequest, Code: "body_too_large",
				Message: "the request body is larger than 1 MiB"}
		}
		return nil, invalidParam("body_unreadable", "", "the request body could not be read")
	}
	if len(body) == 0 {
		return params{}, nil
	}
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		if mt, _, err := mime.ParseMediaType(ct); err != nil || mt != "application/json" {
			return nil, invalidParam("invalid_content_type", "",
				"the body must be JSON, sent with Content-Type: application/json")
		}
	}
	return parseParams(body, allowed...)
}

// readBody reads r's body, of at most maxBodyBytes: if there is more, its
// error is an *http.MaxBytesError.
func readBody(w http.ResponseWriter, r *http.Request) ([]byte, error) {
	if b, ok := r.Body.(interface{ Len() int }); ok {
		// A body already in memory that tells how much of it is left, as
		// the bytes.Reader the idempotency middleware passes on does:
		// readAll bounds it as it reads, so it needs no MaxBytesReader,
		// one allocation fewer per request.
		return readAll(r.Body, int64(b.Len()))
	}
	return readAll(http.MaxBytesReader(w, r.Body, maxBodyBytes), r.ContentLength)
}

// readAll reads r to the end, into a single allocation when length is
// right, as it is when the idempotency middleware passes the body on. Past
// maxBodyBytes it stops, with an *http.MaxBytesError, whatever length said.
func readAll(r io.Reader, length int64) ([]byte, error) {
	if length < 0 || length > maxBodyBytes {
		length = 512 // unknown, or more than will be read: start as io.ReadAll does
	}
	buf := make([]byte, 0, length+1) // the extra byte lets the last Read see EOF
	for {
		n, err := r.Read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		if len(buf) > maxBodyBytes {
			return nil, &http.MaxBytesError{Limit: maxBodyBytes}
		}
		if err == io.EOF {
			return buf, nil
		}
		if err != nil {
			return buf, err
		}
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
	}
}

// firstQueryParam returns the first name in sort order among r's query
// parameters, so that an error names a stable one.
func firstQueryParam(r *http.Request) string {
	names := slices.Sorted(maps.Keys(r.URL.Query()))
	if len(names) == 0 {
		return r.URL.RawQuery
	}
	return names[0]
}

// parseParams splits body, a JSON object whose fields must all be allowed.
func parseParams(body []byte, allowed ...string) (params, *apiError) {
	if !json.Valid(body) {
		return nil, invalidParam("invalid_json", "", "the body is not valid JSON")
	}
	p, ok := members(body, make(params, 0, 8))
	if !ok {
		return nil, invalidParam("invalid_json", "", "the body must be a JSON object")
	}
	var unknown []byte
	for _, m := range p {
		if !slices.Contains(allowed, string(m.name)) && (unknown == nil || string(m.name) < string(unknown)) {
			unknown = m.name // the first in sort order, so the answer is stable
		}
	}
	if unknown != nil {
		name := string(unknown)
		return nil, invalidParam("parameter_unknown", name, "received unknown parameter "+strconv.Quote(name))
	}
	return p, nil
}

// members appends the members of the object in data, which must be valid
// JSON, to p. It reports false if data is not an object.
func members(data []byte, p params) (params, bool) {
	i := skipSpace(data, 0)
	if data[i] != '{' {
		return p, false
	}
	i = skipSpace(data, i+1)
	if data[i] == '}' {
		return p, true
	}
	for {
		end := skipString(data, i)
		name := data[i+1 : end-1]
		if slices.Contains(name, '\\') || !utf8.Valid(name) { // as encoding/json reads it
			s, _ := jsonString(data[i:end])
			name = []byte(s)
		}
		i = skipSpace(data, end) // at ':'
		i = skipSpace(data, i+1) // at the value
		end = skipValue(data, i)
		p = append(p, member{name: name, raw: data[i:end]})
		i = skipSpace(data, end) // at ',' or '}'
		if data[i] == '}' {
			return p, true
		}
		i = skipSpace(data, i+1)
	}
}

func skipSpace(data []byte, i int) int {
	for i < len(data) && (data[i] == ' ' || data[i] == '\t' || data[i] == '\n' || data[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the string that starts at i.
func skipString(data []byte, i int) int {
	for i++; ; i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
}

// skipValue returns the index just past the value that starts at i.
func skipValue(data []byte, i int) int {
	switch data[i] {
	case '"':
		return skipString(data, i)
	case '{', '[':
		depth := 0
		for ; ; i++ {
			switch data[i] {
			case '"':
				i = skipString(data, i) - 1
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
		}
	}
	for i < len(data) && !strings.ContainsRune(",}] \t\r\n", rune(data[i])) {
		i++
	}
	return i
}

// get returns the field's raw value; an absent field and null are the same.
func (p params) get(name string) ([]byte, bool) {
	for i := len(p) - 1; i >= 0; i-- {
		if string(p[i].name) == name {
			if string(p[i].raw) == "null" {
				return nil, false
			}
			return p[i].raw, true
		}
	}
	return nil, false
}

func missing(name string) *apiError {
	return invalidParam("parameter_missing", name, "missing required parameter "+strconv.Quote(name))
}

// amount reads a required or optional amount: a whole number of minor units
// from 1 to MaxAmount, as a JSON number literal.
func (p params) amount(name string, required bool) (int64, bool, *apiError) {
	raw, ok := p.get(name)
	if !ok {
		if required {
			return 0, false, missing(name)
		}
		return 0, false, nil
	}
	n, e := parseAmount(name, string(raw))
	return n, e == nil, e
}

// str reads a string field.
func (p params) str(name string, required bool) (string, bool, *apiError) {
	raw, ok := p.get(name)
	if !ok {
		if required {
			return "", false, missing(name)
		}
		return "", false, nil
	}
	s, ok := jsonString(raw)
	if !ok {
		return "", false, invalidParam("parameter_invalid_string", name, name+" must be a string")
	}
	return s, true, nil
}

// jsonString decodes raw if it is a JSON string. Invalid UTF-8 becomes
// U+FFFD, as encoding/json does.
func jsonString(raw []byte) (string, bool) {
	if len(raw) < 2 || raw[0] != '"' {
		return "", false
	}
	inner := raw[1 : len(raw)-1]
	if !slices.Contains(inner, '\\') && utf8.Valid(inner) {
		return string(inner), true
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		return "", false
	}
	return s, true
}

func (p params) boolean(name string) (value, present bool, e *apiError) {
	raw, ok := p.get(name)
	if !ok {
		return false, false, nil
	}
	switch string(raw) {
	case "true":
		return true, true, nil
	case "false":
		return false, true, nil
	}
	return false, false, invalidParam("parameter_invalid_boolean", name, name+" must be true or false")
}

// metadata reads an optional object of string values; absent, it is empty.
func (p params) metadata() (map[string]string, *apiError) {
	raw, ok := p.get("metadata")
	if !ok {
		return map[string]string{}, nil
	}
	if raw[0] != '{' {
		return nil, invalidParam("parameter_invalid_object", "metadata", "metadata must be an object of strings")
	}
	fields, _ := members(raw, nil) // raw is valid JSON: the whole body was
	md := make(map[string]string, len(fields))
	for _, f := range fields {
		s, ok := jsonString(f.raw)
		if !ok {
			return nil, invalidParam("invalid_metadata", "metadata", "metadata values must be strings")
		}
		if e := metadataEntry(string(f.name), s); e != nil {
			return nil, e
		}
		md[string(f.name)] = s
		if len(md) > MaxMetadataKeys {
			return nil, tooManyMetadataKeys()
		}
	}
	return md, nil
}

// list reads an array of strings.
func (p params) list(name string) ([]string, bool, *apiError) {
	raw, ok := p.get(name)
	if !ok {
		return nil, false, nil
	}
	var out []string
	if raw[0] != '[' || json.Unmarshal(raw, &out) != nil {
		return nil, false, invalidParam("parameter_invalid_array", name, name+" must be an array of strings")
	}
	return out, true, nil
}

// object reads a nested object whose fields must be allowed.
func (p params) object(name string, allowed ...string) (fields, bool, *apiError) {
	raw, ok := p.get(name)
	if !ok {
		return nil, false, nil
	}
	if raw[0] != '{' {
		return nil, false, invalidParam("parameter_invalid_object", name, name+" must be an object")
	}
	inner, _ := members(raw, nil) // raw is valid JSON: the whole body was
	for _, m := range inner {
		if !slices.Contains(allowed, string(m.name)) {
			param := name + "." + string(m.name)
			return nil, false, invalidParam("parameter_unknown", param, "received unknown parameter "+strconv.Quote(param))
		}
	}
	return inner, true, nil
}
