package verdict

import (
	"bytes"
	"cmp"
	"fmt"
	"slices"
	"strconv"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
)

// Decide reads the claims for (kind, subject) from src, applies the policy
// (DecideEntries) and attaches an inclusion proof to every vote. Entries the
// Source returns for another kind or subject are ignored. When src is a
// Viewer, the claims and proofs are read from one View. On error the
// returned Verdict is Insufficient, so a caller that ignores the error still
// never trusts anything.
func (p *Policy) Decide(src Source, kind claim.Kind, subject string) (Verdict, error) {
	viewer, ok := src.(Viewer)
	if !ok {
		return p.decide(src, kind, subject)
	}
	var v Verdict
	var decideErr error
	err := viewer.View(func(snap Source) error {
		v, decideErr = p.decide(snap, kind, subject)
		return nil
	})
	if err != nil {
		return failed(kind, subject, fmt.Errorf("verdict %s %s: reading the index: %w", kind, subject, err))
	}
	return v, decideErr
}

// failed is the verdict of a decision that could not be made: Insufficient.
func failed(kind claim.Kind, subject string, err error) (Verdict, error) {
	return Verdict{
		Kind: kind, Subject: subject, Outcome: Insufficient,
		Reason: "no verdict: " + err.Error(),
		Agreed: []Vote{}, Disagreed: []Vote{}, Silent: []string{}, Compromised: []string{},
	}, err
}

func (p *Policy) decide(src Source, kind claim.Kind, subject string) (Verdict, error) {
	entries, err := src.Claims(kind, subject)
	if err != nil {
		return failed(kind, subject, fmt.Errorf("verdict %s %s: reading the index: %w", kind, subject, err))
	}
	for i, e := range entries {
		if e.Claim == nil || e.Claim.Kind != kind || e.Claim.Subject != subject {
			// A Source should never return these; drop them without
			// touching the caller's slice.
			kept := append([]Entry(nil), entries[:i]...)
			for _, e := range entries[i+1:] {
				if e.Claim != nil && e.Claim.Kind == kind && e.Claim.Subject == subject {
					kept = append(kept, e)
				}
			}
			entries = kept
			break
		}
	}
	v := p.DecideEntries(entries, src.Compromised)
	v.Kind, v.Subject = kind, subject
	for _, votes := range [][]Vote{v.Agreed, v.Disagreed} {
		for i := range votes {
			vote := &votes[i]
			size, proof, err := src.InclusionProof(vote.log(), vote.Index)
			if err != nil {
				return failed(kind, subject, fmt.Errorf("verdict %s %s: inclusion proof of %s entry %d: %w", kind, subject, vote.log(), vote.Index, err))
			}
			vote.TreeSize, vote.Proof = size, proof
		}
	}
	return v, nil
}

// log is the name of the log that holds the vote's claim.
func (v *Vote) log() string {
	if v.Log != "" {
		return v.Log
	}
	return v.Builder
}

// cast is one builder's claim of one output.
type cast struct {
	group  span   // kind, subject and output: claims agree when these are equal
	output string // claim.Output() of the entry
	entry  Entry
}

// span is a string kept in a decision's shared key buffer, [start, end):
// one buffer holds every entry's group key, so comparing the keys of a
// verdict's entries costs no allocation per entry.
type span struct{ start, end int }

func (s span) in(buf []byte) []byte { return buf[s.start:s.end] }

// better reports whether a is preferred to b as the entry standing for one
// builder's claim of one output: its own log before an alias, then the lowest
// index, then the smaller log name. Any order of entries picks the same one.
func (a cast) better(b cast, own string) bool {
	if (a.entry.Builder == own) != (b.entry.Builder == own) {
		return a.entry.Builder == own
	}
	if a.entry.Index != b.entry.Index {
		return a.entry.Index < b.entry.Index
	}
	return a.entry.Builder < b.entry.Builder
}

// ballot is what one counted builder contributes: nothing, one cast, or
// (when it claimed two outputs) an equivocation.
type ballot struct {
	cast
	cast2    bool // the builder claimed a second, different output
	has      bool
	votesFor int // index in groups of the output it votes for, or -1
}

// outputGroup is every counted vote for one output.
type outputGroup struct {
	key       span
	output    string
	claim     *claim.Claim // the claim of the first voter by name
	weight    int
	operators int
	voters    int
	rank      int // position after sorting: 0 is the leading output
}

// DecideEntries applies the policy to the claims of one subject, as the
// package doc specifies. It is pure: no I/O, and the same entries in any
// order give the same Verdict. compromised may be nil. Votes carry no
// inclusion proofs (Decide adds them).
//
// A verdict is made for every path a substituter serves, so the work is
// kept to a few allocations: one key buffer and one ballot per builder,
// groups found by comparing keys (there are rarely more than two outputs),
// and all votes in one slice, leading output first.
func (p *Policy) DecideEntries(entries []Entry, compromised func(builder string) bool) Verdict {
	r := p.resolve()
	isCompromised := func(b *builder) bool {
		if compromised == nil {
			return false
		}
		if compromised(b.Name) {
			return true
		}
		for _, a := range b.aliases {
			if compromised(a) {
				return true
			}
		}
		return false
	}

	// Rules 2 and 4: attribute each entry to its builder, one cast per output.
	ballots := make([]ballot, len(r.builders))
	var keys []byte
	for _, e := range entries {
		if e.Claim == nil {
			continue
		}
		i, listed := r.byName[e.Builder]
		if !listed {
			continue
		}
		out := e.Claim.Output()
		if keys == nil {
			keys = make([]byte, 0, len(entries)*(len(e.Claim.Kind)+len(e.Claim.Subject)+len(out)+2))
		}
		start := len(keys)
		keys = append(keys, e.Claim.Kind...)
		keys = append(keys, ' ')
		keys = append(keys, e.Claim.Subject...)
		keys = append(keys, '\n')
		keys = append(keys, out...)
		c := cast{group: span{start, len(keys)}, output: out, entry: e}
		b := &ballots[i]
		switch {
		case !b.has:
			b.cast, b.has = c, true
		case string(b.group.in(keys)) == string(c.group.in(keys)):
			if c.better(b.cast, r.builders[i].Name) {
				b.cast = c
			}
		default:
			b.cast2 = true
		}
	}

	v := Verdict{Agreed: []Vote{}, Disagreed: []Vote{}, Silent: []string{}, Compromised: []string{}}
	var equivocated []string
	var groups []outputGroup
	// Builders are sorted by name, so every list below is built in name order.
	for i := range r.builders {
		b, bal := &r.builders[i], &ballots[i]
		bal.votesFor = -1
		switch {
		case isCompromised(b): // rule 3
			v.Compromised = append(v.Compromised, b.Name)
			continue
		case bal.cast2: // rule 3: two outputs from one log
			v.Compromised = append(v.Compromised, b.Name)
			equivocated = append(equivocated, b.Name)
			continue
		case !bal.has:
			v.Silent = append(v.Silent, b.Name)
			continue
		}
		g := -1
		for j := range groups {
			if string(groups[j].key.in(keys)) == string(bal.group.in(keys)) {
				g = j
				break
			}
		}
		if g < 0 {
			if groups == nil {
				groups = make([]outputGroup, 0, 2)
			}
			g = len(groups)
			groups = append(groups, outputGroup{key: bal.group, output: bal.output, claim: bal.entry.Claim})
		}
		bal.votesFor = g
		newOperator := true
		for j := range i {
			if ballots[j].votesFor == g && r.builders[j].Operator == b.Operator {
				newOperator = false
				break
			}
		}
		if newOperator {
			groups[g].operators++
		}
		groups[g].weight += b.Weight
		groups[g].voters++
	}

	minWeight, minOps := max(p.Min, 1), max(p.MinOperators, 1)
	if len(groups) == 0 {
		v.Outcome = Insufficient
		w := reasonWriter(make([]byte, 0, 160))
		w.str("no configured builder has a counted claim for this subject (0 of ").int(r.total).str(" ").str(r.unit()).str(", need ").int(minWeight).str(")")
		w.tail(v.Silent, v.Compromised, equivocated)
		v.Reason = string(w)
		return v
	}

	// Greatest weight first, equal weights by the smaller key. Keys differ
	// between groups, so the order is total.
	order := make([]*outputGroup, len(groups))
	for j := range groups {
		order[j] = &groups[j]
	}
	slices.SortFunc(order, func(a, b *outputGroup) int {
		if a.weight != b.weight {
			return cmp.Compare(b.weight, a.weight)
		}
		return bytes.Compare(a.key.in(keys), b.key.in(keys))
	})
	// All votes in one slice, group by group in that order; each group's
	// votes in builder name order.
	start := make([]int, len(groups))
	n := 0
	for rank, g := range order {
		g.rank = rank
		start[rank] = n
		n += g.voters
	}
	votes := make([]Vote, n)
	for i := range r.builders {
		bal := &ballots[i]
		if bal.votesFor < 0 {
			continue
		}
		b, g := &r.builders[i], &groups[bal.votesFor]
		vote := &votes[start[g.rank]]
		start[g.rank]++
		*vote = Vote{Builder: b.Name, Operator: b.Operator, Weight: b.Weight, Output: g.output, Index: bal.entry.Index}
		if bal.entry.Builder != b.Name {
			vote.Log = bal.entry.Builder
		}
	}

	lead := order[0]
	v.Kind, v.Subject = lead.claim.Kind, lead.claim.Subject
	v.Agreed = votes[:lead.voters:lead.voters]
	v.Disagreed = votes[lead.voters:]
	majority := p.OnConflict == config.OnConflictMajority
	strictMajority := 2*lead.weight > r.total
	enough := lead.weight >= minWeight && lead.operators >= minOps
	// Groups and exceptions live in calls of their own, so that the
	// simple rule, decided for every path served, runs the same code as
	// before they existed.
	rs := r.rules
	var group groupResult
	if rs != nil && rs.root >= 0 {
		group = rs.rootMet(ballots, groups, lead)
		enough = enough && group.met
	}
	alone := len(groups) == 1
	v.Outvoted = !alone && enough && strictMajority
	switch {
	case enough && (alone || majority && strictMajority):
		v.Outcome = Trusted
		value := *lead.claim
		v.Value = &value
	case !alone:
		v.Outcome = Conflict
	default:
		v.Outcome = Insufficient
	}

	// The reason names every number the rule compared.
	w := reasonWriter(make([]byte, 0, 256))
	if lead.weight < minWeight {
		w.str("only ")
	}
	w.agreeing(r, lead).str(" (need ").int(minWeight).str("), from ").int(lead.operators).str(" operator").str(plural(lead.operators)).str(" (need ").int(minOps).str(")")
	if rs != nil && rs.root >= 0 {
		w.groupClause(rs, ballots, groups, lead, group)
	}
	if !alone {
		n := len(v.Disagreed)
		w.str("; ").int(n).str(" disagree").str(pluralVerb(n)).str(" with ").int(len(groups) - 1).str(" other output").str(plural(len(groups) - 1))
		switch {
		case !majority:
			w.str(", and the policy refuses conflicts")
		case strictMajority:
			w.str(", but the leading output holds a strict majority (").int(lead.weight).str(" of ").int(r.total).str(" votes)")
		default:
			w.str(", and the leading output holds ").int(lead.weight).str(" of ").int(r.total).str(" votes, not a strict majority")
		}
	}
	w.tail(v.Silent, v.Compromised, equivocated)
	if v.Outcome != Trusted && rs != nil && len(rs.exceptions) > 0 {
		p.tryExceptions(&v, &w, r, groups, order, votes, ballots)
	}
	v.Reason = string(w)
	return v
}

// index is the position of g in groups.
func (g *outputGroup) index(groups []outputGroup) int {
	for j := range groups {
		if &groups[j] == g {
			return j
		}
	}
	return -1
}

// agreeingSet is the set of roster indices whose ballot counts for output
// group g, as the bits of a tree's builder set.
func agreeingSet(ballots []ballot, g int) uint64 {
	var set uint64
	for i := range ballots {
		if ballots[i].votesFor == g && i < 64 {
			set |= 1 << i
		}
	}
	return set
}

// groupResult is what the policy's group says of an output.
type groupResult struct{ met, exhausted bool }

// rootMet evaluates the policy's group for the builders voting for g.
func (rs *rules) rootMet(ballots []ballot, groups []outputGroup, g *outputGroup) groupResult {
	met, exhausted := rs.tree.met(rs.root, agreeingSet(ballots, g.index(groups)), rs.rootSearch)
	return groupResult{met, exhausted}
}

// groupClause says whether the policy's group was met by output g.
func (w *reasonWriter) groupClause(rs *rules, ballots []ballot, groups []outputGroup, g *outputGroup, res groupResult) {
	t, root := rs.tree, rs.root
	name := t.nodes[root].name
	agree := agreeingSet(ballots, g.index(groups))
	met, exhausted := res.met, res.exhausted
	switch {
	case t.broken != "":
		w.str("; group ").str(name).str(" cannot be evaluated (").str(t.broken).str(")")
	case met:
		w.str("; group ").str(name).str(" met")
	case exhausted:
		w.str("; group ").str(name).str(" could not be decided within the search limit and counts as not met")
	default:
		w.str("; ")
		if ok, _, _ := t.count(root, agree); ok {
			w.str("group ").str(name).str(" not met with each builder counted once (a builder listed in two groups meets only one)")
			return
		}
		t.explainNode(w, root, agree)
	}
}

// tryExceptions applies the first exception that covers the verdict's
// subject, if any.
func (p *Policy) tryExceptions(v *Verdict, w *reasonWriter, r *roster, groups []outputGroup, order []*outputGroup, votes []Vote, ballots []ballot) {
	lead := order[0]
	if ex := r.rules.exceptionFor(string(lead.claim.Kind), lead.claim.Subject); ex != nil {
		p.applyException(v, w, ex, r, groups, order, votes, ballots)
	}
}

// applyException admits the subject under ex if exactly one output meets
// the exception's rule (the package doc, "Exceptions"), and says what it
// did in the reason either way.
func (p *Policy) applyException(v *Verdict, w *reasonWriter, ex *exceptionRule, r *roster, groups []outputGroup, order []*outputGroup, votes []Vote, ballots []ballot) {
	rs := r.rules
	minWeight, minOps := max(p.Min, 1), max(p.MinOperators, 1)
	meets := func(g *outputGroup) bool {
		agree := agreeingSet(ballots, g.index(groups))
		if ex.node >= 0 {
			ok, _ := rs.tree.met(ex.node, agree, ex.search)
			return ok
		}
		if g.weight < minWeight || g.operators < minOps {
			return false
		}
		if rs.root >= 0 {
			ok, _ := rs.tree.met(rs.root, agree, rs.rootSearch)
			return ok
		}
		return true
	}
	chosen, n := -1, 0
	for rank, g := range order {
		if meets(g) {
			chosen, n = rank, n+1
		}
	}
	rule := "the policy's rule"
	if ex.node >= 0 {
		rule = ex.Rule
	}
	w.str("; exception for ").str(ex.describe()).str(" (rule: ").str(rule).str(")")
	switch n {
	case 0:
		w.str(" matches, but no output meets its rule")
		return
	case 1:
	default:
		w.str(" matches, but ").int(n).str(" outputs meet its rule, so none is chosen")
		return
	}
	// The chosen output's votes are Agreed, every other vote Disagreed,
	// still output by output in rank order.
	from := 0
	for _, g := range order[:chosen] {
		from += g.voters
	}
	g := order[chosen]
	agreed := votes[from : from+g.voters : from+g.voters]
	disagreed := make([]Vote, 0, len(votes)-g.voters)
	disagreed = append(append(disagreed, votes[:from]...), votes[from+g.voters:]...)
	v.Agreed, v.Disagreed = agreed, disagreed
	v.Outcome = Trusted
	value := *g.claim
	v.Value = &value
	v.Exception = &ExceptionUse{Match: ex.describe(), Rule: rule, Reason: ex.Reason}
	w.str(" admits it: ").str(ex.Reason)
}

// unit is what the configured weight counts.
func (r *roster) unit() string {
	if r.mixed {
		return "votes"
	}
	return "builders"
}

// reasonWriter builds a verdict's reason. It does what fmt would, without
// fmt's cost, which would be a good part of a verdict's.
type reasonWriter []byte

func (w *reasonWriter) str(s string) *reasonWriter {
	*w = append(*w, s...)
	return w
}

func (w *reasonWriter) int(n int) *reasonWriter {
	*w = strconv.AppendInt(*w, int64(n), 10)
	return w
}

// agreeing describes the leading output's support, e.g. "2 of 4 builders
// agree".
func (w *reasonWriter) agreeing(r *roster, g *outputGroup) *reasonWriter {
	if r.mixed {
		n := g.voters
		return w.int(n).str(" builder").str(plural(n)).str(" carrying ").int(g.weight).str(" of ").int(r.total).str(" votes agree").str(pluralVerb(n))
	}
	return w.int(g.weight).str(" of ").int(r.total).str(" builders agree")
}

// tail lists the builders that did not vote.
func (w *reasonWriter) tail(silent, compromised, equivocated []string) {
	if len(silent) > 0 {
		w.str("; ").int(len(silent)).str(" silent")
	}
	if n := len(compromised) - len(equivocated); n > 0 {
		w.str("; ").int(n).str(" compromised")
	}
	if len(equivocated) > 0 {
		w.str("; ").int(len(equivocated)).str(" logged two outputs for this subject (")
		for i, name := range equivocated {
			if i > 0 {
				w.str(", ")
			}
			w.str(name)
		}
		w.str(") and count").str(pluralVerb(len(equivocated))).str(" for nothing")
	}
}

func plural(n int) string {
	if n == 1 {
		return ""
	}
	return "s"
}

// pluralVerb gives the third-person ending: "1 disagrees", "2 disagree".
func pluralVerb(n int) string {
	if n == 1 {
		return "s"
	}
	return ""
}
