package verdict

import (
	"fmt"
	"sort"
	"strings"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
)

// Decide reads the claims for (kind, subject) from src, applies the policy
// (DecideEntries) and attaches an inclusion proof to every vote. Entries the
// Source returns for another kind or subject are ignored. On error the
// returned Verdict is Insufficient, so a caller that ignores the error still
// never trusts anything.
func (p *Policy) Decide(src Source, kind claim.Kind, subject string) (Verdict, error) {
	fail := func(err error) (Verdict, error) {
		return Verdict{
			Kind: kind, Subject: subject, Outcome: Insufficient,
			Reason: "no verdict: " + err.Error(),
			Agreed: []Vote{}, Disagreed: []Vote{}, Silent: []string{}, Compromised: []string{},
		}, err
	}
	entries, err := src.Claims(kind, subject)
	if err != nil {
		return fail(fmt.Errorf("verdict %s %s: reading the index: %w", kind, subject, err))
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
				return fail(fmt.Errorf("verdict %s %s: inclusion proof of %s entry %d: %w", kind, subject, vote.log(), vote.Index, err))
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
	group  string // kind, subject and output: claims agree when these are equal
	output string // claim.Output() of the entry
	entry  Entry
}

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

// outputGroup is every counted vote for one output.
type outputGroup struct {
	key       string
	output    string
	claim     *claim.Claim // the claim of the first voter by name
	weight    int
	operators int
	votes     []Vote
}

// DecideEntries applies the policy to the claims of one subject, as the
// package doc specifies. It is pure: no I/O, and the same entries in any
// order give the same Verdict. compromised may be nil. Votes carry no
// inclusion proofs (Decide adds them).
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
	casts := make([][]cast, len(r.builders))
	for _, e := range entries {
		if e.Claim == nil {
			continue
		}
		i, listed := r.byName[e.Builder]
		if !listed {
			continue
		}
		out := e.Claim.Output()
		c := cast{group: string(e.Claim.Kind) + " " + e.Claim.Subject + "\n" + out, output: out, entry: e}
		merged := false
		for j := range casts[i] {
			if casts[i][j].group == c.group {
				if c.better(casts[i][j], r.builders[i].Name) {
					casts[i][j] = c
				}
				merged = true
				break
			}
		}
		if !merged {
			casts[i] = append(casts[i], c)
		}
	}

	v := Verdict{Agreed: []Vote{}, Disagreed: []Vote{}, Silent: []string{}, Compromised: []string{}}
	var equivocated []string
	var groups []*outputGroup
	byGroup := map[string]*outputGroup{}
	// Builders are sorted by name, so every list below is built in name order.
	for i := range r.builders {
		b := &r.builders[i]
		switch {
		case isCompromised(b): // rule 3
			v.Compromised = append(v.Compromised, b.Name)
			continue
		case len(casts[i]) > 1: // rule 3: two outputs from one log
			v.Compromised = append(v.Compromised, b.Name)
			equivocated = append(equivocated, b.Name)
			continue
		case len(casts[i]) == 0:
			v.Silent = append(v.Silent, b.Name)
			continue
		}
		c := casts[i][0]
		g := byGroup[c.group]
		if g == nil {
			g = &outputGroup{key: c.group, output: c.output, claim: c.entry.Claim}
			byGroup[c.group] = g
			groups = append(groups, g)
		}
		vote := Vote{Builder: b.Name, Operator: b.Operator, Weight: b.Weight, Output: g.output, Index: c.entry.Index}
		if c.entry.Builder != b.Name {
			vote.Log = c.entry.Builder
		}
		newOperator := true
		for _, earlier := range g.votes {
			newOperator = newOperator && earlier.Operator != b.Operator
		}
		if newOperator {
			g.operators++
		}
		g.votes = append(g.votes, vote)
		g.weight += b.Weight
	}
	sort.SliceStable(groups, func(i, j int) bool {
		if groups[i].weight != groups[j].weight {
			return groups[i].weight > groups[j].weight
		}
		return groups[i].key < groups[j].key
	})

	minWeight, minOps := max(p.Min, 1), max(p.MinOperators, 1)
	if len(groups) == 0 {
		v.Outcome = Insufficient
		v.Reason = fmt.Sprintf("no configured builder has a counted claim for this subject (0 of %d %s, need %d)", r.total, r.unit(), minWeight)
		v.Reason += r.tail(v.Silent, v.Compromised, equivocated)
		return v
	}

	lead := groups[0]
	v.Kind, v.Subject = lead.claim.Kind, lead.claim.Subject
	v.Agreed = lead.votes
	for _, g := range groups[1:] {
		v.Disagreed = append(v.Disagreed, g.votes...)
	}
	majority := p.OnConflict == config.OnConflictMajority
	strictMajority := 2*lead.weight > r.total
	enough := lead.weight >= minWeight && lead.operators >= minOps
	alone := len(groups) == 1
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
	var why strings.Builder
	if lead.weight < minWeight {
		why.WriteString("only ")
	}
	fmt.Fprintf(&why, "%s (need %d), from %d operator%s (need %d)",
		r.agreeing(lead), minWeight, lead.operators, plural(lead.operators), minOps)
	if !alone {
		n := len(v.Disagreed)
		fmt.Fprintf(&why, "; %d disagree%s with %d other output%s", n, pluralVerb(n), len(groups)-1, plural(len(groups)-1))
		switch {
		case !majority:
			why.WriteString(", and the policy refuses conflicts")
		case strictMajority:
			fmt.Fprintf(&why, ", but the leading output holds a strict majority (%d of %d votes)", lead.weight, r.total)
		default:
			fmt.Fprintf(&why, ", and the leading output holds %d of %d votes, not a strict majority", lead.weight, r.total)
		}
	}
	why.WriteString(r.tail(v.Silent, v.Compromised, equivocated))
	v.Reason = why.String()
	return v
}

// unit is what the configured weight counts.
func (r *roster) unit() string {
	if r.mixed {
		return "votes"
	}
	return "builders"
}

// agreeing describes the leading output's support, e.g. "2 of 4 builders
// agree".
func (r *roster) agreeing(g *outputGroup) string {
	if r.mixed {
		n := len(g.votes)
		return fmt.Sprintf("%d builder%s carrying %d of %d votes agree%s", n, plural(n), g.weight, r.total, pluralVerb(n))
	}
	return fmt.Sprintf("%d of %d builders agree", g.weight, r.total)
}

// tail lists the builders that did not vote.
func (r *roster) tail(silent, compromised, equivocated []string) string {
	var s strings.Builder
	if len(silent) > 0 {
		fmt.Fprintf(&s, "; %d silent", len(silent))
	}
	if n := len(compromised) - len(equivocated); n > 0 {
		fmt.Fprintf(&s, "; %d compromised", n)
	}
	if len(equivocated) > 0 {
		fmt.Fprintf(&s, "; %d logged two outputs for this subject (%s) and count%s for nothing",
			len(equivocated), strings.Join(equivocated, ", "), pluralVerb(len(equivocated)))
	}
	return s.String()
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
