package follow

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/internal/gctune"
	"github.com/vouch-dev/vouch/internal/memtlog"
)

// benchClaims is the log size BenchmarkSync syncs: VOUCH_BENCH_CLAIMS,
// default 100000.
func benchClaims(b *testing.B) int {
	if v := os.Getenv("VOUCH_BENCH_CLAIMS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			b.Fatal(err)
		}
		return n
	}
	return 100_000
}

// BenchmarkSync syncs, verifies and indexes a log of benchClaims claims
// served over HTTP on 127.0.0.1, into a fresh index per iteration. It
// reports claims/s, the index's bytes per claim, and the peak Go heap and
// peak RSS (VmHWM, reset before the sync) of the process during the sync.
// The process includes the HTTP server serving the log from files (its
// share is a few buffers) and, in RSS, the pages of the index file that
// bbolt's memory map holds resident; the peaks of the anonymous and the
// file-backed parts, sampled every 20 ms, are reported separately.
func BenchmarkSync(b *testing.B) {
	gctune.Apply() // as vouch runs
	n := benchClaims(b)
	l := newTileLog(b, "bench")
	srv := newSwitchServer(b, l.publishStream(n, func(i int) []byte { return testClaim(b, "s-"+strconv.Itoa(i), "out") }))
	l.tree = memtlog.Tree{}
	debug.FreeOSMemory() // return the generator's memory before measuring

	var total time.Duration
	var peak memPeaks
	var bytesPerClaim float64
	var peakRSS uint64
	for b.Loop() {
		cfg := testConfig(b, config.Builder{Name: "bench", VKey: l.vkey, Log: srv.url()})
		f, idx := openFollower(b, cfg, Options{Logger: discardLogger()})
		stop := make(chan struct{})
		done := make(chan memPeaks)
		go func() { done <- sampleMemory(stop) }()
		// Reset the kernel's peak-RSS mark so it measures the sync, not
		// building the log.
		os.WriteFile("/proc/self/clear_refs", []byte("5"), 0)
		start := time.Now()
		r := f.SyncOnce(context.Background())[0]
		total += time.Since(start)
		close(stop)
		peak = peak.max(<-done)
		peakRSS = max(peakRSS, vmHWM())
		if r.Err != nil || r.Size != uint64(n) {
			b.Fatalf("sync: %+v", r)
		}
		bytesPerClaim, _ = idx.BytesPerClaim()
		idx.Close()
	}
	b.ReportMetric(float64(n)*float64(b.N)/total.Seconds(), "claims/s")
	b.ReportMetric(bytesPerClaim, "index-bytes/claim")
	b.ReportMetric(float64(peak.heap)/(1<<20), "peak-heap-MiB")
	b.ReportMetric(float64(peakRSS)/(1<<20), "peak-RSS-MiB")
	b.ReportMetric(float64(peak.anon)/(1<<20), "peak-anon-MiB")
	b.ReportMetric(float64(peak.file)/(1<<20), "peak-file-MiB")
}

// memPeaks are the largest values sampled of the Go heap in use and of the
// anonymous and file-backed resident memory.
type memPeaks struct{ heap, anon, file uint64 }

func (p memPeaks) max(q memPeaks) memPeaks {
	return memPeaks{max(p.heap, q.heap), max(p.anon, q.anon), max(p.file, q.file)}
}

func sampleMemory(stop chan struct{}) memPeaks {
	var peak memPeaks
	var ms runtime.MemStats
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		runtime.ReadMemStats(&ms)
		st := procStatus("RssAnon", "RssFile")
		peak = peak.max(memPeaks{ms.HeapInuse, st[0], st[1]})
		select {
		case <-stop:
			return peak
		case <-t.C:
		}
	}
}

// vmHWM returns the process's peak resident set size, from /proc.
func vmHWM() uint64 { return procStatus("VmHWM")[0] }

// procStatus returns the sizes /proc/self/status gives for keys, in bytes
// (0 for a key it lacks).
func procStatus(keys ...string) []uint64 {
	out := make([]uint64, len(keys))
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return out
	}
	for _, line := range strings.Split(string(b), "\n") {
		for i, key := range keys {
			if rest, ok := strings.CutPrefix(line, key+":"); ok {
				var kb uint64
				fmt.Sscanf(strings.TrimSpace(rest), "%d kB", &kb)
				out[i] = kb << 10
			}
		}
	}
	return out
}
