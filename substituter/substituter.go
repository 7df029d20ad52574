// Package substituter is a Nix HTTP binary cache that serves only what a
// quorum of chosen builders agreed on. Users put its URL and its public key
// in nix.conf; from then on stock Nix receives only agreed outputs, while the
// bytes themselves may come from any upstream cache or peer.
//
// # Protocol
//
//	GET /nix-cache-info          StoreDir, WantMassQuery, Priority
//	GET|HEAD /<hash>.narinfo     only for a trusted or self-certifying path
//	GET /nar/<hash>-<narhash>.nar  the verified, uncompressed NAR
//	GET|HEAD /realisations/<id>.doi  only for an agreed nix-ca claim (realisation.go)
//
// A narinfo is built by this node, never copied: StorePath, NarHash, NarSize
// and References come from the agreed claim (verdict.Verdict.Value), the NAR
// is uncompressed at URL nar/<hash part>-<nix32 NAR hash>.nar, and the
// narinfo is signed with the node's Nix key. Every other answer is a 404
// whose body and X-Vouch-Refusal header say why (insufficient, conflict,
// unknown path), so Nix builds the path itself or reports it missing.
//
// # Advertise only what can be delivered
//
// A narinfo promises a NAR, and stock Nix (fallback off) fails a build
// whose NAR does not come. So an agreed path's narinfo is served only when
// a source has the NAR: the node's own store, its NAR cache, or an upstream
// whose narinfo matches the agreement. Otherwise the answer is a 404 with
// X-Vouch-Refusal: no-source, and Nix builds the path itself. Upstream
// narinfo answers are cached, coalesced and skipped for upstreams whose
// circuit breaker is open (health.go), so the check costs a miss a few
// milliseconds, not an upstream's timeout.
//
// # NARs: verify first, or hash while streaming
//
// For /nar/ the node resolves the path again (the verdict may have changed)
// and then tries, in order: its own store, if it has the path, then the
// configured upstreams, raced: all are asked for their narinfo at once (or
// answer from the cache), and those that answer first are tried first. An
// upstream's narinfo is parsed strictly and its NarHash, NarSize and
// References must equal the agreed ones, or the upstream is skipped and
// counted, even when it answers after another upstream already served the
// NAR. The NAR is decompressed (xz, zstd, bzip2 or none), hashed and
// counted as it is read.
//
// A NAR up to Limits.VerifyFirstMax is received whole and verified before
// its first byte is sent (spool.go): a bad source is replaced by the next
// one and the client never notices. A larger NAR is relayed as it arrives,
// with Content-Length set to the agreed NarSize; the last chunk read is
// always held back until the byte count equals NarSize and the SHA-256
// equals NarHash. On a mismatch, an overrun, a stall or a timeout the
// connection is cut, so Nix sees a short body and rejects it: a bad NAR
// never reaches Nix complete. When no source delivers, the 502 names each
// upstream's failure.
//
// Every upstream is bounded: a narinfo timeout and size limit
// (narinfo.MaxSize), a whole-request timeout (config.Upstream.Timeout), a
// stall timeout that only progress of Limits.ProgressBytes resets (so a
// 1-byte-per-second drip is cut after StallTimeout), a cap on compressed
// bytes, and a bound on concurrent requests. A client that hangs up is
// counted as such, never against the upstream it was being served from.
//
// # NAR cache
//
// With Options.NARCache, a NAR that verified while it was relayed is kept
// on disk under its NAR hash and later requests for any path agreeing on
// that hash are sent from the file; narcache.go says what is checked when.
//
// # Self-certifying paths
//
// A path whose upstream narinfo has a CA field (builtins.path sources,
// fixed-output fetches, builtins.toFile, floating CA derivation outputs) is
// named by its content: its store path is a hash of the CA, its name and its
// references (narinfo.ContentAddress.StorePath). When no quorum vouches for
// such a path, the node recomputes the store path from the upstream's CA and
// References and, if it matches, serves it with the upstream's NarHash and
// NarSize; the streamed NAR must then match NarHash and, for flat and text
// addresses, the CA hash of the file it contains. This is what Nix itself
// would check, done before Nix sees a byte; without it closures that contain
// sources could never substitute.
//
// # Peers
//
// StoreServer serves this node's own /nix/store as an ordinary unsigned
// binary cache for other vouch nodes, which list it as an upstream and
// verify it like any other.
package substituter

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"
	"github.com/nix-community/go-nix/pkg/nixbase32"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/keys"
	"github.com/vouch-dev/vouch/narinfo"
	"github.com/vouch-dev/vouch/nixstore"
	"github.com/vouch-dev/vouch/verdict"
)

// Decider answers whether a store path's output is agreed. The follower's
// index and policy implement it; both methods read local state only and
// must be safe for concurrent use.
type Decider interface {
	// PathByHash returns the store path whose 32-character hash part is
	// hashPart, if any followed log has a claim about it.
	PathByHash(hashPart string) (storePath string, ok bool)
	// Decide returns the verdict for (kind, subject) under the node's
	// policy. Only Outcome Trusted with a non-nil Value lets a path through.
	Decide(kind claim.Kind, subject string) (verdict.Verdict, error)
}

// VersionedDecider is a Decider whose answers change only when Version
// does; the node's follower index with its fixed policy is one
// (node.QuorumDecider). The substituter then reuses a path's verdict for
// as long as the version stays put instead of looking it up again on every
// request, which is what keeps a narinfo near the cost of a static file.
type VersionedDecider interface {
	Decider
	Version() uint64
}

// Limits bound what one request may cost. Zero fields take the defaults.
type Limits struct {
	// NarinfoTimeout bounds fetching one upstream narinfo, for upstreams
	// that do not set their own. Default config.DefaultNarinfoTimeout (5s).
	NarinfoTimeout time.Duration
	// StallTimeout cuts an upstream NAR that delivers less than
	// ProgressBytes within this time, for upstreams that do not set their
	// own. Default config.DefaultStallTimeout (30s).
	StallTimeout time.Duration
	// ProgressBytes is the progress that resets the stall timer. Default 64 KiB.
	ProgressBytes int64
	// RequestTimeout bounds a whole /nar/ request over all upstreams.
	// Default 15m.
	RequestTimeout time.Duration
	// PerUpstream bounds concurrent requests to one upstream. Default 32.
	PerUpstream int

	// FoundTTL is how long an upstream's narinfo is reused. Default 10m.
	FoundTTL time.Duration
	// MissTTL is how long an upstream's 404 for a narinfo is reused: a
	// path pushed to an upstream is served at most this long after.
	// Default 30s.
	MissTTL time.Duration
	// BreakerBackoff is how long an upstream that just timed out, could
	// not be reached, stalled or answered 5xx is skipped; it doubles with
	// each failure in a row up to BreakerMaxBackoff. Defaults 1s and 1m.
	BreakerBackoff, BreakerMaxBackoff time.Duration

	// VerifyFirstMax is the largest NAR that is received and verified
	// whole before its first byte is sent (relay.go): up to it, a bad
	// source is replaced by the next one without the client noticing.
	// Larger NARs stream with the last chunk held back. Default 1 GiB;
	// negative turns verifying first off.
	VerifyFirstMax int64
	// MemorySpoolMax is the largest NAR verified first in memory; larger
	// ones go to a temporary file in SpoolDir. Default 1 MiB.
	MemorySpoolMax int64
	// SpoolDir holds NARs being verified before they are sent. Default
	// os.TempDir().
	SpoolDir string
}

func (l *Limits) defaults() {
	if l.NarinfoTimeout == 0 {
		l.NarinfoTimeout = config.DefaultNarinfoTimeout
	}
	if l.StallTimeout == 0 {
		l.StallTimeout = config.DefaultStallTimeout
	}
	if l.ProgressBytes == 0 {
		l.ProgressBytes = 64 << 10
	}
	if l.RequestTimeout == 0 {
		l.RequestTimeout = 15 * time.Minute
	}
	if l.PerUpstream == 0 {
		l.PerUpstream = 32
	}
	if l.FoundTTL == 0 {
		l.FoundTTL = 10 * time.Minute
	}
	if l.MissTTL == 0 {
		l.MissTTL = 30 * time.Second
	}
	if l.BreakerBackoff == 0 {
		l.BreakerBackoff = time.Second
	}
	if l.BreakerMaxBackoff == 0 {
		l.BreakerMaxBackoff = time.Minute
	}
	if l.VerifyFirstMax == 0 {
		l.VerifyFirstMax = 1 << 30
	}
	if l.MemorySpoolMax == 0 {
		l.MemorySpoolMax = 1 << 20
	}
	if l.SpoolDir == "" {
		l.SpoolDir = os.TempDir()
	}
}

// Options configure a Server.
type Options struct {
	Decider Decider      // required
	Key     *keys.NixKey // required: signs every narinfo served
	// Priority is the nix-cache-info Priority (lower is preferred by Nix).
	// Default 40, as cache.nixos.org.
	Priority int
	// Upstreams are binary caches and peers NAR bytes may come from.
	// Zero timeouts take config's defaults (Limits for the narinfo and
	// stall timeouts).
	Upstreams []config.Upstream
	// Store, if set, is the root of a Nix store on this machine ("/" for
	// /nix/store, or a chroot store) tried before the upstreams.
	Store string
	// NARCache, if Dir is set, keeps verified NARs on disk (narcache.go)
	// and serves repeated requests from there.
	NARCache NARCacheOptions
	Limits   Limits
	// Client makes upstream requests; default a client with no overall
	// timeout (every request carries its own deadline).
	Client *http.Client
	Logger *slog.Logger
	// Registerer receives the metrics; default a private registry
	// (see Server.Metrics).
	Registerer prometheus.Registerer
}

// NARCacheOptions configure the bounded on-disk cache of verified NARs.
type NARCacheOptions struct {
	Dir      string // created 0700 if missing; empty disables the cache
	MaxBytes int64  // required with Dir: the cache never holds more
}

// Server is the substituter's http.Handler.
type Server struct {
	decider   Decider
	key       *keys.NixKey
	cacheInfo []byte
	upstreams []*upstream
	store     *nixstore.Store
	narCache  *narCache // nil when disabled
	limits    Limits
	log       *slog.Logger
	metrics   *metrics
	gatherer  prometheus.Gatherer
	// sigs caches signatures by fingerprint: Ed25519 signing costs more
	// than the rest of a narinfo request, and a fingerprint always signs
	// to the same value.
	sigs *lru.Cache[string, string]
	// selfCertified caches expectations of self-certifying paths by hash
	// part: a content-addressed path's content never changes.
	selfCertified *lru.Cache[string, *expectation]
	// realised maps the hash part of each out path a served realisation
	// named to its derivation output id, so that the out path's narinfo
	// can rest on the agreed nix-ca claim (realisedPath).
	realised *lru.Cache[string, string]
	// verdicts caches the quorum's answer by hash part, valid while a
	// VersionedDecider's version is unchanged (quorum in resolve.go).
	verdicts *lru.Cache[string, quorumAnswer]
	// lookups caches and coalesces upstream narinfo requests (health.go).
	lookups lookups
}

// New checks opts and returns a Server.
func New(opts Options) (*Server, error) {
	if opts.Decider == nil {
		return nil, errors.New("substituter: Options.Decider is required (the follower index with the node's policy)")
	}
	if opts.Key == nil {
		return nil, errors.New("substituter: Options.Key is required: set nix-key in the config (vouch keygen writes NAME.nix.sec)")
	}
	if opts.Priority == 0 {
		opts.Priority = 40
	}
	opts.Limits.defaults()
	if opts.Client == nil {
		opts.Client = &http.Client{Transport: &http.Transport{
			Proxy:               http.ProxyFromEnvironment,
			MaxIdleConnsPerHost: opts.Limits.PerUpstream,
			IdleConnTimeout:     90 * time.Second,
			// Upstreams serve compressed NARs; Go must not add its own
			// transparent gzip layer.
			DisableCompression: true,
		}}
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	s := &Server{
		decider: opts.Decider,
		key:     opts.Key,
		limits:  opts.Limits,
		log:     opts.Logger.With("component", "substituter"),
		cacheInfo: []byte(fmt.Sprintf("StoreDir: %s\nWantMassQuery: 1\nPriority: %d\n",
			claim.StoreDir, opts.Priority)),
	}
	if opts.Store != "" {
		s.store = &nixstore.Store{Root: opts.Store}
		if _, err := s.store.DiskPath(claim.StoreDir + "/00000000000000000000000000000000-x"); err != nil {
			return nil, fmt.Errorf("substituter: store: %w", err)
		}
	}
	reg := opts.Registerer
	if reg == nil {
		r := prometheus.NewRegistry()
		reg, s.gatherer = r, r
	} else if g, ok := reg.(prometheus.Gatherer); ok {
		s.gatherer = g
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, fmt.Errorf("substituter: metrics: %w", err)
	}
	s.metrics = m
	if opts.NARCache.Dir != "" {
		c, err := openNARCache(opts.NARCache.Dir, opts.NARCache.MaxBytes)
		if err != nil {
			return nil, fmt.Errorf("substituter: %w", err)
		}
		s.narCache = c
		err = reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "vouch_substituter_nar_cache_bytes",
			Help: "Bytes of verified NARs held in the on-disk NAR cache.",
		}, func() float64 { return float64(c.Size()) }))
		if err != nil {
			return nil, fmt.Errorf("substituter: metrics: %w", err)
		}
	}
	for _, u := range opts.Upstreams {
		up, err := newUpstream(u, opts.Client, opts.Limits)
		if err != nil {
			return nil, err
		}
		s.upstreams = append(s.upstreams, up)
		s.metrics.upstreamUp.WithLabelValues(up.name).Set(1)
	}
	s.lookups.entries = map[lookupKey]*lookup{}
	s.sigs, _ = lru.New[string, string](1 << 16)
	s.selfCertified, _ = lru.New[string, *expectation](1 << 14)
	s.realised, _ = lru.New[string, string](1 << 14)
	s.verdicts, _ = lru.New[string, quorumAnswer](1 << 16)
	return s, nil
}

// Content types Nix's binary caches use.
const (
	contentTypeCacheInfo = "text/x-nix-cache-info"
	contentTypeNarinfo   = "text/x-nix-narinfo"
	contentTypeNAR       = "application/x-nix-nar"
)

// ServeHTTP routes the binary cache API.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
	endpoint := "other"
	defer func() {
		s.metrics.requests.WithLabelValues(endpoint, strconv.Itoa(rec.status)).Inc()
	}()
	p := r.URL.Path
	switch {
	case p == "/nix-cache-info":
		endpoint = "nix-cache-info"
		if !allowMethods(rec, r, http.MethodGet, http.MethodHead) {
			return
		}
		rec.Header().Set("Content-Type", contentTypeCacheInfo)
		rec.Header().Set("Content-Length", strconv.Itoa(len(s.cacheInfo)))
		if r.Method == http.MethodGet {
			rec.Write(s.cacheInfo)
		}
	case strings.HasSuffix(p, ".narinfo") && strings.Count(p, "/") == 1:
		endpoint = "narinfo"
		if !allowMethods(rec, r, http.MethodGet, http.MethodHead) {
			return
		}
		s.serveNarinfo(rec, r, strings.TrimSuffix(p[1:], ".narinfo"))
	case strings.HasPrefix(p, "/realisations/") && strings.HasSuffix(p, ".doi"):
		endpoint = "realisation"
		if !allowMethods(rec, r, http.MethodGet, http.MethodHead) {
			return
		}
		s.serveRealisation(rec, r, strings.TrimSuffix(p[len("/realisations/"):], ".doi"))
	case strings.HasPrefix(p, "/nar/"):
		endpoint = "nar"
		if !allowMethods(rec, r, http.MethodGet) {
			return
		}
		s.serveNAR(rec, r, p[len("/nar/"):])
	default:
		s.refuse(rec, r, http.StatusNotFound, "not-found", "no such binary cache resource")
	}
}

func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	for _, m := range methods {
		if r.Method == m {
			return true
		}
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
	return false
}

// refuse answers with status and a one-line reason, in the body and in
// X-Vouch-Refusal, and logs it: every refusal is visible to the user who
// wonders why Nix built a path itself. A 404 is routine (Nix asks every
// cache for every path) and logged at debug level; the counts are in
// /metrics. Failures to deliver an agreed NAR are warnings.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, status int, code, reason string) {
	level := s.log.Debug
	if status >= 500 {
		level = s.log.Warn
	}
	level("refused", "path", r.URL.Path, "status", status, "code", code, "reason", reason)
	h := w.Header()
	h.Del("Content-Length")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Vouch-Refusal", code)
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		fmt.Fprintf(w, "%s: %s\n", code, reason)
	}
}

func (s *Server) serveNarinfo(w http.ResponseWriter, r *http.Request, hashPart string) {
	if !validHashPart(hashPart) {
		s.refuse(w, r, http.StatusNotFound, "bad-hash", "not a 32-character Nix store path hash")
		return
	}
	exp, code, reason := s.resolve(r.Context(), hashPart)
	if exp == nil {
		s.refuse(w, r, http.StatusNotFound, code, reason)
		return
	}
	// A narinfo promises a NAR. Nix, whose fallback is off by default,
	// fails the build when the NAR then does not come; a 404 makes it
	// build the path itself.
	if ok, why := s.findSource(r.Context(), hashPart, exp); !ok {
		if r.Context().Err() != nil {
			return // the client left; nothing was decided
		}
		s.metrics.noSource.Inc()
		s.refuse(w, r, http.StatusNotFound, "no-source", "agreed, but no source has this NAR yet, so Nix should build it: "+why)
		return
	}
	b := s.narinfoFor(exp)
	h := w.Header()
	h.Set("Content-Type", contentTypeNarinfo)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	if r.Method == http.MethodGet {
		w.Write(b)
	}
}

// narinfoFor renders and signs the narinfo of an expectation. Only agreed
// (or self-certified) fields appear; nothing else an upstream said does.
func (s *Server) narinfoFor(exp *expectation) []byte {
	if b := exp.narinfo.Load(); b != nil {
		return *b
	}
	fp := narinfo.Fingerprint(exp.StorePath, exp.NarHash, exp.NarSize, exp.References)
	sig, ok := s.sigs.Get(fp)
	if !ok {
		sig = s.key.Sign(fp)
		s.sigs.Add(fp, sig)
	}
	ni := narinfo.NarInfo{
		StorePath:   exp.StorePath,
		URL:         narURL(exp),
		Compression: "none",
		NarHash:     exp.NarHash,
		NarSize:     exp.NarSize,
		References:  exp.References,
		Sigs:        []string{sig},
	}
	if exp.CA != nil {
		ni.CA = exp.CA.String()
	}
	b := ni.Marshal()
	exp.narinfo.Store(&b)
	return b
}

// narURL names the NAR so that the request alone finds the path again and
// tells a stale URL (an older agreement) from the current one:
// nar/<hash part>-<nix32 NAR hash>.nar.
func narURL(exp *expectation) string {
	return "nar/" + claim.HashPart(exp.StorePath) + "-" + strings.TrimPrefix(exp.NarHash, "sha256:") + ".nar"
}

func validHashPart(h string) bool {
	if len(h) != 32 {
		return false
	}
	for i := 0; i < len(h); i++ {
		if !nixbase32.Is(h[i]) {
			return false
		}
	}
	return true
}

// Metrics returns a handler exposing the server's metrics in Prometheus
// text format, when they were registered in a registry that can gather
// (the default private one can).
func (s *Server) Metrics() http.Handler {
	if s.gatherer == nil {
		return http.NotFoundHandler()
	}
	return promHandler(s.gatherer)
}

type statusRecorder struct {
	http.ResponseWriter
	status  int
	written bool
}

func (r *statusRecorder) WriteHeader(code int) {
	if !r.written {
		r.status, r.written = code, true
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Write(b []byte) (int, error) {
	r.written = true
	return r.ResponseWriter.Write(b)
}

// ReadFrom lets io.Copy from a file reach the connection's sendfile.
func (r *statusRecorder) ReadFrom(src io.Reader) (int64, error) {
	r.written = true
	return io.Copy(r.ResponseWriter, src)
}

// Unwrap lets http.ResponseController reach the connection.
func (r *statusRecorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

// requestContext bounds a whole /nar/ request.
func (s *Server) requestContext(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), s.limits.RequestTimeout)
}
