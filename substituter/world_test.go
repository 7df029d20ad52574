package substituter

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/keys"
	"github.com/vouch-dev/vouch/narinfo"
	"github.com/vouch-dev/vouch/nixstore"
	"github.com/vouch-dev/vouch/verdict"
)

// world is the busybox test world built once with real Nix and copied with
// `nix copy --to file://` into one binary cache per compression.
type world struct {
	dir    string            // everything lives under here
	store  string            // chroot store the world was built in
	paths  map[string]string // attribute → store path
	claims map[string]*claim.Claim
	caches map[string]string // compression → cache directory
	ca     map[string]string // "tools", "text" → self-certifying store paths
}

var (
	worldOnce sync.Once
	theWorld  *world
	worldErr  error
)

func TestMain(m *testing.M) {
	code := m.Run()
	if theWorld != nil {
		// Store directories are read-only; make them removable.
		filepath.WalkDir(theWorld.dir, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
		os.RemoveAll(theWorld.dir)
	}
	os.Exit(code)
}

// getWorld builds the world on first use. Tests that need Nix call it.
func getWorld(t testing.TB) *world {
	t.Helper()
	for _, tool := range []string{"nix-build", "nix", "nix-store"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not on PATH; these tests use real Nix", tool)
		}
	}
	worldOnce.Do(func() { theWorld, worldErr = buildWorld() })
	if worldErr != nil {
		t.Fatal(worldErr)
	}
	return theWorld
}

func run(name string, args ...string) (string, error) {
	cmd := exec.Command(name, args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

func buildWorld() (*world, error) {
	dir, err := os.MkdirTemp("", "vouch-substituter-test-")
	if err != nil {
		return nil, err
	}
	w := &world{dir: dir, store: filepath.Join(dir, "store"), paths: map[string]string{},
		claims: map[string]*claim.Claim{}, caches: map[string]string{}, ca: map[string]string{}}
	src := filepath.Join(dir, "world")
	if err := os.MkdirAll(filepath.Join(src, "tools"), 0o755); err != nil {
		return nil, err
	}
	def, err := os.ReadFile("../e2e/testdata/world/default.nix")
	if err != nil {
		return nil, err
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return nil, fmt.Errorf("busybox-static is needed: %w", err)
	}
	os.WriteFile(filepath.Join(src, "default.nix"), def, 0o644)
	os.WriteFile(filepath.Join(src, "tools", "busybox"), bb, 0o755)
	os.Symlink("busybox", filepath.Join(src, "tools", "sh"))

	attrs := []string{"a", "b", "c", "multi", "multi.dev", "noise", "tamperme"}
	args := []string{"--store", w.store, "--no-out-link", src}
	for _, a := range attrs {
		args = append(args, "-A", a)
	}
	out, err := run("nix-build", args...)
	if err != nil {
		return nil, err
	}
	lines := strings.Fields(out)
	names := []string{"a", "b", "c", "multi", "multi-dev", "noise", "tamperme"}
	if len(lines) != len(names) {
		return nil, fmt.Errorf("nix-build printed %d paths, want %d: %v", len(lines), len(names), lines)
	}
	for i, n := range names {
		w.paths[n] = lines[i]
	}
	big, err := run("nix-build", "--store", w.store, "--no-out-link", "testdata/big.nix", "--arg", "world", src)
	if err != nil {
		return nil, err
	}
	w.paths["big"] = strings.TrimSpace(big)
	tools, err := run("nix-instantiate", "--store", w.store, "--eval", "--read-write-mode", "-E",
		fmt.Sprintf(`builtins.path { name = "busybox-tools"; path = %s/tools; }`, src))
	if err != nil {
		return nil, err
	}
	w.ca["tools"] = strings.Trim(strings.TrimSpace(tools), `"`)
	text, err := run("nix-instantiate", "--store", w.store, "--eval", "--read-write-mode", "-E",
		`builtins.toFile "greeting.txt" "hello, self-certified\n"`)
	if err != nil {
		return nil, err
	}
	w.ca["text"] = strings.Trim(strings.TrimSpace(text), `"`)

	st := nixstore.Store{Root: w.store}
	for n, p := range w.paths {
		c, err := st.Claim(context.Background(), p)
		if err != nil {
			return nil, err
		}
		w.claims[n] = c
	}
	all := []string{}
	for _, p := range w.paths {
		all = append(all, p)
	}
	all = append(all, w.ca["tools"], w.ca["text"])
	for _, comp := range []string{"xz", "zstd", "bzip2", "none"} {
		cache := filepath.Join(dir, "cache-"+comp)
		w.caches[comp] = cache
		args := append([]string{"copy", "--extra-experimental-features", "nix-command", "--store", w.store,
			"--to", "file://" + cache + "?compression=" + comp}, all...)
		if _, err := run("nix", args...); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// mapDecider is a Decider over fixed verdicts: the seam the follower's index
// fills in production.
type mapDecider struct {
	byHash   map[string]string
	verdicts map[string]verdict.Verdict
}

func (d *mapDecider) PathByHash(h string) (string, bool) {
	p, ok := d.byHash[h]
	return p, ok
}

func (d *mapDecider) Decide(kind claim.Kind, subject string) (verdict.Verdict, error) {
	if kind != claim.KindNix {
		return verdict.Verdict{}, fmt.Errorf("unexpected kind %s", kind)
	}
	v, ok := d.verdicts[subject]
	if !ok {
		return verdict.Verdict{Kind: kind, Subject: subject, Outcome: verdict.Insufficient, Reason: "no claims"}, nil
	}
	return v, nil
}

// decider trusts the named attributes, finds noise insufficient (one
// builder) and tamperme in conflict.
func (w *world) decider(trusted ...string) *mapDecider {
	d := &mapDecider{byHash: map[string]string{}, verdicts: map[string]verdict.Verdict{}}
	for n, p := range w.paths {
		d.byHash[claim.HashPart(p)] = p
		v := verdict.Verdict{Kind: claim.KindNix, Subject: p, Outcome: verdict.Insufficient, Reason: "1 of 3 builders agree; 2 needed"}
		if n == "tamperme" {
			v.Outcome, v.Reason = verdict.Conflict, "builders disagree on the output"
		}
		d.verdicts[p] = v
	}
	for _, n := range trusted {
		p := w.paths[n]
		d.verdicts[p] = verdict.Verdict{Kind: claim.KindNix, Subject: p, Outcome: verdict.Trusted, Value: w.claims[n], Reason: "3 of 3 agree"}
	}
	return d
}

// nixKey makes a fresh Nix cache key and returns it with its public half.
func nixKey(t testing.TB) *keys.NixKey {
	t.Helper()
	f, err := keys.Generate(t.TempDir(), "vouch-test-1")
	if err != nil {
		t.Fatal(err)
	}
	k, err := keys.LoadNixKey(f.NixSecret)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// cacheServer serves a `nix copy --to file://` directory over HTTP.
func cacheServer(t testing.TB, dir string) *httptest.Server {
	srv := httptest.NewServer(http.FileServer(http.Dir(dir)))
	t.Cleanup(srv.Close)
	return srv
}

// upstreamNarinfo reads what nix copy wrote for a path in a cache.
func upstreamNarinfo(t testing.TB, cache, storePath string) *narinfo.NarInfo {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(cache, claim.HashPart(storePath)+".narinfo"))
	if err != nil {
		t.Fatal(err)
	}
	ni, err := narinfo.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return ni
}

// pathInfo is what `nix path-info --json` reports about a path in a store.
type pathInfo struct {
	Path       string   `json:"path"`
	NarHash    string   `json:"narHash"`
	NarSize    uint64   `json:"narSize"`
	References []string `json:"references"`
	Signatures []string `json:"signatures"`
	CA         string   `json:"ca"`
}

func nixPathInfo(t testing.TB, store string, paths ...string) map[string]pathInfo {
	t.Helper()
	args := append([]string{"path-info", "--extra-experimental-features", "nix-command", "--json", "--store", store}, paths...)
	out, err := run("nix", args...)
	if err != nil {
		t.Fatal(err)
	}
	var infos []pathInfo
	if err := json.Unmarshal([]byte(out), &infos); err != nil {
		t.Fatal(err)
	}
	m := map[string]pathInfo{}
	for _, i := range infos {
		m[i.Path] = i
	}
	return m
}
