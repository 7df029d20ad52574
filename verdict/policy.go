package verdict

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"sync/atomic"

	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/keys"
)

// Member is one builder a policy lists.
type Member struct {
	Name     string // the builder's name in the config; claims are indexed under it
	Operator string // who runs it; members with one operator are not independent
	Weight   int    // votes it carries; below 1 it counts for nothing
	// KeyID is keys.KeyID of the builder's verifier key: the identity that
	// is counted. Two members with one KeyID are one builder.
	KeyID string
}

// Policy is the quorum rule of a node and the builders it applies to. The
// package doc specifies how it decides. A Policy may be built by NewPolicy
// or written as a literal; either way it is only read, so one Policy may be
// shared by any number of goroutines. (Members, Groups, Group and
// Exceptions may be changed between verdicts, not during one: the resolved
// roster is cached and rebuilt when they no longer equal what it was built
// from.)
type Policy struct {
	Members      []Member
	Min          int    // agreeing weight needed
	MinOperators int    // distinct operators needed among the agreeing builders
	OnConflict   string // config.OnConflictMajority, or anything else for refuse
	// Groups are the policy's named groups; Group, if set, names the one
	// the agreeing builders must meet besides Min and MinOperators. Empty:
	// the simple rule.
	Groups []Group
	Group  string
	// Exceptions admit subjects known not to reproduce (see the package doc).
	Exceptions []Exception

	resolved atomic.Pointer[roster] // the last resolve(), with the members it was built from
}

// NewPolicy builds the policy a config describes. The config is validated
// again (on a copy with defaults applied), so a Policy never rests on a
// config that Load would have refused.
func NewPolicy(cfg *config.Config) (*Policy, error) {
	if cfg == nil {
		return nil, errors.New("policy: no config")
	}
	if len(cfg.Builders) == 0 {
		return nil, errors.New("policy: no builders configured; add [[builder]] entries to the config (see docs/config.md)")
	}
	c := *cfg
	c.Builders = append([]config.Builder(nil), cfg.Builders...)
	c.Defaults()
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	p := &Policy{
		Min:          c.Quorum.Min,
		MinOperators: c.Quorum.MinOperators,
		OnConflict:   c.Quorum.OnConflict,
		Group:        c.Quorum.Group,
	}
	for _, g := range c.Groups {
		p.Groups = append(p.Groups, Group{Name: g.Name, Need: g.Need(), Members: slices.Clone(g.Members), MinOperators: g.MinOperators})
	}
	for _, e := range c.Exceptions {
		p.Exceptions = append(p.Exceptions, Exception{Subject: e.Subject, Name: e.Name, Reason: e.Reason, Rule: e.Rule})
	}
	for _, b := range c.Builders {
		pub, err := keys.VerifierPublicKey(b.VKey)
		if err != nil {
			return nil, fmt.Errorf("policy: builder %q: %w", b.Name, err)
		}
		p.Members = append(p.Members, Member{Name: b.Name, Operator: b.Operator, Weight: b.Weight, KeyID: keys.KeyID(pub)})
	}
	if err := p.checkAttainable(); err != nil {
		return nil, fmt.Errorf("policy: %w", err)
	}
	return p, nil
}

// builder is one counted identity after the rules of "Who counts".
type builder struct {
	Member
	aliases []string // other member names with the same key, sorted
}

// roster is a policy's members resolved to distinct builders.
type roster struct {
	builders []builder      // sorted by name
	byName   map[string]int // member name (own or alias) → index in builders
	total    int            // T: the configured weight
	mixed    bool           // some builder's weight is not 1: talk of votes, not builders
	members  []Member       // a copy of the Policy's Members it was built from
	// rules are the compiled groups and exceptions, nil for the simple
	// rule; source is a copy of what they were built from.
	rules  *rules
	source ruleSource
}

// ruleSource is the part of a Policy its rules are built from.
type ruleSource struct {
	groups     []Group
	group      string
	exceptions []Exception
}

func (p *Policy) ruleSource() ruleSource {
	return ruleSource{groups: p.Groups, group: p.Group, exceptions: p.Exceptions}
}

// equal compares two sources; the simple rule's empty source costs two
// length checks.
func (a ruleSource) equal(b ruleSource) bool {
	if len(a.groups)|len(b.groups)|len(a.exceptions)|len(b.exceptions) == 0 {
		return a.group == b.group // the simple rule: every verdict comes here
	}
	return a.group == b.group && slices.Equal(a.exceptions, b.exceptions) &&
		slices.EqualFunc(a.groups, b.groups, func(x, y Group) bool {
			return x.Name == y.Name && x.Need == y.Need && x.MinOperators == y.MinOperators && slices.Equal(x.Members, y.Members)
		})
}

// clone copies a source so that later changes to the Policy's slices are seen.
func (a ruleSource) clone() ruleSource {
	c := ruleSource{group: a.group, exceptions: slices.Clone(a.exceptions)}
	for _, g := range a.groups {
		g.Members = slices.Clone(g.Members)
		c.groups = append(c.groups, g)
	}
	return c
}

// resolve applies rules 1 and 2 of the package doc. Every verdict needs the
// roster, and building it (a sort, two maps) would cost more than the rule
// itself, so the last one is kept and reused while Members still equal the
// copy it was built from: comparing a few members costs nanoseconds, and a
// policy changed in place is never decided with a stale roster. Concurrent
// callers may each build one; any of them is correct.
func (p *Policy) resolve() *roster {
	if r := p.resolved.Load(); r != nil && slices.Equal(r.members, p.Members) && r.source.equal(p.ruleSource()) {
		return r
	}
	r := buildRoster(p.Members)
	r.source = p.ruleSource().clone()
	r.rules = buildRules(r.source.groups, r.source.group, r.source.exceptions, r)
	p.resolved.Store(r)
	return r
}

// buildRoster resolves members to distinct builders. It sorts a copy of
// the members, so its result is independent of their order.
func buildRoster(members []Member) *roster {
	ms := make([]Member, 0, len(members))
	for _, m := range members {
		if m.Weight < 1 || m.Name == "" {
			continue
		}
		if m.Operator == "" {
			m.Operator = m.Name
		}
		ms = append(ms, m)
	}
	sort.Slice(ms, func(i, j int) bool {
		if ms[i].Name != ms[j].Name {
			return ms[i].Name < ms[j].Name
		}
		if ms[i].KeyID != ms[j].KeyID {
			return ms[i].KeyID < ms[j].KeyID
		}
		// Equal names and keys: order the rest too, so which duplicate
		// wins never depends on the order of the list.
		if ms[i].Operator != ms[j].Operator {
			return ms[i].Operator < ms[j].Operator
		}
		return ms[i].Weight > ms[j].Weight
	})
	r := &roster{byName: make(map[string]int, len(ms)), members: slices.Clone(members)}
	byKey := make(map[string]int, len(ms))
	for _, m := range ms {
		if _, dup := r.byName[m.Name]; dup {
			continue // a name listed twice: the first key id wins
		}
		id := m.KeyID
		if id == "" {
			id = "name:" + m.Name
		}
		if i, ok := byKey[id]; ok {
			r.builders[i].aliases = append(r.builders[i].aliases, m.Name)
			r.byName[m.Name] = i
			continue
		}
		byKey[id] = len(r.builders)
		r.byName[m.Name] = len(r.builders)
		r.builders = append(r.builders, builder{Member: m})
		r.total += m.Weight
		if m.Weight != 1 {
			r.mixed = true
		}
	}
	return r
}

// Builders returns the distinct builders the policy counts, sorted by name,
// after merging members that share a key (see the package doc).
func (p *Policy) Builders() []Member {
	r := p.resolve()
	out := make([]Member, len(r.builders))
	for i, b := range r.builders {
		out[i] = b.Member
	}
	return out
}

// Aliases returns, for each counted builder listed under more than one
// name, the other names it was listed under.
func (p *Policy) Aliases() map[string][]string {
	out := map[string][]string{}
	for _, b := range p.resolve().builders {
		if len(b.aliases) > 0 {
			out[b.Name] = append([]string(nil), b.aliases...)
		}
	}
	return out
}

// TotalWeight is T, the configured weight every fraction is taken of.
func (p *Policy) TotalWeight() int { return p.resolve().total }
