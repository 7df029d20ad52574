package substituter

import (
	"context"
	"fmt"
	"slices"
	"sync/atomic"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/narinfo"
	"github.com/vouch-dev/vouch/verdict"
)

// expectation is what a NAR must be for the node to serve it: the agreed
// (or self-certified) store path, NAR hash and size, and references.
type expectation struct {
	StorePath  string
	NarHash    string // "sha256:" + nix32
	NarSize    uint64
	References []string // basenames, as the claim lists them
	// CA is set for a self-certifying path served without a quorum; the
	// NAR must then also match it.
	CA *narinfo.ContentAddress

	// narinfo is the signed narinfo once rendered: an expectation never
	// changes, so neither does its narinfo.
	narinfo atomic.Pointer[[]byte]
	// sourceUntil (Unix nanoseconds) is until when a source was last
	// found for the NAR (findSource), so that a narinfo request does not
	// look again each time.
	sourceUntil atomic.Int64
}

// cacheable reports whether the NAR hash alone verifies this path's bytes,
// so that a NAR cached under that hash may be served for it.
func (e *expectation) cacheable() bool {
	check, err := newCACheck(e.CA)
	return err == nil && check == nil
}

// Verdict outcome labels beyond verdict.Outcome.
const (
	outcomeUnknownPath   = "unknown-path"
	outcomeSelfCertified = "self-certified"
	outcomeRealised      = "realised"
	outcomeError         = "error"
	outcomeBadValue      = "bad-value"
	// outcomeException is a path trusted only because one of the
	// policy's exceptions admitted it (verdict.Verdict.Exception).
	outcomeException = "exception"
)

// resolve finds what the path with hashPart must be, or says why it will
// not be served: a trusted verdict first, a self-certifying upstream
// narinfo otherwise. code is a short machine-readable reason.
func (s *Server) resolve(ctx context.Context, hashPart string) (exp *expectation, code, reason string) {
	q := s.quorum(hashPart)
	if q.exp != nil {
		outcome := string(verdict.Trusted)
		if q.exception {
			outcome = outcomeException
		}
		s.metrics.verdicts.WithLabelValues(outcome).Inc()
		return q.exp, "", ""
	}
	if q.code == outcomeError || q.code == outcomeBadValue {
		s.metrics.verdicts.WithLabelValues(q.code).Inc()
		return nil, q.code, q.reason
	}
	// No quorum on the path: a realisation this node served may have named
	// it, and the quorum on that realisation vouches for it too.
	if exp := s.realisedPath(hashPart); exp != nil {
		s.metrics.verdicts.WithLabelValues(outcomeRealised).Inc()
		return exp, "", ""
	}
	// No quorum: the path may still certify itself.
	if exp := s.selfCertifiedPath(ctx, hashPart); exp != nil {
		s.metrics.verdicts.WithLabelValues(outcomeSelfCertified).Inc()
		return exp, "", ""
	}
	s.metrics.verdicts.WithLabelValues(q.code).Inc()
	return nil, q.code, q.reason
}

// quorumAnswer is what the quorum says about one hash part: an expectation
// when it trusts the path, a refusal code and reason otherwise.
type quorumAnswer struct {
	version      uint64 // the decider's Version when the answer was computed
	exp          *expectation
	exception    bool // exp is trusted only through a policy exception
	code, reason string
}

// quorum asks the decider about hashPart. When the decider is versioned,
// an answer computed at the decider's current version is reused: the
// verdict is a function of the index and the policy, and the version moves
// whenever the index changes an answer (index.Index.Version).
func (s *Server) quorum(hashPart string) quorumAnswer {
	vd, versioned := s.decider.(VersionedDecider)
	var version uint64
	if versioned {
		// Read before the lookup: a write that lands during it moves the
		// version, so the answer below is never reused past that write.
		version = vd.Version()
		if a, ok := s.verdicts.Get(hashPart); ok && a.version == version {
			return a
		}
	}
	a := s.decideQuorum(hashPart)
	a.version = version
	if versioned && a.code != outcomeError {
		s.verdicts.Add(hashPart, a)
	}
	return a
}

func (s *Server) decideQuorum(hashPart string) quorumAnswer {
	storePath, ok := s.decider.PathByHash(hashPart)
	if !ok {
		return quorumAnswer{code: outcomeUnknownPath, reason: "no followed builder has a claim for this path"}
	}
	v, err := s.decider.Decide(claim.KindNix, storePath)
	switch {
	case err != nil:
		s.log.Error("verdict failed", "path", storePath, "err", err)
		return quorumAnswer{code: outcomeError, reason: "the verdict could not be computed (see the node's log)"}
	case v.Outcome == verdict.Trusted:
		exp, err := fromVerdict(storePath, v)
		if err != nil {
			s.log.Error("trusted verdict unusable", "path", storePath, "err", err)
			return quorumAnswer{code: outcomeBadValue, reason: err.Error()}
		}
		if v.Exception != nil {
			s.log.Info("path admitted by a policy exception", "path", storePath, "exception", v.Exception.Match, "reason", v.Exception.Reason)
		}
		return quorumAnswer{exp: exp, exception: v.Exception != nil}
	}
	reason := v.Reason
	if reason == "" {
		reason = "no quorum of the configured builders agrees on this path"
	}
	return quorumAnswer{code: string(v.Outcome), reason: reason}
}

// fromVerdict takes the expectation from a trusted verdict's value, after
// checking the value is about this path and well formed: the verdict is
// the only source of these fields, so a broken one must not be signed.
func fromVerdict(storePath string, v verdict.Verdict) (*expectation, error) {
	c := v.Value
	if c == nil {
		return nil, fmt.Errorf("trusted verdict for %s has no value", storePath)
	}
	if c.Kind != claim.KindNix || c.Subject != storePath {
		return nil, fmt.Errorf("trusted verdict for %s carries a claim about %s %s", storePath, c.Kind, c.Subject)
	}
	h, err := narinfo.NormaliseNarHash(c.NarHash)
	if err != nil || h != c.NarHash || c.NarSize == 0 {
		return nil, fmt.Errorf("trusted verdict for %s has NAR hash %q size %d; want sha256:<nix32> and a size > 0", storePath, c.NarHash, c.NarSize)
	}
	return &expectation{StorePath: storePath, NarHash: c.NarHash, NarSize: c.NarSize, References: c.References}, nil
}

// selfCertifiedPath asks the upstreams for hashPart's narinfo and returns
// the expectation of the first whose CA field certifies its store path.
func (s *Server) selfCertifiedPath(ctx context.Context, hashPart string) *expectation {
	if exp, ok := s.selfCertified.Get(hashPart); ok {
		return exp
	}
	if len(s.upstreams) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	for res := range s.raceNarinfos(ctx, hashPart) {
		if res.err != nil {
			continue
		}
		exp, err := selfCertified(hashPart, res.info)
		if err != nil {
			if res.info.CA != "" {
				s.upstreamFailed(res.up, "ca-mismatch", hashPart, err)
			}
			continue
		}
		s.selfCertified.Add(hashPart, exp)
		return exp
	}
	return nil
}

// selfCertified checks that an upstream narinfo describes a path named by
// its own content, and returns what its NAR must then be.
func selfCertified(hashPart string, ni *narinfo.NarInfo) (*expectation, error) {
	if ni.CA == "" {
		return nil, fmt.Errorf("no CA field")
	}
	if claim.HashPart(ni.StorePath) != hashPart {
		return nil, fmt.Errorf("narinfo is about %s, not hash %s", ni.StorePath, hashPart)
	}
	ca, err := narinfo.ParseCA(ni.CA)
	if err != nil {
		return nil, err
	}
	if err := ca.Certifies(ni.StorePath, ni.References); err != nil {
		return nil, err
	}
	if ca.Method == narinfo.CARecursive && ca.Hash.Algo == "sha256" && ca.Hash.String() != ni.NarHash {
		// For fixed:r:sha256 the CA hash IS the NAR hash.
		return nil, fmt.Errorf("CA %s but NarHash %s", ca, ni.NarHash)
	}
	refs := slices.Clone(ni.References)
	slices.Sort(refs)
	return &expectation{StorePath: ni.StorePath, NarHash: ni.NarHash, NarSize: ni.NarSize, References: refs, CA: &ca}, nil
}

// matches reports how an upstream narinfo differs from the expectation, or
// nil when its NarHash, NarSize and References are the expected ones.
func (e *expectation) matches(ni *narinfo.NarInfo) error {
	if ni.StorePath != e.StorePath {
		return fmt.Errorf("narinfo is about %s", ni.StorePath)
	}
	if ni.NarHash != e.NarHash {
		return fmt.Errorf("NarHash %s, agreed %s", ni.NarHash, e.NarHash)
	}
	if ni.NarSize != e.NarSize {
		return fmt.Errorf("NarSize %d, agreed %d", ni.NarSize, e.NarSize)
	}
	refs := slices.Clone(ni.References)
	slices.Sort(refs)
	if !slices.Equal(refs, e.References) {
		return fmt.Errorf("References %v, agreed %v", refs, e.References)
	}
	return nil
}
