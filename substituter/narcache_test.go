package substituter

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
)

// cachingNode starts a substituter with a NAR cache in dir.
func cachingNode(t testing.TB, d Decider, dir string, max int64, upstreams ...string) (*Server, *httptest.Server) {
	t.Helper()
	var ups []config.Upstream
	for _, u := range upstreams {
		ups = append(ups, config.Upstream{URL: u, Timeout: config.Duration{Duration: 20 * time.Second}})
	}
	s, err := New(Options{Decider: d, Key: nixKey(t), Upstreams: ups,
		NARCache: NARCacheOptions{Dir: dir, MaxBytes: max},
		Logger:   slog.New(slog.NewTextHandler(t.Output(), nil))})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(s)
	t.Cleanup(hs.Close)
	return s, hs
}

// countingCache serves a cache directory and counts the NARs it sends.
func countingCache(t testing.TB, dir string, nars *atomic.Int64) *httptest.Server {
	return hostile(t, dir, func(w http.ResponseWriter, r *http.Request, next http.Handler) {
		if strings.HasPrefix(r.URL.Path, "/nar/") {
			nars.Add(1)
		}
		next.ServeHTTP(w, r)
	})
}

func cachedFiles(t testing.TB, dir string) (nars, temps []string) {
	t.Helper()
	des, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		if strings.HasPrefix(de.Name(), ".tmp-") {
			temps = append(temps, de.Name())
		} else if strings.HasSuffix(de.Name(), ".nar") {
			nars = append(nars, de.Name())
		}
	}
	return nars, temps
}

// waitStored waits until the node has stored n NARs in its cache: the copy
// is committed after the client has the last byte.
func waitStored(t testing.TB, s *Server, n float64) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if testutil.ToFloat64(s.metrics.narCache.WithLabelValues("stored")) >= n {
			return
		}
	}
	t.Fatalf("the cache did not store %v NARs", n)
}

func wantNAR(t testing.TB, nodeURL string, c *claim.Claim) {
	t.Helper()
	code, body, err := narOf(t, nodeURL, c)
	if err != nil || code != 200 || uint64(len(body)) != c.NarSize || narHashOf(body) != c.NarHash {
		t.Fatalf("NAR of %s: %d, %d bytes, %v", c.Subject, code, len(body), err)
	}
}

// TestNARCacheServesVerifiedCopies: the first request relays from the
// upstream and keeps a copy; later ones, also after a restart, are served
// from disk without asking the upstream.
func TestNARCacheServesVerifiedCopies(t *testing.T) {
	w := getWorld(t)
	var nars atomic.Int64
	up := countingCache(t, w.caches["xz"], &nars)
	dir := filepath.Join(t.TempDir(), "nar-cache")
	s, n := cachingNode(t, w.decider("big", "a"), dir, 1<<30, up.URL)
	wantNAR(t, n.URL, w.claims["big"])
	waitStored(t, s, 1)
	for range 2 {
		wantNAR(t, n.URL, w.claims["big"])
	}
	if got := nars.Load(); got != 1 {
		t.Errorf("upstream sent the NAR %d times, want 1", got)
	}
	if hits := testutil.ToFloat64(s.metrics.narCache.WithLabelValues("hit")); hits != 2 {
		t.Errorf("cache hits %v, want 2", hits)
	}
	files, temps := cachedFiles(t, dir)
	want := strings.TrimPrefix(w.claims["big"].NarHash, "sha256:") + ".nar"
	if len(files) != 1 || files[0] != want || len(temps) != 0 {
		t.Errorf("cache holds %v and temporaries %v, want [%s]", files, temps, want)
	}

	// A restart finds the cache, and forgets what a crash left half-written.
	os.WriteFile(filepath.Join(dir, ".tmp-deadbeef-1"), []byte("partial"), 0o600)
	_, n2 := cachingNode(t, w.decider("big", "a"), dir, 1<<30, up.URL)
	wantNAR(t, n2.URL, w.claims["big"])
	if got := nars.Load(); got != 1 {
		t.Errorf("after restart the upstream sent the NAR %d times, want 1", got)
	}
	if _, temps := cachedFiles(t, dir); len(temps) != 0 {
		t.Errorf("partial file survived a restart: %v", temps)
	}
}

// TestNARCacheKeepsNothingUnverified: a NAR that fails verification is
// never stored, so it cannot be served later from disk either.
func TestNARCacheKeepsNothingUnverified(t *testing.T) {
	w := getWorld(t)
	bad := hostile(t, w.caches["none"], func(rw http.ResponseWriter, r *http.Request, next http.Handler) {
		body := record(next, r)
		if strings.HasPrefix(r.URL.Path, "/nar/") && len(body) > 1000 {
			body[len(body)/2] ^= 1
		}
		rw.Write(body)
	})
	dir := t.TempDir()
	_, n := cachingNode(t, w.decider("big"), dir, 1<<30, bad.URL)
	if code, body, err := narOf(t, n.URL, w.claims["big"]); err == nil && code == 200 && narHashOf(body) == w.claims["big"].NarHash {
		t.Fatal("an altered NAR was served whole")
	}
	if files, temps := cachedFiles(t, dir); len(files)+len(temps) != 0 {
		t.Fatalf("an altered NAR left %v %v in the cache", files, temps)
	}
	// The next request, with an honest upstream, still relays and verifies.
	good := cacheServer(t, w.caches["none"])
	_, n2 := cachingNode(t, w.decider("big"), dir, 1<<30, good.URL)
	wantNAR(t, n2.URL, w.claims["big"])
}

// TestNARCacheIsBounded: the least recently used NAR goes first, and a
// cached file of the wrong size is dropped and fetched again.
func TestNARCacheIsBounded(t *testing.T) {
	w := getWorld(t)
	var nars atomic.Int64
	up := countingCache(t, w.caches["zstd"], &nars)
	a, b, c := w.claims["a"], w.claims["b"], w.claims["c"]
	room := int64(a.NarSize+b.NarSize+c.NarSize) - 1 // not all three
	dir := t.TempDir()
	s, n := cachingNode(t, w.decider("a", "b", "c"), dir, room, up.URL)
	wantNAR(t, n.URL, a)
	waitStored(t, s, 1)
	wantNAR(t, n.URL, b)
	waitStored(t, s, 2)
	wantNAR(t, n.URL, a) // a is now the most recent
	wantNAR(t, n.URL, c) // evicts b
	waitStored(t, s, 3)
	if got := nars.Load(); got != 3 {
		t.Fatalf("upstream sent %d NARs, want 3", got)
	}
	if s.narCache.Size() > room {
		t.Errorf("cache holds %d bytes, bound %d", s.narCache.Size(), room)
	}
	name := func(c *claim.Claim) string { return strings.TrimPrefix(c.NarHash, "sha256:") + ".nar" }
	if _, err := os.Stat(filepath.Join(dir, name(b))); !os.IsNotExist(err) {
		t.Errorf("least recently used NAR still cached: %v", err)
	}
	wantNAR(t, n.URL, a)
	if got := nars.Load(); got != 3 {
		t.Fatalf("recently used NAR was not kept: upstream sent %d", got)
	}

	// A file cut short (a crash, a full disk) is not served.
	if err := os.Truncate(filepath.Join(dir, name(a)), int64(a.NarSize)/2); err != nil {
		t.Fatal(err)
	}
	wantNAR(t, n.URL, a)
	waitStored(t, s, 4)
	if got := nars.Load(); got != 4 {
		t.Errorf("short cached file: upstream sent %d NARs, want 4", got)
	}
}

// TestNARCacheSkipsFlatContentAddresses: a self-certified flat or text path
// is checked against its CA as it streams, so it never comes from the cache.
func TestNARCacheSkipsFlatContentAddresses(t *testing.T) {
	w := getWorld(t)
	var nars atomic.Int64
	up := countingCache(t, w.caches["none"], &nars)
	dir := t.TempDir()
	_, n := cachingNode(t, w.decider(), dir, 1<<30, up.URL)
	ni := upstreamNarinfo(t, w.caches["none"], w.ca["text"])
	c := &claim.Claim{Kind: claim.KindNix, Subject: w.ca["text"], NarHash: ni.NarHash, NarSize: ni.NarSize}
	for range 2 {
		wantNAR(t, n.URL, c)
	}
	if got := nars.Load(); got != 2 {
		t.Errorf("upstream sent %d NARs for a text path, want 2 (no cache)", got)
	}
	if files, _ := cachedFiles(t, dir); len(files) != 0 {
		t.Errorf("text path cached: %v", files)
	}
}

// TestNARCacheHitIsSentWhole checks the sendfile path end to end: what the
// client reads from a hit is byte for byte the NAR.
func TestNARCacheHitIsSentWhole(t *testing.T) {
	w := getWorld(t)
	up := cacheServer(t, w.caches["bzip2"])
	s, n := cachingNode(t, w.decider("big"), t.TempDir(), 1<<30, up.URL)
	wantNAR(t, n.URL, w.claims["big"])
	waitStored(t, s, 1)
	resp, err := http.Get(n.URL + "/nar/" + claim.HashPart(w.claims["big"].Subject) + "-" + strings.TrimPrefix(w.claims["big"].NarHash, "sha256:") + ".nar")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.ContentLength != int64(len(body)) || narHashOf(body) != w.claims["big"].NarHash {
		t.Fatalf("cache hit: Content-Length %d, %d bytes, %v", resp.ContentLength, len(body), err)
	}
	if ct := resp.Header.Get("Content-Type"); ct != contentTypeNAR {
		t.Errorf("Content-Type %q", ct)
	}
}
