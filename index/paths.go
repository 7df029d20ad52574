package index

import (
	"bytes"
	"crypto/sha256"
	"sort"

	bolt "go.etcd.io/bbolt"

	"github.com/vouch-dev/vouch/claim"
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
func pathRun(runs *bolt.Bucket, first uint64, claims []*claim.Claim) []byte {
	type rec struct {
		h [8]byte
		n uint64
	}
	recs := make([]rec, 0, len(claims))
	for i, c := range claims {
		if c == nil || c.Kind != claim.KindNix {
			continue
		}
		var r rec
		copy(r.h[:], pathHash(claim.HashPart(c.Subject)))
		r.n = first + uint64(i)
		recs = append(recs, r)
	}
	sort.Slice(recs, func(i, j int) bool {
		if c := bytes.Compare(recs[i].h[:], recs[j].h[:]); c != 0 {
			return c < 0
		}
		return recs[i].n < recs[j].n
	})
	run := make([]byte, 0, len(recs)*recordSize)
	for i, r := range recs {
		if i > 0 && recs[i-1].h == r.h {
			continue
		}
		if _, seen := lookupRuns(runs, r.h[:]); seen {
			continue
		}
		run = putRecord(run, r.h[:], r.n)
	}
	return run
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
			e, ok, err := x.entryFor(lb, id, n)
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
