package index

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	bolt "go.etcd.io/bbolt"

	"github.com/vouch-dev/vouch/claim"
)

// rewriteLogs calls fn with each log's bucket of the index at path, in one
// write transaction of the database alone.
func rewriteLogs(t *testing.T, path string, fn func(tx *bolt.Tx, lb *bolt.Bucket) error) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLogs).ForEachBucket(func(k []byte) error {
			return fn(tx, tx.Bucket(bucketLogs).Bucket(k))
		})
	})
	if err != nil {
		t.Fatal(err)
	}
}

// toLegacyLayout rewrites the index at path into the layout earlier
// versions wrote: each log's entries, tiles and subject runs in buckets
// inside the log's bucket, keys without the log's prefix. It moves the
// first keep keys of every log's entries back into the shared bucket too,
// as a migration interrupted after its first chunks would have left them.
func toLegacyLayout(t *testing.T, path string, keep int) {
	t.Helper()
	rewriteLogs(t, path, func(tx *bolt.Tx, lb *bolt.Bucket) error {
		prefix := lb.Get(keySeq)
		for _, m := range []struct{ shared, legacy []byte }{{bucketClaims, legacyClaims}, {bucketTiles, legacyTiles}, {bucketRuns, legacyRuns}} {
			dst, err := lb.CreateBucket(m.legacy)
			if err != nil {
				return err
			}
			src := tx.Bucket(m.shared)
			var moved [][]byte
			c := src.Cursor()
			for k, v := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, v = c.Next() {
				if err := dst.Put(bytes.Clone(k[len(prefix):]), bytes.Clone(v)); err != nil {
					return err
				}
				moved = append(moved, bytes.Clone(k))
			}
			if bytes.Equal(m.shared, bucketClaims) {
				moved = moved[min(keep, len(moved)):]
			}
			for _, k := range moved {
				if err := src.Delete(k); err != nil {
					return err
				}
			}
		}
		return nil
	})
}

// toDatabaseEntries rewrites the index at path into the layout of the
// version before entry files: every log's entries in claims/, under the
// log's prefix. With keepFiles it also leaves the files and the mark that
// the log is kept in files, as a deletion from claims/ interrupted early
// would have; otherwise the files keep only a torn part of the entries, as
// a copy interrupted midway would have left them.
func toDatabaseEntries(t *testing.T, path string, keepFiles bool) {
	t.Helper()
	rewriteLogs(t, path, func(tx *bolt.Tx, lb *bolt.Bucket) error {
		seq := binary.BigEndian.Uint32(lb.Get(keySeq))
		base := filepath.Join(filesDir(path), fmt.Sprintf("%08x", seq))
		dat, err := os.ReadFile(base + ".dat")
		if err != nil {
			return err
		}
		ends, err := os.ReadFile(base + ".end")
		if err != nil {
			return err
		}
		start := uint64(0)
		for n := 0; n < len(ends)/8; n++ {
			end := binary.BigEndian.Uint64(ends[n*8:])
			key := claimKey([4]byte(lb.Get(keySeq)), uint64(n))
			if err := tx.Bucket(bucketClaims).Put(key[:], dat[start:end]); err != nil {
				return err
			}
			start = end
		}
		if keepFiles {
			return nil
		}
		if err := os.WriteFile(base+".dat", dat[:len(dat)/2], 0o600); err != nil {
			return err
		}
		if err := os.WriteFile(base+".end", ends[:len(ends)/2+3], 0o600); err != nil {
			return err
		}
		return lb.Delete(keyEntryFiles)
	})
}

// TestMigrateFromLegacyLayout: an index written by an earlier version (a
// bucket per log for entries, tiles and runs; or entries in the database
// rather than in files), even one whose migration was interrupted, opens
// to the current layout and answers exactly as before: claims, proofs,
// roots, entries, paths, evidence.
func TestMigrateFromLegacyLayout(t *testing.T) {
	defer func(old int) { migrateChunk = old }(migrateChunk)
	migrateChunk = 4096 // many transactions per log

	ids := []LogID{{"alice", "k1"}, {"bob", "k2"}, {"carol", "k3"}}
	path := filepath.Join(t.TempDir(), "index.db")
	x, err := Open(path, ids...)
	if err != nil {
		t.Fatal(err)
	}
	const n = 1300
	for l, id := range ids {
		for first := 0; first < n; first += 500 {
			if c, err := x.Append(id, batch(t, first, min(500, n-first), fmt.Sprint("out", l%2))); err != nil || c != nil {
				t.Fatal(c, err)
			}
		}
		root, err := x.RootAt(id, n)
		if err != nil {
			t.Fatal(err)
		}
		if err := x.SetCheckpoint(id, checkpointNote(id.Name, n, root)); err != nil {
			t.Fatal(err)
		}
	}
	if err := x.AddEvidence(ids[2], &Evidence{Builder: "carol", KeyID: "k3", Kind: EvidenceSplitView, Summary: "test"}); err != nil {
		t.Fatal(err)
	}
	type answers struct {
		Claims  [][]string
		Proofs  [][][]byte
		Roots   []string
		Entries [][]byte
		Paths   []int
		Bad     bool
		Evs     int
	}
	ask := func(x *Index) answers {
		var a answers
		for _, i := range []int{0, 1, 255, 256, 777, n - 1} {
			_, c := entry(t, i, "out0")
			es, err := x.Claims(claim.KindNix, c.Subject)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, e := range es {
				got = append(got, fmt.Sprint(e.Builder, e.Index, e.Claim.Output()))
			}
			a.Claims = append(a.Claims, got)
			ps, err := x.PathsByHash(claim.HashPart(c.Subject))
			if err != nil {
				t.Fatal(err)
			}
			a.Paths = append(a.Paths, len(ps))
			for _, id := range ids {
				_, p, err := x.InclusionProof(id.Name, uint64(i))
				if err != nil {
					t.Fatal(err)
				}
				a.Proofs = append(a.Proofs, p)
				e, err := x.Entry(id, uint64(i))
				if err != nil {
					t.Fatal(err)
				}
				a.Entries = append(a.Entries, e)
			}
		}
		for _, id := range ids {
			for _, size := range []uint64{1, 257, 1000, n} {
				r, err := x.RootAt(id, size)
				if err != nil {
					t.Fatal(err)
				}
				a.Roots = append(a.Roots, r.String())
			}
		}
		a.Bad = x.Compromised("carol")
		evs, err := x.Evidence()
		if err != nil {
			t.Fatal(err)
		}
		a.Evs = len(evs)
		return a
	}
	want := ask(x)
	if len(want.Claims[0]) != 3 || !want.Bad || want.Evs != 1 {
		t.Fatalf("the index before migrating is not what the test wrote: %+v", want)
	}
	x.Close()

	for _, keep := range []int{-2, -1, 0, 700} {
		switch keep {
		case -2: // entries in the database, a torn copy in the files
			toDatabaseEntries(t, path, false)
		case -1: // entries in files and, not yet deleted, in the database
			toDatabaseEntries(t, path, true)
		default:
			toDatabaseEntries(t, path, false)
			toLegacyLayout(t, path, keep)
		}
		x, err := Open(path, ids...)
		if err != nil {
			t.Fatal(err)
		}
		if got := ask(x); !reflect.DeepEqual(got, want) {
			t.Fatalf("after migrating (%d entries already moved): answers differ\n got %+v\nwant %+v", keep, got, want)
		}
		x.db.View(func(tx *bolt.Tx) error {
			if k, _ := tx.Bucket(bucketClaims).Cursor().First(); k != nil {
				t.Errorf("entries are left in the database: %x", k)
			}
			for _, id := range ids {
				lb := tx.Bucket(bucketLogs).Bucket(id.bucketKey())
				if lb.Get(keyEntryFiles) == nil {
					t.Errorf("log %s is not marked as kept in files", id)
				}
				for _, name := range [][]byte{legacyClaims, legacyTiles, legacyRuns} {
					if lb.Bucket(name) != nil {
						t.Errorf("log %s still has its own %s bucket", id, name)
					}
				}
			}
			return nil
		})
		x.Close()
	}

	// It keeps growing in the current layout.
	x, err = Open(path, ids...)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if c, err := x.Append(ids[0], batch(t, n, 10, "out0")); err != nil || c != nil {
		t.Fatal(c, err)
	}
	if _, err := x.RootAt(ids[0], n+10); err != nil {
		t.Fatal(err)
	}
}
