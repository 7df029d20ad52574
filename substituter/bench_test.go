package substituter

import (
	"crypto/rand"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/narinfo"
	"github.com/vouch-dev/vouch/nixstore"
	"github.com/vouch-dev/vouch/verdict"
)

// benchCache writes a binary cache with one uncompressed NAR of a random
// file of size bytes, and returns its directory and the claim for it.
func benchCache(b *testing.B, size int) (string, *claim.Claim) {
	b.Helper()
	dir := b.TempDir()
	tree := filepath.Join(b.TempDir(), "tree")
	os.MkdirAll(tree, 0o755)
	f, _ := os.Create(filepath.Join(tree, "blob"))
	io.CopyN(f, rand.Reader, int64(size))
	f.Close()
	narHash, narSize, err := nixstore.NarHash(tree)
	if err != nil {
		b.Fatal(err)
	}
	storePath := "/nix/store/4jv3dixs6a3zinb7azwasrig501r2h14-bench"
	os.MkdirAll(filepath.Join(dir, "nar"), 0o755)
	nar, _ := os.Create(filepath.Join(dir, "nar", "bench.nar"))
	if err := nixstore.WriteNAR(nar, tree); err != nil {
		b.Fatal(err)
	}
	nar.Close()
	ni := narinfo.NarInfo{StorePath: storePath, URL: "nar/bench.nar", Compression: "none", NarHash: narHash, NarSize: narSize}
	os.WriteFile(filepath.Join(dir, claim.HashPart(storePath)+".narinfo"), ni.Marshal(), 0o644)
	return dir, &claim.Claim{Kind: claim.KindNix, Subject: storePath, NarHash: narHash, NarSize: narSize}
}

func benchNode(b *testing.B, c *claim.Claim, upstream string, limits Limits) *httptest.Server {
	d := &mapDecider{
		byHash:   map[string]string{claim.HashPart(c.Subject): c.Subject},
		verdicts: map[string]verdict.Verdict{c.Subject: {Kind: claim.KindNix, Subject: c.Subject, Outcome: verdict.Trusted, Value: c}},
	}
	var ups []config.Upstream
	if upstream != "" {
		ups = []config.Upstream{{URL: upstream}}
	}
	s, err := New(Options{Decider: d, Key: nixKey(b), Upstreams: ups, Limits: limits, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	n := httptest.NewServer(s)
	b.Cleanup(n.Close)
	return n
}

func benchClient() *http.Client {
	return &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 256, DisableCompression: true}}
}

// BenchmarkNarinfo measures narinfo requests per second through the
// handler on loopback, with the Decider lookup and verdict on every request.
func BenchmarkNarinfo(b *testing.B) {
	dir, c := benchCache(b, 1024)
	// The narinfo is served only when a source has the NAR; the upstream
	// is asked once and its answer cached.
	up := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer up.Close()
	n := benchNode(b, c, up.URL, Limits{})
	url := n.URL + "/" + claim.HashPart(c.Subject) + ".narinfo"
	client := benchClient()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			resp, err := client.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 {
				b.Fatalf("status %d", resp.StatusCode)
			}
		}
	})
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "req/s")
}

// BenchmarkNAR measures verified NAR relaying: an uncompressed 64 MiB NAR
// from an upstream on loopback, verified whole before it is sent
// (verify-first, the default up to 1 GiB) or hashed and held back as it
// is relayed (streaming). ttfb-ms is the mean time to the first byte.
func BenchmarkNAR(b *testing.B) {
	for _, mode := range []struct {
		name   string
		limits Limits
	}{{"verify-first", Limits{}}, {"streaming", Limits{VerifyFirstMax: -1}}} {
		for _, streams := range []int{1, 16} {
			b.Run(fmt.Sprintf("%s/streams=%d", mode.name, streams), func(b *testing.B) {
				benchNAR(b, mode.limits, streams)
			})
		}
	}
}

func benchNAR(b *testing.B, limits Limits, streams int) {
	dir, c := benchCache(b, 64<<20)
	up := httptest.NewServer(http.FileServer(http.Dir(dir)))
	defer up.Close()
	n := benchNode(b, c, up.URL, limits)
	url := n.URL + "/nar/" + claim.HashPart(c.Subject) + "-" + c.NarHash[len("sha256:"):] + ".nar"
	client := benchClient()
	b.SetBytes(int64(c.NarSize))
	b.SetParallelism(max(1, streams/runtime.GOMAXPROCS(0)))
	b.ResetTimer()
	var ttfb atomic.Int64
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			start := time.Now()
			resp, err := client.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			var first [1]byte
			if _, err := io.ReadFull(resp.Body, first[:]); err != nil {
				b.Fatal(err)
			}
			ttfb.Add(int64(time.Since(start)))
			rest, err := io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			got := 1 + rest
			if err != nil || uint64(got) != c.NarSize {
				b.Fatalf("got %d bytes, %v", got, err)
			}
		}
	})
	b.ReportMetric(float64(ttfb.Load())/float64(b.N)/1e6, "ttfb-ms")
}

// BenchmarkUpstreamAmplification runs a load mix through a node with two
// upstreams and reports upstream requests per client request: 60 %
// narinfos of 20 agreed paths, 30 % narinfos of 500 hashes no one has
// (each asked again and again, as Nix clients do), 10 % NARs of the agreed
// paths. Every miss used to go to every upstream and was never kept.
func BenchmarkUpstreamAmplification(b *testing.B) {
	var upstreamRequests atomic.Int64
	d := &mapDecider{byHash: map[string]string{}, verdicts: map[string]verdict.Verdict{}}
	var claims []*claim.Claim
	dir := b.TempDir()
	os.MkdirAll(filepath.Join(dir, "nar"), 0o755)
	for i := range 20 {
		sub, c := benchCache(b, 4096)
		c.Subject = fmt.Sprintf("/nix/store/%032d-bench-%d", i, i)
		claims = append(claims, c)
		d.byHash[claim.HashPart(c.Subject)] = c.Subject
		d.verdicts[c.Subject] = verdict.Verdict{Kind: claim.KindNix, Subject: c.Subject, Outcome: verdict.Trusted, Value: c}
		ni := narinfo.NarInfo{StorePath: c.Subject, URL: fmt.Sprintf("nar/%d.nar", i), Compression: "none", NarHash: c.NarHash, NarSize: c.NarSize}
		os.Rename(filepath.Join(sub, "nar", "bench.nar"), filepath.Join(dir, "nar", fmt.Sprintf("%d.nar", i)))
		os.WriteFile(filepath.Join(dir, claim.HashPart(c.Subject)+".narinfo"), ni.Marshal(), 0o644)
	}
	// Two upstreams with the same paths, as two mirrors of one cache.
	var ups []config.Upstream
	for range 2 {
		files := http.FileServer(http.Dir(dir))
		up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			upstreamRequests.Add(1)
			files.ServeHTTP(w, r)
		}))
		b.Cleanup(up.Close)
		ups = append(ups, config.Upstream{URL: up.URL})
	}
	s, err := New(Options{Decider: d, Key: nixKey(b), Upstreams: ups, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		b.Fatal(err)
	}
	n := httptest.NewServer(s)
	defer n.Close()
	client := benchClient()
	var next atomic.Int64
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			i := next.Add(1)
			var url string
			switch k := i % 10; {
			case k < 6:
				url = n.URL + "/" + claim.HashPart(claims[i%20].Subject) + ".narinfo"
			case k < 9:
				url = fmt.Sprintf("%s/1%031d.narinfo", n.URL, (i*7919)%500)
			default:
				c := claims[i%20]
				url = n.URL + "/nar/" + claim.HashPart(c.Subject) + "-" + c.NarHash[len("sha256:"):] + ".nar"
			}
			resp, err := client.Get(url)
			if err != nil {
				b.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	})
	b.ReportMetric(float64(upstreamRequests.Load())/float64(b.N), "upstream-req/req")
}
