// Package tlogaudit audits a served C2SP tlog-tiles log the way a third
// party with no vouch code would: it uses only golang.org/x/mod/sumdb/note
// and golang.org/x/mod/sumdb/tlog, never vouch's own log reader or writer.
// Tests use it to show that what vouch publishes is a standard log.
//
// It downloads everything into memory: it is meant for test-sized logs.
package tlogaudit

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

// Result is an audited log.
type Result struct {
	Size       int64
	Root       tlog.Hash
	Checkpoint []byte   // the signed note, verbatim
	Entries    [][]byte // every entry, in order

	stored []tlog.Hash
}

// HashReader reads the recomputed stored hashes.
func (r *Result) HashReader() tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			if x < 0 || x >= int64(len(r.stored)) {
				return nil, fmt.Errorf("hash %d out of range", x)
			}
			out[i] = r.stored[x]
		}
		return out, nil
	})
}

// ConsistentWith checks that an earlier checkpoint (size, root) is a prefix
// of the audited tree, with an RFC 6962 consistency proof.
func (r *Result) ConsistentWith(oldSize int64, oldRoot tlog.Hash) error {
	proof, err := tlog.ProveTree(r.Size, oldSize, r.HashReader())
	if err != nil {
		return err
	}
	return tlog.CheckTree(proof, r.Size, r.Root, oldSize, oldRoot)
}

// ParseCheckpoint verifies a signed checkpoint with vkey and returns its
// size and root.
func ParseCheckpoint(raw []byte, vkey string) (int64, tlog.Hash, error) {
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return 0, tlog.Hash{}, err
	}
	n, err := note.Open(raw, note.VerifierList(v))
	if err != nil {
		return 0, tlog.Hash{}, fmt.Errorf("checkpoint signature: %w", err)
	}
	lines := strings.Split(n.Text, "\n")
	if len(lines) < 4 || lines[0] != v.Name() {
		return 0, tlog.Hash{}, fmt.Errorf("checkpoint body %q: origin is not %q", n.Text, v.Name())
	}
	size, err := strconv.ParseInt(lines[1], 10, 64)
	if err != nil || size < 0 {
		return 0, tlog.Hash{}, fmt.Errorf("checkpoint size %q", lines[1])
	}
	rb, err := base64.StdEncoding.DecodeString(lines[2])
	if err != nil || len(rb) != tlog.HashSize {
		return 0, tlog.Hash{}, fmt.Errorf("checkpoint root %q", lines[2])
	}
	var root tlog.Hash
	copy(root[:], rb)
	return size, root, nil
}

// Audit fetches base+"checkpoint", verifies it with vkey, downloads every
// entry bundle, recomputes the tree, compares the root, and compares every
// hash tile the log serves with the recomputed hashes.
func Audit(base, vkey string) (*Result, error) {
	if !strings.HasSuffix(base, "/") {
		base += "/"
	}
	cp, err := get(base + "checkpoint")
	if err != nil {
		return nil, err
	}
	size, root, err := ParseCheckpoint(cp, vkey)
	if err != nil {
		return nil, err
	}
	r := &Result{Size: size, Root: root, Checkpoint: cp}
	hr := r.HashReader()
	for b := int64(0); b*256 < size; b++ {
		w := min(size-b*256, 256)
		p := "tile/entries/" + tileIndex(b)
		if w < 256 {
			p += fmt.Sprintf(".p/%d", w)
		}
		raw, err := get(base + p)
		if err != nil {
			return nil, err
		}
		for i := int64(0); i < w; i++ {
			if len(raw) < 2 {
				return nil, fmt.Errorf("%s: truncated before entry %d", p, i)
			}
			l := int(raw[0])<<8 | int(raw[1])
			if len(raw) < 2+l {
				return nil, fmt.Errorf("%s: entry %d truncated", p, i)
			}
			e := raw[2 : 2+l]
			hs, err := tlog.StoredHashes(b*256+i, e, hr)
			if err != nil {
				return nil, err
			}
			r.stored = append(r.stored, hs...)
			r.Entries = append(r.Entries, append([]byte(nil), e...))
			raw = raw[2+l:]
		}
	}
	got, err := tlog.TreeHash(size, hr)
	if err != nil {
		return nil, err
	}
	if got != root {
		return nil, fmt.Errorf("the entries hash to %v but the checkpoint commits to %v", got, root)
	}
	for _, t := range tlog.NewTiles(8, 0, size) {
		want, err := tlog.ReadTileData(t, hr)
		if err != nil {
			return nil, err
		}
		p := fmt.Sprintf("tile/%d/%s", t.L, tileIndex(t.N))
		if t.W < 256 {
			p += fmt.Sprintf(".p/%d", t.W)
		}
		served, err := get(base + p)
		if err != nil {
			return nil, err
		}
		if !bytes.Equal(served, want) {
			return nil, fmt.Errorf("%s differs from the hashes of the entries", p)
		}
	}
	return r, nil
}

func get(url string) ([]byte, error) {
	resp, err := http.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return io.ReadAll(io.LimitReader(resp.Body, 1<<24))
}

// tileIndex formats N as tlog-tiles paths do: three-digit groups, all but
// the last prefixed with x.
func tileIndex(n int64) string {
	s := fmt.Sprintf("%03d", n%1000)
	for n >= 1000 {
		n /= 1000
		s = fmt.Sprintf("x%03d/", n%1000) + s
	}
	return s
}
