package index

import (
	"bytes"
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/internal/runs"
)

// logData is where one log's tiles and subject runs live: two buckets
// shared by every log, each key prefixed by the log's 4-byte sequence
// number. One bucket per kind rather than per log is what makes a verdict
// cheap: it opens two buckets and two cursors for all the logs it reads,
// where a bucket per log cost bucket opens and cursors per log, most of a
// verdict's allocations. (The entries are in files: entries.go.)
type logData struct {
	tiles, runsB *bolt.Bucket
	prefix       [4]byte
}

func (x *Index) data(tx *bolt.Tx, seq uint32) logData {
	return logData{tiles: tx.Bucket(bucketTiles), runsB: tx.Bucket(bucketRuns), prefix: seqPrefix(seq)}
}

// runs is the log's subject runs.
func (d logData) runs() runs.Space { return runs.Space{B: d.runsB, Prefix: d.prefix[:]} }

func seqPrefix(seq uint32) [4]byte {
	var p [4]byte
	binary.BigEndian.PutUint32(p[:], seq)
	return p
}

// claimKey is the key in claims/ of entry n of the log with prefix, where
// the version before the logs' files kept it.
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

// openAllLogFiles opens every log's files (logfiles.go). A log an earlier
// version indexed still has its entries in claims/, or its full leaf tiles
// in tiles/: they are copied to its files first, which are synced before
// the log is marked as keeping them in files, and only then deleted from
// the database (claims/ is dropped and made anew, empty, once every log's
// entries are in files). A crash while copying starts that copy again (the
// file is cut to nothing); a crash before the deletion deletes at the next
// open.
func (x *Index) openAllLogFiles() error {
	type logState struct {
		id                    LogID
		m                     *logMeta
		synced                uint64
		inFiles, tilesInFiles bool
	}
	var logs []logState
	inDatabase := false
	err := x.db.View(func(tx *bolt.Tx) error {
		for id, m := range x.logs {
			lb := tx.Bucket(bucketLogs).Bucket(id.bucketKey())
			logs = append(logs, logState{id, m, getU64(lb, keySynced), lb.Get(keyEntryFiles) != nil, lb.Get(keyTileFiles) != nil})
		}
		k, _ := tx.Bucket(bucketClaims).Cursor().First()
		inDatabase = k != nil
		return nil
	})
	if err != nil {
		return err
	}
	for _, l := range logs {
		// What is not marked as in the files yet is cut from them: it is
		// what a copy left behind.
		entries, tiles := l.synced, l.synced
		if !l.inFiles {
			entries = 0
		}
		if !l.tilesInFiles {
			tiles = 0
		}
		f, err := openLogFiles(x.path, l.m.seq, entries, tiles)
		if err != nil {
			return fmt.Errorf("log %s: %w", l.id, err)
		}
		l.m.files = f
		if !l.inFiles {
			if err := x.copyEntriesToFiles(l.id, l.m.seq, l.synced, f); err != nil {
				return fmt.Errorf("log %s: moving its entries to %s: %w (nothing was lost; the next start copies again)", l.id, filesDir(x.path), err)
			}
		}
		if err := x.moveLeafTilesToFiles(l.id, l.m.seq, l.synced, f, l.tilesInFiles); err != nil {
			return fmt.Errorf("log %s: moving its tiles to %s: %w (nothing was lost; the next start copies again)", l.id, filesDir(x.path), err)
		}
	}
	if !inDatabase {
		return nil
	}
	return x.db.Update(func(tx *bolt.Tx) error {
		if err := tx.DeleteBucket(bucketClaims); err != nil {
			return err
		}
		_, err := tx.CreateBucket(bucketClaims)
		return err
	})
}

// moveLeafTilesToFiles copies the log's full leaf tiles (of the first
// synced entries) from tiles/ to f, in the blocked layout whatever layout
// they were stored in, marks the log as keeping them in files, and deletes
// them from tiles/, in transactions of at most migrateChunk bytes. With
// copied set, only the deletion is left to do (if anything).
func (x *Index) moveLeafTilesToFiles(id LogID, seq uint32, synced uint64, f *logFiles, copied bool) error {
	prefix := seqPrefix(seq)
	full := int64(synced / tileWidth)
	for next := int64(0); !copied && next < full; {
		var batch []leafTile
		err := x.db.View(func(tx *bolt.Tx) error {
			b := tx.Bucket(bucketTiles)
			for size := 0; next < full && size < migrateChunk; next++ {
				v := b.Get(tileKey(prefix, 0, next))
				switch {
				case len(v) == blockedLen:
					batch = append(batch, leafTile{next, bytes.Clone(v)})
				case len(v) >= tileWidth*tlog.HashSize: // an earlier layout: the leaves come first
					_, value := blockedTile(v[:tileWidth*tlog.HashSize])
					batch = append(batch, leafTile{next, value})
				default:
					return fmt.Errorf("tile 0/%d holds %d bytes, want a full tile: the stored tree is inconsistent", next, len(v))
				}
				size += blockedLen
			}
			return nil
		})
		if err != nil {
			return err
		}
		if _, err := f.write(f.count.Load(), nil, batch); err != nil {
			return err
		}
	}
	if !copied {
		err := x.db.Update(func(tx *bolt.Tx) error {
			return tx.Bucket(bucketLogs).Bucket(id.bucketKey()).Put(keyTileFiles, []byte{1})
		})
		if err != nil {
			return err
		}
	}
	// The copies in tiles/, and the inner nodes some earlier layouts kept
	// under an aux key (level 0x80), go.
	for _, level := range []int{0, 0x80} {
		for next := int64(0); next < full; {
			err := x.db.Update(func(tx *bolt.Tx) error {
				c := tx.Bucket(bucketTiles).Cursor()
				first := tileKey(prefix, level, next)
				size := 0
				for k, v := c.Seek(first); k != nil && size < migrateChunk; k, v = c.Seek(first) {
					if !bytes.HasPrefix(k, first[:5]) || int64(binary.BigEndian.Uint64(k[5:])) >= full {
						next = full
						return nil
					}
					size += len(k) + len(v)
					if err := c.Delete(); err != nil {
						return err
					}
				}
				if size < migrateChunk {
					next = full
				}
				return nil
			})
			if err != nil {
				return err
			}
		}
	}
	return nil
}

// copyEntriesToFiles copies entries [0, synced) of the log to f, from
// claims/ or, if the log is marked as keeping them in files, from the
// files (which the caller has cut to nothing) as they were, then marks the
// log as kept in files.
func (x *Index) copyEntriesToFiles(id LogID, seq uint32, synced uint64, f *logFiles) error {
	prefix := seqPrefix(seq)
	var next uint64
	for next < synced {
		var batch [][]byte
		err := x.db.View(func(tx *bolt.Tx) error {
			c := tx.Bucket(bucketClaims).Cursor()
			key := claimKey(prefix, next)
			size := 0
			for k, v := c.Seek(key[:]); next < synced && size < migrateChunk; k, v = c.Next() {
				key = claimKey(prefix, next)
				if !bytes.Equal(k, key[:]) {
					return fmt.Errorf("entry %d of the %d indexed is missing from the database", next, synced)
				}
				batch = append(batch, bytes.Clone(v))
				size += len(v)
				next++
			}
			return nil
		})
		if err != nil {
			return err
		}
		first := next - uint64(len(batch))
		datLen, err := f.write(first, batch, nil)
		if err != nil {
			return err
		}
		f.commit(next, datLen)
	}
	return x.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLogs).Bucket(id.bucketKey()).Put(keyEntryFiles, []byte{1})
	})
}
