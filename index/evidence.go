package index

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

// EvidenceKind names a way a log misbehaved.
type EvidenceKind string

// The kinds of evidence. Those marked "proof" convince anyone holding the
// builder's public key, and only they mark a log compromised. The others
// ("observation") record what one follower was served: anyone on the path
// between it and the log (a stale mirror or cache, a proxy, anyone on
// plain http) can cause them, so they prove nothing about the builder.
// The follower no longer records them (it reports the fetch as failed and
// retries); indexes written by earlier versions may hold them, and Open
// keeps them as observations without the compromised mark they once set.
const (
	// Rollback (observation): the log served a smaller tree than one it
	// had served before. Checkpoints[0] is the earlier, larger one;
	// Checkpoints[1] the later, smaller one. Both signatures are genuine,
	// but the order in which they were served is the follower's word.
	EvidenceRollback EvidenceKind = "rollback"
	// SplitView (proof): two checkpoints of the same size with different
	// root hashes. Checkpoints[0] and [1].
	EvidenceSplitView EvidenceKind = "split-view"
	// Fork (proof): two checkpoints that cannot both be true.
	// Checkpoints[0] is the smaller, Checkpoints[1] the larger; TreeProof
	// is a consistency proof from the larger tree down to the smaller size
	// that checks against Checkpoints[1]'s root and ImpliedRoot, and
	// ImpliedRoot differs from Checkpoints[0]'s root.
	EvidenceFork EvidenceKind = "fork"
	// BadTile (observation): a hash tile the log served does not hash up
	// to the signed root of Checkpoints[0]. Files holds the tiles as
	// served (one of them at least is wrong; the follower cannot tell
	// which).
	EvidenceBadTile EvidenceKind = "bad-tile"
	// BadEntry (observation): an entry the log served does not hash to the
	// leaf hash the signed tree holds at its index. Claims[0] holds the
	// entry as served, its index, and the inclusion proof (to
	// Checkpoints[0]) of the leaf hash the tree really holds, which is
	// LeafHash. When the bundle could not even be parsed, Files holds it
	// instead.
	EvidenceBadEntry EvidenceKind = "bad-entry"
	// ConflictingClaims (proof): the log holds two different outputs for
	// one subject. Claims[0] and [1] are both entries with their indexes
	// and inclusion proofs to Checkpoints[Claims[i].Checkpoint].
	EvidenceConflictingClaims EvidenceKind = "conflicting-claims"
)

// Evidence is one recorded misbehaviour of a log. Its JSON form is also the
// export format: a self-contained file that a third party checks with only
// the builder's verifier key (follow.VerifyEvidence).
type Evidence struct {
	ID      string       `json:"id"`
	Kind    EvidenceKind `json:"kind"`
	Builder string       `json:"builder"`
	KeyID   string       `json:"key_id"`
	// VKey is the verifier key the checkpoints were verified with.
	VKey    string    `json:"vkey"`
	Log     string    `json:"log"` // the log's URL
	Time    time.Time `json:"time"`
	Summary string    `json:"summary"` // one human sentence

	// Checkpoints are the signed notes involved, verbatim.
	Checkpoints []string `json:"checkpoints"`

	TreeProof   []tlog.Hash `json:"tree_proof,omitempty"`
	ImpliedRoot *tlog.Hash  `json:"implied_root,omitempty"`

	Claims   []EvidenceEntry `json:"claims,omitempty"`
	LeafHash *tlog.Hash      `json:"leaf_hash,omitempty"`

	// Files are files the log served that did not match its signed root.
	Files []EvidenceFile `json:"files,omitempty"`

	// Readmitted is set when an operator re-admitted the builder after
	// this evidence (Index.Readmit): the evidence stands, but no longer
	// marks the log compromised.
	Readmitted *Readmission `json:"readmitted,omitempty"`
}

// Readmission is an operator's deliberate decision to count a builder
// again after proven evidence against its log.
type Readmission struct {
	Time   time.Time `json:"time"`
	Reason string    `json:"reason"`
	// Overrides lists the IDs of the evidence it overrides.
	Overrides []string `json:"overrides"`
	// Resynced is set when the log's replica was dropped to be synced
	// again from scratch (the evidence showed two histories, so the
	// replica holds one the log may no longer serve).
	Resynced bool `json:"resynced,omitempty"`
}

// EvidenceFile is a file as a log served it.
type EvidenceFile struct {
	Path string `json:"path"`
	Data []byte `json:"data"`
}

// EvidenceEntry is one log entry with an inclusion proof.
type EvidenceEntry struct {
	Index      uint64      `json:"index"`
	Entry      []byte      `json:"entry"`      // the entry bytes (a claim)
	Checkpoint int         `json:"checkpoint"` // index into Evidence.Checkpoints
	Proof      []tlog.Hash `json:"proof"`      // RFC 6962 inclusion proof
}

// Proven reports whether the evidence convinces a third party on its own,
// as opposed to recording what this follower observed.
func (e *Evidence) Proven() bool {
	switch e.Kind {
	case EvidenceSplitView, EvidenceFork, EvidenceConflictingClaims:
		return true
	}
	return false
}

// AddEvidence records e against log id (setting e.ID). Proven evidence
// marks the log compromised in the same transaction: from then on its
// claims count for nothing and the follower stops syncing it, until an
// operator re-admits it (Readmit). An observation is only recorded.
func (x *Index) AddEvidence(id LogID, e *Evidence) error {
	if err := x.ensure(id); err != nil {
		return err
	}
	err := x.db.Update(func(tx *bolt.Tx) error {
		lb, err := x.logBucket(tx, id, false)
		if err != nil {
			return err
		}
		eb := tx.Bucket(bucketEvidence)
		n, err := eb.NextSequence()
		if err != nil {
			return err
		}
		e.ID = strconv.FormatUint(n, 10)
		e.Builder, e.KeyID = id.Name, id.KeyID
		v, err := json.Marshal(e)
		if err != nil {
			return err
		}
		if err := eb.Put(u64(n), v); err != nil {
			return err
		}
		if !e.Proven() {
			return nil
		}
		return lb.Put(keyCompromised, []byte(e.ID))
	})
	if err != nil {
		return fmt.Errorf("index: record evidence against %s: %w", id, err)
	}
	if e.Proven() {
		x.mu.Lock()
		x.logs[id].compromised = true
		x.mu.Unlock()
		x.version.Add(1)
	}
	return nil
}

// compromisingEvidence returns, per log bucket key, the ID of the first
// evidence that marks the log compromised: proven and not overridden by a
// re-admission.
func compromisingEvidence(tx *bolt.Tx) (map[string]string, error) {
	out := map[string]string{}
	err := tx.Bucket(bucketEvidence).ForEach(func(k, v []byte) error {
		e := &Evidence{}
		if err := json.Unmarshal(v, e); err != nil {
			return fmt.Errorf("evidence %d: %w", binary.BigEndian.Uint64(k), err)
		}
		key := LogID{Name: e.Builder, KeyID: e.KeyID}.String()
		if _, ok := out[key]; !ok && e.Proven() && e.Readmitted == nil {
			out[key] = e.ID
		}
		return nil
	})
	return out, err
}

// reconcileCompromised makes every log's compromised mark say what its
// evidence says. Earlier versions also marked a log compromised for
// observations (bad-tile, bad-entry, rollback) that anyone on the network
// path can cause; such marks are cleared here, the records kept.
func reconcileCompromised(tx *bolt.Tx) error {
	by, err := compromisingEvidence(tx)
	if err != nil {
		return err
	}
	logs := tx.Bucket(bucketLogs)
	return logs.ForEachBucket(func(k []byte) error {
		b := logs.Bucket(k)
		id, ok := by[string(k)]
		switch {
		case ok && string(b.Get(keyCompromised)) != id:
			return b.Put(keyCompromised, []byte(id))
		case !ok && b.Get(keyCompromised) != nil:
			return b.Delete(keyCompromised)
		}
		return nil
	})
}

// ErrNotCompromised is returned by Readmit for a log no proven evidence
// marks compromised.
var ErrNotCompromised = errors.New("not marked compromised")

// Readmit clears the compromised mark of log id deliberately: every
// proven evidence against it that no earlier re-admission overrides gets
// r, with reason and time at, and is kept. The log's claims count again
// and the follower syncs it again:
//
//   - After evidence of two histories (fork, split-view), the replica
//     holds a history the log may no longer serve, so it is dropped: the
//     log is synced again from scratch, pinning the checkpoint it serves
//     then (r.Resynced).
//   - After conflicting-claims, the log still holds both entries; the
//     conflicts overridden are accepted from then on (the first output
//     logged for the subject is the one indexed, as for a rebuild), and
//     any other conflict is new evidence.
//
// Readmit must not run while the same log is being synced.
func (x *Index) Readmit(id LogID, reason string, at time.Time) (*Readmission, error) {
	if strings.TrimSpace(reason) == "" {
		return nil, errors.New("index: a re-admission needs a reason")
	}
	m := x.meta(id)
	if m == nil {
		return nil, fmt.Errorf("index: builder %s is %w: it was never synced", id.Name, ErrNotCompromised)
	}
	x.appendMu.Lock()
	defer x.appendMu.Unlock()
	r := &Readmission{Time: at.UTC(), Reason: reason}
	var newSeq uint32
	err := x.db.Update(func(tx *bolt.Tx) error {
		eb := tx.Bucket(bucketEvidence)
		var overridden []*Evidence
		var keys [][]byte
		err := eb.ForEach(func(k, v []byte) error {
			e := &Evidence{}
			if err := json.Unmarshal(v, e); err != nil {
				return fmt.Errorf("evidence %d: %w", binary.BigEndian.Uint64(k), err)
			}
			if e.Builder == id.Name && e.KeyID == id.KeyID && e.Proven() && e.Readmitted == nil {
				overridden = append(overridden, e)
				keys = append(keys, bytes.Clone(k))
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(overridden) == 0 {
			return fmt.Errorf("builder %s is %w: no proven evidence against it that is not overridden already, nothing to re-admit (vouch evidence lists what was recorded)", id.Name, ErrNotCompromised)
		}
		var accept []acceptedConflict
		for _, e := range overridden {
			r.Overrides = append(r.Overrides, e.ID)
			switch e.Kind {
			case EvidenceFork, EvidenceSplitView:
				r.Resynced = true
			case EvidenceConflictingClaims:
				if len(e.Claims) == 2 {
					accept = append(accept, acceptedConflict{First: e.Claims[0].Index, Second: e.Claims[1].Index})
				}
			}
		}
		for i, e := range overridden {
			e.Readmitted = r
			v, err := json.Marshal(e)
			if err != nil {
				return err
			}
			if err := eb.Put(keys[i], v); err != nil {
				return err
			}
		}
		lb, err := x.logBucket(tx, id, false)
		if err != nil {
			return err
		}
		if r.Resynced {
			if lb, err = x.dropReplica(tx, id, m.seq); err != nil {
				return err
			}
			newSeq = binary.BigEndian.Uint32(lb.Get(keySeq))
		}
		if len(accept) > 0 {
			var all []acceptedConflict
			if v := lb.Get(keyAccepted); v != nil {
				if err := json.Unmarshal(v, &all); err != nil {
					return fmt.Errorf("log %s: accepted conflicts: %w", id, err)
				}
			}
			v, err := json.Marshal(append(all, accept...))
			if err != nil {
				return err
			}
			if err := lb.Put(keyAccepted, v); err != nil {
				return err
			}
		}
		return lb.Delete(keyCompromised)
	})
	if err != nil {
		if errors.Is(err, ErrNotCompromised) {
			return nil, fmt.Errorf("index: %w", err)
		}
		return nil, fmt.Errorf("index: re-admit %s: %w", id, err)
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	m.compromised = false
	if r.Resynced {
		// The old files are removed (their numbers are never reused: the
		// hash cache's entries for them are never read again).
		old := m.seq
		f, err := openLogFiles(x.path, newSeq, 0, 0)
		if err != nil {
			return nil, fmt.Errorf("index: re-admit %s: the log was re-admitted, but its new files: %w (the next start opens them)", id, err)
		}
		if m.files != nil {
			m.files.close()
		}
		removeLogFiles(x.path, old)
		delete(x.bySeq, old)
		x.logs[id] = &logMeta{seq: newSeq, files: f}
		x.bySeq[newSeq] = id
	}
	x.version.Add(1)
	return r, nil
}

// acceptedConflict is a conflict a re-admission overrode: the entries at
// First and Second claim two outputs for one subject.
type acceptedConflict struct {
	First  uint64 `json:"first"`
	Second uint64 `json:"second"`
}

// acceptedConflicts returns a function that reports whether the entries
// at first and second of the log of bucket lb are a conflict a
// re-admission accepted.
func acceptedConflicts(lb *bolt.Bucket) (func(first, second uint64) bool, error) {
	v := lb.Get(keyAccepted)
	if v == nil {
		return func(uint64, uint64) bool { return false }, nil
	}
	var all []acceptedConflict
	if err := json.Unmarshal(v, &all); err != nil {
		return nil, fmt.Errorf("accepted conflicts: %w", err)
	}
	return func(first, second uint64) bool {
		for _, a := range all {
			if a.First == first && a.Second == second {
				return true
			}
		}
		return false
	}, nil
}

// dropReplica replaces the bucket of log id (sequence number seq) with a
// new, empty one under a new sequence number, keeping its health, and
// deletes the old number's tiles, runs and entries.
func (x *Index) dropReplica(tx *bolt.Tx, id LogID, seq uint32) (*bolt.Bucket, error) {
	logs := tx.Bucket(bucketLogs)
	health := bytes.Clone(logs.Bucket(id.bucketKey()).Get(keyHealth))
	if err := logs.DeleteBucket(id.bucketKey()); err != nil {
		return nil, err
	}
	prefix := seqPrefix(seq)
	if err := tx.Bucket(bucketSeqs).Delete(prefix[:]); err != nil {
		return nil, err
	}
	for _, name := range [][]byte{bucketTiles, bucketRuns, bucketClaims} {
		c := tx.Bucket(name).Cursor()
		for k, _ := c.Seek(prefix[:]); k != nil && bytes.HasPrefix(k, prefix[:]); k, _ = c.Seek(prefix[:]) {
			if err := c.Delete(); err != nil {
				return nil, err
			}
		}
	}
	b, err := x.logBucket(tx, id, true)
	if err != nil {
		return nil, err
	}
	if health != nil {
		if err := b.Put(keyHealth, health); err != nil {
			return nil, err
		}
	}
	return b, nil
}

// Evidence returns all recorded evidence, oldest first.
func (x *Index) Evidence() ([]*Evidence, error) {
	var out []*Evidence
	err := x.db.View(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketEvidence).ForEach(func(k, v []byte) error {
			e := &Evidence{}
			if err := json.Unmarshal(v, e); err != nil {
				return fmt.Errorf("evidence %d: %w", binary.BigEndian.Uint64(k), err)
			}
			out = append(out, e)
			return nil
		})
	})
	return out, err
}

// EvidenceByID returns the evidence with the given ID.
func (x *Index) EvidenceByID(id string) (*Evidence, error) {
	n, err := strconv.ParseUint(id, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("evidence id %q: want a number as vouch evidence lists", id)
	}
	e := &Evidence{}
	err = x.db.View(func(tx *bolt.Tx) error {
		v := tx.Bucket(bucketEvidence).Get(u64(n))
		if v == nil {
			return fmt.Errorf("no evidence with id %s (vouch evidence lists them)", id)
		}
		return json.Unmarshal(v, e)
	})
	return e, err
}
