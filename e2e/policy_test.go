package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vouch-dev/vouch/report"
	"github.com/vouch-dev/vouch/verdict"
)

// releasePolicy is the [quorum] body of a group policy for the
// four-builder world: b1 and b2 are our CI builders, b3 and b4 community
// rebuilders; an output needs both of ours and one of theirs. noise, which
// nobody reproduces, is admitted on b1's word by an exception.
const releasePolicy = `group = "release"
on-conflict = "majority"

[[group]]
name = "ours"
threshold = "all"
members = ["b1", "b2"]

[[group]]
name = "community"
threshold = "any"
members = ["b3", "b4"]

[[group]]
name = "release"
threshold = "all"
members = ["ours", "community"]

[[exception]]
name = "noise"
reason = "noise writes random bytes by design"
rule = "b1"
`

// TestFourBuildersGroupPolicy decides the four-builder world under a group
// policy with an exception: reproducible paths are trusted, tamperme over
// b4's dissent, noise only through the exception (recorded in the
// verdict, the report, /metrics), a builder shared by two groups counts for
// one; stock Nix then substitutes noise with b1's bytes.
func TestFourBuildersGroupPolicy(t *testing.T) {
	w := buildWorld4(t)
	keyDir := t.TempDir()
	if out, code := vouch(t, "keygen", "--name", "cache", "--dir", keyDir); code != 0 {
		t.Fatal(out)
	}
	var ups strings.Builder
	for _, d := range w.builders {
		fmt.Fprintf(&ups, "[[upstream]]\nurl = %q\ntimeout = \"30s\"\n", "http://"+d.Addr+"/peer")
	}
	state := t.TempDir()
	operators := []string{"org1", "org1", "org2", "org3"}
	cfg := w.followerConfig(t, state, operators, releasePolicy+ups.String(), fmt.Sprintf("nix-key = %q", filepath.Join(keyDir, "cache.nix.sec")))
	if out, code := vouch(t, "policy", "check", "--config", cfg); code != 0 || !strings.Contains(out, "group release: all of (group ours: all of {b1, b2}; group community: any of {b3, b4})") {
		t.Fatalf("vouch policy check: exit %d\n%s", code, out)
	}
	if out, code := vouch(t, "sync", "--config", cfg); code != 0 {
		t.Fatalf("vouch sync: exit %d\n%s", code, out)
	}

	for _, attr := range []string{"a", "b", "c", "multi", "multi-dev", "ca"} {
		if v, code := verdictJSON(t, cfg, w.paths[attr]); v.Outcome != verdict.Trusted || code != 0 || v.Exception != nil {
			t.Errorf("%s: %s (exit %d): %s", attr, v.Outcome, code, v.Reason)
		}
	}
	v, _ := verdictJSON(t, cfg, w.paths["tamperme"])
	if v.Outcome != verdict.Trusted || !v.Outvoted || names(v.Disagreed) != "b4" || v.Exception != nil {
		t.Errorf("tamperme: %s outvoted=%v disagreed=%s: %s", v.Outcome, v.Outvoted, names(v.Disagreed), v.Reason)
	}
	v, code := verdictJSON(t, cfg, w.paths["noise"])
	if v.Outcome != verdict.Trusted || code != 0 || names(v.Agreed) != "b1" || v.Exception == nil ||
		v.Exception.Reason != "noise writes random bytes by design" || v.Exception.Rule != "b1" {
		t.Fatalf("noise under its exception: %s (exit %d) agreed=%s exception=%+v: %s", v.Outcome, code, names(v.Agreed), v.Exception, v.Reason)
	}

	// A key counts once: with "3 of b1, b2, b3" and "any of b3, b4", c
	// (built by b1-b3, b4 silent) would need b3 in both groups.
	shared := strings.NewReplacer(`members = ["b1", "b2"]`, `members = ["b1", "b2", "b3"]`, `threshold = "all"
members = ["b1", "b2", "b3"]`, `threshold = 3
members = ["b1", "b2", "b3"]`).Replace(releasePolicy)
	cfgShared := w.followerConfig(t, state, operators, shared, "")
	if v, _ := verdictJSON(t, cfgShared, w.paths["c"]); v.Outcome != verdict.Insufficient || !strings.Contains(v.Reason, "counted once") {
		t.Errorf("c with b3 needed in two groups: %s: %s", v.Outcome, v.Reason)
	}
	if v, _ := verdictJSON(t, cfgShared, w.paths["a"]); v.Outcome != verdict.Trusted {
		t.Errorf("a (all four built it) with b3 in two groups: %s: %s", v.Outcome, v.Reason)
	}

	// The report lists the exception's use; outvoted and non-reproducible
	// counts are as under the simple rule.
	out, code := vouch(t, "report", "--json", "--config", cfg)
	var rep report.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
		t.Fatalf("vouch report: exit %d %v\n%s", code, err, out)
	}
	if rep.Totals.ByException != 1 || len(rep.Exceptions) != 1 || rep.Exceptions[0].Subject != w.paths["noise"] || rep.Totals.Outvoted != 1 || rep.Totals.NonReproducible != 1 {
		t.Errorf("report: totals %+v, exceptions %+v", rep.Totals, rep.Exceptions)
	}
	// Against the same builders' [quorum] alone, only noise changes.
	out, code = vouch(t, "policy", "test", "--json", "--config", cfg)
	var cmp report.Comparison
	if err := json.Unmarshal([]byte(out), &cmp); err != nil || code != 0 {
		t.Fatalf("vouch policy test: exit %d %v\n%s", code, err, out)
	}
	if cmp.Changed != 1 || cmp.Changes[0].Subject != w.paths["noise"] || cmp.Changes[0].To != verdict.Trusted {
		t.Errorf("policy test: %+v", cmp)
	}

	// The node serves noise, Nix gets b1's bytes, and /metrics counts the
	// exception.
	node := startDaemon(t, state, "", "--config", cfg)
	base := "http://" + node.Addr
	deadline := time.Now().Add(60 * time.Second)
	for {
		body, err := httpGet(base + "/" + w.paths["noise"][len("/nix/store/"):len("/nix/store/")+32] + ".narinfo")
		if err == nil && strings.Contains(string(body), "StorePath: "+w.paths["noise"]) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node never served noise's narinfo (%v):\n%s", err, node.output.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	pub, _ := os.ReadFile(filepath.Join(keyDir, "cache.nix.pub"))
	client := t.TempDir()
	args := []string{"--store", client, "-r", w.paths["noise"], "--option", "substituters", base, "--option", "trusted-public-keys", strings.TrimSpace(string(pub)),
		"--option", "narinfo-cache-negative-ttl", "0", "--option", "narinfo-cache-positive-ttl", "0"}
	if out, err := exec.Command("nix-store", args...).CombinedOutput(); err != nil {
		t.Fatalf("nix-store -r noise through vouch: %v\n%s\nnode log:\n%s", err, out, node.output.String())
	}
	got, err := os.ReadFile(filepath.Join(client, w.paths["noise"], "random"))
	b1, err1 := os.ReadFile(filepath.Join(w.stores[0], w.paths["noise"], "random"))
	if err != nil || err1 != nil || string(got) != string(b1) {
		t.Errorf("noise in the client store (%v) is not b1's output (%v)", err, err1)
	}
	m, err := httpGet(base + "/metrics")
	if err != nil || !strings.Contains(string(m), `vouch_substituter_verdicts_total{outcome="exception"}`) {
		t.Errorf("/metrics does not count the exception (%v):\n%s", err, m)
	}
	if !strings.Contains(node.output.String(), "path admitted by a policy exception") {
		t.Errorf("the node did not log the exception:\n%s", node.output.String())
	}
}
