package substituter

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
)

// Verifying a NAR before sending it.
//
// A relay that streams a NAR while hashing it can only cut the client off
// when the source turns out wrong: once Nix holds part of a NAR, no other
// source can continue it, and Nix 2.8 does not retry a partial download.
// Holding back the last chunk keeps a bad NAR from ever completing, but
// the client's copy still fails although another upstream had the right
// bytes.
//
// So a NAR up to Limits.VerifyFirstMax is received whole and verified
// before its first byte is sent: in memory up to Limits.MemorySpoolMax,
// in an unlinked-on-close temporary file in Limits.SpoolDir above. On a
// mismatch the spool is emptied and the next source is tried; the client
// only waits longer. What this costs is time to first byte, one full
// download; the NAR is then sent from memory or with sendfile. Per-chunk
// hashes in the claim would avoid the wait but change the claim format;
// racing sources doubles upstream traffic. Larger NARs keep streaming with
// the hold-back, so a very large NAR does not need as much free disk.

// spool holds a NAR being verified.
type spool struct {
	size  uint64
	mem   *bytes.Buffer // when size ≤ MemorySpoolMax
	dir   string
	f     *os.File // created on the first write otherwise
	n     int64
	where string // "memory" or "file", for the metric
	err   error  // a local write error: the NAR cannot be spooled
	// cached, if set, is the NAR cache's temporary file for this NAR,
	// which already receives every byte: it doubles as the spool.
	cached *cacheWriter
}

// shareWith makes the NAR cache's temporary file the spool, so a NAR that
// will be cached is written to disk once.
func (sp *spool) shareWith(cw *cacheWriter) {
	if sp.mem == nil && cw != nil {
		sp.cached = cw
	}
}

func newSpool(size uint64, l Limits) *spool {
	if int64(size) <= l.MemorySpoolMax {
		return &spool{size: size, mem: bytes.NewBuffer(make([]byte, 0, size)), where: "memory"}
	}
	return &spool{size: size, dir: l.SpoolDir, where: "file"}
}

// errSpool marks a failure of this node's own disk, never an upstream's.
var errSpool = errors.New("spool")

func (sp *spool) write(b []byte) error {
	if sp.err != nil {
		return sp.err
	}
	if sp.cached != nil {
		// The relay wrote b to the cache file already.
		if sp.cached.err != nil {
			sp.err = &upstreamError{reason: "spool", err: fmt.Errorf("%w: %v", errSpool, sp.cached.err)}
		}
		sp.n += int64(len(b))
		return sp.err
	}
	if sp.mem != nil {
		sp.mem.Write(b)
		return nil
	}
	if sp.f == nil {
		if sp.f, sp.err = os.CreateTemp(sp.dir, "vouch-nar-*"); sp.err != nil {
			sp.err = &upstreamError{reason: "spool", err: fmt.Errorf("%w: %v", errSpool, sp.err)}
			return sp.err
		}
		// Nobody else needs the name; the descriptor keeps the data.
		os.Remove(sp.f.Name())
	}
	n, err := sp.f.Write(b)
	sp.n += int64(n)
	if err != nil {
		sp.err = &upstreamError{reason: "spool", err: fmt.Errorf("%w: %v", errSpool, err)}
	}
	return sp.err
}

// reset empties the spool for the next source.
func (sp *spool) reset() {
	if sp.mem != nil {
		sp.mem.Reset()
		return
	}
	if sp.cached != nil {
		// The relay restarts the cache file itself.
		sp.n = 0
		return
	}
	if sp.f != nil && sp.err == nil {
		if sp.err = sp.f.Truncate(0); sp.err == nil {
			_, sp.err = sp.f.Seek(0, io.SeekStart)
		}
	}
	sp.n = 0
}

// sendTo writes the verified NAR to the relay's client.
func (sp *spool) sendTo(rl *relay) error {
	if sp.mem != nil {
		return rl.write(sp.mem.Bytes())
	}
	f := sp.f
	if sp.cached != nil {
		f = sp.cached.f
	}
	if f == nil {
		return rl.write(nil)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return &upstreamError{reason: "spool", err: err}
	}
	// io.Copy reaches the connection's ReadFrom, so a file goes out with
	// sendfile.
	n, err := io.Copy(rl.w, io.LimitReader(f, sp.n))
	rl.sent += uint64(n)
	if err != nil {
		return &upstreamError{reason: "client", err: err}
	}
	return nil
}

func (sp *spool) close() {
	if sp.f != nil {
		sp.f.Close()
	}
}

func (rl *relay) close() {
	if rl.spool != nil {
		rl.spool.close()
	}
}
