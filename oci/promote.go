package oci

import (
	"context"
	"encoding/json"
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
}

// Promote verifies q.Image and, only if it is trusted, points tag at it.
// Every decision, a refusal included, is appended to STATE/promotions.log
// (fsynced before Promote returns) so that the history of a tag can be
// audited against the verdicts it rested on. The tag must be in the image's
// repository: a promotion never copies an image between repositories.
func Promote(ctx context.Context, v *Verifier, q Query, tag name.Tag, stateDir string) (*Promotion, *Report, error) {
	if tag.Context().Name() != q.Image.Context().Name() {
		return nil, nil, fmt.Errorf("promote: tag %s is not in the image's repository %s", tag, q.Image.Context())
	}
	rep, err := v.Verify(ctx, q)
	if err != nil {
		return nil, nil, err
	}
	p := &Promotion{Time: time.Now().UTC().Truncate(time.Second), Image: rep.Image, Digest: rep.Digest, Tag: tag.String(), Subject: rep.Subject, Mode: rep.Mode, Reason: rep.Reason}
	if p.Previous, err = v.Registry.TagDigest(ctx, tag); err != nil {
		return nil, rep, err
	}
	if rep.Trusted {
		if err := v.Registry.Tag(ctx, q.Image, tag); err != nil {
			return nil, rep, err
		}
		p.Moved = true
	}
	if err := appendRecord(filepath.Join(stateDir, PromotionsLog), p); err != nil {
		return p, rep, fmt.Errorf("promote: the tag decision was made (moved=%v) but recording it failed: %w", p.Moved, err)
	}
	return p, rep, nil
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
