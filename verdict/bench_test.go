package verdict

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/vouch-dev/vouch/claim"
)

// BenchmarkDecide measures one verdict, Source lookup and five inclusion
// proofs included, with five builders whose logs hold 20,000 claims each
// (one in ten of them a disagreement). It reports the 99th percentile
// latency as p99-ns/op besides the mean.
func BenchmarkDecide(b *testing.B) {
	const builders, subjects = 5, 20000
	src := newMemSource()
	p := &Policy{Min: 3, MinOperators: 2, OnConflict: "majority"}
	for i := 0; i < builders; i++ {
		p.Members = append(p.Members, Member{Name: fmt.Sprintf("b%d", i), Operator: fmt.Sprintf("org%d", i%3), Weight: 1, KeyID: fmt.Sprintf("k%d", i)})
	}
	paths := make([]string, subjects)
	for s := 0; s < subjects; s++ {
		paths[s] = fmt.Sprintf("/nix/store/%032d-pkg", s)
		for i := 0; i < builders; i++ {
			out := "X"
			if s%10 == 0 && i == 0 {
				out = "Y"
			}
			src.add(fmt.Sprintf("b%d", i), nixClaim(paths[s], out))
		}
	}
	lat := make([]time.Duration, 0, b.N)
	b.ReportAllocs()
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		start := time.Now()
		v, err := p.Decide(src, claim.KindNix, paths[(n*7919)%subjects])
		lat = append(lat, time.Since(start))
		if err != nil || v.Outcome != Trusted {
			b.Fatalf("%+v %v", v, err)
		}
	}
	b.StopTimer()
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns/op")
}

// BenchmarkDecideEntries measures the pure rule alone.
func BenchmarkDecideEntries(b *testing.B) {
	p := four(3, 2, "majority")
	entries := []Entry{
		{Builder: "alice", Claim: nixClaim(subjectHello, "X")},
		{Builder: "bob", Claim: nixClaim(subjectHello, "X")},
		{Builder: "carol", Claim: nixClaim(subjectHello, "X")},
		{Builder: "dave", Claim: nixClaim(subjectHello, "Y")},
	}
	b.ReportAllocs()
	for b.Loop() {
		p.DecideEntries(entries, nil)
	}
}

// BenchmarkDecideEntriesGroups measures the rule with a group policy: the
// package doc's release policy (two nested levels, a group counting
// operators, so the assignment search runs) and one dissenter.
func BenchmarkDecideEntriesGroups(b *testing.B) {
	p := release("majority")
	entries := entriesFor("ci1=X ci2=X r1=X r2=X r3=Y")
	if v := p.DecideEntries(entries, nil); v.Outcome != Trusted {
		b.Fatal(v.Reason)
	}
	b.ReportAllocs()
	for b.Loop() {
		p.DecideEntries(entries, nil)
	}
}

// BenchmarkDecideEntriesGroupsGreedy is the same without min-operators on
// the community group: no builder is listed twice, so counting is exact
// and no search runs.
func BenchmarkDecideEntriesGroupsGreedy(b *testing.B) {
	p := release("majority")
	p.Groups[1].MinOperators = 0
	entries := entriesFor("ci1=X ci2=X r1=X r2=X r3=Y")
	b.ReportAllocs()
	for b.Loop() {
		p.DecideEntries(entries, nil)
	}
}
