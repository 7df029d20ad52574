package verdict

import (
	"fmt"
	"math/rand/v2"
	"reflect"
	"testing"
)

// scenario decodes arbitrary bytes into a policy, entries and a compromised
// set, so the fuzzer explores policies as well as claims.
type scenario struct {
	policy      *Policy
	entries     []Entry
	compromised map[string]bool
	shift       int // rotation used to permute
}

func decodeScenario(data []byte) scenario {
	next := func() int {
		if len(data) == 0 {
			return 0
		}
		b := data[0]
		data = data[1:]
		return int(b)
	}
	s := scenario{policy: &Policy{}, compromised: map[string]bool{}}
	n := 1 + next()%8
	for i := 0; i < n; i++ {
		name := i
		if next()%4 == 0 {
			name = next() % n // a name listed twice
		}
		s.policy.Members = append(s.policy.Members, Member{
			Name:     fmt.Sprintf("b%d", name),
			Operator: fmt.Sprintf("org%d", next()%4),
			Weight:   next() % 4, // 0 means: counts for nothing
			KeyID:    fmt.Sprintf("k%d", next()%(n+1)),
		})
	}
	s.policy.Min = next() % 10
	s.policy.MinOperators = next() % 5
	if next()%2 == 0 {
		s.policy.OnConflict = "majority"
	} else {
		s.policy.OnConflict = "refuse"
	}
	mask := next()
	for i := 0; i < n; i++ {
		if mask&(1<<i) != 0 {
			s.compromised[fmt.Sprintf("b%d", i)] = true
		}
	}
	s.shift = next()
	outputs := []string{"X", "Y", "Z"}
	for len(data) >= 3 {
		b, o, idx := next()%(n+2), next()%3, next()
		name := fmt.Sprintf("b%d", b)
		if b >= n {
			name = fmt.Sprintf("stranger%d", b-n)
		}
		s.entries = append(s.entries, Entry{Builder: name, Claim: nixClaim(subjectHello, outputs[o]), Index: uint64(idx)})
	}
	return s
}

func (s scenario) decide(p *Policy, entries []Entry) Verdict {
	return p.DecideEntries(entries, func(b string) bool { return s.compromised[b] })
}

// checkProperties fails t when any property of the package doc's rule does
// not hold for the scenario.
func checkProperties(t *testing.T, s scenario) {
	t.Helper()
	v := s.decide(s.policy, s.entries)

	// Permuting the entries never changes the verdict.
	if k := len(s.entries); k > 0 {
		perm := make([]Entry, 0, k)
		for i := 0; i < k; i++ {
			perm = append(perm, s.entries[(i*7+s.shift)%k])
		}
		if gcd(7, k) == 1 {
			if got := s.decide(s.policy, perm); !reflect.DeepEqual(v, got) {
				t.Fatalf("permuting entries changed the verdict:\n%+v\n%+v", v, got)
			}
		}
		if got := s.decide(s.policy, reversed(s.entries)); !reflect.DeepEqual(v, got) {
			t.Fatalf("reversing entries changed the verdict:\n%+v\n%+v", v, got)
		}
	}
	// Permuting the members never changes it either.
	rev := &Policy{Min: s.policy.Min, MinOperators: s.policy.MinOperators, OnConflict: s.policy.OnConflict}
	for i := len(s.policy.Members) - 1; i >= 0; i-- {
		rev.Members = append(rev.Members, s.policy.Members[i])
	}
	if got := s.decide(rev, s.entries); !reflect.DeepEqual(v, got) {
		t.Fatalf("reordering members changed the verdict:\n%+v\n%+v", v, got)
	}
	// Unlisted builders' entries, however many and whatever they say,
	// change nothing.
	more := append([]Entry{}, s.entries...)
	for i, o := range []string{"X", "Y", "Z", "X", "X", "X"} {
		more = append(more, Entry{Builder: fmt.Sprintf("unlisted%d", i), Claim: nixClaim(subjectHello, o)})
	}
	if got := s.decide(s.policy, more); !reflect.DeepEqual(v, got) {
		t.Fatalf("unlisted entries changed the verdict:\n%+v\n%+v", v, got)
	}

	// Every counted builder is in exactly one list.
	seen := map[string]int{}
	for _, n := range names(v.Agreed) {
		seen[n]++
	}
	for _, n := range names(v.Disagreed) {
		seen[n]++
	}
	for _, n := range append(append([]string{}, v.Silent...), v.Compromised...) {
		seen[n]++
	}
	builders := s.policy.Builders()
	if len(seen) != len(builders) {
		t.Fatalf("lists name %v, policy counts %v", seen, builders)
	}
	for _, b := range builders {
		if seen[b.Name] != 1 {
			t.Fatalf("%s appears %d times in %+v", b.Name, seen[b.Name], v)
		}
	}

	// Trusted means exactly what the package doc says.
	if v.Outcome == Trusted {
		weight, ops := 0, map[string]bool{}
		for _, a := range v.Agreed {
			weight += a.Weight
			ops[a.Operator] = true
			if a.Output != v.Value.Output() {
				t.Fatalf("agreed vote %+v differs from the value", a)
			}
		}
		if weight < max(s.policy.Min, 1) || len(ops) < max(s.policy.MinOperators, 1) {
			t.Fatalf("trusted with weight %d, %d operators: %+v", weight, len(ops), v)
		}
		if len(v.Disagreed) > 0 && (s.policy.OnConflict != "majority" || 2*weight <= s.policy.TotalWeight()) {
			t.Fatalf("trusted over a conflict without a strict majority: %+v", v)
		}
	} else if v.Value != nil {
		t.Fatalf("value on a %s verdict", v.Outcome)
	}
	if v.Outcome == Conflict && len(v.Disagreed) == 0 {
		t.Fatalf("conflict without disagreement: %+v", v)
	}
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func FuzzDecideEntries(f *testing.F) {
	f.Add([]byte{3, 0, 1, 0, 1, 1, 1, 2, 1, 2, 3, 2, 1, 0, 0, 5, 0, 0, 1, 1, 0, 2, 2, 0, 3, 3, 1, 4})
	f.Add([]byte{7, 0, 1, 1, 1, 1, 1, 1, 1, 3, 2, 2, 0, 2, 1, 2, 1, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 0, 2, 1, 9})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, data []byte) {
		s := decodeScenario(data)
		checkProperties(t, s)
		checkAgainstReference(t, s)
	})
}

// TestProperties runs the fuzz target's checks on many random scenarios in
// every ordinary test run.
func TestProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := 0; i < 3000; i++ {
		data := make([]byte, r.IntN(60))
		for j := range data {
			data[j] = byte(r.UintN(256))
		}
		s := decodeScenario(data)
		checkProperties(t, s)
		checkAgainstReference(t, s)
	}
}

// reference is the package doc's rule written out again as plainly as
// possible, without the implementation's data structures, so that the two
// can be compared on random scenarios.
func reference(p *Policy, entries []Entry, compromised map[string]bool) (Outcome, string, []string) {
	// Rule 1, per name: the member whose (key id, operator, -weight) sorts first.
	byName := map[string]Member{}
	for _, m := range p.Members {
		if m.Weight < 1 || m.Name == "" {
			continue
		}
		if m.Operator == "" {
			m.Operator = m.Name
		}
		o, seen := byName[m.Name]
		if !seen || m.KeyID < o.KeyID || m.KeyID == o.KeyID && (m.Operator < o.Operator || m.Operator == o.Operator && m.Weight > o.Weight) {
			byName[m.Name] = m
		}
	}
	identity := func(m Member) string {
		if m.KeyID == "" {
			return "name:" + m.Name
		}
		return m.KeyID
	}
	// Per identity: the member with the smallest name stands for it.
	canonical := map[string]Member{}
	for _, m := range byName {
		id := identity(m)
		if c, ok := canonical[id]; !ok || m.Name < c.Name {
			canonical[id] = m
		}
	}
	total := 0
	for _, c := range canonical {
		total += c.Weight
	}
	// Rules 2 to 4: the outputs each identity claimed, under any of its names.
	outputsOf := map[string]map[string]bool{}
	bad := map[string]bool{}
	for name, m := range byName {
		if compromised[name] {
			bad[identity(m)] = true
		}
	}
	for _, e := range entries {
		m, listed := byName[e.Builder]
		if !listed || e.Claim == nil {
			continue
		}
		id := identity(m)
		if outputsOf[id] == nil {
			outputsOf[id] = map[string]bool{}
		}
		outputsOf[id][e.Claim.Key()+"\n"+e.Claim.Output()] = true
	}
	weight := map[string]int{}
	operators := map[string]map[string]bool{}
	voters := map[string][]string{}
	for id, outs := range outputsOf {
		if bad[id] || len(outs) != 1 {
			continue
		}
		for o := range outs {
			weight[o] += canonical[id].Weight
			if operators[o] == nil {
				operators[o] = map[string]bool{}
			}
			operators[o][canonical[id].Operator] = true
			voters[o] = append(voters[o], canonical[id].Name)
		}
	}
	if len(weight) == 0 {
		return Insufficient, "", nil
	}
	lead := ""
	for o, w := range weight {
		if lead == "" || w > weight[lead] || w == weight[lead] && o < lead {
			lead = o
		}
	}
	trusted := weight[lead] >= max(p.Min, 1) && len(operators[lead]) >= max(p.MinOperators, 1) &&
		(len(weight) == 1 || p.OnConflict == "majority" && 2*weight[lead] > total)
	switch {
	case trusted:
		return Trusted, lead, sortedCopy(voters[lead])
	case len(weight) > 1:
		return Conflict, lead, sortedCopy(voters[lead])
	}
	return Insufficient, lead, sortedCopy(voters[lead])
}

func checkAgainstReference(t *testing.T, s scenario) {
	t.Helper()
	v := s.decide(s.policy, s.entries)
	outcome, lead, agreed := reference(s.policy, s.entries, s.compromised)
	if v.Outcome != outcome || !reflect.DeepEqual(append([]string{}, names(v.Agreed)...), append([]string{}, agreed...)) {
		t.Fatalf("rule and reference differ: %s %v vs %s %v (lead %q)\npolicy %+v\nentries %+v\ncompromised %v",
			v.Outcome, names(v.Agreed), outcome, agreed, lead, s.policy, s.entries, s.compromised)
	}
	if outcome == Trusted && v.Value.Key()+"\n"+v.Value.Output() != lead {
		t.Fatalf("value %s, reference %s", v.Value.Output(), lead)
	}
}
