package index

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/vouch-dev/vouch/internal/memtlog"
)

func entryFilePath(t *testing.T, x *Index, id LogID, ext string) string {
	t.Helper()
	return filepath.Join(filesDir(x.Path()), fmt.Sprintf("%08x%s", x.meta(id).seq, ext))
}

// TestEntryFilesCutAnUncommittedTail: a crash after a batch's entries were
// written to the files and before its transaction committed leaves bytes
// beyond what the index counts; the next open cuts them off and the log
// goes on from the last committed entry.
func TestEntryFilesCutAnUncommittedTail(t *testing.T) {
	id := LogID{"alice", "k1"}
	path := filepath.Join(t.TempDir(), "index.db")
	x, err := Open(path, id)
	if err != nil {
		t.Fatal(err)
	}
	if c, err := x.Append(id, batch(t, 0, 300, "o")); err != nil || c != nil {
		t.Fatal(c, err)
	}
	dat, end, tiles := entryFilePath(t, x, id, ".dat"), entryFilePath(t, x, id, ".end"), entryFilePath(t, x, id, ".tiles")
	x.Close()
	for _, f := range []string{dat, end, tiles} {
		fh, err := os.OpenFile(f, os.O_WRONLY|os.O_APPEND, 0)
		if err != nil {
			t.Fatal(err)
		}
		fh.Write(bytes.Repeat([]byte{0xff}, 1000)) // a torn, uncommitted write
		fh.Close()
	}

	x, err = Open(path, id)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if st, _ := os.Stat(end); st.Size() != 300*8 {
		t.Errorf("%s holds %d bytes after open, want %d", end, st.Size(), 300*8)
	}
	if st, _ := os.Stat(tiles); st.Size() != blockedLen {
		t.Errorf("%s holds %d bytes after open, want one full tile", tiles, st.Size())
	}
	if _, err := x.Entry(id, 300); err == nil {
		t.Error("entry 300 was never committed, but Entry returned it")
	}
	if c, err := x.Append(id, batch(t, 300, 300, "o")); err != nil || c != nil {
		t.Fatal(c, err)
	}
	var ref memtlog.Tree
	for i := 0; i < 600; i++ {
		ref.Add(mustEntry(t, i))
	}
	want, _ := ref.Root(600)
	if got, err := x.RootAt(id, 600); err != nil || got != want {
		t.Errorf("root of 600 entries %v (%v), want %v", got, err, want)
	}
	for _, n := range []int{0, 299, 300, 599} {
		got, err := x.Entry(id, uint64(n))
		if want, _ := entry(t, n, "o"); err != nil || !bytes.Equal(got, want) {
			t.Errorf("entry %d: %q, %v; want %q", n, got, err, want)
		}
	}
}

// TestEntryFilesLostAreRefused: entry files shorter than what the index
// acknowledged (removed or truncated outside vouch) make Open fail with a
// message saying what is wrong and how to rebuild, not serve a log with a
// hole.
func TestEntryFilesLostAreRefused(t *testing.T) {
	id := LogID{"alice", "k1"}
	path := filepath.Join(t.TempDir(), "index.db")
	for _, damage := range []struct {
		ext  string
		size int64
	}{{".end", 100*8 + 3}, {".dat", 10}, {".end", 0}, {".tiles", blockedLen - 1}} {
		os.RemoveAll(filesDir(path))
		os.Remove(path)
		x, err := Open(path, id)
		if err != nil {
			t.Fatal(err)
		}
		if c, err := x.Append(id, batch(t, 0, 300, "o")); err != nil || c != nil {
			t.Fatal(c, err)
		}
		f := entryFilePath(t, x, id, damage.ext)
		x.Close()
		if err := os.Truncate(f, damage.size); err != nil {
			t.Fatal(err)
		}
		x, err = Open(path, id)
		if err == nil {
			x.Close()
			t.Fatalf("%s cut to %d bytes: Open succeeded", damage.ext, damage.size)
		}
		for _, want := range []string{"acknowledged are missing", "vouch sync", filesDir(path)} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("%s cut to %d bytes: error %q does not say %q", damage.ext, damage.size, err, want)
			}
		}
	}
}

// TestEntryFilesGrowUnderReaders: readers read committed entries while a
// writer appends, so the files outgrow their maps many times over; every
// read returns the entry's exact bytes. Run with -race.
func TestEntryFilesGrowUnderReaders(t *testing.T) {
	id := LogID{"alice", "k1"}
	x, err := Open(filepath.Join(t.TempDir(), "index.db"), id)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	const batches, per = 40, 100
	var committed sync.WaitGroup
	committed.Add(1)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; i < batches; i++ {
			if c, err := x.Append(id, batch(t, i*per, per, "o")); err != nil || c != nil {
				t.Error(c, err)
				return
			}
			if i == 0 {
				committed.Done()
			}
		}
	}()
	committed.Wait()
	var readers sync.WaitGroup
	for r := 0; r < 3; r++ {
		readers.Add(1)
		go func() {
			defer readers.Done()
			for k := 0; ; k++ {
				select {
				case <-done:
					return
				default:
				}
				n := x.meta(id).files.count.Load()
				i := (uint64(k) * 7919) % n
				got, err := x.Entry(id, i)
				if want, _ := entry(t, int(i), "o"); err != nil || !bytes.Equal(got, want) {
					t.Errorf("entry %d of %d: %q, %v", i, n, got, err)
					return
				}
				if n > 0 {
					if got, err := x.Entry(id, n-1); err != nil || got == nil {
						t.Errorf("the newest entry %d: %v", n-1, err)
						return
					}
				}
			}
		}()
	}
	readers.Wait()
	<-done
	if m := len(x.meta(id).files.mapped); m > 40 {
		t.Errorf("%d maps made for %d batches: the maps do not grow geometrically", m, batches)
	}
}
