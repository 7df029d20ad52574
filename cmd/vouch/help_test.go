package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vouch-dev/vouch/internal/keytest"
	"github.com/vouch-dev/vouch/keys"
)

// vouchOut runs the vouch command in its own process and returns its
// stdout and stderr together, and its exit status.
func vouchOut(t *testing.T, args ...string) (string, int) {
	t.Helper()
	code, stdout, stderr := runVouch(t, args...)
	return stdout + stderr, code
}

// TestEveryCommandHelpExitsZero: -h, --help and vouch help exit 0 for
// every command and every group of commands, and print a usage.
func TestEveryCommandHelpExitsZero(t *testing.T) {
	groups := map[string]bool{}
	for name := range commands {
		if g, _, nested := strings.Cut(name, " "); nested {
			groups[g] = true
		}
		for _, args := range [][]string{
			append(strings.Fields(name), "-h"),
			append(strings.Fields(name), "--help"),
			append([]string{"help"}, strings.Fields(name)...),
		} {
			out, code := vouchOut(t, args...)
			if code != 0 || !strings.Contains(out, "usage") {
				t.Errorf("vouch %s: exit %d\n%s", strings.Join(args, " "), code, out)
			}
		}
	}
	if len(groups) == 0 {
		t.Fatal("no nested commands registered")
	}
	for g := range groups {
		for _, args := range [][]string{{g, "-h"}, {"help", g}} {
			out, code := vouchOut(t, args...)
			if code != 0 || !strings.Contains(out, "sub-commands") {
				t.Errorf("vouch %s: exit %d\n%s", strings.Join(args, " "), code, out)
			}
		}
	}
	for _, args := range [][]string{{}, {"-h"}, {"--help"}, {"help"}} {
		if out, code := vouchOut(t, args...); code != 0 || !strings.Contains(out, "commands:") {
			t.Errorf("vouch %v: exit %d\n%s", args, code, out)
		}
	}
	if out, code := vouchOut(t, "log", "nonsense"); code != 2 || !strings.Contains(out, `unknown command "log nonsense"`) {
		t.Errorf("vouch log nonsense: exit %d\n%s", code, out)
	}
}

// TestFlagsMayFollowArguments: vouch verdict PATH --config X reads X (its
// error names the missing file), as vouch verdict --config X PATH does.
func TestFlagsMayFollowArguments(t *testing.T) {
	missing := t.TempDir() + "/nope.toml"
	path := "/nix/store/" + strings.Repeat("a", 32) + "-hello"
	before, code1 := vouchOut(t, "verdict", "--config", missing, path)
	after, code2 := vouchOut(t, "verdict", path, "--config", missing)
	if code1 != code2 || !strings.Contains(after, "nope.toml") || strings.Contains(after, "usage:") {
		t.Errorf("flags after the argument are not read:\nbefore (exit %d): %s\nafter (exit %d): %s", code1, before, code2, after)
	}
}

// TestDefaultKeyNamesDiffer: two builders started without a name on
// machines with the same host name get logs with different origins.
func TestDefaultKeyNamesDiffer(t *testing.T) {
	a, b := defaultKeyName(), defaultKeyName()
	if a == b {
		t.Errorf("two default key names are both %q", a)
	}
	for _, n := range []string{a, b} {
		if err := keys.ValidName(n); err != nil {
			t.Errorf("default key name %q: %v", n, err)
		}
	}
}

// TestSubmitTakesResultLinksAndRefusesDerivations: ./result resolves to
// its store path (the daemon is then asked, and is absent here), and a
// .drv is refused before anything is sent.
func TestSubmitTakesResultLinksAndRefusesDerivations(t *testing.T) {
	dir := t.TempDir()
	out := "/nix/store/" + strings.Repeat("b", 32) + "-hello-2.12"
	link := filepath.Join(dir, "result")
	if err := os.Symlink(out, link); err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	msg, code := vouchOut(t, "submit", "--state", state, link)
	if code == 0 || strings.Contains(msg, "not a store path") || !strings.Contains(msg, "vouch.sock") {
		t.Errorf("vouch submit ./result: exit %d, want the daemon's socket to be the problem:\n%s", code, msg)
	}
	drv := "/nix/store/" + strings.Repeat("c", 32) + "-hello-2.12.drv"
	msg, code = vouchOut(t, "submit", "--state", state, drv)
	if code != 1 || !strings.Contains(msg, "is a derivation") || !strings.Contains(msg, "--outputs") {
		t.Errorf("vouch submit DRV: exit %d\n%s", code, msg)
	}
}

// TestSyncInterruptedExits130: Ctrl-C during a sync exits 130 and says
// that nothing is lost.
func TestSyncInterruptedExits130(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() { // a log that accepts and never answers
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	id, _ := keytest.Identity(t, "", "slow")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "vouch.toml")
	os.WriteFile(cfg, []byte(fmt.Sprintf("state = %q\n[[builder]]\nname = \"slow\"\nvkey = %q\nlog = \"http://%s/log/\"\n[quorum]\nmin = 1\n",
		filepath.Join(dir, "state"), id.VerifierKey, ln.Addr())), 0o644)
	cmd := exec.Command(os.Args[0], "sync", "--config", cfg)
	cmd.Env = append(os.Environ(), "VOUCH_TEST_MAIN=1")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	cmd.Process.Signal(os.Interrupt)
	err = cmd.Wait()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 130 || !strings.Contains(out.String(), "nothing verified is lost") {
		t.Errorf("interrupted sync: %v\n%s", err, out.String())
	}
}
