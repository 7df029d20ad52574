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

// entryFiles holds one log's entries outside the database, in two files
// that only ever grow:
//
//	<seq>.dat  the entries, one after another, exactly as the log served them
//	<seq>.end  for entry n, the offset in .dat where it ends (8 bytes BE):
//	           entry n is .dat[end[n-1] : end[n]], end[-1] being 0
//
// Entries are never rewritten, so a file suits them better than a B-tree:
// reading entry n costs two loads from a memory map (its two offsets and
// its bytes) where a bbolt lookup walks four pages of a tree and searches
// each. That lookup was a fifth of a verdict.
//
// The database stays the authority on how many entries are indexed (the
// log's synced mark). Index.Append writes a batch's entries here and syncs
// both files *before* its transaction commits, so every committed entry
// is on disk; a crash after the files were written and before the commit
// leaves a tail beyond synced, which Open cuts off. Files shorter than
// synced mean entries the database acknowledged are gone (the files were
// removed or truncated by hand): Open refuses the index and says how to
// rebuild it.
//
// Reads go through a shared, read-only memory map of each file, mapped
// with room to grow and mapped again, larger, when a read needs more; the
// old maps stay valid until Close, so a slice a reader holds never goes
// away under it. Only entries below the count the last commit published
// are read: the bytes beyond may be a writer's uncommitted tail.
type entryFiles struct {
	dat, end *os.File

	// count entries are committed: readable, and on disk; they take
	// datLen bytes of .dat. datLen is stored before count, so a reader
	// that loads count and then datLen sees at least that count's bytes.
	count, datLen atomic.Uint64

	mu     sync.Mutex               // serialises remaps
	maps   atomic.Pointer[fileMaps] // the current maps
	mapped [][]byte                 // every map made, unmapped by close
}

type fileMaps struct{ dat, end []byte }

// entriesDir is where the entry files of the index at dbPath live.
func entriesDir(dbPath string) string { return dbPath + ".entries" }

// openEntryFiles opens (creating when needed) the entry files of the log
// with sequence number seq of the index at dbPath, and makes them hold
// exactly synced entries: a longer tail is cut off, fewer is an error.
func openEntryFiles(dbPath string, seq uint32, synced uint64) (*entryFiles, error) {
	dir := entriesDir(dbPath)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	base := filepath.Join(dir, fmt.Sprintf("%08x", seq))
	f := &entryFiles{}
	var err error
	if f.dat, err = os.OpenFile(base+".dat", os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		return nil, err
	}
	if f.end, err = os.OpenFile(base+".end", os.O_RDWR|os.O_CREATE, 0o600); err != nil {
		f.dat.Close()
		return nil, err
	}
	if err := f.recover(synced); err != nil {
		f.close()
		if errors.Is(err, errEntriesLost) {
			return nil, fmt.Errorf("%w: the entry files were truncated or removed outside vouch. Delete %s and %s, then run vouch sync to rebuild the index from the logs", err, dbPath, dir)
		}
		return nil, err
	}
	return f, nil
}

var errEntriesLost = errors.New("entries the index acknowledged are missing")

// recover cuts both files to synced entries.
func (f *entryFiles) recover(synced uint64) error {
	endSize, err := fileSize(f.end)
	if err != nil {
		return err
	}
	datSize, err := fileSize(f.dat)
	if err != nil {
		return err
	}
	lost := func(has uint64) error {
		return fmt.Errorf("%w: %s holds %d entries, %d were indexed", errEntriesLost, f.end.Name(), has, synced)
	}
	if endSize < synced*8 {
		return lost(endSize / 8)
	}
	var datLen uint64
	if synced > 0 {
		var b [8]byte
		if _, err := f.end.ReadAt(b[:], int64(synced-1)*8); err != nil {
			return err
		}
		datLen = binary.BigEndian.Uint64(b[:])
		if datLen > datSize {
			return lost(synced - 1)
		}
	}
	if endSize > synced*8 {
		if err := f.end.Truncate(int64(synced * 8)); err != nil {
			return err
		}
	}
	if datSize > datLen {
		if err := f.dat.Truncate(int64(datLen)); err != nil {
			return err
		}
	}
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

// write writes entries first, first+1, … and syncs the files; entries
// before first must be on disk already. Nothing is readable until commit;
// a batch that is not committed is overwritten by the next write, or cut
// off by the next open.
func (f *entryFiles) write(first uint64, entries [][]byte) (datLen uint64, err error) {
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
	if err := f.dat.Sync(); err != nil {
		return 0, err
	}
	if err := f.end.Sync(); err != nil {
		return 0, err
	}
	return datLen, nil
}

// commit publishes what write wrote, once the transaction that indexed
// it committed.
func (f *entryFiles) commit(count, datLen uint64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if count >= f.count.Load() {
		f.datLen.Store(datLen)
		f.count.Store(count)
	}
}

// get returns entry n, or nil if it is not committed. The slice is part of
// a read-only map: it must not be written, and not be used after close.
func (f *entryFiles) get(n uint64) ([]byte, error) {
	if n >= f.count.Load() {
		return nil, nil
	}
	m := f.maps.Load()
	if m == nil || uint64(len(m.end)) < (n+1)*8 {
		var err error
		if m, err = f.remap((n+1)*8, 0); err != nil {
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
		if m, err = f.remap(0, end); err != nil {
			return nil, err
		}
	}
	return m.dat[start:end:end], nil
}

// remap maps the files anew so that the maps hold at least endLen bytes
// of .end and datLen of .dat, with room for the files to grow.
func (f *entryFiles) remap(endLen, datLen uint64) (*fileMaps, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := f.maps.Load()
	if m != nil && uint64(len(m.end)) >= endLen && uint64(len(m.dat)) >= datLen {
		return m, nil // another reader remapped meanwhile
	}
	next := &fileMaps{}
	if m != nil {
		*next = *m
	}
	// Maps twice the size asked for: a growing log is mapped again only
	// each time it doubles. The map reaches beyond the file's end; those
	// pages are read only once the file has grown over them, because a
	// read stops at the committed count, which the files always hold.
	var err error
	if m == nil || uint64(len(m.end)) < endLen {
		if next.end, err = mapFile(f.end, grow(endLen)); err != nil {
			return nil, err
		}
		f.mapped = append(f.mapped, next.end)
	}
	if m == nil || uint64(len(m.dat)) < datLen {
		if next.dat, err = mapFile(f.dat, grow(datLen)); err != nil {
			return nil, err
		}
		f.mapped = append(f.mapped, next.dat)
	}
	f.maps.Store(next)
	return next, nil
}

func grow(n uint64) uint64 { return max(2*n, 1<<16) }

// close unmaps and closes the files. No slice get returned may be used
// after it.
func (f *entryFiles) close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.maps.Store(nil)
	for _, m := range f.mapped {
		unmapFile(m)
	}
	f.mapped = nil
	return errors.Join(f.dat.Close(), f.end.Close())
}

// size returns the bytes the committed entries take in both files.
func (f *entryFiles) size() uint64 { return f.count.Load()*8 + f.datLen.Load() }
