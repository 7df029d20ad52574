package index

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/internal/runs"
	"github.com/vouch-dev/vouch/verdict"
)

// A view is one read transaction of the index seen as a verdict.Source:
// a verdict's claim lookups and inclusion proofs read one snapshot, and
// the shared runs and tiles buckets are opened once, with one cursor
// each, for every log and every read (a read transaction, a bucket open
// and a fresh cursor each cost more than the lookup itself). Entries come
// from the logs' files, and so do full leaf tiles.
//
// The logs' metadata (complete size, compromised) is copied before the
// transaction begins. The index records a new complete size only after
// the transaction that indexed its entries committed and the logs' files
// published them, so every entry below the copied size is in the snapshot
// and in the files: claims and proofs agree on one tree size per log.
type view struct {
	tx   *bolt.Tx
	logs []viewLog // the configured logs, sorted by builder name

	// The shared buckets (see logData) and one cursor on each, opened on
	// first use and used for every log.
	opened      bool
	runs, tiles *bolt.Cursor
	tilesB      *bolt.Bucket
	proof       tlog.RecordProof

	// The proofs a view hands out are carved from these, allocated on
	// the first proof of each View (and again if they run out), so that
	// a verdict's proofs cost two allocations, not two per vote. They
	// belong to the callers: a view never writes them again.
	proofData   []byte
	proofSlices [][]byte
}

type viewLog struct {
	id          LogID
	known       bool // the index has a bucket for the log
	seq         uint32
	complete    uint64 // the view returns and proves entries below it only
	compromised bool
	files       *logFiles

	opened bool // hashes is set up
	hashes storedHashes
}

// views keeps views between verdicts: a view's logs are the larger part of
// what a verdict would otherwise allocate.
var views = sync.Pool{New: func() any { return new(view) }}

// View calls fn with a verdict.Source reading one snapshot of the index,
// valid until fn returns. It implements verdict.Viewer.
func (x *Index) View(fn func(verdict.Source) error) error {
	v := views.Get().(*view)
	x.mu.RLock()
	v.logs = slices.Grow(v.logs[:0], len(x.sortedConfigured))[:len(x.sortedConfigured)]
	for i, id := range x.sortedConfigured {
		l := &v.logs[i]
		*l = viewLog{id: id}
		if m := x.logs[id]; m != nil {
			l.known, l.seq, l.complete, l.compromised, l.files = true, m.seq, m.complete, m.compromised, m.files
		}
		l.hashes.cache = &x.hashes
	}
	x.mu.RUnlock()
	err := x.db.View(func(tx *bolt.Tx) error {
		v.tx = tx
		return fn(v)
	})
	// Nothing of the transaction may outlive it.
	clear(v.logs)
	v.tx, v.opened, v.runs, v.tiles, v.tilesB = nil, false, nil, nil, nil
	v.proofData, v.proofSlices = nil, nil
	views.Put(v)
	return err
}

// log returns the configured log of builder, its buckets opened, or nil.
func (v *view) log(builder string) *viewLog {
	i, ok := 0, false
	if len(v.logs) <= 8 {
		// A policy lists a handful of builders: comparing names in turn
		// is quicker than a binary search.
		for i < len(v.logs) && v.logs[i].id.Name != builder {
			i++
		}
		ok = i < len(v.logs)
	} else {
		i, ok = slices.BinarySearchFunc(v.logs, builder, func(l viewLog, name string) int {
			return strings.Compare(l.id.Name, name)
		})
	}
	if !ok {
		return nil
	}
	return v.open(&v.logs[i])
}

// open opens the shared buckets on first use, sets up l's tree reader,
// and returns l.
func (v *view) open(l *viewLog) *viewLog {
	if !v.opened {
		v.opened = true
		v.runs = v.tx.Bucket(bucketRuns).Cursor()
		v.tilesB = v.tx.Bucket(bucketTiles)
		v.tiles = v.tilesB.Cursor()
	}
	if !l.opened {
		l.opened = true
		l.hashes.b, l.hashes.tiles, l.hashes.prefix = v.tilesB, v.tiles, seqPrefix(l.seq)
		l.hashes.files = l.files
		l.hashes.seq, l.hashes.synced = l.seq, l.complete
	}
	return l
}

// Claims implements verdict.Source (see Index.Claims).
func (v *view) Claims(kind claim.Kind, subject string) ([]verdict.Entry, error) {
	h := subjectHash(kind, subject)
	var out []verdict.Entry
	for i := range v.logs {
		l := &v.logs[i]
		if !l.known || l.complete == 0 {
			continue
		}
		v.open(l)
		n, ok := runs.LookupCursor(v.runs, l.hashes.prefix[:], h)
		if !ok || n >= l.complete {
			continue
		}
		raw, err := l.files.get(n)
		if err != nil {
			return nil, fmt.Errorf("index: log %s: %w", l.id, err)
		}
		c, err := claim.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("index: log %s: stored entry %d: %w", l.id, n, err)
		}
		if c.Kind == kind && c.Subject == subject {
			if out == nil {
				out = make([]verdict.Entry, 0, len(v.logs))
			}
			out = append(out, verdict.Entry{Builder: l.id.Name, Claim: c, Index: n})
		}
	}
	return out, nil
}

// Compromised implements verdict.Source (see Index.Compromised).
func (v *view) Compromised(builder string) bool {
	l := v.log(builder)
	return l != nil && l.compromised
}

// InclusionProof implements verdict.Source (see Index.InclusionProof).
func (v *view) InclusionProof(builder string, index uint64) (uint64, [][]byte, error) {
	l := v.log(builder)
	if l == nil {
		return 0, nil, fmt.Errorf("index: builder %q is not configured", builder)
	}
	size := l.complete
	if index >= size {
		return 0, nil, fmt.Errorf("index: builder %s: entry %d is not in its latest complete checkpoint (size %d)", builder, index, size)
	}
	if !l.known {
		return 0, nil, fmt.Errorf("log %s is not in the index", l.id)
	}
	p, err := l.hashes.proveRecord(v.proof, int64(size), int64(index))
	if err != nil {
		return 0, nil, err
	}
	v.proof = p
	// The caller keeps the proof: copy it out of the scratch space.
	if len(v.proofSlices) < len(p) {
		// Room for one proof of this length from every log.
		n := max(len(p)*len(v.logs), len(p))
		v.proofData, v.proofSlices = make([]byte, n*tlog.HashSize), make([][]byte, n)
	}
	data, proof := v.proofData[:len(p)*tlog.HashSize], v.proofSlices[:len(p):len(p)]
	v.proofData, v.proofSlices = v.proofData[len(data):], v.proofSlices[len(p):]
	for i := range p {
		proof[i] = data[i*tlog.HashSize : (i+1)*tlog.HashSize : (i+1)*tlog.HashSize]
		copy(proof[i], p[i][:])
	}
	return size, proof, nil
}

// get is Bucket.Get through a cursor that is kept: a cursor remembers its
// path down the tree in a slice it reuses, where each Bucket.Get allocates
// a new one.
func get(c *bolt.Cursor, key []byte) []byte {
	k, v := c.Seek(key)
	if !bytes.Equal(k, key) {
		return nil
	}
	return v
}
