package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/follow"
	"github.com/vouch-dev/vouch/index"
	"github.com/vouch-dev/vouch/report"
)

const (
	policyGood  = "/nix/store/0c6kzph7l0dcbfmjap64f0czdafn3b7x-good"
	policyFlaky = "/nix/store/1c6kzph7l0dcbfmjap64f0czdafn3b7x-flaky"
)

// policyWorld writes a config of four builders with the given policy
// text, and an index where alice, bob and carol agree on good (dave
// silent) and all four built flaky differently.
func policyWorld(t *testing.T, policy string) string {
	t.Helper()
	dir := t.TempDir()
	var text strings.Builder
	fmt.Fprintf(&text, "state = %q\n", filepath.Join(dir, "state"))
	signers := map[string]note.Signer{}
	for i, n := range []string{"alice", "bob", "carol", "dave"} {
		skey, vkey, err := note.GenerateKey(rand.Reader, n)
		if err != nil {
			t.Fatal(err)
		}
		if signers[n], err = note.NewSigner(skey); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&text, "[[builder]]\nname = %q\nvkey = %q\nlog = \"http://127.0.0.1:%d/log/\"\noperator = \"org-%s\"\n", n, vkey, 9000+i, n)
	}
	text.WriteString(policy)
	cfgPath := filepath.Join(dir, "vouch.toml")
	if err := os.WriteFile(cfgPath, []byte(text.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "state"), 0o700); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	x, err := follow.OpenIndex(cfg)
	if err != nil {
		t.Fatal(err)
	}
	nar := func(c byte) string { return "sha256:" + strings.Repeat(string(c), 52) }
	for i, b := range cfg.Builders {
		id, err := follow.LogID(b)
		if err != nil {
			t.Fatal(err)
		}
		claims := []*claim.Claim{
			{Kind: claim.KindNix, Subject: policyFlaky, NarHash: nar("bcdf"[i]), NarSize: 10},
		}
		if b.Name != "dave" {
			claims = append(claims, &claim.Claim{Kind: claim.KindNix, Subject: policyGood, NarHash: nar('a'), NarSize: 10})
		}
		batch := &index.Batch{}
		for _, c := range claims {
			e, _ := c.Marshal()
			batch.Entries, batch.Claims, batch.Hashes = append(batch.Entries, e), append(batch.Claims, c), append(batch.Hashes, tlog.RecordHash(e))
		}
		if conflict, err := x.Append(id, batch); err != nil || conflict != nil {
			t.Fatal(conflict, err)
		}
		size := uint64(len(claims))
		root, err := x.RootAt(id, size)
		if err != nil {
			t.Fatal(err)
		}
		signed, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n%d\n%s\n", b.Name, size, base64.StdEncoding.EncodeToString(root[:]))}, signers[b.Name])
		if err != nil {
			t.Fatal(err)
		}
		if err := x.SetCheckpoint(id, &index.Checkpoint{Origin: b.Name, Size: size, Root: root, Note: signed}); err != nil {
			t.Fatal(err)
		}
	}
	if err := x.Close(); err != nil {
		t.Fatal(err)
	}
	return cfgPath
}

const groupPolicy = `
[[group]]
name = "ours"
threshold = "any"
members = ["alice"]

[[group]]
name = "two-orgs"
threshold = 2
members = ["alice", "bob", "carol", "dave"]
min-operators = 2

[quorum]
group = "two-orgs"

[[exception]]
name = "flaky"
reason = "embeds the build time"
rule = "ours"
`

func TestPolicyCheckAndTest(t *testing.T) {
	cfgPath := policyWorld(t, groupPolicy)

	code, out := capture(t, "policy", "check", "--config", cfgPath)
	for _, want := range []string{"the policy is valid", "group two-orgs: 2 of {alice, bob, carol, dave} from 2 distinct operators",
		"Each builder counts once across all groups", "name flaky: group ours: 1 of {alice}; reason: embeds the build time", "fingerprint: sha256:"} {
		if code != 0 || !strings.Contains(out, want) {
			t.Fatalf("policy check: exit %d, want %q in\n%s", code, want, out)
		}
	}

	// Against its own [quorum] keys alone (min defaults to 3 of 4): good
	// stays trusted, flaky moves from conflict to trusted by the exception.
	code, out = capture(t, "policy", "test", "--json", "--config", cfgPath)
	var c report.Comparison
	if err := json.Unmarshal([]byte(out), &c); err != nil || code != 0 {
		t.Fatalf("policy test: exit %d %v\n%s", code, err, out)
	}
	if c.Subjects != 2 || c.Changed != 1 || c.ByException != 1 || len(c.Changes) != 1 || c.Changes[0].Subject != policyFlaky ||
		c.Changes[0].From != "conflict" || c.Changes[0].To != "trusted" || c.Before.Trusted != 1 || c.After.Trusted != 2 {
		t.Fatalf("policy test: %+v", c)
	}
	if code, out := capture(t, "policy", "test", "--config", cfgPath); code != 0 || !strings.Contains(out, "1  conflict -> trusted") {
		t.Fatalf("policy test text: exit %d\n%s", code, out)
	}

	// vouch verdict records the exception it used.
	code, out = capture(t, "verdict", "--config", cfgPath, policyFlaky)
	if code != 0 || !strings.Contains(out, "exception:   admitted by the exception for name flaky (rule: ours): embeds the build time") {
		t.Fatalf("verdict: exit %d\n%s", code, out)
	}
}

// TestVerdictSaysWhoIsMissing: a verdict that is not trusted names each
// silent builder with what its log's health says.
func TestVerdictSaysWhoIsMissing(t *testing.T) {
	cfgPath := policyWorld(t, "[quorum]\nmin = 4\n")
	code, out := capture(t, "verdict", "--config", cfgPath, policyGood)
	if code != 1 || !strings.Contains(out, "missing:     dave: silent (its log is indexed up to its checkpoint of size 1 and holds no claim for this subject)") {
		t.Fatalf("verdict: exit %d\n%s", code, out)
	}
}

func TestPolicyCheckRefuses(t *testing.T) {
	for name, tc := range map[string]struct{ policy, want string }{
		"a builder needed twice": {`
[[group]]
name = "A"
threshold = "all"
members = ["alice", "bob"]
[[group]]
name = "B"
threshold = "all"
members = ["bob", "carol"]
[[group]]
name = "both"
threshold = "all"
members = ["A", "B"]
[quorum]
group = "both"
`, `group "both" can never be met`},
		"unknown member":              {"[[group]]\nname = \"g\"\nthreshold = 1\nmembers = [\"alice\", \"eve\"]\n", `member "eve" is neither a [[builder]] nor a group defined earlier`},
		"pattern matching everything": {"[[exception]]\nname = \"*\"\nreason = \"x\"\n", "matches every store path"},
		"exception without reason":    {"[[exception]]\nsubject = \"" + policyGood + "\"\n", "reason is required"},
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			var text strings.Builder
			fmt.Fprintf(&text, "state = %q\n", dir)
			for i, n := range []string{"alice", "bob", "carol", "dave"} {
				_, vkey, _ := note.GenerateKey(rand.Reader, n)
				fmt.Fprintf(&text, "[[builder]]\nname = %q\nvkey = %q\nlog = \"http://127.0.0.1:%d/log/\"\n", n, vkey, 9000+i)
			}
			text.WriteString(tc.policy)
			cfgPath := filepath.Join(dir, "vouch.toml")
			if err := os.WriteFile(cfgPath, []byte(text.String()), 0o600); err != nil {
				t.Fatal(err)
			}
			stderr := captureStderr(t, func() {
				if code, _ := capture(t, "policy", "check", "--config", cfgPath); code != 1 {
					t.Errorf("exit %d, want 1", code)
				}
			})
			if !strings.Contains(stderr, tc.want) {
				t.Fatalf("want %q in\n%s", tc.want, stderr)
			}
		})
	}
}

// captureStderr runs fn and returns what it wrote to stderr.
func captureStderr(t *testing.T, fn func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = w
	done := make(chan []byte)
	go func() {
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := r.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		done <- []byte(b.String())
	}()
	fn()
	os.Stderr = saved
	w.Close()
	return string(<-done)
}
