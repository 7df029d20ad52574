package follow

import (
	"fmt"
	"time"

	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/index"
)

// Readmit re-admits the configured builder name after proven evidence
// against its log, deliberately, for reason (see index.Index.Readmit for
// what happens to the log's replica). The evidence is kept; the
// re-admission is recorded on it, with the time and the evidence IDs it
// overrides. The next sync round syncs the log again.
//
// Re-admission is for an operator who investigated and found no
// misbehaviour of the builder's key holder — a bug in the log software
// that rewrote its history, say. A builder whose key was compromised is
// not re-admitted: it gets a new key, and with it a new log and a new
// entry in the policy.
func Readmit(idx *index.Index, cfg *config.Config, name, reason string) (*index.Readmission, error) {
	for _, b := range cfg.Builders {
		if b.Name != name {
			continue
		}
		id, err := LogID(b)
		if err != nil {
			return nil, err
		}
		return idx.Readmit(id, reason, time.Now())
	}
	return nil, fmt.Errorf("no builder %q in the config", name)
}
