package dashboard

import (
	"fmt"
	"strings"
	"time"

	"github.com/vouch-dev/vouch/verdict"
)

// Attention is one thing about a builder an operator should look at, in
// words, for the top of the overview.
type Attention struct {
	Builder string `json:"builder"`
	// Level is "bad" (its claims no longer count, or it lies), "warn" (it
	// cannot be synced now; its verified claims still count) or "info".
	Level string `json:"level"`
	Text  string `json:"text"`
}

// attention lists what needs an operator's eye, worst first: compromised
// builders, then unavailable ones and stale views, logs never synced or not
// confirmed for a long time, then builders outvoted by an agreeing quorum.
// interval is the follower's poll interval (what "a long time" is measured
// against).
func attention(builders []BuilderView, interval time.Duration, now time.Time) []Attention {
	var bad, warn, info []Attention
	for _, b := range builders {
		switch {
		case b.Compromised:
			text := "compromised: its log proved misbehaviour, so its claims count for nothing"
			if len(b.Evidence) > 0 {
				text += fmt.Sprintf(" (evidence %s: %s)", b.Evidence[0].ID, b.Evidence[0].Kind)
			}
			bad = append(bad, Attention{b.Name, "bad", text + ". Re-admit it only after investigating (vouch builder readmit)."})
		case b.Unavailable && b.StaleView:
			warn = append(warn, Attention{b.Name, "warn", fmt.Sprintf("shown an older checkpoint than the one already verified, %s (a stale mirror or cache in front of the log?); its verified claims still count", since(b, now))})
		case b.Unavailable:
			warn = append(warn, Attention{b.Name, "warn", fmt.Sprintf("unavailable %s, %d round%s in a row: %s; its verified claims still count", since(b, now), b.Failures, plural(b.Failures), shortError(b.Error))})
		case b.TreeSize == 0 && b.LastOK.IsZero():
			warn = append(warn, Attention{b.Name, "warn", "never synced yet: it counts as silent on every subject"})
		case b.AgeSeconds >= 0 && interval > 0 && time.Duration(b.AgeSeconds*float64(time.Second)) > 30*interval && time.Duration(b.AgeSeconds*float64(time.Second)) > 10*time.Minute:
			warn = append(warn, Attention{b.Name, "warn", fmt.Sprintf("its checkpoint was last confirmed %s ago", time.Duration(b.AgeSeconds*float64(time.Second)).Round(time.Second))})
		}
		if b.Outvoted > 0 && !b.Compromised {
			info = append(info, Attention{b.Name, "bad", fmt.Sprintf("outvoted on %d subject%s: its output differs from one an agreeing quorum holds (see the conflicts)", b.Outvoted, plural(b.Outvoted))})
		}
	}
	return append(append(bad, warn...), info...)
}

func since(b BuilderView, now time.Time) string {
	if b.FailingSince.IsZero() {
		return "since the last round"
	}
	return "for " + now.Sub(b.FailingSince).Round(time.Second).String()
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// shortError keeps the end of a wrapped error, where the cause is (the
// start names the builder and URL, already shown), on one line.
func shortError(e string) string {
	e = strings.Join(strings.Fields(e), " ")
	if len(e) > 240 {
		e = "…" + e[len(e)-240:]
	}
	return e
}

// standOf says how output fares in v, for a claim's badge.
func standOf(v verdict.Verdict, output string) string {
	switch {
	case v.Value != nil && v.Value.Output() == output:
		return "agrees"
	case len(v.Agreed) > 0 && v.Agreed[0].Output == output:
		return "leading output"
	case v.Outvoted:
		return "outvoted"
	}
	return "other output"
}
