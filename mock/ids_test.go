package mock

import (
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Identifiers are the prefix and base32 characters, and never repeat:
// readRandom hands each byte of its blocks out once, across blocks and
// goroutines.
func TestNewIDUnique(t *testing.T) {
	const goroutines, each = 4, 3000 // 10 blocks' worth
	ids := make([][]string, goroutines)
	var wg sync.WaitGroup
	for g := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				switch i % 3 {
				case 0:
					ids[g] = append(ids[g], newChargeID())
				case 1:
					ids[g] = append(ids[g], newRequestID())
				default:
					ids[g] = append(ids[g], newID("card_", 15))
				}
			}
		}()
	}
	wg.Wait()
	seen := make(map[string]bool)
	for _, l := range ids {
		for _, id := range l {
			prefix, rest, _ := strings.Cut(id, "_")
			want := map[string]int{"ch": 24, "req": 16, "card": 24}[prefix]
			require.Len(t, rest, want, id)
			require.Equal(t, -1, strings.IndexFunc(rest, func(r rune) bool { return !strings.ContainsRune(idAlphabet, r) }), id)
			require.False(t, seen[rest], "repeated: %s", id)
			seen[rest] = true
		}
	}
}

// What readRandom hands out is wiped from its block.
func TestReadRandomWipes(t *testing.T) {
	b := randomBlocks.Get().(*randomBlock)
	randomBlocks.Put(b)
	var p [15]byte
	readRandom(p[:])
	// The pool may have handed out another block; if it was this one, the
	// bytes before off are all zero.
	b2 := randomBlocks.Get().(*randomBlock)
	defer randomBlocks.Put(b2)
	assert.Equal(t, make([]byte, b2.off), b2.buf[:b2.off])
}

// A pair is two identifiers as newID makes them, and the pair's random
// halves differ.
func TestNewIDPair(t *testing.T) {
	a, b := newIDPair("ch_", "card_")
	assert.Regexp(t, `^ch_[a-z2-7]{24}$`, a)
	assert.Regexp(t, `^card_[a-z2-7]{24}$`, b)
	assert.NotEqual(t, a[3:], b[5:])
}
