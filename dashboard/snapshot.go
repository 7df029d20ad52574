package dashboard

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/index"
	"github.com/vouch-dev/vouch/report"
)

// ConflictsKept bounds the disagreements a snapshot lists (the totals
// count all of them).
const ConflictsKept = 10000

// snapshot is the result of one walk over every subject of the index.
type snapshot struct {
	fingerprint string
	built       time.Time
	took        time.Duration
	report      *report.Report
	days        []Day
	undated     int
	lookup      []lookupEntry // sorted by token
}

// Day is one day of the reproducibility plot.
type Day struct {
	Day         string `json:"day"` // YYYY-MM-DD, UTC
	Subjects    int    `json:"subjects"`
	Reproduced  int    `json:"reproduced"`
	Disagreeing int    `json:"disagreeing"`
	BuiltByOne  int    `json:"built_by_one"`
}

// lookupEntry maps a search token (a hash part or an output digest, hashed
// to 8 bytes) to the index's 8-byte key of a subject that holds it.
type lookupEntry struct {
	token   uint64
	subject uint64
}

// tokenOf hashes a search token to the 8 bytes the lookup table keeps.
func tokenOf(kind, value string) uint64 {
	h := sha256.Sum256([]byte(kind + ":" + value))
	return binary.BigEndian.Uint64(h[:8])
}

// subjectKey is the index's key of (kind, subject): the first 8 bytes of
// SHA-256("<kind> <subject>"), as the index package documents. A lookup
// always re-checks the subject it lands on, so a mismatch costs a miss,
// never a wrong answer.
func subjectKey(kind claim.Kind, subject string) uint64 {
	h := sha256.Sum256([]byte(string(kind) + " " + subject))
	return binary.BigEndian.Uint64(h[:8])
}

// tokens returns the search tokens of one claim.
func tokens(c *claim.Claim) [][2]string {
	var out [][2]string
	switch c.Kind {
	case claim.KindNix:
		out = append(out, [2]string{"hash", claim.HashPart(c.Subject)}, [2]string{"name", packageName(pathName(c.Subject))})
	case claim.KindNixCA:
		out = append(out, [2]string{"hash", claim.HashPart(c.OutPath)}, [2]string{"name", packageName(pathName(c.OutPath))})
	}
	if c.NarHash != "" {
		out = append(out, [2]string{"output", c.NarHash})
	}
	if c.Digest != "" {
		out = append(out, [2]string{"output", c.Digest})
	}
	return out
}

// pathName is the name part of a store path: /nix/store/<hash>-<name>.
func pathName(p string) string {
	base := strings.TrimPrefix(p, claim.StoreDir+"/")
	if len(base) > 33 && base[32] == '-' {
		return base[33:]
	}
	return ""
}

// packageName drops the version from a store path's name as Nix's
// parseDrvName does: the name ends at the first dash followed by
// something other than a letter ("hello-2.12" → "hello",
// "python3.11-requests-2.31.0" → "python3.11-requests"). An output's
// suffix goes with the version ("hello-2.12-man" → "hello").
func packageName(name string) string {
	for i := 0; i+1 < len(name); i++ {
		if name[i] == '-' && !isLetter(name[i+1]) {
			return name[:i]
		}
	}
	return name
}

func isLetter(b byte) bool { return b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' }

// tally is a report.Reader over the index that sees every page report.Build
// reads, so one walk yields the report, the days and the lookup table.
type tally struct {
	*index.Index
	days    map[string]*Day
	undated int
	lookup  []lookupEntry
}

func (t *tally) Subjects(after string, limit int) ([]index.Subject, string, error) {
	page, next, err := t.Index.Subjects(after, limit)
	if err != nil {
		return nil, "", err
	}
	for _, s := range page {
		t.add(s)
	}
	return page, next, nil
}

func (t *tally) add(s index.Subject) {
	key := subjectKey(s.Kind, s.Subject)
	var first time.Time
	outputs := map[string]int{}
	seen := map[[2]string]bool{}
	for _, e := range s.Claims {
		if ct := e.Claim.Time; !ct.IsZero() && (first.IsZero() || ct.Before(first)) {
			first = ct
		}
		outputs[e.Claim.Output()]++
		for _, tok := range tokens(e.Claim) {
			if !seen[tok] {
				seen[tok] = true
				t.lookup = append(t.lookup, lookupEntry{token: tokenOf(tok[0], tok[1]), subject: key})
			}
		}
	}
	if first.IsZero() {
		t.undated++
		return
	}
	name := first.UTC().Format(time.DateOnly)
	d := t.days[name]
	if d == nil {
		d = &Day{Day: name}
		t.days[name] = d
	}
	d.Subjects++
	switch {
	case len(outputs) > 1:
		d.Disagreeing++
	case len(s.Claims) > 1:
		d.Reproduced++
	default:
		d.BuiltByOne++
	}
}

// buildSnapshot walks the whole index once.
func (d *Dashboard) buildSnapshot(fingerprint string) (*snapshot, error) {
	start := time.Now()
	t := &tally{Index: d.idx, days: map[string]*Day{}}
	rep, err := report.Build(t, d.policy, report.Options{ListLimit: ConflictsKept})
	if err != nil {
		return nil, err
	}
	s := &snapshot{fingerprint: fingerprint, built: time.Now(), report: rep, undated: t.undated, lookup: t.lookup}
	for _, day := range t.days {
		s.days = append(s.days, *day)
	}
	slices.SortFunc(s.days, func(a, b Day) int { return strings.Compare(a.Day, b.Day) })
	slices.SortFunc(s.lookup, func(a, b lookupEntry) int {
		if a.token != b.token {
			return cmpU64(a.token, b.token)
		}
		return cmpU64(a.subject, b.subject)
	})
	s.lookup = slices.Compact(s.lookup)
	s.took = time.Since(start)
	return s, nil
}

func cmpU64(a, b uint64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// find returns the index keys of the subjects holding the token.
func (s *snapshot) find(kind, value string) []uint64 {
	tok := tokenOf(kind, value)
	i, _ := slices.BinarySearchFunc(s.lookup, tok, func(e lookupEntry, t uint64) int { return cmpU64(e.token, t) })
	var out []uint64
	for ; i < len(s.lookup) && s.lookup[i].token == tok; i++ {
		out = append(out, s.lookup[i].subject)
	}
	return out
}

// snapshots keeps the latest snapshot and rebuilds it when the index
// changes; see the package doc.
type snapshots struct {
	mu       sync.Mutex
	current  *snapshot
	building chan struct{} // closed when the running build ends; nil if none
	lastErr  error
}

// fingerprint summarises what a snapshot depends on: every configured
// log's indexed entries, complete checkpoint and compromised flag.
func (d *Dashboard) fingerprint() (string, []index.LogStats, error) {
	stats, err := d.idx.Stats()
	if err != nil {
		return "", nil, err
	}
	var b strings.Builder
	for _, s := range stats {
		b.WriteString(s.LogID.String())
		b.WriteByte(' ')
		b.WriteString(strconv.FormatUint(s.Synced, 10))
		if s.Complete != nil {
			b.WriteString("/" + strconv.FormatUint(s.Complete.Size, 10))
		}
		if s.Compromised {
			b.WriteString(" compromised")
		}
		b.WriteByte('\n')
	}
	return b.String(), stats, nil
}

// snapshot returns a snapshot of the index: the current one when the index
// has not changed, else a new one if it is ready within FreshWait (or, when
// there is none yet, as soon as it is ready). stale reports a snapshot
// older than the index.
func (d *Dashboard) snapshot(ctx context.Context) (s *snapshot, stale bool, err error) {
	fp, _, err := d.fingerprint()
	if err != nil {
		return nil, false, err
	}
	sn := &d.snaps
	sn.mu.Lock()
	if sn.current != nil && sn.current.fingerprint == fp {
		s := sn.current
		sn.mu.Unlock()
		return s, false, nil
	}
	if sn.building == nil {
		done := make(chan struct{})
		sn.building = done
		go d.rebuild(fp, done)
	}
	done, cur := sn.building, sn.current
	sn.mu.Unlock()

	var timeout <-chan time.Time
	if cur != nil {
		timer := time.NewTimer(d.freshWait)
		defer timer.Stop()
		timeout = timer.C
	}
	select {
	case <-done:
	case <-timeout:
	case <-ctx.Done():
		if cur == nil {
			return nil, false, ctx.Err()
		}
	}
	sn.mu.Lock()
	defer sn.mu.Unlock()
	if sn.current == nil {
		return nil, false, fmt.Errorf("summarising the index: %w", sn.lastErr)
	}
	return sn.current, sn.current.fingerprint != fp, nil
}

func (d *Dashboard) rebuild(fp string, done chan struct{}) {
	var s *snapshot
	var err error
	defer func() {
		if r := recover(); r != nil {
			d.logger.Error("dashboard: summarising the index panicked", "panic", r, "stack", string(debug.Stack()))
			err = fmt.Errorf("internal error: %v", r)
		}
		sn := &d.snaps
		sn.mu.Lock()
		if err == nil {
			d.reportDissent(sn.current, s)
			sn.current = s
		} else {
			sn.lastErr = err
			d.logger.Warn("dashboard: summarising the index failed", "err", err)
		}
		sn.building = nil
		sn.mu.Unlock()
		close(done)
	}()
	s, err = d.buildSnapshot(fp)
}
