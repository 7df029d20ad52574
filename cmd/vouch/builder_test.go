package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vouch-dev/vouch/keys"
)

// TestBuilderReadmitCommand: a builder caught forking is skipped by sync
// until vouch builder readmit, which needs a reason, records it on the
// evidence (vouch evidence shows it), and lets the log sync again.
func TestBuilderReadmitCommand(t *testing.T) {
	url, vkey, tiles := servedBuildLog(t, "frank", 10)
	dir := t.TempDir()
	cfg := filepath.Join(dir, "vouch.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("state = %q\n[[builder]]\nname = \"frank\"\nvkey = %q\nlog = %q\n", filepath.Join(dir, "state"), vkey, url)), 0o644)
	if code, _ := capture(t, "sync", "--config", cfg); code != 0 {
		t.Fatalf("first sync: exit %d", code)
	}
	cpFile := filepath.Join(tiles, "checkpoint")
	honest, err := os.ReadFile(cpFile)
	if err != nil {
		t.Fatal(err)
	}
	id, err := keys.LoadIdentity(filepath.Join(filepath.Dir(filepath.Dir(tiles)), "keys", "frank.key"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(cpFile, signCheckpoint(t, id, 5), 0o644) // a fork
	if code, _ := capture(t, "sync", "--config", cfg); code != 1 {
		t.Fatalf("sync of a forked log: exit %d, want 1", code)
	}
	os.WriteFile(cpFile, honest, 0o644) // the builder fixed its log
	if code, _ := capture(t, "sync", "--config", cfg); code != 1 {
		t.Fatalf("sync of a compromised log: exit %d, want 1 (skipped)", code)
	}

	if code, _ := capture(t, "builder", "readmit", "--config", cfg, "frank"); code == 0 {
		t.Fatal("readmit without a reason succeeded")
	}
	if code, _ := capture(t, "builder", "readmit", "--config", cfg, "--reason", "x", "nobody"); code == 0 {
		t.Fatal("readmit of an unknown builder succeeded")
	}
	const reason = "log software bug rewrote the tree; investigated with frank"
	code, out := capture(t, "builder", "readmit", "--config", cfg, "frank", "--reason", reason)
	if code != 0 || !strings.Contains(out, "re-admitted frank, overriding evidence 1") {
		t.Fatalf("readmit: exit %d\n%s", code, out)
	}
	if code, out := capture(t, "evidence", "--config", cfg); code != 0 || !strings.Contains(out, "fork") || !strings.Contains(out, "re-admitted") || !strings.Contains(out, reason) {
		t.Fatalf("evidence after readmit: exit %d\n%s", code, out)
	}
	if code, _ := capture(t, "sync", "--config", cfg); code != 0 {
		t.Fatalf("sync after readmit: exit %d", code)
	}
	if code, _ := capture(t, "builder", "readmit", "--config", cfg, "--reason", reason, "frank"); code == 0 {
		t.Fatal("a second readmit with nothing to override succeeded")
	}
}
