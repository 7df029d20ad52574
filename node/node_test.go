package node

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/internal/keytest"
	"github.com/vouch-dev/vouch/submit"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// runNode runs n until the test ends and returns its address.
func runNode(t *testing.T, n *Node) string {
	t.Helper()
	ready := make(chan string, 1)
	n.Ready = func(addr string) { ready <- addr }
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("node: %v", err)
		}
	})
	select {
	case addr := <-ready:
		return addr
	case err := <-done:
		t.Fatalf("node stopped: %v", err)
	case <-time.After(30 * time.Second):
		t.Fatal("node did not start")
	}
	return ""
}

// TestBuilderNodeSaysWhatItIs: GET / on a builder-only node names its log,
// origin and key and how to follow it; other paths stay 404.
func TestBuilderNodeSaysWhatItIs(t *testing.T) {
	state := t.TempDir()
	id, files := keytest.Identity(t, "", "alice-3f9a1c")
	cfg := &config.Config{State: state, Listen: "127.0.0.1:0", Key: files.Key, Store: t.TempDir()}
	cfg.Defaults()
	n, err := New(cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	addr := runNode(t, n)
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"builder", "http://" + addr + "/log/", id.VerifierKey, "alice-3f9a1c", "[[builder]]", "vouch log verify"} {
		if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), want) {
			t.Errorf("GET /: %d, want %q in:\n%s", resp.StatusCode, want, body)
		}
	}
	resp, err = http.Get("http://" + addr + "/nope")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /nope: %d, want 404", resp.StatusCode)
	}
}

// TestNixKeyNeedsBuildersAndAValidKey: a cache key on a node that follows
// nobody, or a key file that is not one, is refused at start.
func TestNixKeyNeedsBuildersAndAValidKey(t *testing.T) {
	dir := t.TempDir()
	_, files := keytest.Identity(t, dir, "cache")
	cfg := &config.Config{State: t.TempDir(), Listen: "127.0.0.1:0", NixKey: files.NixSecret}
	cfg.Defaults()
	if _, err := New(cfg, quiet()); err == nil || !strings.Contains(err.Error(), "no [[builder]]") {
		t.Errorf("nix-key without builders: %v", err)
	}
	garbage := filepath.Join(dir, "garbage.sec")
	os.WriteFile(garbage, []byte("not a key\n"), 0o600)
	cfg.NixKey = garbage
	cfg.Builders = []config.Builder{{Name: "alice", VKey: "alice+00000000+AAAA", Log: "http://127.0.0.1:1/log/"}}
	if _, err := New(cfg, quiet()); err == nil || !strings.Contains(err.Error(), "nix-key") {
		t.Errorf("a garbage nix-key: %v", err)
	}
}

// TestBuilderMetrics: a builder's /metrics counts its appends by outcome,
// their time to acknowledgement and its spool's depth.
func TestBuilderMetrics(t *testing.T) {
	state := t.TempDir()
	_, files := keytest.Identity(t, "", "bob-1a2b3c")
	cfg := &config.Config{State: state, Listen: "127.0.0.1:0", Key: files.Key, Store: t.TempDir()}
	cfg.Defaults()
	n, err := New(cfg, quiet())
	if err != nil {
		t.Fatal(err)
	}
	addr := runNode(t, n)
	c := submit.NewClient(cfg.Socket)
	cl := &claim.Claim{Kind: claim.KindOCI, Subject: "github.com/x/y@" + strings.Repeat("1", 40) + "#img?system=x86_64-linux", Digest: "sha256:" + strings.Repeat("a", 64)}
	ctx := context.Background()
	for range 2 { // logged, then a duplicate
		if _, _, err := c.Submit(ctx, cl); err != nil {
			t.Fatal(err)
		}
	}
	other := *cl
	other.Digest = "sha256:" + strings.Repeat("b", 64)
	if _, _, err := c.Submit(ctx, &other); err == nil {
		t.Fatal("a conflicting claim was accepted")
	}
	os.MkdirAll(SpoolDir(state), 0o700)
	os.WriteFile(filepath.Join(SpoolDir(state), "x.job"), []byte("{}"), 0o600)
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`vouch_builder_appends_total{outcome="logged"} 1`,
		`vouch_builder_appends_total{outcome="duplicate"} 1`,
		`vouch_builder_appends_total{outcome="conflict"} 1`,
		`vouch_builder_ack_seconds_count 2`,
		`vouch_builder_spool_jobs 1`,
		`vouch_build_info{`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
