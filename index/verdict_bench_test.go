package index

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/internal/gctune"
	"github.com/vouch-dev/vouch/verdict"
)

// benchIndexVersion names the layout of the cached benchmark index. Change
// it whenever the index's on-disk format or the synthetic logs change, so a
// stale cache is never reused.
const benchIndexVersion = "v6"

const benchLogs = 5

func benchLogIDs() []LogID {
	ids := make([]LogID, benchLogs)
	for i := range ids {
		ids[i] = LogID{Name: fmt.Sprintf("builder%d", i), KeyID: fmt.Sprintf("key%d", i)}
	}
	return ids
}

// benchOutput is the output log l claims for entry i: every log agrees,
// except that builder0 disagrees on one subject in ten, so every verdict
// carries five inclusion proofs.
func benchOutput(l, i int) string {
	if l == 0 && i%10 == 0 {
		return "other"
	}
	return "o"
}

// benchClaims returns VOUCH_BENCH_CLAIMS, or def.
func benchClaims(b *testing.B, def int) int {
	v := os.Getenv("VOUCH_BENCH_CLAIMS")
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		b.Fatalf("VOUCH_BENCH_CLAIMS=%q: want a positive number of claims per log", v)
	}
	return n
}

// benchIndex returns the path of an index holding benchLogs logs of n
// claims each, every one complete under a checkpoint whose root the index
// computed. Building 5,000,000 claims takes a while, so the file is kept in
// the temporary directory and reused by later runs.
func benchIndex(b *testing.B, n int) string {
	path := filepath.Join(os.TempDir(), fmt.Sprintf("vouch-bench-verdict-%s-%dx%d.db", benchIndexVersion, benchLogs, n))
	if _, err := os.Stat(path); err == nil {
		return path
	} else if !errors.Is(err, os.ErrNotExist) {
		b.Fatal(err)
	}
	b.Logf("building %s (%d logs of %d claims); later runs reuse it", path, benchLogs, n)
	start := time.Now()
	tmp := path + ".building"
	os.Remove(tmp)
	os.RemoveAll(filesDir(tmp))
	os.RemoveAll(filesDir(path))
	ids := benchLogIDs()
	x, err := Open(tmp, ids...)
	if err != nil {
		b.Fatal(err)
	}
	const per = 32768
	for l, id := range ids {
		var want compactRange
		for first := 0; first < n; first += per {
			bt := &Batch{First: uint64(first)}
			for i := first; i < min(first+per, n); i++ {
				e, c := entry(b, i, benchOutput(l, i))
				bt.Entries = append(bt.Entries, e)
				bt.Claims = append(bt.Claims, c)
				bt.Hashes = append(bt.Hashes, tlog.RecordHash(e))
				want.push(bt.Hashes[len(bt.Hashes)-1])
			}
			if c, err := x.Append(id, bt); err != nil || c != nil {
				b.Fatal(c, err)
			}
		}
		root, err := x.RootAt(id, uint64(n))
		if err != nil || root != want.root() {
			b.Fatalf("log %s: the index's root %v (%v) differs from the leaves' %v", id, root, err, want.root())
		}
		if err := x.SetCheckpoint(id, checkpointNote(id.Name, uint64(n), root)); err != nil {
			b.Fatal(err)
		}
	}
	if err := x.Close(); err != nil {
		b.Fatal(err)
	}
	// The entry files first: the index is complete once it has its name.
	if err := os.Rename(filesDir(tmp), filesDir(path)); err != nil {
		b.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		b.Fatal(err)
	}
	b.Logf("built in %v", time.Since(start).Round(time.Second))
	return path
}

// verdictBenchSetup opens the benchmark index with a 3-of-5 policy over
// its logs and picks random subjects, each decided once so that the
// measured runs pay no first-touch page faults.
func verdictBenchSetup(b *testing.B) (x *Index, p *verdict.Policy, ids []LogID, paths []string, subjects []int) {
	gctune.Apply() // as vouch runs
	n := benchClaims(b, 1_000_000)
	ids = benchLogIDs()
	x, err := Open(benchIndex(b, n), ids...)
	if err != nil {
		b.Fatal(err)
	}
	p = &verdict.Policy{Min: 3, MinOperators: 2, OnConflict: "majority"}
	for i, id := range ids {
		p.Members = append(p.Members, verdict.Member{Name: id.Name, Operator: fmt.Sprintf("org%d", i%3), Weight: 1, KeyID: id.KeyID})
	}
	rng := rand.New(rand.NewPCG(1, 2))
	subjects = make([]int, 16384)
	paths = make([]string, len(subjects))
	for i := range subjects {
		subjects[i] = rng.IntN(n)
		_, c := entry(b, subjects[i], "o")
		paths[i] = c.Subject
	}

	// One pass over the subjects first: a running node has long touched
	// the pages of its index, and the first touch of each page of the
	// database's memory map costs a page fault the steady state never
	// pays. The pages stay cold in the CPU caches: the subjects' pages
	// amount to far more than any cache.
	for _, path := range paths {
		if _, err := p.Decide(x, claim.KindNix, path); err != nil {
			b.Fatal(err)
		}
	}
	return x, p, ids, paths, subjects
}

// BenchmarkVerdict5x1M measures verdict latency in-process: Policy.Decide
// over the index for random subjects of five followed logs of
// VOUCH_BENCH_CLAIMS (default 1,000,000) claims each, Claims lookup and
// five inclusion proofs included. It reports the median and 99th
// percentile latency, and the index's bytes per claim; afterwards it checks
// proofs of the verdicts it made against the checkpoints' roots.
func BenchmarkVerdict5x1M(b *testing.B) {
	x, p, ids, paths, subjects := verdictBenchSetup(b)
	defer x.Close()
	lat := make([]time.Duration, 0, 1<<16)
	var last []verdict.Verdict
	cpuBefore := cpuTime(b)
	b.ResetTimer()
	i := 0
	for b.Loop() {
		k := i % len(paths)
		i++
		start := time.Now()
		v, err := p.Decide(x, claim.KindNix, paths[k])
		lat = append(lat, time.Since(start))
		if err != nil || v.Outcome != verdict.Trusted || len(v.Agreed)+len(v.Disagreed) != benchLogs {
			b.Fatalf("subject %d: %+v %v", subjects[k], v, err)
		}
		if len(last) < 64 {
			last = append(last, v)
		}
	}
	b.StopTimer()
	// CPU time per verdict does not depend on how loaded the machine is,
	// unlike the latencies.
	b.ReportMetric(float64((cpuTime(b)-cpuBefore).Nanoseconds())/1e3/float64(len(lat)), "cpu-µs/op")
	reportLatency(b, lat)
	bpc, err := x.BytesPerClaim()
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(bpc, "index-bytes/claim")

	roots := map[string]tlog.Hash{}
	for _, id := range ids {
		st, err := x.State(id)
		if err != nil || st.Complete == nil {
			b.Fatal(st, err)
		}
		roots[id.Name] = st.Complete.Root
	}
	for _, v := range last {
		for _, vote := range append(v.Agreed, v.Disagreed...) {
			e, err := x.Entry(LogID{vote.Builder, "key" + vote.Builder[len("builder"):]}, vote.Index)
			if err != nil {
				b.Fatal(err)
			}
			proof := make(tlog.RecordProof, len(vote.Proof))
			for j := range proof {
				copy(proof[j][:], vote.Proof[j])
			}
			if err := tlog.CheckRecord(proof, int64(vote.TreeSize), roots[vote.Builder], int64(vote.Index), tlog.RecordHash(e)); err != nil {
				b.Fatalf("%s entry %d: %v", vote.Builder, vote.Index, err)
			}
		}
	}
}

// BenchmarkVerdictNoProofs5x1M is BenchmarkVerdict5x1M without the
// inclusion proofs: what the substituter asks for every narinfo it has not
// decided since the index last changed (Claims, then DecideEntries).
func BenchmarkVerdictNoProofs5x1M(b *testing.B) {
	x, p, _, paths, _ := verdictBenchSetup(b)
	defer x.Close()
	lat := make([]time.Duration, 0, 1<<16)
	cpuBefore := cpuTime(b)
	b.ResetTimer()
	i := 0
	for b.Loop() {
		k := i % len(paths)
		i++
		start := time.Now()
		entries, err := x.Claims(claim.KindNix, paths[k])
		v := p.DecideEntries(entries, x.Compromised)
		lat = append(lat, time.Since(start))
		if err != nil || v.Outcome != verdict.Trusted {
			b.Fatalf("%s: %+v %v", paths[k], v, err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64((cpuTime(b)-cpuBefore).Nanoseconds())/1e3/float64(len(lat)), "cpu-µs/op")
	reportLatency(b, lat)
}

// reportLatency reports the median and 99th percentile of lat.
func reportLatency(b *testing.B, lat []time.Duration) {
	slices.Sort(lat)
	b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
	b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
}

// compactRange computes an RFC 6962 root from leaf hashes independently of
// the index: the roots of the perfect subtrees of the leaves so far,
// largest first.
type compactRange struct {
	hashes []tlog.Hash
	sizes  []uint64
}

func (r *compactRange) push(h tlog.Hash) {
	r.hashes, r.sizes = append(r.hashes, h), append(r.sizes, 1)
	for k := len(r.sizes); k >= 2 && r.sizes[k-2] == r.sizes[k-1]; k-- {
		r.hashes[k-2] = tlog.NodeHash(r.hashes[k-2], r.hashes[k-1])
		r.sizes[k-2] *= 2
		r.hashes, r.sizes = r.hashes[:k-1], r.sizes[:k-1]
	}
}

func (r *compactRange) root() tlog.Hash {
	h := r.hashes[len(r.hashes)-1]
	for i := len(r.hashes) - 2; i >= 0; i-- {
		h = tlog.NodeHash(r.hashes[i], h)
	}
	return h
}

// cpuTime returns the user and system CPU time the process used so far.
func cpuTime(b *testing.B) time.Duration {
	var u syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &u); err != nil {
		b.Fatal(err)
	}
	return time.Duration(u.Utime.Nano() + u.Stime.Nano())
}
