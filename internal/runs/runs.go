// Package runs keeps a map from 8-byte hashes to log indexes as a small set
// of sorted runs in a bbolt bucket, as in a log-structured merge tree: each
// batch adds a run of its mappings sorted by hash, and runs of similar size
// are merged, so N mappings live in about log2(N/batch) runs. A B-tree
// keyed by random hashes rewrites nearly every page on every batch, so its
// cost per mapping grows with its size; here each mapping is rewritten only
// log2(N/batch) times, sequentially, and costs 13 bytes.
//
// A run is one bbolt value, the concatenation of records h8 ‖ index (5
// bytes BE), sorted by h8; runs are keyed so that the newest sorts last.
// Callers keep each hash at most once across all runs (Lookup before Add).
//
// A Filter (filter.go) over the same hashes answers "certainly absent" for
// most new hashes without searching the runs.
//
// The follower index (one set of runs per followed log) and the builder's
// own log (its subject index) both use it.
package runs

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"math"
	"slices"
	"sort"

	bolt "go.etcd.io/bbolt"
)

const (
	// RecordSize is the size of one record: an 8-byte hash and a 5-byte index.
	RecordSize = 8 + 5
	// MaxIndex is the largest index a record can hold: 5-byte indexes, a
	// trillion entries per log.
	MaxIndex = 1<<40 - 1
)

// Put appends the record (h[:8], n) to dst.
func Put(dst []byte, h []byte, n uint64) []byte {
	dst = append(dst, h[:8]...)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	return append(dst, b[3:]...)
}

// Index returns the index of a record.
func Index(rec []byte) uint64 {
	var b [8]byte
	copy(b[3:], rec[8:RecordSize])
	return binary.BigEndian.Uint64(b[:])
}

// Search returns the log index recorded for h8 in run, if any.
//
// The hashes are SHA-256 prefixes, spread evenly over the 64-bit range, so
// the search first interpolates: it probes where h8 should be if they were
// perfectly even, which narrows a run of a million records to a handful in
// about four probes, where a binary search needs twenty, most of them cache
// misses. A run whose hashes are not even (subjects chosen to collide on a
// prefix) only makes those few probes useless: after them the search is
// binary, so it never costs more than about log2(n)+6 probes.
func Search(run, h []byte) (uint64, bool) {
	want := binary.BigEndian.Uint64(h)
	at := func(i int) uint64 { return binary.BigEndian.Uint64(run[i*RecordSize:]) }
	n := len(run) / RecordSize
	// Invariant: records [0, lo) are < want and records [hi, n) are ≥
	// want; below and above are bounds of the hashes in [lo, hi).
	lo, hi := 0, n
	below, above := uint64(0), uint64(math.MaxUint64)
	for probes := 0; probes < 6 && hi-lo > 16; probes++ {
		frac := float64(want-below) / float64(above-below)
		guess := lo + int(frac*float64(hi-lo))
		guess = max(lo, min(hi-1, guess))
		if v := at(guess); v < want {
			lo, below = guess+1, v
		} else {
			hi, above = guess, v
		}
	}
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if at(mid) < want {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < n && at(lo) == want {
		return Index(run[lo*RecordSize:]), true
	}
	return 0, false
}

// Lookup returns the log index mapped to h8 in any run of b.
func Lookup(b *bolt.Bucket, h []byte) (uint64, bool) { return Space{B: b}.Lookup(h) }

// Add stores run (sorted records) under key first (which must sort after
// every earlier run's key), then merges the newest runs while the one
// before the newest is no larger than twice it.
func Add(b *bolt.Bucket, first uint64, run []byte) error { return Space{B: b}.Add(first, run) }

// After returns, from every run of b, the records whose hash is
// greater than after (all when after is nil), at most limit from each run.
func After(b *bolt.Bucket, after []byte, limit int) [][]byte {
	return Space{B: b}.After(after, limit)
}

// A Space is one map's runs: the keys of B that start with Prefix (all of
// B's keys when Prefix is empty), each Prefix ‖ first index (8 bytes BE).
// Several maps can share a bucket, one prefix each, so that a reader opens
// one bucket and one cursor for all of them.
type Space struct {
	B      *bolt.Bucket
	Prefix []byte
}

func (s Space) key(first uint64) []byte {
	return binary.BigEndian.AppendUint64(append(make([]byte, 0, len(s.Prefix)+8), s.Prefix...), first)
}

// Lookup returns the log index mapped to h8 in any run of s.
func (s Space) Lookup(h []byte) (uint64, bool) { return LookupCursor(s.B.Cursor(), s.Prefix, h) }

// LookupCursor is Space.Lookup through a cursor of the space's bucket,
// which a caller looking up several spaces of one bucket can reuse.
func LookupCursor(c *bolt.Cursor, prefix, h []byte) (uint64, bool) {
	for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
		if n, ok := Search(v, h); ok {
			return n, true
		}
	}
	return 0, false
}

// lastTwo returns the keys and values of the newest run of s and the one
// before it (nil when absent), the cursor left at prev.
func (s Space) lastTwo(c *bolt.Cursor) (lastK, lastV, prevK, prevV []byte) {
	var k, v []byte
	if end := s.end(); end == nil {
		k, v = c.Last()
	} else if k, v = c.Seek(end); k == nil {
		k, v = c.Last()
	} else {
		k, v = c.Prev()
	}
	if k == nil || !bytes.HasPrefix(k, s.Prefix) {
		return nil, nil, nil, nil
	}
	lastK, lastV = k, v
	if k, v = c.Prev(); k != nil && bytes.HasPrefix(k, s.Prefix) {
		prevK, prevV = k, v
	}
	return lastK, lastV, prevK, prevV
}

// end is the smallest key after every key with s's prefix, or nil when
// there is none (an empty prefix, or one of 0xff bytes only).
func (s Space) end() []byte {
	end := bytes.Clone(s.Prefix)
	for i := len(end) - 1; i >= 0; i-- {
		if end[i] < 0xff {
			end[i]++
			return end[:i+1]
		}
	}
	return nil
}

// Add stores run (sorted records) under first (which must sort after
// every earlier run's key), then merges the newest runs while the one
// before the newest is no larger than twice it.
func (s Space) Add(first uint64, run []byte) error {
	if len(run) > 0 {
		if err := s.B.Put(s.key(first), run); err != nil {
			return err
		}
	}
	for {
		lastK, lastV, prevK, prevV := s.lastTwo(s.B.Cursor())
		if prevK == nil || len(prevV) > 2*len(lastV) {
			return nil
		}
		merged := Merge(prevV, lastV)
		lastK = bytes.Clone(lastK)
		if err := s.B.Put(bytes.Clone(prevK), merged); err != nil {
			return err
		}
		if err := s.B.Delete(lastK); err != nil {
			return err
		}
	}
}

// After returns, from every run of s, the records whose hash is greater
// than after (all when after is nil), at most limit from each run.
func (s Space) After(after []byte, limit int) [][]byte {
	var out [][]byte
	c := s.B.Cursor()
	for k, v := c.Seek(s.Prefix); k != nil && bytes.HasPrefix(k, s.Prefix); k, v = c.Next() {
		n := len(v) / RecordSize
		i := 0
		if after != nil {
			i = sort.Search(n, func(i int) bool { return bytes.Compare(v[i*RecordSize:i*RecordSize+8], after) > 0 })
		}
		for j := i; j < n && j < i+limit; j++ {
			out = append(out, v[j*RecordSize:(j+1)*RecordSize])
		}
	}
	return out
}

// Merge merges two sorted runs with no hash in common.
func Merge(a, b []byte) []byte {
	out := make([]byte, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if bytes.Compare(a[:8], b[:8]) <= 0 {
			out, a = append(out, a[:RecordSize]...), a[RecordSize:]
		} else {
			out, b = append(out, b[:RecordSize]...), b[RecordSize:]
		}
	}
	return append(append(out, a...), b...)
}

// Record is one mapping before it is encoded into a run.
type Record struct {
	Hash  [8]byte
	Index uint64
}

// Sort orders records by hash, and records of equal hash by index, so that
// the earliest entry of a hash comes first.
func Sort(recs []Record) {
	slices.SortFunc(recs, func(a, b Record) int {
		if c := cmp.Compare(binary.BigEndian.Uint64(a.Hash[:]), binary.BigEndian.Uint64(b.Hash[:])); c != 0 {
			return c
		}
		return cmp.Compare(a.Index, b.Index)
	})
}

// Build sorts recs and encodes them as a run, keeping the first record of
// each hash and dropping those for which skip (if not nil) returns true —
// typically hashes some earlier run already holds.
func Build(recs []Record, skip func(hash []byte) bool) []byte {
	Sort(recs)
	run := make([]byte, 0, len(recs)*RecordSize)
	for i, r := range recs {
		if i > 0 && recs[i-1].Hash == r.Hash {
			continue
		}
		if skip != nil && skip(r.Hash[:]) {
			continue
		}
		run = Put(run, r.Hash[:], r.Index)
	}
	return run
}
