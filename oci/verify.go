package oci

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/keys"
	"github.com/vouch-dev/vouch/verdict"
)

// Mode says where the votes of a verification came from.
type Mode string

const (
	// ModeLogs: votes are the builders' logged claims (verdict.Source);
	// registry attestations are checked and reported, never counted.
	ModeLogs Mode = "logs"
	// ModeRegistryOnly: no follower index was available, so the votes are
	// the registry attestations alone. Signatures and the quorum are still
	// checked, but nothing guards against a builder that attests one digest
	// in the registry and logs another.
	ModeRegistryOnly Mode = "registry-only"
)

// Query is what Verify is asked.
type Query struct {
	Image name.Digest
	// Subject, if set, is the only claim subject (claim.OCISubject) the
	// image may be trusted for. If empty, the subjects are taken from the
	// attestations signed by policy keys.
	Subject string
}

// Report is the answer of Verify, with everything it rests on.
type Report struct {
	Image    string            `json:"image"`
	Digest   string            `json:"digest"`
	Mode     Mode              `json:"mode"`
	Trusted  bool              `json:"trusted"`
	Subject  string            `json:"subject,omitempty"` // the subject the image is trusted for
	Reason   string            `json:"reason"`
	Verdicts []verdict.Verdict `json:"verdicts"`
	// Attestations lists every vouch attestation found in the registry
	// with what became of it.
	Attestations []Examined `json:"attestations"`
	// Notes are disagreements between registry and logs and other
	// findings that did not change the outcome.
	Notes []string `json:"notes,omitempty"`
}

// Examined is one registry attestation and its fate.
type Examined struct {
	Manifest string `json:"manifest"`
	Builder  string `json:"builder,omitempty"` // policy name of the signing key
	Subject  string `json:"subject,omitempty"`
	Counted  bool   `json:"counted"`
	Reason   string `json:"reason"` // why it did or did not count
}

// Verifier decides whether images may be trusted.
type Verifier struct {
	Registry *Registry
	Policy   *verdict.Policy
	// Logs is the follower's verified index. Nil, with LogVerdict nil too,
	// means registry-only mode (Report.Mode says so).
	Logs verdict.Source
	// LogVerdict, if set, is used instead of Policy.Decide over Logs to get
	// the logs' verdict on an oci subject: a running node holds its index
	// open, so a command asks the node, which decides over that index.
	LogVerdict func(subject string) (verdict.Verdict, error)
	// VerifierKeys maps policy member names to their verifier keys; the
	// public keys signatures are checked against come from here.
	VerifierKeys map[string]string
	// RegistryOnly allows Verify without Logs or LogVerdict: the votes are
	// then the attestations on the one digest asked about (ModeRegistryOnly),
	// which is weaker than any policy (see ErrRegistryOnly). Without it,
	// Verify refuses to decide without the logs. Promote never allows it.
	RegistryOnly bool
}

// ErrRegistryOnly is why a gate refuses to decide from registry
// attestations alone. A registry lists attestations per image digest: a
// builder that built the same source and got another digest has its
// dissent on that other digest, invisible from the image being checked,
// so it would count as silent and on-conflict = "refuse" would not hold;
// a builder that signs two digests for one source would count for both,
// where the policy counts an equivocating builder for nothing; and no
// registry can be asked for "every digest attested for this source", nor
// be kept from hiding an attestation. No policy can be enforced that way.
// The builders' logs can: each holds at most one output per subject, and
// a follower sees all of them.
var ErrRegistryOnly = errors.New("registry attestations alone cannot enforce the policy: a dissent or a builder's second digest for the same source is attested on another digest, invisible from this one, and a registry can hide any attestation; decide from the builders' logs (vouch sync --config FILE, or promote, which syncs them)")

// VerifierKeys returns the verifier key of each builder of a config, by
// name, as NewVerifier wants them.
func VerifierKeys(cfg *config.Config) map[string]string {
	m := make(map[string]string, len(cfg.Builders))
	for _, b := range cfg.Builders {
		m[b.Name] = b.VKey
	}
	return m
}

// NewVerifier builds a Verifier from the builders of a config; logs may be
// nil (registry-only).
func NewVerifier(reg *Registry, policy *verdict.Policy, vkeys map[string]string, logs verdict.Source) *Verifier {
	return &Verifier{Registry: reg, Policy: policy, Logs: logs, VerifierKeys: vkeys}
}

// trusted returns the keys of the distinct policy builders and, for each
// key id, the builder's name.
func (v *Verifier) trusted() ([]TrustedKey, map[string]string, error) {
	var ks []TrustedKey
	names := map[string]string{}
	for _, m := range v.Policy.Builders() {
		vk, ok := v.VerifierKeys[m.Name]
		if !ok {
			return nil, nil, fmt.Errorf("no verifier key for policy member %q", m.Name)
		}
		pub, err := keys.VerifierPublicKey(vk)
		if err != nil {
			return nil, nil, fmt.Errorf("builder %q: %w", m.Name, err)
		}
		if keys.KeyID(pub) != m.KeyID {
			return nil, nil, fmt.Errorf("builder %q: verifier key does not match the policy's key id", m.Name)
		}
		ks = append(ks, TrustedKey{KeyID: m.KeyID, Public: pub})
		names[m.KeyID] = m.Name
	}
	return ks, names, nil
}

// Verify collects the attestations of q.Image from the registry and, when
// Logs is set, the builders' logged claims, and decides. The image is
// trusted only when, for one subject, the policy's verdict is Trusted and
// its agreed digest is this image's digest.
//
// The logs are the truth: in ModeLogs only logged claims vote, so a
// registry that hides or drops attestations changes nothing, and one that
// serves extra or altered ones adds nothing (they are reported in Notes).
// In either mode a registry can make a verdict fail (by hiding the
// attestations that name the subject, when no Subject is given), never
// pass.
func (v *Verifier) Verify(ctx context.Context, q Query) (*Report, error) {
	rep := &Report{Image: q.Image.Context().Name(), Digest: q.Image.DigestStr(), Mode: ModeRegistryOnly, Verdicts: []verdict.Verdict{}, Attestations: []Examined{}}
	fromLogs := v.Logs != nil || v.LogVerdict != nil
	if fromLogs {
		rep.Mode = ModeLogs
	} else if !v.RegistryOnly {
		return nil, ErrRegistryOnly
	}
	if q.Subject != "" {
		if _, _, _, _, err := claim.ParseOCISubject(q.Subject); err != nil {
			return nil, fmt.Errorf("subject: %w", err)
		}
	}
	trusted, nameOf, err := v.trusted()
	if err != nil {
		return nil, err
	}
	fetched, err := v.Registry.List(ctx, q.Image)
	if err != nil {
		// A registry that cannot list referrers only costs registry votes;
		// with logs the verdict does not need it.
		if !fromLogs || q.Subject == "" {
			return nil, err
		}
		rep.Notes = append(rep.Notes, "registry attestations not read: "+err.Error())
	}

	// Registry attestations, as entries of the builder that signed them.
	bySubject := map[string][]verdict.Entry{}
	seen := map[string]bool{} // key id + subject of the attestations counted
	for _, f := range fetched {
		ex := Examined{Manifest: f.Manifest}
		if f.Err != nil {
			ex.Reason = f.Err.Error()
			rep.Attestations = append(rep.Attestations, ex)
			continue
		}
		a, err := Open(f.Envelope, q.Image.DigestStr(), trusted)
		if err != nil {
			var rj *RejectedError
			if errors.As(err, &rj) {
				ex.Reason = rj.Reason
			} else {
				ex.Reason = err.Error()
			}
			rep.Attestations = append(rep.Attestations, ex)
			continue
		}
		ex.Builder, ex.Subject = nameOf[a.SignedBy[0]], a.Claim.Subject
		switch {
		case q.Subject != "" && a.Claim.Subject != q.Subject:
			ex.Reason = "about another source than the one asked for"
		case seen[a.SignedBy[0]+" "+a.Claim.Subject]:
			// Still handed to the policy, which counts one vote per key.
			ex.Reason = "valid signature by " + ex.Builder + ", whose key already has an attestation here: one key is one vote"
			bySubject[a.Claim.Subject] = append(bySubject[a.Claim.Subject], verdict.Entry{Builder: ex.Builder, Claim: a.Claim})
		default:
			seen[a.SignedBy[0]+" "+a.Claim.Subject] = true
			ex.Counted = !fromLogs
			ex.Reason = "valid signature by " + ex.Builder
			bySubject[a.Claim.Subject] = append(bySubject[a.Claim.Subject], verdict.Entry{Builder: ex.Builder, Claim: a.Claim})
		}
		if len(a.Ignored) > 0 {
			ex.Reason += "; also: " + strings.Join(a.Ignored, "; ")
		}
		rep.Attestations = append(rep.Attestations, ex)
	}

	subjects := []string{q.Subject}
	if q.Subject == "" {
		subjects = subjects[:0]
		for s := range bySubject {
			subjects = append(subjects, s)
		}
		sort.Strings(subjects)
	}
	if len(subjects) == 0 {
		rep.Reason = fmt.Sprintf("no attestation of %s by a builder of the policy was found (%d examined)%s", rep.Digest, len(rep.Attestations), rejectedSummary(rep.Attestations))
		if fromLogs {
			rep.Reason += "; give --source, --commit, --system and --attr to look the builders' logs up directly"
		}
		return rep, nil
	}

	var reasons []string
	for _, s := range subjects {
		var vd verdict.Verdict
		if fromLogs {
			if v.LogVerdict != nil {
				vd, err = v.LogVerdict(s)
			} else {
				vd, err = v.Policy.Decide(v.Logs, claim.KindOCI, s)
			}
			if err != nil {
				return nil, err
			}
			rep.Notes = append(rep.Notes, crossCheck(vd, bySubject[s], rep)...)
		} else {
			vd = v.Policy.DecideEntries(bySubject[s], nil)
			vd.Kind, vd.Subject = claim.KindOCI, s
		}
		rep.Verdicts = append(rep.Verdicts, vd)
		switch {
		case vd.Outcome == verdict.Trusted && vd.Value != nil && vd.Value.Digest == rep.Digest:
			if !rep.Trusted {
				rep.Trusted, rep.Subject = true, s
				rep.Reason = fmt.Sprintf("trusted for %s: %s", s, vd.Reason)
			}
		case vd.Outcome == verdict.Trusted && vd.Value != nil:
			reasons = append(reasons, fmt.Sprintf("%s: the builders agree on %s, not on this image", s, vd.Value.Digest))
		default:
			reasons = append(reasons, fmt.Sprintf("%s: %s: %s", s, vd.Outcome, vd.Reason))
		}
	}
	if !rep.Trusted {
		rep.Reason = "not trusted: " + strings.Join(reasons, "; ") + rejectedSummary(rep.Attestations)
	}
	if rep.Mode == ModeRegistryOnly {
		rep.Notes = append(rep.Notes, "registry-only: votes are the attestations on this digest only, not checked against the builders' logs; a dissent or an equivocation on another digest is not seen, so this is weaker than the policy and no gate")
	}
	return rep, nil
}

// crossCheck compares registry attestations with the logged votes of a
// verdict and marks which registry attestations match the log.
func crossCheck(vd verdict.Verdict, reg []verdict.Entry, rep *Report) []string {
	logged := map[string]string{}
	for _, vs := range [][]verdict.Vote{vd.Agreed, vd.Disagreed} {
		for _, vote := range vs {
			logged[vote.Builder] = vote.Output
		}
	}
	var notes []string
	seen := map[string]bool{}
	for _, e := range reg {
		if seen[e.Builder] {
			continue
		}
		seen[e.Builder] = true
		out, ok := logged[e.Builder]
		switch {
		case !ok:
			notes = append(notes, fmt.Sprintf("%s attested %s in the registry but its log has no claim for %s (not counted: the logs are the truth; the follower may not have synced yet)", e.Builder, e.Claim.Digest, vd.Subject))
		case out != e.Claim.Output():
			notes = append(notes, fmt.Sprintf("%s's registry attestation (%s) contradicts its log (%s)", e.Builder, e.Claim.Output(), out))
		default:
			for i := range rep.Attestations {
				if rep.Attestations[i].Builder == e.Builder && rep.Attestations[i].Subject == vd.Subject {
					rep.Attestations[i].Reason += ", matches its log"
				}
			}
		}
	}
	return notes
}

func rejectedSummary(ex []Examined) string {
	var r []string
	for _, e := range ex {
		if !e.Counted && e.Builder == "" {
			r = append(r, e.Manifest[:min(len(e.Manifest), 19)]+": "+e.Reason)
		}
	}
	if len(r) == 0 {
		return ""
	}
	return "; rejected: " + strings.Join(r, "; ")
}
