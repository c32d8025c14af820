package main

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/payonce/payonce/mock"
)

// logBoth logs the same record through a TextHandler and a logHandler, and
// returns their lines.
func logBoth(t testing.TB, log func(*slog.Logger)) (want, got string) {
	t.Helper()
	var text, fast bytes.Buffer
	log(slog.New(slog.NewTextHandler(&text, nil)))
	lw := newLineWriter(&fast, time.Hour) // only Close writes
	log(slog.New(newLogHandler(lw)))
	require.NoError(t, lw.Close())
	return text.String(), fast.String()
}

// at is a fixed time, so that both handlers print the same one.
var at = time.Date(2026, 12, 2, 6, 30, 1, 234567891, time.FixedZone("", 3600))

func record(level slog.Level, msg string, attrs ...slog.Attr) func(*slog.Logger) {
	return func(l *slog.Logger) {
		r := slog.NewRecord(at, level, msg, 0)
		r.AddAttrs(attrs...)
		if l.Handler().Enabled(context.Background(), level) {
			l.Handler().Handle(context.Background(), r)
		}
	}
}

// The lines are the TextHandler's, byte for byte, whether the fast path
// formats them or hands them on.
func TestLogHandlerWritesTextHandlerLines(t *testing.T) {
	request := []slog.Attr{slog.String("method", "POST"), slog.String("path", "/v1/charges"),
		slog.String("key", "order_1"), slog.String("account", "acct_abc"), slog.Int("status", 200),
		slog.String("outcome", "executed"), slog.String("fault", "fail_after"), slog.String("request_id", "req_x")}
	for name, log := range map[string]func(*slog.Logger){
		"request":         record(slog.LevelInfo, "request", request...),
		"empty key":       record(slog.LevelInfo, "request", slog.String("key", ""), slog.Int("status", 0)),
		"negative":        record(slog.LevelWarn, "m", slog.Int64("n", -12)),
		"error":           record(slog.LevelError, "failed", slog.String("a", "b")),
		"no attrs":        record(slog.LevelInfo, "shutting down"),
		"space":           record(slog.LevelInfo, "request", slog.String("path", "/v1/a b")),
		"quote":           record(slog.LevelInfo, "request", slog.String("key", `a"b`)),
		"equals":          record(slog.LevelInfo, "request", slog.String("key", "a=b")),
		"backslash":       record(slog.LevelInfo, "request", slog.String("key", `a\b`)),
		"newline":         record(slog.LevelInfo, "request", slog.String("key", "a\nb")),
		"DEL":             record(slog.LevelInfo, "request", slog.String("key", "a\x7fb")),
		"unicode":         record(slog.LevelInfo, "request", slog.String("key", "clé…")),
		"invalid UTF-8":   record(slog.LevelInfo, "request", slog.String("key", "a\xffb")),
		"message":         record(slog.LevelInfo, "two words"),
		"empty message":   record(slog.LevelInfo, ""),
		"key with space":  record(slog.LevelInfo, "m", slog.String("a b", "c")),
		"empty attr key":  record(slog.LevelInfo, "m", slog.String("", "c")),
		"bool":            record(slog.LevelInfo, "started", slog.Bool("require_key", true), slog.Int("n", 1)),
		"duration":        record(slog.LevelInfo, "started", slog.Duration("ttl", 24*time.Hour)),
		"float":           record(slog.LevelInfo, "started", slog.Float64("chaos", 0.25)),
		"group":           record(slog.LevelInfo, "m", slog.Group("g", slog.String("a", "b"))),
		"any":             record(slog.LevelInfo, "m", slog.Any("err", errors.New("boom"))),
		"level above":     record(slog.LevelInfo+2, "m", slog.String("a", "b")),
		"debug, disabled": record(slog.LevelDebug, "m"),
		"zero time": func(l *slog.Logger) {
			r := slog.NewRecord(time.Time{}, slog.LevelInfo, "m", 0)
			r.AddAttrs(slog.String("a", "b"))
			l.Handler().Handle(context.Background(), r)
		},
		"logger": func(l *slog.Logger) {
			l.Info("started", "ttl", time.Minute, "store", "memory")
		},
		"with attrs": func(l *slog.Logger) {
			l.With("pid", 7).WithGroup("g").LogAttrs(context.Background(), slog.LevelInfo, "m", slog.String("a", "b"))
		},
	} {
		t.Run(name, func(t *testing.T) {
			want, got := logBoth(t, log)
			if strings.HasPrefix(want, "time=") {
				// The Logger's own records are dated now: compare the rest.
				want, got = want[strings.IndexByte(want, ' '):], got[strings.IndexByte(got, ' '):]
			}
			assert.Equal(t, want, got)
		})
	}
}

// The fast path takes a request line.
func TestLogHandlerRequestLine(t *testing.T) {
	r := slog.NewRecord(at, slog.LevelInfo, "request", 0)
	r.AddAttrs(slog.String("method", "POST"), slog.String("key", ""), slog.Int("status", 200))
	b, ok := appendRecord(nil, &r, new(timeCache))
	require.True(t, ok, "the fast path takes a request line")
	assert.Equal(t, "time=2026-12-02T06:30:01.234+01:00 level=INFO msg=request method=POST key=\"\" status=200\n", string(b))
}

func FuzzLogHandler(f *testing.F) {
	f.Add("request", "key", "order_1", int64(200))
	f.Add("request", "path", "/v1/charges/ch_1", int64(-1))
	f.Add("m", "k", "", int64(0))
	f.Add("a b", "k=", `"`, int64(1))
	f.Add("é", "\\", "\x00", int64(1<<62))
	f.Fuzz(func(t *testing.T, msg, key, value string, n int64) {
		want, got := logBoth(t, record(slog.LevelInfo, msg, slog.String(key, value), slog.Int64("n", n),
			slog.String("v", value)))
		if want != got {
			t.Fatalf("TextHandler:\n%q\nlogHandler:\n%q", want, got)
		}
	})
}

// chanWriter sends each Write to a channel.
type chanWriter chan string

func (c chanWriter) Write(p []byte) (int, error) {
	c <- string(p)
	return len(p), nil
}

// A line goes out on its own, within the delay, with nobody calling
// Flush; the lines written meanwhile go out with it, in one write.
func TestLineWriterFlushesOnItsOwn(t *testing.T) {
	out := make(chanWriter, 10)
	lw := newLineWriter(out, time.Millisecond)
	defer lw.Close()
	for round := range 3 {
		lw.Write([]byte("a\n"))
		lw.Write([]byte("b\n"))
		select {
		case got := <-out:
			// One write, or two if the delay struck between the lines.
			if got == "a\n" {
				got += <-out
			}
			assert.Equal(t, "a\nb\n", got, "round %d", round)
		case <-time.After(10 * time.Second): // only for a broken writer: fail, not hang
			t.Fatal("the line was never written")
		}
	}
}

// Until the delay strikes, lines gather: Flush writes them at once, in one
// write, and Close writes what is left.
func TestLineWriterBatches(t *testing.T) {
	out := make(chanWriter, 10)
	lw := newLineWriter(out, time.Hour)
	for i := range 3 {
		lw.Write([]byte(strconv.Itoa(i) + "\n"))
	}
	assert.Empty(t, out, "nothing written before the delay")
	require.NoError(t, lw.Flush())
	assert.Equal(t, "0\n1\n2\n", <-out)
	require.NoError(t, lw.Flush())
	assert.Empty(t, out, "an empty flush writes nothing")

	lw.Write([]byte("last\n"))
	require.NoError(t, lw.Close())
	assert.Equal(t, "last\n", <-out)
	lw.Write([]byte("after\n"))
	assert.Equal(t, "after\n", <-out, "once closed, written at once")
	require.NoError(t, lw.Close(), "Close twice")
}

// A batch that reaches maxBatch is written by the Write that filled it.
func TestLineWriterFullBatch(t *testing.T) {
	out := make(chanWriter, 10)
	lw := newLineWriter(out, time.Hour)
	defer lw.Close()
	line := []byte(strings.Repeat("x", 1023) + "\n")
	for range maxBatch / len(line) {
		lw.Write(line)
	}
	assert.Len(t, <-out, maxBatch)
}

// failWriter fails every write.
type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk full") }

func TestLineWriterError(t *testing.T) {
	lw := newLineWriter(failWriter{}, time.Hour)
	lw.Write([]byte("a\n"))
	assert.EqualError(t, lw.Flush(), "disk full")
	lw.Write([]byte("a\n"))
	assert.EqualError(t, lw.Close(), "disk full")
}

// lockedBuffer is a bytes.Buffer safe for concurrent use.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

// Lines written at once by many goroutines all come out whole, each
// goroutine's in its order.
func TestLineWriterConcurrent(t *testing.T) {
	var out lockedBuffer
	lw := newLineWriter(&out, time.Microsecond)
	const writers, lines = 8, 2000
	var wg sync.WaitGroup
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range lines {
				lw.Write([]byte(strconv.Itoa(w) + " " + strconv.Itoa(i) + " " + strings.Repeat("x", i%300) + "\n"))
				if i%500 == 0 {
					lw.Flush()
				}
			}
		}()
	}
	wg.Wait()
	require.NoError(t, lw.Close())
	next := make([]int, writers)
	got := strings.Split(strings.TrimSuffix(out.b.String(), "\n"), "\n")
	require.Len(t, got, writers*lines)
	for _, l := range got {
		f := strings.Fields(l)
		w, _ := strconv.Atoi(f[0])
		i, _ := strconv.Atoi(f[1])
		require.Equal(t, next[w], i, "writer %d's lines in order", w)
		require.Equal(t, strings.Repeat("x", i%300), strings.Join(f[2:], ""))
		next[w]++
	}
}

// BenchmarkRequestLog logs the gateway's request lines to a file, as
// payonce-mock does, with slog's TextHandler (one write per line) and with
// the command's handler:
//
//	go test ./cmd/payonce-mock -run '^$' -bench RequestLog -benchmem -count 6
func BenchmarkRequestLog(b *testing.B) {
	for _, h := range []string{"text", "command"} {
		b.Run("handler="+h, func(b *testing.B) {
			f, err := os.Create(filepath.Join(b.TempDir(), "payonce-mock.log"))
			require.NoError(b, err)
			defer f.Close()
			var l *slog.Logger
			if h == "text" {
				l = slog.New(slog.NewTextHandler(f, nil))
			} else {
				lw := newLineWriter(f, flushDelay)
				defer lw.Close()
				l = slog.New(newLogHandler(lw))
			}
			ctx := context.Background()
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					// The gateway's request line (mock's logRequest).
					r := slog.NewRecord(time.Now(), slog.LevelInfo, "request", 0)
					r.AddAttrs(slog.String("method", "POST"), slog.String("path", "/v1/charges"),
						slog.String("key", "3f2a9c1e-5b7d-4e8f-9a0b-1c2d3e4f5a6b"), slog.String("account", "acct_7hs2kq0d"),
						slog.Int("status", 200), slog.String("outcome", string(mock.OutcomeExecuted)),
						slog.String("request_id", "req_abcdefghijklmnop"))
					l.Handler().Handle(ctx, r)
				}
			})
		})
	}
}

// Times are formatted once a millisecond, and each line still gets its
// own: the cache tells milliseconds and locations apart.
func TestTimeCache(t *testing.T) {
	var c timeCache
	utc := at.UTC()
	for _, tm := range []time.Time{at, at, at.Add(999 * time.Microsecond), at.Add(time.Millisecond), utc,
		utc.Add(-time.Millisecond), at.In(time.FixedZone("", -7200)), at, time.Unix(-1, 999e6).UTC(), time.Unix(-1, 0).UTC()} {
		assert.Equal(t, string(appendRFC3339Millis(nil, tm)), string(c.append(nil, tm)), "%v", tm)
	}
}
