package report

import (
	"testing"

	"github.com/vouch-dev/vouch/claim"
)

// BenchmarkBuild reports on a real index of four logs with 20,000 subjects
// each (one in ten not reproducible); ns/subject is the cost per subject.
func BenchmarkBuild(b *testing.B) {
	const subjects = 20000
	w := newWorld(b, [][2]string{{"alice", "org-a"}, {"bob", "org-b"}, {"carol", "org-c"}, {"dave", "org-d"}})
	w.policy.Min, w.policy.MinOperators, w.policy.OnConflict = 3, 2, "majority"
	for bi, name := range []string{"alice", "bob", "carol", "dave"} {
		for start := 0; start < subjects; start += 1000 {
			var cs []*claim.Claim
			for i := start; i < start+1000; i++ {
				out := "X"
				if i%10 == 0 {
					out = string("ABCD"[bi])
				}
				cs = append(cs, nixClaim(path(i), out))
			}
			w.log(name, 0, cs...)
		}
	}
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		rep, err := Build(w.x, w.policy, Options{ListLimit: 100})
		if err != nil || rep.Totals.Subjects != subjects || rep.Totals.Conflict != subjects/10 {
			b.Fatalf("%v %+v", err, rep)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/subjects, "ns/subject")
}
