package logmonitor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/follow"
	"github.com/vouch-dev/vouch/index"
	"github.com/vouch-dev/vouch/keys"
)

// TailEntry is one entry of a log's tail.
type TailEntry struct {
	Index uint64       `json:"index"`
	Claim *claim.Claim `json:"claim,omitempty"` // nil: not a claim this version reads
	Entry []byte       `json:"-"`
}

// Tail reads the last n entries of the log at url (n ≤ 0: all) and checks
// each against the checkpoint the log serves now: the checkpoint's
// signature with vkey, and every entry's leaf hash against the hash tiles
// authenticated by its signed root. It reads only the bundles and tiles
// the tail needs, not the whole log (vouch log verify reads everything).
func Tail(ctx context.Context, client *http.Client, url, vkey string, n int) (*index.Checkpoint, []TailEntry, error) {
	if client == nil {
		client = follow.NewHTTPClient()
	}
	base := strings.TrimSuffix(url, "/") + "/"
	v, err := keys.NewVerifier(vkey)
	if err != nil {
		return nil, nil, err
	}
	r := &tileReader{ctx: ctx, client: client, base: base}
	raw, status, err := r.getLimit("checkpoint", 64<<10)
	if err == nil && status != http.StatusOK {
		err = fmt.Errorf("%s", http.StatusText(status))
	}
	if err != nil {
		return nil, nil, fmt.Errorf("%scheckpoint: %w", base, err)
	}
	cp, err := follow.OpenCheckpoint(raw, v)
	if err != nil {
		return nil, nil, fmt.Errorf("%scheckpoint: %w", base, err)
	}
	from := uint64(0)
	if n > 0 && uint64(n) < cp.Size {
		from = cp.Size - uint64(n)
	}
	if from == cp.Size {
		return cp, nil, nil
	}
	hashes := tlog.TileHashReader(tlog.Tree{N: int64(cp.Size), Hash: cp.Root}, r)
	want := make([]int64, 0, cp.Size-from)
	for i := from; i < cp.Size; i++ {
		want = append(want, tlog.StoredHashIndex(0, int64(i)))
	}
	leaves, err := hashes.ReadHashes(want)
	if err != nil {
		return nil, nil, fmt.Errorf("the log's tiles do not authenticate against its signed root: %w", err)
	}
	var out []TailEntry
	for b := from / 256; b*256 < cp.Size; b++ {
		width := min(256, cp.Size-b*256)
		var p uint8
		if width < 256 {
			p = uint8(width)
		}
		data, status, err := r.getLimit(layout.EntriesPath(b, p), 64<<20)
		if err == nil && status == http.StatusNotFound && p != 0 {
			data, status, err = r.getLimit(layout.EntriesPath(b, 0), 64<<20) // the partial bundle was completed since
		}
		if err == nil && status != http.StatusOK {
			err = errors.New(http.StatusText(status))
		}
		if err != nil {
			return nil, nil, fmt.Errorf("entry bundle %d: %w", b, err)
		}
		entries, err := follow.ParseEntryBundle(data)
		if err != nil {
			return nil, nil, fmt.Errorf("entry bundle %d: %w", b, err)
		}
		if uint64(len(entries)) < width {
			return nil, nil, fmt.Errorf("entry bundle %d holds %d entries, the signed tree has %d in it", b, len(entries), width)
		}
		for i := max(from, b*256); i < b*256+width; i++ {
			e := entries[i-b*256]
			if tlog.RecordHash(e) != leaves[i-from] {
				return nil, nil, fmt.Errorf("entry %d does not hash to the leaf its signed tree holds: the log (or something between) served other bytes", i)
			}
			te := TailEntry{Index: i, Entry: e}
			if c, err := claim.Parse(e); err == nil {
				te.Claim = c
			}
			out = append(out, te)
		}
	}
	return cp, out, nil
}

// getLimit is get with a size bound of its own (bundles are larger than
// tiles).
func (r *tileReader) getLimit(path string, limit int64) ([]byte, int, error) {
	req, err := http.NewRequestWithContext(r.ctx, http.MethodGet, r.base+path, nil)
	if err != nil {
		return nil, 0, err
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, 0, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, resp.StatusCode, nil
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if int64(len(b)) > limit {
		return nil, 0, fmt.Errorf("%s is larger than %d bytes", path, limit)
	}
	return b, resp.StatusCode, err
}
