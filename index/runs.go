package index

import (
	"bytes"
	"encoding/binary"
	"math"
	"sort"

	bolt "go.etcd.io/bbolt"
)

// A log's subject index is a small set of sorted runs, as in a
// log-structured merge tree: each appended batch adds a run of its
// mappings, sorted by subject hash, and runs of similar size are merged, so
// a log of N entries has at most about log2(N/batch) runs. This replaces a
// B-tree keyed by subject hash, where every batch of random keys rewrote
// nearly every page of the tree: indexing cost grew with the log's size.
// Here each mapping is rewritten only log2(N/batch) times, sequentially.
//
// A run is the value runs/<first log index of the run, 8 bytes BE>, the
// concatenation of records h8 ‖ index (5 bytes BE), sorted by h8. Within a
// log a subject hash appears at most once across all runs: Append refuses
// a second mapping for a subject (equal outputs keep the first, different
// outputs are a Conflict).
const (
	recordSize = 8 + 5
	maxIndex   = 1<<40 - 1 // 5-byte log indexes: a trillion entries per log
)

var bucketRuns = []byte("runs")

func putRecord(dst []byte, h []byte, n uint64) []byte {
	dst = append(dst, h[:8]...)
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], n)
	return append(dst, b[3:]...)
}

func recordIndex(rec []byte) uint64 {
	var b [8]byte
	copy(b[3:], rec[8:recordSize])
	return binary.BigEndian.Uint64(b[:])
}

// searchRun returns the log index recorded for h8 in run, if any.
//
// The hashes are SHA-256 prefixes, spread evenly over the 64-bit range, so
// the search first interpolates: it probes where h8 should be if they were
// perfectly even, which narrows a run of a million records to a handful in
// about four probes, where a binary search needs twenty, most of them cache
// misses. A run whose hashes are not even (subjects chosen to collide on a
// prefix) only makes those few probes useless: after them the search is
// binary, so it never costs more than about log2(n)+6 probes.
func searchRun(run, h []byte) (uint64, bool) {
	want := binary.BigEndian.Uint64(h)
	at := func(i int) uint64 { return binary.BigEndian.Uint64(run[i*recordSize:]) }
	n := len(run) / recordSize
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
		return recordIndex(run[lo*recordSize:]), true
	}
	return 0, false
}

// lookupRuns returns the log index mapped to h8 in any run of b.
func lookupRuns(b *bolt.Bucket, h []byte) (uint64, bool) {
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if n, ok := searchRun(v, h); ok {
			return n, true
		}
	}
	return 0, false
}

// addRun stores run (sorted records) as the run starting at log index
// first, then merges the newest runs while the one before the newest is no
// larger than twice it.
func addRun(b *bolt.Bucket, first uint64, run []byte) error {
	if len(run) > 0 {
		if err := b.Put(u64(first), run); err != nil {
			return err
		}
	}
	for {
		c := b.Cursor()
		lastK, lastV := c.Last()
		prevK, prevV := c.Prev()
		if prevK == nil || len(prevV) > 2*len(lastV) {
			return nil
		}
		merged := mergeRuns(prevV, lastV)
		lastK = bytes.Clone(lastK)
		if err := b.Put(bytes.Clone(prevK), merged); err != nil {
			return err
		}
		if err := b.Delete(lastK); err != nil {
			return err
		}
	}
}

// mergeRuns merges two sorted runs with no hash in common.
func mergeRuns(a, b []byte) []byte {
	out := make([]byte, 0, len(a)+len(b))
	for len(a) > 0 && len(b) > 0 {
		if bytes.Compare(a[:8], b[:8]) <= 0 {
			out, a = append(out, a[:recordSize]...), a[recordSize:]
		} else {
			out, b = append(out, b[:recordSize]...), b[recordSize:]
		}
	}
	return append(append(out, a...), b...)
}

// runsAfter returns, from every run of b, the records whose hash is
// greater than after (all when after is nil), at most limit from each run.
func runsAfter(b *bolt.Bucket, after []byte, limit int) [][]byte {
	var out [][]byte
	c := b.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		n := len(v) / recordSize
		i := 0
		if after != nil {
			i = sort.Search(n, func(i int) bool { return bytes.Compare(v[i*recordSize:i*recordSize+8], after) > 0 })
		}
		for j := i; j < n && j < i+limit; j++ {
			out = append(out, v[j*recordSize:(j+1)*recordSize])
		}
	}
	return out
}
