package verdict

import (
	"bytes"
	"cmp"
	"slices"

	"github.com/vouch-dev/vouch/config"
)

// decideEntriesBefore is DecideEntries exactly as it was before groups and
// exceptions were added (commit f87f133), kept so that a property test can
// show the simple [quorum] rule still gives the same verdicts, reasons and
// all.
func (p *Policy) decideEntriesBefore(entries []Entry, compromised func(builder string) bool) Verdict {
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
	v.Reason = string(w)
	return v
}
