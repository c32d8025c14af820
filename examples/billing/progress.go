package main

import (
	"fmt"
	"io"
	"os"
	"time"
	"unicode/utf8"

	"github.com/schollz/progressbar/v3"
	"golang.org/x/term"
)

// The progress bar's line is the run's summary so far, then the bar:
//
//	charged 212 · replayed 9 · declined 17 · unknown 1  79% |█████████     | (239/300)
//
// It is redrawn in place with a carriage return, so it must fit the
// terminal: a line one column too wide wraps, and every redraw then leaves a
// stale copy behind.
const (
	defaultColumns = 80 // when the width of the terminal cannot be read
	minBarWidth    = 10
	maxBarWidth    = 40
)

// terminalColumns returns the width of the terminal f is, or defaultColumns
// when f is not a terminal or its size cannot be read.
func terminalColumns(f *os.File) int {
	if w, _, err := term.GetSize(int(f.Fd())); err == nil && w > 0 {
		return w
	}
	return defaultColumns
}

// progressLayout is how the progress line fits a terminal of some width.
type progressLayout struct {
	barWidth int
	form     summaryForm // of the summary before the bar
}

// summaryForm is how much of the run's summary the progress line shows.
type summaryForm int

const (
	summaryLong  summaryForm = iota // charged 212 · replayed 9 · declined 17 · unknown 1
	summaryShort                    // new 212 rep 9 dec 17 unk 1
	summaryNone                     // renewals
)

// layoutProgress fits the progress line of a batch of invoices into
// columns, leaving the last column free (a line that fills it wraps in some
// terminals). The summary takes the longest form that leaves the bar
// minBarWidth columns next to the widest it can be; the bar takes what is
// left, up to maxBarWidth. Only a terminal narrower than about 40 columns
// gets a line too wide.
func layoutProgress(columns, invoices int) progressLayout {
	// Around the bar: " 100% |", "| ", "(N/N)" and " [elapsed]" once
	// finished, which 59m59s bounds for any batch worth watching.
	count := len(fmt.Sprintf("(%d/%d)", invoices, invoices))
	fixed := len(" 100% |") + len("| ") + count + len(" [59m59s]") + 1
	n := invoices
	widest := summary{charged: n, replayed: n, declined: n, unknown: n}
	var room int
	for form := summaryLong; form <= summaryNone; form++ {
		room = columns - fixed - utf8.RuneCountInString(widest.describe(form))
		if room >= minBarWidth || form == summaryNone {
			return progressLayout{barWidth: min(max(room, 1), maxBarWidth), form: form}
		}
	}
	panic("unreachable")
}

// newProgressBar returns the bar of a run of invoices, drawn on w when
// visible, laid out for a terminal of columns.
func newProgressBar(w io.Writer, visible bool, invoices int, layout progressLayout) *progressbar.ProgressBar {
	return progressbar.NewOptions(invoices,
		progressbar.OptionSetWriter(w),
		progressbar.OptionSetVisibility(visible),
		progressbar.OptionSetDescription("renewals"),
		progressbar.OptionShowCount(),
		progressbar.OptionSetWidth(layout.barWidth),
		progressbar.OptionThrottle(50*time.Millisecond),
		progressbar.OptionShowElapsedTimeOnFinish(),
	)
}
