package buildlog

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/transparency-dev/tessera/api"
	bolt "go.etcd.io/bbolt"

	"github.com/vouch-dev/vouch/claim"
)

// subjectIndex maps each logged (kind, subject) to its log index: a 16-byte
// digest of the subject key to an 8-byte index. It stores no claims, to keep
// the bytes on disk per claim small; the logged claim is read back from the
// log when a resubmission must be compared with it.
//
// The index is derived data: the log is the truth. So a new mapping is first
// held in memory (pending), where lookups see it at once, and written to
// bbolt by a background flusher, off the path that acknowledges a claim:
// an fsync per batch of mappings would otherwise stall every adder.
//
// Invariant: every entry below the stored high-water mark is in bbolt.
// Entries at or above it may or may not be; catchUp indexes them from the
// log at start-up, so a crash loses no mapping that matters.
type subjectIndex struct {
	db     *bolt.DB
	reader func(idx uint64) (*claim.Claim, error)

	mu      sync.Mutex
	next    uint64              // every index below next is acknowledged and mapped (pending or in bbolt)
	done    map[uint64]struct{} // acknowledged indexes at or above next
	pending map[string]uint64   // subject digest → index, not yet in bbolt

	kick    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
	flushMu sync.Mutex // one flush at a time
}

var (
	bucketSubjects = []byte("subjects")
	bucketMeta     = []byte("meta")
	keyHighWater   = []byte("high-water")
)

// flushEvery bounds how long a mapping stays only in memory; flushAt is the
// number of pending mappings that triggers an early flush.
const (
	flushEvery = time.Second
	flushAt    = 1 << 16
)

func openSubjectIndex(path string) (*subjectIndex, error) {
	// The free list is rebuilt at open instead of written at every commit:
	// commits are on a hot path, opens are rare.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second, NoFreelistSync: true, FreelistType: bolt.FreelistMapType})
	if err != nil {
		return nil, fmt.Errorf("buildlog: open subject index %s: %w (it is derived from the log: delete the file and restart to rebuild it)", path, err)
	}
	s := &subjectIndex{db: db, done: map[uint64]struct{}{}, pending: map[string]uint64{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), stopped: make(chan struct{})}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketSubjects); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bucketMeta)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("buildlog: subject index %s: %w (it is derived from the log: delete the file and restart to rebuild it)", path, err)
	}
	s.next, err = s.highWater()
	if err != nil {
		db.Close()
		return nil, err
	}
	go s.flusher()
	return s, nil
}

func subjectKey(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:16]
}

func u64bytes(v uint64) []byte {
	b := make([]byte, 8)
	binary.BigEndian.PutUint64(b, v)
	return b
}

func (s *subjectIndex) highWater() (uint64, error) {
	var hw uint64
	err := s.db.View(func(tx *bolt.Tx) error {
		if v := tx.Bucket(bucketMeta).Get(keyHighWater); len(v) == 8 {
			hw = binary.BigEndian.Uint64(v)
		}
		return nil
	})
	return hw, err
}

// lookup returns the logged claim for key, reading it back from the log.
func (s *subjectIndex) lookup(key string) (*claim.Claim, uint64, bool, error) {
	k := subjectKey(key)
	s.mu.Lock()
	idx, found := s.pending[string(k)]
	s.mu.Unlock()
	if !found {
		err := s.db.View(func(tx *bolt.Tx) error {
			if v := tx.Bucket(bucketSubjects).Get(k); len(v) == 8 {
				idx, found = binary.BigEndian.Uint64(v), true
			}
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
		// A 128-bit digest collision is not a practical concern; a
		// mismatch here means the index and the log disagree.
		return nil, 0, false, fmt.Errorf("buildlog: subject index points %q at entry %d which is about %q; delete subjects.db to rebuild it", key, idx, c.Key())
	}
	return c, idx, true, nil
}

// indexedEntry is a subject key (the claim's Key in recordBatch, its
// digest in flush) and the entry's index.
type indexedEntry struct {
	key   string
	index uint64
}

// put maps k to idx unless k is mapped already: the first entry for a
// subject is the one that counts. A later one can only come from an Add
// that was integrated but not acknowledged and then retried (same output).
func put(b *bolt.Bucket, k []byte, idx uint64) error {
	if old := b.Get(k); len(old) == 8 {
		return nil
	}
	return b.Put(k, u64bytes(idx))
}

// record maps a freshly appended entry. It only touches memory; the flusher
// writes it to disk.
func (s *subjectIndex) record(key string, idx uint64) {
	k := string(subjectKey(key))
	s.mu.Lock()
	if _, dup := s.pending[k]; !dup {
		s.pending[k] = idx
	}
	s.done[idx] = struct{}{}
	for {
		if _, ok := s.done[s.next]; !ok {
			break
		}
		delete(s.done, s.next)
		s.next++
	}
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

// flush writes the pending mappings and the high-water mark they complete
// in one transaction.
func (s *subjectIndex) flush() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.mu.Lock()
	snapshot := make([]indexedEntry, 0, len(s.pending))
	for k, v := range s.pending {
		snapshot = append(snapshot, indexedEntry{key: k, index: v})
	}
	// Every index below next is acknowledged, and its mapping is either in
	// the snapshot or already on disk.
	hw := s.next
	s.mu.Unlock()
	if len(snapshot) == 0 {
		return nil
	}
	// Inserting in key order keeps bbolt's cursor on neighbouring pages.
	slices.SortFunc(snapshot, func(a, b indexedEntry) int { return strings.Compare(a.key, b.key) })
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSubjects)
		for _, e := range snapshot {
			if err := put(b, []byte(e.key), e.index); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyHighWater, u64bytes(hw))
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	for _, e := range snapshot {
		if s.pending[e.key] == e.index {
			delete(s.pending, e.key)
		}
	}
	s.mu.Unlock()
	return nil
}

// recordBatch indexes entries read back from the log and moves the
// high-water mark to hw, in one transaction. It is used by catchUp only,
// before any Add.
func (s *subjectIndex) recordBatch(entries []indexedEntry, hw uint64) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketSubjects)
		for _, e := range entries {
			if err := put(b, subjectKey(e.key), e.index); err != nil {
				return err
			}
		}
		return tx.Bucket(bucketMeta).Put(keyHighWater, u64bytes(hw))
	})
	if err != nil {
		return fmt.Errorf("buildlog: index entries below %d: %w", hw, err)
	}
	s.mu.Lock()
	s.next = hw
	s.mu.Unlock()
	return nil
}

// close flushes what is pending and closes the database.
func (s *subjectIndex) close() error {
	close(s.stop)
	<-s.stopped
	err := s.flush()
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
