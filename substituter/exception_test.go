package substituter

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/verdict"
)

// TestExceptionIsCounted: a path trusted only through a policy exception is
// served like any trusted path and counted under its own outcome label.
func TestExceptionIsCounted(t *testing.T) {
	w := getWorld(t)
	d := w.decider("b")
	p := w.paths["noise"]
	d.verdicts[p] = verdict.Verdict{Kind: claim.KindNix, Subject: p, Outcome: verdict.Trusted, Value: w.claims["noise"],
		Reason:    "only 1 of 3 builders agree; exception for name noise admits it",
		Exception: &verdict.ExceptionUse{Match: "name noise", Rule: "b1", Reason: "embeds the build time"}}
	s, n := node(t, d, nixKey(t), Limits{}, cacheServer(t, w.caches["none"]).URL) // a source for the NARs: agreed paths without one are not advertised
	for _, name := range []string{"b", "noise"} {
		if code, _, body, _ := get(t, n.URL+"/"+claim.HashPart(w.paths[name])+".narinfo"); code != 200 {
			t.Fatalf("%s: %d %s", name, code, body)
		}
	}
	if got := testutil.ToFloat64(s.metrics.verdicts.WithLabelValues(outcomeException)); got != 1 {
		t.Errorf("exception lookups counted %v, want 1", got)
	}
	if got := testutil.ToFloat64(s.metrics.verdicts.WithLabelValues(string(verdict.Trusted))); got != 1 {
		t.Errorf("trusted lookups counted %v, want 1 (the exception is not one of them)", got)
	}
}
