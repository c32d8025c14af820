package mock

import (
	"crypto/rand"
	"strings"
)

// idAlphabet is the lower-case base32 alphabet of RFC 4648.
const idAlphabet = "abcdefghijklmnopqrstuvwxyz234567"

// newID returns prefix followed by 8 random characters for every 5 random
// bytes: n must be a multiple of 5. Each call reads crypto/rand on its own,
// so concurrent requests never wait on a shared generator.
func newID(prefix string, n int) string {
	var raw [15]byte
	rand.Read(raw[:n]) // never fails: crypto/rand.Read crashes the program instead
	var b strings.Builder
	b.Grow(len(prefix) + n/5*8)
	b.WriteString(prefix)
	for i := 0; i < n; i += 5 {
		v := uint64(raw[i])<<32 | uint64(raw[i+1])<<24 | uint64(raw[i+2])<<16 | uint64(raw[i+3])<<8 | uint64(raw[i+4])
		for shift := 35; shift >= 0; shift -= 5 {
			b.WriteByte(idAlphabet[(v>>shift)&31])
		}
	}
	return b.String()
}

// Identifiers carry 120 random bits; request IDs, which only need to be
// told apart in logs, carry 80.
func newChargeID() string  { return newID("ch_", 15) }
func newRefundID() string  { return newID("re_", 15) }
func newRequestID() string { return newID("req_", 10) }
