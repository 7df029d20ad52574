package index

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

// EvidenceKind names a way a log misbehaved.
type EvidenceKind string

// The kinds of evidence. Those marked "proof" convince anyone holding the
// builder's public key; the others record what this follower observed.
const (
	// Rollback: the log served a smaller tree than one it had served
	// before. Checkpoints[0] is the earlier, larger one; Checkpoints[1]
	// the later, smaller one. Both signatures are genuine, but the order
	// in which they were served is the follower's word.
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
	// BadTile: a hash tile the log served does not hash up to the signed
	// root of Checkpoints[0]. Files holds the tiles as served (one of
	// them at least is wrong; the follower cannot tell which).
	EvidenceBadTile EvidenceKind = "bad-tile"
	// BadEntry: an entry the log served does not hash to the leaf hash
	// the signed tree holds at its index. Claims[0] holds the entry as
	// served, its index, and the inclusion proof (to Checkpoints[0]) of
	// the leaf hash the tree really holds, which is LeafHash. When the
	// bundle could not even be parsed, Files holds it instead.
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

// AddEvidence records e against log id (setting e.ID) and marks the log
// compromised in the same transaction: from then on its claims count for
// nothing and the follower stops syncing it.
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
		return lb.Put(keyCompromised, []byte(e.ID))
	})
	if err != nil {
		return fmt.Errorf("index: record evidence against %s: %w", id, err)
	}
	x.mu.Lock()
	x.logs[id].compromised = true
	x.mu.Unlock()
	x.version.Add(1)
	return nil
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
