package report

import (
	"fmt"
	"io"
	"sort"
	"text/tabwriter"
	"time"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/verdict"
)

// Comparison is how two policies decide the subjects one index holds: what
// `vouch policy test` prints before a new policy is put in force. Both are
// applied exactly as a report applies one (DecideEntries over each
// subject's claims and the index's compromised flags).
type Comparison struct {
	Before   PolicySummary `json:"before"`
	After    PolicySummary `json:"after"`
	Subjects int           `json:"subjects"`
	// Changed counts the subjects whose outcome or trusted output differs.
	Changed int `json:"changed"`
	// Transitions counts the changed subjects by (from, to) outcome.
	Transitions []Transition `json:"transitions"`
	// ByException counts the subjects After trusts only through an exception.
	ByException int `json:"by_exception"`
	// Changes lists changed subjects (bounded by Options.ListLimit).
	Changes []Change `json:"changes"`
}

// PolicySummary names a compared policy.
type PolicySummary struct {
	Label       string `json:"label"` // where it came from, e.g. a file name
	Fingerprint string `json:"fingerprint"`
	Trusted     int    `json:"trusted"` // subjects it trusts
}

// Transition is a count of subjects that moved from one outcome to another.
type Transition struct {
	From  verdict.Outcome `json:"from"`
	To    verdict.Outcome `json:"to"`
	Count int             `json:"count"`
}

// Change is one subject the two policies decide differently.
type Change struct {
	Kind    claim.Kind      `json:"kind"`
	Subject string          `json:"subject"`
	From    verdict.Outcome `json:"from"`
	To      verdict.Outcome `json:"to"`
	// OutputChanged is set when both trust the subject with different outputs.
	OutputChanged bool   `json:"output_changed,omitempty"`
	FromReason    string `json:"from_reason"`
	ToReason      string `json:"to_reason"`
	// Exception is what the exception that admitted it under After
	// matches, if one did.
	Exception string `json:"exception,omitempty"`
}

// CompareOptions tune a comparison.
type CompareOptions struct {
	// ListLimit bounds Changes (zero: no bound); PageSize is how many
	// subjects are read at once (zero: 1000).
	ListLimit, PageSize int
	// Since, if set, keeps only the subjects with a claim logged at or
	// after it (by the claims' time field; claims without one are kept).
	Since time.Time
}

// Compare decides every subject of r under before and after and reports
// the differences.
func Compare(r Reader, before, after *verdict.Policy, beforeLabel, afterLabel string, opt CompareOptions) (*Comparison, error) {
	pageSize := opt.PageSize
	if pageSize <= 0 {
		pageSize = 1000
	}
	c := &Comparison{
		Before:  PolicySummary{Label: beforeLabel, Fingerprint: before.Fingerprint()},
		After:   PolicySummary{Label: afterLabel, Fingerprint: after.Fingerprint()},
		Changes: []Change{}, Transitions: []Transition{},
	}
	transitions := map[[2]verdict.Outcome]int{}
	for cursor := ""; ; {
		page, next, err := r.Subjects(cursor, pageSize)
		if err != nil {
			return nil, fmt.Errorf("policy test: reading subjects: %w", err)
		}
		for _, s := range page {
			if !opt.Since.IsZero() && !loggedSince(s.Claims, opt.Since) {
				continue
			}
			c.Subjects++
			a := before.DecideEntries(s.Claims, r.Compromised)
			b := after.DecideEntries(s.Claims, r.Compromised)
			if a.Outcome == verdict.Trusted {
				c.Before.Trusted++
			}
			if b.Outcome == verdict.Trusted {
				c.After.Trusted++
			}
			if b.Exception != nil {
				c.ByException++
			}
			outputChanged := a.Value != nil && b.Value != nil && a.Value.Output() != b.Value.Output()
			if a.Outcome == b.Outcome && !outputChanged {
				continue
			}
			c.Changed++
			transitions[[2]verdict.Outcome{a.Outcome, b.Outcome}]++
			if opt.ListLimit <= 0 || len(c.Changes) < opt.ListLimit {
				ch := Change{Kind: s.Kind, Subject: s.Subject, From: a.Outcome, To: b.Outcome, OutputChanged: outputChanged,
					FromReason: a.Reason, ToReason: b.Reason}
				if b.Exception != nil {
					ch.Exception = b.Exception.Match
				}
				c.Changes = append(c.Changes, ch)
			}
		}
		if next == "" {
			break
		}
		cursor = next
	}
	for k, n := range transitions {
		c.Transitions = append(c.Transitions, Transition{From: k[0], To: k[1], Count: n})
	}
	sort.Slice(c.Transitions, func(i, j int) bool {
		x, y := c.Transitions[i], c.Transitions[j]
		if x.Count != y.Count {
			return x.Count > y.Count
		}
		if x.From != y.From {
			return x.From < y.From
		}
		return x.To < y.To
	})
	return c, nil
}

// loggedSince reports whether any claim was logged at or after since, or
// carries no time at all (then it may be recent).
func loggedSince(entries []verdict.Entry, since time.Time) bool {
	for _, e := range entries {
		if e.Claim.Time.IsZero() || !e.Claim.Time.Before(since) {
			return true
		}
	}
	return false
}

// WriteText writes the comparison for a terminal.
func (c *Comparison) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	fmt.Fprintf(ew, "%d subjects in the index\n", c.Subjects)
	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "before\t%s\t%s\t%d trusted\n", c.Before.Label, c.Before.Fingerprint, c.Before.Trusted)
	fmt.Fprintf(tw, "after\t%s\t%s\t%d trusted", c.After.Label, c.After.Fingerprint, c.After.Trusted)
	if c.ByException > 0 {
		fmt.Fprintf(tw, " (%d by exception)", c.ByException)
	}
	fmt.Fprintln(tw)
	tw.Flush()
	if c.Changed == 0 {
		fmt.Fprintln(ew, "\nno subject is decided differently")
		return ew.err
	}
	fmt.Fprintf(ew, "\n%d subject%s decided differently:\n", c.Changed, map[bool]string{true: "s"}[c.Changed > 1])
	for _, t := range c.Transitions {
		fmt.Fprintf(ew, "  %d  %s -> %s\n", t.Count, t.From, t.To)
	}
	fmt.Fprintln(ew)
	for _, ch := range c.Changes {
		what := string(ch.From) + " -> " + string(ch.To)
		if ch.OutputChanged {
			what = "trusted, with another output"
		}
		fmt.Fprintf(ew, "%s %s: %s\n    before: %s\n    after:  %s\n", ch.Kind, ch.Subject, what, ch.FromReason, ch.ToReason)
	}
	if len(c.Changes) < c.Changed {
		fmt.Fprintf(ew, "… and %d more (raise --limit, or use --json)\n", c.Changed-len(c.Changes))
	}
	return ew.err
}
