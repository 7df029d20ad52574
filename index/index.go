// Package index is a follower's verified replica of the logs it follows: an
// embedded, pure-Go database (bbolt) in STATE/index.db that answers "which
// builders claimed what for this subject?" without touching the network.
//
// Only the follow package writes it, and only with data it has verified:
// checkpoints whose signature and consistency were checked, and entries
// whose RFC 6962 leaf hashes were checked against a signed root. Readers
// (verdict, report, the dashboard) get exactly the claims of a log up to its
// latest fully indexed checkpoint, never a half-synced tail, so every claim
// they see comes with an inclusion proof to a checkpoint the builder signed.
// A verdict reads its claims and proofs through one View (verdict.Viewer):
// one read transaction, the shared buckets opened once for all logs.
//
// # Logs are keyed by name and key
//
// A log is identified by LogID{Name, KeyID}: the builder's name in the
// policy and keys.KeyID of its public key. A builder renamed in the config
// with the same key, or a name reused with a new key, is a different log
// with its own state: claims signed by one key are never counted under
// another. Open is given the LogIDs the current policy lists; lookups by
// builder name (the verdict.Source methods) resolve through that list, and
// logs no longer listed are kept on disk but never returned.
//
// # Layout
//
//	logs/<name> <keyid>/             one bucket per followed log
//	    seq          uint32, the log's short number
//	    checkpoint   latest verified signed checkpoint (note text)
//	    complete     latest checkpoint whose entries are all indexed
//	    pinned       the first checkpoint ever accepted
//	    synced       uint64 high-water mark: entries [0, synced) are indexed
//	    subjects     uint64 number of distinct subjects indexed
//	    compromised  ID of the proven evidence that marks the log compromised,
//	                 present until an operator re-admits it (Readmit)
//	    health       JSON: time and outcome of the last sync attempt
//	    accepted-conflicts  JSON: conflicts a re-admission overrode
//	    pathruns/    the log's store-path hash runs (see paths.go)
//	    entry-files  present: the log's entries are in its files
//	    tile-files   present: the log's full leaf tiles are in its files
//	claims/          empty; where earlier versions kept the entries
//	tiles/           seq4 ‖ level (1) ‖ tile number (8 BE) → hashes
//	                 (≤ 256×32 bytes); once the tile is full, all its nodes
//	                 (full leaf tiles: in the log's files)
//	runs/            seq4 ‖ first index (8 BE) → sorted records h8 ‖ log index (5 BE)
//	seqs/            seq4 → "<name> <keyid>"
//	evidence/        id (8 bytes BE) → JSON Evidence
//
// Beside the database, index.db.logs/ holds what of each log never
// changes once written, in three append-only files named by seq (see
// logfiles.go): its entries exactly as the log served them, their end
// offsets, and its full leaf tiles. Reading entry n is two loads from a
// memory map and a leaf tile one, where a B-tree lookup walked three or
// four pages. The database stays the authority on how many entries there
// are (synced).
//
// seq4 is the log's sequence number: tiles/ and runs/ hold every log, each
// under its own prefix, so that a verdict opens two buckets and two
// cursors for all the logs it reads (a bucket per log cost most of a
// verdict's allocations). Indexes written before kept these inside each
// log's bucket, or the entries in claims/; Open moves them (layout.go).
//
// h8 is the first 8 bytes of SHA-256("<kind> <subject>"). runs/ is the
// log's subject index, a handful of sorted runs merged as the log grows
// (see runs.go): 13 bytes per subject, and indexing cost that does not grow
// with the log. A lookup parses the candidate claim and drops it if its
// kind and subject differ, so a hash collision costs time, never
// correctness.
//
// tiles/ holds the log's Merkle tree exactly as tlog-tiles does (height 8):
// level-0 tiles are the leaf hashes, a level-L+1 tile holds the roots of the
// full level-L tiles. Those are the hashes golang.org/x/mod/sumdb/tlog
// needs (HashFromTile) to compute inclusion and consistency proofs locally.
// Each full tile also keeps its inner nodes, laid out so that a proof's
// path through the tile lies in two 960-byte blocks (see tiles.go, which
// also describes the earlier layouts it still reads), so a proof reads
// stored hashes and hashes nothing but the tree's right edge; the upper tiles,
// which every proof reads, are cached in memory. An inclusion proof in a
// log of a million entries costs a few microseconds.
//
// Each batch of entries is written with its leaf hashes, subject mappings and
// the new high-water mark in one transaction, so a crash at any point
// resumes exactly where the last committed batch ended.
//
// # Size
//
// Per claim the index keeps the entry (a few hundred bytes), 32 bytes of
// leaf hash and about 32 of inner nodes (plus 1/128th for the upper tile
// levels), 13 bytes of subject mapping and bbolt's per-key overhead;
// BytesPerClaim measures it.
package index

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/bits"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/verdict"
)

// TileHeight is the height of the tiles the index keeps: 8, as in
// tlog-tiles, so one tile holds 256 hashes.
const TileHeight = 8

// LogID identifies one followed log: the builder's name in the policy and
// the key id (keys.KeyID) of the key its checkpoints are signed with.
type LogID struct {
	Name  string
	KeyID string
}

func (id LogID) String() string { return id.Name + " " + id.KeyID }

func (id LogID) bucketKey() []byte { return []byte(id.Name + " " + id.KeyID) }

var (
	bucketLogs     = []byte("logs")
	bucketSeqs     = []byte("seqs")
	bucketEvidence = []byte("evidence")
	// Every log's entries, tiles and subject runs, each key prefixed by the
	// log's sequence number (see logData).
	bucketClaims = []byte("claims")
	bucketTiles  = []byte("tiles")
	// Where an earlier version kept them: buckets of these names inside
	// each log's bucket, moved out by migrate.
	legacyClaims = []byte("claims")
	legacyTiles  = []byte("tiles")
	legacyRuns   = []byte("runs")

	keySeq         = []byte("seq")
	keyCheckpoint  = []byte("checkpoint")
	keyComplete    = []byte("complete")
	keyPinned      = []byte("pinned")
	keySynced      = []byte("synced")
	keySubjects    = []byte("subjects")
	keyCompromised = []byte("compromised")
	keyHealth      = []byte("health")
	// keyAccepted lists the conflicts a re-admission overrode (JSON
	// []acceptedConflict).
	keyAccepted = []byte("accepted-conflicts")
	// keyEntryFiles marks a log whose entries are in its files
	// (logfiles.go); without it they are still in claims/.
	keyEntryFiles = []byte("entry-files")
	// keyTileFiles marks a log whose full leaf tiles are in its files;
	// without it they are still in tiles/.
	keyTileFiles = []byte("tile-files")
)

// Index is an open follower index. It is safe for concurrent use; writes to
// different logs are serialised by bbolt.
type Index struct {
	db   *bolt.DB
	path string

	mu     sync.RWMutex
	byName map[string]LogID // configured builders only
	// sortedConfigured is byName's logs sorted by name; like byName it is
	// set by Open and never changed.
	sortedConfigured []LogID
	logs             map[LogID]*logMeta // every log with a bucket
	bySeq            map[uint32]LogID

	// appendMu makes Appends one at a time, so that each publishes its
	// entries (logFiles.commit) before the next one reads them.
	appendMu sync.Mutex

	hashes hashCache

	// version moves after every write that can change an answer of
	// Claims, PathsByHash or Compromised (see Version).
	version atomic.Uint64
}

// Version is a number that changes after every write that can change what
// Claims, PathsByHash or Compromised answer: entries indexed, a checkpoint
// completed, evidence recorded. A reader that reads Version before a lookup
// may reuse the lookup's answer for as long as Version still returns that
// number.
func (x *Index) Version() uint64 { return x.version.Load() }

// logMeta caches what every lookup needs, so reads need not decode notes.
type logMeta struct {
	seq         uint32
	complete    uint64 // size of the latest fully indexed checkpoint
	compromised bool
	files       *logFiles
}

// Open opens (creating if needed) the index at path. configured lists the
// logs of the current policy; only their claims are returned by lookups. A
// second process holding the index makes Open fail after a few seconds.
func Open(path string, configured ...LogID) (*Index, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: 3 * time.Second, FreelistType: bolt.FreelistMapType})
	if err != nil {
		if errors.Is(err, bolt.ErrTimeout) {
			return nil, fmt.Errorf("index %s is in use by another vouch process (is vouch serve running? stop it or ask it instead)", path)
		}
		return nil, fmt.Errorf("index %s: %w", path, err)
	}
	x := &Index{db: db, path: path, byName: map[string]LogID{}, logs: map[LogID]*logMeta{}, bySeq: map[uint32]LogID{}}
	err = db.Update(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketLogs, bucketSeqs, bucketEvidence, bucketClaims, bucketTiles, bucketRuns} {
			if _, err := tx.CreateBucketIfNotExists(name); err != nil {
				return err
			}
		}
		for _, id := range configured {
			if _, err := x.logBucket(tx, id, true); err != nil {
				return err
			}
		}
		if err := reconcileCompromised(tx); err != nil {
			return err
		}
		return tx.Bucket(bucketLogs).ForEachBucket(func(k []byte) error {
			name, keyID, ok := bytes.Cut(k, []byte(" "))
			if !ok {
				return fmt.Errorf("malformed log bucket %q", k)
			}
			id := LogID{Name: string(name), KeyID: string(keyID)}
			b := tx.Bucket(bucketLogs).Bucket(k)
			m := &logMeta{seq: binary.BigEndian.Uint32(b.Get(keySeq)), compromised: b.Get(keyCompromised) != nil}
			if c := b.Get(keyComplete); c != nil {
				cp, err := ParseCheckpointBody(c)
				if err != nil {
					return fmt.Errorf("log %s: stored checkpoint: %w", id, err)
				}
				m.complete = cp.Size
			}
			x.logs[id] = m
			x.bySeq[m.seq] = id
			return nil
		})
	})
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("index %s: %w (the index can be deleted and rebuilt by vouch sync)", path, err)
	}
	if err := x.migrate(); err != nil {
		db.Close()
		return nil, fmt.Errorf("index %s: moving logs to the current layout: %w (nothing was lost; the next start resumes)", path, err)
	}
	if err := x.openAllLogFiles(); err != nil {
		x.Close()
		return nil, fmt.Errorf("index %s: %w", path, err)
	}
	for _, id := range configured {
		x.byName[id.Name] = id
	}
	for _, id := range x.byName {
		x.sortedConfigured = append(x.sortedConfigured, id)
	}
	sort.Slice(x.sortedConfigured, func(i, j int) bool { return x.sortedConfigured[i].Name < x.sortedConfigured[j].Name })
	return x, nil
}

// Close closes the database and the logs' files.
func (x *Index) Close() error {
	err := x.db.Close()
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, m := range x.logs {
		if m.files != nil {
			err = errors.Join(err, m.files.close())
			m.files = nil
		}
	}
	return err
}

// Path returns the database file's path.
func (x *Index) Path() string { return x.db.Path() }

// logBucket returns the bucket of log id, creating it (and its sequence
// number) when create is set and it does not exist.
func (x *Index) logBucket(tx *bolt.Tx, id LogID, create bool) (*bolt.Bucket, error) {
	logs := tx.Bucket(bucketLogs)
	if b := logs.Bucket(id.bucketKey()); b != nil || !create {
		if b == nil {
			return nil, fmt.Errorf("log %s is not in the index", id)
		}
		return b, nil
	}
	b, err := logs.CreateBucket(id.bucketKey())
	if err != nil {
		return nil, err
	}
	n, err := tx.Bucket(bucketSeqs).NextSequence()
	if err != nil {
		return nil, err
	}
	if n >= 1<<32 {
		return nil, errors.New("too many logs")
	}
	seq := binary.BigEndian.AppendUint32(nil, uint32(n))
	if err := b.Put(keySeq, seq); err != nil {
		return nil, err
	}
	if err := tx.Bucket(bucketSeqs).Put(seq, id.bucketKey()); err != nil {
		return nil, err
	}
	// A new log keeps its entries and leaf tiles in files from the start.
	if err := b.Put(keyEntryFiles, []byte{1}); err != nil {
		return nil, err
	}
	if err := b.Put(keyTileFiles, []byte{1}); err != nil {
		return nil, err
	}
	return b, nil
}

// meta returns the cached metadata of id, or nil.
func (x *Index) meta(id LogID) *logMeta {
	x.mu.RLock()
	defer x.mu.RUnlock()
	return x.logs[id]
}

// ensure makes sure id has a bucket and cached metadata.
func (x *Index) ensure(id LogID) error {
	if x.meta(id) != nil {
		return nil
	}
	var seq uint32
	err := x.db.Update(func(tx *bolt.Tx) error {
		b, err := x.logBucket(tx, id, true)
		if err != nil {
			return err
		}
		seq = binary.BigEndian.Uint32(b.Get(keySeq))
		return nil
	})
	if err != nil {
		return err
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.logs[id] == nil {
		// A new log: any files of its number are left from an
		// index deleted since, and are cut to nothing.
		f, err := openLogFiles(x.path, seq, 0, 0)
		if err != nil {
			return fmt.Errorf("index: log %s: %w", id, err)
		}
		x.logs[id] = &logMeta{seq: seq, files: f}
		x.bySeq[seq] = id
	}
	return nil
}

// subjectHash is the 8-byte key prefix of (kind, subject) in subjects/.
func subjectHash(kind claim.Kind, subject string) []byte {
	h := sha256.New()
	h.Write([]byte(kind))
	h.Write([]byte{' '})
	h.Write([]byte(subject))
	return h.Sum(nil)[:8]
}

func u64(n uint64) []byte { return binary.BigEndian.AppendUint64(nil, n) }

func getU64(b *bolt.Bucket, key []byte) uint64 {
	v := b.Get(key)
	if len(v) != 8 {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

// State is what the index knows about one log.
type State struct {
	LogID
	// Checkpoint is the latest checkpoint whose signature and consistency
	// with its predecessor were verified (nil before the first sync).
	Checkpoint *Checkpoint
	// Complete is the latest checkpoint whose entries are all indexed; the
	// claims lookups return and the proofs InclusionProof gives are in it.
	Complete *Checkpoint
	// Pinned is the first checkpoint ever accepted for this log.
	Pinned *Checkpoint
	// Synced is the high-water mark: entries [0, Synced) are indexed.
	Synced uint64
	// Subjects is the number of distinct (kind, subject) the log claimed.
	Subjects    uint64
	Compromised bool
	Health      Health
}

// Health is the outcome of the last sync attempt of a log.
//
// A failed attempt makes the log unavailable until an attempt succeeds: a
// fault of that fetch (the network, a bad tile or bundle, a bad
// signature, an older checkpoint than the one verified). It is no
// evidence of anything; the claims already verified keep counting.
type Health struct {
	Checked time.Time `json:"checked"`         // when the last attempt ended
	OK      time.Time `json:"ok"`              // when the last successful attempt ended
	Error   string    `json:"error,omitempty"` // why the last attempt failed, if it did
	// FailingSince is when the first of the failed attempts in a row
	// ended; zero when the last attempt succeeded.
	FailingSince time.Time `json:"failing_since,omitzero"`
	// Failures counts the failed attempts in a row.
	Failures int `json:"failures,omitempty"`
	// Stale is set when the last attempt was shown an older checkpoint
	// than the one this node verified (a stale mirror or cache, or a
	// replay): the newer one is kept (ErrStaleView).
	Stale bool `json:"stale,omitempty"`
}

// Unavailable reports whether the last sync attempt failed.
func (h Health) Unavailable() bool { return h.Error != "" }

// ErrStaleView is wrapped by the error of a sync attempt that was shown an
// older, genuine checkpoint than the one verified; SetHealth marks the
// health Stale for it.
var ErrStaleView = errors.New("stale view")

// State returns the stored state of log id; a log never synced has a zero
// State with only LogID set.
func (x *Index) State(id LogID) (State, error) {
	s := State{LogID: id}
	err := x.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketLogs).Bucket(id.bucketKey())
		if b == nil {
			return nil
		}
		var err error
		load := func(key []byte) *Checkpoint {
			v := b.Get(key)
			if v == nil || err != nil {
				return nil
			}
			var cp *Checkpoint
			cp, err = ParseCheckpointBody(v)
			if err == nil {
				cp.Note = bytes.Clone(v)
			}
			return cp
		}
		s.Checkpoint, s.Complete, s.Pinned = load(keyCheckpoint), load(keyComplete), load(keyPinned)
		s.Synced = getU64(b, keySynced)
		s.Subjects = getU64(b, keySubjects)
		s.Compromised = b.Get(keyCompromised) != nil
		if h := b.Get(keyHealth); h != nil {
			_ = json.Unmarshal(h, &s.Health) // informational only
		}
		return err
	})
	return s, err
}

// SetCheckpoint records cp (whose Note the caller has verified, and which
// the caller has checked to be consistent with the stored checkpoint) as
// the latest checkpoint of id. The first checkpoint ever set is pinned. If
// the log's entries already reach cp.Size, cp also becomes the complete
// checkpoint.
func (x *Index) SetCheckpoint(id LogID, cp *Checkpoint) error {
	if err := x.ensure(id); err != nil {
		return err
	}
	complete := false
	err := x.db.Update(func(tx *bolt.Tx) error {
		b, err := x.logBucket(tx, id, false)
		if err != nil {
			return err
		}
		if b.Get(keyPinned) == nil {
			if err := b.Put(keyPinned, cp.Note); err != nil {
				return err
			}
		}
		if getU64(b, keySynced) == cp.Size {
			complete = true
			if err := b.Put(keyComplete, cp.Note); err != nil {
				return err
			}
		}
		return b.Put(keyCheckpoint, cp.Note)
	})
	if err == nil && complete {
		x.mu.Lock()
		x.logs[id].complete = cp.Size
		x.mu.Unlock()
		x.version.Add(1)
	}
	return err
}

// SetHealth records the outcome of a sync attempt of id at time at: a
// nil syncErr is a success, anything else a failure (counted in
// Failures; Stale when it wraps ErrStaleView).
func (x *Index) SetHealth(id LogID, at time.Time, syncErr error) error {
	if err := x.ensure(id); err != nil {
		return err
	}
	return x.db.Update(func(tx *bolt.Tx) error {
		b, err := x.logBucket(tx, id, false)
		if err != nil {
			return err
		}
		var h Health
		if v := b.Get(keyHealth); v != nil {
			_ = json.Unmarshal(v, &h)
		}
		h.Checked = at.UTC()
		h.Error, h.Stale = "", false
		if syncErr != nil {
			h.Error = syncErr.Error()
			h.Stale = errors.Is(syncErr, ErrStaleView)
			if h.Failures == 0 {
				h.FailingSince = at.UTC()
			}
			h.Failures++
		} else {
			h.OK = at.UTC()
			h.FailingSince, h.Failures = time.Time{}, 0
		}
		v, err := json.Marshal(h)
		if err != nil {
			return err
		}
		return b.Put(keyHealth, v)
	})
}

// Batch is a run of consecutive, verified entries of one log.
type Batch struct {
	First   uint64         // log index of Entries[0]
	Entries [][]byte       // the entries as the log holds them
	Claims  []*claim.Claim // claim.Parse of each entry
	Hashes  []tlog.Hash    // tlog.RecordHash of each entry
}

// Conflict is a log holding two different outputs for one subject.
type Conflict struct {
	Kind                    claim.Kind
	Subject                 string
	FirstIndex, SecondIndex uint64
	FirstEntry, SecondEntry []byte
}

func (c *Conflict) Error() string {
	return fmt.Sprintf("the log holds two different outputs for %s %s, at indexes %d and %d", c.Kind, c.Subject, c.FirstIndex, c.SecondIndex)
}

// Append indexes b, which must start at the log's high-water mark, in one
// transaction with the new high-water mark. If an entry of b claims a
// different output for a subject the log already claimed (earlier or in b),
// nothing is written and the conflict is returned; the caller records
// evidence. Two entries with the same output for one subject are fine (a
// builder may log a rebuild); the first one is indexed. So are two
// outputs a re-admission accepted (Readmit).
func (x *Index) Append(id LogID, b *Batch) (*Conflict, error) {
	if len(b.Entries) != len(b.Claims) || len(b.Entries) != len(b.Hashes) {
		return nil, errors.New("index: batch has mismatched entries, claims and hashes")
	}
	if err := x.ensure(id); err != nil {
		return nil, err
	}
	x.appendMu.Lock()
	defer x.appendMu.Unlock()
	files := x.meta(id).files
	var conflict *Conflict
	var newComplete, synced, datLen uint64
	errConflict := errors.New("conflict")
	err := x.db.Update(func(tx *bolt.Tx) error {
		lb, err := x.logBucket(tx, id, false)
		if err != nil {
			return err
		}
		if synced := getU64(lb, keySynced); synced != b.First {
			return fmt.Errorf("index: log %s: batch starts at %d but the index holds entries up to %d", id, b.First, synced)
		}
		d := x.data(tx, x.meta(id).seq)
		runs := d.runs()
		accepted, err := acceptedConflicts(lb)
		if err != nil {
			return err
		}
		pathRuns, err := lb.CreateBucketIfNotExists(bucketPathRuns)
		if err != nil {
			return err
		}
		if err := addRun(pathRuns, b.First, pathRun(pathRuns, b.First, b.Claims)); err != nil {
			return err
		}
		type mapping struct {
			h [8]byte
			n uint64
			c *claim.Claim
		}
		maps := make([]mapping, 0, len(b.Claims))
		for i, c := range b.Claims {
			n := b.First + uint64(i)
			if n > maxIndex {
				return fmt.Errorf("index: log %s: entry %d is beyond the index's limit of %d entries per log", id, n, maxIndex)
			}
			if c == nil {
				continue // not a claim this version understands: kept for the tree only
			}
			m := mapping{n: n, c: c}
			copy(m.h[:], subjectHash(c.Kind, c.Subject))
			maps = append(maps, m)
		}
		// Sorted by hash, equal hashes in log order: the earliest claim of
		// a subject is the one indexed.
		sort.Slice(maps, func(i, j int) bool {
			if c := bytes.Compare(maps[i].h[:], maps[j].h[:]); c != 0 {
				return c < 0
			}
			return maps[i].n < maps[j].n
		})
		run := make([]byte, 0, len(maps)*recordSize)
		for i := range maps {
			m := &maps[i]
			oldIndex, seen := uint64(0), false
			if i > 0 && maps[i-1].h == m.h {
				oldIndex, seen = maps[i-1].n, true
			} else {
				oldIndex, seen = runs.Lookup(m.h[:])
			}
			if seen {
				var oldEntry []byte
				if oldIndex >= b.First {
					oldEntry = b.Entries[oldIndex-b.First]
				} else if oldEntry, err = files.get(oldIndex); err != nil {
					return fmt.Errorf("index: log %s: %w", id, err)
				}
				oc, err := claim.Parse(oldEntry)
				if err != nil {
					return fmt.Errorf("index: log %s: stored entry %d: %w", id, oldIndex, err)
				}
				if oc.Kind != m.c.Kind || oc.Subject != m.c.Subject {
					// A collision of the 8-byte subject hash within one log:
					// astronomically unlikely; refuse rather than mis-index.
					return fmt.Errorf("index: log %s: subject hash collision between %q and %q; please report this", id, oc.Subject, m.c.Subject)
				}
				if oc.Output() != m.c.Output() && !accepted(oldIndex, m.n) {
					conflict = &Conflict{Kind: m.c.Kind, Subject: m.c.Subject, FirstIndex: oldIndex, SecondIndex: m.n,
						FirstEntry: bytes.Clone(oldEntry), SecondEntry: bytes.Clone(b.Entries[m.n-b.First])}
					return errConflict
				}
				m.n = oldIndex // a later claim of the same subject defers to the first
				continue
			}
			run = putRecord(run, m.h[:], m.n)
		}
		newSubjects := uint64(len(run) / recordSize)
		if err := runs.Add(b.First, run); err != nil {
			return err
		}
		leaves, err := appendHashes(d.tiles, d.prefix, b.First, b.Hashes)
		if err != nil {
			return err
		}
		// On disk before the transaction that counts them commits.
		if datLen, err = files.write(b.First, b.Entries, leaves); err != nil {
			return fmt.Errorf("index: log %s: writing entries: %w", id, err)
		}
		synced = b.First + uint64(len(b.Entries))
		if err := lb.Put(keySynced, u64(synced)); err != nil {
			return err
		}
		if err := lb.Put(keySubjects, u64(getU64(lb, keySubjects)+newSubjects)); err != nil {
			return err
		}
		if v := lb.Get(keyCheckpoint); v != nil {
			cp, err := ParseCheckpointBody(v)
			if err != nil {
				return err
			}
			if cp.Size == synced {
				newComplete = synced
				return lb.Put(keyComplete, bytes.Clone(v))
			}
		}
		return nil
	})
	if errors.Is(err, errConflict) {
		return conflict, nil
	}
	if err == nil {
		files.commit(synced, datLen)
	}
	if err == nil && newComplete > 0 {
		x.mu.Lock()
		x.logs[id].complete = newComplete
		x.mu.Unlock()
	}
	if err == nil {
		x.version.Add(1) // new paths for PathsByHash, even below a checkpoint
	}
	return nil, err
}

// Claims returns the claims every configured, fully indexed log holds for
// (kind, subject). It implements verdict.Source; compromised logs are
// included (the verdict reports them), Compromised tells them apart.
func (x *Index) Claims(kind claim.Kind, subject string) ([]verdict.Entry, error) {
	var out []verdict.Entry
	err := x.View(func(v verdict.Source) (err error) {
		out, err = v.Claims(kind, subject)
		return err
	})
	return out, err
}

// configured returns the configured logs, sorted by builder name. The
// slice is shared: callers only read it.
func (x *Index) configured() []LogID { return x.sortedConfigured }

// entryFor reads entry n of log id as an Entry. ok is false when the entry
// is not yet covered by the log's complete checkpoint.
func (x *Index) entryFor(tx *bolt.Tx, id LogID, n uint64) (verdict.Entry, bool, error) {
	x.mu.RLock()
	var complete uint64
	var files *logFiles
	if m := x.logs[id]; m != nil {
		complete, files = m.complete, m.files
	}
	x.mu.RUnlock()
	if n >= complete {
		return verdict.Entry{}, false, nil
	}
	raw, err := files.get(n)
	if err != nil {
		return verdict.Entry{}, false, fmt.Errorf("index: log %s: %w", id, err)
	}
	c, err := claim.Parse(raw)
	if err != nil {
		return verdict.Entry{}, false, fmt.Errorf("index: log %s: stored entry %d: %w", id, n, err)
	}
	return verdict.Entry{Builder: id.Name, Claim: c, Index: n}, true, nil
}

// Compromised reports whether the configured builder's log has evidence
// recorded against it. It implements verdict.Source.
func (x *Index) Compromised(builder string) bool {
	x.mu.RLock()
	defer x.mu.RUnlock()
	id, ok := x.byName[builder]
	if !ok {
		return false
	}
	m := x.logs[id]
	return m != nil && m.compromised
}

// InclusionProof returns an RFC 6962 inclusion proof of entry index of the
// configured builder's log in its complete checkpoint, computed from the
// stored hashes. It implements verdict.Source.
func (x *Index) InclusionProof(builder string, index uint64) (uint64, [][]byte, error) {
	var size uint64
	var proof [][]byte
	err := x.View(func(v verdict.Source) (err error) {
		size, proof, err = v.InclusionProof(builder, index)
		return err
	})
	return size, proof, err
}

// ProveRecord returns the inclusion proof of entry n in the tree of size t
// of log id, from stored hashes (t must not exceed the high-water mark).
func (x *Index) ProveRecord(id LogID, t, n uint64) (tlog.RecordProof, error) {
	var p tlog.RecordProof
	err := x.withHashes(id, t, func(r *storedHashes) (err error) {
		p, err = r.proveRecord(make(tlog.RecordProof, 0, bits.Len64(t)), int64(t), int64(n))
		return err
	})
	return p, err
}

// ProveTree returns the consistency proof from the tree of size n to the
// tree of size t of log id, from stored hashes.
func (x *Index) ProveTree(id LogID, t, n uint64) (tlog.TreeProof, error) {
	var p tlog.TreeProof
	err := x.withHashes(id, t, func(r *storedHashes) (err error) {
		p, err = tlog.ProveTree(int64(t), int64(n), r)
		return err
	})
	return p, err
}

// RootAt returns the root hash of the first n entries of log id, computed
// from stored hashes.
func (x *Index) RootAt(id LogID, n uint64) (tlog.Hash, error) {
	var h tlog.Hash
	err := x.withHashes(id, n, func(r *storedHashes) (err error) {
		h, err = tlog.TreeHash(int64(n), r)
		return err
	})
	return h, err
}

func (x *Index) withHashes(id LogID, size uint64, fn func(*storedHashes) error) error {
	var known *logMeta
	x.mu.RLock()
	if m := x.logs[id]; m != nil && size <= m.complete {
		// The complete checkpoint's entries are indexed: nothing to check.
		// (complete is updated after its transaction commits, so the one
		// below sees them.)
		known = &logMeta{seq: m.seq, complete: m.complete}
	}
	x.mu.RUnlock()
	return x.db.View(func(tx *bolt.Tx) error {
		lb, err := x.logBucket(tx, id, false)
		if err != nil {
			return err
		}
		r := &storedHashes{b: tx.Bucket(bucketTiles), cache: &x.hashes}
		if known != nil {
			r.seq, r.synced = known.seq, known.complete
		} else {
			r.seq, r.synced = binary.BigEndian.Uint32(lb.Get(keySeq)), getU64(lb, keySynced)
			if size > r.synced {
				return fmt.Errorf("index: log %s: tree size %d is beyond the %d entries indexed", id, size, r.synced)
			}
		}
		r.prefix = seqPrefix(r.seq)
		r.files = x.meta(id).files
		return fn(r)
	})
}

// Entry returns the stored entry n of log id.
func (x *Index) Entry(id LogID, n uint64) ([]byte, error) {
	m := x.meta(id)
	if m == nil {
		return nil, fmt.Errorf("log %s is not in the index", id)
	}
	e, err := m.files.get(n)
	if err != nil {
		return nil, fmt.Errorf("index: log %s: %w", id, err)
	}
	if e == nil {
		return nil, fmt.Errorf("index: log %s has no entry %d indexed", id, n)
	}
	return bytes.Clone(e), nil
}

// Size returns the size in bytes of the database file and the entry
// files.
func (x *Index) Size() (int64, error) {
	st, err := os.Stat(x.db.Path())
	if err != nil {
		return 0, err
	}
	size := st.Size()
	x.mu.RLock()
	defer x.mu.RUnlock()
	for _, m := range x.logs {
		if m.files != nil {
			size += int64(m.files.size())
		}
	}
	return size, nil
}

// BytesPerClaim returns the bytes the index uses per indexed entry: the
// bytes of all keys and values bbolt holds in use (pages in use, not free
// pages of the file) and of the logs' files, divided by the number of
// entries indexed.
func (x *Index) BytesPerClaim() (float64, error) {
	var inuse, entries int64
	x.mu.RLock()
	for _, m := range x.logs {
		if m.files != nil {
			inuse += int64(m.files.size())
		}
	}
	x.mu.RUnlock()
	err := x.db.View(func(tx *bolt.Tx) error {
		for _, name := range [][]byte{bucketLogs, bucketSeqs, bucketEvidence, bucketClaims, bucketTiles, bucketRuns} {
			s := tx.Bucket(name).Stats()
			inuse += int64(s.BranchInuse + s.LeafInuse)
		}
		return tx.Bucket(bucketLogs).ForEachBucket(func(k []byte) error {
			entries += int64(getU64(tx.Bucket(bucketLogs).Bucket(k), keySynced))
			return nil
		})
	})
	if err != nil || entries == 0 {
		return 0, err
	}
	return float64(inuse) / float64(entries), nil
}
