// Command append measures append throughput of vouch's builder log against
// raw tessera on the same disk, with the same entries and concurrency, and
// the bytes on disk per entry. bench/append.sh runs it and writes the table
// in BENCHMARKS.md.
//
//	go run ./bench/append -mode vouch -n 100000 -c 1024 -dir /tmp/x
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime/pprof"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	"k8s.io/klog/v2"

	"github.com/vouch-dev/vouch/buildlog"
	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/keys"
)

func main() {
	klog.SetOutput(io.Discard)
	kfs := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(kfs)
	kfs.Set("logtostderr", "false")
	mode := flag.String("mode", "vouch", "vouch or raw (tessera alone)")
	n := flag.Int("n", 100000, "entries to append")
	conc := flag.Int("c", 1024, "concurrent adders")
	dir := flag.String("dir", "", "empty directory on the disk to measure")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the appends to this file")
	settle := flag.Duration("settle", 3*time.Second, "wait before measuring the disk, for garbage collection")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "-dir is required")
		os.Exit(2)
	}
	kf, err := keys.Generate(filepath.Join(*dir, "keys"), "bench")
	must(err)
	id, err := keys.LoadIdentity(kf.Key)
	must(err)
	entries := make([]*claim.Claim, *n)
	var bytesTotal int
	for i := range entries {
		entries[i] = benchClaim(i)
		b, _ := entries[i].Marshal()
		bytesTotal += len(b)
	}
	ctx := context.Background()
	var add func(i int) error
	var closeFn func() error
	logDir := filepath.Join(*dir, "log")
	switch *mode {
	case "vouch":
		l, err := buildlog.Open(ctx, buildlog.Options{Dir: logDir, Identity: id, BatchMaxSize: uint(*conc), BatchMaxAge: 50 * time.Millisecond, GarbageCollectionInterval: time.Second})
		must(err)
		add = func(i int) error { _, err := l.Add(ctx, entries[i]); return err }
		closeFn = l.Close
	case "raw":
		must(os.MkdirAll(logDir, 0o755))
		drv, err := posix.New(ctx, posix.Config{Path: logDir})
		must(err)
		ap, shutdown, _, err := tessera.NewAppender(ctx, drv, tessera.NewAppendOptions().
			WithCheckpointSigner(id.Signer).WithCheckpointInterval(time.Second).
			WithBatching(uint(*conc), 50*time.Millisecond).
			// The same engine settings as buildlog uses.
			WithGarbageCollectionInterval(time.Second))
		must(err)
		add = func(i int) error {
			b, _ := entries[i].Marshal()
			_, err := ap.Add(ctx, tessera.NewEntry(b))()
			return err
		}
		closeFn = func() error { return shutdown(ctx) }
	default:
		fmt.Fprintln(os.Stderr, "-mode must be vouch or raw")
		os.Exit(2)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		must(err)
		must(pprof.StartCPUProfile(f))
		defer pprof.StopCPUProfile()
	}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < *conc; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= *n {
					return
				}
				must(add(i))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	// Let the engine's garbage collector remove the partial tiles and
	// bundles that full ones superseded, as it does in a running log.
	time.Sleep(*settle)
	must(closeFn())
	var disk int64
	filepath.WalkDir(logDir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			// Allocated blocks, as du counts them: bbolt grows its file
			// sparsely, and its apparent size overstates what it uses.
			if info, err := d.Info(); err == nil {
				if st, ok := info.Sys().(*syscall.Stat_t); ok {
					disk += st.Blocks * 512
				}
			}
		}
		return nil
	})
	fmt.Printf("mode=%s n=%d c=%d seconds=%.2f entries_per_s=%.0f entry_bytes=%.0f disk_bytes_per_entry=%.0f\n",
		*mode, *n, *conc, elapsed.Seconds(), float64(*n)/elapsed.Seconds(), float64(bytesTotal)/float64(*n), float64(disk)/float64(*n))
}

// benchClaim is a typical nix claim: a store path, a hash, a size, three
// references, a deriver and a time (about 330 bytes).
func benchClaim(i int) *claim.Claim {
	h := func(n int) string {
		const alpha = "0123456789abcdfghijklmnpqrsvwxyz"
		b := make([]byte, 32)
		for j := range b {
			b[j] = alpha[(n>>(j%6*5)+j*7)%32]
		}
		return string(b)
	}
	refs := claim.SortReferences([]string{h(i*3+1) + "-glibc-2.39", h(i*3+2) + "-openssl-3.0.13", h(i) + fmt.Sprintf("-pkg-%d", i)})
	return &claim.Claim{
		Kind:       claim.KindNix,
		Subject:    fmt.Sprintf("/nix/store/%s-pkg-%d", h(i), i),
		NarHash:    "sha256:" + h(i*7) + h(i * 11)[:20],
		NarSize:    uint64(100000 + i),
		References: refs,
		Deriver:    h(i*5) + fmt.Sprintf("-pkg-%d.drv", i),
		Time:       time.Unix(1790000000+int64(i), 0).UTC(),
	}
}

func must(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
