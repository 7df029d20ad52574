package substituter

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nix-community/go-nix/pkg/nixbase32"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/keys"
	"github.com/vouch-dev/vouch/narinfo"
)

// node starts a substituter on 127.0.0.1 with the given upstream URLs.
func node(t testing.TB, d Decider, key *keys.NixKey, limits Limits, upstreams ...string) (*Server, *httptest.Server) {
	t.Helper()
	var ups []config.Upstream
	for _, u := range upstreams {
		ups = append(ups, config.Upstream{URL: u, Timeout: config.Duration{Duration: 20 * time.Second}})
	}
	s, err := New(Options{Decider: d, Key: key, Upstreams: ups, Limits: limits, Logger: slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return s, hs
}

// nixClient runs stock Nix against a fresh chroot store whose only
// substituter is url and which trusts only pub.
type nixClient struct {
	t     testing.TB
	store string
	url   string
	pub   string
	cache string
}

func newNixClient(t testing.TB, url, pub string) *nixClient {
	store := t.TempDir()
	t.Cleanup(func() {
		filepath.WalkDir(store, func(p string, d fs.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				os.Chmod(p, 0o755)
			}
			return nil
		})
	})
	return &nixClient{t: t, store: store, url: url, pub: pub, cache: t.TempDir()}
}

func (c *nixClient) run(name string, args ...string) (string, error) {
	args = append(args,
		"--store", c.store,
		"--option", "substituters", c.url,
		"--option", "trusted-public-keys", c.pub,
		"--option", "narinfo-cache-negative-ttl", "0",
		"--option", "narinfo-cache-positive-ttl", "0",
		"--option", "connect-timeout", "5",
	)
	if name == "nix" {
		args = append([]string{"--extra-experimental-features", "nix-command"}, args...)
	}
	cmd := exec.Command(name, args...)
	// A private narinfo cache: Nix remembers answers across runs otherwise.
	cmd.Env = append(os.Environ(), "XDG_CACHE_HOME="+c.cache, "HOME="+c.cache)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestNixSubstitutesOnlyAgreedPaths(t *testing.T) {
	w := getWorld(t)
	key := nixKey(t)
	up := cacheServer(t, w.caches["xz"])
	_, n := node(t, w.decider("a", "b", "c", "multi", "multi-dev", "big"), key, Limits{}, up.URL)
	nix := newNixClient(t, n.URL, key.PublicKey())

	// nix copy --from the node fetches a whole agreed closure.
	if out, err := nix.run("nix", "copy", "--from", n.URL, w.paths["c"]); err != nil {
		t.Fatalf("nix copy of an agreed closure failed: %v\n%s", err, out)
	}
	// nix-store -r with the node as the only substituter.
	for _, a := range []string{"multi", "multi-dev", "big"} {
		if out, err := nix.run("nix-store", "-r", w.paths[a]); err != nil {
			t.Fatalf("nix-store -r %s failed: %v\n%s", a, err, out)
		}
	}
	// What Nix stored is exactly what was agreed, and signed by the node.
	infos := nixPathInfo(t, nix.store, w.paths["a"], w.paths["b"], w.paths["c"], w.paths["big"])
	for _, a := range []string{"a", "b", "c", "big"} {
		got, c := infos[w.paths[a]], w.claims[a]
		h, _ := narinfo.NormaliseNarHash(got.NarHash)
		if h != c.NarHash || got.NarSize != c.NarSize {
			t.Errorf("%s: client has %s %d, agreed %s %d", a, h, got.NarSize, c.NarHash, c.NarSize)
		}
		if len(got.Signatures) != 1 || !strings.HasPrefix(got.Signatures[0], "vouch-test-1:") {
			t.Errorf("%s: signatures %v, want the node's", a, got.Signatures)
		}
	}
	if out, err := nix.run("nix", "store", "verify", "--sigs-needed", "1", "-r", w.paths["c"], w.paths["big"]); err != nil {
		t.Fatalf("nix store verify --sigs-needed 1: %v\n%s", err, out)
	}
	// Against the node itself, too.
	if out, err := nix.run("nix", "store", "verify", "--store", n.URL, "--sigs-needed", "1", w.paths["c"]); err != nil {
		t.Fatalf("nix store verify against the node: %v\n%s", err, out)
	}

	// Not agreed: insufficient (noise) and in conflict (tamperme).
	for _, a := range []string{"noise", "tamperme"} {
		out, err := nix.run("nix-store", "-r", w.paths[a])
		if err == nil {
			t.Errorf("nix-store -r %s succeeded without a quorum", a)
		}
		if !strings.Contains(out, "don't know how to build") {
			t.Errorf("nix-store -r %s: want Nix to report the path missing, got:\n%s", a, out)
		}
		if out, err := nix.run("nix", "copy", "--from", n.URL, w.paths[a]); err == nil {
			t.Errorf("nix copy %s succeeded without a quorum:\n%s", a, out)
		}
	}
}

func get(t testing.TB, url string) (int, http.Header, []byte, error) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		// A node that cuts a bad stream before its headers went out
		// leaves the client with a transport error: nothing arrived.
		return 0, nil, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, b, err
}

func TestNarinfoIsBuiltFromTheAgreementOnly(t *testing.T) {
	w := getWorld(t)
	key := nixKey(t)
	up := cacheServer(t, w.caches["xz"])
	_, n := node(t, w.decider("b"), key, Limits{}, up.URL)
	code, hdr, body, _ := get(t, n.URL+"/"+claim.HashPart(w.paths["b"])+".narinfo")
	if code != 200 || hdr.Get("Content-Type") != "text/x-nix-narinfo" {
		t.Fatalf("narinfo: %d %s", code, hdr.Get("Content-Type"))
	}
	ni, err := narinfo.Parse(body)
	if err != nil {
		t.Fatal(err)
	}
	c := w.claims["b"]
	if ni.StorePath != c.Subject || ni.NarHash != c.NarHash || ni.NarSize != c.NarSize ||
		strings.Join(ni.References, " ") != strings.Join(c.References, " ") || ni.Compression != "none" || ni.Deriver != "" {
		t.Errorf("narinfo differs from the agreed claim:\n%s", body)
	}
	_, pub, _ := keys.ParseNixPublicKey(key.PublicKey())
	if len(ni.Sigs) != 1 || !verifySig(pub, ni.Sigs[0], ni.Fingerprint()) {
		t.Errorf("signature %v does not verify", ni.Sigs)
	}
	// HEAD answers the same without a body.
	resp, err := http.Head(n.URL + "/" + claim.HashPart(w.paths["b"]) + ".narinfo")
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("HEAD: %v %v", resp, err)
	}
	for name, p := range map[string]string{
		"insufficient": "/" + claim.HashPart(w.paths["noise"]) + ".narinfo",
		"conflict":     "/" + claim.HashPart(w.paths["tamperme"]) + ".narinfo",
		"unknown-path": "/00000000000000000000000000000000.narinfo",
		"bad-hash":     "/short.narinfo",
		"not-found":    "/x/y.narinfo",
	} {
		code, hdr, body, _ := get(t, n.URL+p)
		if code != 404 || hdr.Get("X-Vouch-Refusal") != name {
			t.Errorf("%s: %d %q %s", p, code, hdr.Get("X-Vouch-Refusal"), body)
		}
	}
	code, _, body, _ = get(t, n.URL+"/nix-cache-info")
	if code != 200 || string(body) != "StoreDir: /nix/store\nWantMassQuery: 1\nPriority: 40\n" {
		t.Errorf("nix-cache-info: %d %q", code, body)
	}
}

func verifySig(pub ed25519.PublicKey, sig, fingerprint string) bool {
	_, enc, _ := strings.Cut(sig, ":")
	raw, err := base64.StdEncoding.DecodeString(enc)
	return err == nil && ed25519.Verify(pub, []byte(fingerprint), raw)
}

// narOf fetches the NAR of a path through the node and returns the body,
// or an error when the body is short or the connection was cut.
func narOf(t testing.TB, nodeURL string, c *claim.Claim) (int, []byte, error) {
	t.Helper()
	u := nodeURL + "/nar/" + claim.HashPart(c.Subject) + "-" + strings.TrimPrefix(c.NarHash, "sha256:") + ".nar"
	code, _, body, err := get(t, u)
	return code, body, err
}

func narHashOf(b []byte) string {
	h := sha256.Sum256(b)
	return "sha256:" + nixbase32.EncodeToString(h[:])
}

func TestEveryCompressionIsVerified(t *testing.T) {
	w := getWorld(t)
	for _, comp := range []string{"xz", "zstd", "bzip2", "none"} {
		t.Run(comp, func(t *testing.T) {
			up := cacheServer(t, w.caches[comp])
			if got := upstreamNarinfo(t, w.caches[comp], w.paths["big"]).EffectiveCompression(); got != comp {
				t.Fatalf("cache has %s, want %s", got, comp)
			}
			s, n := node(t, w.decider("big", "a"), nixKey(t), Limits{}, up.URL)
			code, body, err := narOf(t, n.URL, w.claims["big"])
			if err != nil || code != 200 || uint64(len(body)) != w.claims["big"].NarSize || narHashOf(body) != w.claims["big"].NarHash {
				t.Fatalf("NAR via %s: %d, %d bytes, %v", comp, code, len(body), err)
			}
			if got := testutil.ToFloat64(s.metrics.verifiedBytes); got != float64(w.claims["big"].NarSize) {
				t.Errorf("verified bytes %v", got)
			}
		})
	}
}

// TestStaleNARURLIsRefused: a URL naming another NAR hash than the agreed
// one (an old agreement, or a guess) gets nothing.
func TestStaleNARURLIsRefused(t *testing.T) {
	w := getWorld(t)
	up := cacheServer(t, w.caches["none"])
	_, n := node(t, w.decider("a"), nixKey(t), Limits{}, up.URL)
	stale := *w.claims["a"]
	stale.NarHash = w.claims["b"].NarHash
	if code, _, _ := narOf(t, n.URL, &stale); code != 404 {
		t.Errorf("stale NAR URL: %d", code)
	}
	if code, _, _ := narOf(t, n.URL, w.claims["noise"]); code != 404 {
		t.Errorf("NAR of an insufficient path: %d", code)
	}
}

func TestSelfCertifyingPathsNeedNoQuorum(t *testing.T) {
	w := getWorld(t)
	key := nixKey(t)
	up := cacheServer(t, w.caches["xz"])
	s, n := node(t, w.decider(), key, Limits{}, up.URL)
	nix := newNixClient(t, n.URL, key.PublicKey())
	for _, name := range []string{"tools", "text"} {
		if out, err := nix.run("nix-store", "-r", w.ca[name]); err != nil {
			t.Fatalf("self-certifying %s: %v\n%s", name, err, out)
		}
	}
	if got := testutil.ToFloat64(s.metrics.verdicts.WithLabelValues(outcomeSelfCertified)); got < 2 {
		t.Errorf("self-certified lookups counted %v", got)
	}

	// A forged CA: the upstream claims the tools path has another content.
	forged := hostile(t, w.caches["none"], func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if strings.HasSuffix(r.URL.Path, ".narinfo") {
			b := record(next, r)
			b = regexpReplace(b, `CA: fixed:r:sha256:[0-9a-z]+`, "CA: fixed:r:sha256:"+strings.Repeat("1", 52))
			b = regexpReplace(b, `NarHash: sha256:[0-9a-z]+`, "NarHash: sha256:"+strings.Repeat("1", 52))
			w.Write(b)
			return
		}
		next.ServeHTTP(w, r)
	})
	s2, n2 := node(t, w.decider(), key, Limits{}, forged.URL)
	code, _, body, _ := get(t, n2.URL+"/"+claim.HashPart(w.ca["tools"])+".narinfo")
	if code != 404 {
		t.Errorf("forged CA narinfo served: %d\n%s", code, body)
	}
	if got := testutil.ToFloat64(s2.metrics.upstreamFailures.WithLabelValues(forged.URL, "ca-mismatch")); got != 1 {
		t.Errorf("ca-mismatch counted %v", got)
	}
}

func TestOwnStoreAndPeers(t *testing.T) {
	w := getWorld(t)
	key := nixKey(t)
	// A peer serves its own store as a plain cache…
	peerStore, err := NewStoreServer(w.store, nil)
	if err != nil {
		t.Fatal(err)
	}
	peer := httptest.NewServer(peerStore)
	defer peer.Close()
	_, n := node(t, w.decider("a", "b", "c"), key, Limits{}, peer.URL)
	nix := newNixClient(t, n.URL, key.PublicKey())
	if out, err := nix.run("nix", "copy", "--from", n.URL, w.paths["c"]); err != nil {
		t.Fatalf("via a peer's store: %v\n%s", err, out)
	}
	// …and a node with the path in its own store needs no upstream.
	s, err := New(Options{Decider: w.decider("big", "a"), Key: key, Store: w.store})
	if err != nil {
		t.Fatal(err)
	}
	own := httptest.NewServer(s)
	defer own.Close()
	code, body, err := narOf(t, own.URL, w.claims["big"])
	if err != nil || code != 200 || narHashOf(body) != w.claims["big"].NarHash {
		t.Fatalf("own store: %d %v", code, err)
	}
}

func regexpReplace(b []byte, pattern, repl string) []byte {
	return regexp.MustCompile(pattern).ReplaceAll(b, []byte(repl))
}

// record runs next and returns the body it wrote.
func record(next http.Handler, r *http.Request) []byte {
	rec := httptest.NewRecorder()
	next.ServeHTTP(rec, r)
	return rec.Body.Bytes()
}

// hostile serves a cache directory through a misbehaving handler.
func hostile(t testing.TB, dir string, h func(w http.ResponseWriter, r *http.Request, next http.Handler)) *httptest.Server {
	next := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { h(w, r, next) }))
	t.Cleanup(srv.Close)
	return srv
}
