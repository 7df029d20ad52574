package index

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
)

// logFiles holds what of one log is written once and never changes, in
// files beside the database that only ever grow:
//
//	<seq>.dat    the entries, one after another, exactly as the log served them
//	<seq>.end    for entry n, the offset in .dat where it ends (8 bytes BE):
//	             entry n is .dat[end[n-1] : end[n]], end[-1] being 0
//	<seq>.tiles  the full level-0 tiles, tile t at t × blockedLen, in the
//	             blocked layout of tiles.go
//
// Neither is ever rewritten, so a file suits them better than a B-tree:
// reading entry n costs two loads from a memory map (its two offsets and
// its bytes), and a leaf tile one, where a bbolt lookup walks three or four
// pages of a tree and searches each. Those lookups were a third of a
// verdict. (Partial tiles, at the tree's right edge, and the tiles above
// level 0, few and cached, stay in the database.)
//
// The database stays the authority on how many entries are indexed (the
// log's synced mark; full leaf tiles are synced/256). Index.Append writes a
// batch's entries and the leaf tiles it filled here and syncs the files
// *before* its transaction commits, so everything committed is on disk; a
// crash after the files were written and before the commit leaves a tail
// beyond synced, which Open cuts off. Files shorter than synced mean
// entries the database acknowledged are gone (the files were removed or
// truncated by hand): Open refuses the index and says how to rebuild it.
//
// Reads go through a shared, read-only memory map of each file, mapped
// with room to grow and mapped again, larger, when a read needs more; the
// old maps stay valid until Close, so a slice a reader holds never goes
// away under it. Only what a commit published (entries) or what was synced
// (tiles, read only below a synced mark a committed transaction holds) is
// read: the bytes beyond may be a writer's uncommitted tail.
type logFiles struct {
	dat, end, tiles *os.File

	// count entries are committed: readable, and on disk; they take
	// datLen bytes of .dat. datLen is stored before count, so a reader
	// that loads count and then datLen sees at least that count's bytes.
	count, datLen atomic.Uint64
	// leafTiles full leaf tiles are written and synced: at least those of
	// every committed transaction.
	leafTiles atomic.Uint64

	mu     sync.Mutex               // serialises remaps and commits
	maps   atomic.Pointer[fileMaps] // the current maps
	mapped [][]byte                 // every map made, unmapped by close
}

type fileMaps struct{ dat, end, tiles []byte }

// leafTile is a full level-0 tile to be written: its number and its value
// in the blocked layout.
type leafTile struct {
	n     int64
	value []byte
}

// filesDir is where the log files of the index at dbPath live.
func filesDir(dbPath string) string { return dbPath + ".logs" }

var errEntriesLost = errors.New("entries the index acknowledged are missing")

// openLogFiles opens (creating when needed) the files of the log with
// sequence number seq of the index at dbPath, and makes them hold exactly
// the first entries entries and the full leaf tiles of the first tiles: a
// longer tail is cut off, less is an error.
func openLogFiles(dbPath string, seq uint32, entries, tiles uint64) (*logFiles, error) {
	dir := filesDir(dbPath)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	base := filepath.Join(dir, fmt.Sprintf("%08x", seq))
	f := &logFiles{}
	for _, file := range []struct {
		f   **os.File
		ext string
	}{{&f.dat, ".dat"}, {&f.end, ".end"}, {&f.tiles, ".tiles"}} {
		h, err := os.OpenFile(base+file.ext, os.O_RDWR|os.O_CREATE, 0o600)
		if err != nil {
			f.close()
			return nil, err
		}
		*file.f = h
	}
	if err := f.recover(entries, tiles); err != nil {
		f.close()
		if errors.Is(err, errEntriesLost) {
			return nil, fmt.Errorf("%w: the log files were truncated or removed outside vouch. Delete %s and %s, then run vouch sync to rebuild the index from the logs", err, dbPath, dir)
		}
		return nil, err
	}
	return f, nil
}

// recover cuts the files to synced entries and the full leaf tiles of
// the first tiles entries.
func (f *logFiles) recover(synced, tiles uint64) error {
	endSize, err := fileSize(f.end)
	if err != nil {
		return err
	}
	datSize, err := fileSize(f.dat)
	if err != nil {
		return err
	}
	tilesSize, err := fileSize(f.tiles)
	if err != nil {
		return err
	}
	lost := func(file *os.File, has uint64, what string) error {
		return fmt.Errorf("%w: %s holds %d %s, %d entries were indexed", errEntriesLost, file.Name(), has, what, synced)
	}
	if endSize < synced*8 {
		return lost(f.end, endSize/8, "entries")
	}
	var datLen uint64
	if synced > 0 {
		var b [8]byte
		if _, err := f.end.ReadAt(b[:], int64(synced-1)*8); err != nil {
			return err
		}
		if datLen = binary.BigEndian.Uint64(b[:]); datLen > datSize {
			return lost(f.dat, datSize, "bytes of entries")
		}
	}
	full := tiles / tileWidth
	if tilesSize < full*blockedLen {
		return lost(f.tiles, tilesSize/blockedLen, "full tiles")
	}
	for _, cut := range []struct {
		f          *os.File
		size, want uint64
	}{{f.end, endSize, synced * 8}, {f.dat, datSize, datLen}, {f.tiles, tilesSize, full * blockedLen}} {
		if cut.size > cut.want {
			if err := cut.f.Truncate(int64(cut.want)); err != nil {
				return err
			}
		}
	}
	f.leafTiles.Store(full)
	f.commit(synced, datLen)
	return nil
}

func fileSize(f *os.File) (uint64, error) {
	st, err := f.Stat()
	if err != nil {
		return 0, err
	}
	return uint64(st.Size()), nil
}

// write writes entries first, first+1, … and the full leaf tiles given,
// and syncs the files; entries before first must be on disk already.
// No entry is readable until commit; a batch that is not committed is
// overwritten by the next write, or cut off by the next open.
func (f *logFiles) write(first uint64, entries [][]byte, tiles []leafTile) (datLen uint64, err error) {
	var start uint64
	if first > 0 {
		var b [8]byte
		if _, err := f.end.ReadAt(b[:], int64(first-1)*8); err != nil {
			return 0, fmt.Errorf("%s: the end of entry %d: %w", f.end.Name(), first-1, err)
		}
		start = binary.BigEndian.Uint64(b[:])
	}
	size := 0
	for _, e := range entries {
		size += len(e)
	}
	data := make([]byte, 0, size)
	ends := make([]byte, 0, 8*len(entries))
	datLen = start
	for _, e := range entries {
		data = append(data, e...)
		datLen += uint64(len(e))
		ends = binary.BigEndian.AppendUint64(ends, datLen)
	}
	if _, err := f.dat.WriteAt(data, int64(start)); err != nil {
		return 0, err
	}
	if _, err := f.end.WriteAt(ends, int64(first*8)); err != nil {
		return 0, err
	}
	var leafTiles uint64
	for _, t := range tiles {
		if len(t.value) != blockedLen {
			return 0, fmt.Errorf("leaf tile %d holds %d bytes, want %d", t.n, len(t.value), blockedLen)
		}
		if _, err := f.tiles.WriteAt(t.value, t.n*blockedLen); err != nil {
			return 0, err
		}
		leafTiles = max(leafTiles, uint64(t.n)+1)
	}
	for _, file := range []*os.File{f.dat, f.end, f.tiles} {
		if err := file.Sync(); err != nil {
			return 0, err
		}
	}
	f.mu.Lock()
	if leafTiles > f.leafTiles.Load() {
		f.leafTiles.Store(leafTiles)
	}
	f.mu.Unlock()
	return datLen, nil
}

// commit publishes what write wrote, once the transaction that indexed
// it committed.
func (f *logFiles) commit(count, datLen uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if count >= f.count.Load() {
		f.datLen.Store(datLen)
		f.count.Store(count)
	}
}

// get returns entry n, or nil if it is not committed. The slice is part of
// a read-only map: it must not be written, and not be used after close.
func (f *logFiles) get(n uint64) ([]byte, error) {
	if n >= f.count.Load() {
		return nil, nil
	}
	m := f.maps.Load()
	if m == nil || uint64(len(m.end)) < (n+1)*8 {
		var err error
		if m, err = f.remap(0, (n+1)*8, 0); err != nil {
			return nil, err
		}
	}
	var start uint64
	if n > 0 {
		start = binary.BigEndian.Uint64(m.end[(n-1)*8:])
	}
	end := binary.BigEndian.Uint64(m.end[n*8:])
	if start > end || end > f.datLen.Load() {
		return nil, fmt.Errorf("%s: entry %d spans [%d, %d): the file is damaged; delete the index and run vouch sync to rebuild it", f.end.Name(), n, start, end)
	}
	if uint64(len(m.dat)) < end {
		var err error
		if m, err = f.remap(end, 0, 0); err != nil {
			return nil, err
		}
	}
	return m.dat[start:end:end], nil
}

// leafTile returns full leaf tile n, which the caller knows is on disk
// (its 256 leaves are below a synced mark a committed transaction holds).
func (f *logFiles) leafTile(n int64) ([]byte, error) {
	if n < 0 || uint64(n) >= f.leafTiles.Load() {
		return nil, fmt.Errorf("%s: full tile %d is not on disk (%d are): the stored tree is inconsistent", f.tiles.Name(), n, f.leafTiles.Load())
	}
	end := uint64(n+1) * blockedLen
	m := f.maps.Load()
	if m == nil || uint64(len(m.tiles)) < end {
		var err error
		if m, err = f.remap(0, 0, end); err != nil {
			return nil, err
		}
	}
	return m.tiles[end-blockedLen : end : end], nil
}

// remap maps the files anew where the current maps are shorter than
// asked, with room for the files to grow.
func (f *logFiles) remap(datLen, endLen, tilesLen uint64) (*fileMaps, error) {
	want := [3]uint64{datLen, endLen, tilesLen}
	f.mu.Lock()
	defer f.mu.Unlock()
	next := &fileMaps{}
	if m := f.maps.Load(); m != nil {
		*next = *m
	}
	// Maps twice the size asked for: a growing log is mapped again only
	// each time it doubles. The map reaches beyond the file's end; those
	// pages are read only once the file has grown over them, because reads
	// stop at what is committed or synced, which the files always hold.
	for i, file := range []struct {
		f *os.File
		m *[]byte
	}{{f.dat, &next.dat}, {f.end, &next.end}, {f.tiles, &next.tiles}} {
		if uint64(len(*file.m)) >= want[i] {
			continue // long enough, maybe remapped meanwhile by another reader
		}
		m, err := mapFile(file.f, grow(want[i]))
		if err != nil {
			return nil, err
		}
		f.mapped = append(f.mapped, m)
		*file.m = m
	}
	f.maps.Store(next)
	return next, nil
}

func grow(n uint64) uint64 { return max(2*n, 1<<16) }

// close unmaps and closes the files. No slice get or leafTile returned may
// be used after it.
func (f *logFiles) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.maps.Store(nil)
	for _, m := range f.mapped {
		unmapFile(m)
	}
	f.mapped = nil
	var err error
	for _, file := range []*os.File{f.dat, f.end, f.tiles} {
		if file != nil {
			err = errors.Join(err, file.Close())
		}
	}
	return err
}

// size returns the bytes the committed entries and full leaf tiles take
// in the files.
func (f *logFiles) size() uint64 {
	return f.count.Load()*8 + f.datLen.Load() + f.count.Load()/tileWidth*blockedLen
}

// removeLogFiles removes the files of the log with sequence number seq,
// whose replica was dropped. A failure leaves files no log reads (a
// number is never reused); it is not worth failing for.
func removeLogFiles(dbPath string, seq uint32) {
	base := filepath.Join(filesDir(dbPath), fmt.Sprintf("%08x", seq))
	for _, ext := range []string{".dat", ".end", ".tiles"} {
		_ = os.Remove(base + ext)
	}
}
