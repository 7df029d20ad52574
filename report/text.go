package report

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// WriteText writes the report for a terminal: totals, a row per builder,
// the builder-by-builder agreement matrix, log health, then the lists.
func (r *Report) WriteText(w io.Writer) error {
	ew := &errWriter{w: w}
	p := r.Policy
	fmt.Fprintf(ew, "vouch reproducibility report, %s\n", r.Generated.Format(time.RFC3339))
	fmt.Fprintf(ew, "policy: %d of %d votes from %d builders, at least %d operators, on conflict %s",
		p.Min, p.TotalWeight, p.Builders, p.MinOperators, p.OnConflict)
	if p.Group != "" {
		fmt.Fprintf(ew, ", meeting group %s", p.Group)
	}
	if p.Exceptions > 0 {
		fmt.Fprintf(ew, "; %d exception%s", p.Exceptions, map[bool]string{true: "s"}[p.Exceptions > 1])
	}
	fmt.Fprintf(ew, " (%s)\n\n", p.Fingerprint)

	t := r.Totals
	tw := tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "subjects\t%d\t%d trusted, %d conflict, %d insufficient\n", t.Subjects, t.Trusted, t.Conflict, t.Insufficient)
	fmt.Fprintf(tw, "disagreements\t%d\tsubjects with more than one output\n", t.Disagreements)
	fmt.Fprintf(tw, "built by one\t%d\toutputs only one builder claimed\n", t.BuiltByOne)
	fmt.Fprintf(tw, "outvoted\t%d\tsubjects where a builder's output lost against an agreeing quorum\n", t.Outvoted)
	fmt.Fprintf(tw, "non-reproducible\t%d\tsubjects with several outputs and no quorum majority for any\n", t.NonReproducible)
	fmt.Fprintf(tw, "by exception\t%d\tsubjects trusted only because an exception admitted them\n", t.ByException)
	fmt.Fprintf(tw, "evidence\t%d\trecorded misbehaviours (vouch evidence)\n", t.Evidence)
	tw.Flush()

	fmt.Fprintln(ew, "\nbuilders")
	tw = tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "\tentries\tsubjects\toutvoted\tnon-reproducible\t\n")
	for _, b := range r.Builders {
		name := b.Name
		if b.Compromised {
			name += " (compromised)"
		}
		flag := ""
		if b.Outvoted > 0 {
			flag = "<- outvoted by a quorum"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%s\n", name, b.Entries, b.Subjects, b.Outvoted, b.NonReproducible, flag)
	}
	tw.Flush()

	if len(r.Builders) > 1 {
		fmt.Fprintln(ew, "\nagreement: % of the subjects both built with equal outputs (shared subjects)")
		tw = tabwriter.NewWriter(ew, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprint(tw, "\t")
		for _, b := range r.Builders {
			fmt.Fprintf(tw, "%s\t", b.Name)
		}
		fmt.Fprintln(tw)
		for _, b := range r.Builders {
			fmt.Fprintf(tw, "%s\t", b.Name)
			row := map[string]Agreement{}
			for _, a := range b.Agreement {
				row[a.With] = a
			}
			for _, o := range r.Builders {
				a, ok := row[o.Name]
				switch {
				case !ok:
					fmt.Fprint(tw, "-\t")
				case a.Rate == nil:
					fmt.Fprint(tw, "n/a (0)\t")
				default:
					fmt.Fprintf(tw, "%.0f%% (%d)\t", 100**a.Rate, a.Shared)
				}
			}
			fmt.Fprintln(tw)
		}
		tw.Flush()
	}

	fmt.Fprintln(ew, "\nlogs")
	tw = tabwriter.NewWriter(ew, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "\ttree\tindexed\tlag\tlast synced\tevidence\tstatus")
	for _, l := range r.Logs {
		synced := "never"
		if l.Age >= 0 {
			synced = (time.Duration(l.Age) * time.Second).String() + " ago"
		}
		status := "ok"
		switch {
		case l.Compromised:
			status = "COMPROMISED: its claims count for nothing"
		case l.Unavailable:
			status = "UNAVAILABLE" + failingFor(l) + ", its verified claims still count: " + l.Error
			if l.StaleView {
				status = "STALE VIEW" + failingFor(l) + ", the newer checkpoint is kept: " + l.Error
			}
		case l.Error != "":
			status = "last sync failed: " + l.Error
		case l.TreeSize == 0:
			status = "not synced yet (run vouch sync)"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%s\t%d\t%s\n", l.Builder, l.TreeSize, l.Indexed, l.Lag, synced, l.Evidence, status)
	}
	tw.Flush()

	more := func(shown, total int) {
		if total > shown {
			fmt.Fprintf(ew, "  … and %d more (raise --limit, or use --json)\n", total-shown)
		}
	}
	if len(r.Disagreements) > 0 {
		fmt.Fprintf(ew, "\nsubjects with more than one output (%d)\n", r.Totals.Disagreements)
		for _, s := range r.Disagreements {
			fmt.Fprintf(ew, "  %s %s: %s\n", s.Kind, s.Subject, s.Outcome)
			for _, o := range s.Outputs {
				fmt.Fprintf(ew, "      %s: %s\n", strings.Join(o.Builders, ", "), o.Output)
			}
		}
		more(len(r.Disagreements), r.Totals.Disagreements)
	}
	if len(r.Outvotes) > 0 {
		fmt.Fprintf(ew, "\nclaims outvoted by an agreeing quorum (%d subjects)\n", r.Totals.Outvoted)
		for _, o := range r.Outvotes {
			fmt.Fprintf(ew, "  %s %s: %s logged %s; %s agreed on %s\n", o.Kind, o.Subject, o.Builder, o.Output, strings.Join(o.Quorum, ", "), o.Agreed)
		}
		more(len(r.Outvotes), len(r.Outvotes))
	}
	if len(r.Exceptions) > 0 {
		fmt.Fprintf(ew, "\nsubjects admitted by an exception (%d)\n", r.Totals.ByException)
		for _, e := range r.Exceptions {
			fmt.Fprintf(ew, "  %s %s: %s (exception for %s, rule: %s): %s\n", e.Kind, e.Subject, e.Output, e.Match, e.Rule, e.Reason)
		}
		more(len(r.Exceptions), r.Totals.ByException)
	}
	if len(r.BuiltByOne) > 0 {
		fmt.Fprintf(ew, "\noutputs only one builder claimed (%d)\n", r.Totals.BuiltByOne)
		for _, s := range r.BuiltByOne {
			others := "nobody else built it"
			if s.Others > 0 {
				others = fmt.Sprintf("%d other builder%s got something else", s.Others, map[bool]string{true: "s"}[s.Others > 1])
			}
			fmt.Fprintf(ew, "  %s %s by %s (%s)\n", s.Kind, s.Subject, s.Builder, others)
		}
		more(len(r.BuiltByOne), r.Totals.BuiltByOne)
	}
	if len(r.Undecided) > 0 {
		undecided := r.Totals.Subjects - r.Totals.Trusted
		fmt.Fprintf(ew, "\nsubjects not trusted under this policy (%d)\n", undecided)
		for _, s := range r.Undecided {
			fmt.Fprintf(ew, "  %s %s: %s: %s\n", s.Kind, s.Subject, s.Outcome, s.Reason)
			for _, a := range s.Missing {
				fmt.Fprintf(ew, "      missing %s: %s (%s)\n", a.Builder, a.State, a.Detail)
			}
		}
		more(len(r.Undecided), undecided)
	}
	return ew.err
}

// errWriter keeps the first write error, so the printing code above need
// not check every call.
type errWriter struct {
	w   io.Writer
	err error
}

func (e *errWriter) Write(b []byte) (int, error) {
	if e.err != nil {
		return 0, e.err
	}
	n, err := e.w.Write(b)
	e.err = err
	return n, err
}

// failingFor says for how many rounds, and since when, a log has failed.
func failingFor(l Log) string {
	s := fmt.Sprintf(" (%d round", l.Failures)
	if l.Failures != 1 {
		s += "s"
	}
	if l.FailingSince != nil {
		s += " since " + l.FailingSince.Format(time.RFC3339)
	}
	return s + ")"
}
