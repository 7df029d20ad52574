package substituter

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/vouch-dev/vouch/narinfo"
	"github.com/vouch-dev/vouch/nixstore"
)

// relayBuffer is the size of one chunk read from a source; the last chunk
// read is what is held back until the NAR is verified.
const relayBuffer = 128 << 10

// serveNAR answers GET /nar/<hash part>-<nix32 NAR hash>.nar.
func (s *Server) serveNAR(w http.ResponseWriter, r *http.Request, name string) {
	hashPart, narHash, ok := parseNARName(name)
	if !ok {
		s.refuse(w, r, http.StatusNotFound, "bad-name", "NAR names have the form <hash part>-<nix32 NAR hash>.nar")
		return
	}
	ctx, cancel := s.requestContext(r)
	defer cancel()
	exp, code, reason := s.resolve(ctx, hashPart)
	if exp == nil {
		s.refuse(w, r, http.StatusNotFound, code, reason)
		return
	}
	if exp.NarHash != narHash {
		s.refuse(w, r, http.StatusNotFound, "stale", "the agreed NAR hash of this path is not the one in this URL; fetch the narinfo again")
		return
	}
	w.Header().Set("Content-Type", contentTypeNAR)
	w.Header().Set("Content-Length", strconv.FormatUint(exp.NarSize, 10))
	rl := &relay{w: w, exp: exp}
	defer rl.close()

	// A verified copy on disk first, then the sources, keeping a copy.
	if s.narCache != nil && exp.cacheable() {
		key := strings.TrimPrefix(exp.NarHash, "sha256:")
		if f, ok := s.narCache.open(key, exp.NarSize); ok {
			defer f.Close()
			s.metrics.narCache.WithLabelValues("hit").Inc()
			if n, err := io.Copy(w, f); err == nil && uint64(n) == exp.NarSize {
				s.served(rl, "cache")
			}
			return
		}
		s.metrics.narCache.WithLabelValues("miss").Inc()
		if rl.cache = s.narCache.begin(key, exp.NarSize); rl.cache != nil {
			defer rl.finishCache(s, w)
		}
	}

	if max := s.limits.VerifyFirstMax; max >= 0 && exp.NarSize <= uint64(max) {
		rl.spool = newSpool(exp.NarSize, s.limits)
		rl.spool.shareWith(rl.cache)
	}

	// The node's own store first: no network, and verified all the same.
	if s.store != nil {
		if err := s.fromStore(ctx, rl); err == nil {
			s.served(rl, "store")
			return
		} else if !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("own store copy refused", "path", exp.StorePath, "err", err)
			s.metrics.upstreamFailures.WithLabelValues("store", reasonOf(ctx, err)).Inc()
		}
		if rl.sent > 0 {
			s.abort(rl)
		}
		rl.reset()
	}

	var failures []string
	clientLeft := false
	gone := func() bool { return clientLeft || r.Context().Err() != nil }
	// try fetches the NAR from one upstream whose narinfo matched; it
	// reports whether the NAR was served.
	try := func(res narinfoResult) bool {
		start := time.Now()
		err := s.fromUpstream(ctx, res.up, res.info, rl)
		s.metrics.upstreamSeconds.WithLabelValues(res.up.name, "nar").Observe(time.Since(start).Seconds())
		if err == nil {
			s.served(rl, res.up.name)
			return true
		}
		if r.Context().Err() != nil || reasonOf(ctx, err) == "client" {
			// The client hung up: no fault of the upstream's.
			clientLeft = true
			return false
		}
		reason := reasonOf(ctx, err)
		if reason == "spool" {
			// This node's disk failed, not the upstream: stream this
			// NAR with the hold-back instead.
			s.log.Error("cannot spool a NAR to verify it before sending; streaming it", "path", exp.StorePath, "err", err)
			rl.reset()
			rl.spool.close()
			rl.spool = nil
			err = s.fromUpstream(ctx, res.up, res.info, rl)
			if err == nil {
				s.served(rl, res.up.name)
				return true
			}
			reason = reasonOf(ctx, err)
		}
		failures = append(failures, res.up.name+": "+describe(reason, err))
		s.upstreamFailed(res.up, reason, hashPart, err)
		switch {
		case reason == "missing":
			// Its narinfo was there, its NAR is not (any more).
			s.forget(res.up, hashPart)
		case reason != "busy":
			res.up.penalise()
		}
		if reason != "timeout" {
			// A NAR that outlasts the whole-request timeout says more
			// about its size than about the upstream's health.
			s.healthFailed(res.up, reason)
		}
		if rl.sent > 0 {
			// Nix already has part of this NAR (it was too large to be
			// verified before sending); another source cannot continue
			// it. Cut the stream so Nix sees it short; its retry will
			// find this upstream at the back of the queue.
			s.abort(rl)
		}
		rl.reset()
		return false
	}
	raceCtx, stopRace := context.WithCancel(ctx)
	defer stopRace()
	answers := s.raceNarinfos(raceCtx, hashPart)
	served := false
	// Upstreams that recently failed a NAR are tried last, and those
	// whose circuit is open after them: the narinfo was served, so the
	// NAR is worth a wait.
	var penalised []narinfoResult
	var skipped []*upstream
	for res := range answers {
		if res.lookup == nil && reasonOf(ctx, res.err) == "unavailable" {
			skipped = append(skipped, res.up)
			continue
		}
		if err := s.usable(res, exp, hashPart); err != nil {
			failures = append(failures, res.up.name+": "+describe(reasonOf(ctx, err), err))
			continue
		}
		if res.up.isPenalised() {
			penalised = append(penalised, res)
			continue
		}
		if served = try(res); served || gone() {
			break
		}
	}
	for _, res := range penalised {
		if served || gone() {
			break
		}
		served = try(res)
	}
	for _, up := range skipped {
		if served || gone() {
			break
		}
		l, err := s.narinfoOf(ctx, up, hashPart)
		if err != nil {
			break
		}
		res := narinfoResult{up: up, info: l.info, err: l.err, lookup: l}
		if err := s.usable(res, exp, hashPart); err != nil {
			failures = append(failures, up.name+": "+describe(reasonOf(ctx, err), err))
			continue
		}
		served = try(res)
	}
	// Answers still on their way are judged all the same: an upstream
	// that lies loses the race but is still logged and counted.
	go s.judgeLate(answers, exp, hashPart)
	switch {
	case served:
	case gone():
		s.metrics.clientGone.Inc()
		s.log.Debug("client gone before its NAR was served", "path", exp.StorePath)
	case rl.sent > 0:
		// Cannot happen: a failure after bytes were sent aborts.
		s.abort(rl)
	case ctx.Err() != nil:
		s.refuse(w, r, http.StatusGatewayTimeout, "timeout", "no upstream delivered the NAR within the request timeout: "+summary(failures))
	default:
		// The narinfo must be earned again.
		exp.sourceUntil.Store(0)
		s.refuse(w, r, http.StatusBadGateway, "no-source", fmt.Sprintf("none of %d upstreams delivered a NAR matching the agreed hash: %s", len(s.upstreams), summary(failures)))
	}
}

// usable reports why an upstream's narinfo answer cannot be used for exp,
// or nil when it can. A narinfo that contradicts the agreement is logged
// and counted once per fetch, however many requests read it.
func (s *Server) usable(res narinfoResult, exp *expectation, hashPart string) error {
	if res.err != nil {
		return res.err
	}
	if err := exp.matches(res.info); err != nil {
		res.lookup.judged.Do(func() { s.upstreamFailed(res.up, "mismatch", hashPart, err) })
		return &upstreamError{reason: "mismatch", err: err}
	}
	return nil
}

// describe is one upstream failure for a refusal body.
func describe(reason string, err error) string {
	var ue *upstreamError
	if errors.As(err, &ue) {
		return err.Error()
	}
	return reason + ": " + err.Error()
}

func summary(failures []string) string {
	if len(failures) == 0 {
		return "no upstream is configured"
	}
	return strings.Join(failures, "; ")
}

// findSource reports whether some source can deliver exp's NAR now: the
// node's own store, its NAR cache, or an upstream whose narinfo agrees.
// Otherwise it says what each upstream answered. Upstream answers come
// from the narinfo cache (health.go), so the check costs a request per
// upstream at most once per FoundTTL (MissTTL for a miss).
func (s *Server) findSource(ctx context.Context, hashPart string, exp *expectation) (bool, string) {
	now := time.Now()
	if now.UnixNano() < exp.sourceUntil.Load() {
		return true, ""
	}
	found := func() (bool, string) {
		exp.sourceUntil.Store(now.Add(s.limits.FoundTTL).UnixNano())
		return true, ""
	}
	if s.store != nil {
		if disk, err := s.store.DiskPath(exp.StorePath); err == nil {
			if _, err := os.Lstat(disk); err == nil {
				return found()
			}
		}
	}
	if s.narCache != nil && exp.cacheable() && s.narCache.has(strings.TrimPrefix(exp.NarHash, "sha256:"), exp.NarSize) {
		return found()
	}
	answers := s.raceNarinfos(ctx, hashPart)
	var failures []string
	for res := range answers {
		err := s.usable(res, exp, hashPart)
		if err == nil {
			go s.judgeLate(answers, exp, hashPart)
			return found()
		}
		failures = append(failures, res.up.name+": "+describe(reasonOf(ctx, err), err))
	}
	return false, summary(failures)
}

func (s *Server) served(rl *relay, source string) {
	rl.verified = true
	if rl.spool != nil {
		s.metrics.verifiedFirst.WithLabelValues(rl.spool.where).Inc()
	}
	s.metrics.verifiedBytes.Add(float64(rl.exp.NarSize))
	s.log.Debug("NAR served", "path", rl.exp.StorePath, "source", source, "bytes", rl.exp.NarSize)
}

// abort cuts the client's connection without a clean end of the body.
// With Content-Length set to NarSize, Nix sees a short read and rejects
// the NAR; nothing unverified ever completes it.
func (s *Server) abort(rl *relay) {
	s.metrics.aborted.Inc()
	s.log.Warn("NAR stream cut after a source failed mid-stream", "path", rl.exp.StorePath, "sent", rl.sent)
	panic(http.ErrAbortHandler)
}

// parseNARName splits "<32 hash part>-<52 nix32>.nar".
func parseNARName(name string) (hashPart, narHash string, ok bool) {
	base, ok := strings.CutSuffix(name, ".nar")
	if !ok || len(base) != 32+1+52 || base[32] != '-' || !validHashPart(base[:32]) {
		return "", "", false
	}
	if _, err := nixbase32.DecodeString(base[33:]); err != nil {
		return "", "", false
	}
	return base[:32], "sha256:" + base[33:], true
}

func (s *Server) fromUpstream(ctx context.Context, up *upstream, ni *narinfo.NarInfo, rl *relay) error {
	nar, closeNAR, err := up.openNAR(ctx, ni, rl.exp.NarSize)
	if err != nil {
		return err
	}
	defer closeNAR()
	return rl.copyFrom(nar)
}

// fromStore relays the NAR of the path from the node's own store, if it is
// there. It returns an error wrapping os.ErrNotExist when it is not.
func (s *Server) fromStore(ctx context.Context, rl *relay) error {
	disk, err := s.store.DiskPath(rl.exp.StorePath)
	if err != nil {
		return err
	}
	if _, err := os.Lstat(disk); err != nil {
		return err
	}
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(nixstore.WriteNAR(pw, disk)) }()
	defer pr.Close()
	return rl.copyFrom(pr)
}

// relay copies one NAR to the client while checking it against the
// expectation. Its invariant: the client never holds all NarSize bytes
// unless the SHA-256 of those bytes is the agreed NarHash (and the CA
// matches, for a self-certified path). It keeps the last chunk read back
// until the count reaches NarSize and the hash is checked.
type relay struct {
	w    io.Writer
	exp  *expectation
	sent uint64 // bytes written to the client so far
	buf  []byte
	held []byte
	// cache, if set, receives a copy of what is read, kept only when
	// the whole NAR verified.
	cache *cacheWriter
	// spool, if set, receives the NAR instead of the client until all of
	// it verified (spool.go).
	spool    *spool
	verified bool
}

func (rl *relay) reset() {
	rl.sent = 0
	if rl.cache != nil {
		rl.cache.restart()
	}
	if rl.spool != nil {
		rl.spool.reset()
	}
}

// finishCache keeps the copy of a verified NAR and throws away any other.
// It runs after the handler's last write, so the client is not kept
// waiting for the fsync.
func (rl *relay) finishCache(s *Server, w http.ResponseWriter) {
	if !rl.verified {
		rl.cache.abort()
		return
	}
	http.NewResponseController(w).Flush()
	if err := rl.cache.commit(); err != nil {
		s.metrics.narCache.WithLabelValues("store-failed").Inc()
		s.log.Warn("verified NAR not cached", "path", rl.exp.StorePath, "err", err)
		return
	}
	s.metrics.narCache.WithLabelValues("stored").Inc()
}

// copyFrom reads the whole NAR from src and relays it. It returns nil only
// when all NarSize bytes were verified and written.
func (rl *relay) copyFrom(src io.Reader) error {
	if rl.buf == nil {
		rl.buf = make([]byte, relayBuffer)
		rl.held = make([]byte, 0, relayBuffer)
	}
	rl.held = rl.held[:0]
	narHash := sha256.New()
	var sinks []io.Writer = []io.Writer{narHash}
	caCheck, err := newCACheck(rl.exp.CA)
	if err != nil {
		return err
	}
	if caCheck != nil {
		sinks = append(sinks, caCheck)
	}
	if rl.cache != nil {
		sinks = append(sinks, rl.cache)
	}
	emit := rl.write
	if rl.spool != nil {
		emit = rl.spool.write
	}
	total := uint64(0)
	want := rl.exp.NarSize
	for {
		n, rerr := src.Read(rl.buf)
		if n > 0 {
			if total+uint64(n) > want {
				return failure("overrun", "NAR longer than the agreed %d bytes", want)
			}
			for _, s := range sinks {
				s.Write(rl.buf[:n])
			}
			if len(rl.held) > 0 {
				if err := emit(rl.held); err != nil {
					return err
				}
			}
			rl.held = append(rl.held[:0], rl.buf[:n]...)
			total += uint64(n)
			if total == want {
				if got := "sha256:" + nixbase32.EncodeToString(narHash.Sum(nil)); got != rl.exp.NarHash {
					return failure("hash", "NAR hash %s, agreed %s", got, rl.exp.NarHash)
				}
				if caCheck != nil {
					if err := caCheck.verify(); err != nil {
						return failure("ca-mismatch", "%v", err)
					}
				}
				if err := emit(rl.held); err != nil {
					return err
				}
				if rl.spool != nil {
					return rl.spool.sendTo(rl)
				}
				return nil
			}
		}
		if rerr == io.EOF {
			return failure("truncated", "NAR ends after %d of the agreed %d bytes", total, want)
		}
		if rerr != nil {
			return rerr
		}
	}
}

func (rl *relay) write(b []byte) error {
	n, err := rl.w.Write(b)
	rl.sent += uint64(n)
	if err != nil {
		return &upstreamError{reason: "client", err: err}
	}
	return nil
}

// caCheck verifies the content address of a self-certified path against
// the NAR as it streams. fixed:r:sha256 needs nothing beyond the NAR hash
// (they are the same hash); other recursive hashes hash the NAR with their
// algorithm; flat and text hash the contents of the single file the NAR
// holds.
type caCheck struct {
	ca   *narinfo.ContentAddress
	h    hash.Hash
	flat *flatFile
}

func newCACheck(ca *narinfo.ContentAddress) (*caCheck, error) {
	if ca == nil || (ca.Method == narinfo.CARecursive && ca.Hash.Algo == "sha256") {
		return nil, nil
	}
	h, err := newHash(ca.Hash.Algo)
	if err != nil {
		return nil, err
	}
	c := &caCheck{ca: ca, h: h}
	if ca.Method != narinfo.CARecursive {
		c.flat = &flatFile{contents: h}
	}
	return c, nil
}

func (c *caCheck) Write(p []byte) (int, error) {
	if c.flat != nil {
		return c.flat.Write(p)
	}
	return c.h.Write(p)
}

func (c *caCheck) verify() error {
	if c.flat != nil {
		if err := c.flat.finish(); err != nil {
			return err
		}
	}
	got := narinfo.Hash{Algo: c.ca.Hash.Algo, Digest: c.h.Sum(nil)}
	if got.String() != c.ca.Hash.String() {
		return fmt.Errorf("content hash %s, CA says %s", got, c.ca.Hash)
	}
	return nil
}
