package main

import (
	"fmt"
	"html"
	"math"
	"slices"
	"strings"
)

// The chart's geometry, in SVG user units (pixels at 100%).
const (
	chartWidth   = 900
	chartHeight  = 500
	marginLeft   = 70
	marginRight  = 30
	marginTop    = 80
	marginBottom = 60
)

// lineStyle is a strategy's color, width and dashes.
type lineStyle struct {
	color string
	width float64
	dash  string
}

// styles are the lines of the strategies, in the order of strategies(). The
// dashes tell apart the lines that overlap: no jitter and full jitter
// during the outage, and once the budget is empty, the budget's and the
// baseline's, which is drawn last, thin, so that both show.
func styles() []lineStyle {
	return []lineStyle{{"#222222", 1.5, "3 3"}, {"#d62728", 2, "7 4"}, {"#1f77b4", 2, ""}, {"#2ca02c", 2.5, ""}}
}

// dashAttr is the SVG attribute for a dash pattern, "" for a solid line.
func dashAttr(dash string) string {
	if dash == "" {
		return ""
	}
	return fmt.Sprintf(` stroke-dasharray="%s"`, dash)
}

// chart draws the calls the gateway received per simulated second, one line
// per strategy, with the outage shaded. It is plain SVG 1.1, written by
// hand so that the example needs nothing beyond the standard library.
func chart(res *results) string {
	cfg := &res.cfg
	// The chart shows the timeline. The few calls still retrying after the
	// last customer arrived are in the table, not here: their last second
	// is a partial one, whose drop would look like a collapse.
	seconds := int(math.Ceil(cfg.timeline().Seconds()))
	var peak int64
	for _, r := range res.rows {
		peak = max(peak, slices.Max(append(r.perSecond[:min(len(r.perSecond), seconds):min(len(r.perSecond), seconds)], 0)))
	}
	xStep := niceStep(float64(seconds), 8)
	xMax := math.Ceil(float64(seconds)/xStep) * xStep
	yStep := niceStep(float64(max(peak, 1)), 6)
	yMax := math.Ceil(float64(max(peak, 1))/yStep) * yStep

	pw := float64(chartWidth - marginLeft - marginRight)
	ph := float64(chartHeight - marginTop - marginBottom)
	x := func(sec float64) float64 { return marginLeft + sec/xMax*pw }
	y := func(calls float64) float64 { return marginTop + ph - calls/yMax*ph }

	seriesStyle := styles()
	var b strings.Builder
	fmt.Fprintf(&b, `<?xml version="1.0" encoding="UTF-8"?>`+"\n")
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n",
		chartWidth, chartHeight, chartWidth, chartHeight)
	fmt.Fprintf(&b, `<rect width="%d" height="%d" fill="white"/>`+"\n", chartWidth, chartHeight)
	fmt.Fprintf(&b, `<text x="%d" y="24" font-size="16" font-weight="bold">%s</text>`+"\n", marginLeft,
		esc(fmt.Sprintf("Calls the gateway received per second: %d clients, %g payments/s each, %v outage",
			cfg.clients, cfg.rate, cfg.outage)))

	// The outage, behind everything else.
	ox0, ox1 := x(cfg.outageStart().Seconds()), x(cfg.outageEnd().Seconds())
	fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%.1f" fill="#fbe3e3"/>`+"\n",
		ox0, marginTop, ox1-ox0, ph)
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" fill="#a33">%s</text>`+"\n",
		(ox0+ox1)/2, marginTop+16, esc("outage ("+cfg.outageKind()+")"))

	// Grid, ticks and labels.
	for v := 0.0; v <= yMax+yStep/2; v += yStep {
		fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#ddd"/>`+"\n", marginLeft, y(v), x(xMax), y(v))
		fmt.Fprintf(&b, `<text x="%d" y="%.1f" text-anchor="end" dominant-baseline="middle">%g</text>`+"\n",
			marginLeft-6, y(v), v)
	}
	for v := 0.0; v <= xMax+xStep/2; v += xStep {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`+"\n", x(v), y(0), x(v), y(0)+5)
		fmt.Fprintf(&b, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n",
			x(v), y(0)+19, esc(fmt.Sprintf("%gs", v)))
	}
	fmt.Fprintf(&b, `<line x1="%d" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#333"/>`+"\n", marginLeft, y(0), x(xMax), y(0))
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%.1f" stroke="#333"/>`+"\n", marginLeft, marginTop, marginLeft, y(0))
	fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle">simulated time</text>`+"\n",
		marginLeft+pw/2, chartHeight-14)
	fmt.Fprintf(&b, `<text transform="translate(18 %.1f) rotate(-90)" text-anchor="middle">calls per simulated second</text>`+"\n",
		marginTop+ph/2)

	// One line per strategy, a point in the middle of each second, the
	// baseline last so that it stays visible.
	for i := len(res.rows) - 1; i >= 0; i-- {
		r, st := &res.rows[i], seriesStyle[i%len(seriesStyle)]
		var pts strings.Builder
		for sec, n := range r.perSecond[:min(len(r.perSecond), seconds)] {
			fmt.Fprintf(&pts, "%.1f,%.1f ", x(float64(sec)+0.5), y(float64(n)))
		}
		fmt.Fprintf(&b, `<polyline fill="none" stroke="%s" stroke-width="%g" stroke-linejoin="round"%s points="%s"><title>%s</title></polyline>`+"\n",
			st.color, st.width, dashAttr(st.dash), strings.TrimSpace(pts.String()), esc(r.name))
	}

	// The legend, in a row under the title, where no line can hide it.
	lx := float64(marginLeft)
	for i, r := range res.rows {
		st := seriesStyle[i%len(seriesStyle)]
		fmt.Fprintf(&b, `<line x1="%.1f" y1="50" x2="%.1f" y2="50" stroke="%s" stroke-width="%g"%s/>`+"\n",
			lx, lx+24, st.color, st.width+0.5, dashAttr(st.dash))
		fmt.Fprintf(&b, `<text x="%.1f" y="50" dominant-baseline="middle">%s</text>`+"\n", lx+30, esc(r.name))
		lx += 30 + 7*float64(len(r.name)) + 24
	}
	b.WriteString("</svg>\n")
	return b.String()
}

// niceStep returns a step of 1, 2 or 5 times a power of ten that divides
// [0, span] into at most ticks intervals.
func niceStep(span float64, ticks int) float64 {
	raw := span / float64(ticks)
	pow := math.Pow(10, math.Floor(math.Log10(raw)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*pow >= raw {
			return m * pow
		}
	}
	return 10 * pow
}

func esc(s string) string { return html.EscapeString(s) }
