package dashboard

import (
	"fmt"
	"html/template"
	"math"
	"strings"

	"github.com/vouch-dev/vouch/report"
)

// The plots are SVG drawn here, on the server: no script, nothing fetched.
// Every text that comes from data goes through esc.

func esc(s string) string { return template.HTMLEscapeString(s) }

func pct(r float64) string { return fmt.Sprintf("%.1f %%", 100*r) }

// Colours of the plots (also in style.css).
const (
	colourGood  = "#2e7d32"
	colourBad   = "#c62828"
	colourOne   = "#9e9e9e"
	colourMixed = "#ef6c00"
	colourAxis  = "#666"
)

// agreementChart is a horizontal bar per builder: how often its output
// equals the other builders' on the subjects they share.
func agreementChart(builders []BuilderView) template.HTML {
	const rowH, labelW, barW, pad = 28, 120, 360, 70
	h := rowH*len(builders) + 10
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="agreement per builder" xmlns="http://www.w3.org/2000/svg">`, labelW+barW+pad, h)
	for i, v := range builders {
		y := i*rowH + 5
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" class="label">%s</text>`, labelW-8, y+17, esc(trunc(v.Name)))
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%d" height="%d" fill="#eee"/>`, labelW, y+3, barW, rowH-8)
		text := "no shared subjects"
		if v.AgreementRate != nil {
			r := *v.AgreementRate
			colour := colourGood
			switch {
			case v.Compromised || v.Outvoted > 0:
				// It lost against an agreeing quorum: whatever its rate, a
				// liar is not coloured like an honest builder.
				colour = colourBad
			case r < 0.5:
				colour = colourBad
			case r < 0.95:
				colour = colourMixed
			}
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"><title>%s agrees on %s of shared subjects</title></rect>`,
				labelW, y+3, r*barW, rowH-8, colour, esc(v.Name), pct(r))
			text = pct(r)
		}
		if v.Compromised {
			text += " · compromised"
		} else if v.Outvoted > 0 {
			text += fmt.Sprintf(" · outvoted on %d", v.Outvoted)
		}
		fmt.Fprintf(&b, `<text x="%d" y="%d" class="value">%s</text>`, labelW+barW+6, y+17, esc(text))
	}
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}

// matrix is the builder-by-builder agreement table of the overview.
type matrix struct {
	Names []string
	Rows  []matrixRow
}

type matrixRow struct {
	Name  string
	Cells []matrixCell
}

type matrixCell struct {
	Text  string // the rate, "—" for none, "" on the diagonal
	Class string // heat class h0…h10, "none" or "self"
	Title string
}

func agreementMatrix(builders []report.Builder) matrix {
	m := matrix{}
	for _, b := range builders {
		m.Names = append(m.Names, b.Name)
	}
	for _, b := range builders {
		row := matrixRow{Name: b.Name}
		for _, other := range builders {
			if other.Name == b.Name {
				row.Cells = append(row.Cells, matrixCell{Class: "self"})
				continue
			}
			cell := matrixCell{Text: "—", Class: "none", Title: b.Name + " and " + other.Name + " never built the same subject"}
			for _, a := range b.Agreement {
				if a.With == other.Name && a.Rate != nil {
					cell.Text = fmt.Sprintf("%.0f%%", 100**a.Rate)
					cell.Class = fmt.Sprintf("h%d", int(math.Floor(*a.Rate*10)))
					cell.Title = fmt.Sprintf("%s and %s agree on %d of the %d subjects both built", b.Name, other.Name, a.Agreed, a.Shared)
				}
			}
			row.Cells = append(row.Cells, cell)
		}
		m.Rows = append(m.Rows, row)
	}
	return m
}

// MaxDaysPlotted bounds the days the plot shows (the latest ones); the
// API returns all of them.
const MaxDaysPlotted = 90

// daysChart stacks, for each day, the subjects first logged that day:
// reproduced, disagreeing, built by one builder.
func daysChart(days []Day) template.HTML {
	if len(days) > MaxDaysPlotted {
		days = days[len(days)-MaxDaysPlotted:]
	}
	if len(days) == 0 {
		return template.HTML(`<p class="muted">No claim carries a time yet.</p>`)
	}
	const w, h, left, bottom, top = 640, 220, 48, 40, 10
	most := 1
	for _, d := range days {
		most = max(most, d.Subjects)
	}
	slot := float64(w-left-10) / float64(len(days))
	barW := math.Min(40, math.Max(1, slot*0.8))
	scale := float64(h-bottom-top) / float64(most)
	var b strings.Builder
	fmt.Fprintf(&b, `<svg class="chart" viewBox="0 0 %d %d" role="img" aria-label="reproducibility by day" xmlns="http://www.w3.org/2000/svg">`, w, h)
	fmt.Fprintf(&b, `<line x1="%d" y1="%d" x2="%d" y2="%d" stroke="%s"/>`, left, h-bottom, w-10, h-bottom, colourAxis)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" class="label">%d</text>`, left-6, top+10, most)
	fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end" class="label">0</text>`, left-6, h-bottom)
	for i, d := range days {
		x := float64(left) + float64(i)*slot + (slot-barW)/2
		y := float64(h - bottom)
		for _, part := range []struct {
			n      int
			colour string
			what   string
		}{{d.Reproduced, colourGood, "reproduced"}, {d.Disagreeing, colourBad, "disagreeing"}, {d.BuiltByOne, colourOne, "built by one builder"}} {
			if part.n == 0 {
				continue
			}
			hh := float64(part.n) * scale
			y -= hh
			fmt.Fprintf(&b, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="%s"><title>%s: %d %s</title></rect>`,
				x, y, barW, hh, part.colour, esc(d.Day), part.n, part.what)
		}
		if i == 0 || i == len(days)-1 || len(days) <= 8 {
			fmt.Fprintf(&b, `<text x="%.1f" y="%d" text-anchor="middle" class="label">%s</text>`, x+barW/2, h-bottom+16, esc(d.Day))
		}
	}
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d" class="label">reproduced</text>`, left, h-14, colourGood, left+14, h-5)
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d" class="label">disagreeing</text>`, left+110, h-14, colourBad, left+124, h-5)
	fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d" class="label">built by one</text>`, left+220, h-14, colourOne, left+234, h-5)
	b.WriteString(`</svg>`)
	return template.HTML(b.String())
}
