// Package logmonitor lets an auditor watch one builder's log over time, not
// only check the view it is shown today.
//
// A check audits the log from scratch (follow.Audit: the checkpoint's
// signature and origin, every entry against the signed root, every claim,
// no subject with two outputs) and then compares the checkpoint it
// verified with a checkpoint an earlier check pinned — the signed note
// verbatim, saved in a file. The log must extend the pin:
//
//	same size, same root        unchanged: sound
//	larger, and a consistency   sound: the new tree contains the pinned one;
//	proof from the pin holds    the new checkpoint may replace the pin
//	same size, another root     split view: two signed trees of one size
//	                            (proven with the log's key alone)
//	larger, proof fails         fork: the new tree's first N entries have
//	                            another root than the pinned tree of size N
//	                            (proven: both checkpoints, the implied root
//	                            and the proof tying it to the new root)
//	smaller                     rollback: the log now shows a shorter tree
//	                            than it signed before (both checkpoints are
//	                            genuine; that the smaller one was served
//	                            after the larger one is the auditor's word)
//
// Each finding is an index.Evidence record, the format `vouch evidence
// verify FILE VKEY` checks with the builder's public key alone. The pin is
// replaced only by a checkpoint that was verified to extend it, so a run
// that finds a fork or a rollback keeps the old pin, and every later run
// reports the problem again until someone looks.
//
// # What a monitor sees, and what it cannot
//
// It sees only its own view of the log, at the moments it looks. It
// catches a log (or anything between the log and the monitor) that
// rewrites, truncates or forks the history this monitor was shown before.
// It cannot see a split view shown to someone else: a log can show each
// monitor a consistent history of its own. Catching that needs comparing
// views — a pin is a plain signed checkpoint, so checking the log against
// another monitor's pin tells whether what this monitor sees extends what
// that one saw — or witnesses that cosign only consistent checkpoints
// (config quorum.witnesses). Between two checks, a
// log may also fork and then return to the history the monitor knows; only
// followers and witnesses that looked in between can see that.
package logmonitor

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/follow"
	"github.com/vouch-dev/vouch/index"
	"github.com/vouch-dev/vouch/keys"
)

// Options say what to check.
type Options struct {
	URL  string // the log's base URL (tiles and checkpoint below it)
	VKey string // the builder's verifier key
	// Pinned is the checkpoint an earlier check verified (a signed note,
	// as ReadPin returns it); nil to audit without one.
	Pinned *index.Checkpoint
	// Client fetches from the log; default follow.NewHTTPClient().
	Client *http.Client
	// Progress, if set, follows the audit's download.
	Progress func(follow.Progress)
}

// Result is what a check established.
type Result struct {
	// Audit is the from-scratch audit of the log as it is served now.
	Audit *follow.AuditResult
	// Checkpoint is the checkpoint the audit verified: the one to pin
	// next when Sound.
	Checkpoint *index.Checkpoint
	// Extends says how Checkpoint relates to the pin: "" without a pin,
	// "unchanged", or "extended by N entries".
	Extends string
	// Evidence holds what shows the log is not sound: the audit's finding
	// and the comparison with the pin, each exportable.
	Evidence []*index.Evidence
}

// Sound reports whether the log passed: no evidence, and, with a pin, a
// checkpoint that extends it.
func (r *Result) Sound() bool { return len(r.Evidence) == 0 && r.Checkpoint != nil }

// Check audits the log and compares it with the pin. An error without a
// Result, or with a Result that has no Evidence, means the log could not
// be checked (unreachable, bad signature, a tile that would not load):
// nothing was established either way.
func Check(ctx context.Context, opts Options) (*Result, error) {
	v, err := keys.NewVerifier(opts.VKey)
	if err != nil {
		return nil, err
	}
	client := opts.Client
	if client == nil {
		client = follow.NewHTTPClient()
	}
	audit, auditErr := follow.Audit(ctx, opts.URL, opts.VKey, client, opts.Progress)
	res := &Result{Audit: audit}
	if audit != nil {
		if audit.Evidence != nil {
			res.Evidence = append(res.Evidence, audit.Evidence)
		}
		res.Checkpoint = audit.Checkpoint
	}
	if opts.Pinned != nil && res.Checkpoint != nil {
		ev, extends, err := compare(ctx, client, opts.URL, opts.VKey, v, opts.Pinned, res.Checkpoint)
		if err != nil {
			return res, err
		}
		res.Extends = extends
		if ev != nil {
			// The pin's finding first: it is the one proven with the key.
			res.Evidence = append([]*index.Evidence{ev}, res.Evidence...)
		}
	}
	if auditErr != nil {
		return res, auditErr
	}
	return res, nil
}

// compare checks that cur, verified just now, extends pin.
func compare(ctx context.Context, client *http.Client, logURL, vkey string, v note.Verifier, pin, cur *index.Checkpoint) (*index.Evidence, string, error) {
	evidence := func(kind index.EvidenceKind, summary string, a, b *index.Checkpoint) *index.Evidence {
		return &index.Evidence{Kind: kind, Builder: v.Name(), VKey: strings.TrimSpace(vkey), Log: logURL, Time: time.Now().UTC(), Summary: summary,
			Checkpoints: []string{string(a.Note), string(b.Note)}}
	}
	switch {
	case cur.Size < pin.Size:
		return evidence(index.EvidenceRollback,
			fmt.Sprintf("%s now serves a checkpoint of size %d, smaller than the pinned one of size %d: the log lost entries or shows another history", v.Name(), cur.Size, pin.Size),
			pin, cur), "", nil
	case cur.Size == pin.Size:
		if cur.Root != pin.Root {
			return evidence(index.EvidenceSplitView,
				fmt.Sprintf("%s signed two different trees of size %d: the pinned one (root %v) and the one served now (root %v)", v.Name(), cur.Size, pin.Root, cur.Root),
				pin, cur), "", nil
		}
		return nil, "unchanged", nil
	}
	extended := fmt.Sprintf("extended by %d entries", cur.Size-pin.Size)
	if pin.Size == 0 {
		return nil, extended, nil // the empty tree is a prefix of every tree
	}
	// The new tree's hashes, from the log's tiles, authenticated against
	// the root just verified.
	base := strings.TrimSuffix(logURL, "/") + "/"
	hashes := tlog.TileHashReader(tlog.Tree{N: int64(cur.Size), Hash: cur.Root}, &tileReader{ctx: ctx, client: client, base: base})
	proof, err := tlog.ProveTree(int64(cur.Size), int64(pin.Size), hashes)
	if err != nil {
		return nil, "", fmt.Errorf("consistency proof from the pinned size %d: %w", pin.Size, err)
	}
	if tlog.CheckTree(proof, int64(cur.Size), cur.Root, int64(pin.Size), pin.Root) == nil {
		return nil, extended, nil
	}
	implied, err := tlog.TreeHash(int64(pin.Size), hashes)
	if err != nil {
		return nil, "", fmt.Errorf("root of the first %d entries: %w", pin.Size, err)
	}
	ev := evidence(index.EvidenceFork,
		fmt.Sprintf("%s signed a tree of size %d with root %v (pinned), then a tree of size %d whose first %d entries have root %v: the second does not extend the first", v.Name(), pin.Size, pin.Root, cur.Size, pin.Size, implied),
		pin, cur)
	ev.TreeProof, ev.ImpliedRoot = proof, &implied
	return ev, "", nil
}

// tileReader reads a log's hash tiles over HTTP for tlog.TileHashReader,
// which authenticates them. A partial tile a log has since replaced by the
// full one is read from the full tile.
type tileReader struct {
	ctx    context.Context
	client *http.Client
	base   string
}

func (r *tileReader) Height() int { return 8 }

func (r *tileReader) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	for i, t := range tiles {
		want := t.W * tlog.HashSize
		var p uint8
		if t.W < 256 {
			p = uint8(t.W)
		}
		data, status, err := r.get(layout.TilePath(uint64(t.L), uint64(t.N), p))
		if err == nil && status == http.StatusNotFound && p != 0 {
			data, status, err = r.get(layout.TilePath(uint64(t.L), uint64(t.N), 0))
			if err == nil && status == http.StatusOK && len(data) == 256*tlog.HashSize {
				data = data[:want]
			}
		}
		if err != nil {
			return nil, err
		}
		if status != http.StatusOK {
			return nil, fmt.Errorf("tile %s: %s", t.Path(), http.StatusText(status))
		}
		out[i] = data // a tile of the wrong length fails authentication
	}
	return out, nil
}

func (r *tileReader) SaveTiles([]tlog.Tile, [][]byte) {}

func (r *tileReader) get(path string) ([]byte, int, error) {
	return r.getLimit(path, 256*tlog.HashSize)
}

// ReadPin reads a pinned checkpoint file and verifies it with vkey: it
// must be a checkpoint this log signed.
func ReadPin(path, vkey string) (*index.Checkpoint, error) {
	v, err := keys.NewVerifier(vkey)
	if err != nil {
		return nil, err
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no pinned checkpoint at %s: run once with --save %s to pin the log's current checkpoint", path, path)
	}
	if err != nil {
		return nil, err
	}
	cp, err := follow.OpenCheckpoint(raw, v)
	if err != nil {
		return nil, fmt.Errorf("pinned checkpoint %s: %w", path, err)
	}
	return cp, nil
}

// SavePin writes cp's signed note to path, replacing it atomically (the
// old pin stays whole if the write fails).
func SavePin(path string, cp *index.Checkpoint) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(cp.Note); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
