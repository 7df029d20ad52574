package buildlog

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
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
// Invariant: every entry below the stored high-water mark is indexed. Entries
// at or above it may or may not be; catchUp indexes them at start-up.
type subjectIndex struct {
	db     *bolt.DB
	reader func(idx uint64) (*claim.Claim, error)

	mu      sync.Mutex
	next    uint64              // every index below next is committed
	pending map[uint64]struct{} // committed indexes at or above next
}

var (
	bucketSubjects = []byte("subjects")
	bucketMeta     = []byte("meta")
	keyHighWater   = []byte("high-water")
)

func openSubjectIndex(path string) (*subjectIndex, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 2 * time.Second})
	if err != nil {
		return nil, fmt.Errorf("buildlog: open subject index %s: %w (if it is corrupt, delete it: it is rebuilt from the log)", path, err)
	}
	s := &subjectIndex{db: db, pending: map[uint64]struct{}{}}
	err = db.Update(func(tx *bolt.Tx) error {
		if _, err := tx.CreateBucketIfNotExists(bucketSubjects); err != nil {
			return err
		}
		_, err := tx.CreateBucketIfNotExists(bucketMeta)
		return err
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("buildlog: subject index %s: %w", path, err)
	}
	s.next, err = s.highWater()
	if err != nil {
		db.Close()
		return nil, err
	}
	return s, nil
}

func subjectKey(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:16]
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
	var idx uint64
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketSubjects).Get(subjectKey(key))
		if len(v) == 8 {
			idx, found = binary.BigEndian.Uint64(v[:8]), true
		}
		return nil
	})
	if err != nil || !found {
		return nil, 0, false, err
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

type indexedEntry struct {
	key   string
	index uint64
}

func (s *subjectIndex) put(tx *bolt.Tx, key string, idx uint64) error {
	v := make([]byte, 8)
	binary.BigEndian.PutUint64(v, idx)
	b := tx.Bucket(bucketSubjects)
	k := subjectKey(key)
	if old := b.Get(k); len(old) == 8 && binary.BigEndian.Uint64(old) != idx {
		// Keep the first entry for a subject. A later entry with the same
		// subject can only come from an Add that was integrated but not
		// acknowledged and then retried (same output) — harmless.
		return nil
	}
	return b.Put(k, v)
}

// record indexes one freshly appended entry. Concurrent calls are coalesced
// into one transaction by bbolt's Batch.
func (s *subjectIndex) record(key string, idx uint64) error {
	err := s.db.Batch(func(tx *bolt.Tx) error {
		if err := s.put(tx, key, idx); err != nil {
			return err
		}
		s.mu.Lock()
		hw := s.next
		s.mu.Unlock()
		v := make([]byte, 8)
		binary.BigEndian.PutUint64(v, hw)
		return tx.Bucket(bucketMeta).Put(keyHighWater, v)
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.pending[idx] = struct{}{}
	for {
		if _, ok := s.pending[s.next]; !ok {
			break
		}
		delete(s.pending, s.next)
		s.next++
	}
	s.mu.Unlock()
	return nil
}

// recordBatch indexes entries read back from the log and moves the
// high-water mark to hw, in one transaction.
func (s *subjectIndex) recordBatch(entries []indexedEntry, hw uint64) error {
	err := s.db.Update(func(tx *bolt.Tx) error {
		for _, e := range entries {
			if err := s.put(tx, e.key, e.index); err != nil {
				return err
			}
		}
		v := make([]byte, 8)
		binary.BigEndian.PutUint64(v, hw)
		return tx.Bucket(bucketMeta).Put(keyHighWater, v)
	})
	if err != nil {
		return fmt.Errorf("buildlog: index entries below %d: %w", hw, err)
	}
	s.mu.Lock()
	s.next = hw
	s.mu.Unlock()
	return nil
}

func (s *subjectIndex) close() error { return s.db.Close() }

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
