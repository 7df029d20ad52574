package verdict

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// release is "both of our CI builders and 2 of 3 community rebuilders from
// two operators": r2 and r3 are run by one organisation.
func release(onConflict string) *Policy {
	return &Policy{
		Members: []Member{
			{Name: "ci1", Operator: "ours", Weight: 1, KeyID: "k-ci1"},
			{Name: "ci2", Operator: "ours", Weight: 1, KeyID: "k-ci2"},
			{Name: "r1", Operator: "org-1", Weight: 1, KeyID: "k-r1"},
			{Name: "r2", Operator: "org-2", Weight: 1, KeyID: "k-r2"},
			{Name: "r3", Operator: "org-2", Weight: 1, KeyID: "k-r3"},
		},
		Min: 1, MinOperators: 1, OnConflict: onConflict,
		Groups: []Group{
			{Name: "ci", Need: 2, Members: []string{"ci1", "ci2"}},
			{Name: "community", Need: 2, Members: []string{"r1", "r2", "r3"}, MinOperators: 2},
			{Name: "release", Need: 2, Members: []string{"ci", "community"}},
		},
		Group: "release",
	}
}

// threeOrTwoWithX is "3 of 5, or 2 if one of them is x".
func threeOrTwoWithX() *Policy {
	p := &Policy{Min: 1, MinOperators: 1, OnConflict: "refuse", Group: "rule"}
	for _, n := range []string{"a", "b", "c", "d", "x"} {
		p.Members = append(p.Members, Member{Name: n, Operator: "org-" + n, Weight: 1, KeyID: "k-" + n})
	}
	p.Groups = []Group{
		{Name: "three", Need: 3, Members: []string{"a", "b", "c", "d", "x"}},
		{Name: "others", Need: 1, Members: []string{"a", "b", "c", "d"}},
		{Name: "with-x", Need: 2, Members: []string{"x", "others"}},
		{Name: "rule", Need: 1, Members: []string{"three", "with-x"}},
	}
	return p
}

// shared lists q in two groups that must both be met: q can serve only one.
func shared() *Policy {
	p := &Policy{Min: 1, MinOperators: 1, OnConflict: "refuse", Group: "both"}
	for _, n := range []string{"p", "q", "r", "s"} {
		p.Members = append(p.Members, Member{Name: n, Operator: "org-" + n, Weight: 1, KeyID: "k-" + n})
	}
	p.Groups = []Group{
		{Name: "A", Need: 2, Members: []string{"p", "q", "s"}},
		{Name: "B", Need: 2, Members: []string{"q", "r"}},
		{Name: "both", Need: 2, Members: []string{"A", "B"}},
	}
	return p
}

func entriesFor(spec string) []Entry {
	var es []Entry
	for _, v := range votes(spec) {
		es = append(es, Entry{Builder: v.builder, Claim: nixClaim(subjectHello, v.output)})
	}
	return es
}

func TestGroupPolicies(t *testing.T) {
	cases := []struct {
		name     string
		policy   *Policy
		claims   string
		want     Outcome
		outvoted bool
		reason   string // a part of the reason
	}{
		{"both groups met", release("refuse"), "ci1=X ci2=X r1=X r2=X", Trusted, false, "group release met"},
		{"community from one operator", release("refuse"), "ci1=X ci2=X r2=X r3=X", Insufficient, false, "community 2 of 3 need 2"},
		{"one CI builder", release("refuse"), "ci1=X r1=X r2=X r3=X", Insufficient, false, "ci 1 of 2 need 2"},
		{"all five", release("refuse"), "ci1=X ci2=X r1=X r2=X r3=X", Trusted, false, "met"},
		{"dissent refused", release("refuse"), "ci1=X ci2=X r1=X r2=X r3=Y", Conflict, true, "refuses conflicts"},
		{"dissent outvoted", release("majority"), "ci1=X ci2=X r1=X r2=X r3=Y", Trusted, true, "strict majority (4 of 5 votes)"},
		// 3 of 5 agree on X, but the group needs both CI builders.
		{"majority without the group", release("majority"), "ci1=X r1=X r2=X ci2=Y r3=Y", Conflict, false, "ci 1 of 2 need 2"},

		{"two without x", threeOrTwoWithX(), "a=X b=X", Insufficient, false, "not met"},
		{"x and one other", threeOrTwoWithX(), "x=X c=X", Trusted, false, "met"},
		{"three without x", threeOrTwoWithX(), "a=X b=X d=X", Trusted, false, "met"},
		{"x alone", threeOrTwoWithX(), "x=X", Insufficient, false, "not met"},

		// q would light A and B alike; counted once, p, q, r cannot meet both.
		{"shared builder counted once", shared(), "p=X q=X r=X", Insufficient, false, "each builder counted once"},
		{"shared builder with enough others", shared(), "p=X q=X r=X s=X", Trusted, false, "met"},
		{"shared builder in B, p and s in A", shared(), "p=X s=X q=X r=X", Trusted, false, "met"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			es := entriesFor(tc.claims)
			v := tc.policy.DecideEntries(es, nil)
			if v.Outcome != tc.want || v.Outvoted != tc.outvoted || !strings.Contains(v.Reason, tc.reason) {
				t.Fatalf("got %s (outvoted %v): %s\nwant %s (outvoted %v) with %q", v.Outcome, v.Outvoted, v.Reason, tc.want, tc.outvoted, tc.reason)
			}
			if got := tc.policy.DecideEntries(reversed(es), nil); !reflect.DeepEqual(v, got) {
				t.Fatalf("the order of the entries changed the verdict:\n%+v\n%+v", v, got)
			}
		})
	}
}

// TestAliasCountsOnceAcrossGroups lists one key under two names, each in
// its own group: the key is one builder and meets only one of them.
func TestAliasCountsOnceAcrossGroups(t *testing.T) {
	p := &Policy{
		Members: []Member{
			{Name: "a", Operator: "org-a", Weight: 1, KeyID: "k-a"},
			{Name: "a-too", Operator: "org-z", Weight: 1, KeyID: "k-a"},
			{Name: "b", Operator: "org-b", Weight: 1, KeyID: "k-b"},
		},
		Min: 1, MinOperators: 1, OnConflict: "refuse", Group: "both",
		Groups: []Group{
			{Name: "G1", Need: 1, Members: []string{"a"}},
			{Name: "G2", Need: 1, Members: []string{"a-too"}},
			{Name: "both", Need: 2, Members: []string{"G1", "G2"}},
		},
	}
	v := p.DecideEntries(entriesFor("a=X a-too=X"), nil)
	if v.Outcome != Insufficient {
		t.Fatalf("one key met two groups: %+v", v)
	}
	if err := p.checkAttainable(); err == nil || !strings.Contains(err.Error(), "can never be met") {
		t.Fatalf("checkAttainable = %v, want: can never be met", err)
	}
}

func TestExceptions(t *testing.T) {
	const other = "/nix/store/1c6kzph7l0dcbfmjap64f0czdafn3b7x-hello-doc"
	withException := func(rule string) *Policy {
		p := four(3, 2, "refuse")
		p.Groups = []Group{{Name: "ours", Need: 1, Members: []string{"alice", "bob"}}}
		p.Exceptions = []Exception{{Name: "hel?o", Reason: "embeds the build time", Rule: rule}}
		return p
	}
	claims := func(subject, spec string) []Entry {
		var es []Entry
		for _, v := range votes(spec) {
			es = append(es, Entry{Builder: v.builder, Claim: nixClaim(subject, v.output)})
		}
		return es
	}

	// Nobody agrees; alice (rule: alice) is believed under the exception.
	p := withException("alice")
	v := p.DecideEntries(claims(subjectHello, "alice=X bob=Y carol=Z"), nil)
	if v.Outcome != Trusted || v.Exception == nil || v.Exception.Reason != "embeds the build time" || v.Exception.Match != "name hel?o" ||
		v.Value.Output() != nixClaim(subjectHello, "X").Output() || !slices.Equal(names(v.Agreed), []string{"alice"}) ||
		!slices.Equal(names(v.Disagreed), []string{"bob", "carol"}) || !strings.Contains(v.Reason, "admits it: embeds the build time") {
		t.Fatalf("exception not applied as specified: %+v", v)
	}
	// The exception chose alice's output although bob and carol together
	// outweigh it: the leading output by weight is not what it trusts.
	v = p.DecideEntries(claims(subjectHello, "alice=X bob=Y carol=Y"), nil)
	if v.Outcome != Trusted || v.Value.Output() != nixClaim(subjectHello, "X").Output() || !slices.Equal(names(v.Disagreed), []string{"bob", "carol"}) {
		t.Fatalf("exception output: %+v", v)
	}

	// Another path, the same claims: refused as without the exception.
	plain := four(3, 2, "refuse")
	for _, spec := range []string{"alice=X bob=Y carol=Z", "alice=X", "alice=X bob=X carol=X dave=Y", "alice=X bob=X carol=X"} {
		want := plain.DecideEntries(claims(other, spec), nil)
		if got := p.DecideEntries(claims(other, spec), nil); !reflect.DeepEqual(got, want) {
			t.Fatalf("an exception for another name changed %s:\n%+v\n%+v", spec, got, want)
		}
	}
	// What the rule trusts needs no exception, and none is recorded.
	if v := p.DecideEntries(claims(subjectHello, "alice=X bob=X carol=X"), nil); v.Outcome != Trusted || v.Exception != nil {
		t.Fatalf("exception recorded on a verdict the rule trusts: %+v", v)
	}

	// Two of our builders with two outputs: the exception cannot choose.
	p = withException("ours")
	v = p.DecideEntries(claims(subjectHello, "alice=X bob=Y"), nil)
	if v.Outcome != Conflict || v.Exception != nil || v.Value != nil || !strings.Contains(v.Reason, "2 outputs meet its rule") {
		t.Fatalf("ambiguous exception: %+v", v)
	}
	// Only carol built it: not one of ours.
	v = p.DecideEntries(claims(subjectHello, "carol=X"), nil)
	if v.Outcome != Insufficient || v.Exception != nil || !strings.Contains(v.Reason, "no output meets its rule") {
		t.Fatalf("exception met by a builder outside its rule: %+v", v)
	}
	// A compromised builder counts for nothing under an exception too.
	v = p.DecideEntries(claims(subjectHello, "alice=X carol=Z"), func(b string) bool { return b == "alice" })
	if v.Outcome == Trusted {
		t.Fatalf("exception met by a compromised builder: %+v", v)
	}

	// Without a rule the policy's own rule applies, dissent tolerated.
	p = withException("")
	v = p.DecideEntries(claims(subjectHello, "alice=X bob=X carol=X dave=Y"), nil)
	if v.Outcome != Trusted || v.Exception == nil || v.Exception.Rule != "the policy's rule" {
		t.Fatalf("exception with the policy's rule: %+v", v)
	}
	if v := p.DecideEntries(claims(subjectHello, "alice=X bob=X carol=Y dave=Z"), nil); v.Outcome != Conflict || v.Exception != nil {
		t.Fatalf("exception with the policy's rule admitted 2 of 4: %+v", v)
	}

	// An exact subject matches that subject only.
	p = four(3, 2, "refuse")
	p.Exceptions = []Exception{{Subject: other, Reason: "timestamps", Rule: "alice"}}
	if v := p.DecideEntries(claims(other, "alice=X bob=Y"), nil); v.Outcome != Trusted || v.Exception == nil || v.Exception.Match != "subject "+other {
		t.Fatalf("exact subject: %+v", v)
	}
	if v := p.DecideEntries(claims(subjectHello, "alice=X bob=Y"), nil); v.Outcome != Conflict {
		t.Fatalf("exact subject matched another: %+v", v)
	}
}

// TestSimpleQuorumUnchanged: a policy without groups and exceptions gives
// exactly the verdicts of the rule before groups existed, on the fuzz
// scenarios of property_test.go.
func TestSimpleQuorumUnchanged(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 5000; i++ {
		data := make([]byte, r.IntN(60))
		for j := range data {
			data[j] = byte(r.UintN(256))
		}
		s := decodeScenario(data)
		comp := func(b string) bool { return s.compromised[b] }
		got, want := s.policy.DecideEntries(s.entries, comp), s.policy.decideEntriesBefore(s.entries, comp)
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("the simple rule changed:\n%+v\n%+v\npolicy %+v\nentries %+v", got, want, s.policy, s.entries)
		}
	}
}

// groupScenario is a random policy with a random tree of groups over up to
// six members (some sharing a key), and random claims of X and Y.
type groupScenario struct {
	policy  *Policy
	entries []Entry
}

func randomGroupScenario(r *rand.Rand) groupScenario {
	p := &Policy{Min: 1 + r.IntN(2), MinOperators: 1 + r.IntN(2), OnConflict: []string{"refuse", "majority"}[r.IntN(2)]}
	n := 2 + r.IntN(5)
	var members []string
	for i := range n {
		name := fmt.Sprintf("b%d", i)
		members = append(members, name)
		p.Members = append(p.Members, Member{Name: name, Operator: fmt.Sprintf("org%d", r.IntN(3)), Weight: 1, KeyID: fmt.Sprintf("k%d", r.IntN(n+1))})
	}
	names := slices.Clone(members)
	for g := range 1 + r.IntN(4) {
		pool := slices.Clone(names)
		r.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
		pool = pool[:1+r.IntN(min(len(pool), 4))]
		name := fmt.Sprintf("g%d", g)
		p.Groups = append(p.Groups, Group{Name: name, Need: 1 + r.IntN(len(pool)), Members: pool, MinOperators: r.IntN(3)})
		names = append(names, name)
	}
	p.Group = p.Groups[len(p.Groups)-1].Name
	var es []Entry
	for _, m := range members {
		switch r.IntN(4) {
		case 0: // silent
		case 1:
			es = append(es, Entry{Builder: m, Claim: nixClaim(subjectHello, "Y")})
		default:
			es = append(es, Entry{Builder: m, Claim: nixClaim(subjectHello, "X")})
		}
	}
	return groupScenario{p, es}
}

// groupOracle decides whether the group name is met by the agreeing keys,
// by listing every way of meeting it: each way is the list of keys used at
// the leaves, and a way that uses a key twice is dropped. It shares no code
// with tree.
func groupOracle(p *Policy, name string, agree map[string]bool) bool {
	keyOf, opOf := map[string]string{}, map[string]string{}
	canonical := map[string]string{} // key → the smallest member name with it
	for _, m := range p.Members {
		keyOf[m.Name] = m.KeyID
		if c, ok := canonical[m.KeyID]; !ok || m.Name < c {
			canonical[m.KeyID] = m.Name
		}
	}
	for _, m := range p.Members {
		if canonical[m.KeyID] == m.Name {
			opOf[m.KeyID] = m.Operator
		}
	}
	groups := map[string]Group{}
	for _, g := range p.Groups {
		groups[g.Name] = g
	}
	distinct := func(keys []string) bool {
		seen := map[string]bool{}
		for _, k := range keys {
			if seen[k] {
				return false
			}
			seen[k] = true
		}
		return true
	}
	var ways func(name string) [][]string
	ways = func(name string) [][]string {
		g, isGroup := groups[name]
		if !isGroup {
			if agree[keyOf[name]] {
				return [][]string{{keyOf[name]}}
			}
			return nil
		}
		var out [][]string
		var pick func(i, need int, used []string)
		pick = func(i, need int, used []string) {
			if need == 0 {
				ops := map[string]bool{}
				for _, k := range used {
					ops[opOf[k]] = true
				}
				if len(ops) >= g.MinOperators {
					out = append(out, slices.Clone(used))
				}
				return
			}
			if i == len(g.Members) {
				return
			}
			for _, w := range ways(g.Members[i]) {
				if u := append(slices.Clone(used), w...); distinct(u) {
					pick(i+1, need-1, u)
				}
			}
			pick(i+1, need, used)
		}
		pick(0, max(g.Need, 1), nil)
		return out
	}
	return len(ways(name)) > 0
}

// TestGroupProperties checks random trees and claims: a trusted verdict's
// agreeing builders meet the tree with each key used once (by the oracle),
// an untrusted one's leading output does not or fails another condition,
// and neither the order of entries nor of members changes anything.
func TestGroupProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for i := 0; i < 4000; i++ {
		checkGroupScenario(t, randomGroupScenario(r))
	}
}

// FuzzGroups explores random trees and claims from a fuzzed seed.
func FuzzGroups(f *testing.F) {
	f.Add(uint64(1), uint64(2))
	f.Add(uint64(11), uint64(0))
	f.Fuzz(func(t *testing.T, a, b uint64) {
		checkGroupScenario(t, randomGroupScenario(rand.New(rand.NewPCG(a, b))))
	})
}

func checkGroupScenario(t *testing.T, s groupScenario) {
	t.Helper()
	v := s.policy.DecideEntries(s.entries, nil)
	agree := map[string]bool{}
	weight, ops := 0, map[string]bool{}
	for _, a := range v.Agreed {
		for _, m := range s.policy.Members {
			if m.Name == a.Builder {
				agree[m.KeyID] = true
			}
		}
		weight += a.Weight
		ops[a.Operator] = true
	}
	met := groupOracle(s.policy, s.policy.Group, agree)
	quorum := met && weight >= s.policy.Min && len(ops) >= s.policy.MinOperators
	majority := 2*weight > s.policy.TotalWeight()
	want := Insufficient
	switch {
	case quorum && (len(v.Disagreed) == 0 || s.policy.OnConflict == "majority" && majority):
		want = Trusted
	case len(v.Disagreed) > 0:
		want = Conflict
	}
	if v.Outcome != want || v.Outvoted != (quorum && majority && len(v.Disagreed) > 0) {
		t.Fatalf("got %s (outvoted %v), oracle says met=%v → %s\npolicy %+v\nentries %v\nreason %s",
			v.Outcome, v.Outvoted, met, want, s.policy, describeEntries(s.entries), v.Reason)
	}
	if got := s.policy.DecideEntries(reversed(s.entries), nil); !reflect.DeepEqual(v, got) {
		t.Fatalf("reversing entries changed the verdict")
	}
	rev := &Policy{Min: s.policy.Min, MinOperators: s.policy.MinOperators, OnConflict: s.policy.OnConflict,
		Groups: s.policy.Groups, Group: s.policy.Group, Members: slices.Clone(s.policy.Members)}
	slices.Reverse(rev.Members)
	if got := rev.DecideEntries(s.entries, nil); !reflect.DeepEqual(v, got) {
		t.Fatalf("reordering members changed the verdict:\n%+v\n%+v", v, got)
	}
}

func describeEntries(es []Entry) string {
	var b strings.Builder
	for _, e := range es {
		fmt.Fprintf(&b, "%s=%s ", e.Builder, e.Claim.NarHash[7:8])
	}
	return b.String()
}

// TestGroupEquivalentToSimple: one group "Min of all builders from
// MinOperators operators" decides like the simple rule when every builder
// has weight 1 and its own key and Min ≥ MinOperators.
func TestGroupEquivalentToSimple(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for i := 0; i < 3000; i++ {
		n := 1 + r.IntN(6)
		simple := &Policy{OnConflict: []string{"refuse", "majority"}[r.IntN(2)]}
		var names []string
		for j := range n {
			name := fmt.Sprintf("b%d", j)
			names = append(names, name)
			simple.Members = append(simple.Members, Member{Name: name, Operator: fmt.Sprintf("org%d", r.IntN(3)), Weight: 1, KeyID: "k" + name})
		}
		simple.MinOperators = 1 + r.IntN(min(n, 3))
		simple.Min = simple.MinOperators + r.IntN(n-simple.MinOperators+1)
		grouped := &Policy{Members: simple.Members, OnConflict: simple.OnConflict, Min: 1, MinOperators: 1, Group: "all",
			Groups: []Group{{Name: "all", Need: simple.Min, Members: names, MinOperators: simple.MinOperators}}}
		var es []Entry
		for _, name := range names {
			if o := r.IntN(4); o > 0 {
				es = append(es, Entry{Builder: name, Claim: nixClaim(subjectHello, []string{"X", "X", "Y"}[o-1])})
			}
		}
		a, b := simple.DecideEntries(es, nil), grouped.DecideEntries(es, nil)
		if a.Outcome != b.Outcome || a.Outvoted != b.Outvoted || !reflect.DeepEqual(names2(a), names2(b)) {
			t.Fatalf("simple %s (%s), grouped %s (%s)\nentries %s", a.Outcome, a.Reason, b.Outcome, b.Reason, describeEntries(es))
		}
	}
}

func names2(v Verdict) [2][]string { return [2][]string{names(v.Agreed), names(v.Disagreed)} }

// TestSearchBudgetFailsClosed: a tree too large to search is never met,
// and NewPolicy's check says so instead of accepting it.
func TestSearchBudgetFailsClosed(t *testing.T) {
	p := &Policy{Min: 1, MinOperators: 1, OnConflict: "refuse", Group: "top"}
	var all []string
	for i := range 24 {
		name := fmt.Sprintf("b%02d", i)
		all = append(all, name)
		p.Members = append(p.Members, Member{Name: name, Operator: name, Weight: 1, KeyID: "k" + name})
	}
	// Twelve overlapping groups of 12 of 24, all needed: greedy counting
	// meets each, but there are far too few builders to meet all of them
	// with each counted once, and proving it takes an enormous search.
	var tops []string
	for g := range 12 {
		name := fmt.Sprintf("g%d", g)
		tops = append(tops, name)
		p.Groups = append(p.Groups, Group{Name: name, Need: 12, Members: all})
	}
	p.Groups = append(p.Groups, Group{Name: "top", Need: 12, Members: tops})
	var es []Entry
	for _, n := range all {
		es = append(es, Entry{Builder: n, Claim: nixClaim(subjectHello, "X")})
	}
	v := p.DecideEntries(es, nil)
	if v.Outcome == Trusted || !strings.Contains(v.Reason, "could not be decided within the search limit") {
		t.Fatalf("a tree too large to search: %s %s", v.Outcome, v.Reason)
	}
	if err := p.checkAttainable(); err == nil {
		t.Fatal("checkAttainable accepted a tree that cannot be met")
	}
}

// TestWorkedExampleWithGroups is the package doc's second worked example.
func TestWorkedExampleWithGroups(t *testing.T) {
	const doc = "/nix/store/2c6kzph7l0dcbfmjap64f0czdafn3b7x-hello-doc-1.0"
	p := release("majority")
	p.Exceptions = []Exception{{Name: "hello-doc-*", Rule: "ci1", Reason: "embeds the build date"}}
	v := p.DecideEntries(entriesFor("ci1=X ci2=X r1=X r2=X r3=Y"), nil)
	if v.Outcome != Trusted || !v.Outvoted || !slices.Equal(names(v.Disagreed), []string{"r3"}) {
		t.Fatalf("%+v", v)
	}
	v = p.DecideEntries(entriesFor("ci1=X ci2=X r1=Y r2=X r3=X"), nil)
	const want = "4 of 5 builders agree (need 1), from 2 operators (need 1); group release not met: needs 2 of 2, 1 met [community 2 of 3 need 2 from 1 of 2 operators]; 1 disagrees with 1 other output, but the leading output holds a strict majority (4 of 5 votes)"
	if v.Outcome != Conflict || v.Outvoted || v.Reason != want {
		t.Fatalf("got %s: %s\nwant conflict: %s", v.Outcome, v.Reason, want)
	}
	p.Groups[1].Members = []string{"ci2", "r1", "r2"}
	p.Groups[1].MinOperators = 0
	if v := p.DecideEntries(entriesFor("ci1=X ci2=X r1=X"), nil); v.Outcome != Insufficient {
		t.Fatalf("ci2 met ci and community: %+v", v)
	}
	p = release("majority")
	p.Exceptions = []Exception{{Name: "hello-doc-*", Rule: "ci1", Reason: "embeds the build date"}}
	var es []Entry
	for _, v := range votes("ci1=A ci2=B r1=C") {
		es = append(es, Entry{Builder: v.builder, Claim: nixClaim(doc, v.output)})
	}
	v = p.DecideEntries(es, nil)
	if v.Outcome != Trusted || v.Value.Output() != nixClaim(doc, "A").Output() || *v.Exception != (ExceptionUse{Match: "name hello-doc-*", Rule: "ci1", Reason: "embeds the build date"}) ||
		!slices.Equal(names(v.Disagreed), []string{"ci2", "r1"}) {
		t.Fatalf("%+v", v)
	}
}

// TestExceptionChangesNothingElse: on the fuzz scenarios, an exception for
// another name changes no verdict at all; one for this subject changes
// only verdicts the rule refused, and then only to admit the single output
// its rule (one builder) accepts, recording itself.
func TestExceptionChangesNothingElse(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	admitted := 0
	for i := 0; i < 5000; i++ {
		data := make([]byte, r.IntN(60))
		for j := range data {
			data[j] = byte(r.UintN(256))
		}
		s := decodeScenario(data)
		comp := func(b string) bool { return s.compromised[b] }
		want := s.policy.DecideEntries(s.entries, comp)
		rule := s.policy.Members[r.IntN(len(s.policy.Members))].Name
		withEx := func(name string) *Policy {
			return &Policy{Members: s.policy.Members, Min: s.policy.Min, MinOperators: s.policy.MinOperators, OnConflict: s.policy.OnConflict,
				Exceptions: []Exception{{Name: name, Reason: "r", Rule: rule}}}
		}
		if got := withEx("other-*").DecideEntries(s.entries, comp); !reflect.DeepEqual(got, want) {
			t.Fatalf("an exception for another name changed a verdict:\n%+v\n%+v", got, want)
		}
		got := withEx("hel*").DecideEntries(s.entries, comp)
		switch {
		case want.Outcome == Trusted:
			if !reflect.DeepEqual(got, want) {
				t.Fatalf("an exception changed a trusted verdict:\n%+v\n%+v", got, want)
			}
		case got.Outcome == Trusted:
			// The rule's builder is the only agreeing vote that matters:
			// it must be among Agreed, and be counted (not compromised).
			ruleBuilder := ""
			for _, m := range s.policy.Builders() {
				for _, a := range append([]string{m.Name}, s.policy.Aliases()[m.Name]...) {
					if a == rule {
						ruleBuilder = m.Name
					}
				}
			}
			if got.Exception == nil || ruleBuilder == "" || !slices.Contains(names(got.Agreed), ruleBuilder) || got.Value == nil {
				t.Fatalf("exception admitted without its rule's builder %s (%s):\n%+v", rule, ruleBuilder, got)
			}
			if len(got.Agreed)+len(got.Disagreed) != len(want.Agreed)+len(want.Disagreed) || got.Outvoted != want.Outvoted {
				t.Fatalf("the exception changed the votes:\n%+v\n%+v", got, want)
			}
			admitted++
		default:
			if got.Exception != nil || got.Outcome != want.Outcome || !strings.HasPrefix(got.Reason, want.Reason) {
				t.Fatalf("an exception that did not apply changed the verdict:\n%+v\n%+v", got, want)
			}
		}
	}
	if admitted < 100 {
		t.Fatalf("only %d scenarios exercised an exception", admitted)
	}
}
