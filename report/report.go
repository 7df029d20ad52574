// Package report builds a node's reproducibility report from its follower
// index: how often each builder agrees with each other builder, which
// subjects have more than one output and who built each, which outputs only
// one builder ever produced, what the node's policy decides for every
// subject, and how healthy each followed log is.
//
// # Numbers
//
// Everything is counted over the configured logs only (unlisted logs are
// never read) and over the claims in each log's latest fully indexed
// checkpoint, the same claims `vouch verdict` sees.
//
//   - Entries of a builder: entries of its log indexed so far.
//     Subjects: the subjects it has a claim for.
//   - Agreement of A with B: of the subjects both A and B claimed, the share
//     for which their outputs are equal (claim.Output). Shared = 0 means
//     they never built the same thing and the rate is undefined (null).
//   - Outputs of a subject: its distinct outputs, each with the builders
//     that claimed it, the most-built first (ties by output).
//   - Built by one builder: an output exactly one builder claimed; the
//     subject was never independently reproduced with that result.
//   - Disagreements: subjects with two or more outputs among all claims,
//     those of compromised logs included (they show what the logs say).
//   - Verdicts: Policy.DecideEntries over the subject's claims and the
//     index's compromised flags: exactly the decision Policy.Decide makes
//     for `vouch verdict` (Decide is DecideEntries plus inclusion proofs,
//     which a report does not need), so the counts match for every subject.
//   - Outvoted (per builder): subjects for which the builder's output lost
//     against an agreeing quorum — another output alone met the policy's
//     Min and MinOperators with a strict majority of the configured weight
//     (verdict.Verdict.Outvoted), whatever on-conflict says. A builder that
//     lies, or is broken, stands out here.
//   - Non-reproducible (per builder): subjects for which the builder's
//     counted claim is one of two or more outputs and no output has such a
//     majority: the subject does not reproduce, and nobody can tell who is
//     right. Only counted builders (listed, not compromised, one output)
//     are counted in either.
//   - By exception: subjects trusted only because one of the policy's
//     exceptions admitted them (verdict.Verdict.Exception), each listed
//     with the exception's reason. Their dissent is still counted above.
//   - Missing (per subject not trusted): each configured builder without a
//     counted claim for it (verdict.Verdict.Silent), with what its log's
//     health says about why: "down" when its last sync attempt failed,
//     "lagging" when its latest verified checkpoint holds entries not yet
//     indexed (the claim may be among them), "not synced" before its first
//     checkpoint, and "silent" when its log is up to date and simply holds
//     no claim for the subject (it has not built it, or not yet logged it).
//   - Log health: tree size of the latest verified checkpoint, entries
//     indexed, lag (entries of that checkpoint not yet indexed), when the
//     last sync attempt and the last successful one ended, the error of the
//     last attempt, and how many pieces of evidence were recorded.
//
// The report walks the index a page at a time, so memory grows with the
// number of builders and with the lists it keeps (bounded by
// Options.ListLimit), not with the number of subjects.
package report

import (
	"fmt"
	"sort"
	"time"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/index"
	"github.com/vouch-dev/vouch/verdict"
)

// Reader is what a report reads; *index.Index implements it.
type Reader interface {
	verdict.Source
	// Subjects pages through every subject the configured logs claimed.
	Subjects(after string, limit int) ([]index.Subject, string, error)
	// Stats returns the state of every configured log.
	Stats() ([]index.LogStats, error)
	// Evidence returns all recorded evidence.
	Evidence() ([]*index.Evidence, error)
}

// Options tune a report.
type Options struct {
	// Now is the time ages are measured from; zero means time.Now().
	Now time.Time
	// ListLimit bounds each list of subjects the report keeps (Disagreements,
	// BuiltByOne, and Undecided); the totals always count everything. Zero
	// means no bound.
	ListLimit int
	// AllSubjects adds every subject, with its outputs and verdict, to
	// Report.Subjects (unbounded: a log of 10^6 subjects gives 10^6 rows).
	AllSubjects bool
	// PageSize is how many subjects are read from the index at once;
	// zero means 1000.
	PageSize int
}

// Report is a node's reproducibility report.
type Report struct {
	Generated time.Time `json:"generated"`
	Policy    Policy    `json:"policy"`
	Totals    Totals    `json:"totals"`
	Builders  []Builder `json:"builders"`
	Logs      []Log     `json:"logs"`
	// Disagreements lists the subjects with two or more outputs.
	Disagreements []Subject `json:"disagreements"`
	// BuiltByOne lists the outputs only one builder claimed.
	BuiltByOne []Single `json:"built_by_one"`
	// Undecided lists the subjects whose verdict is not trusted.
	Undecided []Subject `json:"undecided"`
	// Outvotes lists the claims that lost against an agreeing quorum.
	Outvotes []Outvote `json:"outvotes"`
	// Exceptions lists the subjects an exception admitted.
	Exceptions []ExceptionUse `json:"exceptions"`
	// Subjects lists every subject when Options.AllSubjects is set.
	Subjects []Subject `json:"subjects,omitempty"`
}

// Policy summarises the quorum the verdicts were taken under.
type Policy struct {
	Builders     int    `json:"builders"`     // distinct builders counted
	TotalWeight  int    `json:"total_weight"` // the denominator
	Min          int    `json:"min"`
	MinOperators int    `json:"min_operators"`
	OnConflict   string `json:"on_conflict"`
	Group        string `json:"group,omitempty"` // the group the agreeing builders must meet
	Groups       int    `json:"groups"`          // groups defined
	Exceptions   int    `json:"exceptions"`      // exceptions listed
	// Fingerprint is verdict.Policy.Fingerprint: it changes whenever what
	// the policy decides may change.
	Fingerprint string `json:"fingerprint"`
}

// Totals are counts over every subject.
type Totals struct {
	Subjects      int `json:"subjects"`
	Trusted       int `json:"trusted"`
	Insufficient  int `json:"insufficient"`
	Conflict      int `json:"conflict"`
	Disagreements int `json:"disagreements"` // subjects with two or more outputs
	BuiltByOne    int `json:"built_by_one"`  // outputs only one builder claimed
	// Outvoted counts the subjects where at least one builder was outvoted,
	// NonReproducible those with two or more counted outputs and no
	// output holding a quorum with a strict majority.
	Outvoted        int `json:"outvoted"`
	NonReproducible int `json:"non_reproducible"`
	// ByException counts the subjects trusted only through an exception.
	ByException int `json:"by_exception"`
	Evidence    int `json:"evidence"`
}

// ExceptionUse is one subject an exception admitted.
type ExceptionUse struct {
	Kind    claim.Kind `json:"kind"`
	Subject string     `json:"subject"`
	Output  string     `json:"output"` // the output it admitted
	Match   string     `json:"match"`  // what the exception matches
	Rule    string     `json:"rule"`   // whose agreement sufficed
	Reason  string     `json:"reason"` // the exception's reason
}

// Builder is one configured log's share of the claims.
type Builder struct {
	Name        string `json:"name"`
	Entries     uint64 `json:"entries"`  // entries indexed
	Subjects    int    `json:"subjects"` // subjects it has a claim for
	Compromised bool   `json:"compromised"`
	// Outvoted counts the subjects where this builder's output lost
	// against an agreeing quorum; NonReproducible those where its output
	// was one of several and none had such a quorum (see the package doc).
	Outvoted        int         `json:"outvoted"`
	NonReproducible int         `json:"non_reproducible"`
	Agreement       []Agreement `json:"agreement"` // with every other configured log, by name
}

// Outvote is one claim that lost against an agreeing quorum.
type Outvote struct {
	Kind    claim.Kind `json:"kind"`
	Subject string     `json:"subject"`
	Builder string     `json:"builder"` // the outvoted builder
	Output  string     `json:"output"`  // its output
	Agreed  string     `json:"agreed"`  // the output the quorum agreed on
	// Quorum is the builders that agreed on it.
	Quorum []string `json:"quorum"`
}

// Agreement is how often two builders' outputs are equal.
type Agreement struct {
	With   string `json:"with"`
	Shared int    `json:"shared"` // subjects both claimed
	Agreed int    `json:"agreed"` // of those, with equal outputs
	// Rate is Agreed/Shared, nil when Shared is 0.
	Rate *float64 `json:"rate"`
}

// Subject is one subject's outputs and verdict.
type Subject struct {
	Kind    claim.Kind      `json:"kind"`
	Subject string          `json:"subject"`
	Outcome verdict.Outcome `json:"outcome"`
	Reason  string          `json:"reason"`
	Outputs []Output        `json:"outputs"`
	// Missing says why each silent builder is silent, for subjects that
	// are not trusted (see the package doc).
	Missing []Absent `json:"missing,omitempty"`
}

// Absent is a configured builder without a counted claim for a subject.
type Absent struct {
	Builder string `json:"builder"`
	State   string `json:"state"`  // down, lagging, not synced or silent
	Detail  string `json:"detail"` // the numbers or error behind State
}

// Absences explains a verdict's silent builders from the health of their
// logs, as in the package doc. A builder with no entry in logs is "silent".
func Absences(v *verdict.Verdict, logs []Log) []Absent {
	if len(v.Silent) == 0 {
		return nil
	}
	byName := make(map[string]*Log, len(logs))
	for i := range logs {
		byName[logs[i].Builder] = &logs[i]
	}
	out := make([]Absent, 0, len(v.Silent))
	for _, name := range v.Silent {
		a := Absent{Builder: name, State: "silent", Detail: "its log holds no claim for this subject"}
		if l := byName[name]; l != nil {
			switch {
			case l.Error != "":
				a.State, a.Detail = "down", "last sync failed: "+l.Error
				if l.Age >= 0 {
					a.Detail += fmt.Sprintf("; last synced %s ago", (time.Duration(l.Age) * time.Second).String())
				} else {
					a.Detail += "; never synced"
				}
			case l.Lag > 0:
				a.State, a.Detail = "lagging", fmt.Sprintf("%d entries of its checkpoint not indexed yet", l.Lag)
			case l.TreeSize == 0:
				a.State, a.Detail = "not synced", "no checkpoint of its log verified yet"
			default:
				a.Detail = fmt.Sprintf("its log is indexed up to its checkpoint of size %d and holds no claim for this subject", l.TreeSize)
			}
		}
		out = append(out, a)
	}
	return out
}

// Missing explains the silent builders of a verdict from r's log health
// at now (zero: time.Now()), for a single verdict outside a report.
func Missing(r Reader, v *verdict.Verdict, now time.Time) ([]Absent, error) {
	if len(v.Silent) == 0 {
		return nil, nil
	}
	if now.IsZero() {
		now = time.Now()
	}
	stats, err := r.Stats()
	if err != nil {
		return nil, fmt.Errorf("reading log states: %w", err)
	}
	logs := make([]Log, 0, len(stats))
	for _, s := range stats {
		l := Log{Builder: s.Name, Lag: s.Pending, Error: s.Health.Error, Age: -1}
		if s.Checkpoint != nil {
			l.TreeSize = s.Checkpoint.Size
		}
		if !s.Health.OK.IsZero() {
			l.Age = now.Sub(s.Health.OK).Seconds()
		}
		logs = append(logs, l)
	}
	return Absences(v, logs), nil
}

// Output is one distinct output of a subject and who claimed it.
type Output struct {
	Output   string   `json:"output"`
	Builders []string `json:"builders"` // sorted
}

// Single is an output only one builder claimed.
type Single struct {
	Kind    claim.Kind `json:"kind"`
	Subject string     `json:"subject"`
	Output  string     `json:"output"`
	Builder string     `json:"builder"`
	// Others is the number of other builders that claimed the subject with
	// another output (0: nobody else built it at all).
	Others int `json:"others"`
}

// Log is the health of one configured log.
type Log struct {
	Builder  string `json:"builder"`
	KeyID    string `json:"key_id"`
	TreeSize uint64 `json:"tree_size"` // latest verified checkpoint; 0 before the first sync
	Indexed  uint64 `json:"indexed"`
	Lag      uint64 `json:"lag"` // entries of that checkpoint not yet indexed
	// LastChecked and LastOK are when the last sync attempt and the last
	// successful one ended (zero: never).
	LastChecked time.Time `json:"last_checked"`
	LastOK      time.Time `json:"last_ok"`
	// Age is how long ago the checkpoint was last confirmed (Now - LastOK),
	// in seconds; -1 when it never was.
	Age         float64 `json:"age_seconds"`
	Error       string  `json:"error,omitempty"`
	Compromised bool    `json:"compromised"`
	Evidence    int     `json:"evidence"`
	// Unavailable is set while the log's sync rounds fail (Error says
	// why): Failures rounds in a row, since FailingSince. A failed round
	// proves nothing against the builder: its verified claims still count.
	Unavailable  bool       `json:"unavailable"`
	Failures     int        `json:"failures"`
	FailingSince *time.Time `json:"failing_since,omitempty"`
	// StaleView is set when the last round was shown an older checkpoint
	// than the one verified (a stale mirror or cache, or a replay); the
	// newer one is kept.
	StaleView bool `json:"stale_view"`
}

// Build walks the index r and reports on it under policy p.
func Build(r Reader, p *verdict.Policy, opt Options) (*Report, error) {
	now := opt.Now
	if now.IsZero() {
		now = time.Now()
	}
	pageSize := opt.PageSize
	if pageSize <= 0 {
		pageSize = 1000
	}
	rep := &Report{
		Generated: now.UTC(),
		Policy: Policy{Builders: len(p.Builders()), TotalWeight: p.TotalWeight(),
			Min: p.Min, MinOperators: p.MinOperators, OnConflict: p.OnConflict,
			Group: p.Group, Groups: len(p.Groups), Exceptions: len(p.Exceptions), Fingerprint: p.Fingerprint()},
		Disagreements: []Subject{}, BuiltByOne: []Single{}, Undecided: []Subject{}, Outvotes: []Outvote{},
		Exceptions: []ExceptionUse{},
	}

	stats, err := r.Stats()
	if err != nil {
		return nil, fmt.Errorf("report: reading log states: %w", err)
	}
	evidence, err := r.Evidence()
	if err != nil {
		return nil, fmt.Errorf("report: reading evidence: %w", err)
	}
	evidenceOf := map[string]int{}
	for _, e := range evidence {
		evidenceOf[e.Builder+" "+e.KeyID]++
	}
	rep.Totals.Evidence = len(evidence)

	// Logs are sorted by name (Stats' contract; sorted again to be sure),
	// and pair counters are indexed by position in that order.
	sort.Slice(stats, func(i, j int) bool { return stats[i].Name < stats[j].Name })
	pos := map[string]int{}
	for i, s := range stats {
		pos[s.Name] = i
		l := Log{Builder: s.Name, KeyID: s.KeyID, Indexed: s.Synced, Lag: s.Pending,
			LastChecked: s.Health.Checked, LastOK: s.Health.OK, Age: -1, Error: s.Health.Error,
			Compromised: s.Compromised, Evidence: evidenceOf[s.LogID.String()]}
		if s.Checkpoint != nil {
			l.TreeSize = s.Checkpoint.Size
		}
		if !s.Health.OK.IsZero() {
			l.Age = now.Sub(s.Health.OK).Seconds()
		}
		if h := s.Health; h.Unavailable() && !s.Compromised {
			l.Unavailable, l.Failures, l.StaleView = true, h.Failures, h.Stale
			if !h.FailingSince.IsZero() {
				since := h.FailingSince
				l.FailingSince = &since
			}
		}
		rep.Logs = append(rep.Logs, l)
		rep.Builders = append(rep.Builders, Builder{Name: s.Name, Entries: s.Synced, Compromised: s.Compromised})
	}
	n := len(stats)
	shared := make([][]int, n)
	agreed := make([][]int, n)
	for i := range shared {
		shared[i], agreed[i] = make([]int, n), make([]int, n)
	}

	keep := func(list int) bool { return opt.ListLimit <= 0 || list < opt.ListLimit }
	for cursor := ""; ; {
		page, next, err := r.Subjects(cursor, pageSize)
		if err != nil {
			return nil, fmt.Errorf("report: reading subjects: %w", err)
		}
		for _, s := range page {
			v := p.DecideEntries(s.Claims, r.Compromised)
			sub := Subject{Kind: s.Kind, Subject: s.Subject, Outcome: v.Outcome, Reason: v.Reason, Outputs: outputs(s.Claims)}
			if v.Outcome != verdict.Trusted {
				sub.Missing = Absences(&v, rep.Logs)
			}
			rep.Totals.Subjects++
			switch v.Outcome {
			case verdict.Trusted:
				rep.Totals.Trusted++
			case verdict.Conflict:
				rep.Totals.Conflict++
			default:
				rep.Totals.Insufficient++
			}
			if e := v.Exception; e != nil {
				rep.Totals.ByException++
				if keep(len(rep.Exceptions)) {
					rep.Exceptions = append(rep.Exceptions, ExceptionUse{Kind: s.Kind, Subject: s.Subject,
						Output: v.Value.Output(), Match: e.Match, Rule: e.Rule, Reason: e.Reason})
				}
			}
			if v.Outcome != verdict.Trusted && keep(len(rep.Undecided)) {
				rep.Undecided = append(rep.Undecided, sub)
			}
			if len(sub.Outputs) > 1 {
				rep.Totals.Disagreements++
				if keep(len(rep.Disagreements)) {
					rep.Disagreements = append(rep.Disagreements, sub)
				}
			}
			claimants := 0
			for _, o := range sub.Outputs {
				claimants += len(o.Builders)
			}
			for _, o := range sub.Outputs {
				if len(o.Builders) == 1 {
					rep.Totals.BuiltByOne++
					if keep(len(rep.BuiltByOne)) {
						rep.BuiltByOne = append(rep.BuiltByOne, Single{Kind: s.Kind, Subject: s.Subject,
							Output: o.Output, Builder: o.Builders[0], Others: claimants - 1})
					}
				}
			}
			if opt.AllSubjects {
				rep.Subjects = append(rep.Subjects, sub)
			}
			countPairs(s.Claims, pos, rep.Builders, shared, agreed)
			countDissent(rep, &v, pos, keep)
		}
		if next == "" {
			break
		}
		cursor = next
	}

	for i := range rep.Builders {
		rep.Builders[i].Agreement = []Agreement{}
		for j := range rep.Builders {
			if i == j {
				continue
			}
			a := Agreement{With: rep.Builders[j].Name, Shared: shared[i][j], Agreed: agreed[i][j]}
			if a.Shared > 0 {
				rate := float64(a.Agreed) / float64(a.Shared)
				a.Rate = &rate
			}
			rep.Builders[i].Agreement = append(rep.Builders[i].Agreement, a)
		}
	}
	return rep, nil
}

// outputs groups a subject's claims by output: most builders first, then
// by output.
func outputs(entries []verdict.Entry) []Output {
	byOutput := map[string][]string{}
	for _, e := range entries {
		o := e.Claim.Output()
		byOutput[o] = append(byOutput[o], e.Builder)
	}
	res := make([]Output, 0, len(byOutput))
	for o, builders := range byOutput {
		res = append(res, Output{Output: o, Builders: dedupe(builders)})
	}
	sort.Slice(res, func(i, j int) bool {
		if len(res[i].Builders) != len(res[j].Builders) {
			return len(res[i].Builders) > len(res[j].Builders)
		}
		return res[i].Output < res[j].Output
	})
	return res
}

func dedupe(s []string) []string {
	s = append([]string(nil), s...)
	sort.Strings(s)
	out := s[:0]
	for i, x := range s {
		if i == 0 || x != s[i-1] {
			out = append(out, x)
		}
	}
	return out
}

// countDissent counts a subject's dissenting builders as outvoted or
// non-reproducible (see the package doc) and keeps the outvoted claims.
func countDissent(rep *Report, v *verdict.Verdict, pos map[string]int, keep func(int) bool) {
	if len(v.Disagreed) == 0 {
		return
	}
	if !v.Outvoted {
		rep.Totals.NonReproducible++
		for _, votes := range [][]verdict.Vote{v.Agreed, v.Disagreed} {
			for _, vote := range votes {
				if i, ok := pos[vote.Builder]; ok {
					rep.Builders[i].NonReproducible++
				}
			}
		}
		return
	}
	rep.Totals.Outvoted++
	quorum := make([]string, len(v.Agreed))
	for i, vote := range v.Agreed {
		quorum[i] = vote.Builder
	}
	for _, vote := range v.Disagreed {
		if i, ok := pos[vote.Builder]; ok {
			rep.Builders[i].Outvoted++
		}
		if keep(len(rep.Outvotes)) {
			rep.Outvotes = append(rep.Outvotes, Outvote{Kind: v.Kind, Subject: v.Subject, Builder: vote.Builder,
				Output: vote.Output, Agreed: v.Agreed[0].Output, Quorum: quorum})
		}
	}
}

// countPairs adds one subject's claims to the pairwise agreement counters
// and the per-builder subject counts. A log with two outputs for the subject
// (it misbehaved; it is compromised) is counted with its first entry.
func countPairs(entries []verdict.Entry, pos map[string]int, builders []Builder, shared, agreed [][]int) {
	type claimOf struct {
		at     int
		output string
	}
	var seen []claimOf
	for _, e := range entries {
		i, ok := pos[e.Builder]
		if !ok {
			continue
		}
		dup := false
		for _, c := range seen {
			dup = dup || c.at == i
		}
		if dup {
			continue
		}
		seen = append(seen, claimOf{i, e.Claim.Output()})
	}
	for a, x := range seen {
		builders[x.at].Subjects++
		for _, y := range seen[a+1:] {
			shared[x.at][y.at]++
			shared[y.at][x.at]++
			if x.output == y.output {
				agreed[x.at][y.at]++
				agreed[y.at][x.at]++
			}
		}
	}
}
