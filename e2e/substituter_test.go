package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestStockNixSubstitutesOnlyAgreedPaths: a node following the four
// builders, with the builders' own stores as its only NAR upstreams, is the
// only substituter of a fresh client store that trusts only the node's key.
// Nix gets every agreed path (for tamperme: the three honest builders'
// bytes, never b4's) and nothing else.
func TestStockNixSubstitutesOnlyAgreedPaths(t *testing.T) {
	w := buildWorld4(t)
	keyDir := t.TempDir()
	if out, code := vouch(t, "keygen", "--name", "cache", "--dir", keyDir); code != 0 {
		t.Fatal(out)
	}
	var ups strings.Builder
	for _, d := range w.builders {
		fmt.Fprintf(&ups, "[[upstream]]\nurl = %q\ntimeout = \"30s\"\n", "http://"+d.Addr+"/peer")
	}
	state := t.TempDir()
	cfg := w.followerConfig(t, state, []string{"org1", "org1", "org2", "org3"},
		"min = 3\nmin-operators = 2\non-conflict = \"majority\"\n"+ups.String(), fmt.Sprintf("nix-key = %q\n[nar-cache]\nmax-size = \"64MiB\"", filepath.Join(keyDir, "cache.nix.sec")))
	node := startDaemon(t, state, "", "--config", cfg)
	base := "http://" + node.Addr
	pub, _ := os.ReadFile(filepath.Join(keyDir, "cache.nix.pub"))

	// Wait until the follower has synced enough to trust a.
	narinfo := func(p string) (int, string) {
		hash := p[len("/nix/store/") : len("/nix/store/")+32]
		resp, err := httpClient.Get(base + "/" + hash + ".narinfo")
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		return resp.StatusCode, readAll(resp.Body)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		if st, _ := narinfo(w.paths["c"]); st == 200 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the node never served c's narinfo:\n%s", node.output.String())
		}
		time.Sleep(200 * time.Millisecond)
	}
	if st, body := narinfo(w.paths["noise"]); st != 404 {
		t.Fatalf("noise (non-reproducible) narinfo: %d\n%s", st, body)
	}

	client := t.TempDir()
	nixOpts := []string{"--option", "substituters", base, "--option", "trusted-public-keys", strings.TrimSpace(string(pub)),
		"--option", "narinfo-cache-negative-ttl", "0", "--option", "narinfo-cache-positive-ttl", "0"}
	realise := func(p string) (string, error) {
		args := append([]string{"--store", client, "-r", p}, nixOpts...)
		out, err := exec.Command("nix-store", args...).CombinedOutput()
		return string(out), err
	}
	agreed := []string{"c", "multi", "multi-dev", "ca", "tamperme"} // c pulls in b and a
	for _, attr := range agreed {
		if out, err := realise(w.paths[attr]); err != nil {
			t.Fatalf("nix-store -r %s through vouch: %v\n%s\nnode log:\n%s", attr, err, out, node.output.String())
		}
	}
	got, err := os.ReadFile(filepath.Join(client, w.paths["tamperme"], "file"))
	if err != nil || string(got) != "original\n" {
		t.Fatalf("tamperme in the client store holds %q (%v), want the honest builders' bytes", got, err)
	}
	if out, err := realise(w.paths["noise"]); err == nil {
		t.Fatalf("Nix substituted the non-reproducible path:\n%s", out)
	}

	// Everything substituted carries a valid signature of the node's key.
	var all []string
	for _, attr := range []string{"a", "b", "c", "multi", "multi-dev", "ca", "tamperme"} {
		all = append(all, w.paths[attr])
	}
	args := append([]string{"store", "verify", "--extra-experimental-features", "nix-command", "--store", client, "--sigs-needed", "1"}, nixOpts...)
	args = append(args, all...)
	if out, err := exec.Command("nix", args...).CombinedOutput(); err != nil {
		t.Fatalf("nix store verify --sigs-needed 1: %v\n%s", err, out)
	}

	// A second fresh client gets the same paths from the node's NAR cache,
	// without the node going back to the builders.
	client = t.TempDir()
	for _, attr := range agreed {
		if out, err := realise(w.paths[attr]); err != nil {
			t.Fatalf("second client, nix-store -r %s: %v\n%s", attr, err, out)
		}
	}
	cached, err := os.ReadDir(filepath.Join(state, "nar-cache"))
	if err != nil || len(cached) == 0 {
		t.Fatalf("the node's NAR cache is empty (%v)", err)
	}
	m, err := httpGet(base + "/metrics")
	if err != nil || !strings.Contains(string(m), `vouch_substituter_nar_cache_total{result="hit"}`) {
		t.Errorf("metrics show no NAR cache hits (%v):\n%s", err, m)
	}
}
