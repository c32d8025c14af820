package mock

import (
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// 2,500 requests with 900 KiB paths once took the mock past 4 GiB: the
// history was bounded in count only. Now each record is clipped, and the
// history is bounded in bytes as well.
func TestHistoryIsBoundedInBytes(t *testing.T) {
	huge := "/v1/charges/" + strings.Repeat("x", 900<<10)
	var paths []string // not all the same length
	for i := range 7 {
		paths = append(paths, huge+strings.Repeat("y", i))
	}
	for _, tc := range []struct {
		name     string
		opts     []Option
		maxBytes int
	}{
		{"default", nil, DefaultHistoryBytes},
		{"WithHistoryBytes", []Option{WithHistoryBytes(64 << 10)}, 64 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g, err := New(tc.opts...)
			require.NoError(t, err)
			for i := range 2500 {
				// Unauthenticated, so that the test spends its time on the
				// history, not on routing 900 KiB paths.
				r := httptest.NewRequest("POST", "/v1/charges", nil)
				r.URL.Path = paths[i%len(paths)]
				g.ServeHTTP(httptest.NewRecorder(), r)
			}
			h := &g.world.Load().hist
			h.mu.Lock()
			accounted := h.bytes
			h.mu.Unlock()
			assert.LessOrEqual(t, accounted, tc.maxBytes)

			recs := g.Requests()
			require.NotEmpty(t, recs)
			stored := 0
			for i := range recs {
				stored += recs[i].size()
				assert.LessOrEqual(t, len(recs[i].Path), maxPathBytes+64)
			}
			assert.Equal(t, accounted, stored, "the accounting matches what is kept")
			assert.Less(t, stored, 2500*8<<10, "about 2 KiB a record, not 900 KiB")
			assert.Contains(t, recs[len(recs)-1].Path, "[clipped from 921612 bytes]", "the latest is kept")
			assert.Equal(t, int64(2500), g.Stats().Requests, "the stats count them all")
			if tc.maxBytes < DefaultHistoryBytes {
				assert.Less(t, len(recs), 2500, "the byte bound forgot the oldest")
			}
		})
	}
	_, err := New(WithHistoryBytes(0))
	assert.Error(t, err)
}

func TestClip(t *testing.T) {
	assert.Equal(t, "abc", clip("abc", 3))
	assert.Equal(t, "ab…[clipped from 3 bytes]", clip("abc", 2))
	assert.Equal(t, "a…[clipped from 3 bytes]", clip("aé", 2), "never half a rune")
	assert.Equal(t, "…[clipped from 4 bytes]", clip("\xff\xff\xff\xff", 0))
}
