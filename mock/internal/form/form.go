// Package form decodes and encodes the application/x-www-form-urlencoded
// bodies of Stripe's API, whose brackets nest objects and arrays:
//
//	amount=2000&currency=usd&metadata[order]=42&expand[0]=latest_charge
//	shipping[address][line1]=1+Main+St&payment_method_types[]=card
//
// [Parse] turns such a body into a tree of map[string]any whose leaves are
// strings, as a JSON decoder turns JSON into one. It does not know which
// parameters are arrays: "metadata[0]=x" may be an array's first element
// or a metadata key named "0", so every bracket opens a map, keyed by what
// the brackets hold, and [List] reads a map whose keys are 0, 1, … as an
// array once the schema says it is one. An empty pair of brackets
// ("expand[]=a") appends: its key is the next index.
//
// Values are strings, whatever they look like: "amount=2000" is the string
// "2000", and an empty value ("metadata=") is the empty string, which
// Stripe reads as "clear this".
package form

import (
	"errors"
	"fmt"
	"net/url"
	"sort"
	"strconv"
	"strings"
)

// Limits of [Parse]. Stripe's own bodies stay far below them; a body that
// reaches one is refused rather than decoded at a cost no request needs.
const (
	MaxPairs = 4096 // name=value pairs in a body
	MaxDepth = 8    // brackets in one name
)

// Error is the error of [Parse]: what is wrong with the parameter named
// Param, as far as its name could be read.
type Error struct {
	Param  string // the parameter's name as sent, or the part of it that could be read
	Reason string
}

func (e *Error) Error() string {
	if e.Param == "" {
		return "invalid form body: " + e.Reason
	}
	return fmt.Sprintf("invalid form parameter %q: %s", e.Param, e.Reason)
}

// ErrTooLarge is wrapped by the [Error] of a body over [MaxPairs] pairs or a
// name over [MaxDepth] brackets.
var ErrTooLarge = errors.New("form body exceeds the decoder's limits")

func (e *Error) Unwrap() error {
	if strings.HasPrefix(e.Reason, "more than") {
		return ErrTooLarge
	}
	return nil
}

// Parse decodes body. A name sent twice, a value that is both a string and
// an object ("a=1&a[b]=2"), an unbalanced bracket, or a bad percent escape
// is an [*Error] naming the parameter.
func Parse(body string) (map[string]any, error) {
	root := map[string]any{}
	pairs := 0
	for body != "" {
		var pair string
		pair, body, _ = strings.Cut(body, "&")
		if pair == "" {
			continue // "a=1&&b=2", as url.ParseQuery allows
		}
		if pairs++; pairs > MaxPairs {
			return nil, &Error{Reason: fmt.Sprintf("more than %d parameters", MaxPairs)}
		}
		rawName, rawValue, _ := strings.Cut(pair, "=")
		name, err := url.QueryUnescape(rawName)
		if err != nil {
			return nil, &Error{Param: rawName, Reason: "bad percent-encoding in the name"}
		}
		value, err := url.QueryUnescape(rawValue)
		if err != nil {
			return nil, &Error{Param: name, Reason: "bad percent-encoding in the value"}
		}
		// (Two IndexByte calls, rather than IndexAny, which builds a set
		// on every call.)
		if name != "" && strings.IndexByte(name, '[') < 0 && strings.IndexByte(name, ']') < 0 {
			// A plain name, as most are: set's first step, without the
			// path it would need.
			if _, exists := root[name]; exists {
				return nil, &Error{Param: name, Reason: "sent more than once, or as both a value and an object"}
			}
			root[name] = value
			continue
		}
		path, err := splitName(name)
		if err != nil {
			return nil, err
		}
		if err := set(root, name, path, value); err != nil {
			return nil, err
		}
	}
	return root, nil
}

// splitName splits "a[b][]" into "a", "b", "".
func splitName(name string) ([]string, error) {
	i := strings.IndexByte(name, '[')
	if i < 0 {
		if strings.IndexByte(name, ']') >= 0 {
			return nil, &Error{Param: name, Reason: "unbalanced ']'"}
		}
		if name == "" {
			return nil, &Error{Param: name, Reason: "empty name"}
		}
		return []string{name}, nil
	}
	if i == 0 {
		return nil, &Error{Param: name, Reason: "the name starts with '['"}
	}
	if strings.IndexByte(name[:i], ']') >= 0 {
		return nil, &Error{Param: name, Reason: "unbalanced ']'"}
	}
	path := []string{name[:i]}
	rest := name[i:]
	for rest != "" {
		if rest[0] != '[' {
			return nil, &Error{Param: name, Reason: "text after ']' must open another '['"}
		}
		end := strings.IndexByte(rest, ']')
		if end < 0 {
			return nil, &Error{Param: name, Reason: "unbalanced '['"}
		}
		seg := rest[1:end]
		if strings.IndexByte(seg, '[') >= 0 {
			return nil, &Error{Param: name, Reason: "'[' inside brackets"}
		}
		if len(path) > MaxDepth {
			return nil, &Error{Param: name, Reason: fmt.Sprintf("more than %d brackets", MaxDepth)}
		}
		path = append(path, seg)
		rest = rest[end+1:]
	}
	return path, nil
}

func set(node map[string]any, name string, path []string, value string) error {
	for i, seg := range path {
		if seg == "" {
			seg = strconv.Itoa(len(node)) // "[]" appends
			if _, taken := node[seg]; taken {
				return &Error{Param: name, Reason: "'[]' mixed with indexes the array already has"}
			}
		}
		last := i == len(path)-1
		child, exists := node[seg]
		if last {
			if exists {
				return &Error{Param: name, Reason: "sent more than once, or as both a value and an object"}
			}
			node[seg] = value
			return nil
		}
		switch c := child.(type) {
		case nil:
			m := map[string]any{}
			node[seg] = m
			node = m
		case map[string]any:
			node = c
		default:
			return &Error{Param: name, Reason: "sent both as a value and as an object"}
		}
	}
	return nil
}

// List returns v as an array, if it is a map whose keys are exactly the
// indexes 0 to n-1 (in decimal, without leading zeros), in index order; or
// an empty array if v is the empty string, which clears an array.
func List(v any) ([]any, bool) {
	switch m := v.(type) {
	case string:
		return nil, m == ""
	case map[string]any:
		out := make([]any, len(m))
		for k, e := range m {
			i, err := strconv.Atoi(k)
			if err != nil || i < 0 || i >= len(m) || strconv.Itoa(i) != k {
				return nil, false
			}
			out[i] = e
		}
		return out, true
	}
	return nil, false
}

// Encode writes tree as a form body, its names sorted, with brackets for
// nested maps and indexes for slices: the inverse of [Parse] for a tree of
// maps and strings. Slices ([]any or []string) are written with indexes.
func Encode(tree map[string]any) string {
	var b strings.Builder
	encode(&b, "", tree)
	return b.String()
}

func encode(b *strings.Builder, prefix string, v any) {
	name := func(k string) string {
		if prefix == "" {
			return url.QueryEscape(k)
		}
		return prefix + url.QueryEscape("["+k+"]")
	}
	pair := func(n, s string) {
		if b.Len() > 0 {
			b.WriteByte('&')
		}
		b.WriteString(n)
		b.WriteByte('=')
		b.WriteString(url.QueryEscape(s))
	}
	switch t := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			encode(b, name(k), t[k])
		}
	case []any:
		for i, e := range t {
			encode(b, name(strconv.Itoa(i)), e)
		}
	case []string:
		for i, e := range t {
			pair(name(strconv.Itoa(i)), e)
		}
	case string:
		pair(prefix, t)
	default:
		pair(prefix, fmt.Sprint(t))
	}
}
