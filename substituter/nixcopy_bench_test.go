package substituter

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/keys"
	"github.com/vouch-dev/vouch/nixstore"
	"github.com/vouch-dev/vouch/verdict"
)

// closureNix builds a closure of n small outputs (1–200 KB each, every
// tenth one 2 MB) and a root that refers to all of them.
const closureNix = `{ world, n }:
let
  tools = builtins.path { name = "busybox-tools"; path = world + "/tools"; };
  bb = "${tools}/busybox";
  mk = i: derivation {
    name = "p${toString i}";
    system = builtins.currentSystem;
    builder = "${tools}/sh";
    args = [ "-c" "${bb} mkdir $out; ${bb} echo ${toString i} > $out/id; ${bb} head -c ${toString (if i - (i / 10) * 10 == 0 then 2000000 else i * 1000)} /dev/urandom > $out/blob" ];
  };
  parts = builtins.genList mk n;
in derivation {
  name = "closure-root";
  system = builtins.currentSystem;
  builder = "${tools}/sh";
  args = [ "-c" "${bb} mkdir $out; ${bb} echo ${builtins.concatStringsSep " " (map toString parts)} > $out/parts" ];
}
`

// TestNixCopyBenchmark times stock Nix copying a closure of a few hundred
// paths into a fresh store through vouch (cold: NARs relayed and verified;
// warm: from vouch's NAR cache) and straight from the same upstream cache,
// alternating the three. It is a measurement, not a check: it runs only
// with VOUCH_BENCH_NIXCOPY=1 (bench/nixcopy.sh).
func TestNixCopyBenchmark(t *testing.T) {
	if os.Getenv("VOUCH_BENCH_NIXCOPY") == "" {
		t.Skip("a benchmark: set VOUCH_BENCH_NIXCOPY=1 (bench/nixcopy.sh)")
	}
	w := getWorld(t)
	n := 300
	fmt.Sscan(os.Getenv("VOUCH_BENCH_PATHS"), &n)
	rounds := 3
	fmt.Sscan(os.Getenv("VOUCH_BENCH_ROUNDS"), &rounds)
	compression := "xz"
	if c := os.Getenv("VOUCH_BENCH_COMPRESSION"); c != "" {
		compression = c
	}

	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	expr := filepath.Join(dir, "closure.nix")
	os.WriteFile(expr, []byte(closureNix), 0o644)
	out, err := run("nix-build", "--store", store, "--no-out-link", expr,
		"--arg", "world", filepath.Join(w.dir, "world"), "--arg", "n", fmt.Sprint(n), "--option", "max-jobs", "2")
	if err != nil {
		t.Fatal(err)
	}
	root := strings.TrimSpace(out)
	out, err = run("nix-store", "--store", store, "-qR", root)
	if err != nil {
		t.Fatal(err)
	}
	closure := strings.Fields(out)

	// The upstream cache, signed, as a real one is.
	kd := t.TempDir()
	kf, err := keys.Generate(kd, "bench-upstream-1")
	if err != nil {
		t.Fatal(err)
	}
	upKey, err := keys.LoadNixKey(kf.NixSecret)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := run("nix", "store", "sign", "--extra-experimental-features", "nix-command", "--store", store, "--key-file", kf.NixSecret, "-r", root); err != nil {
		t.Fatal(err)
	}
	cache := filepath.Join(dir, "cache")
	if _, err := run("nix", "copy", "--extra-experimental-features", "nix-command", "--store", store, "--to", "file://"+cache+"?compression="+compression, root); err != nil {
		t.Fatal(err)
	}
	up := cacheServer(t, cache)

	st := nixstore.Store{Root: store}
	trusted := &mapDecider{byHash: map[string]string{}, verdicts: map[string]verdict.Verdict{}}
	for _, p := range closure {
		c, err := st.Claim(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		trusted.byHash[claim.HashPart(p)] = p
		trusted.verdicts[p] = verdict.Verdict{Kind: claim.KindNix, Subject: p, Outcome: verdict.Trusted, Value: c}
	}

	vouchKey := nixKey(t)
	trust := upKey.PublicKey() + " " + vouchKey.PublicKey()
	copyFrom := func(url string) time.Duration {
		c := newNixClient(t, url, trust)
		start := time.Now()
		if out, err := c.run("nix", "copy", "--from", url, root); err != nil {
			t.Fatalf("nix copy from %s: %v\n%s", url, err, out)
		}
		return time.Since(start)
	}
	var direct, cold, streamed, warm []time.Duration
	for range rounds {
		direct = append(direct, copyFrom(up.URL))
		_, coldNode := node(t, trusted, vouchKey, Limits{}, up.URL)
		defer coldNode.Close()
		cold = append(cold, copyFrom(coldNode.URL))
		_, streamNode := node(t, trusted, vouchKey, Limits{VerifyFirstMax: -1}, up.URL)
		defer streamNode.Close()
		streamed = append(streamed, copyFrom(streamNode.URL))
		s, err := New(Options{Decider: trusted, Key: vouchKey, Upstreams: []config.Upstream{{URL: up.URL}},
			NARCache: NARCacheOptions{Dir: t.TempDir(), MaxBytes: 1 << 30}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		warmNode := httptest.NewServer(s)
		copyFrom(warmNode.URL)
		waitStored(t, s, float64(len(closure)))
		warm = append(warm, copyFrom(warmNode.URL))
		warmNode.Close()
	}
	med := func(ds []time.Duration) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		return s[len(s)/2]
	}
	fmt.Printf("| nix copy of %d paths (%d rounds, median) | seconds | ratio to direct |\n|---|---:|---:|\n", len(closure), rounds)
	fmt.Printf("| straight from the upstream cache (%s, Go file server) | %.2f | 1 |\n", compression, med(direct).Seconds())
	fmt.Printf("| through vouch, cold (relayed, verified before sending) | %.2f | %.2f |\n", med(cold).Seconds(), med(direct).Seconds()/med(cold).Seconds())
	fmt.Printf("| through vouch, cold, streamed (verify-first-max = 0) | %.2f | %.2f |\n", med(streamed).Seconds(), med(direct).Seconds()/med(streamed).Seconds())
	fmt.Printf("| through vouch, warm (from its NAR cache) | %.2f | %.2f |\n", med(warm).Seconds(), med(direct).Seconds()/med(warm).Seconds())
	fmt.Printf("\nrounds: direct %v, cold %v, streamed %v, warm %v\n", direct, cold, streamed, warm)
}
