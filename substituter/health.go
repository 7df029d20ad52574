package substituter

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/vouch-dev/vouch/narinfo"
)

// Upstream health and the narinfo lookup cache.
//
// A miss must not cost the client the slowest upstream's timeout every
// time, and a burst of identical requests must not become a burst at every
// upstream. Three mechanisms, all per upstream:
//
//   - A circuit breaker. An upstream that times out, cannot be reached,
//     stalls or answers 5xx is skipped at once by every request for a
//     backoff that starts at Limits.BreakerBackoff and doubles with each
//     further failure up to Limits.BreakerMaxBackoff. When the backoff
//     ends, one probe (GET /nix-cache-info, bounded by the narinfo timeout)
//     runs in the background while requests keep skipping the upstream;
//     the circuit closes only when the probe succeeds. No client request
//     ever waits on a probe, so a dead upstream costs a narinfo request
//     nothing once it has failed once. (A NAR request, whose narinfo was
//     already served, still tries skipped upstreams, after all others.)
//   - A narinfo cache. An upstream's answer for a hash part is kept:
//     a narinfo for Limits.FoundTTL, a 404 for Limits.MissTTL. Errors are
//     not cached; the breaker remembers those.
//   - Coalescing. Concurrent lookups of the same hash part at the same
//     upstream share one request, which runs detached from any one client
//     (a client hanging up does not cancel it for the others, nor count
//     as a failure of the upstream).

// breaker is one upstream's circuit breaker.
type breaker struct {
	mu        sync.Mutex
	failures  int       // consecutive health failures
	openUntil time.Time // zero while closed
	probing   bool
	reason    string // of the failure that opened it, for refusals
}

// unhealthy reports whether a failure reason says the upstream itself is
// unwell (rather than lacking a path or lying about it).
func unhealthy(reason string) bool {
	switch reason {
	case "timeout", "network", "status", "stall":
		return true
	}
	return false
}

// available reports whether requests may use the upstream now. When the
// backoff is over it starts a background probe, once.
func (s *Server) available(u *upstream) bool {
	b := &u.health
	b.mu.Lock()
	if b.openUntil.IsZero() {
		b.mu.Unlock()
		return true
	}
	if !b.probing && time.Now().After(b.openUntil) {
		b.probing = true
		go s.probe(u)
	}
	b.mu.Unlock()
	return false
}

// healthFailed records a failure with reason; unhealthy ones open (or keep
// open, with a longer backoff) the circuit.
func (s *Server) healthFailed(u *upstream, reason string) {
	if !unhealthy(reason) {
		return
	}
	b := &u.health
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures++
	backoff := s.limits.BreakerBackoff
	for i := 1; i < b.failures && backoff < s.limits.BreakerMaxBackoff; i++ {
		backoff *= 2
	}
	backoff = min(backoff, s.limits.BreakerMaxBackoff)
	wasClosed := b.openUntil.IsZero()
	b.openUntil = time.Now().Add(backoff)
	b.reason = reason
	if wasClosed {
		s.metrics.upstreamUp.WithLabelValues(u.name).Set(0)
		s.log.Warn("upstream skipped until it answers again", "upstream", u.name, "reason", reason, "backoff", backoff)
	}
}

// healthOK closes the circuit.
func (s *Server) healthOK(u *upstream) {
	b := &u.health
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.openUntil.IsZero() {
		s.metrics.upstreamUp.WithLabelValues(u.name).Set(1)
		s.log.Info("upstream answers again", "upstream", u.name)
	}
	b.failures, b.openUntil, b.reason = 0, time.Time{}, ""
}

// openReason says why an open circuit skips the upstream.
func (u *upstream) openReason() string {
	u.health.mu.Lock()
	defer u.health.mu.Unlock()
	return u.health.reason
}

// probe asks an upstream whose backoff ended for its nix-cache-info.
func (s *Server) probe(u *upstream) {
	ctx, cancel := context.WithTimeout(context.Background(), u.narinfoTimeout)
	defer cancel()
	err := u.ping(ctx)
	u.health.mu.Lock()
	u.health.probing = false
	u.health.mu.Unlock()
	if err != nil {
		reason := reasonOf(ctx, err)
		if !unhealthy(reason) {
			reason = "status"
		}
		s.log.Debug("upstream probe failed", "upstream", u.name, "reason", reason, "err", err)
		s.healthFailed(u, reason)
		return
	}
	s.healthOK(u)
}

func (u *upstream) ping(ctx context.Context) error {
	resp, err := u.get(ctx, "nix-cache-info")
	if err != nil {
		return err
	}
	resp.Body.Close()
	return nil
}

// lookupKey names one upstream's answer about one hash part.
type lookupKey struct {
	up       *upstream
	hashPart string
}

// lookup is one upstream's answer about a hash part, shared by every
// request that asks while it is in flight or fresh.
type lookup struct {
	done    chan struct{} // closed when info and err are set
	info    *narinfo.NarInfo
	err     error
	expires time.Time
	// judged is set by the first request that compared info with what
	// the path must be, so a lying narinfo is logged and counted once
	// per fetch, not once per request that reads it from the cache.
	judged sync.Once
}

// lookups holds the in-flight and cached narinfo answers of all upstreams.
type lookups struct {
	mu      sync.Mutex
	entries map[lookupKey]*lookup
	// sweepAt is when expired entries are next removed.
	sweepAt time.Time
}

// maxLookups bounds the narinfo cache; past it, answers are shared only
// while in flight until the next sweep.
const maxLookups = 1 << 18

// narinfoOf returns the upstream's answer about hashPart: a cached one, the
// one in flight, or a new request. The error is ctx's, when it ended
// first; the lookup goes on and can still be waited for.
func (s *Server) narinfoOf(ctx context.Context, up *upstream, hashPart string) (*lookup, error) {
	key := lookupKey{up, hashPart}
	now := time.Now()
	s.lookups.mu.Lock()
	l, ok := s.lookups.entries[key]
	if ok && l.expires.IsZero() || ok && now.Before(l.expires) {
		s.lookups.mu.Unlock()
		s.metrics.lookups.WithLabelValues("shared").Inc()
	} else {
		if now.After(s.lookups.sweepAt) {
			for k, e := range s.lookups.entries {
				if !e.expires.IsZero() && now.After(e.expires) {
					delete(s.lookups.entries, k)
				}
			}
			s.lookups.sweepAt = now.Add(s.limits.MissTTL)
		}
		l = &lookup{done: make(chan struct{})}
		s.lookups.entries[key] = l
		s.lookups.mu.Unlock()
		s.metrics.lookups.WithLabelValues("fetched").Inc()
		go s.fetchNarinfo(context.WithoutCancel(ctx), key, l)
	}
	select {
	case <-l.done:
		return l, nil
	case <-ctx.Done():
		return l, ctx.Err()
	}
}

// fetchNarinfo fills l from the upstream and decides how long it is kept.
func (s *Server) fetchNarinfo(ctx context.Context, key lookupKey, l *lookup) {
	start := time.Now()
	l.info, l.err = key.up.narinfo(ctx, key.hashPart)
	s.metrics.upstreamSeconds.WithLabelValues(key.up.name, "narinfo").Observe(time.Since(start).Seconds())
	ttl := time.Duration(0)
	switch reason := reasonOf(ctx, l.err); {
	case l.err == nil:
		ttl = s.limits.FoundTTL
		s.healthOK(key.up)
	case reason == "missing":
		ttl = s.limits.MissTTL
		s.healthOK(key.up)
		s.upstreamFailed(key.up, reason, key.hashPart, l.err)
	default:
		s.upstreamFailed(key.up, reason, key.hashPart, l.err)
		s.healthFailed(key.up, reason)
	}
	s.lookups.mu.Lock()
	if ttl > 0 && len(s.lookups.entries) < maxLookups {
		l.expires = time.Now().Add(ttl)
	} else {
		delete(s.lookups.entries, key)
	}
	s.lookups.mu.Unlock()
	close(l.done)
}

// forget drops a cached answer that turned out wrong (the upstream's NAR
// is gone although its narinfo was there).
func (s *Server) forget(up *upstream, hashPart string) {
	s.lookups.mu.Lock()
	defer s.lookups.mu.Unlock()
	key := lookupKey{up, hashPart}
	if l, ok := s.lookups.entries[key]; ok && !l.expires.IsZero() {
		delete(s.lookups.entries, key)
	}
}

// narinfoResult is one upstream's answer in a race.
type narinfoResult struct {
	up     *upstream
	info   *narinfo.NarInfo
	err    error
	lookup *lookup // nil when the upstream was skipped
}

// judgeLate compares the answers of a race that was decided without them
// with what the path must be, waiting for lookups still in flight (each is
// bounded by its narinfo timeout). An upstream that lies is logged and
// counted even when another one was faster.
func (s *Server) judgeLate(answers <-chan narinfoResult, exp *expectation, hashPart string) {
	for res := range answers {
		if res.lookup != nil {
			<-res.lookup.done
			res.info, res.err = res.lookup.info, res.lookup.err
		}
		s.usable(res, exp, hashPart)
	}
}

// errSkipped is the answer of an upstream whose circuit is open.
var errSkipped = errors.New("skipped: the upstream failed recently and has not answered a probe since")

// skippedError says why an upstream was skipped.
func skippedError(u *upstream) error {
	return &upstreamError{reason: "unavailable", err: fmt.Errorf("%w (%s)", errSkipped, u.openReason())}
}

// raceNarinfos asks every available upstream for hashPart's narinfo at
// once and yields the answers as they arrive, cached ones first. The
// channel closes when all answered or ctx ended; abandoning it early is
// fine once ctx is cancelled.
func (s *Server) raceNarinfos(ctx context.Context, hashPart string) <-chan narinfoResult {
	out := make(chan narinfoResult, len(s.upstreams))
	var wg sync.WaitGroup
	for _, up := range s.upstreams {
		if !s.available(up) {
			out <- narinfoResult{up: up, err: skippedError(up)}
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, err := s.narinfoOf(ctx, up, hashPart)
			if err != nil {
				out <- narinfoResult{up: up, err: err, lookup: l}
				return
			}
			out <- narinfoResult{up: up, info: l.info, err: l.err, lookup: l}
		}()
	}
	go func() { wg.Wait(); close(out) }()
	return out
}
