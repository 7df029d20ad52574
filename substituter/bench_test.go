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
