package substituter

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/vouch-dev/vouch/claim"
)

// publish copies a path's narinfo and NAR from one `nix copy` cache
// directory into another, as a builder's push to its cache would.
func publish(t testing.TB, from, to, storePath string) {
	t.Helper()
	ni := upstreamNarinfo(t, from, storePath)
	for _, name := range []string{claim.HashPart(storePath) + ".narinfo", ni.URL} {
		b, err := os.ReadFile(filepath.Join(from, name))
		if err != nil {
			t.Fatal(err)
		}
		os.MkdirAll(filepath.Dir(filepath.Join(to, name)), 0o755)
		if err := os.WriteFile(filepath.Join(to, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// blackHole is a TCP listener that accepts connections and never answers.
func blackHole(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return "http://" + l.Addr().String()
}

// refusedPort returns the URL of a port nothing listens on.
func refusedPort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	return "http://" + addr
}

// TestNoSourceMeansNixBuildsIt: an agreed path whose NAR no upstream has
// yet is refused as no-source, so stock Nix (fallback off) builds it
// instead of failing; once an upstream has the NAR, Nix substitutes it.
func TestNoSourceMeansNixBuildsIt(t *testing.T) {
	w := getWorld(t)
	key := nixKey(t)
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "nix-cache-info"), []byte("StoreDir: /nix/store\n"), 0o644)
	up := cacheServer(t, dir)
	missTTL := 300 * time.Millisecond
	s, n := node(t, w.decider("a"), key, Limits{MissTTL: missTTL}, up.URL)
	narinfoURL := n.URL + "/" + claim.HashPart(w.paths["a"]) + ".narinfo"

	code, hdr, body, _ := get(t, narinfoURL)
	if code != 404 || hdr.Get("X-Vouch-Refusal") != "no-source" || !strings.Contains(string(body), up.URL+": missing") {
		t.Fatalf("agreed path without a NAR anywhere: %d %q %s", code, hdr.Get("X-Vouch-Refusal"), body)
	}

	// Stock Nix builds it (the world's sources are on this machine).
	nix := newNixClient(t, n.URL, key.PublicKey())
	out, err := nix.run("nix-build", "--no-out-link", filepath.Join(w.dir, "world"), "-A", "a")
	if err != nil {
		t.Fatalf("Nix did not build the path itself: %v\n%s", err, out)
	}
	if !strings.Contains(out, w.paths["a"]) || !strings.Contains(out, "building") {
		t.Fatalf("want a local build of %s, got:\n%s", w.paths["a"], out)
	}
	if got := testutil.ToFloat64(s.metrics.verifiedBytes); got != 0 {
		t.Errorf("a NAR was served (%v bytes) for a path no source had", got)
	}
	if got := testutil.ToFloat64(s.metrics.noSource); got < 1 {
		t.Errorf("no-source counted %v times", got)
	}

	// The builder pushes; after the miss TTL the path is served.
	publish(t, w.caches["xz"], dir, w.paths["a"])
	time.Sleep(missTTL)
	if code, hdr, body, _ := get(t, narinfoURL); code != 200 {
		t.Fatalf("after the push: %d %q %s", code, hdr.Get("X-Vouch-Refusal"), body)
	}
	nix2 := newNixClient(t, n.URL, key.PublicKey())
	if out, err := nix2.run("nix-store", "-r", w.paths["a"]); err != nil {
		t.Fatalf("Nix did not substitute the path once an upstream had it: %v\n%s", err, out)
	}
	if got := testutil.ToFloat64(s.metrics.verifiedBytes); got != float64(w.claims["a"].NarSize) {
		t.Errorf("verified bytes %v, want the NAR of a (%d)", got, w.claims["a"].NarSize)
	}
}

// tamperFirst is an upstream that answers narinfos at once and flips a
// byte in the middle of every NAR; honestLate is an honest one whose
// narinfos come 100 ms later, so the tamperer always wins the race.
func tamperFirst(t testing.TB, w *world) (bad, good string) {
	badSrv := hostile(t, w.caches["none"], hostileCases()[0].h)
	goodSrv := hostile(t, w.caches["xz"], func(rw http.ResponseWriter, r *http.Request, next http.Handler) {
		if strings.HasSuffix(r.URL.Path, ".narinfo") {
			time.Sleep(100 * time.Millisecond)
		}
		next.ServeHTTP(rw, r)
	})
	return badSrv.URL, goodSrv.URL
}

// TestTamperedFirstUpstreamNeverFailsTheClient: the 4 MB NAR comes first
// from an upstream that alters it, and from an honest one after; every
// copy succeeds, because the NAR is verified before its first byte is
// sent. With verifying first turned off the same setup cuts the client.
func TestTamperedFirstUpstreamNeverFailsTheClient(t *testing.T) {
	w := getWorld(t)
	c := w.claims["big"]
	if c.NarSize < 3<<20 {
		t.Fatalf("big is %d bytes; the test needs several MB", c.NarSize)
	}
	bad, good := tamperFirst(t, w)
	for i := range 10 {
		// A fresh node each time: no memory of the tamperer's failures.
		s, n := node(t, w.decider("a", "big"), nixKey(t), patientLimits, bad, good)
		code, body, err := narOf(t, n.URL, c)
		if err != nil || code != 200 || narHashOf(body) != c.NarHash {
			t.Fatalf("copy %d: %d, %d bytes, %v", i, code, len(body), err)
		}
		if got := testutil.ToFloat64(s.metrics.upstreamFailures.WithLabelValues(bad, "hash")); got != 1 {
			t.Fatalf("copy %d: the tamperer was not tried first (hash failures %v)", i, got)
		}
		if got := testutil.ToFloat64(s.metrics.verifiedFirst.WithLabelValues("file")); got != 1 {
			t.Errorf("copy %d: verified-first from a file counted %v", i, got)
		}
	}

	// With a NAR cache, its temporary file is the spool: the client gets
	// the honest NAR, and so does the cache.
	cacheDir := t.TempDir()
	s, n := cachingNode(t, w.decider("a", "big"), cacheDir, 1<<30, bad, good)
	wantNAR(t, n.URL, c)
	waitStored(t, s, 1)
	if nars, temps := cachedFiles(t, cacheDir); len(nars) != 1 || len(temps) != 0 || nars[0] != strings.TrimPrefix(c.NarHash, "sha256:")+".nar" {
		t.Errorf("cache holds %v, temporary %v", nars, temps)
	}
	if b, err := os.ReadFile(filepath.Join(cacheDir, strings.TrimPrefix(c.NarHash, "sha256:")+".nar")); err != nil || narHashOf(b) != c.NarHash {
		t.Errorf("cached NAR is not the agreed one: %v", err)
	}
	if got := testutil.ToFloat64(s.metrics.upstreamFailures.WithLabelValues(bad, "hash")); got != 1 {
		t.Errorf("with a cache, the tamperer was not tried first (hash failures %v)", got)
	}

	// The contrast: streamed with the hold-back only, the client is cut.
	_, n = node(t, w.decider("a", "big"), nixKey(t), Limits{VerifyFirstMax: -1, StallTimeout: 15 * time.Second}, bad, good)
	if code, body, err := narOf(t, n.URL, c); err == nil && code == 200 {
		t.Fatalf("streaming without verifying first survived a tampered first source (%d bytes); the test no longer shows anything", len(body))
	}
}

// TestNixSurvivesATamperedFirstUpstream is the same with stock Nix, run
// repeatedly: not one nix-store -r may fail.
func TestNixSurvivesATamperedFirstUpstream(t *testing.T) {
	w := getWorld(t)
	key := nixKey(t)
	bad, good := tamperFirst(t, w)
	for i := range 5 {
		s, n := node(t, w.decider("a", "big"), key, patientLimits, bad, good)
		nix := newNixClient(t, n.URL, key.PublicKey())
		if out, err := nix.run("nix-store", "-r", w.paths["big"]); err != nil {
			t.Fatalf("run %d: Nix failed although an honest upstream had the NAR: %v\n%s", i, err, out)
		}
		if got := testutil.ToFloat64(s.metrics.upstreamFailures.WithLabelValues(bad, "hash")); got < 1 {
			t.Fatalf("run %d: the tamperer was not tried first", i)
		}
		if got := testutil.ToFloat64(s.metrics.aborted); got != 0 {
			t.Errorf("run %d: %v streams cut", i, got)
		}
	}
}

// TestDeadUpstreamCostsAMissOnce: beside an honest upstream, one that
// accepts connections and never answers (and one that refuses them)
// delays only the first miss; after it, unknown hashes and refused paths
// are answered in under 100 ms, and agreed paths are served.
func TestDeadUpstreamCostsAMissOnce(t *testing.T) {
	w := getWorld(t)
	honest := cacheServer(t, w.caches["xz"])
	for _, dead := range []struct{ name, url string }{
		{"black hole", blackHole(t)},
		{"refused", refusedPort(t)},
	} {
		t.Run(dead.name, func(t *testing.T) {
			s, n := node(t, w.decider("a"), nixKey(t), Limits{NarinfoTimeout: 2 * time.Second}, dead.url, honest.URL)
			unknown := func(i int) string { return fmt.Sprintf("%s/%032d.narinfo", n.URL, i) }
			start := time.Now()
			if code, _, _, _ := get(t, unknown(0)); code != 404 {
				t.Fatalf("unknown hash: %d", code)
			}
			first := time.Since(start)
			if first > 3*time.Second {
				t.Errorf("the first miss took %v; the narinfo timeout is 2s", first)
			}
			var took []time.Duration
			for i := 1; i <= 30; i++ {
				start := time.Now()
				code, hdr, body, _ := get(t, unknown(i))
				took = append(took, time.Since(start))
				if code != 404 || hdr.Get("X-Vouch-Refusal") != outcomeUnknownPath {
					t.Fatalf("unknown hash %d: %d %s", i, code, body)
				}
				start = time.Now()
				code, _, _, _ = get(t, n.URL+"/"+claim.HashPart(w.paths["noise"])+".narinfo")
				took = append(took, time.Since(start))
				if code != 404 {
					t.Fatalf("refused path: %d", code)
				}
				if i%10 == 0 {
					// Long enough for the backoff to end and a probe to
					// start: requests still do not wait for it.
					time.Sleep(600 * time.Millisecond)
				}
			}
			slices.Sort(took)
			median, worst := took[len(took)/2], took[len(took)-1]
			t.Logf("first miss %v; after it, median %v, slowest %v", first, median, worst)
			// The goal is under 100 ms; a loaded machine running the race
			// detector gets some slack on the slowest, but nothing near
			// the 2 s the dead upstream would cost.
			if median > 100*time.Millisecond || worst > 500*time.Millisecond {
				t.Errorf("after the first miss answers took %v (median), %v (slowest); want under 100 ms", median, worst)
			}
			if code, _, _, _ := get(t, n.URL+"/"+claim.HashPart(w.paths["a"])+".narinfo"); code != 200 {
				t.Errorf("agreed path beside a dead upstream: %d", code)
			}
			if code, body, err := narOf(t, n.URL, w.claims["a"]); code != 200 || err != nil || narHashOf(body) != w.claims["a"].NarHash {
				t.Errorf("NAR beside a dead upstream: %d %v", code, err)
			}
			if got := testutil.ToFloat64(s.metrics.upstreamUp.WithLabelValues(dead.url)); got != 0 {
				t.Errorf("the dead upstream is reported up (%v)", got)
			}
		})
	}
}

// TestIdenticalRequestsShareUpstreamRequests: a burst of requests for the
// same narinfo costs each upstream one request, and a miss is remembered.
func TestIdenticalRequestsShareUpstreamRequests(t *testing.T) {
	w := getWorld(t)
	var mu sync.Mutex
	asked := map[string]int{}
	up := hostile(t, w.caches["xz"], func(rw http.ResponseWriter, r *http.Request, next http.Handler) {
		mu.Lock()
		asked[r.URL.Path]++
		mu.Unlock()
		time.Sleep(50 * time.Millisecond)
		next.ServeHTTP(rw, r)
	})
	_, n := node(t, w.decider("big", "a"), nixKey(t), Limits{}, up.URL)
	unknown := n.URL + "/" + strings.Repeat("1", 32) + ".narinfo"
	agreed := n.URL + "/" + claim.HashPart(w.paths["big"]) + ".narinfo"
	var wg sync.WaitGroup
	for range 50 {
		for _, u := range []string{unknown, agreed} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				resp, err := http.Get(u)
				if err == nil {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
			}()
		}
	}
	wg.Wait()
	for range 20 {
		get(t, unknown)
		get(t, agreed)
	}
	// The NAR request reuses the narinfo fetched for the narinfo check.
	if code, _, err := narOf(t, n.URL, w.claims["big"]); code != 200 || err != nil {
		t.Fatalf("NAR: %d %v", code, err)
	}
	mu.Lock()
	defer mu.Unlock()
	for path, n := range asked {
		if n != 1 {
			t.Errorf("%s asked %d times, want once", path, n)
		}
	}
	if len(asked) != 3 {
		t.Errorf("upstream requests %v, want the two narinfos and one NAR", asked)
	}
}

// TestClientHangingUpIsNotAnUpstreamFailure: a client that gives up on a
// slow but healthy upstream's NAR is counted as gone; the upstream is not
// blamed, penalised or skipped.
func TestClientHangingUpIsNotAnUpstreamFailure(t *testing.T) {
	w := getWorld(t)
	slow := hostile(t, w.caches["none"], func(rw http.ResponseWriter, r *http.Request, next http.Handler) {
		if isNAR(r) {
			b := record(next, r)
			rw.Write(b[:len(b)/2])
			rw.(http.Flusher).Flush()
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
				return
			}
			rw.Write(b[len(b)/2:])
			return
		}
		next.ServeHTTP(rw, r)
	})
	s, n := node(t, w.decider("a", "big"), nixKey(t), Limits{}, slow.URL)
	c := w.claims["big"]
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.URL+"/nar/"+claim.HashPart(c.Subject)+"-"+strings.TrimPrefix(c.NarHash, "sha256:")+".nar", nil)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(s.metrics.clientGone) < 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := testutil.ToFloat64(s.metrics.clientGone); got != 1 {
		t.Errorf("client gone counted %v", got)
	}
	if got := testutil.CollectAndCount(s.metrics.upstreamFailures); got != 0 {
		t.Errorf("the upstream was blamed for the client hanging up:\n%s", dumpFailures(s))
	}
	if s.upstreams[0].isPenalised() || !s.available(s.upstreams[0]) {
		t.Errorf("the upstream is penalised or skipped after a client hung up")
	}
}

// TestLyingUpstreamThatLosesTheRaceIsCounted: an upstream whose narinfo
// contradicts the agreement is logged and counted even when an honest
// upstream answered first and served the NAR.
func TestLyingUpstreamThatLosesTheRaceIsCounted(t *testing.T) {
	w := getWorld(t)
	honest := cacheServer(t, w.caches["xz"])
	liar := hostile(t, w.caches["xz"], func(rw http.ResponseWriter, r *http.Request, next http.Handler) {
		if strings.HasSuffix(r.URL.Path, ".narinfo") {
			time.Sleep(time.Second)
			rw.Write(regexpReplace(record(next, r), `NarHash: sha256:[0-9a-z]+`, "NarHash: sha256:"+strings.Repeat("0", 52)))
			return
		}
		next.ServeHTTP(rw, r)
	})
	s, n := node(t, w.decider("a"), nixKey(t), Limits{}, honest.URL, liar.URL)
	start := time.Now()
	if code, body, err := narOf(t, n.URL, w.claims["a"]); code != 200 || err != nil || narHashOf(body) != w.claims["a"].NarHash {
		t.Fatalf("NAR: %d %v", code, err)
	}
	if d := time.Since(start); d > 800*time.Millisecond {
		t.Errorf("the NAR waited %v for the slower liar", d)
	}
	deadline := time.Now().Add(3 * time.Second)
	for testutil.ToFloat64(s.metrics.upstreamFailures.WithLabelValues(liar.URL, "mismatch")) < 1 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if got := testutil.ToFloat64(s.metrics.upstreamFailures.WithLabelValues(liar.URL, "mismatch")); got != 1 {
		t.Errorf("the liar's mismatch counted %v times, want 1", got)
	}
}

// TestRefusalSaysWhy: a 502 names each upstream's actual failure.
func TestRefusalSaysWhy(t *testing.T) {
	w := getWorld(t)
	for _, tc := range []struct {
		name, want string
		h          func(rw http.ResponseWriter, r *http.Request, next http.Handler)
	}{
		{"500 for the NAR", "500 Internal Server Error", func(rw http.ResponseWriter, r *http.Request, next http.Handler) {
			if isNAR(r) {
				http.Error(rw, "oops", http.StatusInternalServerError)
				return
			}
			next.ServeHTTP(rw, r)
		}},
		{"NAR gone", "missing", func(rw http.ResponseWriter, r *http.Request, next http.Handler) {
			if isNAR(r) {
				http.NotFound(rw, r)
				return
			}
			next.ServeHTTP(rw, r)
		}},
		{"altered NAR", "hash: NAR hash", hostileCases()[0].h},
	} {
		t.Run(tc.name, func(t *testing.T) {
			up := hostile(t, w.caches["none"], tc.h)
			_, n := node(t, w.decider("a"), nixKey(t), Limits{}, up.URL)
			code, body, _ := narOf(t, n.URL, w.claims["a"])
			if code != 502 || !strings.Contains(string(body), up.URL+": ") || !strings.Contains(string(body), tc.want) {
				t.Errorf("%d %s; want 502 naming %q", code, body, tc.want)
			}
		})
	}
}

// TestCircuitClosesWhenTheUpstreamRecovers: an upstream that answered 500
// is skipped, probed in the background once the backoff ends, and used
// again as soon as a probe succeeds.
func TestCircuitClosesWhenTheUpstreamRecovers(t *testing.T) {
	w := getWorld(t)
	var down atomic.Bool
	down.Store(true)
	var probes atomic.Int64
	up := hostile(t, w.caches["xz"], func(rw http.ResponseWriter, r *http.Request, next http.Handler) {
		if r.URL.Path == "/nix-cache-info" {
			probes.Add(1)
		}
		if down.Load() {
			http.Error(rw, "down for maintenance", http.StatusServiceUnavailable)
			return
		}
		next.ServeHTTP(rw, r)
	})
	s, n := node(t, w.decider("a"), nixKey(t), Limits{BreakerBackoff: 100 * time.Millisecond}, up.URL)
	narinfoURL := n.URL + "/" + claim.HashPart(w.paths["a"]) + ".narinfo"
	code, hdr, body, _ := get(t, narinfoURL)
	if code != 404 || hdr.Get("X-Vouch-Refusal") != "no-source" || !strings.Contains(string(body), "503") {
		t.Fatalf("with the upstream down: %d %q %s", code, hdr.Get("X-Vouch-Refusal"), body)
	}
	if got := testutil.ToFloat64(s.metrics.upstreamUp.WithLabelValues(up.URL)); got != 0 {
		t.Fatalf("upstream_up %v after a 503", got)
	}
	// Skipped now, without a request to the upstream.
	_, _, body, _ = get(t, narinfoURL)
	if !strings.Contains(string(body), "unavailable") {
		t.Errorf("an open circuit should skip the upstream: %s", body)
	}

	down.Store(false)
	deadline := time.Now().Add(10 * time.Second)
	for testutil.ToFloat64(s.metrics.upstreamUp.WithLabelValues(up.URL)) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("the circuit never closed (%d probes)", probes.Load())
		}
		get(t, narinfoURL) // a request after the backoff starts the probe
		time.Sleep(50 * time.Millisecond)
	}
	if probes.Load() < 1 {
		t.Errorf("the circuit closed without a probe")
	}
	if code, _, body, _ := get(t, narinfoURL); code != 200 {
		t.Errorf("after the upstream recovered: %d %s", code, body)
	}
}
