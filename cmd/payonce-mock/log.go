package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// The log: one line per request, which is most of what the command writes,
// and was a tenth of its CPU time per request as slog.TextHandler wrote it,
// one write system call per line. The lines are the same, byte for byte,
// but a logHandler formats the usual ones itself, and a lineWriter gathers
// them into one write every flushDelay at most.

// logHandler writes records exactly as slog.NewTextHandler(w, nil) does.
// It formats those whose values are all strings and integers of plain
// ASCII, such as the request lines, on the stack, and hands any other, and
// any WithAttrs or WithGroup, to a TextHandler on the same writer.
type logHandler struct {
	w     *lineWriter
	text  slog.Handler // the fallback
	clock timeCache
}

var _ slog.Handler = (*logHandler)(nil)

func newLogHandler(w *lineWriter) *logHandler {
	return &logHandler{w: w, text: slog.NewTextHandler(w, nil)}
}

// Enabled is the TextHandler's with no options: Info and above.
func (h *logHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= slog.LevelInfo }

func (h *logHandler) WithAttrs(attrs []slog.Attr) slog.Handler { return h.text.WithAttrs(attrs) }
func (h *logHandler) WithGroup(name string) slog.Handler       { return h.text.WithGroup(name) }

func (h *logHandler) Handle(ctx context.Context, r slog.Record) error {
	var stack [512]byte // a request line is about 200 bytes
	b, ok := appendRecord(stack[:0], &r, &h.clock)
	if !ok {
		return h.text.Handle(ctx, r)
	}
	_, err := h.w.Write(b)
	return err
}

// appendRecord appends r as a TextHandler's line, or reports false if r
// holds something it leaves to the TextHandler: a value that is neither a
// string nor an integer, or text that the TextHandler might quote, bar the
// empty string.
func appendRecord(b []byte, r *slog.Record, clock *timeCache) ([]byte, bool) {
	var level string
	switch r.Level {
	case slog.LevelDebug, slog.LevelInfo, slog.LevelWarn, slog.LevelError:
		level = r.Level.String()
	default:
		return b, false
	}
	if !r.Time.IsZero() {
		b = append(b, "time="...)
		b = clock.append(b, r.Time.Round(0))
		b = append(b, ' ')
	}
	b = append(b, "level="...)
	b = append(b, level...)
	b = append(b, " msg="...)
	b, ok := appendText(b, r.Message)
	r.Attrs(func(a slog.Attr) bool {
		if !ok || a.Key == "" {
			ok = false
			return false
		}
		b = append(b, ' ')
		if b, ok = appendText(b, a.Key); !ok {
			return false
		}
		b = append(b, '=')
		switch a.Value.Kind() {
		case slog.KindString:
			b, ok = appendText(b, a.Value.String())
		case slog.KindInt64:
			b = strconv.AppendInt(b, a.Value.Int64(), 10)
		default:
			ok = false
		}
		return ok
	})
	return append(b, '\n'), ok
}

// appendText appends s as a TextHandler writes a key or a string value:
// "" for the empty string, s itself if it is printable ASCII without a
// space, '"', '=' or '\', which the TextHandler never quotes. It reports
// false for any other s, which the TextHandler may quote.
func appendText(b []byte, s string) ([]byte, bool) {
	if s == "" {
		return append(b, `""`...), true
	}
	for i := range len(s) {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == '"' || c == '=' || c == '\\' {
			return b, false
		}
	}
	return append(b, s...), true
}

// appendRFC3339Millis is the TextHandler's time format (log/slog's own
// function of that name): RFC 3339 with exactly three decimals.
func appendRFC3339Millis(b []byte, t time.Time) []byte {
	const prefixLen = len("2006-01-02T15:04:05.000")
	n := len(b)
	// RFC3339Nano trims trailing zeros: a tenth of a millisecond keeps
	// four decimals, and the fourth is dropped.
	t = t.Truncate(time.Millisecond).Add(time.Millisecond / 10)
	b = t.AppendFormat(b, time.RFC3339Nano)
	return append(b[:n+prefixLen], b[n+prefixLen+1:]...)
}

// timeCache keeps the latest time a logHandler wrote, formatted: the
// requests of one millisecond, a dozen on a busy server, share the time
// of their lines, and formatting it was the costliest part of a line.
type timeCache struct {
	last atomic.Pointer[formattedTime]
}

type formattedTime struct {
	ms   int64 // Unix milliseconds
	loc  *time.Location
	text []byte
}

// append appends t as appendRFC3339Millis does.
func (c *timeCache) append(b []byte, t time.Time) []byte {
	ms, loc := t.UnixMilli(), t.Location()
	if f := c.last.Load(); f != nil && f.ms == ms && f.loc == loc {
		return append(b, f.text...)
	}
	n := len(b)
	b = appendRFC3339Millis(b, t)
	c.last.Store(&formattedTime{ms: ms, loc: loc, text: bytes.Clone(b[n:])})
	return b
}

// lineWriter gathers what is written to it and writes it to out in one
// write, at most flushDelay after the first byte of a batch came in, so that
// a busy server makes one system call for many log lines, while an idle
// one still shows each line at once. A batch that reaches maxBatch bytes is
// written there and then, by the writer that filled it: a stuck out holds
// up the log's writers, as it always did, instead of memory growing.
// Flush writes what is gathered now, and Close flushes and stops.
//
// Write never fails; an error of out is returned by the Flush or Close
// that met it, or by a Write that flushed.
type lineWriter struct {
	out   io.Writer
	delay time.Duration

	mu     sync.Mutex // guards buf and closed
	buf    []byte
	closed bool

	wmu   sync.Mutex // held while writing to out, so batches go out in order
	spare []byte     // the batch last written, to gather the next one in; under wmu

	kick chan struct{} // a batch has begun
	stop chan struct{}
	done chan struct{} // the flushing goroutine has returned
}

// flushDelay bounds how long a log line waits to be written.
const flushDelay = 2 * time.Millisecond

// maxBatch is how large a batch grows before its writer writes it.
const maxBatch = 64 << 10

func newLineWriter(out io.Writer, delay time.Duration) *lineWriter {
	w := &lineWriter{out: out, delay: delay,
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go w.flushing()
	return w
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	began := len(w.buf) == 0
	w.buf = append(w.buf, p...)
	now := w.closed || len(w.buf) >= maxBatch
	w.mu.Unlock()
	switch {
	case now:
		return len(p), w.Flush()
	case began:
		select {
		case w.kick <- struct{}{}:
		default: // already told
		}
	}
	return len(p), nil
}

// Flush writes what has been gathered.
func (w *lineWriter) Flush() error {
	w.wmu.Lock()
	defer w.wmu.Unlock()
	w.mu.Lock()
	batch := w.buf
	w.buf, w.spare = w.spare[:0], nil
	w.mu.Unlock()
	var err error
	if len(batch) > 0 {
		_, err = w.out.Write(batch)
	}
	if cap(batch) <= 4*maxBatch { // keep it, unless a long line made it huge
		w.spare = batch[:0]
	}
	return err
}

// Close flushes, and stops the flushing; later writes are written at once.
func (w *lineWriter) Close() error {
	w.mu.Lock()
	already := w.closed
	w.closed = true
	w.mu.Unlock()
	if !already {
		close(w.stop)
		<-w.done
	}
	return w.Flush()
}

func (w *lineWriter) flushing() {
	defer close(w.done)
	t := time.NewTimer(w.delay)
	t.Stop()
	for {
		select {
		case <-w.kick:
		case <-w.stop:
			return
		}
		// The lines of the requests now running join this batch.
		t.Reset(w.delay)
		select {
		case <-t.C:
		case <-w.stop:
			return // Close flushes
		}
		w.Flush()
	}
}
