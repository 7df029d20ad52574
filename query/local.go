package query

import (
	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/follow"
	"github.com/vouch-dev/vouch/index"
	"github.com/vouch-dev/vouch/report"
	"github.com/vouch-dev/vouch/verdict"
)

// local answers from the follower index itself, under the config's policy.
type local struct {
	idx    *index.Index
	policy *verdict.Policy
}

func openLocal(cfg *config.Config, policy *verdict.Policy) (*local, error) {
	idx, err := follow.OpenIndex(cfg)
	if err != nil {
		return nil, err
	}
	return &local{idx: idx, policy: policy}, nil
}

func (l *local) Verdict(kind claim.Kind, subject string) (verdict.Verdict, error) {
	return l.policy.Decide(l.idx, kind, subject)
}

func (l *local) Report(opt report.Options) (*report.Report, error) {
	return report.Build(l.idx, l.policy, opt)
}

func (l *local) Evidence() ([]*index.Evidence, error) { return l.idx.Evidence() }

func (l *local) EvidenceByID(id string) (*index.Evidence, error) { return l.idx.EvidenceByID(id) }

func (l *local) Origin() string { return "" }

func (l *local) Close() error { return l.idx.Close() }

// LocalIndex returns the follower index src reads when it reads one
// directly, for a caller that must also sync it first (vouch promote
// decides on a fresh view); nil when src is a running node.
func LocalIndex(src Source) *index.Index {
	if l, ok := src.(*local); ok {
		return l.idx
	}
	return nil
}
