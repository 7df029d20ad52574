package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vouch-dev/vouch/report"
	"github.com/vouch-dev/vouch/verdict"
)

// world4 is four independent builders, each with its own chroot store and
// its own vouch daemon, that built the world:
//
//   - every builder built a, b, multi, ca, noise (noise differs everywhere);
//   - builders 1–3 built c; builder 4 did not (silent about c);
//   - builder 4 altered its tamperme output on disk before logging it.
type world4 struct {
	builders []*daemon
	stores   []string
	paths    map[string]string // attribute → store path
}

var (
	world4Once sync.Once
	world4Val  *world4
	world4Err  string
)

// buildWorld4 builds the four-builder world once per test binary.
func buildWorld4(t *testing.T) *world4 {
	t.Helper()
	world4Once.Do(func() {
		w := &world4{paths: map[string]string{}}
		var wg sync.WaitGroup
		var mu sync.Mutex
		for i := 1; i <= 4; i++ {
			state, store := mustTempDir(fmt.Sprintf("vouch-b%d-state", i)), mustTempDir(fmt.Sprintf("vouch-b%d-store", i))
			d, err := tryStartDaemon(&persistentT{T: t}, state, store)
			if err != nil {
				world4Err = err.Error()
				return
			}
			w.builders = append(w.builders, d)
			w.stores = append(w.stores, store)
		}
		for i := range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				d := w.builders[i]
				attrs := []string{"a", "b", "multi", "multi.dev", "ca", "noise"}
				if i < 3 {
					attrs = append(attrs, "c", "tamperme")
				}
				outs := nixBuild(t, d.Store, hookScript(t, d.State), nil, attrs...)
				if i == 3 {
					// Builder 4 builds tamperme without the hook, alters
					// the output, and only then logs it.
					p := nixBuild(t, d.Store, "", nil, "tamperme")[0]
					f := filepath.Join(d.Store, p, "file")
					os.Chmod(filepath.Dir(f), 0o755)
					os.Chmod(f, 0o644)
					if err := os.WriteFile(f, []byte("backdoored\n"), 0o644); err != nil {
						panic(err)
					}
					if out, code := vouch(t, "submit", "--state", d.State, "--store", d.Store, p); code != 0 {
						panic(out)
					}
					outs = append(outs, p)
				}
				mu.Lock()
				for _, p := range outs {
					name := p[len("/nix/store/")+33:]
					w.paths[name] = p
				}
				mu.Unlock()
			}()
		}
		wg.Wait()
		// Every builder's log holds its claims before anyone follows it.
		want := []int{9, 9, 9, 8} // nix claims + one nix-ca claim
		for i, d := range w.builders {
			waitForClaims(t, d, want[i])
		}
		world4Val = w
	})
	if world4Val == nil {
		t.Fatalf("building the four-builder world failed: %s", world4Err)
	}
	return world4Val
}

// persistentT keeps daemons of the shared world alive past the first test:
// their Cleanup runs when the test binary ends (TestMain), not with that
// test, and what goes wrong then is printed, as no test is left to fail.
type persistentT struct{ *testing.T }

func (p *persistentT) Cleanup(f func()) { atExit(f) }

func (p *persistentT) Errorf(format string, args ...any) {
	fmt.Printf("e2e: shared world: "+format+"\n", args...)
}

var (
	atExitMu    sync.Mutex
	atExitFuncs []func()
)

// atExit registers f to run after every test, last registered first.
func atExit(f func()) {
	atExitMu.Lock()
	defer atExitMu.Unlock()
	atExitFuncs = append(atExitFuncs, f)
}

// runAtExit stops what the shared worlds started and removes their files.
func runAtExit() {
	atExitMu.Lock()
	fs := atExitFuncs
	atExitFuncs = nil
	atExitMu.Unlock()
	for i := len(fs) - 1; i >= 0; i-- {
		fs[i]()
	}
}

func mustTempDir(prefix string) string {
	d, err := os.MkdirTemp("", prefix)
	if err != nil {
		panic(err)
	}
	atExit(func() { makeWritable(d); os.RemoveAll(d) })
	return d
}

// followerConfig writes a follower config for the world's builders.
// operators gives each builder's operator; quorum is the [quorum] body.
func (w *world4) followerConfig(t *testing.T, state string, operators []string, quorum string, extra string) string {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "state = %q\nlisten = \"127.0.0.1:0\"\n%s\n[follow]\ninterval = \"200ms\"\n\n", state, extra)
	for i, d := range w.builders {
		fmt.Fprintf(&b, "[[builder]]\nname = \"b%d\"\nvkey = %q\nlog = %q\noperator = %q\n\n", i+1, d.VKey, d.LogURL(), operators[i])
	}
	b.WriteString("[quorum]\n" + quorum + "\n")
	p := filepath.Join(t.TempDir(), "vouch.toml")
	if err := os.WriteFile(p, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func verdictJSON(t *testing.T, cfg, subject string) (verdict.Verdict, int) {
	t.Helper()
	out, code := vouch(t, "verdict", "--json", "--config", cfg, subject)
	var v verdict.Verdict
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("vouch verdict %s: exit %d, not JSON: %v\n%s", subject, code, err, out)
	}
	return v, code
}

func names(votes []verdict.Vote) string {
	var s []string
	for _, v := range votes {
		s = append(s, v.Builder)
	}
	return strings.Join(s, ",")
}

// TestFourBuildersQuorum: reproducible outputs are trusted 3-of-4; a
// tampering builder is outvoted and named; a non-reproducible output is
// never trusted; 4-of-4 with a silent builder is insufficient; operator
// diversity is enforced.
func TestFourBuildersQuorum(t *testing.T) {
	w := buildWorld4(t)
	state := t.TempDir()
	cfg := w.followerConfig(t, state, []string{"org1", "org1", "org2", "org3"}, "min = 3\nmin-operators = 2\non-conflict = \"majority\"", "")
	if out, code := vouch(t, "sync", "--config", cfg); code != 0 {
		t.Fatalf("vouch sync: exit %d\n%s", code, out)
	}

	for _, attr := range []string{"a", "b", "c", "multi", "multi-dev", "ca"} {
		v, code := verdictJSON(t, cfg, w.paths[attr])
		if v.Outcome != verdict.Trusted || code != 0 {
			t.Errorf("%s: %s (exit %d): %s", attr, v.Outcome, code, v.Reason)
		}
	}
	v, code := verdictJSON(t, cfg, w.paths["tamperme"])
	if v.Outcome != verdict.Trusted || code != 0 || names(v.Disagreed) != "b4" || names(v.Agreed) != "b1,b2,b3" {
		t.Errorf("tamperme: %s agreed=%s disagreed=%s: %s", v.Outcome, names(v.Agreed), names(v.Disagreed), v.Reason)
	}
	v, code = verdictJSON(t, cfg, w.paths["noise"])
	if v.Outcome == verdict.Trusted || code == 0 {
		t.Errorf("noise (non-reproducible) was trusted: %s", v.Reason)
	}
	v, _ = verdictJSON(t, cfg, w.paths["c"])
	if strings.Join(v.Silent, ",") != "b4" {
		t.Errorf("c: silent = %v, want b4", v.Silent)
	}

	// 4 of 4 while b4 is silent about c: insufficient.
	cfg4 := w.followerConfig(t, state, []string{"org1", "org1", "org2", "org3"}, "min = 4\nmin-operators = 1", "")
	v, code = verdictJSON(t, cfg4, w.paths["c"])
	if v.Outcome != verdict.Insufficient || code == 0 {
		t.Errorf("c under 4-of-4: %s (exit %d): %s", v.Outcome, code, v.Reason)
	}
	// a under 4-of-4: everyone agrees.
	if v, _ := verdictJSON(t, cfg4, w.paths["a"]); v.Outcome != verdict.Trusted {
		t.Errorf("a under 4-of-4: %s: %s", v.Outcome, v.Reason)
	}

	// Operator diversity: b1–b3 agree on c, but with b1 and b2 one operator
	// and b3 and b4 another, c has only two operators — not the three the
	// rule needs.
	cfgOps := w.followerConfig(t, state, []string{"org1", "org1", "org2", "org2"}, "min = 2\nmin-operators = 2", "")
	if v, _ := verdictJSON(t, cfgOps, w.paths["c"]); v.Outcome != verdict.Trusted {
		t.Errorf("c with 2 operators needed: %s: %s", v.Outcome, v.Reason)
	}
	cfgOps3 := w.followerConfig(t, state, []string{"org1", "org1", "org1", "org2"}, "min = 2\nmin-operators = 2", "")
	if v, _ := verdictJSON(t, cfgOps3, w.paths["c"]); v.Outcome == verdict.Trusted {
		t.Errorf("c was trusted although all who built it share one operator: %s", v.Reason)
	}

	// The report agrees with vouch verdict on every subject.
	out, code := vouch(t, "report", "--json", "--config", cfg)
	if code != 0 {
		t.Fatalf("vouch report: exit %d\n%s", code, out)
	}
	// The report singles out b4, the builder that altered its output: it
	// alone is outvoted (on tamperme); every builder is non-reproducible
	// on noise, where nobody has a majority.
	var rep report.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("vouch report --json: %v\n%s", err, out)
	}
	for _, b := range rep.Builders {
		wantOutvoted := map[bool]int{true: 1}[b.Name == "b4"]
		if b.Outvoted != wantOutvoted || b.NonReproducible != 1 {
			t.Errorf("report: %s outvoted %d, non-reproducible %d; want %d and 1", b.Name, b.Outvoted, b.NonReproducible, wantOutvoted)
		}
	}
	if len(rep.Outvotes) != 1 || rep.Outvotes[0].Builder != "b4" || rep.Outvotes[0].Subject != w.paths["tamperme"] {
		t.Errorf("report: outvoted claims %+v, want b4's tamperme", rep.Outvotes)
	}

	// So does the node's /metrics, and its log says so, without anyone
	// opening the dashboard.
	node := startDaemon(t, state, "", "--config", cfg)
	want := `vouch_builder_outvoted_subjects{builder="b4"} 1`
	var metrics string
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		body, err := httpGet("http://" + node.Addr + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		if metrics = string(body); strings.Contains(metrics, want) {
			break
		}
	}
	if !strings.Contains(metrics, want) || !strings.Contains(metrics, `vouch_builder_outvoted_subjects{builder="b1"} 0`) {
		t.Errorf("/metrics does not single out b4 (want %q):\n%s", want, metrics)
	}
	if log := node.output.String(); !strings.Contains(log, "builder outvoted by an agreeing quorum") || !strings.Contains(log, "builder=b4") {
		t.Errorf("the node did not log b4 as outvoted:\n%s", log)
	}
}

// TestLogAudit: vouch log verify audits a real builder's log from scratch.
func TestLogAudit(t *testing.T) {
	w := buildWorld4(t)
	d := w.builders[0]
	out, code := vouch(t, "log", "verify", d.LogURL(), d.VKey)
	if code != 0 {
		t.Fatalf("vouch log verify: exit %d\n%s", code, out)
	}
	// vouch log show: the builder's own log, found from its state, and any
	// log by URL and key; both checked against the signed checkpoint.
	for _, args := range [][]string{{"log", "show", "--json", "--state", d.State, "-n", "3"}, {"log", "show", d.LogURL(), d.VKey, "-n", "3", "--json"}} {
		out, code = vouch(t, args...)
		var shown struct {
			Size    uint64 `json:"tree_size"`
			Entries []struct {
				Index uint64 `json:"index"`
				Claim struct {
					Subject string `json:"subject"`
				} `json:"claim"`
			} `json:"entries"`
		}
		if err := json.Unmarshal([]byte(out), &shown); code != 0 || err != nil || shown.Size != 9 || len(shown.Entries) != 3 ||
			shown.Entries[2].Index != 8 || !strings.HasPrefix(shown.Entries[2].Claim.Subject, "/nix/store/") {
			t.Errorf("vouch %v: exit %d, %v\n%s", args, code, err, out)
		}
	}
	other := w.builders[1]
	out, code = vouch(t, "log", "verify", d.LogURL(), other.VKey)
	if code == 0 {
		t.Fatalf("vouch log verify with another builder's key passed:\n%s", out)
	}
}
