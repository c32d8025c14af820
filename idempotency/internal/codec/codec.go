// Package codec encodes what the idempotency stores keep of a response as
// bytes, exactly: header names, header values and the body come back byte
// for byte, whatever they hold, which text or JSON columns cannot promise.
//
// The encoding starts with a version byte, so that a later release can read
// what an earlier one stored.
package codec

import (
	"encoding/binary"
	"errors"
	"net/http"
	"slices"

	"github.com/payonce/payonce/idempotency"
)

const version = 1

// ErrCorrupt is returned for bytes that no version of this package wrote.
var ErrCorrupt = errors.New("codec: corrupt record")

// AppendHeader appends the encoding of h to b: the names in sorted order,
// each with its values in their order.
func AppendHeader(b []byte, h http.Header) []byte {
	b = append(b, version)
	return appendHeader(b, h)
}

// Header decodes what AppendHeader wrote. It never returns a nil header.
func Header(b []byte) (http.Header, error) {
	if len(b) == 0 || b[0] != version {
		return nil, ErrCorrupt
	}
	h, rest, err := readHeader(b[1:])
	if err != nil {
		return nil, err
	}
	if len(rest) != 0 {
		return nil, ErrCorrupt
	}
	return h, nil
}

// AppendResponse appends the encoding of r to b: its status, its header
// and its body.
func AppendResponse(b []byte, r *idempotency.Response) []byte {
	b = append(b, version)
	b = binary.AppendUvarint(b, uint64(r.StatusCode))
	b = appendHeader(b, r.Header)
	return append(b, r.Body...)
}

// Response decodes what AppendResponse wrote. The response's body is a copy.
func Response(b []byte) (*idempotency.Response, error) {
	if len(b) == 0 || b[0] != version {
		return nil, ErrCorrupt
	}
	b = b[1:]
	status, n := binary.Uvarint(b)
	if n <= 0 || status > 999 {
		return nil, ErrCorrupt
	}
	h, body, err := readHeader(b[n:])
	if err != nil {
		return nil, err
	}
	return &idempotency.Response{StatusCode: int(status), Header: h, Body: slices.Clone(body)}, nil
}

func appendHeader(b []byte, h http.Header) []byte {
	names := make([]string, 0, len(h))
	for name := range h {
		names = append(names, name)
	}
	slices.Sort(names)
	b = binary.AppendUvarint(b, uint64(len(names)))
	for _, name := range names {
		b = appendString(b, name)
		values := h[name]
		b = binary.AppendUvarint(b, uint64(len(values)))
		for _, v := range values {
			b = appendString(b, v)
		}
	}
	return b
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func readHeader(b []byte) (http.Header, []byte, error) {
	count, b, err := readCount(b)
	if err != nil {
		return nil, nil, err
	}
	h := make(http.Header, count)
	for range count {
		var name string
		if name, b, err = readString(b); err != nil {
			return nil, nil, err
		}
		var n int
		if n, b, err = readCount(b); err != nil {
			return nil, nil, err
		}
		values := make([]string, n)
		for i := range values {
			if values[i], b, err = readString(b); err != nil {
				return nil, nil, err
			}
		}
		h[name] = values
	}
	return h, b, nil
}

// readCount reads a count of items, each taking at least one byte, so that a
// corrupt count cannot make the reader allocate more than the input holds.
func readCount(b []byte) (int, []byte, error) {
	n, size := binary.Uvarint(b)
	if size <= 0 || n > uint64(len(b)-size) {
		return 0, nil, ErrCorrupt
	}
	return int(n), b[size:], nil
}

func readString(b []byte) (string, []byte, error) {
	n, b, err := readCount(b)
	if err != nil {
		return "", nil, err
	}
	return string(b[:n]), b[n:], nil
}
