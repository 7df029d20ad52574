package index

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"sort"

	bolt "go.etcd.io/bbolt"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/verdict"
)

// Subject is one (kind, subject) with every configured log's claim for it,
// as a reproducibility report shows it.
type Subject struct {
	Kind    claim.Kind
	Subject string
	// Claims holds one entry per configured log that claimed the subject
	// (in its complete checkpoint), sorted by builder name. Group them by
	// Claim.Output() to see the distinct outputs and who built each.
	Claims []verdict.Entry
}

// Subjects returns up to limit subjects, in a stable order (by hash of
// kind and subject, not alphabetical), starting after the opaque cursor
// after ("" for the first page). next is the cursor of the following page,
// "" when there is none. Only claims of configured logs count; a subject
// that only unlisted logs claimed is skipped.
//
//	for cur := ""; ; {
//		page, next, err := x.Subjects(cur, 1000)
//		...
//		if next == "" { break }
//		cur = next
//	}
func (x *Index) Subjects(after string, limit int) (page []Subject, next string, err error) {
	if limit <= 0 {
		limit = 1000
	}
	var start []byte
	if after != "" {
		if start, err = hex.DecodeString(after); err != nil || len(start) != 8 {
			return nil, "", fmt.Errorf("index: bad subjects cursor %q", after)
		}
	}
	err = x.db.View(func(tx *bolt.Tx) error {
		// Take up to limit+1 records after the cursor from every run of
		// every configured log; the first limit distinct hashes among them
		// are then complete (no run can hold a smaller hash it did not
		// give), and a run cut short guarantees a limit+1st hash, so the
		// page knows whether another one follows.
		type rec struct {
			id  LogID
			lb  *bolt.Bucket
			rec []byte
		}
		var recs []rec
		for _, id := range x.configured() {
			lb := tx.Bucket(bucketLogs).Bucket(id.bucketKey())
			if lb == nil {
				continue
			}
			m := x.meta(id)
			if m == nil {
				continue
			}
			for _, r := range x.data(tx, m.seq).runs().After(start, limit+1) {
				recs = append(recs, rec{id, lb, r})
			}
		}
		sort.SliceStable(recs, func(i, j int) bool { return bytes.Compare(recs[i].rec[:8], recs[j].rec[:8]) < 0 })
		hashes, last := 0, []byte(nil)
		for i := 0; i < len(recs); {
			h := recs[i].rec[:8]
			if hashes == limit {
				next = hex.EncodeToString(last)
				return nil
			}
			hashes++
			last = h
			// Gather all claims under one hash (normally one subject).
			bySubject := map[string]*Subject{}
			var order []string
			for ; i < len(recs) && bytes.Equal(recs[i].rec[:8], h); i++ {
				e, ok, err := x.entryFor(tx, recs[i].id, recordIndex(recs[i].rec))
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
				key := e.Claim.Key()
				s := bySubject[key]
				if s == nil {
					s = &Subject{Kind: e.Claim.Kind, Subject: e.Claim.Subject}
					bySubject[key] = s
					order = append(order, key)
				}
				s.Claims = append(s.Claims, e)
			}
			sort.Strings(order)
			for _, key := range order {
				s := bySubject[key]
				sort.Slice(s.Claims, func(i, j int) bool { return s.Claims[i].Builder < s.Claims[j].Builder })
				page = append(page, *s)
			}
		}
		return nil
	})
	return page, next, err
}

// LogStats is the health and size of one configured log, for reports and
// the dashboard.
type LogStats struct {
	State
	// Pending is the number of entries of the latest verified checkpoint
	// not yet indexed (non-zero while a sync is under way or failing).
	Pending uint64
}

// Stats returns the state of every configured log, sorted by name.
func (x *Index) Stats() ([]LogStats, error) {
	ids := x.configured()
	out := make([]LogStats, 0, len(ids))
	for _, id := range ids {
		s, err := x.State(id)
		if err != nil {
			return nil, err
		}
		ls := LogStats{State: s}
		if s.Checkpoint != nil && s.Checkpoint.Size > s.Synced {
			ls.Pending = s.Checkpoint.Size - s.Synced
		}
		out = append(out, ls)
	}
	return out, nil
}

// Configured returns the LogID the current policy gives builder, if any.
func (x *Index) Configured(builder string) (LogID, bool) {
	x.mu.RLock()
	defer x.mu.RUnlock()
	id, ok := x.byName[builder]
	return id, ok
}
