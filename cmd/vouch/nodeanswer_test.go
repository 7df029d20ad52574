package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/follow"
	"github.com/vouch-dev/vouch/keys"
)

// runVouch runs the vouch command in its own process and returns its exit
// status, stdout and stderr.
func runVouch(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "VOUCH_TEST_MAIN=1")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.ExitCode(), stdout.String(), stderr.String()
	} else if err != nil {
		t.Fatal(err)
	}
	return 0, stdout.String(), stderr.String()
}

// freeAddr returns a 127.0.0.1 address nothing listens on right now.
func freeAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// ociSubject is the subject servedBuildLog's i-th claim is for.
func ociSubject(i int) string {
	return fmt.Sprintf("github.com/x/y@%040d#img?system=x86_64-linux", i)
}

// TestVerdictOnlyFromThisConfigsNode runs real `vouch serve` processes for
// two configs that share a listen address, as two configs left at the
// default 127.0.0.1:8080 do, and checks that commands given one config
// never print the other node's verdicts, while the node that serves the
// config's own state and policy does answer — evidence included.
func TestVerdictOnlyFromThisConfigsNode(t *testing.T) {
	aliceURL, aliceKey, _ := servedBuildLog(t, "alice", 30) // claims 0..29
	bobURL, bobKey, _ := servedBuildLog(t, "bob", 10)       // claims 0..9, the same outputs
	carolURL, carolKey, carolTiles := servedBuildLog(t, "carol", 5)
	// carol's log is reached through a proxy that can be switched to a
	// split view: a second checkpoint of the same size with another root,
	// signed with carol's key (proven misbehaviour, recorded as evidence).
	carolID, err := keys.LoadIdentity(filepath.Join(filepath.Dir(filepath.Dir(carolTiles)), "keys", "carol.key"))
	if err != nil {
		t.Fatal(err)
	}
	var splitView atomic.Bool
	forged := signCheckpoint(t, carolID, 5)
	carolProxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if splitView.Load() && strings.HasSuffix(r.URL.Path, "/checkpoint") {
			w.Write(forged)
			return
		}
		resp, err := http.Get(strings.TrimSuffix(carolURL, "/log/") + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.WriteHeader(resp.StatusCode)
		buf := new(bytes.Buffer)
		buf.ReadFrom(resp.Body)
		w.Write(buf.Bytes())
	}))
	defer carolProxy.Close()

	dir := t.TempDir()
	listen := freeAddr(t) // shared by every config here, like the default port
	builder := func(name, vkey, url string) string {
		return fmt.Sprintf("[[builder]]\nname = %q\nvkey = %q\nlog = %q\n", name, vkey, url)
	}
	writeConfig := func(name, state, body string) string {
		p := filepath.Join(dir, name)
		text := fmt.Sprintf("state = %q\nlisten = %q\n[follow]\ninterval = \"200ms\"\n%s", filepath.Join(dir, state), listen, body)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	// strict: two of alice, bob, carol must agree. lenient: alice alone.
	strict := writeConfig("strict.toml", "strict-state", builder("alice", aliceKey, aliceURL)+builder("bob", bobKey, bobURL)+
		builder("carol", carolKey, carolProxy.URL+"/log/")+"[quorum]\nmin = 2\n")
	lenient := writeConfig("lenient.toml", "lenient-state", builder("alice", aliceKey, aliceURL)+"[quorum]\nmin = 1\n")
	// strict's state under a 1-of-3 quorum: same state directory, other policy.
	strictLoose := writeConfig("strict-loose.toml", "strict-state", builder("alice", aliceKey, aliceURL)+builder("bob", bobKey, bobURL)+
		builder("carol", carolKey, carolProxy.URL+"/log/")+"[quorum]\nmin = 1\n")

	agreed, aliceOnly := ociSubject(3), ociSubject(20) // trusted under strict / only under lenient
	waitTrusted := func(cfg, subject string) {
		t.Helper()
		for deadline := time.Now().Add(30 * time.Second); ; {
			code, _, stderr := runVouch(t, "verdict", "--config", cfg, subject)
			if code == 0 {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("verdict --config %s %s never became trusted: exit %d\n%s", cfg, subject, code, stderr)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	// The lenient node runs on the shared address.
	lenientNode := startServe(t, "--config", lenient)
	waitTrusted(lenient, aliceOnly) // the node for this config answers
	code, out, stderr := runVouch(t, "verdict", "--config", lenient, aliceOnly)
	if code != 0 || !strings.Contains(out, "trusted:") || !strings.Contains(stderr, "in use by the node at "+listen) {
		t.Fatalf("verdict from the lenient node: exit %d\n%s%s", code, out, stderr)
	}

	// strict has never synced: the lenient node must not answer for it.
	code, out, stderr = runVouch(t, "verdict", "--config", strict, aliceOnly)
	if code == 0 || strings.Contains(out, "trusted") || !strings.Contains(stderr, "vouch sync --config "+strict) {
		t.Fatalf("verdict --config strict without an index: exit %d (want non-zero, advice to sync)\n%s%s", code, out, stderr)
	}
	for _, args := range [][]string{{"report", "--config", strict}, {"evidence", "--config", strict}} {
		if code, out, stderr := runVouch(t, args...); code == 0 || !strings.Contains(stderr, "vouch sync --config "+strict) {
			t.Fatalf("%v without an index: exit %d\n%s%s", args, code, out, stderr)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "strict-state", "index.db")); err == nil {
		t.Fatal("a command that only reads created strict's index")
	}

	// strict's index exists but another process holds it (a sync, or a
	// node that did not record itself): still not the lenient node.
	if code, _, stderr := runVouch(t, "sync", "--config", strict); code != 0 {
		t.Fatalf("sync strict: exit %d\n%s", code, stderr)
	}
	cfg, err := config.Load(strict)
	if err != nil {
		t.Fatal(err)
	}
	held, err := follow.OpenIndex(cfg)
	if err != nil {
		t.Fatal(err)
	}
	code, out, stderr = runVouch(t, "verdict", "--config", strict, aliceOnly)
	held.Close()
	if code == 0 || strings.Contains(out, "trusted") || !strings.Contains(stderr, "in use") {
		t.Fatalf("verdict --config strict with its index held: exit %d\n%s%s", code, out, stderr)
	}
	lenientNode.stop()

	// A node serves strict's state under a looser policy, on the address
	// strict names: it is refused, and says why.
	looseNode := startServe(t, "--config", strictLoose)
	waitTrusted(strictLoose, aliceOnly)
	code, out, stderr = runVouch(t, "verdict", "--config", strict, aliceOnly)
	if code == 0 || strings.Contains(out, "trusted") || !strings.Contains(stderr, "under another policy") || !strings.Contains(stderr, "restart it with --config "+strict) {
		t.Fatalf("verdict --config strict from a node under another policy: exit %d\n%s%s", code, out, stderr)
	}
	if code, _, stderr := runVouch(t, "report", "--config", strict); code == 0 || !strings.Contains(stderr, "under another policy") {
		t.Fatalf("report --config strict from a node under another policy: exit %d\n%s", code, stderr)
	}
	if code, _, stderr := runVouch(t, "evidence", "--config", strict); code == 0 || !strings.Contains(stderr, "under another policy") {
		t.Fatalf("evidence --config strict from a node under another policy: exit %d\n%s", code, stderr)
	}
	looseNode.stop()

	// The node for strict itself answers, under strict's policy, and
	// serves its evidence while it holds the index.
	startServe(t, "--config", strict)
	splitView.Store(true)
	waitTrusted(strict, agreed)
	code, out, stderr = runVouch(t, "verdict", "--config", strict, aliceOnly)
	if code != 1 || !strings.Contains(out, "insufficient") || !strings.Contains(stderr, "in use by the node at "+listen) {
		t.Fatalf("verdict --config strict from its own node: exit %d (want 1, insufficient)\n%s%s", code, out, stderr)
	}
	if code, out, stderr := runVouch(t, "report", "--config", strict); code != 0 || !strings.Contains(out, "trusted") {
		t.Fatalf("report from strict's node: exit %d\n%s%s", code, out, stderr)
	}
	var listed string
	for deadline := time.Now().Add(30 * time.Second); ; {
		code, out, stderr := runVouch(t, "evidence", "--config", strict)
		if code != 0 {
			t.Fatalf("evidence while strict's node runs: exit %d\n%s%s", code, out, stderr)
		}
		if strings.Contains(out, "split-view") {
			listed = out
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node recorded no split view of carol's log:\n%s", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
	id := strings.Fields(listed)[0]
	file := filepath.Join(dir, "carol-split-view.json")
	if code, out, stderr := runVouch(t, "evidence", "export", "--config", strict, id, file); code != 0 {
		t.Fatalf("evidence export while the node runs: exit %d\n%s%s", code, out, stderr)
	}
	if code, out, stderr := runVouch(t, "evidence", "verify", file, carolKey); code != 0 || !strings.Contains(out, "split-view") {
		t.Fatalf("evidence verify of the exported split view: exit %d\n%s%s", code, out, stderr)
	}
}
