package buildlog

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

func removeFile(p string) error { return os.Remove(p) }

// AuditForTest audits a served log using only golang.org/x/mod/sumdb/note
// and golang.org/x/mod/sumdb/tlog, never this package's own code: the
// checkpoint signature, every entry, every hash tile, and the root. It is
// what a third party with no vouch code can do.
func AuditForTest(base, vkey string) (uint64, error) {
	get := func(p string) ([]byte, error) {
		resp, err := http.Get(base + p)
		if err != nil {
			return nil, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 {
			return nil, fmt.Errorf("GET %s: %s", p, resp.Status)
		}
		return io.ReadAll(resp.Body)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return 0, err
	}
	cpRaw, err := get("checkpoint")
	if err != nil {
		return 0, err
	}
	n, err := note.Open(cpRaw, note.VerifierList(v))
	if err != nil {
		return 0, fmt.Errorf("checkpoint signature: %w", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[0] != v.Name() {
		return 0, fmt.Errorf("checkpoint body %q: bad origin", n.Text)
	}
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil {
		return 0, err
	}
	rootBytes, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rootBytes) != 32 {
		return 0, fmt.Errorf("root hash: %v", err)
	}

	// Recompute every stored hash from the entries.
	var stored []tlog.Hash
	hr := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	for b := uint64(0); b*256 < size; b++ {
		w := size - b*256
		p := "tile/entries/" + tileIndex(b)
		if w < 256 {
			p += fmt.Sprintf(".p/%d", w)
		} else {
			w = 256
		}
		raw, err := get(p)
		if err != nil {
			return 0, err
		}
		for i := uint64(0); i < w; i++ {
			if len(raw) < 2 {
				return 0, fmt.Errorf("%s: truncated", p)
			}
			l := int(raw[0])<<8 | int(raw[1])
			if len(raw) < 2+l {
				return 0, fmt.Errorf("%s: truncated entry", p)
			}
			hs, err := tlog.StoredHashes(int64(b*256+i), raw[2:2+l], hr)
			if err != nil {
				return 0, err
			}
			stored = append(stored, hs...)
			raw = raw[2+l:]
		}
	}
	root, err := tlog.TreeHash(int64(size), hr)
	if err != nil {
		return 0, err
	}
	if !bytes.Equal(root[:], rootBytes) {
		return 0, fmt.Errorf("entries hash to %x, checkpoint says %x", root, rootBytes)
	}
	// Every hash tile the log serves for this size must match.
	for _, t := range tlog.NewTiles(8, 0, int64(size)) {
		want, err := tlog.ReadTileData(t, hr)
		if err != nil {
			return 0, err
		}
		p := fmt.Sprintf("tile/%d/%s", t.L, tileIndex(uint64(t.N)))
		if t.W < 256 {
			p += fmt.Sprintf(".p/%d", t.W)
		}
		got, err := get(p)
		if err != nil {
			return 0, err
		}
		if !bytes.Equal(got, want) {
			return 0, fmt.Errorf("%s differs from the hashes of the entries", p)
		}
	}
	return size, nil
}

// tileIndex formats N as tlog-tiles does: groups of three digits, all but
// the last prefixed with x.
func tileIndex(n uint64) string {
	s := fmt.Sprintf("%03d", n%1000)
	for n >= 1000 {
		n /= 1000
		s = fmt.Sprintf("x%03d/", n%1000) + s
	}
	return s
}
