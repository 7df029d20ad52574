package runs

import (
	"encoding/binary"
	"math/bits"

	bolt "go.etcd.io/bbolt"
)

// Filter is a Bloom filter over 8-byte hashes: it answers "certainly not
// present" for most hashes never added and "maybe present" for every hash
// added. It lets a caller skip the search of every run for a hash that is
// new, which is the common case when a log appends claims for new subjects.
//
// It never forgets a hash (no false negatives); about one hash in 100 that
// was never added is reported as maybe present (a false positive), and the
// caller then searches the runs as it would without the filter.
//
// The filter is blocked: all the bits of one hash live in one 64-byte block,
// so a query costs one cache miss. The block is chosen by the high bits of
// the hash and the bits inside it by a mix of the whole hash. The hashes are
// SHA-256 prefixes; hashes crafted to share blocks only raise the rate of
// false positives, never cause a false negative.
//
// It holds about 10 bits per hash of its capacity: 1.25 MB per million.
// Past its capacity the rate of false positives climbs; Full says when to
// build a larger one. It is not safe for concurrent use.
type Filter struct {
	blocks   [][blockWords]uint64
	count    int
	capacity int
}

const (
	blockWords   = 8 // 512 bits, one cache line
	bitsPerHash  = 10
	probesInHash = 7 // 7 probes of 9 bits each come from one 64-bit mix
)

// NewFilter returns an empty filter sized for capacity hashes.
func NewFilter(capacity int) *Filter {
	capacity = max(capacity, 1024)
	n := (capacity*bitsPerHash + blockWords*64 - 1) / (blockWords * 64)
	return &Filter{blocks: make([][blockWords]uint64, n), capacity: capacity}
}

// locate returns the block of h8 and the 64-bit word whose seven 9-bit
// slices are the bit positions inside it.
func (f *Filter) locate(h8 []byte) (*[blockWords]uint64, uint64) {
	h := binary.BigEndian.Uint64(h8)
	// Map h onto [0, len) by its high bits, without a division.
	block, _ := bits.Mul64(h, uint64(len(f.blocks)))
	// The splitmix64 finalizer: every bit of the result depends on every
	// bit of h, so the positions are independent of the block choice.
	m := h
	m ^= m >> 30
	m *= 0xbf58476d1ce4e5b9
	m ^= m >> 27
	m *= 0x94d049bb133111eb
	m ^= m >> 31
	return &f.blocks[block], m
}

// Add records h8 (at least 8 bytes; the first 8 are used).
func (f *Filter) Add(h8 []byte) {
	b, m := f.locate(h8)
	for i := 0; i < probesInHash; i++ {
		pos := m & 511
		b[pos>>6] |= 1 << (pos & 63)
		m >>= 9
	}
	f.count++
}

// MayContain reports whether h8 may have been added. False means it
// certainly was not.
func (f *Filter) MayContain(h8 []byte) bool {
	b, m := f.locate(h8)
	for i := 0; i < probesInHash; i++ {
		pos := m & 511
		if b[pos>>6]&(1<<(pos&63)) == 0 {
			return false
		}
		m >>= 9
	}
	return true
}

// Full reports whether the filter holds more hashes than it was sized for.
func (f *Filter) Full() bool { return f.count > f.capacity }

// Len is the number of Add calls so far.
func (f *Filter) Len() int { return f.count }

// Each calls fn with every record of every run in b, oldest run first. It
// is how a filter is filled from the runs.
func Each(b *bolt.Bucket, fn func(rec []byte)) error {
	return b.ForEach(func(_, v []byte) error {
		for len(v) >= RecordSize {
			fn(v[:RecordSize])
			v = v[RecordSize:]
		}
		return nil
	})
}
