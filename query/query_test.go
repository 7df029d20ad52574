package query

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/follow"
	"github.com/vouch-dev/vouch/verdict"
)

// testConfig writes a one-builder config with its state under dir.
func testConfig(t *testing.T, dir, state string) *config.Config {
	t.Helper()
	_, vkey, err := note.GenerateKey(rand.Reader, "alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, state), 0o700); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, state+".toml")
	text := fmt.Sprintf("state = %q\n[[builder]]\nname = \"alice\"\nvkey = %q\nlog = \"http://127.0.0.1:9/log/\"\n", filepath.Join(dir, state), vkey)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := config.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// serveNode serves Routes for cfg's index the way a node does and
// records it in cfg's state directory.
func serveNode(t *testing.T, cfg *config.Config) (*NodeInfo, *httptest.Server) {
	t.Helper()
	idx, err := follow.OpenIndex(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idx.Close() })
	policy, err := verdict.NewPolicy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	info, err := NewNodeInfo(cfg)
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	Routes(mux, info, policy, idx)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	info.Listen = strings.TrimPrefix(srv.URL, "http://")
	if _, err := WriteNodeFile(cfg.State, info); err != nil {
		t.Fatal(err)
	}
	return info, srv
}

const subject = "/nix/store/0c6kzph7l0dcbfmjap64f0czdafn3b7x-hello"

func TestOpenAsksOnlyTheRecordedNode(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, "state")
	if _, err := Open(cfg); !errors.Is(err, ErrNoIndex) {
		t.Fatalf("Open without an index: %v, want ErrNoIndex", err)
	}

	// The node for this state answers while it holds the index.
	info, srv := serveNode(t, cfg)
	src, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(src.Origin(), info.Listen) {
		t.Errorf("origin %q does not name the node", src.Origin())
	}
	if v, err := src.Verdict(claim.KindNix, subject); err != nil || v.Outcome != verdict.Insufficient {
		t.Errorf("verdict from the node: %+v %v", v, err)
	}
	if evs, err := src.Evidence(); err != nil || len(evs) != 0 {
		t.Errorf("evidence from the node: %v %v", evs, err)
	}
	srv.Close() // the node is gone; its index stays held (by this test)

	// Another node, for another state directory under the same policy,
	// now listens where node.json points: its answers carry no valid proof.
	other := *cfg
	other.State = filepath.Join(dir, "other")
	if err := os.MkdirAll(other.State, 0o700); err != nil {
		t.Fatal(err)
	}
	_, otherSrv := serveNode(t, &other)
	stale := *info
	stale.Listen = strings.TrimPrefix(otherSrv.URL, "http://")
	if _, err := WriteNodeFile(cfg.State, &stale); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), "does not prove") {
		t.Fatalf("Open with another state's node at the recorded address: %v", err)
	}

	// A node.json under another policy is refused before anything is asked.
	looser := stale
	looser.Policy = "sha256:00"
	if _, err := WriteNodeFile(cfg.State, &looser); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(cfg); err == nil || !strings.Contains(err.Error(), "under another policy") {
		t.Fatalf("Open with a node under another policy: %v", err)
	}
}

func TestOpenReadsTheIndexWhenTheRecordedNodeIsGone(t *testing.T) {
	dir := t.TempDir()
	cfg := testConfig(t, dir, "state")
	idx, err := follow.OpenIndex(cfg)
	if err != nil {
		t.Fatal(err)
	}
	idx.Close()
	// A node.json left behind by a node killed with SIGKILL.
	info, err := NewNodeInfo(cfg)
	if err != nil {
		t.Fatal(err)
	}
	info.Listen = "127.0.0.1:1"
	if _, err := WriteNodeFile(cfg.State, info); err != nil {
		t.Fatal(err)
	}
	src, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	if src.Origin() != "" {
		t.Errorf("origin %q, want the index itself", src.Origin())
	}
}
