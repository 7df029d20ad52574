package oci

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/follow"
	"github.com/vouch-dev/vouch/index"
)

// DefaultMaxAge is how old a view of the builders' logs Promote accepts
// when PromoteOptions.MaxAge is zero.
const DefaultMaxAge = 10 * time.Minute

// Freshness is how current a view of the builders' logs is: for each
// configured builder, when its log was last synced successfully. A gate
// that decides on an old view can miss a dissent logged since, so Promote
// refuses a view older than a bound.
type Freshness struct {
	Logs []LogFreshness `json:"logs"`
}

// LogFreshness is one log's part of a Freshness.
type LogFreshness struct {
	Builder string    `json:"builder"`
	Synced  time.Time `json:"synced"` // end of the last successful sync; zero: never
	// Compromised logs count for nothing in any verdict, so their age
	// does not matter.
	Compromised bool   `json:"compromised,omitempty"`
	Error       string `json:"error,omitempty"` // why the last attempt failed, if it did
}

// Oldest returns the log whose view is the oldest among those that count
// (never synced is oldest of all), and its age at now. ok is false when no
// log counts.
func (f Freshness) Oldest(now time.Time) (l LogFreshness, age time.Duration, ok bool) {
	for _, x := range f.Logs {
		if x.Compromised {
			continue
		}
		if !ok || x.Synced.Before(l.Synced) {
			l, ok = x, true
		}
	}
	if ok {
		age = now.Sub(l.Synced)
	}
	return l, age, ok
}

// Describe says how old the view is, e.g. "logs synced 3s ago at the
// oldest (bob)".
func (f Freshness) Describe(now time.Time) string {
	l, age, ok := f.Oldest(now)
	switch {
	case !ok:
		return "no log counts (all compromised)"
	case l.Synced.IsZero():
		return fmt.Sprintf("%s's log was never synced", l.Builder)
	}
	return fmt.Sprintf("logs synced %s ago at the oldest (%s)", age.Round(time.Second), l.Builder)
}

// StaleError is a view of the logs older than the gate accepts.
type StaleError struct {
	MaxAge time.Duration
	Stale  []string // "bob: last synced 2h ago (connection refused)"
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("the view of the builders' logs is older than %s: %s; a builder's dissent logged since would not be seen, so nothing is decided: make the logs reachable and sync (vouch sync --config FILE, or a running node's follower), or accept an older view with --max-age",
		e.MaxAge, strings.Join(e.Stale, "; "))
}

// Check returns a *StaleError naming every log that counts and was not
// synced within maxAge before now.
func (f Freshness) Check(now time.Time, maxAge time.Duration) error {
	var stale []string
	for _, l := range f.Logs {
		if l.Compromised {
			continue
		}
		var s string
		switch age := now.Sub(l.Synced); {
		case l.Synced.IsZero():
			s = l.Builder + ": never synced"
		case age > maxAge:
			s = fmt.Sprintf("%s: last synced %s ago", l.Builder, age.Round(time.Second))
		default:
			continue
		}
		if l.Error != "" {
			s += " (" + l.Error + ")"
		}
		stale = append(stale, s)
	}
	if len(stale) == 0 {
		return nil
	}
	sort.Strings(stale)
	return &StaleError{MaxAge: maxAge, Stale: stale}
}

// IndexFreshness reads from a follower index how current each of cfg's
// builder logs is.
func IndexFreshness(cfg *config.Config, idx *index.Index) (Freshness, error) {
	var f Freshness
	for _, b := range cfg.Builders {
		id, err := follow.LogID(b)
		if err != nil {
			return f, err
		}
		st, err := idx.State(id)
		if err != nil {
			return f, fmt.Errorf("reading the state of %s's log: %w", b.Name, err)
		}
		f.Logs = append(f.Logs, LogFreshness{Builder: b.Name, Synced: st.Health.OK, Compromised: st.Compromised, Error: st.Health.Error})
	}
	return f, nil
}

// SyncLogs runs one sync round of every builder log of cfg into idx (as
// vouch sync does) and returns how current each log is afterwards, with
// the round's results. A log that fails to sync keeps its older view;
// Freshness.Check decides whether that is still good enough.
func SyncLogs(ctx context.Context, cfg *config.Config, idx *index.Index, opts follow.Options) (Freshness, []follow.Result, error) {
	f, err := follow.New(cfg, idx, opts)
	if err != nil {
		return Freshness{}, nil, err
	}
	results := f.SyncOnce(ctx)
	fr, err := IndexFreshness(cfg, idx)
	return fr, results, err
}
