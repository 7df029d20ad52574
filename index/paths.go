package index

import (
	"crypto/sha256"
	"sort"

	bolt "go.etcd.io/bbolt"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/internal/runs"
)

// A binary cache is asked for /<hash part>.narinfo, without the store
// path's name. To answer, each log keeps a second set of sorted runs (see
// runs.go), pathruns/, mapping pathHash(hash part) to the log index of the
// first nix claim whose store path has that hash part. It costs about 13
// bytes per nix claim and, like the subject runs, a constant amount of work
// per claim however large the log grows.
//
// A log that claims one hash part under two names keeps only the first in
// its path runs: it can hide its own second name, never another log's.
// Callers decide among the candidates of all logs with a verdict.
var bucketPathRuns = []byte("pathruns")

// pathHash is the 8-byte key of a store path's hash part in pathruns/.
func pathHash(hashPart string) []byte {
	h := sha256.Sum256([]byte("path " + hashPart))
	return h[:8]
}

// pathRun builds the sorted run of new hash parts among a batch's nix
// claims, skipping those the log's path runs already hold.
func pathRun(pathRuns *bolt.Bucket, first uint64, claims []*claim.Claim) []byte {
	recs := make([]runs.Record, 0, len(claims))
	for i, c := range claims {
		if c == nil || c.Kind != claim.KindNix {
			continue
		}
		recs = append(recs, runs.Record{Hash: [8]byte(pathHash(claim.HashPart(c.Subject))), Index: first + uint64(i)})
	}
	return runs.Build(recs, func(h []byte) bool {
		_, seen := runs.Lookup(pathRuns, h)
		return seen
	})
}

// PathsByHash returns the store paths (full, /nix/store/...) with the given
// 32-character hash part that configured, fully indexed logs have claimed,
// sorted and without duplicates. Whether any of them is trusted is for a
// verdict to say.
func (x *Index) PathsByHash(hashPart string) ([]string, error) {
	if len(hashPart) != 32 {
		return nil, nil
	}
	h := pathHash(hashPart)
	seen := map[string]bool{}
	var out []string
	err := x.db.View(func(tx *bolt.Tx) error {
		logs := tx.Bucket(bucketLogs)
		for _, id := range x.configured() {
			lb := logs.Bucket(id.bucketKey())
			if lb == nil || lb.Bucket(bucketPathRuns) == nil {
				continue
			}
			n, ok := lookupRuns(lb.Bucket(bucketPathRuns), h)
			if !ok {
				continue
			}
			e, ok, err := x.entryFor(tx, id, n)
			if err != nil {
				return err
			}
			if ok && e.Claim.Kind == claim.KindNix && claim.HashPart(e.Claim.Subject) == hashPart && !seen[e.Claim.Subject] {
				seen[e.Claim.Subject] = true
				out = append(out, e.Claim.Subject)
			}
		}
		return nil
	})
	sort.Strings(out)
	return out, err
}
