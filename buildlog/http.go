package buildlog

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api/layout"
)

// Handler serves the log read-only in C2SP tlog-tiles layout, relative to
// wherever it is mounted (vouch mounts it at /log/):
//
//	checkpoint                        the latest signed checkpoint
//	tile/<L>/<N>[.p/<W>]              hash tiles
//	tile/entries/<N>[.p/<W>]          entry bundles (the claims)
//
// Only these paths are served; everything else in the log directory (the
// engine's private state) is 404. Full tiles and bundles never change and are
// served as immutable; the checkpoint and partial tiles change and must not
// be cached for long, as the tlog-tiles spec asks.
func Handler(tilesDir string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the log is read-only", http.StatusMethodNotAllowed)
			return
		}
		p := strings.TrimPrefix(r.URL.Path, "/")
		immutable, ok := servablePath(p)
		if !ok {
			http.NotFound(w, r)
			return
		}
		f, err := os.Open(filepath.Join(tilesDir, filepath.FromSlash(p)))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		defer f.Close()
		st, err := f.Stat()
		if err != nil || !st.Mode().IsRegular() {
			http.NotFound(w, r)
			return
		}
		setTileHeaders(w.Header(), p, immutable)
		http.ServeContent(w, r, "", st.ModTime(), f)
	})
}

// setTileHeaders sets the content type and the tlog-tiles cache policy.
func setTileHeaders(h http.Header, p string, immutable bool) {
	if p == "checkpoint" {
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Cache-Control", "no-cache")
		return
	}
	h.Set("Content-Type", "application/octet-stream")
	if immutable {
		h.Set("Cache-Control", "public, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "public, max-age=5")
	}
}

// ReaderHandler serves the same paths, with the same cache headers, as
// Handler, reading them through a tessera LogReader instead of a directory:
// a shared log's frontends serve the bucket this way. A resource the
// reader does not have is 404; a reader failure (the bucket unreachable)
// is 502, so that a cache in front does not remember it as missing.
func ReaderHandler(reader tessera.LogReader) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "the log is read-only", http.StatusMethodNotAllowed)
			return
		}
		p := strings.TrimPrefix(r.URL.Path, "/")
		immutable, ok := servablePath(p)
		if !ok {
			http.NotFound(w, r)
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), 30*time.Second)
		defer cancel()
		b, err := readResource(ctx, reader, p)
		if isNotFound(err) {
			http.NotFound(w, r)
			return
		}
		if err != nil {
			http.Error(w, "reading the log from its storage failed; try again", http.StatusBadGateway)
			return
		}
		setTileHeaders(w.Header(), p, immutable)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
	})
}

// readResource reads the tlog-tiles resource at p, which servablePath
// accepted.
func readResource(ctx context.Context, reader tessera.LogReader, p string) ([]byte, error) {
	if p == "checkpoint" {
		return reader.ReadCheckpoint(ctx)
	}
	level, index, _ := strings.Cut(strings.TrimPrefix(p, "tile/"), "/")
	if level == "entries" {
		i, partial, err := layout.ParseTileIndexPartial(index)
		if err != nil {
			return nil, err
		}
		return reader.ReadEntryBundle(ctx, i, partial)
	}
	l, i, partial, err := layout.ParseTileLevelIndexPartial(level, index)
	if err != nil {
		return nil, err
	}
	return reader.ReadTile(ctx, l, i, partial)
}

// isNotFound reports whether a reader's error means the resource does not
// exist (rather than that it could not be read).
func isNotFound(err error) bool {
	if err == nil {
		return false
	}
	var noKey *types.NoSuchKey
	if errors.Is(err, os.ErrNotExist) || errors.As(err, &noKey) {
		return true
	}
	// tessera's AWS reader flattens a missing tile's or bundle's error into
	// text (fmt %v), so the S3 error's type is lost; its text remains.
	msg := err.Error()
	return strings.Contains(msg, "NoSuchKey") || strings.Contains(msg, "StatusCode: 404")
}

// servablePath reports whether p is a tlog-tiles resource and whether it is
// immutable (a full tile or bundle).
func servablePath(p string) (immutable, ok bool) {
	if p == "checkpoint" {
		return false, true
	}
	rest, found := strings.CutPrefix(p, "tile/")
	if !found {
		return false, false
	}
	level, index, found := strings.Cut(rest, "/")
	if !found {
		return false, false
	}
	if level == "entries" {
		_, partial, err := layout.ParseTileIndexPartial(index)
		return partial == 0, err == nil
	}
	_, _, partial, err := layout.ParseTileLevelIndexPartial(level, index)
	return partial == 0, err == nil
}
