package follow

import (
	"context"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/index"
	"github.com/vouch-dev/vouch/keys"
)

// AuditResult is the outcome of Audit.
type AuditResult struct {
	Checkpoint *index.Checkpoint // the checkpoint audited against
	Entries    uint64            // entries verified
	Claims     uint64            // distinct (kind, subject) claimed
	// Evidence is set when the log is not sound.
	Evidence *index.Evidence
}

// Audit verifies a whole log from scratch, with no prior state: the
// checkpoint's signature and origin, every entry against the signed root,
// every entry a valid claim or skipped, and no subject with two outputs.
// It uses a temporary index (removed afterwards) so memory stays bounded.
// A log that is not sound yields a result with Evidence and an error
// saying why; a log that cannot be read yields only an error.
func Audit(ctx context.Context, logURL, vkey string, client *http.Client, progress func(Progress)) (*AuditResult, error) {
	v, err := keys.NewVerifier(vkey)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "vouch-audit-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	b := config.Builder{Name: v.Name(), VKey: vkey, Log: logURL, Operator: v.Name(), Weight: 1}
	id, err := LogID(b)
	if err != nil {
		return nil, err
	}
	idx, err := index.Open(filepath.Join(dir, "index.db"), id)
	if err != nil {
		return nil, err
	}
	defer idx.Close()
	cfg := &config.Config{Builders: []config.Builder{b}}
	cfg.Follow.Interval.Duration = time.Second
	if client == nil {
		client = NewHTTPClient()
	}
	f, err := New(cfg, idx, Options{HTTPClient: client, Progress: progress})
	if err != nil {
		return nil, err
	}
	r := f.logs[0].sync(ctx, progress)
	res := &AuditResult{Entries: r.Size, Evidence: r.Evidence}
	st, serr := idx.State(id)
	if serr == nil {
		res.Checkpoint = st.Checkpoint
		res.Claims = st.Subjects
	}
	if r.Err != nil {
		return res, r.Err
	}
	if res.Checkpoint == nil {
		return res, fmt.Errorf("no checkpoint was verified")
	}
	return res, serr
}
