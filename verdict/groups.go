package verdict

import (
	"math/bits"
	"path"
	"strings"
)

// Group is a named threshold over members: builder names, or names of
// other groups of the policy. The package doc ("Groups") specifies how a
// tree of groups is met.
type Group struct {
	Name         string
	Need         int      // members that must be met; below 1 it is taken as 1
	Members      []string // builder or group names
	MinOperators int      // distinct operators among the builders that meet it; below 2: no condition
}

// Exception admits a subject known not to reproduce when the policy
// itself does not trust it (see the package doc, "Exceptions").
type Exception struct {
	Subject string // an exact subject; or
	Name    string // a path.Match glob on a store path's name (kind nix only)
	Reason  string // why the subject does not reproduce
	// Rule is the group or builder whose agreement suffices; "" means the
	// policy's own rule (Min, MinOperators and its group), with other
	// outputs tolerated.
	Rule string
}

// matches reports whether the exception covers (kind, subject).
func (e *Exception) matches(kind, subject string) bool {
	if e.Subject != "" {
		return subject == e.Subject
	}
	if e.Name == "" || kind != "nix" {
		return false
	}
	name, ok := storePathName(subject)
	if !ok {
		return false
	}
	m, err := path.Match(e.Name, name)
	return err == nil && m
}

// describe names what the exception matches, for verdicts and reports.
func (e *Exception) describe() string {
	if e.Subject != "" {
		return "subject " + e.Subject
	}
	return "name " + e.Name
}

// storePathName returns the name of a store path, the part after
// "/nix/store/<32 characters>-".
func storePathName(p string) (string, bool) {
	rest, ok := strings.CutPrefix(p, "/nix/store/")
	if !ok || len(rest) < 34 || rest[32] != '-' || strings.Contains(rest, "/") {
		return "", false
	}
	return rest[33:], true
}

// searchBudget bounds the steps one evaluation of a group tree may take
// when builders are shared between groups or groups count operators. Real
// policies take a few dozen; a tree that needs more is not met (fail
// closed), and NewPolicy refuses a policy whose rule cannot be decided
// within it even when every builder agrees.
const searchBudget = 1 << 16

// A tree is a policy's groups compiled against its roster: node i is a
// builder leaf or a group. Builders are bits of a uint64 (index in the
// roster), which is why a policy with groups counts at most 64 builders.
type tree struct {
	nodes   []treeNode
	byName  map[string]int // group name → node
	leaf    map[int]int    // roster index → its leaf node
	opOf    []int          // roster index → operator number
	broken  string         // why the groups cannot be evaluated: nothing is ever met
	ordered []int          // group nodes, children before parents
}

type treeNode struct {
	name     string
	builder  int // roster index, or -1 for a group, or -2 for a name that counts for nothing
	need     int
	minOps   int
	children []int
}

// buildTree compiles groups against a roster. Names that are not counted
// builders (unlisted, or weight below 1) are leaves that are never met;
// a cycle or more than 64 builders breaks the tree.
func buildTree(groups []Group, r *roster) *tree {
	t := &tree{byName: map[string]int{}, leaf: map[int]int{}}
	if len(r.builders) > 64 {
		t.broken = "a policy with groups counts at most 64 builders"
		return t
	}
	ops := map[string]int{}
	t.opOf = make([]int, len(r.builders))
	for i, b := range r.builders {
		if _, ok := ops[b.Operator]; !ok {
			ops[b.Operator] = len(ops)
		}
		t.opOf[i] = ops[b.Operator]
	}
	defs := map[string]*Group{}
	for i := range groups {
		if _, dup := defs[groups[i].Name]; !dup {
			defs[groups[i].Name] = &groups[i]
		}
	}
	// Leaves per builder: one node per roster index, shared by every
	// group that lists the builder under any of its names.
	const visiting = -3
	var compile func(name string) int
	compile = func(name string) int {
		if i, ok := t.byName[name]; ok {
			if i == visiting {
				t.broken = "group " + name + " contains itself"
				return t.nothing(name)
			}
			return i
		}
		g, isGroup := defs[name]
		if !isGroup {
			bi, counted := r.byName[name]
			if !counted {
				return t.nothing(name)
			}
			if n, ok := t.leaf[bi]; ok {
				return n
			}
			t.leaf[bi] = len(t.nodes)
			t.nodes = append(t.nodes, treeNode{name: r.builders[bi].Name, builder: bi})
			return t.leaf[bi]
		}
		t.byName[name] = visiting
		children := make([]int, 0, len(g.Members))
		for _, m := range g.Members {
			children = append(children, compile(m))
		}
		n := len(t.nodes)
		t.nodes = append(t.nodes, treeNode{name: name, builder: -1, need: max(g.Need, 1), minOps: g.MinOperators, children: children})
		t.byName[name] = n
		t.ordered = append(t.ordered, n)
		return n
	}
	for i := range groups {
		compile(groups[i].Name)
	}
	return t
}

// needsSearch reports whether the greedy count of node n may be wrong: a
// node under n is reached twice (a builder listed in two groups, under two
// names of one key, or a group used twice), which counting greedily would
// let meet both, or a group under n counts operators, where which members
// are chosen matters.
func (t *tree) needsSearch(n int) bool {
	seen := map[int]bool{}
	var walk func(n int) bool
	walk = func(n int) bool {
		if seen[n] {
			return true
		}
		seen[n] = true
		nd := &t.nodes[n]
		if nd.minOps > 1 {
			return true
		}
		for _, c := range nd.children {
			if walk(c) {
				return true
			}
		}
		return false
	}
	return walk(n)
}

// nothing adds a leaf that is never met.
func (t *tree) nothing(name string) int {
	t.nodes = append(t.nodes, treeNode{name: name, builder: -2})
	return len(t.nodes) - 1
}

// operators counts the distinct operators of a set of builders.
func (t *tree) operators(set uint64) int {
	var seen uint64
	for set != 0 {
		i := bits.TrailingZeros64(set)
		set &^= 1 << i
		seen |= 1 << t.opOf[i]
	}
	return bits.OnesCount64(seen)
}

// count is the greedy count of node n against the agreeing set: whether
// it is met when every builder may serve every group it is listed in,
// the builders under it that agree, and how many of its children are met.
// It is exact when no builder is listed twice and no group counts
// operators, and an upper bound otherwise.
func (t *tree) count(n int, agree uint64) (met bool, under uint64, children int) {
	nd := &t.nodes[n]
	switch {
	case nd.builder >= 0:
		bit := uint64(1) << nd.builder
		return agree&bit != 0, agree & bit, 0
	case nd.builder == -2:
		return false, 0, 0
	}
	for _, c := range nd.children {
		if ok, u, _ := t.count(c, agree); ok {
			children++
			under |= u
		}
	}
	met = children >= nd.need && (nd.minOps < 2 || t.operators(under) >= nd.minOps)
	return met, under, children
}

// met reports whether node n is met by the agreeing builders with each
// builder used at most once across the whole tree; search is
// needsSearch(n). exhausted is set when the search ran out of budget (then
// met is false).
func (t *tree) met(n int, agree uint64, search bool) (met, exhausted bool) {
	if t.broken != "" {
		return false, false
	}
	if ok, _, _ := t.count(n, agree); !ok || !search {
		return ok, false
	}
	budget := searchBudget
	ok := t.satisfy(n, agree, &budget, func(uint64) bool { return true })
	return ok, !ok && budget <= 0
}

// satisfy reports whether node n can be met from the builders in avail,
// each used once, such that k accepts the builders left over. It backtracks
// over which members meet each group, so that a builder listed in two
// groups is tried in each but used by only one.
func (t *tree) satisfy(n int, avail uint64, budget *int, k func(left uint64) bool) bool {
	if *budget <= 0 {
		return false
	}
	*budget--
	nd := &t.nodes[n]
	switch {
	case nd.builder >= 0:
		bit := uint64(1) << nd.builder
		return avail&bit != 0 && k(avail&^bit)
	case nd.builder == -2:
		return false
	}
	start := avail
	var choose func(i, need int, avail uint64) bool
	choose = func(i, need int, avail uint64) bool {
		if need == 0 {
			if nd.minOps > 1 && t.operators(start&^avail) < nd.minOps {
				return false
			}
			return k(avail)
		}
		if len(nd.children)-i < need || *budget <= 0 {
			return false
		}
		return t.satisfy(nd.children[i], avail, budget, func(left uint64) bool { return choose(i+1, need-1, left) }) ||
			choose(i+1, need, avail)
	}
	return choose(0, nd.need, avail)
}

// rules is what a roster adds for a policy with groups or exceptions.
type rules struct {
	tree       *tree
	root       int  // node of Policy.Group in tree, or -1 for the simple rule
	rootSearch bool // tree.needsSearch(root)
	exceptions []exceptionRule
}

type exceptionRule struct {
	Exception
	node   int  // node of Rule in tree, or -1 for the policy's own rule
	search bool // tree.needsSearch(node)
}

// buildRules compiles the policy's groups, root and exceptions against r.
func buildRules(groups []Group, root string, exceptions []Exception, r *roster) *rules {
	if len(groups) == 0 && root == "" && len(exceptions) == 0 {
		return nil
	}
	t := buildTree(groups, r)
	rs := &rules{tree: t, root: -1}
	nodeOf := func(name string) int {
		if n, ok := t.byName[name]; ok {
			return n
		}
		if bi, ok := r.byName[name]; ok {
			if n, ok := t.leaf[bi]; ok {
				return n
			}
			t.leaf[bi] = len(t.nodes)
			t.nodes = append(t.nodes, treeNode{name: r.builders[bi].Name, builder: bi})
			return t.leaf[bi]
		}
		return t.nothing(name)
	}
	if root != "" {
		rs.root = nodeOf(root)
		rs.rootSearch = t.needsSearch(rs.root)
	}
	for _, e := range exceptions {
		er := exceptionRule{Exception: e, node: -1}
		if e.Rule != "" {
			er.node = nodeOf(e.Rule)
			er.search = t.needsSearch(er.node)
		}
		rs.exceptions = append(rs.exceptions, er)
	}
	return rs
}

// exceptionFor returns the first exception that covers (kind, subject).
func (rs *rules) exceptionFor(kind, subject string) *exceptionRule {
	if rs == nil {
		return nil
	}
	for i := range rs.exceptions {
		if rs.exceptions[i].matches(kind, subject) {
			return &rs.exceptions[i]
		}
	}
	return nil
}

// explainNode describes how far node n is from being met, e.g.
// `group "release" (2 of ci, community): 1 met (ci)`.
func (t *tree) explainNode(w *reasonWriter, n int, agree uint64) {
	nd := &t.nodes[n]
	if nd.builder != -1 {
		w.str("builder ").str(nd.name)
		return
	}
	_, under, children := t.count(n, agree)
	w.str("group ").str(nd.name).str(" not met: needs ").int(nd.need).str(" of ").int(len(nd.children))
	if nd.minOps > 1 {
		w.str(" from ").int(nd.minOps).str(" operators")
	}
	w.str(", ").int(children).str(" met")
	if nd.minOps > 1 {
		w.str(" (").int(t.operators(under)).str(" operators)")
	}
	first := true
	for _, c := range nd.children {
		if t.nodes[c].builder != -1 {
			continue
		}
		if ok, _, k := t.count(c, agree); !ok {
			if first {
				w.str(" [")
				first = false
			} else {
				w.str(", ")
			}
			cn := &t.nodes[c]
			w.str(cn.name).str(" ").int(k).str(" of ").int(len(cn.children)).str(" need ").int(cn.need)
			if cn.minOps > 1 {
				_, under, _ := t.count(c, agree)
				w.str(" from ").int(t.operators(under)).str(" of ").int(cn.minOps).str(" operators")
			}
		}
	}
	if !first {
		w.str("]")
	}
}
