package index

import (
	"bytes"

	bolt "go.etcd.io/bbolt"

	"github.com/vouch-dev/vouch/claim"
)

// bucketPaths maps store-path basenames, "<hash part>-<name>", to nothing:
// a key set that answers "which store paths with this hash part has any log
// claimed?" — the question a binary cache gets, since Nix asks for
// /<hash part>.narinfo without the name.
//
// Every basename any log claimed is kept, not just the first: a hostile
// listed log could claim a real path's hash part under another name, and
// keeping only one name would let it hide the real path. Callers decide
// among the candidates with a verdict.
var bucketPaths = []byte("storepaths")

// recordPaths adds the store paths of nix claims to bucketPaths.
func recordPaths(tx *bolt.Tx, claims []*claim.Claim) error {
	b, err := tx.CreateBucketIfNotExists(bucketPaths)
	if err != nil {
		return err
	}
	for _, c := range claims {
		if c == nil || c.Kind != claim.KindNix {
			continue
		}
		base := []byte(c.Subject[len(claim.StoreDir)+1:])
		if b.Get(base) == nil {
			if err := b.Put(base, []byte{}); err != nil {
				return err
			}
		}
	}
	return nil
}

// PathsByHash returns the store paths (full, /nix/store/...) with the given
// 32-character hash part that any followed log has claimed, sorted. Whether
// any of them is trusted is for a verdict to say.
func (x *Index) PathsByHash(hashPart string) ([]string, error) {
	if len(hashPart) != 32 {
		return nil, nil
	}
	prefix := []byte(hashPart + "-")
	var out []string
	err := x.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketPaths)
		if b == nil {
			return nil
		}
		c := b.Cursor()
		for k, _ := c.Seek(prefix); k != nil && bytes.HasPrefix(k, prefix); k, _ = c.Next() {
			out = append(out, claim.StoreDir+"/"+string(k))
			if len(out) >= 16 {
				break // more names for one hash part is abuse; 16 is plenty
			}
		}
		return nil
	})
	return out, err
}
