package substituter

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/keys"
	"github.com/vouch-dev/vouch/narinfo"
	"github.com/vouch-dev/vouch/nixstore"
	"github.com/vouch-dev/vouch/verdict"
)

// caWorld is the world's floating content-addressed derivation, built by
// real Nix with a cache key, so that Nix itself signed its realisation.
type caWorld struct {
	src         string // the world's Nix expression, with tools/
	store       string
	cache       string // file:// binary cache holding the out path
	key         *keys.NixKey
	drv         string
	realisation []byte // one element of `nix realisation info --json`
	claim       *claim.Claim
	pathClaim   *claim.Claim // the nix claim about the same out path
}

var (
	caWorldOnce sync.Once
	theCAWorld  *caWorld
	caWorldErr  error
)

func getCAWorld(t *testing.T) *caWorld {
	t.Helper()
	getWorld(t) // skips without Nix; its directory is removed by TestMain
	caWorldOnce.Do(func() { theCAWorld, caWorldErr = buildCAWorld(theWorld.dir) })
	if caWorldErr != nil {
		t.Fatal(caWorldErr)
	}
	return theCAWorld
}

func buildCAWorld(parent string) (*caWorld, error) {
	dir, err := os.MkdirTemp(parent, "ca-")
	if err != nil {
		return nil, err
	}
	w := &caWorld{src: filepath.Join(dir, "world"), store: filepath.Join(dir, "store"), cache: filepath.Join(dir, "cache")}
	if err := os.MkdirAll(filepath.Join(w.src, "tools"), 0o755); err != nil {
		return nil, err
	}
	def, err := os.ReadFile("../e2e/testdata/world/default.nix")
	if err != nil {
		return nil, err
	}
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		return nil, err
	}
	os.WriteFile(filepath.Join(w.src, "default.nix"), def, 0o644)
	os.WriteFile(filepath.Join(w.src, "tools", "busybox"), bb, 0o755)
	os.Symlink("busybox", filepath.Join(w.src, "tools", "sh"))
	files, err := keys.Generate(dir, "vouch-ca-test-1")
	if err != nil {
		return nil, err
	}
	if w.key, err = keys.LoadNixKey(files.NixSecret); err != nil {
		return nil, err
	}
	out, err := run("nix-build", "--store", w.store, "--no-out-link", w.src, "-A", "ca",
		"--extra-experimental-features", "ca-derivations", "--option", "secret-key-files", files.NixSecret,
		"--option", "substituters", "")
	if err != nil {
		return nil, err
	}
	outPath := strings.TrimSpace(out)
	drv, err := run("nix-instantiate", "--store", w.store, w.src, "-A", "ca", "--extra-experimental-features", "ca-derivations")
	if err != nil {
		return nil, err
	}
	w.drv = strings.TrimSpace(drv)
	info, err := run("nix", "realisation", "info", "--json", "--store", w.store,
		"--extra-experimental-features", "nix-command ca-derivations", w.drv)
	if err != nil {
		return nil, err
	}
	var raw []json.RawMessage
	if err := json.Unmarshal([]byte(info), &raw); err != nil || len(raw) != 1 {
		return nil, fmt.Errorf("nix realisation info: %v\n%s", err, info)
	}
	w.realisation = raw[0]
	st := nixstore.Store{Root: w.store}
	rs, err := st.Realisations(context.Background(), w.drv)
	if err != nil {
		return nil, err
	}
	if len(rs) != 1 || rs[0].OutPath != outPath {
		return nil, fmt.Errorf("realisations %v, want one to %s", rs, outPath)
	}
	if w.claim, err = st.CAClaim(context.Background(), rs[0].ID, outPath); err != nil {
		return nil, err
	}
	if w.pathClaim, err = st.Claim(context.Background(), outPath); err != nil {
		return nil, err
	}
	if _, err := run("nix", "copy", "--extra-experimental-features", "nix-command", "--store", w.store,
		"--to", "file://"+w.cache+"?compression=xz", outPath); err != nil {
		return nil, err
	}
	return w, nil
}

// caDecider holds verdicts for nix-ca claims (by output id) and nix claims
// (by store path) that a test may change while the server runs.
type caDecider struct {
	mu  sync.Mutex
	nix map[string]verdict.Verdict
	ca  map[string]verdict.Verdict
}

func newCADecider() *caDecider {
	return &caDecider{nix: map[string]verdict.Verdict{}, ca: map[string]verdict.Verdict{}}
}

func (d *caDecider) PathByHash(h string) (string, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for p := range d.nix {
		if claim.HashPart(p) == h {
			return p, true
		}
	}
	return "", false
}

func (d *caDecider) Decide(kind claim.Kind, subject string) (verdict.Verdict, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	m := d.nix
	if kind == claim.KindNixCA {
		m = d.ca
	}
	if v, ok := m[subject]; ok {
		return v, nil
	}
	return verdict.Verdict{Kind: kind, Subject: subject, Outcome: verdict.Insufficient, Reason: "no builder has a claim about it"}, nil
}

func (d *caDecider) set(c *claim.Claim, outcome verdict.Outcome) {
	d.mu.Lock()
	defer d.mu.Unlock()
	v := verdict.Verdict{Kind: c.Kind, Subject: c.Subject, Outcome: outcome, Reason: "test verdict " + string(outcome)}
	if outcome == verdict.Trusted {
		v.Value = c
	}
	if c.Kind == claim.KindNixCA {
		d.ca[c.Subject] = v
	} else {
		d.nix[c.Subject] = v
	}
}

func realisationURL(base, id string) string { return base + "/realisations/" + id + ".doi" }

// The node's realisation is, byte for byte, the one Nix wrote and signed
// with the same key: same JSON, same fingerprint, same (deterministic)
// Ed25519 signature.
func TestRealisationIsWhatNixWrites(t *testing.T) {
	w := getCAWorld(t)
	d := newCADecider()
	d.set(w.claim, verdict.Trusted)
	_, n := node(t, d, w.key, Limits{})
	code, hdr, body, err := get(t, realisationURL(n.URL, w.claim.Subject))
	if err != nil || code != 200 || hdr.Get("Content-Type") != "application/json" {
		t.Fatalf("realisation: %d %v %q\n%s", code, err, hdr.Get("Content-Type"), body)
	}
	if !bytes.Equal(body, w.realisation) {
		t.Fatalf("served realisation differs from Nix's own:\nserved: %s\nnix:    %s", body, w.realisation)
	}
	_, pub, _ := keys.ParseNixPublicKey(w.key.PublicKey())
	rl := Realisation{ID: w.claim.Subject, OutPath: w.claim.OutPath}
	var doc struct {
		Signatures []string `json:"signatures"`
	}
	if err := json.Unmarshal(body, &doc); err != nil || len(doc.Signatures) != 1 || !verifySig(pub, doc.Signatures[0], rl.Fingerprint()) {
		t.Fatalf("signatures %v (%v) do not verify over %s", doc.Signatures, err, rl.Fingerprint())
	}
}

func TestRealisationOnlyWhenAgreed(t *testing.T) {
	w := getCAWorld(t)
	d := newCADecider()
	s, n := node(t, d, w.key, Limits{})
	id := w.claim.Subject
	refused := func(url, code string) {
		t.Helper()
		st, hdr, body, err := get(t, url)
		if err != nil || st != 404 || hdr.Get("X-Vouch-Refusal") != code {
			t.Errorf("%s: %d %q %v %s, want 404 %s", url, st, hdr.Get("X-Vouch-Refusal"), err, body, code)
		}
	}
	refused(realisationURL(n.URL, id), "insufficient")
	d.set(w.claim, verdict.Conflict)
	refused(realisationURL(n.URL, id), "conflict")
	// A trusted verdict whose value is about another id is not served.
	other := *w.claim
	other.Subject = "sha256:" + strings.Repeat("0", 64) + "!out"
	d.mu.Lock()
	d.ca[id] = verdict.Verdict{Kind: claim.KindNixCA, Subject: id, Outcome: verdict.Trusted, Value: &other}
	d.mu.Unlock()
	refused(realisationURL(n.URL, id), "bad-value")
	for _, bad := range []string{
		"sha256:" + strings.Repeat("A", 64) + "!out",    // upper-case hex
		"sha256:" + strings.Repeat("0", 63) + "!out",    // short
		"md5:" + strings.Repeat("0", 32) + "!out",       // other algorithm
		"sha256:" + strings.Repeat("0", 64),             // no output
		"sha256:" + strings.Repeat("0", 64) + "!a%20b",  // space in the output name
		"sha256:" + strings.Repeat("0", 64) + "!a/b/..", // slashes
	} {
		refused(realisationURL(n.URL, bad), "bad-id")
	}

	d.set(w.claim, verdict.Trusted)
	st, _, body, err := get(t, realisationURL(n.URL, id))
	if err != nil || st != 200 || !bytes.Equal(body, w.realisation) {
		t.Fatalf("agreed realisation: %d %v\n%s", st, err, body)
	}
	resp, err := http.Head(realisationURL(n.URL, id))
	if err != nil || resp.StatusCode != 200 || resp.ContentLength != int64(len(body)) {
		t.Fatalf("HEAD: %v %v", resp, err)
	}
	resp, err = http.Post(realisationURL(n.URL, id), "application/json", strings.NewReader("{}"))
	if err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("POST: %v %v", resp, err)
	}
	for outcome, want := range map[string]float64{"trusted": 2, "insufficient": 1, "conflict": 1, "bad-value": 1, "bad-id": 6} {
		if got := testutil.ToFloat64(s.metrics.realisations.WithLabelValues(outcome)); got != want {
			t.Errorf("realisation verdicts %s = %v, want %v", outcome, got, want)
		}
	}
}

// Without an agreed nix claim about the out path, and without an upstream
// narinfo whose CA field certifies it (the node's own store and peers have
// none), its narinfo rests on the agreed realisation, and only while that
// agreement lasts.
func TestOutPathOfAgreedRealisation(t *testing.T) {
	w := getCAWorld(t)
	d := newCADecider()
	d.set(w.claim, verdict.Trusted)
	s, err := New(Options{Decider: d, Key: w.key, Store: w.store, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	n := httptest.NewServer(s)
	defer n.Close()
	narinfoURL := n.URL + "/" + claim.HashPart(w.claim.OutPath) + ".narinfo"
	if st, hdr, _, _ := get(t, narinfoURL); st != 404 || hdr.Get("X-Vouch-Refusal") != "unknown-path" {
		t.Fatalf("narinfo before any realisation named the path: %d %q", st, hdr.Get("X-Vouch-Refusal"))
	}
	if st, _, body, _ := get(t, realisationURL(n.URL, w.claim.Subject)); st != 200 {
		t.Fatalf("realisation: %d %s", st, body)
	}
	st, _, body, _ := get(t, narinfoURL)
	if st != 200 {
		t.Fatalf("narinfo of the realised path: %d %s", st, body)
	}
	ni, err := narinfo.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	c := w.claim
	if ni.StorePath != c.OutPath || ni.NarHash != c.NarHash || ni.NarSize != c.NarSize || ni.CA != "fixed:r:"+c.NarHash {
		t.Errorf("narinfo differs from the agreed nix-ca claim:\n%s", body)
	}
	_, pub, _ := keys.ParseNixPublicKey(w.key.PublicKey())
	if len(ni.Sigs) != 1 || !verifySig(pub, ni.Sigs[0], ni.Fingerprint()) {
		t.Errorf("narinfo signature %v does not verify", ni.Sigs)
	}
	if st, nar, err := narOf(t, n.URL, w.pathClaim); err != nil || st != 200 || narHashOf(nar) != c.NarHash {
		t.Errorf("NAR of the realised path: %d %v", st, err)
	}
	// The agreement is gone: so is the narinfo.
	d.set(w.claim, verdict.Insufficient)
	if st, hdr, _, _ := get(t, narinfoURL); st != 404 || hdr.Get("X-Vouch-Refusal") != "unknown-path" {
		t.Fatalf("narinfo after the realisation lost its quorum: %d %q", st, hdr.Get("X-Vouch-Refusal"))
	}
}

// Stock Nix, with ca-derivations and --max-jobs 0, realises the floating
// CA derivation through the node only when the quorum agrees on its
// realisation — even though the out path's own nix claim is agreed.
func TestNixSubstitutesCAOutputOnlyWithAgreedRealisation(t *testing.T) {
	w := getCAWorld(t)
	d := newCADecider()
	d.set(w.pathClaim, verdict.Trusted) // the out path alone is agreed
	_, n := node(t, d, w.key, Limits{}, cacheServer(t, w.cache).URL)
	build := func(nix *nixClient) (string, error) {
		return nix.run("nix-build", w.src, "-A", "ca", "--no-out-link", "--max-jobs", "0",
			"--extra-experimental-features", "ca-derivations")
	}

	refused := newNixClient(t, n.URL, w.key.PublicKey())
	if out, err := build(refused); err == nil {
		t.Fatalf("Nix realised the CA derivation without an agreed realisation:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(refused.store, w.claim.OutPath)); err == nil {
		t.Fatalf("the out path reached the client store without an agreed realisation")
	}

	d.set(w.claim, verdict.Trusted)
	agreed := newNixClient(t, n.URL, w.key.PublicKey())
	out, err := build(agreed)
	if err != nil {
		t.Fatalf("nix-build -A ca through the node: %v\n%s", err, out)
	}
	if !strings.Contains(out, w.claim.OutPath) {
		t.Fatalf("nix-build printed %q, want %s", out, w.claim.OutPath)
	}
	got, err := os.ReadFile(filepath.Join(agreed.store, w.claim.OutPath, "data"))
	if err != nil || string(got) != "content-addressed\n" {
		t.Fatalf("client store holds %q (%v)", got, err)
	}
	// The client recorded the realisation it substituted.
	info, err := agreed.run("nix", "realisation", "info", "--json", "--extra-experimental-features", "ca-derivations", w.drv)
	if err != nil || !strings.Contains(info, `"outPath":"`+strings.TrimPrefix(w.claim.OutPath, "/nix/store/")+`"`) {
		t.Fatalf("nix realisation info in the client store: %v\n%s", err, info)
	}
}

func TestParseOutputID(t *testing.T) {
	hex := strings.Repeat("0123456789abcdef", 4)
	for id, ok := range map[string]bool{
		"sha256:" + hex + "!out":      true,
		"sha256:" + hex + "!dev":      true,
		"sha256:" + hex + "!a-b.c_d+": true,
		"sha256:" + hex:               false,
		"sha256:" + hex + "!":         false,
		"sha256:" + hex + "!a!b":      false,
		"sha256:" + hex[:63] + "!out": false,
		"sha512:" + hex + "!out":      false,
		strings.ToUpper(hex) + "!out": false,
		"":                            false,
	} {
		if _, _, err := ParseOutputID(id); (err == nil) != ok {
			t.Errorf("ParseOutputID(%q) = %v, want ok=%v", id, err, ok)
		}
	}
}

func FuzzParseOutputID(f *testing.F) {
	f.Add("sha256:56bb5a583e71d4a99bf0a84310f3215af9025a47081a4c0001b0c9d91b193f00!out")
	f.Add("sha256:!")
	f.Add("sha256:56bb5a583e71d4a99bf0a84310f3215af9025a47081a4c0001b0c9d91b193f00!\"out\\")
	f.Fuzz(func(t *testing.T, id string) {
		drvHash, output, err := ParseOutputID(id)
		if err != nil {
			return
		}
		if drvHash+"!"+output != id {
			t.Fatalf("%q split into %q and %q", id, drvHash, output)
		}
		// An accepted id must render as a JSON string without escapes, or
		// the fingerprint would depend on the JSON encoder.
		rl := Realisation{ID: id, OutPath: "/nix/store/zsx9dpncqx2q3q2anbkgxwksjyb80sbm-ca"}
		if !strings.Contains(rl.Fingerprint(), `"id":"`+id+`"`) {
			t.Fatalf("%q is escaped in %s", id, rl.Fingerprint())
		}
		var doc map[string]any
		if err := json.Unmarshal(rl.Marshal(), &doc); err != nil || doc["id"] != id {
			t.Fatalf("Marshal of %q is not JSON with that id: %v", id, err)
		}
	})
}

func BenchmarkRealisation(b *testing.B) {
	id := "sha256:56bb5a583e71d4a99bf0a84310f3215af9025a47081a4c0001b0c9d91b193f00!out"
	c := &claim.Claim{Kind: claim.KindNixCA, Subject: id, OutPath: "/nix/store/zsx9dpncqx2q3q2anbkgxwksjyb80sbm-ca",
		NarHash: "sha256:0qnfgqc4y8canbyv0f22qn6jhhbh368b7cvxfrgs765v8jnfz3q1", NarSize: 304}
	d := newCADecider()
	d.set(c, verdict.Trusted)
	_, n := node(b, d, nixKey(b), Limits{})
	url := realisationURL(n.URL, id)
	client := &http.Client{}
	b.ResetTimer()
	for b.Loop() {
		resp, err := client.Get(url)
		if err != nil || resp.StatusCode != 200 {
			b.Fatal(resp, err)
		}
		var buf [512]byte
		for {
			if _, err := resp.Body.Read(buf[:]); err != nil {
				break
			}
		}
		resp.Body.Close()
	}
}
