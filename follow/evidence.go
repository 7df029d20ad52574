package follow

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/index"
	"github.com/vouch-dev/vouch/keys"
)

// ExportEvidence writes e to path as indented JSON: the self-contained
// file VerifyEvidence checks.
func ExportEvidence(e *index.Evidence, path string) error {
	b, err := MarshalEvidence(e)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

// MarshalEvidence returns the bytes of the file ExportEvidence writes, for
// those who serve it rather than write it.
func MarshalEvidence(e *index.Evidence) ([]byte, error) {
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// ReadEvidence reads a file written by ExportEvidence.
func ReadEvidence(path string) (*index.Evidence, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	e := &index.Evidence{}
	if err := json.Unmarshal(b, e); err != nil {
		return nil, fmt.Errorf("%s: not a vouch evidence file: %w", path, err)
	}
	return e, nil
}

// VerifyEvidence checks e using only the builder's verifier key vkey, the
// way a third party would: every checkpoint must be signed by vkey, and
// the data must show what e.Kind says. It returns a sentence saying what
// was established; for kinds that record an observation (index.Evidence
// Proven is false) it says what is and is not proven.
func VerifyEvidence(e *index.Evidence, vkey string) (string, error) {
	v, err := keys.NewVerifier(vkey)
	if err != nil {
		return "", err
	}
	cps := make([]*index.Checkpoint, len(e.Checkpoints))
	for i, raw := range e.Checkpoints {
		cp, err := OpenCheckpoint([]byte(raw), v)
		if err != nil {
			return "", fmt.Errorf("checkpoint %d: %w", i, err)
		}
		cps[i] = cp
	}
	need := func(n int) error {
		if len(cps) != n {
			return fmt.Errorf("%s evidence needs %d checkpoints, the file has %d", e.Kind, n, len(cps))
		}
		return nil
	}
	switch e.Kind {
	case index.EvidenceSplitView:
		if err := need(2); err != nil {
			return "", err
		}
		a, b := cps[0], cps[1]
		if a.Size != b.Size || a.Root == b.Root {
			return "", fmt.Errorf("not a split view: sizes %d and %d, roots %v and %v", a.Size, b.Size, a.Root, b.Root)
		}
		return fmt.Sprintf("proven: %s signed two different trees of size %d", v.Name(), a.Size), nil

	case index.EvidenceFork:
		if err := need(2); err != nil {
			return "", err
		}
		small, large := cps[0], cps[1]
		if small.Size >= large.Size || e.ImpliedRoot == nil {
			return "", errors.New("fork evidence needs a smaller then a larger checkpoint and an implied root")
		}
		if err := tlog.CheckTree(e.TreeProof, int64(large.Size), large.Root, int64(small.Size), *e.ImpliedRoot); err != nil {
			return "", fmt.Errorf("the consistency proof does not tie the implied root to the larger checkpoint: %w", err)
		}
		if *e.ImpliedRoot == small.Root {
			return "", errors.New("the implied root equals the smaller checkpoint's root: the checkpoints are consistent")
		}
		return fmt.Sprintf("proven: %s signed a tree of size %d whose first %d entries have root %v, and a tree of size %d with root %v", v.Name(), large.Size, small.Size, *e.ImpliedRoot, small.Size, small.Root), nil

	case index.EvidenceConflictingClaims:
		if len(e.Claims) != 2 {
			return "", fmt.Errorf("conflicting-claims evidence needs 2 claims, the file has %d", len(e.Claims))
		}
		var cs [2]*claim.Claim
		for i, c := range e.Claims {
			if err := checkInclusion(c, cps); err != nil {
				return "", fmt.Errorf("claim %d: %w", i, err)
			}
			if cs[i], err = claim.Parse(c.Entry); err != nil {
				return "", fmt.Errorf("claim %d: %w", i, err)
			}
		}
		if cs[0].Key() != cs[1].Key() || cs[0].Output() == cs[1].Output() {
			return "", fmt.Errorf("the claims do not conflict: %q %q vs %q %q", cs[0].Key(), cs[0].Output(), cs[1].Key(), cs[1].Output())
		}
		return fmt.Sprintf("proven: %s logged two outputs for %s: %s at index %d and %s at index %d", v.Name(), cs[0].Key(), cs[0].Output(), e.Claims[0].Index, cs[1].Output(), e.Claims[1].Index), nil

	// The observations below are recorded only by earlier versions (see
	// index.EvidenceKind); their records are still checked as they are.
	case index.EvidenceRollback:
		if err := need(2); err != nil {
			return "", err
		}
		if cps[0].Size <= cps[1].Size {
			return "", fmt.Errorf("not a rollback: sizes %d then %d", cps[0].Size, cps[1].Size)
		}
		return fmt.Sprintf("observed, not proven: both checkpoints are signed by %s (sizes %d and %d); that the smaller one was served after the larger one is the follower's word", v.Name(), cps[0].Size, cps[1].Size), nil

	case index.EvidenceBadEntry:
		if err := need(1); err != nil {
			return "", err
		}
		if len(e.Claims) == 1 && e.LeafHash != nil {
			c := e.Claims[0]
			if err := tlog.CheckRecord(c.Proof, int64(cps[0].Size), cps[0].Root, int64(c.Index), *e.LeafHash); err != nil {
				return "", fmt.Errorf("the leaf hash is not in the signed tree: %w", err)
			}
			if tlog.RecordHash(c.Entry) == *e.LeafHash {
				return "", errors.New("the entry hashes to the signed leaf hash: it is not bad")
			}
			return fmt.Sprintf("observed, not proven: the entry shown does not match leaf %d of %s's signed tree of size %d; that the log served it is the follower's word", c.Index, v.Name(), cps[0].Size), nil
		}
		return fmt.Sprintf("observed, not proven: %s's checkpoint of size %d is genuine; that the log served the malformed bundle shown is the follower's word", v.Name(), cps[0].Size), nil

	case index.EvidenceBadTile:
		if err := need(1); err != nil {
			return "", err
		}
		return fmt.Sprintf("observed, not proven: %s's checkpoint of size %d is genuine; that the log served the tiles shown, which do not hash to its root, is the follower's word", v.Name(), cps[0].Size), nil
	}
	return "", fmt.Errorf("unknown evidence kind %q", e.Kind)
}

// checkInclusion checks an entry's inclusion proof against its checkpoint.
func checkInclusion(c index.EvidenceEntry, cps []*index.Checkpoint) error {
	if c.Checkpoint < 0 || c.Checkpoint >= len(cps) {
		return fmt.Errorf("refers to checkpoint %d of %d", c.Checkpoint, len(cps))
	}
	cp := cps[c.Checkpoint]
	if err := tlog.CheckRecord(c.Proof, int64(cp.Size), cp.Root, int64(c.Index), tlog.RecordHash(c.Entry)); err != nil {
		return fmt.Errorf("entry %d is not in the signed tree of size %d: %w", c.Index, cp.Size, err)
	}
	return nil
}
