package main

import (
	"crypto/sha256"
	"encoding/base64"

	"context"
	"fmt"
	"golang.org/x/mod/sumdb/note"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vouch-dev/vouch/buildlog"
	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/internal/keytest"
	"github.com/vouch-dev/vouch/keys"
)

// servedBuildLog is a builder's real log (buildlog on tessera) with n
// claims, served at URL/log/ on 127.0.0.1.
func servedBuildLog(t *testing.T, name string, n int) (url, vkey, tiles string) {
	dir := t.TempDir()
	id, _ := keytest.Identity(t, filepath.Join(dir, "keys"), name)
	l, url := serveLog(t, id, filepath.Join(dir, "log"))
	addClaims(t, l, 0, n, 0)
	return url, id.VerifierKey, l.TilesDir()
}

// serveLog opens a log signed by id in dir and serves it at URL/log/.
func serveLog(t *testing.T, id *keys.Identity, dir string) (*buildlog.Log, string) {
	l, err := buildlog.Open(context.Background(), buildlog.Options{Dir: dir, Identity: id, CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	srv := httptest.NewServer(http.StripPrefix("/log", buildlog.Handler(l.TilesDir())))
	t.Cleanup(srv.Close)
	return l, srv.URL + "/log/"
}

// addClaims adds the claims from..from+n-1 (their digests offset by
// variant, so another variant gives another history) and waits until the
// log publishes a checkpoint of size from+n.
func addClaims(t *testing.T, l *buildlog.Log, from, n, variant int) {
	ctx := context.Background()
	// Submit concurrently, as many builds would: each Add waits for its
	// batch to be integrated.
	errs := make(chan error, n)
	for i := from; i < from+n; i++ {
		go func() {
			c := &claim.Claim{Kind: claim.KindOCI, Subject: fmt.Sprintf("github.com/x/y@%040d#img?system=x86_64-linux", i),
				Digest: fmt.Sprintf("sha256:%064x", i+variant)}
			_, err := l.Add(ctx, c)
			errs <- err
		}()
	}
	for i := 0; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		cp, err := l.Checkpoint(ctx)
		if err == nil && strings.Contains(string(cp), fmt.Sprintf("\n%d\n", from+n)) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of size %d published", from+n)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestSyncEvidenceAndLogVerifyCommands drives vouch sync, vouch evidence
// and vouch log verify against real builder logs on 127.0.0.1.
func TestSyncEvidenceAndLogVerifyCommands(t *testing.T) {
	aliceURL, aliceKey, aliceTiles := servedBuildLog(t, "alice", 300)
	bobURL, bobKey, _ := servedBuildLog(t, "bob", 20)
	down := httptest.NewServer(http.NotFoundHandler())
	down.Close() // nothing listens there any more
	dir := t.TempDir()
	writeConfig := func(extra string) string {
		p := filepath.Join(dir, "vouch.toml")
		text := fmt.Sprintf(`state = %q
[[builder]]
name = "alice"
vkey = %q
log = %q
[[builder]]
name = "bob"
vkey = %q
log = %q
%s
[quorum]
min = 1
`, filepath.Join(dir, "state"), aliceKey, aliceURL, bobKey, bobURL, extra)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	cfg := writeConfig("")
	// The summary reaches stdout when it is not a terminal too.
	if code, out := capture(t, "sync", "--config", cfg); code != 0 || !strings.Contains(out, "alice: 300 entries (+300)") || !strings.Contains(out, "bob: 20 entries (+20)") {
		t.Fatalf("sync: exit %d, stdout %q (want 0 and a line per builder)", code, out)
	}
	if code, out := capture(t, "evidence", "--config", cfg); code != 0 || !strings.Contains(out, "no evidence") {
		t.Fatalf("evidence: %d %q", code, out)
	}

	// A third builder that is down: sync says which one failed, and
	// still syncs the others.
	_, carolKey, _ := servedBuildLog(t, "carol", 1)
	cfg = writeConfig(fmt.Sprintf("[[builder]]\nname = \"carol\"\nvkey = %q\nlog = %q\n", carolKey, down.URL+"/log/"))
	if code, _ := capture(t, "sync", "--config", cfg); code != 1 {
		t.Fatalf("sync with a builder down: exit %d, want 1", code)
	}

	if code, out := capture(t, "log", "verify", aliceURL, aliceKey); code != 0 || !strings.Contains(out, "ok:") || !strings.Contains(out, "300 entries") {
		t.Fatalf("log verify: %d %q", code, out)
	}
	if code, _ := capture(t, "log", "verify", aliceURL, bobKey); code != 3 {
		t.Fatalf("log verify with the wrong key: exit %d, want 3", code)
	}
	// Corrupt one of alice's entry bundles on disk: an audit from scratch
	// must fail and say why.
	bundle := filepath.Join(aliceTiles, "tile", "entries", "000")
	b, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	b[100] ^= 1
	if err := os.WriteFile(bundle, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _ := capture(t, "log", "verify", aliceURL, aliceKey); code != 1 {
		t.Fatalf("log verify of a corrupted log: exit %d, want 1", code)
	}
}

// TestEvidenceExportAndVerifyCommands records evidence through a sync of a
// log that forks, exports it and checks it with only the public key.
func TestEvidenceExportAndVerifyCommands(t *testing.T) {
	url, vkey, tiles := servedBuildLog(t, "erin", 10)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "vouch.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("state = %q\n[[builder]]\nname = \"erin\"\nvkey = %q\nlog = %q\n", filepath.Join(dir, "state"), vkey, url)), 0o644)
	if code, _ := capture(t, "sync", "--config", cfg); code != 0 {
		t.Fatalf("first sync: exit %d", code)
	}
	// erin's key signs a checkpoint of 5 entries whose root is not that of
	// the first 5 of the 10 verified: a fork, proven by the two checkpoints.
	cp := filepath.Join(tiles, "checkpoint")
	priv := filepath.Join(filepath.Dir(filepath.Dir(tiles)), "keys", "erin.key")
	id, err := keys.LoadIdentity(priv)
	if err != nil {
		t.Fatal(err)
	}
	forked := signCheckpoint(t, id, 5)
	if err := os.WriteFile(cp, forked, 0o644); err != nil {
		t.Fatal(err)
	}
	if code, _ := capture(t, "sync", "--config", cfg); code != 1 {
		t.Fatalf("sync of a forked log: exit %d, want 1", code)
	}
	code, out := capture(t, "evidence", "--config", cfg)
	if code != 0 || !strings.Contains(out, "fork") {
		t.Fatalf("evidence: %d %q", code, out)
	}
	file := filepath.Join(dir, "ev.json")
	if code, _ := capture(t, "evidence", "export", "--config", cfg, "1", file); code != 0 {
		t.Fatalf("export: exit %d", code)
	}
	if code, out := capture(t, "evidence", "verify", file, vkey); code != 0 || !strings.Contains(out, "fork") {
		t.Fatalf("verify: %d %q", code, out)
	}
}

func signCheckpoint(t *testing.T, id *keys.Identity, size int) []byte {
	empty := sha256.Sum256(nil)
	body := fmt.Sprintf("%s\n%d\n%s\n", id.Name, size, base64.StdEncoding.EncodeToString(empty[:]))
	msg, err := note.Sign(&note.Note{Text: body}, id.Signer)
	if err != nil {
		t.Fatal(err)
	}
	return msg
}
