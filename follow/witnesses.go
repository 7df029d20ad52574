package follow

import (
	"fmt"
	"slices"
	"strings"
	"time"

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
//
// Freshness: a log can also freeze a follower, serving it one old,
// properly witnessed checkpoint for ever so that it never sees the entries
// that came after (a later confession of two outputs for one subject, say).
// Nothing it is shown is false, so nothing is evidence; but honest logs
// have even an unchanged checkpoint cosigned again every few minutes, so
// when the need-th newest cosignature of the latest checkpoint is older
// than maxAge the follower reports the log as possibly frozen (the round's
// error, shown in the log's health). What it already showed keeps counting.
type witnessPolicy struct {
	names     []string        // listed witnesses, by config name
	verifiers []note.Verifier // their cosignature/v1 verifiers, same order
	need      int
	maxAge    time.Duration    // 0: no freshness rule
	now       func() time.Time // the clock cosignature times are compared with
}

func newWitnessPolicy(cfg *config.Config) (*witnessPolicy, error) {
	p := &witnessPolicy{need: cfg.Quorum.Witnesses, now: time.Now}
	if age := cfg.Quorum.WitnessMaxAge; age != nil {
		p.maxAge = age.Duration
	}
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
// cosignature the signed checkpoint raw carries, and the time each signed
// (the newest, should one witness have signed twice). logV is the log's
// own verifier (note.Open needs every signature it knows to verify: a
// malformed cosignature by a listed witness is an error, not a vote).
func (p *witnessPolicy) cosigners(raw []byte, logV note.Verifier) ([]string, []time.Time, error) {
	n, err := note.Open(raw, note.VerifierList(append([]note.Verifier{logV}, p.verifiers...)...))
	if err != nil {
		return nil, nil, err
	}
	var names []string
	var times []time.Time
	for _, sig := range n.Sigs {
		for i, v := range p.verifiers {
			if sig.Name != v.Name() || sig.Hash != v.KeyHash() {
				continue
			}
			// The time is part of what the witness signed, and note.Open
			// verified the signature.
			at, err := fnote.CoSigV1Timestamp(sig)
			if err != nil {
				return nil, nil, fmt.Errorf("witness %s: %w", p.names[i], err)
			}
			if j := slices.Index(names, p.names[i]); j >= 0 {
				if at.After(times[j]) {
					times[j] = at
				}
				continue
			}
			names, times = append(names, p.names[i]), append(times, at)
		}
	}
	return names, times, nil
}

// check returns nil when raw carries cosignatures from enough witnesses.
func (p *witnessPolicy) check(raw []byte, logV note.Verifier) error {
	if p == nil || p.need == 0 {
		return nil
	}
	got, _, err := p.cosigners(raw, logV)
	if err != nil {
		return fmt.Errorf("checkpoint cosignatures: %w", err)
	}
	if len(got) < p.need {
		return fmt.Errorf("checkpoint is cosigned by %d of the %d witnesses quorum.witnesses requires (%s); keeping the last witnessed checkpoint until the witnesses have seen this one — if this persists, the log may be showing this node a history nobody else sees",
			len(got), p.need, cosignedBy(got))
	}
	return nil
}

// stale returns an error when the log's latest checkpoint raw does not
// carry need cosignatures younger than maxAge (see witnessPolicy).
func (p *witnessPolicy) stale(raw []byte, logV note.Verifier) error {
	if p == nil || p.need == 0 || p.maxAge <= 0 {
		return nil
	}
	names, times, err := p.cosigners(raw, logV)
	if err != nil {
		return fmt.Errorf("checkpoint cosignatures: %w", err)
	}
	const what = "the log may be freezing this node at an old checkpoint to hide newer entries (its claims so far still count); if its witnesses are simply down, this clears once they cosign again"
	if len(times) < p.need {
		return fmt.Errorf("the log's latest checkpoint is cosigned by %d of the %d witnesses quorum.witnesses requires (%s), so nothing shows it is recent: %s",
			len(times), p.need, cosignedBy(names), what)
	}
	slices.SortFunc(times, func(a, b time.Time) int { return b.Compare(a) })
	at := times[p.need-1]
	if age := p.now().Sub(at); age > p.maxAge {
		who := "its witness"
		if p.need > 1 {
			who = fmt.Sprintf("%d of its witnesses", p.need)
		}
		return fmt.Errorf("the log's latest checkpoint was last cosigned by %s %v ago (%s), longer than quorum.witness-max-age = %v: %s",
			who, age.Round(time.Second), at.UTC().Format(time.RFC3339), p.maxAge, what)
	}
	return nil
}

func cosignedBy(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return "by " + strings.Join(names, ", ")
}
