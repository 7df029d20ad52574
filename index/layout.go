package index

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"github.com/vouch-dev/vouch/internal/runs"
)

// logData is where one log's entries, tiles and subject runs live: three
// buckets shared by every log, each key prefixed by the log's 4-byte
// sequence number. One bucket per kind rather than per log is what makes
// a verdict cheap: it opens three buckets and three cursors for all the
// logs it reads, where a bucket per log cost four bucket opens and three
// cursors per log, most of a verdict's allocations.
type logData struct {
	claims, tiles, runsB *bolt.Bucket
	prefix               [4]byte
}

func (x *Index) data(tx *bolt.Tx, seq uint32) logData {
	return logData{
		claims: tx.Bucket(bucketClaims), tiles: tx.Bucket(bucketTiles), runsB: tx.Bucket(bucketRuns),
		prefix: seqPrefix(seq),
	}
}

func (d logData) claimKey(n uint64) []byte {
	k := claimKey(d.prefix, n)
	return k[:]
}

// runs is the log's subject runs.
func (d logData) runs() runs.Space { return runs.Space{B: d.runsB, Prefix: d.prefix[:]} }

func seqPrefix(seq uint32) [4]byte {
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], seq)
	return p
}

// claimKey is the key in claims/ of entry n of the log with prefix.
func claimKey(prefix [4]byte, n uint64) [12]byte {
	var k [12]byte
	copy(k[:], prefix[:])
	binary.BigEndian.PutUint64(k[4:], n)
	return k
}

// migrateChunk bounds the bytes one migration transaction copies: bbolt
// holds a write transaction's pages in memory until it commits.
var migrateChunk = 32 << 20

// migrate moves the entries, tiles and subject runs of every log an
// earlier version wrote (in buckets inside the log's bucket) into the
// shared buckets, under the log's prefix, then deletes the old buckets.
// Keys and values are copied as they are, so every layout of tiles.go
// still reads. Copies are idempotent and the old buckets go only in the
// last transaction, so a crash at any point resumes with nothing lost.
func (x *Index) migrate() error {
	var todo []LogID
	err := x.db.View(func(tx *bolt.Tx) error {
		for id := range x.logs {
			if lb := tx.Bucket(bucketLogs).Bucket(id.bucketKey()); lb != nil && lb.Bucket(legacyClaims) != nil {
				todo = append(todo, id)
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for _, id := range todo {
		prefix := seqPrefix(x.logs[id].seq)
		for _, m := range []struct{ from, to []byte }{{legacyClaims, bucketClaims}, {legacyTiles, bucketTiles}, {legacyRuns, bucketRuns}} {
			var after []byte // the last key copied
			for done := false; !done; {
				err := x.db.Update(func(tx *bolt.Tx) error {
					src := tx.Bucket(bucketLogs).Bucket(id.bucketKey()).Bucket(m.from)
					if src == nil {
						return fmt.Errorf("log %s: bucket %s is missing", id, m.from)
					}
					dst := tx.Bucket(m.to)
					dst.FillPercent = 1 // each log's keys arrive in order
					c := src.Cursor()
					k, v := c.First()
					if after != nil {
						if k, v = c.Seek(after); bytes.Equal(k, after) {
							k, v = c.Next()
						}
					}
					copied := 0
					for ; k != nil && copied < migrateChunk; k, v = c.Next() {
						if v == nil {
							return fmt.Errorf("log %s: unexpected bucket %q in %s", id, k, m.from)
						}
						if err := dst.Put(append(prefix[:len(prefix):len(prefix)], k...), v); err != nil {
							return err
						}
						after = append(after[:0], k...)
						copied += len(k) + len(v)
					}
					done = k == nil
					return nil
				})
				if err != nil {
					return fmt.Errorf("log %s: %w", id, err)
				}
			}
		}
		err := x.db.Update(func(tx *bolt.Tx) error {
			lb := tx.Bucket(bucketLogs).Bucket(id.bucketKey())
			for _, name := range [][]byte{legacyClaims, legacyTiles, legacyRuns} {
				if err := lb.DeleteBucket(name); err != nil {
					return fmt.Errorf("log %s: %s: %w", id, name, err)
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
	}
	return nil
}
