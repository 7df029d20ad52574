// Package memtlog is an RFC 6962 Merkle tree held in memory, its hashes laid
// out as golang.org/x/mod/sumdb/tlog stores them. Tests and benchmarks use it
// as the reference log: genuine roots and inclusion and consistency proofs
// (through tlog.ProveRecord, tlog.ProveTree and friends, with the Tree as
// their tlog.HashReader), computed by tlog and not by the code under test.
package memtlog

import (
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// Tree is a Merkle tree of records. The zero value is an empty tree.
type Tree struct {
	hashes []tlog.Hash // every stored hash, in tlog's order
	n      int64       // records
}

// N returns the number of records in the tree.
func (t *Tree) N() int64 { return t.n }

// Add appends one record.
func (t *Tree) Add(record []byte) {
	hs, err := tlog.StoredHashes(t.n, record, t)
	if err != nil {
		// StoredHashes reads only hashes the tree already holds.
		panic(fmt.Sprintf("memtlog: %v", err))
	}
	t.hashes = append(t.hashes, hs...)
	t.n++
}

// ReadHashes implements tlog.HashReader.
func (t *Tree) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(t.hashes)) {
			return nil, fmt.Errorf("memtlog: hash %d not stored (the tree has %d records)", x, t.n)
		}
		out[i] = t.hashes[x]
	}
	return out, nil
}

// Root returns the root of the tree's first n records.
func (t *Tree) Root(n int64) (tlog.Hash, error) { return tlog.TreeHash(n, t) }

// Prefix returns a copy of the tree's first n records, to grow apart from
// t: a fork.
func (t *Tree) Prefix(n int64) *Tree {
	return &Tree{hashes: append([]tlog.Hash(nil), t.hashes[:tlog.StoredHashCount(n)]...), n: n}
}
