package mock

import (
	"crypto/rand"
	"strings"
	"sync"
)

// idAlphabet is the lower-case base32 alphabet of RFC 4648.
const idAlphabet = "abcdefghijklmnopqrstuvwxyz234567"

// newID returns prefix followed by 8 random characters for every 5 random
// bytes: n must be a multiple of 5, and at most 15.
func newID(prefix string, n int) string {
	var raw [15]byte
	readRandom(raw[:n])
	var b strings.Builder
	b.Grow(len(prefix) + n/5*8)
	b.WriteString(prefix)
	writeBase32(&b, raw[:n])
	return b.String()
}

// newIDPair returns two identifiers of 120 random bits, as newID(p1, 15)
// and newID(p2, 15) would, but in one allocation: a charge's id and its
// source's live as long as each other, and as one object they cost the
// garbage collector less.
func newIDPair(p1, p2 string) (string, string) {
	var raw [30]byte
	readRandom(raw[:])
	var b strings.Builder
	b.Grow(len(p1) + len(p2) + 2*24)
	b.WriteString(p1)
	writeBase32(&b, raw[:15])
	n := b.Len()
	b.WriteString(p2)
	writeBase32(&b, raw[15:])
	s := b.String()
	return s[:n], s[n:]
}

// writeBase32 writes raw, a multiple of 5 bytes long and at most 15, in
// idAlphabet. It encodes into an array and writes that once, rather than a
// byte at a time: a new key makes three identifiers.
func writeBase32(b *strings.Builder, raw []byte) {
	var out [24]byte
	n := 0
	for i := 0; i+5 <= len(raw); i += 5 {
		v := uint64(raw[i])<<32 | uint64(raw[i+1])<<24 | uint64(raw[i+2])<<16 | uint64(raw[i+3])<<8 | uint64(raw[i+4])
		for shift := 35; shift >= 0; shift -= 5 {
			out[n] = idAlphabet[(v>>shift)&31]
			n++
		}
	}
	b.Write(out[:n])
}

// Identifiers carry 120 random bits; request IDs, which only need to be
// told apart in logs, carry 80.
func newChargeID() string  { return newID("ch_", 15) }
func newRefundID() string  { return newID("re_", 15) }
func newRequestID() string { return newID("req_", 10) }

// randomBlock is a block of crypto/rand bytes, handed out from off on.
type randomBlock struct {
	off int
	buf [4096]byte
}

// randomBlocks holds blocks of random bytes for readRandom. A new key
// takes three identifiers, and a read of crypto/rand for each was a
// noticeable part of its cost; one read of a block serves about 250 of
// them. It is a pool, shared by the process's gateways, rather than state
// of each, because what it holds is interchangeable and never seen
// twice: any gateway may take any byte, once. A pool also needs no lock,
// so concurrent requests do not wait on each other, and what it holds
// goes when the garbage collector clears it.
var randomBlocks = sync.Pool{New: func() any { return &randomBlock{off: len(randomBlock{}.buf)} }}

// readRandom fills p, at most a block long, with bytes from crypto/rand,
// each handed out once. They are as unpredictable as crypto/rand's own:
// the block is only read ahead, and what is handed out is wiped from it.
func readRandom(p []byte) {
	b := randomBlocks.Get().(*randomBlock)
	if len(b.buf)-b.off < len(p) {
		rand.Read(b.buf[:]) // never fails: crypto/rand.Read crashes the program instead
		b.off = 0
	}
	used := b.buf[b.off : b.off+len(p)]
	copy(p, used)
	clear(used)
	b.off += len(p)
	randomBlocks.Put(b)
}
