package buildlog

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"

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
		h := w.Header()
		if p == "checkpoint" {
			h.Set("Content-Type", "text/plain; charset=utf-8")
			h.Set("Cache-Control", "no-cache")
		} else {
			h.Set("Content-Type", "application/octet-stream")
			if immutable {
				h.Set("Cache-Control", "public, max-age=31536000, immutable")
			} else {
				h.Set("Cache-Control", "public, max-age=5")
			}
		}
		http.ServeContent(w, r, "", st.ModTime(), f)
	})
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
