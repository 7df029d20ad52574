package buildlog

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/transparency-dev/tessera/api"
	bolt "go.etcd.io/bbolt"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/internal/runs"
)

// subjectIndex maps each logged (kind, subject) to its log index, so that
// Add can refuse a second output for a subject and answer retries with the
// logged index. It stores no claims: the logged claim is read back from the
// log when a resubmission must be compared with it.
//
// On disk it is a set of sorted runs (package internal/runs) of 13-byte
// records, the first 8 bytes of SHA-256 of the subject key and the index:
// appending costs a constant amount of sequential work per claim however
// large the log grows, where a B-tree of random keys rewrote most of its
// pages on every flush and cost about 100 bytes per claim.
//
// The index is derived data: the log is the truth. A new mapping is first
// held in memory (pending), where lookups see it at once, and written to
// bbolt by a background flusher, off the path that acknowledges a claim.
//
// In front of the runs sits a Bloom filter (runs.Filter) of every mapped
// hash, pending or on disk, built from the runs at start-up after catchUp.
// Most claims are for new subjects; the filter answers "not logged" for
// about 99% of them without searching the runs. It never answers "not
// logged" for a mapped hash: every hash enters it under mu in the same step
// that makes it pending, and a rebuild (when the filter outgrows its size)
// reads the runs and the pending map under mu, so no flush can move a hash
// from one to the other unseen.
//
// Merging runs frees bbolt pages that a larger merged run cannot reuse, so
// the file would grow to two or three times its data. After a flush that
// leaves more than half of the file free, the flusher copies the index into
// a fresh file (bolt.Compact) and renames it over the old one; a crash at
// any point leaves either the old or the new file, each consistent.
//
// Invariant: every entry below the stored high-water mark is in the runs.
// Entries at or above it may or may not be; catchUp indexes them from the
// log at start-up, so a crash loses no mapping that matters.
type subjectIndex struct {
	path   string
	reader func(idx uint64) (*claim.Claim, error)

	// dbMu guards the db handle, which compaction replaces: every use of
	// db holds it for reading, compaction for writing.
	dbMu sync.RWMutex
	db   *bolt.DB

	mu       sync.Mutex
	acked    ackWindow          // acked.next: every index below it is acknowledged and mapped (pending or on disk)
	pending  map[[8]byte]uint64 // subject hash → index, not yet on disk
	flushing map[[8]byte]uint64 // the former pending map while a flush writes it; nil otherwise
	filter   *runs.Filter       // every mapped hash; nil until startFilter

	kick    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
	flushMu sync.Mutex // one flush at a time
}

var (
	bucketRuns   = []byte("runs")
	bucketMeta   = []byte("meta")
	keyHighWater = []byte("high-water")
	// bucketOldSubjects is the B-tree of earlier versions; it is dropped
	// and rebuilt from the log as runs.
	bucketOldSubjects = []byte("subjects")
)

// flushEvery bounds how long a mapping stays only in memory; flushAt is the
// number of pending mappings that triggers an early flush.
const (
	flushEvery = time.Second
	flushAt    = 1 << 16
)

// compactAbove is the file size below which the index is never compacted:
// small files are not worth a copy.
const compactAbove = 4 << 20

var boltOptions = &bolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType}

func openSubjectIndex(path string) (*subjectIndex, error) {
	// A compaction interrupted by a crash leaves its copy behind; the
	// original is intact.
	if err := os.Remove(path + ".compact"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("buildlog: remove the unfinished compaction %s.compact: %w", path, err)
	}
	db, err := bolt.Open(path, 0o600, boltOptions)
	if err != nil {
		return nil, fmt.Errorf("buildlog: open subject index %s: %w (it is derived from the log: delete the file and restart to rebuild it)", path, err)
	}
	s := &subjectIndex{path: path, db: db, pending: map[[8]byte]uint64{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	err = db.Update(func(tx *bolt.Tx) error {
		if tx.Bucket(bucketOldSubjects) != nil {
			if err := tx.DeleteBucket(bucketOldSubjects); err != nil {
				return err
			}
			if err := tx.DeleteBucket(bucketMeta); err != nil && !errors.Is(err, bolt.ErrBucketNotFound) {
				return err
			}
		}
		if _, err := tx.CreateBucketIfNotExists(bucketRuns); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bucketMeta)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("buildlog: subject index %s: %w (it is derived from the log: delete the file and restart to rebuild it)", path, err)
	}
	s.acked.next, err = s.highWater()
	if err != nil {
		db.Close()
		return nil, err
	}
	go s.flusher()
	return s, nil
}

func subjectHash(key string) [8]byte {
	h := sha256.Sum256([]byte(key))
	return [8]byte(h[:8])
}

func u64bytes(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

// view runs fn in a read transaction on the current file.
func (s *subjectIndex) view(fn func(tx *bolt.Tx) error) error {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	return s.db.View(fn)
}

func (s *subjectIndex) highWater() (uint64, error) {
	var hw uint64
	err := s.view(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyHighWater); len(v) == 8 {
			hw = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return hw, err
}

// lookup returns the logged claim for key, reading it back from the log.
//
// Two subjects whose keys share the 8-byte hash (about one pair in 10^11
// among 10^4 claims, 3 in 10^4 among 10^8) map to the first one logged: the
// claim read back then has another key, and the second subject is treated
// as not yet logged. At worst a log could then hold two claims for that
// second subject — which followers detect and report as evidence.
func (s *subjectIndex) lookup(key string, h [8]byte) (*claim.Claim, uint64, bool, error) {
	s.mu.Lock()
	if s.filter != nil && !s.filter.MayContain(h[:]) {
		s.mu.Unlock()
		return nil, 0, false, nil
	}
	idx, found := s.pending[h]
	if !found {
		idx, found = s.flushing[h]
	}
	s.mu.Unlock()
	if !found {
		err := s.view(func(tx *bolt.Tx) error {
			idx, found = runs.Lookup(tx.Bucket(bucketRuns), h[:])
			return nil
		})
		if err != nil || !found {
			return nil, 0, false, err
		}
	}
	c, err := s.reader(idx)
	if err != nil {
		return nil, 0, false, fmt.Errorf("buildlog: read logged claim %d: %w", idx, err)
	}
	if c.Key() != key {
		return nil, 0, false, nil
	}
	return c, idx, true, nil
}

// record maps a freshly appended entry. It only touches memory; the flusher
// writes it to disk.
func (s *subjectIndex) record(h [8]byte, idx uint64) {
	s.mu.Lock()
	if _, dup := s.pending[h]; !dup {
		if _, dup := s.flushing[h]; !dup {
			s.pending[h] = idx
		}
	}
	if s.filter != nil {
		s.filter.Add(h[:])
		if s.filter.Full() {
			s.fillFilterLocked(2 * s.filter.Len())
		}
	}
	s.acked.add(idx)
	n := len(s.pending)
	s.mu.Unlock()
	if n >= flushAt {
		select {
		case s.kick <- struct{}{}:
		default:
		}
	}
}

func (s *subjectIndex) flusher() {
	defer close(s.stopped)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-s.stop:
			return
		case <-t.C:
		case <-s.kick:
		}
		// A failed flush leaves the mappings pending (lookups still see
		// them) and the high-water mark where it was: the next flush, or
		// catchUp after a restart, makes up for it.
		_ = s.flush()
	}
}

// write adds entries as one new run (the first entry of each hash wins)
// and sets the high-water mark, in one transaction. With checkDisk, hashes
// already on disk are skipped: catchUp re-reads entries that a flush may
// have written. Flushed entries need no such check — Add looked each
// subject up before appending it — and skipping it keeps a flush's cost
// independent of how many runs there are.
func (s *subjectIndex) write(entries []runs.Record, hw uint64, checkDisk bool) error {
	s.dbMu.RLock()
	defer s.dbMu.RUnlock()
	return s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRuns)
		var skip func([]byte) bool
		if checkDisk {
			skip = func(h []byte) bool {
				_, seen := runs.Lookup(b, h)
				return seen
			}
		}
		run := runs.Build(entries, skip)
		if len(run) > 0 {
			// Runs are keyed by a sequence number so that the newest sorts
			// last: entries are not flushed in log order.
			seq, err := b.NextSequence()
			if err != nil {
				return err
			}
			if err := runs.Add(b, seq, run); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyHighWater, u64bytes(hw))
	})
}

// flush writes the pending mappings and the high-water mark they complete.
func (s *subjectIndex) flush() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	// Swap the pending map out; lookups keep seeing it as flushing until
	// it is on disk.
	s.mu.Lock()
	if len(s.pending) == 0 {
		s.mu.Unlock()
		return nil
	}
	batch := s.pending
	s.flushing, s.pending = batch, make(map[[8]byte]uint64, len(batch))
	// Every index below next is acknowledged, and its mapping is either in
	// the batch or already on disk.
	hw := s.acked.next
	s.mu.Unlock()
	// Only record (under mu) writes to maps, and never to batch now: it
	// can be read here without the lock.
	snapshot := make([]runs.Record, 0, len(batch))
	for h, idx := range batch {
		snapshot = append(snapshot, runs.Record{Hash: h, Index: idx})
	}
	err := s.write(snapshot, hw, false)
	s.mu.Lock()
	if err != nil {
		// Back to pending, to be written by the next flush.
		for h, idx := range batch {
			if _, dup := s.pending[h]; !dup {
				s.pending[h] = idx
			}
		}
	}
	s.flushing = nil
	s.mu.Unlock()
	if err != nil {
		return err
	}
	return s.compactIfWasteful()
}

// startFilter builds the filter from the runs and the pending mappings.
// Open calls it once catchUp has indexed the whole log; until then every
// lookup searches the runs.
func (s *subjectIndex) startFilter() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.fillFilterLocked(0)
}

// fillFilterLocked replaces the filter with one sized for twice the mapped
// hashes (at least minCapacity) and fills it from the runs and the pending
// and flushing mappings. s.mu must be held: a flush then cannot drop its
// batch from memory during the read, so every mapped hash is seen.
//
// The filter doubles when full, so refilling costs a constant amount of
// work per mapping on average. If the runs cannot be read the filter is
// dropped and lookups search the runs, which is slower but never wrong.
func (s *subjectIndex) fillFilterLocked(minCapacity int) error {
	var f *runs.Filter
	err := s.view(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRuns)
		n := len(s.pending) + len(s.flushing)
		if err := b.ForEach(func(_, run []byte) error { n += len(run) / runs.RecordSize; return nil }); err != nil {
			return err
		}
		f = runs.NewFilter(max(2*n, minCapacity, 1<<16))
		return runs.Each(b, func(rec []byte) { f.Add(rec) })
	})
	if err != nil {
		s.filter = nil
		return fmt.Errorf("buildlog: read the subject index to build its filter: %w", err)
	}
	for h := range s.pending {
		f.Add(h[:])
	}
	for h := range s.flushing {
		f.Add(h[:])
	}
	s.filter = f
	return nil
}

// compactIfWasteful copies the index into a fresh file when more than half
// of the current one is free pages. The caller holds flushMu, so no write
// runs meanwhile; lookups wait on dbMu for the few milliseconds of the swap.
func (s *subjectIndex) compactIfWasteful() error {
	s.dbMu.RLock()
	st := s.db.Stats()
	var size int64
	err := s.db.View(func(tx *bolt.Tx) error { size = tx.Size(); return nil })
	s.dbMu.RUnlock()
	if err != nil || size < compactAbove || int64(st.FreeAlloc) < size/2 {
		return err
	}
	return s.compact()
}

// compact writes the index into PATH.compact, renames it over PATH and
// switches to it. The old handle keeps the old inode until it is closed, so
// a failure anywhere before the switch leaves the index working as before.
func (s *subjectIndex) compact() error {
	tmp := s.path + ".compact"
	fail := func(err error) error {
		os.Remove(tmp)
		return fmt.Errorf("buildlog: compact the subject index: %w", err)
	}
	os.Remove(tmp)
	dst, err := bolt.Open(tmp, 0o600, boltOptions)
	if err != nil {
		return fail(err)
	}
	s.dbMu.RLock()
	err = bolt.Compact(dst, s.db, 0)
	s.dbMu.RUnlock()
	if err2 := dst.Close(); err == nil {
		err = err2
	}
	if err != nil {
		return fail(err)
	}
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if err := os.Rename(tmp, s.path); err != nil {
		return fail(err)
	}
	// From here PATH is the compacted copy whatever happens to the rename's
	// durability: either file is a consistent index.
	syncDir(filepath.Dir(s.path))
	db, err := bolt.Open(s.path, 0o600, boltOptions)
	if err != nil {
		// Keep writing to the old, now unlinked file: the high-water mark
		// in the new one is consistent with its runs, and catchUp indexes
		// the rest from the log after a restart.
		return fmt.Errorf("buildlog: reopen the compacted subject index: %w", err)
	}
	old := s.db
	s.db = db
	return old.Close()
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// recordBatch indexes entries read back from the log and moves the
// high-water mark to hw. It is used by catchUp only, before any Add and
// before the filter exists.
func (s *subjectIndex) recordBatch(entries []runs.Record, hw uint64) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	if err := s.write(entries, hw, true); err != nil {
		return fmt.Errorf("buildlog: index entries below %d: %w", hw, err)
	}
	s.mu.Lock()
	s.acked = ackWindow{next: hw}
	s.mu.Unlock()
	return nil
}

// close flushes what is pending and closes the database.
func (s *subjectIndex) close() error {
	close(s.stop)
	<-s.stopped
	err := s.flush()
	s.dbMu.Lock()
	defer s.dbMu.Unlock()
	if err2 := s.db.Close(); err == nil {
		err = err2
	}
	return err
}

// readEntry reads the claim at idx back from the log's entry bundles.
func (l *Log) readEntry(idx uint64) (*claim.Claim, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	size, err := l.reader.IntegratedSize(ctx)
	if err != nil {
		return nil, err
	}
	if idx >= size {
		return nil, errors.New("index beyond the integrated tree")
	}
	bundle := idx / 256
	var p uint8
	if rem := size - bundle*256; rem < 256 {
		p = uint8(rem)
	}
	raw, err := l.reader.ReadEntryBundle(ctx, bundle, p)
	if err != nil {
		return nil, err
	}
	var eb api.EntryBundle
	if err := eb.UnmarshalText(raw); err != nil {
		return nil, err
	}
	i := idx - bundle*256
	if i >= uint64(len(eb.Entries)) {
		return nil, fmt.Errorf("entry bundle %d has %d entries, want more than %d", bundle, len(eb.Entries), i)
	}
	return claim.Parse(eb.Entries[i])
}

// ackWindow tracks which log indexes have been acknowledged, to know the
// longest prefix of the log that is fully mapped: tessera acknowledges
// entries of a batch in any order. Bit i of words is index base+i; base is
// a multiple of 64 and words covers next up to the highest index seen.
type ackWindow struct {
	next  uint64
	base  uint64
	words []uint64
}

func (w *ackWindow) add(idx uint64) {
	if idx < w.next {
		return
	}
	if len(w.words) == 0 {
		w.base = w.next &^ 63
	}
	i := idx - w.base
	for uint64(len(w.words)) <= i/64 {
		w.words = append(w.words, 0)
	}
	w.words[i/64] |= 1 << (i % 64)
	for len(w.words) > 0 {
		bit := w.next - w.base
		if w.words[0]&(1<<bit) == 0 {
			return
		}
		w.next++
		if bit == 63 {
			w.words, w.base = w.words[1:], w.base+64
		}
	}
}
