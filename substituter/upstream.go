package substituter

import (
	"compress/bzip2"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/ulikunitz/xz"

	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/narinfo"
)

// upstream is one binary cache or peer NAR bytes may come from. Nothing it
// says is believed: its narinfo must match the expectation, and its NAR is
// verified as it streams.
type upstream struct {
	name           string // the configured URL, for logs and metric labels
	base           *url.URL
	timeout        time.Duration // whole NAR request
	narinfoTimeout time.Duration // one narinfo request
	stallTimeout   time.Duration // NAR progress of Limits.ProgressBytes
	client         *http.Client
	limits         Limits
	slots          chan struct{} // bounds concurrent requests
	health         breaker
	// penaltyUntil (Unix nanoseconds) puts an upstream whose NAR failed
	// verification at the back of the queue for a while.
	penaltyUntil atomic.Int64
}

// penaltyTime is how long an upstream whose NAR failed is tried last.
const penaltyTime = time.Minute

func (u *upstream) penalise() { u.penaltyUntil.Store(time.Now().Add(penaltyTime).UnixNano()) }

func (u *upstream) isPenalised() bool { return time.Now().UnixNano() < u.penaltyUntil.Load() }

func newUpstream(c config.Upstream, client *http.Client, limits Limits) (*upstream, error) {
	u, err := url.Parse(strings.TrimSuffix(c.URL, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("substituter: upstream %q is not an http(s) URL", c.URL)
	}
	up := &upstream{
		name:           c.URL,
		base:           u,
		timeout:        c.Timeout.Duration,
		narinfoTimeout: c.NarinfoTimeout.Duration,
		stallTimeout:   c.StallTimeout.Duration,
		client:         client,
		limits:         limits,
		slots:          make(chan struct{}, limits.PerUpstream),
	}
	if up.timeout == 0 {
		up.timeout = config.DefaultUpstreamTimeout
	}
	if up.narinfoTimeout == 0 {
		up.narinfoTimeout = limits.NarinfoTimeout
	}
	if up.stallTimeout == 0 {
		up.stallTimeout = limits.StallTimeout
	}
	return up, nil
}

// acquire takes one of the upstream's request slots, waiting no longer
// than ctx allows.
func (u *upstream) acquire(ctx context.Context) error {
	select {
	case u.slots <- struct{}{}:
		return nil
	case <-ctx.Done():
		return &upstreamError{reason: "busy", err: fmt.Errorf("all %d request slots in use: %w", cap(u.slots), ctx.Err())}
	}
}

func (u *upstream) release() { <-u.slots }

// upstreamError is an upstream failure with a short reason for metrics.
type upstreamError struct {
	reason string
	err    error
}

func (e *upstreamError) Error() string { return e.reason + ": " + e.err.Error() }
func (e *upstreamError) Unwrap() error { return e.err }

func failure(reason string, format string, args ...any) error {
	return &upstreamError{reason: reason, err: fmt.Errorf(format, args...)}
}

// reasonOf returns the metric reason of an upstream error.
func reasonOf(ctx context.Context, err error) string {
	var ue *upstreamError
	if errors.As(err, &ue) {
		return ue.reason
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		return "timeout"
	}
	return "network"
}

// get requests path relative to the upstream's base URL.
func (u *upstream) get(ctx context.Context, path string) (*http.Response, error) {
	ref, err := url.Parse(path)
	if err != nil {
		return nil, failure("malformed", "path %q: %v", path, err)
	}
	target := *u.base
	target.Path = strings.TrimSuffix(u.base.Path, "/") + "/" + ref.Path
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
	if err != nil {
		return nil, err
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		resp.Body.Close()
		reason := "status"
		if resp.StatusCode == http.StatusNotFound {
			reason = "missing"
		}
		return nil, failure(reason, "GET %s: %s", target.Redacted(), resp.Status)
	}
	return resp, nil
}

// narinfo fetches and strictly parses the upstream's narinfo for hashPart,
// within the narinfo timeout and size limit.
func (u *upstream) narinfo(ctx context.Context, hashPart string) (*narinfo.NarInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, u.narinfoTimeout)
	defer cancel()
	if err := u.acquire(ctx); err != nil {
		return nil, err
	}
	defer u.release()
	resp, err := u.get(ctx, hashPart+".narinfo")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.ContentLength > narinfo.MaxSize {
		return nil, failure("oversize", "narinfo of %d bytes exceeds %d", resp.ContentLength, narinfo.MaxSize)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, narinfo.MaxSize+1))
	if err != nil {
		return nil, err
	}
	if len(b) > narinfo.MaxSize {
		return nil, failure("oversize", "narinfo exceeds %d bytes", narinfo.MaxSize)
	}
	ni, err := narinfo.Parse(b)
	if err != nil {
		return nil, &upstreamError{reason: "malformed", err: err}
	}
	if !relativeURL(ni.URL) {
		return nil, failure("malformed", "NAR URL %q is not a relative path inside the cache", ni.URL)
	}
	return ni, nil
}

// relativeURL accepts only what Nix itself resolves against the cache: a
// relative path, with no scheme, host, query or "..".
func relativeURL(s string) bool {
	if s == "" || strings.HasPrefix(s, "/") || strings.ContainsAny(s, "?#\\:") {
		return false
	}
	for _, seg := range strings.Split(s, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// upstreamFailed counts and logs one upstream failure. A missing path is
// counted but logged at debug level: most upstreams lack most paths.
func (s *Server) upstreamFailed(up *upstream, reason, hashPart string, err error) {
	s.metrics.upstreamFailures.WithLabelValues(up.name, reason).Inc()
	level := s.log.Warn
	if reason == "missing" {
		level = s.log.Debug
	}
	level("upstream refused", "upstream", up.name, "hash", hashPart, "reason", reason, "err", err)
}

// openNAR opens the upstream's NAR for ni and returns the uncompressed
// stream. The stream is cut (Read fails) when the upstream's whole-request
// timeout passes, when it stalls, or when it sends more compressed bytes
// than a NAR of narSize can need. close must be called.
func (u *upstream) openNAR(ctx context.Context, ni *narinfo.NarInfo, narSize uint64) (nar io.Reader, close func(), err error) {
	if err := u.acquire(ctx); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, u.timeout)
	// The stall timer covers the wait for the response headers too.
	headersLate := time.AfterFunc(u.stallTimeout, cancel)
	resp, err := u.get(ctx, ni.URL)
	if !headersLate.Stop() && err != nil {
		err = failure("stall", "no response headers within %s", u.stallTimeout)
	}
	if err != nil {
		cancel()
		u.release()
		return nil, nil, err
	}
	// Compressed data is never much larger than what it encodes; anything
	// beyond this is padding or an attack.
	maxCompressed := int64(narSize + narSize/4 + 1<<20)
	raw := newWatchdog(ctx, resp.Body, cancel, u.stallTimeout, u.limits.ProgressBytes, maxCompressed)
	var dec io.Reader
	var decClose func()
	switch c := ni.EffectiveCompression(); c {
	case "none":
		dec = raw
	case "xz":
		xr, err := xz.NewReader(raw)
		if err != nil {
			err = failure("compression", "xz: %v", err)
			resp.Body.Close()
			raw.stop()
			cancel()
			u.release()
			return nil, nil, err
		}
		dec = xr
	case "zstd":
		zr, err := zstd.NewReader(raw, zstd.WithDecoderConcurrency(1), zstd.WithDecoderMaxWindow(128<<20), zstd.WithDecoderLowmem(true))
		if err != nil {
			resp.Body.Close()
			raw.stop()
			cancel()
			u.release()
			return nil, nil, failure("compression", "zstd: %v", err)
		}
		dec, decClose = zr, zr.Close
	case "bzip2":
		dec = bzip2.NewReader(raw)
	default:
		resp.Body.Close()
		raw.stop()
		cancel()
		u.release()
		return nil, nil, failure("compression", "unsupported compression %q (xz, zstd, bzip2, none are)", c)
	}
	return &errorMapper{r: dec, w: raw}, func() {
		if decClose != nil {
			decClose()
		}
		resp.Body.Close()
		raw.stop()
		cancel()
		u.release()
	}, nil
}

// watchdog wraps an upstream body: it cancels the request when less than
// progress bytes arrive within stall (a 1-byte-per-second drip never
// resets it), and fails once more than limit bytes were read.
type watchdog struct {
	ctx      context.Context
	r        io.Reader
	timer    *time.Timer
	stall    time.Duration
	progress int64
	limit    int64
	read     int64
	sinceArm int64
	mu       sync.Mutex
	stalled  bool
}

func newWatchdog(ctx context.Context, r io.Reader, cancel context.CancelFunc, stall time.Duration, progress, limit int64) *watchdog {
	w := &watchdog{ctx: ctx, r: r, stall: stall, progress: progress, limit: limit}
	w.timer = time.AfterFunc(stall, func() {
		w.mu.Lock()
		w.stalled = true
		w.mu.Unlock()
		cancel()
	})
	return w
}

func (w *watchdog) Read(p []byte) (int, error) {
	if w.read >= w.limit {
		return 0, failure("oversize", "upstream sent more than %d compressed bytes", w.limit)
	}
	if int64(len(p)) > w.limit-w.read {
		p = p[:w.limit-w.read+1]
	}
	n, err := w.r.Read(p)
	w.read += int64(n)
	w.sinceArm += int64(n)
	if w.sinceArm >= w.progress {
		w.sinceArm = 0
		w.timer.Reset(w.stall)
	}
	if w.read > w.limit {
		return n, failure("oversize", "upstream sent more than %d compressed bytes", w.limit)
	}
	if err != nil && err != io.EOF {
		err = w.explain(err)
	}
	return n, err
}

// explain turns a read error caused by the watchdog or the deadline into
// an upstreamError with the right reason.
func (w *watchdog) explain(err error) error {
	var ue *upstreamError
	switch {
	case errors.As(err, &ue):
		return err
	case w.wasStalled():
		return failure("stall", "less than %d bytes in %s", w.progress, w.stall)
	case w.read > w.limit:
		return failure("oversize", "upstream sent more than %d compressed bytes", w.limit)
	case errors.Is(w.ctx.Err(), context.DeadlineExceeded):
		return failure("timeout", "whole-request timeout passed: %v", err)
	}
	return err
}

func (w *watchdog) wasStalled() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.stalled
}

func (w *watchdog) stop() { w.timer.Stop() }

// errorMapper reports the watchdog's verdict when a decompressor turns the
// underlying failure into its own error.
type errorMapper struct {
	r io.Reader
	w *watchdog
}

func (m *errorMapper) Read(p []byte) (int, error) {
	n, err := m.r.Read(p)
	if err == io.ErrUnexpectedEOF {
		return n, failure("truncated", "compressed stream ends early")
	}
	if err != nil && err != io.EOF {
		err = m.w.explain(err)
		var ue *upstreamError
		if !errors.As(err, &ue) {
			err = &upstreamError{reason: "read", err: err}
		}
	}
	return n, err
}
