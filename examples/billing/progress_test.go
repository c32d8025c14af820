package main

import (
	"bytes"
	"os"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// drawnLines draws the progress bar of a batch of invoices laid out for
// columns, through the widest summary it can show and to its end, and
// returns every line it drew, carriage returns and padding removed.
func drawnLines(t *testing.T, columns, invoices int) []string {
	t.Helper()
	layout := layoutProgress(columns, invoices)
	var out bytes.Buffer
	bar := newProgressBar(&out, true, invoices, layout)
	n := invoices
	for i, s := range []summary{{}, {charged: n / 2, declined: n / 3}, {charged: n, replayed: n, declined: n, unknown: n}} {
		bar.Describe(s.describe(layout.form))
		require.NoError(t, bar.Set(i*n/2))
	}
	require.NoError(t, bar.Finish())
	var lines []string
	for _, l := range strings.FieldsFunc(out.String(), func(r rune) bool { return r == '\r' || r == '\n' }) {
		if l = strings.TrimRight(l, " "); l != "" {
			lines = append(lines, l)
		}
	}
	require.NotEmpty(t, lines)
	return lines
}

// The progress line fits the terminal, or every redraw would wrap and
// leave a stale line behind.
func TestProgressBarFitsTheTerminal(t *testing.T) {
	for _, invoices := range []int{40, 300, maxInvoices} {
		for _, columns := range []int{40, 60, 80, 100, 120, 200} {
			lines := drawnLines(t, columns, invoices)
			for _, l := range lines {
				assert.Less(t, utf8.RuneCountInString(l), columns, "%d invoices, %d columns: %q", invoices, columns, l)
			}
			if testing.Verbose() {
				t.Logf("%3d columns, %4d invoices: %s", columns, invoices, lines[len(lines)-1])
			}
		}
	}

	wide, narrow := layoutProgress(200, 300), layoutProgress(80, 300)
	assert.Equal(t, progressLayout{barWidth: maxBarWidth}, wide, "a wide terminal gets the long summary and a full bar")
	assert.Equal(t, summaryShort, narrow.form, "80 columns take the short summary")
	assert.GreaterOrEqual(t, narrow.barWidth, minBarWidth)
}

func TestTerminalColumnsFallsBackTo80(t *testing.T) {
	f, err := os.Open(os.DevNull)
	require.NoError(t, err)
	defer f.Close()
	assert.Equal(t, 80, terminalColumns(f), "not a terminal")

	r, w, err := os.Pipe()
	require.NoError(t, err)
	defer r.Close()
	defer w.Close()
	assert.Equal(t, 80, terminalColumns(w), "a pipe")
}
