package verdict

import "github.com/vouch-dev/vouch/claim"

// Outcome is the answer of a verdict.
type Outcome string

// The three possible outcomes. Only Trusted lets an output through.
const (
	Trusted      Outcome = "trusted"
	Insufficient Outcome = "insufficient"
	Conflict     Outcome = "conflict"
)

// Verdict is the decision for one (kind, subject) under a policy, with the
// evidence it rests on.
type Verdict struct {
	Kind    claim.Kind `json:"kind"`
	Subject string     `json:"subject"`
	Outcome Outcome    `json:"outcome"`
	// Value is the agreed claim when Outcome is Trusted; nil otherwise.
	// Its output fields (NarHash, NarSize, References, OutPath, Digest) are
	// the only ones a consumer may use.
	Value *claim.Claim `json:"value,omitempty"`
	// Reason explains the outcome in one sentence for humans.
	Reason string `json:"reason"`

	Agreed      []Vote   `json:"agreed"`      // builders whose claim equals Value (or the leading output)
	Disagreed   []Vote   `json:"disagreed"`   // builders with another output
	Silent      []string `json:"silent"`      // configured builders with no claim for the subject
	Compromised []string `json:"compromised"` // configured builders whose log is marked compromised
	// Outvoted is set when Disagreed is not empty and the leading output
	// alone met the quorum with a strict majority of the configured weight,
	// whatever OnConflict says: the builders in Disagreed lost against an
	// agreeing quorum (a liar or a broken builder stands out), rather than
	// the subject simply not reproducing (no output with such a majority).
	Outvoted bool `json:"outvoted,omitempty"`
	// Exception is set when the policy's rule did not trust the subject
	// and one of its exceptions admitted it: Outcome is Trusted only
	// because of it. Every such verdict carries it.
	Exception *ExceptionUse `json:"exception,omitempty"`
}

// ExceptionUse records that an exception admitted a subject.
type ExceptionUse struct {
	Match  string `json:"match"`  // what the exception matches: "subject …" or "name …"
	Rule   string `json:"rule"`   // the group or builder whose agreement sufficed, or "the policy's rule"
	Reason string `json:"reason"` // the exception's reason, as configured
}

// Vote is one builder's claim as used in a verdict.
type Vote struct {
	Builder  string `json:"builder"`
	Operator string `json:"operator"`
	Weight   int    `json:"weight"`
	Output   string `json:"output"` // claim.Output() of its claim
	// Log is the name the claim was indexed under when it is not Builder:
	// another name the policy lists for the same key (an alias).
	Log   string `json:"log,omitempty"`
	Index uint64 `json:"index"` // the claim's index in that builder's log
	// TreeSize and Proof are an RFC 6962 inclusion proof of the entry at
	// Index in the builder's verified checkpoint of size TreeSize.
	TreeSize uint64   `json:"tree_size"`
	Proof    [][]byte `json:"proof,omitempty"`
}

// Entry is one builder's claim as the follower's index holds it.
type Entry struct {
	Builder string // the builder's name in the policy
	Claim   *claim.Claim
	Index   uint64 // the claim's index in that builder's log
}

// Source is what a verdict reads: the follower's verified index. It is
// implemented by the index package; lookups are local, never remote.
type Source interface {
	// Claims returns every indexed claim for (kind, subject) from every
	// followed log, in any order. One log yields at most one entry per
	// subject unless it misbehaved (then it is also Compromised).
	Claims(kind claim.Kind, subject string) ([]Entry, error)
	// Compromised reports whether the named builder's log was marked
	// compromised (evidence recorded); its claims then count for nothing.
	Compromised(builder string) bool
	// InclusionProof returns an RFC 6962 inclusion proof of the entry at
	// index in the builder's latest verified checkpoint, of size treeSize.
	InclusionProof(builder string, index uint64) (treeSize uint64, proof [][]byte, err error)
}

// A Viewer is a Source that can hold one consistent snapshot of itself
// for a series of reads. Decide reads a verdict's claims and their
// inclusion proofs through one View when its Source is a Viewer, so they
// come from one state of the index (a checkpoint that advances between the
// lookup and the proofs cannot mix two tree sizes into one verdict), and the
// index opens its snapshot once instead of once per read.
type Viewer interface {
	Source
	// View calls fn with a Source reading one snapshot, valid only until
	// fn returns, and returns fn's error.
	View(fn func(Source) error) error
}
