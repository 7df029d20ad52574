package follow

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/tlog"
)

// Size limits of what a log may send. A tile holds at most 256 hashes; an
// entry bundle at most 256 entries of at most 65535 bytes, each with a
// 2-byte length. A checkpoint is a few hundred bytes; 64 KiB leaves room
// for many cosignatures.
const (
	maxCheckpointSize = 64 << 10
	maxTileSize       = 256 * tlog.HashSize
	maxBundleSize     = 256 * (2 + 65535)
)

// errNotFound is returned by get for a missing file (HTTP 404).
var errNotFound = errors.New("not found")

// FetchError is a failure to fetch something from a log: the network, the
// server or a missing file. It says nothing about the log's honesty, so it
// never leads to evidence; the follower retries later.
type FetchError struct {
	URL string
	Err error
}

func (e *FetchError) Error() string { return fmt.Sprintf("fetch %s: %v", e.URL, e.Err) }
func (e *FetchError) Unwrap() error { return e.Err }

// fetcher reads the files of one log, over HTTP(S) or from a file:// URL,
// bounding every response in size and time.
type fetcher struct {
	base   *url.URL
	client *http.Client
}

// NewHTTPClient returns the HTTP client a follower uses by default: bounded
// connection, header and whole-request times, keep-alive to each log.
func NewHTTPClient() *http.Client {
	return &http.Client{
		Timeout: 60 * time.Second,
		Transport: &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   10 * time.Second,
			ResponseHeaderTimeout: 20 * time.Second,
			MaxIdleConnsPerHost:   fetchParallelism,
			IdleConnTimeout:       90 * time.Second,
		},
	}
}

func newFetcher(logURL string, client *http.Client) (*fetcher, error) {
	if !strings.HasSuffix(logURL, "/") {
		logURL += "/"
	}
	u, err := url.Parse(logURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https" && u.Scheme != "file") {
		return nil, fmt.Errorf("log URL %q: want http://, https:// or file://", logURL)
	}
	return &fetcher{base: u, client: client}, nil
}

// get returns the file at path (relative to the log's base URL), failing
// if it is larger than limit.
func (f *fetcher) get(ctx context.Context, path string, limit int64) ([]byte, error) {
	u := f.base.ResolveReference(&url.URL{Path: path})
	if u.Scheme == "file" {
		b, err := readFileLimited(filepath.FromSlash(u.Path), limit)
		if err != nil {
			return nil, &FetchError{URL: u.String(), Err: err}
		}
		return b, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, &FetchError{URL: u.String(), Err: err}
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, &FetchError{URL: u.String(), Err: err}
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusNotFound:
		io.Copy(io.Discard, io.LimitReader(resp.Body, 4096))
		return nil, &FetchError{URL: u.String(), Err: errNotFound}
	case resp.StatusCode != http.StatusOK:
		return nil, &FetchError{URL: u.String(), Err: fmt.Errorf("HTTP status %s", resp.Status)}
	case resp.ContentLength > limit:
		return nil, &FetchError{URL: u.String(), Err: fmt.Errorf("response of %d bytes exceeds the %d-byte limit", resp.ContentLength, limit)}
	}
	b, err := readBody(resp.Body, resp.ContentLength, limit)
	if err != nil {
		return nil, &FetchError{URL: u.String(), Err: err}
	}
	return b, nil
}

// readBody reads a response body of at most limit bytes. When the server
// announced its length, the body is read into a buffer of exactly that
// size: a sync keeps a batch of bundles in memory (the entries point into
// them), and io.ReadAll's doubling would leave up to half of each buffer
// unused, besides the garbage of the smaller ones it grew through.
func readBody(body io.Reader, length, limit int64) ([]byte, error) {
	if length < 0 {
		b, err := io.ReadAll(io.LimitReader(body, limit+1))
		if err == nil && int64(len(b)) > limit {
			err = fmt.Errorf("response exceeds the %d-byte limit", limit)
		}
		return b, err
	}
	// The caller checked length <= limit.
	b := make([]byte, length)
	if _, err := io.ReadFull(body, b); err != nil {
		return nil, fmt.Errorf("response shorter than its announced %d bytes: %w", length, err)
	}
	return b, nil
}

func readFileLimited(path string, limit int64) ([]byte, error) {
	fh, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, errNotFound
	}
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	b, err := io.ReadAll(io.LimitReader(fh, limit+1))
	if err == nil && int64(len(b)) > limit {
		err = fmt.Errorf("file exceeds the %d-byte limit", limit)
	}
	return b, err
}

// getPartial fetches a tile or bundle of width w at path(p), where p is w
// for a partial (w < 256) and 0 for a full one. Logs may delete partial
// files once the full one exists (tlog-tiles allows it), so a missing
// partial is retried as the full file, of which the first w items count.
func (f *fetcher) getPartial(ctx context.Context, path func(p uint8) string, w int, limit int64) (data []byte, usedPath string, full bool, err error) {
	if w < 256 {
		usedPath = path(uint8(w))
		data, err = f.get(ctx, usedPath, limit)
		if err == nil || !errors.Is(err, errNotFound) {
			return data, usedPath, false, err
		}
	}
	usedPath = path(0)
	data, err = f.get(ctx, usedPath, limit)
	return data, usedPath, true, err
}

// fetchParallelism bounds the concurrent requests to one log.
const fetchParallelism = 4

// remoteTiles is a tlog.TileReader over a log's hash tiles. Tiles it returns
// are unauthenticated: tlog.TileHashReader authenticates them against a
// signed root before any hash is used. It caches recent tiles because every
// authentication re-reads the tiles on the tree's right edge.
type remoteTiles struct {
	ctx   context.Context
	fetch *fetcher

	mu    sync.Mutex
	cache map[tlog.Tile][]byte
}

const tileCacheSize = 128 // ~1 MiB

func newRemoteTiles(ctx context.Context, f *fetcher) *remoteTiles {
	return &remoteTiles{ctx: ctx, fetch: f, cache: map[tlog.Tile][]byte{}}
}

func (r *remoteTiles) Height() int { return 8 }

func (r *remoteTiles) ReadTiles(tiles []tlog.Tile) ([][]byte, error) {
	out := make([][]byte, len(tiles))
	errs := make([]error, len(tiles))
	sem := make(chan struct{}, fetchParallelism)
	var wg sync.WaitGroup
	for i, t := range tiles {
		if t.H != 8 || t.L < 0 {
			return nil, fmt.Errorf("follow: unexpected tile request %v", t.Path())
		}
		r.mu.Lock()
		data, ok := r.cache[t]
		r.mu.Unlock()
		if ok {
			out[i] = data
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			pathFor := func(p uint8) string { return layout.TilePath(uint64(t.L), uint64(t.N), p) }
			data, _, full, err := r.fetch.getPartial(r.ctx, pathFor, t.W, maxTileSize)
			switch {
			case err != nil:
				errs[i] = err
			case full && len(data) == maxTileSize:
				out[i] = data[:t.W*tlog.HashSize]
			default:
				// A tile of the wrong length is returned as it is: the
				// tile hash reader refuses it (it cannot authenticate).
				out[i] = data
			}
		}()
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, t := range tiles {
		if len(r.cache) >= tileCacheSize {
			clear(r.cache)
		}
		r.cache[t] = out[i]
	}
	return out, nil
}

// SaveTiles is a no-op: ReadTiles caches already.
func (r *remoteTiles) SaveTiles([]tlog.Tile, [][]byte) {}

// partialOf returns the partial suffix of a tile or bundle of width w.
func partialOf(w int) uint8 {
	if w >= 256 {
		return 0
	}
	return uint8(w)
}
