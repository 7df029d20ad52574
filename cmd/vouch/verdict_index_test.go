package main

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
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
	"github.com/vouch-dev/vouch/verdict"
)

// capture runs the command line and returns its exit status and stdout.
func capture(t *testing.T, args ...string) (int, string) {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stdout
	os.Stdout = w
	done := make(chan string)
	go func() { b, _ := io.ReadAll(r); done <- string(b) }()
	code := dispatch(args)
	os.Stdout = saved
	w.Close()
	return code, <-done
}

// TestVerdictAndReportOnAnIndex writes a config and a follower index the
// way vouch sync leaves them, then runs `vouch verdict` and `vouch report`.
func TestVerdictAndReportOnAnIndex(t *testing.T) {
	dir := t.TempDir()
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		t.Fatal(err)
	}
	names := []string{"alice", "bob", "carol", "dave"}
	signers := map[string]note.Signer{}
	// The address a running node would listen on (used at the end).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var cfgText strings.Builder
	fmt.Fprintf(&cfgText, "state = %q\nlisten = %q\n", state, ln.Addr().String())
	for i, n := range names {
		skey, vkey, err := note.GenerateKey(rand.Reader, n)
		if err != nil {
			t.Fatal(err)
		}
		if signers[n], err = note.NewSigner(skey); err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&cfgText, "[[builder]]\nname = %q\nvkey = %q\nlog = \"http://127.0.0.1:%d/log/\"\noperator = \"org-%s\"\n", n, vkey, 9000+i, n)
	}
	cfgText.WriteString("[quorum]\nmin = 3\nmin-operators = 2\non-conflict = \"majority\"\n")
	cfgPath := filepath.Join(dir, "vouch.toml")
	if err := os.WriteFile(cfgPath, []byte(cfgText.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(cfgPath)
	if err != nil {
		t.Fatal(err)
	}

	const good, flaky = "/nix/store/0c6kzph7l0dcbfmjap64f0czdafn3b7x-good", "/nix/store/1c6kzph7l0dcbfmjap64f0czdafn3b7x-flaky"
	nar := func(c byte) string { return "sha256:" + strings.Repeat(string(c), 52) }
	x, err := follow.OpenIndex(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for i, b := range cfg.Builders {
		id, err := follow.LogID(b)
		if err != nil {
			t.Fatal(err)
		}
		claims := []*claim.Claim{
			{Kind: claim.KindNix, Subject: good, NarHash: nar('a'), NarSize: 10},
			{Kind: claim.KindNix, Subject: flaky, NarHash: nar("bcdf"[i]), NarSize: 10},
		}
		if b.Name == "dave" {
			claims = claims[1:] // dave never built good
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

	code, out := capture(t, "verdict", "--config", cfgPath, good)
	if code != 0 || !strings.Contains(out, "trusted: nix "+good) || !strings.Contains(out, "silent:      dave") {
		t.Errorf("verdict good: exit %d\n%s", code, out)
	}
	code, out = capture(t, "verdict", "--json", "--config", cfgPath, flaky)
	var v verdict.Verdict
	if err := json.Unmarshal([]byte(out), &v); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if code != 1 || v.Outcome != verdict.Conflict || len(v.Agreed)+len(v.Disagreed) != 4 {
		t.Errorf("verdict flaky: exit %d %+v", code, v)
	}
	for _, vote := range append(v.Agreed, v.Disagreed...) {
		if vote.TreeSize == 0 || (vote.TreeSize > 1 && len(vote.Proof) == 0) {
			t.Errorf("vote without an inclusion proof: %+v", vote)
		}
	}
	if code, _ := capture(t, "verdict", "--config", cfgPath, "/nix/store/2c6kzph7l0dcbfmjap64f0czdafn3b7x-unknown"); code != 1 {
		t.Errorf("unknown path: exit %d", code)
	}

	code, out = capture(t, "report", "--json", "--all", "--config", cfgPath)
	var rep report.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil || code != 0 {
		t.Fatalf("report: exit %d %v\n%s", code, err, out)
	}
	if rep.Totals.Subjects != 2 || rep.Totals.Trusted != 1 || rep.Totals.Conflict != 1 || rep.Totals.BuiltByOne != 4 {
		t.Errorf("report totals %+v", rep.Totals)
	}
	// Every subject's verdict in the report is the one vouch verdict gives.
	for _, s := range rep.Subjects {
		_, out := capture(t, "verdict", "--json", "--config", cfgPath, s.Subject)
		var v verdict.Verdict
		if err := json.Unmarshal([]byte(out), &v); err != nil {
			t.Fatal(err)
		}
		if v.Outcome != s.Outcome || v.Reason != s.Reason {
			t.Errorf("%s: report %s (%s), verdict %s (%s)", s.Subject, s.Outcome, s.Reason, v.Outcome, v.Reason)
		}
	}
	if code, out := capture(t, "report", "--config", cfgPath); code != 0 || !strings.Contains(out, "subjects with more than one output (1)") {
		t.Errorf("report text: exit %d\n%s", code, out)
	}

	// While another process holds the index, whatever answers at the
	// listen address is not asked: nothing in the state directory says it
	// serves this state under this policy (TestVerdictOnlyFromThisConfigsNode
	// runs the real nodes).
	held, err := follow.OpenIndex(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	lenient := *cfg
	lenient.Quorum.Min, lenient.Quorum.OnConflict = 1, config.OnConflictRefuse
	policy, err := verdict.NewPolicy(&lenient)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle(verdict.HTTPPath, verdict.Handler(policy, held))
	mux.Handle(report.HTTPPath, report.Handler(policy, held))
	srv := &http.Server{Handler: mux}
	go srv.Serve(ln)
	defer srv.Close()
	if code, out := capture(t, "verdict", "--config", cfgPath, good); code == 0 || out != "" {
		t.Errorf("verdict while the index is held: exit %d (want non-zero, nothing printed)\n%s", code, out)
	}
	if code, out := capture(t, "report", "--config", cfgPath); code == 0 || out != "" {
		t.Errorf("report while the index is held: exit %d\n%s", code, out)
	}
}
