package runs

import (
	"crypto/sha256"
	"encoding/binary"
	"path/filepath"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// TestSpacesShareABucket: maps under neighbouring prefixes of one bucket
// (including an all-0xff prefix, which has no end key) grow, merge and
// answer independently, exactly as each would alone.
func TestSpacesShareABucket(t *testing.T) {
	db, err := bolt.Open(filepath.Join(t.TempDir(), "runs.db"), 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	prefixes := [][]byte{{0, 0, 0, 1}, {0, 0, 0, 2}, {0, 0, 1, 0}, {0xff, 0xff, 0xff, 0xff}}
	hash := func(p, i int) []byte {
		var b [16]byte
		binary.BigEndian.PutUint64(b[:], uint64(p))
		binary.BigEndian.PutUint64(b[8:], uint64(i))
		h := sha256.Sum256(b[:])
		return h[:8]
	}
	const batches, per = 37, 50
	err = db.Update(func(tx *bolt.Tx) error {
		b, err := tx.CreateBucket([]byte("runs"))
		if err != nil {
			return err
		}
		// Batches of every space interleaved, as logs sync side by side.
		for batch := 0; batch < batches; batch++ {
			for p, prefix := range prefixes {
				var recs []Record
				for i := batch * per; i < (batch+1)*per; i++ {
					var r Record
					copy(r.Hash[:], hash(p, i))
					r.Index = uint64(i)
					recs = append(recs, r)
				}
				if err := (Space{B: b, Prefix: prefix}).Add(uint64(batch*per), Build(recs, nil)); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("runs"))
		for p, prefix := range prefixes {
			s := Space{B: b, Prefix: prefix}
			nruns := 0
			c := b.Cursor()
			for k, _ := c.Seek(prefix); k != nil && len(k) == len(prefix)+8 && string(k[:len(prefix)]) == string(prefix); k, _ = c.Next() {
				nruns++
			}
			if nruns > 8 {
				t.Errorf("space %x: %d runs after %d batches: not merged", prefix, nruns, batches)
			}
			for i := 0; i < batches*per; i++ {
				if n, ok := s.Lookup(hash(p, i)); !ok || n != uint64(i) {
					t.Fatalf("space %x: entry %d: got %d %v", prefix, i, n, ok)
				}
				// Another space's hashes are not here.
				if _, ok := s.Lookup(hash((p+1)%len(prefixes), i)); ok {
					t.Fatalf("space %x answers for space %d", prefix, (p+1)%len(prefixes))
				}
			}
			if got := len(s.After(nil, batches*per)); got != batches*per {
				t.Errorf("space %x: After lists %d records, want %d", prefix, got, batches*per)
			}
		}
		return nil
	})
}
