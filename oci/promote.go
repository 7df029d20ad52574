package oci

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/vouch-dev/vouch/internal/durable"
)

// PromotionsLog is the file, under a node's state directory, that Promote
// appends one JSON line to per decision.
const PromotionsLog = "promotions.log"

// Promotion records one decision of Promote: one JSON line of
// STATE/promotions.log.
type Promotion struct {
	Time     time.Time `json:"time"`
	Image    string    `json:"image"`  // repository
	Digest   string    `json:"digest"` // the digest that was verified
	Tag      string    `json:"tag"`    // the full tag reference
	Previous string    `json:"previous,omitempty"`
	Moved    bool      `json:"moved"`
	Subject  string    `json:"subject,omitempty"`
	Mode     Mode      `json:"mode"`
	Reason   string    `json:"reason"`
	// View says how current the builders' logs were when deciding.
	View string `json:"view,omitempty"`
	// Error is set when the decision ended in an error: the tag was not
	// moved (or, if the error came from the tagging itself, check it).
	Error string `json:"error,omitempty"`
}

// PromoteOptions are what Promote needs besides the image and the tag.
type PromoteOptions struct {
	// StateDir is where promotions.log is appended to.
	StateDir string
	// Freshen is called before deciding: it brings the logs the Verifier
	// decides from up to date (SyncLogs), or reads how current they are
	// (a running node's view), and returns that. Required: a gate that
	// cannot tell how old its view is does not decide.
	Freshen func(ctx context.Context) (Freshness, error)
	// MaxAge is the oldest view of any log that counts which is accepted
	// (DefaultMaxAge if zero).
	MaxAge time.Duration
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

// Promote verifies q.Image from the builders' logs and, only if it is
// trusted, points tag at it. In order, it refuses: a tag in another
// repository (a promotion never copies an image between repositories); a
// Verifier without logs (ErrRegistryOnly: registry attestations alone
// cannot enforce a policy); a view of the logs older than MaxAge after
// Freshen; and then anything but a trusted verdict.
//
// Every decision, refusals and errors included, is appended to
// STATE/promotions.log (fsynced before Promote returns), so that the
// history of a tag can be audited against the verdicts it rested on.
func Promote(ctx context.Context, v *Verifier, q Query, tag name.Tag, o PromoteOptions) (*Promotion, *Report, error) {
	now := time.Now
	if o.Now != nil {
		now = o.Now
	}
	p := &Promotion{Time: now().UTC().Truncate(time.Second), Image: q.Image.Context().Name(), Digest: q.Image.DigestStr(), Tag: tag.String(), Subject: q.Subject, Mode: ModeLogs}
	rep, err := promote(ctx, v, q, tag, o, now, p)
	if err != nil {
		p.Moved = false
		p.Error = err.Error()
		if p.Reason == "" {
			p.Reason = "not promoted: " + err.Error()
		}
	}
	if rerr := Record(o.StateDir, p); rerr != nil {
		if err != nil {
			return p, rep, fmt.Errorf("%w; recording this in %s also failed: %v", err, PromotionsLog, rerr)
		}
		return p, rep, fmt.Errorf("promote: the tag decision was made (moved=%v) but recording it failed: %w", p.Moved, rerr)
	}
	return p, rep, err
}

func promote(ctx context.Context, v *Verifier, q Query, tag name.Tag, o PromoteOptions, now func() time.Time, p *Promotion) (*Report, error) {
	if tag.Context().Name() != q.Image.Context().Name() {
		return nil, fmt.Errorf("tag %s is not in the image's repository %s", tag, q.Image.Context())
	}
	if v.Logs == nil && v.LogVerdict == nil {
		p.Mode = ModeRegistryOnly
		return nil, ErrRegistryOnly
	}
	if o.Freshen == nil {
		return nil, errors.New("no way to tell how current the builders' logs are (PromoteOptions.Freshen is nil)")
	}
	fresh, err := o.Freshen(ctx)
	if err != nil {
		return nil, fmt.Errorf("bringing the builders' logs up to date: %w", err)
	}
	maxAge := o.MaxAge
	if maxAge <= 0 {
		maxAge = DefaultMaxAge
	}
	p.View = fresh.Describe(now())
	if err := fresh.Check(now(), maxAge); err != nil {
		return nil, err
	}
	rep, err := v.Verify(ctx, q)
	if err != nil {
		return nil, err
	}
	p.Image, p.Digest, p.Subject, p.Mode, p.Reason = rep.Image, rep.Digest, rep.Subject, rep.Mode, rep.Reason
	if p.Previous, err = v.Registry.TagDigest(ctx, tag); err != nil {
		return rep, err
	}
	if rep.Trusted {
		if err := v.Registry.Tag(ctx, q.Image, tag); err != nil {
			return rep, fmt.Errorf("%w (the registry may have moved the tag before failing: check %s)", err, tag)
		}
		p.Moved = true
	}
	return rep, nil
}

// Record appends p to STATE/promotions.log, fsynced. Promote records its
// own decisions; a caller records with it a promotion that failed before
// Promote could be called.
func Record(stateDir string, p *Promotion) error {
	return appendRecord(filepath.Join(stateDir, PromotionsLog), p)
}

func appendRecord(path string, p *Promotion) error {
	line, err := json.Marshal(p)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	// Synced before returning: a promotion is recorded before it is reported.
	return durable.Append(path, append(line, '\n'), 0o600)
}
