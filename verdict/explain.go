package verdict

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"strings"

	"github.com/vouch-dev/vouch/config"
)

// checkAttainable refuses groups that could never be met: every group of
// the policy is evaluated with every counted builder agreeing, each
// counted once. A group that fails then fails always, and a policy that
// names it would refuse everything without saying why.
func (p *Policy) checkAttainable() error {
	r := p.resolve()
	rs := r.rules
	if rs == nil {
		return nil
	}
	t := rs.tree
	if t.broken != "" {
		return fmt.Errorf("groups: %s", t.broken)
	}
	var all uint64
	for i := range r.builders {
		all |= 1 << i
	}
	check := func(n int, what string) error {
		if t.nodes[n].builder == -2 {
			return fmt.Errorf("%s: %q is neither a group nor a counted builder", what, t.nodes[n].name)
		}
		met, exhausted := t.met(n, all, t.needsSearch(n))
		switch {
		case exhausted:
			return fmt.Errorf("%s: group %q is too complex to evaluate (more than %d steps with every builder agreeing); list fewer builders in more than one group", what, t.nodes[n].name, searchBudget)
		case !met:
			return fmt.Errorf("%s: group %q can never be met, even with every builder agreeing: a builder counts once across all groups, and operators are counted per group (see docs/config.md)", what, t.nodes[n].name)
		}
		return nil
	}
	for _, n := range t.ordered {
		if err := check(n, "group "+t.nodes[n].name); err != nil {
			return err
		}
	}
	if rs.root >= 0 {
		if err := check(rs.root, "quorum.group"); err != nil {
			return err
		}
	}
	for i, e := range rs.exceptions {
		if e.node >= 0 {
			if err := check(e.node, fmt.Sprintf("exception #%d", i+1)); err != nil {
				return err
			}
		}
	}
	return nil
}

// Canonical is the policy in a canonical text form: the counted builders
// (after the rules of "Who counts", with their aliases), the quorum, the
// groups and the exceptions, one per line, in an order that depends only
// on what the policy decides. Two policies with the same Canonical decide
// every subject alike. The first line names the format version.
//
//	vouch-policy/v1
//	builder <name> <key id> <operator> <weight> [alias <name>...]
//	quorum <min> <min-operators> <majority|refuse> <group or ->
//	group <name> <need> <min-operators> <member>...
//	exception subject|name <quoted match> <rule or -> <quoted reason>
//
// Groups are listed by name; exceptions in the order they are tried.
func (p *Policy) Canonical() []byte {
	r := p.resolve()
	var b strings.Builder
	b.WriteString("vouch-policy/v1\n")
	for _, m := range r.builders {
		fmt.Fprintf(&b, "builder %s %s %s %d", m.Name, orDash(m.KeyID), m.Operator, m.Weight)
		for _, a := range m.aliases {
			b.WriteString(" alias " + a)
		}
		b.WriteByte('\n')
	}
	onConflict := config.OnConflictRefuse
	if p.OnConflict == config.OnConflictMajority {
		onConflict = config.OnConflictMajority
	}
	fmt.Fprintf(&b, "quorum %d %d %s %s\n", max(p.Min, 1), max(p.MinOperators, 1), onConflict, orDash(r.source.group))
	groups := append([]Group(nil), r.source.groups...)
	sortGroups(groups)
	for _, g := range groups {
		fmt.Fprintf(&b, "group %s %d %d %s\n", g.Name, max(g.Need, 1), max(g.MinOperators, 1), strings.Join(g.Members, " "))
	}
	for _, e := range r.source.exceptions {
		kind, match := "subject", e.Subject
		if match == "" {
			kind, match = "name", e.Name
		}
		fmt.Fprintf(&b, "exception %s %s %s %s\n", kind, strconv.Quote(match), orDash(e.Rule), strconv.Quote(e.Reason))
	}
	return []byte(b.String())
}

// Fingerprint is "sha256:" and the hex SHA-256 of Canonical: one short
// string that changes whenever what the policy decides may change.
func (p *Policy) Fingerprint() string {
	h := sha256.Sum256(p.Canonical())
	return "sha256:" + hex.EncodeToString(h[:])
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func sortGroups(gs []Group) {
	for i := 1; i < len(gs); i++ {
		for j := i; j > 0 && gs[j].Name < gs[j-1].Name; j-- {
			gs[j], gs[j-1] = gs[j-1], gs[j]
		}
	}
}

// Explain describes the policy in words, one statement per line: who
// counts, what an output needs to be trusted, what happens on a conflict,
// and which exceptions may admit what.
func (p *Policy) Explain() string {
	r := p.resolve()
	var b strings.Builder
	unit := "builders"
	if r.mixed {
		unit = "votes"
	}
	fmt.Fprintf(&b, "Builders counted: %d, carrying %d %s in all (the denominator T):\n", len(r.builders), r.total, unit)
	for _, m := range r.builders {
		fmt.Fprintf(&b, "  %s (operator %s", m.Name, m.Operator)
		if m.Weight != 1 {
			fmt.Fprintf(&b, ", weight %d", m.Weight)
		}
		if len(m.aliases) > 0 {
			fmt.Fprintf(&b, ", also listed as %s", strings.Join(m.aliases, ", "))
		}
		b.WriteString(")\n")
	}
	b.WriteString("Claims from any other log count for nothing.\n")
	fmt.Fprintf(&b, "An output is trusted when builders carrying at least %d of the %d %s agree on it, from at least %d distinct operator%s",
		max(p.Min, 1), r.total, unit, max(p.MinOperators, 1), plural(max(p.MinOperators, 1)))
	rs := r.rules
	if rs != nil && rs.root >= 0 {
		b.WriteString(", and they meet ")
		rs.tree.describe(&b, rs.root, 0)
	}
	b.WriteString(".\n")
	if rs != nil && rs.root >= 0 {
		b.WriteString("Each builder counts once across all groups: a builder listed in two groups helps meet only one of them.\n")
	}
	if p.OnConflict == config.OnConflictMajority {
		fmt.Fprintf(&b, "When builders disagree, the leading output is still trusted if it meets all of the above and holds a strict majority: more than %d of the %d %s.\n", r.total/2, r.total, unit)
	} else {
		b.WriteString("When any counted builder claims another output, the subject is refused (on-conflict = refuse).\n")
	}
	if rs == nil || len(rs.exceptions) == 0 {
		b.WriteString("No exceptions: a subject the rule does not trust is refused.\n")
		return b.String()
	}
	b.WriteString("Exceptions, tried in order only when the rule above does not trust a subject; each admits it when exactly one output meets its rule, other outputs notwithstanding:\n")
	for _, e := range rs.exceptions {
		fmt.Fprintf(&b, "  %s: ", e.describe())
		if e.node >= 0 {
			rs.tree.describe(&b, e.node, 0)
		} else {
			b.WriteString("the rule above, without the conflict condition")
		}
		fmt.Fprintf(&b, "; reason: %s\n", e.Reason)
	}
	return b.String()
}

// describe writes node n in words, e.g. `group release: all of (group ci:
// 2 of {a, b}; group community: 2 of {c, d, e}, from 2 operators)`.
func (t *tree) describe(b *strings.Builder, n, depth int) {
	nd := &t.nodes[n]
	switch {
	case nd.builder >= 0:
		b.WriteString(nd.name)
		return
	case nd.builder == -2:
		b.WriteString(nd.name + " (counts for nothing)")
		return
	case depth > 8:
		b.WriteString("group " + nd.name)
		return
	}
	leaves := true
	for _, c := range nd.children {
		if t.nodes[c].builder == -1 {
			leaves = false
		}
	}
	switch {
	case nd.need == len(nd.children) && len(nd.children) > 1:
		fmt.Fprintf(b, "group %s: all of ", nd.name)
	case nd.need == 1 && len(nd.children) > 1:
		fmt.Fprintf(b, "group %s: any of ", nd.name)
	default:
		fmt.Fprintf(b, "group %s: %d of ", nd.name, nd.need)
	}
	open, sep, closing := "{", ", ", "}"
	if !leaves {
		open, sep, closing = "(", "; ", ")"
	}
	b.WriteString(open)
	for i, c := range nd.children {
		if i > 0 {
			b.WriteString(sep)
		}
		t.describe(b, c, depth+1)
	}
	b.WriteString(closing)
	if nd.minOps > 1 {
		fmt.Fprintf(b, " from %d distinct operators", nd.minOps)
	}
}
