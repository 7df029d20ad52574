package buildlog

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/transparency-dev/tessera"
	tesseraaws "github.com/transparency-dev/tessera/storage/aws"

	"github.com/vouch-dev/vouch/internal/testservers"
)

// TestBenchSharedAppend measures append throughput on S3 + MariaDB: raw
// tessera (its AWS driver alone, appending the claim bytes), vouch with one
// frontend, and vouch with two frontends (two Logs with their own engines
// and connection pools, the adders split between them), with the same
// claims, concurrency, batching and servers, alternating the three in each
// round. The vouch adders make Add's three steps themselves (Reserve,
// append, Confirm; a fresh subject is never logged already) to time each.
// Raw tessera waits out pushback as vouch does. It also reports the bucket's bytes per entry and the subject
// guard's table bytes per claim. Run with
//
//	VOUCH_BENCH_SHARED=N go test ./buildlog -run TestBenchSharedAppend -v
//
// (N entries per run; VOUCH_BENCH_RUNS rounds, default 3).
func TestBenchSharedAppend(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("VOUCH_BENCH_SHARED"))
	if n == 0 {
		t.Skip("set VOUCH_BENCH_SHARED=<entries> to run")
	}
	runs := 3
	if r, err := strconv.Atoi(os.Getenv("VOUCH_BENCH_RUNS")); err == nil {
		runs = r
	}
	const conc = 256
	db := testservers.StartMariaDB(t)
	s3 := testservers.StartS3(t)
	id := testIdentity(t, t.TempDir())
	entries := make([][]byte, n)
	claimBytes := 0
	for i := range entries {
		entries[i], _ = testClaim(i, "a").Marshal()
		claimBytes += len(entries[i])
	}
	opts := func(sh *Shared) Options {
		return Options{Identity: id, Shared: sh, CheckpointInterval: time.Second, BatchMaxSize: conc, BatchMaxAge: 25 * time.Millisecond}
	}

	type result struct {
		rate                 float64
		bucketBytes, dbBytes float64
	}
	results := map[string][]result{}
	for r := 0; r < runs; r++ {
		for _, mode := range rotate([]string{"raw", "vouch", "vouch×2"}, r) {
			name := fmt.Sprintf("b%d%s", r, map[string]string{"raw": "raw", "vouch": "v1", "vouch×2": "v2"}[mode])
			sh := &Shared{Bucket: name, Endpoint: s3.Endpoint, AccessKey: s3.AccessKey, SecretKey: s3.SecretKey, DSN: db.NewDatabase(t, name)}
			s3.NewPublicBucket(t, name)
			var adders []func(context.Context, int) error
			var phases [3]atomic.Int64 // time spent reserving, appending, confirming (vouch)
			var closers []func()
			switch mode {
			case "raw":
				ctx, cancel := context.WithCancel(context.Background())
				cfg, _, err := sh.driverConfig(ctx)
				if err != nil {
					t.Fatal(err)
				}
				driver, err := tesseraaws.New(ctx, cfg)
				if err != nil {
					t.Fatal(err)
				}
				o := opts(sh)
				appender, shutdown, _, err := tessera.NewAppender(ctx, driver, tessera.NewAppendOptions().
					WithCheckpointSigner(id.Signer).WithCheckpointInterval(o.CheckpointInterval).
					WithBatching(o.BatchMaxSize, o.BatchMaxAge))
				if err != nil {
					t.Fatal(err)
				}
				adders = append(adders, func(ctx context.Context, i int) error {
					// Pushback is waited out, as vouch does.
					for {
						_, err := appender.Add(ctx, tessera.NewEntry(entries[i]))()
						if !errors.Is(err, tessera.ErrPushback) {
							return err
						}
						time.Sleep(10 * time.Millisecond)
					}
				})
				closers = append(closers, func() { shutdown(context.Background()); cancel() })
			default:
				for range map[string]int{"vouch": 1, "vouch×2": 2}[mode] {
					l, err := Open(context.Background(), opts(sh))
					if err != nil {
						t.Fatal(err)
					}
					adders = append(adders, func(ctx context.Context, i int) error {
						t0 := time.Now()
						r, err := l.guard.Reserve(ctx, testClaim(i, "a"))
						if err != nil {
							return err
						}
						t1 := time.Now()
						idx, err := l.append(ctx, entries[i], r.Renew)
						if err != nil {
							return err
						}
						t2 := time.Now()
						err = r.Confirm(ctx, idx.Index)
						phases[0].Add(int64(t1.Sub(t0)))
						phases[1].Add(int64(t2.Sub(t1)))
						phases[2].Add(int64(time.Since(t2)))
						return err
					})
					closers = append(closers, func() { l.Close() })
				}
			}
			start := time.Now()
			var next atomic.Int64
			var wg sync.WaitGroup
			for w := range conc {
				add := adders[w%len(adders)]
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := int(next.Add(1)) - 1
						if i >= n {
							return
						}
						if err := add(context.Background(), i); err != nil {
							t.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			// Let the log integrate and collect garbage before measuring.
			time.Sleep(3 * time.Second)
			for _, c := range closers {
				c()
			}
			res := result{
				rate:        float64(n) / elapsed.Seconds(),
				bucketBytes: float64(dirBytes(filepath.Join(s3.Dir, name))) / float64(n),
				dbBytes:     float64(tableBytes(t, sh.DSN, "VouchSubjects")) / float64(n),
			}
			results[mode] = append(results[mode], res)
			if mode != "raw" {
				t.Logf("mean per claim: reserve %v, append %v, confirm %v", time.Duration(phases[0].Load()/int64(n)), time.Duration(phases[1].Load()/int64(n)), time.Duration(phases[2].Load()/int64(n)))
			}
			t.Logf("round %d %-8s %8.0f entries/s  bucket %5.0f B/entry  guard table %4.0f B/claim", r, mode, res.rate, res.bucketBytes, res.dbBytes)
		}
	}
	median := func(mode string, f func(result) float64) float64 {
		var v []float64
		for _, r := range results[mode] {
			v = append(v, f(r))
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	rate := func(r result) float64 { return r.rate }
	raw := median("raw", rate)
	t.Logf("| entries | concurrency | raw tessera entries/s | vouch entries/s (ratio) | vouch, 2 frontends entries/s (ratio) | bucket B/entry raw / vouch | guard table B/claim | claim size |")
	t.Logf("| %d (median of %d) | %d | %.0f | %.0f (**%.2f**) | %.0f (**%.2f**) | %.0f / %.0f | %.0f | %d |", n, runs, conc, raw,
		median("vouch", rate), median("vouch", rate)/raw, median("vouch×2", rate), median("vouch×2", rate)/raw,
		median("raw", func(r result) float64 { return r.bucketBytes }), median("vouch", func(r result) float64 { return r.bucketBytes }),
		median("vouch", func(r result) float64 { return r.dbBytes }), claimBytes/n)
}

func rotate(s []string, k int) []string {
	k %= len(s)
	return append(append([]string{}, s[k:]...), s[:k]...)
}

// dirBytes is the allocated size of the files under dir, as du counts.
func dirBytes(dir string) int64 {
	var total int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if info, err := d.Info(); err == nil {
				total += info.Sys().(*syscall.Stat_t).Blocks * 512
			}
		}
		return nil
	})
	return total
}

// tableBytes is a table's data and index size as InnoDB reports it (0 if
// the table does not exist).
func tableBytes(t *testing.T, dsn, table string) int64 {
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.Exec("ANALYZE TABLE " + table)
	var size sql.NullInt64
	db.QueryRow(`SELECT data_length + index_length FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?`, table).Scan(&size)
	return size.Int64
}
