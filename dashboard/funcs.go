package dashboard

import (
	"fmt"
	"html/template"
	"strings"
	"time"

	"github.com/vouch-dev/vouch/internal/buildinfo"
)

// funcs are the helpers the templates use. They return plain strings:
// html/template escapes them where they land.
var funcs = template.FuncMap{
	// vouchVersion is the footer's "which vouch is this" (package buildinfo).
	"vouchVersion": func() string { return buildinfo.Read().Short() },
	"subjectURL":   subjectURL,
	"join":         func(s []string) string { return strings.Join(s, ", ") },
	"short":        shortOutput,
	"age":          age,
	"rate": func(r *float64) string {
		if r == nil {
			return "—"
		}
		return pct(*r)
	},
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "never"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"claimsOf": func(bs []BuilderView) uint64 {
		var n uint64
		for _, b := range bs {
			n += b.Entries
		}
		return n
	},
}

// shortOutput shows the first compared field of an output
// ("nar-hash=sha256:0cag13c7…") so outputs can be told apart at a glance;
// the full value is in the row's title.
func shortOutput(o string) string {
	first, _, _ := strings.Cut(o, ";")
	if len(first) > 36 {
		return first[:36] + "…"
	}
	return first
}

// age says how long ago, in seconds, in words; negative means never.
func age(seconds float64) string {
	if seconds < 0 {
		return "never"
	}
	d := time.Duration(seconds * float64(time.Second))
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%.0f s ago", d.Seconds())
	case d < time.Hour:
		return fmt.Sprintf("%.0f min ago", d.Minutes())
	case d < 48*time.Hour:
		return fmt.Sprintf("%.1f h ago", d.Hours())
	}
	return fmt.Sprintf("%.0f days ago", d.Hours()/24)
}
