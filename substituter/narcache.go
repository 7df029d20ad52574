package substituter

import (
	"container/list"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// narCache is the optional bounded on-disk cache of verified NARs.
//
// A file enters the cache only after the relay that wrote it checked every
// byte against the agreed NarHash and NarSize: it is written to a temporary
// file while the NAR streams to the client, fsync'd, and renamed to its final
// name only when the stream verified. Files are named by the NAR's hash
// (<nix32 sha256>.nar), so a cached file is valid for every path and every
// verdict that agrees on that hash, and a changed verdict simply names
// another file.
//
// A hit is served straight from the file (sendfile), without hashing again:
// the cache directory is part of the node's state, trusted like its keys
// (docs/threat-model.md). Its size is still checked against the agreed
// NarSize on every hit, which catches a file cut short by a crash or a full
// disk. Paths whose content address needs a check beyond the NAR hash (flat
// and text CAs, non-SHA-256 recursive CAs) never use the cache: their
// check runs on the bytes as they stream.
//
// The cache holds at most max bytes; the least recently used files are
// removed first. Recency survives restarts through the files' mtimes, which
// a hit refreshes at most once per touchInterval.
type narCache struct {
	dir string
	max int64

	mu      sync.Mutex
	size    int64
	lru     *list.List               // of *cachedNAR, most recent first
	entries map[string]*list.Element // by nix32 NAR hash
	writing map[string]bool          // NAR hashes being written now
}

type cachedNAR struct {
	hash    string // nix32 SHA-256 of the NAR
	size    int64
	touched time.Time
}

const (
	cacheSuffix   = ".nar"
	cacheTempGlob = ".tmp-*"
	touchInterval = time.Minute
)

// openNARCache opens (creating) the cache directory, forgets partial
// files a crash left behind, and trims the cache to max bytes.
func openNARCache(dir string, max int64) (*narCache, error) {
	if max <= 0 {
		return nil, fmt.Errorf("NAR cache %s: the maximum size must be positive", dir)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("NAR cache: %w", err)
	}
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("NAR cache: %w", err)
	}
	c := &narCache{dir: dir, max: max, lru: list.New(), entries: map[string]*list.Element{}, writing: map[string]bool{}}
	var found []*cachedNAR
	for _, de := range des {
		name := de.Name()
		if ok, _ := filepath.Match(cacheTempGlob, name); ok {
			// A write the node did not finish: never verified, never served.
			os.Remove(filepath.Join(dir, name))
			continue
		}
		hash, ok := strings.CutSuffix(name, cacheSuffix)
		if !ok || !validNARHash(hash) || !de.Type().IsRegular() {
			continue // not ours; leave it alone
		}
		fi, err := de.Info()
		if err != nil {
			continue
		}
		found = append(found, &cachedNAR{hash: hash, size: fi.Size(), touched: fi.ModTime()})
	}
	sort.Slice(found, func(i, j int) bool { return found[i].touched.After(found[j].touched) })
	for _, e := range found {
		c.entries[e.hash] = c.lru.PushBack(e)
		c.size += e.size
	}
	c.mu.Lock()
	c.evictLocked(0)
	c.mu.Unlock()
	return c, nil
}

func validNARHash(h string) bool {
	if len(h) != 52 {
		return false
	}
	_, err := nixbase32.DecodeString(h)
	return err == nil
}

func (c *narCache) path(hash string) string { return filepath.Join(c.dir, hash+cacheSuffix) }

// open returns the cached NAR with this nix32 hash, if the cache holds a
// file of exactly size bytes for it. A file of any other size is removed.
func (c *narCache) open(hash string, size uint64) (*os.File, bool) {
	c.mu.Lock()
	el, ok := c.entries[hash]
	var touch bool
	if ok {
		c.lru.MoveToFront(el)
		e := el.Value.(*cachedNAR)
		if now := time.Now(); now.Sub(e.touched) > touchInterval {
			e.touched, touch = now, true
		}
	}
	c.mu.Unlock()
	if !ok {
		return nil, false
	}
	f, err := os.Open(c.path(hash))
	if err == nil {
		var fi fs.FileInfo
		if fi, err = f.Stat(); err == nil && fi.Size() != int64(size) {
			err = fmt.Errorf("%d bytes, the agreed NAR has %d", fi.Size(), size)
		}
	}
	if err != nil {
		if f != nil {
			f.Close()
		}
		c.drop(hash)
		return nil, false
	}
	if touch {
		now := time.Now()
		os.Chtimes(c.path(hash), now, now)
	}
	return f, true
}

// has reports whether the cache holds a NAR with this nix32 hash and size.
func (c *narCache) has(hash string, size uint64) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.entries[hash]
	return ok && el.Value.(*cachedNAR).size == int64(size)
}

// drop forgets a cached NAR and removes its file.
func (c *narCache) drop(hash string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.entries[hash]; ok {
		c.removeLocked(el)
	}
}

func (c *narCache) removeLocked(el *list.Element) {
	e := c.lru.Remove(el).(*cachedNAR)
	delete(c.entries, e.hash)
	c.size -= e.size
	// A NAR being served from this file keeps its open descriptor.
	os.Remove(c.path(e.hash))
}

// evictLocked removes least recently used NARs until room more bytes fit.
func (c *narCache) evictLocked(room int64) {
	for c.size+room > c.max && c.lru.Len() > 0 {
		c.removeLocked(c.lru.Back())
	}
}

// Size reports the bytes the cache holds.
func (c *narCache) Size() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}

// begin returns a writer for a NAR about to be relayed, or nil when the
// cache already has it, another request is writing it, it is larger than
// the whole cache, or the temporary file cannot be created.
func (c *narCache) begin(hash string, size uint64) *cacheWriter {
	if int64(size) > c.max || int64(size) < 0 {
		return nil
	}
	c.mu.Lock()
	_, cached := c.entries[hash]
	busy := c.writing[hash]
	if !cached && !busy {
		c.writing[hash] = true
	}
	c.mu.Unlock()
	if cached || busy {
		return nil
	}
	f, err := os.CreateTemp(c.dir, ".tmp-"+hash[:8]+"-*")
	if err != nil {
		c.done(hash)
		return nil
	}
	return &cacheWriter{c: c, hash: hash, size: int64(size), f: f}
}

func (c *narCache) done(hash string) {
	c.mu.Lock()
	delete(c.writing, hash)
	c.mu.Unlock()
}

// cacheWriter receives a NAR's bytes as they are relayed. A write error
// (a full disk) only stops the caching, never the relay.
type cacheWriter struct {
	c    *narCache
	hash string
	size int64
	f    *os.File
	err  error
}

func (w *cacheWriter) Write(p []byte) (int, error) {
	if w.err == nil {
		_, w.err = w.f.Write(p)
	}
	return len(p), nil
}

// restart forgets what was written: the source failed and another one will
// send the NAR from its first byte.
func (w *cacheWriter) restart() {
	if w.err == nil {
		if w.err = w.f.Truncate(0); w.err == nil {
			_, w.err = w.f.Seek(0, 0)
		}
	}
}

// commit makes the verified NAR a cache entry. The caller has checked the
// whole stream against the agreed hash and size.
func (w *cacheWriter) commit() error {
	defer w.c.done(w.hash)
	name := w.f.Name()
	err := w.err
	if err == nil {
		err = w.f.Sync()
	}
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		var fi fs.FileInfo
		if fi, err = os.Stat(name); err == nil && fi.Size() != w.size {
			err = fmt.Errorf("wrote %d bytes of a %d-byte NAR", fi.Size(), w.size)
		}
	}
	if err == nil {
		w.c.mu.Lock()
		w.c.evictLocked(w.size)
		err = os.Rename(name, w.c.path(w.hash))
		if err == nil {
			w.c.entries[w.hash] = w.c.lru.PushFront(&cachedNAR{hash: w.hash, size: w.size, touched: time.Now()})
			w.c.size += w.size
		}
		w.c.mu.Unlock()
	}
	if err != nil {
		os.Remove(name)
		return fmt.Errorf("NAR cache: %w", err)
	}
	return nil
}

// abort throws the partial file away.
func (w *cacheWriter) abort() {
	w.f.Close()
	os.Remove(w.f.Name())
	w.c.done(w.hash)
}
