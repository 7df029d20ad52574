// Package e2e runs vouch end to end with the real things: Debian's Nix 2.8
// as client and builder, real vouch daemons on 127.0.0.1, real HTTP.
// Derivations come from testdata/world (builtins and busybox only), built
// into chroot stores (nix-build --store DIR) so that several independent
// builders run on one machine.
package e2e

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/internal/tlogaudit"
)

var (
	nixVersion string // what nix-build --version printed
	vouchBin   string // the vouch binary under test
	worldDir   string // testdata/world with tools/ filled in
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	// VOUCH_E2E_NIX_BIN names a directory of Nix commands to test with
	// instead of the ones on PATH (scripts/setup-current-nix.sh prints one
	// for a current Nix).
	if dir := os.Getenv("VOUCH_E2E_NIX_BIN"); dir != "" {
		os.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	}
	if out, err := exec.Command("nix-build", "--version").Output(); err == nil {
		nixVersion = strings.TrimSpace(string(out))
		fmt.Println("e2e: testing with", nixVersion)
	}
	if _, err := exec.LookPath("nix-build"); err != nil {
		fmt.Println("e2e: nix-build not on PATH; install nix-bin (.ci/run does)")
		return 1
	}
	tmp, err := os.MkdirTemp("", "vouch-e2e-bin")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(tmp)
	vouchBin = filepath.Join(tmp, "vouch")
	// VOUCH_E2E_RACE=1 builds the daemons and commands the tests run with
	// the race detector: a data race in a real node under real Nix fails
	// the test that met it (the daemon exits 66 and prints the report).
	buildArgs := []string{"build", "-o", vouchBin}
	if os.Getenv("VOUCH_E2E_RACE") == "1" {
		buildArgs = append(buildArgs, "-race")
		fmt.Println("e2e: vouch is built with -race (VOUCH_E2E_RACE=1)")
	}
	build := exec.Command("go", append(buildArgs, "../cmd/vouch")...)
	build.Stdout, build.Stderr = os.Stdout, os.Stderr
	if err := build.Run(); err != nil {
		fmt.Println("e2e: building vouch:", err)
		return 1
	}
	worldDir, err = filepath.Abs("testdata/world")
	if err != nil {
		panic(err)
	}
	if err := prepareTools(filepath.Join(worldDir, "tools")); err != nil {
		fmt.Println("e2e:", err)
		return 1
	}
	defer runAtExit()
	return m.Run()
}

// prepareTools copies busybox-static into the world's tools directory with
// an "sh" symlink (busybox picks its applet from argv[0]).
func prepareTools(dir string) error {
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return fmt.Errorf("busybox-static is needed for the test world: %w", err)
	}
	os.MkdirAll(dir, 0o755)
	if cur, err := os.ReadFile(filepath.Join(dir, "busybox")); err != nil || string(cur) != string(bb) {
		if err := os.WriteFile(filepath.Join(dir, "busybox"), bb, 0o755); err != nil {
			return err
		}
	}
	os.Remove(filepath.Join(dir, "sh"))
	return os.Symlink("busybox", filepath.Join(dir, "sh"))
}

// daemon is a running `vouch serve`.
type daemon struct {
	t      testing.TB
	cmd    *exec.Cmd
	State  string
	Store  string
	Addr   string
	VKey   string
	output *syncBuffer
	done   chan error
	// PublishedLog, if set, is where the log is published other than at
	// /log/ (the bucket of a log on object storage); tests audit it there.
	PublishedLog string
}

type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

var bannerAddr = regexp.MustCompile(`vouch is serving on http://([^/]+)/`)
var bannerVKey = regexp.MustCompile(`verifier key: (\S+)`)

// startDaemon runs vouch serve and waits until it listens. It is stopped
// (SIGTERM) when the test ends.
func startDaemon(t testing.TB, state, store string, args ...string) *daemon {
	t.Helper()
	d, err := tryStartDaemon(t, state, store, args...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func tryStartDaemon(t testing.TB, state, store string, args ...string) (*daemon, error) {
	all := append([]string{"serve", "--state", state, "--listen", "127.0.0.1:0"}, args...)
	if store != "" {
		all = append(all, "--store", store)
	}
	cmd := exec.Command(vouchBin, all...)
	out := &syncBuffer{}
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	d := &daemon{t: t, cmd: cmd, State: state, Store: store, output: out, done: make(chan error, 1)}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		var once sync.Once
		for sc.Scan() {
			line := sc.Text()
			out.Write([]byte(line + "\n"))
			if m := bannerAddr.FindStringSubmatch(line); m != nil {
				d.Addr = m[1]
			}
			if m := bannerVKey.FindStringSubmatch(line); m != nil {
				d.VKey = m[1]
			}
			if strings.HasPrefix(line, "Press Ctrl-C to stop.") {
				once.Do(func() { close(ready) })
			}
		}
		once.Do(func() { close(ready) })
	}()
	go func() { d.done <- cmd.Wait() }()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		cmd.Process.Kill()
		return nil, fmt.Errorf("vouch serve did not start within 30s:\n%s", out.String())
	}
	if d.Addr == "" {
		select {
		case err := <-d.done:
			return nil, fmt.Errorf("vouch serve exited (%v):\n%s", err, out.String())
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			return nil, fmt.Errorf("vouch serve printed no address:\n%s", out.String())
		}
	}
	t.Cleanup(func() { d.Stop() })
	return d, nil
}

// Stop sends SIGTERM and waits for a clean exit.
func (d *daemon) Stop() {
	if d.cmd.ProcessState != nil {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
		d.t.Errorf("vouch serve did not stop within 30s of SIGTERM:\n%s", d.output.String())
	}
	d.checkRaces()
}

// Kill9 kills the daemon without warning.
func (d *daemon) Kill9() {
	d.cmd.Process.Signal(syscall.SIGKILL)
	<-d.done
	d.checkRaces()
}

// checkRaces fails the test if the daemon, built with -race, reported a
// data race (VOUCH_E2E_RACE=1). The detector reports and carries on, so
// its report is the only trace.
func (d *daemon) checkRaces() {
	if out := d.output.String(); strings.Contains(out, raceReport) {
		d.t.Errorf("vouch serve reported a data race:\n%s", out)
	}
}

const raceReport = "WARNING: DATA RACE"

func (d *daemon) LogURL() string { return "http://" + d.Addr + "/log/" }

// AuditURL is where followers read the log: the bucket for a log on object
// storage, else the daemon's /log/.
func (d *daemon) AuditURL() string {
	if d.PublishedLog != "" {
		return d.PublishedLog
	}
	return d.LogURL()
}

// vouch runs the vouch binary and returns its combined output and exit code.
func vouch(t testing.TB, args ...string) (string, int) {
	t.Helper()
	cmd := exec.Command(vouchBin, args...)
	out, err := cmd.CombinedOutput()
	if strings.Contains(string(out), raceReport) {
		t.Errorf("vouch %v reported a data race:\n%s", args, out)
	}
	if ee, ok := err.(*exec.ExitError); ok {
		return string(out), ee.ExitCode()
	} else if err != nil {
		t.Fatalf("vouch %v: %v", args, err)
	}
	return string(out), 0
}

// hookScript writes a post-build-hook script that runs vouch hook for state.
func hookScript(t testing.TB, state string) string {
	p := filepath.Join(t.TempDir(), "post-build-hook")
	script := fmt.Sprintf("#!/bin/sh\nexec %s hook --state %s\n", vouchBin, state)
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// nixBuild builds attrs of the world into the chroot store at store, with
// an optional post-build hook, and returns the output paths printed.
func nixBuild(t testing.TB, store, hook string, extra []string, attrs ...string) []string {
	t.Helper()
	// No default substituter: the machine has no network, and Nix would
	// spend seconds retrying cache.nixos.org before every build.
	args := []string{"--store", store, worldDir, "--no-out-link", "--extra-experimental-features", "ca-derivations", "--option", "substituters", ""}
	if hook != "" {
		args = append(args, "--option", "post-build-hook", hook)
	}
	args = append(args, extra...)
	for _, a := range attrs {
		args = append(args, "-A", a)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nix-build", args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("nix-build %v: %v\n%s", args, err, stderr.String())
	}
	return strings.Fields(string(out))
}

// pathInfo is what real Nix says about a store path.
type pathInfo struct {
	Path       string   `json:"path"`
	NarHash    string   `json:"narHash"`
	NarSize    uint64   `json:"narSize"`
	References []string `json:"references"`
}

// nixPathInfo runs nix path-info --json and converts narHash to the
// "sha256:<nix32>" form claims use.
func nixPathInfo(t testing.TB, store string, paths ...string) map[string]pathInfo {
	t.Helper()
	m, err := pathInfos(store, paths...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// pathInfos is nixPathInfo for goroutines other than the test's.
func pathInfos(store string, paths ...string) (map[string]pathInfo, error) {
	args := append([]string{"path-info", "--json", "--extra-experimental-features", "nix-command", "--store", store}, paths...)
	out, err := exec.Command("nix", args...).Output()
	if err != nil {
		return nil, fmt.Errorf("nix %v: %v", args, err)
	}
	// Nix 2.8 prints a list of objects with a "path" field; Nix 2.19 and
	// later an object keyed by path.
	var infos []pathInfo
	if err := json.Unmarshal(out, &infos); err != nil {
		var byPath map[string]pathInfo
		if err2 := json.Unmarshal(out, &byPath); err2 != nil {
			return nil, fmt.Errorf("nix path-info --json: %v / %v", err, err2)
		}
		for p, pi := range byPath {
			pi.Path = p
			infos = append(infos, pi)
		}
	}
	m := map[string]pathInfo{}
	for _, pi := range infos {
		sri, ok := strings.CutPrefix(pi.NarHash, "sha256-")
		if !ok {
			return nil, fmt.Errorf("unexpected narHash %q", pi.NarHash)
		}
		raw, err := base64.StdEncoding.DecodeString(sri)
		if err != nil {
			return nil, err
		}
		pi.NarHash = "sha256:" + nixbase32.EncodeToString(raw)
		m[pi.Path] = pi
	}
	return m, nil
}

// waitForClaims audits the daemon's log until it holds at least n entries
// and returns them decoded.
func waitForClaims(t testing.TB, d *daemon, n int) (*tlogaudit.Result, []*claim.Claim) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	var lastErr error
	for time.Now().Before(deadline) {
		res, err := tlogaudit.Audit(d.AuditURL(), d.VKey)
		if err == nil && len(res.Entries) >= n {
			claims := make([]*claim.Claim, len(res.Entries))
			for i, e := range res.Entries {
				c, err := claim.Parse(e)
				if err != nil {
					t.Fatalf("entry %d is not a valid claim: %v", i, err)
				}
				claims[i] = c
			}
			return res, claims
		}
		lastErr = err
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("log did not reach %d entries within 60s (last error %v)\n%s", n, lastErr, d.output.String())
	return nil, nil
}

func readAll(r io.Reader) string {
	b, _ := io.ReadAll(r)
	return string(b)
}
