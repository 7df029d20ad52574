package main

import (
	"encoding/binary"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/internal/keytest"
)

// TestLogVerifyMonitorsALog runs `vouch log verify` with a pinned
// checkpoint against real logs on 127.0.0.1: a log that grows passes and
// moves the pin; a fork, a split view and a rollback of the pinned history
// fail with evidence that checks with the key alone, and leave the pin.
func TestLogVerifyMonitorsALog(t *testing.T) {
	dir := t.TempDir()
	id, _ := keytest.Identity(t, filepath.Join(dir, "keys"), "alice")
	honest, honestURL := serveLog(t, id, filepath.Join(dir, "honest"))
	addClaims(t, honest, 0, 10, 0)
	pin := filepath.Join(dir, "alice.pin")

	if code, _, stderr := runVouch(t, "log", "verify", "--since", pin, honestURL, id.VerifierKey); code != 3 || !strings.Contains(stderr, "--save "+pin) {
		t.Fatalf("--since a missing pin: exit %d (want 3, advice to --save)\n%s", code, stderr)
	}
	code, out, stderr := runVouch(t, "log", "verify", "--save", pin, honestURL, id.VerifierKey)
	if code != 0 || !strings.Contains(out, "pinned the checkpoint of size 10") {
		t.Fatalf("first run: exit %d\n%s%s", code, out, stderr)
	}
	pinned10, err := os.ReadFile(pin)
	if err != nil {
		t.Fatal(err)
	}

	addClaims(t, honest, 10, 5, 0)
	code, out, stderr = runVouch(t, "log", "verify", "--since", pin, "--save", pin, honestURL, id.VerifierKey)
	if code != 0 || !strings.Contains(out, "extended by 5 entries since the pinned checkpoint of size 10") || !strings.Contains(out, "size 15 in "+pin) {
		t.Fatalf("the log grew: exit %d\n%s%s", code, out, stderr)
	}
	pinned15, _ := os.ReadFile(pin)

	// The same key signs another history: first 15 other entries (a split
	// view of size 15), then 5 more (a fork: a tree of 20 whose first 15
	// entries are not the pinned ones).
	other, otherURL := serveLog(t, id, filepath.Join(dir, "other"))
	addClaims(t, other, 0, 15, 1000)
	check := func(name, url, kind, proven string) {
		t.Helper()
		ev := filepath.Join(dir, name+".json")
		code, out, stderr := runVouch(t, "log", "verify", "--since", pin, "--save", pin, "--evidence", ev, url, id.VerifierKey)
		if code != 1 || !strings.Contains(stderr, "NOT sound: "+kind) {
			t.Fatalf("%s: exit %d (want 1, %s)\n%s%s", name, code, kind, out, stderr)
		}
		if now, _ := os.ReadFile(pin); string(now) != string(pinned15) {
			t.Fatalf("%s: the pin was replaced by a checkpoint that does not extend it", name)
		}
		code, out, stderr = runVouch(t, "evidence", "verify", ev, id.VerifierKey)
		if code != 0 || !strings.Contains(out, proven) {
			t.Fatalf("%s: evidence verify: exit %d\n%s%s", name, code, out, stderr)
		}
	}
	check("split-view", otherURL, "split-view", "proven: alice signed two different trees of size 15")
	addClaims(t, other, 15, 5, 1000)
	check("fork", otherURL, "fork", "proven: alice signed a tree of size 20 whose first 15 entries")

	// A mirror replays the honest log's older checkpoint (of size 10).
	replay := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/checkpoint") {
			w.Write(pinned10)
			return
		}
		http.StripPrefix("/log", http.FileServer(http.Dir(honest.TilesDir()))).ServeHTTP(w, r)
	}))
	defer replay.Close()
	check("rollback", replay.URL+"/log/", "rollback", "sizes 15 and 10")

	// The honest log still extends the pin.
	if code, out, stderr := runVouch(t, "log", "verify", "--since", pin, honestURL, id.VerifierKey); code != 0 || !strings.Contains(out, "unchanged") {
		t.Fatalf("honest log after the attacks: exit %d\n%s%s", code, out, stderr)
	}
}

// TestLogVerifyReportsExtraBundleEntries serves a partial entry bundle
// with one entry more than the signed tree holds there: tlog-tiles asks
// clients to treat that as an error.
func TestLogVerifyReportsExtraBundleEntries(t *testing.T) {
	url, vkey, tiles := servedBuildLog(t, "alice", 10)
	bundle := filepath.Join(tiles, "tile", "entries", "000.p", "10")
	b, err := os.ReadFile(bundle)
	if err != nil {
		t.Fatal(err)
	}
	if code, out, stderr := runVouch(t, "log", "verify", url, vkey); code != 0 {
		t.Fatalf("before: exit %d\n%s%s", code, out, stderr)
	}
	extra, err := (&claim.Claim{Kind: claim.KindOCI, Subject: "github.com/x/y@" + strings.Repeat("e", 40) + "#img?system=x86_64-linux",
		Digest: "sha256:" + strings.Repeat("e", 64)}).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(len(extra)))
	if err := os.WriteFile(bundle, append(b, extra...), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, stderr := runVouch(t, "log", "verify", "--evidence", filepath.Join(t.TempDir(), "ev.json"), url, vkey)
	if code == 0 || !strings.Contains(stderr, "11 entries in a partial bundle of width 10") {
		t.Fatalf("a bundle with an extra entry: exit %d (want non-zero, reported)\n%s%s", code, out, stderr)
	}
}
