package index

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/vouch-dev/vouch/claim"
)

// mappedKiB returns the resident size of the process's mapping of path,
// from /proc/self/smaps.
func mappedKiB(t *testing.T, path string) int {
	t.Helper()
	smaps, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skip("no /proc/self/smaps:", err)
	}
	total, in := 0, false
	for _, line := range strings.Split(string(smaps), "\n") {
		fields := strings.Fields(line)
		if len(fields) >= 5 && strings.Contains(fields[0], "-") {
			in = len(fields) == 6 && fields[5] == path
			continue
		}
		if in && len(fields) == 3 && fields[0] == "Rss:" {
			var kb int
			fmt.Sscan(fields[1], &kb)
			total += kb
		}
	}
	return total
}

// touchEveryPage reads a byte of every page of every key and value in the
// database.
func touchEveryPage(t *testing.T, x *Index) {
	t.Helper()
	var sum byte
	var walk func(b *bolt.Bucket) error
	walk = func(b *bolt.Bucket) error {
		return b.ForEach(func(k, v []byte) error {
			if v == nil {
				return walk(b.Bucket(k))
			}
			for i := 0; i < len(v); i += 4096 {
				sum += v[i]
			}
			return nil
		})
	}
	err := x.db.View(func(tx *bolt.Tx) error {
		return tx.ForEach(func(_ []byte, b *bolt.Bucket) error { return walk(b) })
	})
	if err != nil {
		t.Fatal(err)
	}
	_ = sum
}

// TestReleaseMapped reads every page of an index, releases them, and checks
// that they left the process's resident set and that the index still reads
// the same.
func TestReleaseMapped(t *testing.T) {
	id := LogID{"alice", "k1"}
	path := filepath.Join(t.TempDir(), "index.db")
	x, err := Open(path, id)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	const n = 100000 // the database holds the subject runs (the entries are in files)
	for first := 0; first < n; first += 5000 {
		if c, err := x.Append(id, batch(t, first, 5000, "out")); err != nil || c != nil {
			t.Fatal(c, err)
		}
	}
	root, err := x.RootAt(id, n)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.SetCheckpoint(id, checkpointNote("alice", n, root)); err != nil {
		t.Fatal(err)
	}
	touchEveryPage(t, x)
	dat := filepath.Join(filesDir(path), fmt.Sprintf("%08x.dat", x.meta(id).seq))
	for i := 0; i < n; i += 7 { // as a sync does when subjects come again
		if _, err := x.Entry(id, uint64(i)); err != nil {
			t.Fatal(err)
		}
	}
	datBefore := mappedKiB(t, dat)
	before := mappedKiB(t, path)
	if before < 1024 {
		t.Fatalf("only %d KiB of the index are mapped after reading all of it", before)
	}
	if err := x.ReleaseMapped(); err != nil {
		t.Fatal(err)
	}
	after := mappedKiB(t, path)
	if after > before/10 {
		t.Fatalf("%d KiB of the index still mapped after releasing, %d before", after, before)
	}
	if datAfter := mappedKiB(t, dat); datBefore < 1024 || datAfter > datBefore/10 {
		t.Fatalf("%s: %d KiB mapped after reading entries, %d after releasing", dat, datBefore, datAfter)
	}
	t.Logf("%d KiB of the database mapped after reading it all, %d after releasing", before, after)
	for _, i := range []int{0, 4999, 12345, n - 1} {
		_, c := entry(t, i, "out")
		got, err := x.Claims(claim.KindNix, c.Subject)
		if err != nil || len(got) != 1 || got[0].Index != uint64(i) || got[0].Claim.Output() != c.Output() {
			t.Fatalf("entry %d after releasing: %+v %v", i, got, err)
		}
	}
	if again, err := x.RootAt(id, n); err != nil || again != root {
		t.Fatalf("root after releasing %v (%v), want %v", again, err, root)
	}
}
