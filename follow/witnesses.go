package follow

import (
	"fmt"
	"slices"
	"strings"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/vouch-dev/vouch/config"
)

// witnessPolicy is the follower's rule for witness cosignatures (config
// [[witness]] and quorum.witnesses): a log's new checkpoint is believed
// only when at least need of the listed witnesses cosigned it
// (C2SP tlog-cosignature, cosignature/v1).
//
// Why: a log can sign two histories and show each to a different follower.
// Each follower alone sees a consistent log. An honest witness cosigns only
// checkpoints consistent with every one it cosigned before, so two
// followers that each need a cosignature from a common honest witness
// cannot be shown different histories. A checkpoint without enough
// cosignatures is not evidence of anything (the witnesses may be slow or
// down); the follower keeps the last checkpoint it believed and tries again
// on the next round.
type witnessPolicy struct {
	names     []string        // listed witnesses, by config name
	verifiers []note.Verifier // their cosignature/v1 verifiers, same order
	need      int
}

func newWitnessPolicy(cfg *config.Config) (*witnessPolicy, error) {
	p := &witnessPolicy{need: cfg.Quorum.Witnesses}
	for _, w := range cfg.Witnesses {
		v, err := fnote.NewVerifierForCosignatureV1(w.VKey)
		if err != nil {
			return nil, fmt.Errorf("witness %s: vkey: %w", w.Name, err)
		}
		p.names = append(p.names, w.Name)
		p.verifiers = append(p.verifiers, v)
	}
	if p.need > len(p.verifiers) {
		return nil, fmt.Errorf("quorum.witnesses = %d but only %d witnesses are listed", p.need, len(p.verifiers))
	}
	return p, nil
}

// cosigners returns the names of the listed witnesses whose valid
// cosignature the signed checkpoint raw carries. logV is the log's own
// verifier (note.Open needs every signature it knows to verify: a
// malformed cosignature by a listed witness is an error, not a vote).
func (p *witnessPolicy) cosigners(raw []byte, logV note.Verifier) ([]string, error) {
	n, err := note.Open(raw, note.VerifierList(append([]note.Verifier{logV}, p.verifiers...)...))
	if err != nil {
		return nil, err
	}
	var names []string
	for _, sig := range n.Sigs {
		for i, v := range p.verifiers {
			if sig.Name == v.Name() && sig.Hash == v.KeyHash() && !slices.Contains(names, p.names[i]) {
				names = append(names, p.names[i])
			}
		}
	}
	return names, nil
}

// check returns nil when raw carries cosignatures from enough witnesses.
func (p *witnessPolicy) check(raw []byte, logV note.Verifier) error {
	if p == nil || p.need == 0 {
		return nil
	}
	got, err := p.cosigners(raw, logV)
	if err != nil {
		return fmt.Errorf("checkpoint cosignatures: %w", err)
	}
	if len(got) < p.need {
		return fmt.Errorf("checkpoint is cosigned by %d of the %d witnesses quorum.witnesses requires (%s); keeping the last witnessed checkpoint until the witnesses have seen this one — if this persists, the log may be showing this node a history nobody else sees",
			len(got), p.need, cosignedBy(got))
	}
	return nil
}

func cosignedBy(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return "by " + strings.Join(names, ", ")
}
