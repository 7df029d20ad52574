package substituter

import (
	"sync"
	"sync/atomic"
	"testing"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/verdict"
)

// versionedDecider is a mapDecider whose answers may change, with a
// version that moves when they do, and a count of the lookups it served.
type versionedDecider struct {
	mu      sync.Mutex
	d       *mapDecider
	version atomic.Uint64
	decides atomic.Int64
}

func (v *versionedDecider) PathByHash(h string) (string, bool) {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.d.PathByHash(h)
}

func (v *versionedDecider) Decide(kind claim.Kind, subject string) (verdict.Verdict, error) {
	v.decides.Add(1)
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.d.Decide(kind, subject)
}

func (v *versionedDecider) Version() uint64 { return v.version.Load() }

// set changes a verdict and then the version, as the index does.
func (v *versionedDecider) set(subject string, vd verdict.Verdict) {
	v.mu.Lock()
	v.d.verdicts[subject] = vd
	v.mu.Unlock()
	v.version.Add(1)
}

// TestVerdictReusedOnlyWhileTheVersionHolds: a versioned decider is asked
// once per version; when the verdict changes (evidence against a builder,
// a new claim) the next request sees the new verdict, never the cached one.
func TestVerdictReusedOnlyWhileTheVersionHolds(t *testing.T) {
	w := getWorld(t)
	d := &versionedDecider{d: w.decider("a")}
	_, n := node(t, d, nixKey(t), Limits{}, cacheServer(t, w.caches["none"]).URL)
	narinfoOf := func(name string) int {
		code, _, _, err := get(t, n.URL+"/"+claim.HashPart(w.paths[name])+".narinfo")
		if err != nil {
			t.Fatal(err)
		}
		return code
	}
	for range 5 {
		if code := narinfoOf("a"); code != 200 {
			t.Fatalf("trusted path: %d", code)
		}
	}
	if got := d.decides.Load(); got != 1 {
		t.Errorf("decided %d times at one version, want 1", got)
	}
	// The quorum falls apart (say a builder's log is found compromised).
	d.set(w.paths["a"], verdict.Verdict{Kind: claim.KindNix, Subject: w.paths["a"], Outcome: verdict.Insufficient, Reason: "1 of 3"})
	if code := narinfoOf("a"); code != 404 {
		t.Fatalf("after the verdict changed: %d, want 404", code)
	}
	// And comes back with another path agreed as well.
	d.set(w.paths["a"], verdict.Verdict{Kind: claim.KindNix, Subject: w.paths["a"], Outcome: verdict.Trusted, Value: w.claims["a"]})
	if code := narinfoOf("a"); code != 200 {
		t.Fatalf("trusted again: %d", code)
	}
	// Refusals are cached by version too, and undone by it.
	for range 3 {
		if code := narinfoOf("b"); code != 404 {
			t.Fatalf("insufficient path: %d", code)
		}
	}
	before := d.decides.Load()
	d.set(w.paths["b"], verdict.Verdict{Kind: claim.KindNix, Subject: w.paths["b"], Outcome: verdict.Trusted, Value: w.claims["b"]})
	if code := narinfoOf("b"); code != 200 {
		t.Fatalf("newly agreed path: %d", code)
	}
	if d.decides.Load() != before+1 {
		t.Errorf("a new version did not trigger a new verdict")
	}
}
