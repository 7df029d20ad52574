// Package node runs the roles a vouch config enables, in one process:
//
//	log          key set       the builder's log: submit socket, hook spool, /log/
//	follow       [[builder]]   verified replicas of the listed logs (package follow)
//	substituter  nix-key set   a Nix binary cache of agreed paths (package substituter)
//	dashboard    dashboard     the web dashboard at /
//
// Every role shares one HTTP listener. The node shuts down cleanly on
// context cancellation: the log stops accepting claims, waits for in-flight
// ones to become durable and publishes a final checkpoint.
package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/vouch-dev/vouch/buildlog"
	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/dashboard"
	"github.com/vouch-dev/vouch/follow"
	"github.com/vouch-dev/vouch/hook"
	"github.com/vouch-dev/vouch/index"
	"github.com/vouch-dev/vouch/internal/buildinfo"
	"github.com/vouch-dev/vouch/keys"
	"github.com/vouch-dev/vouch/nixstore"
	"github.com/vouch-dev/vouch/query"
	"github.com/vouch-dev/vouch/submit"
	"github.com/vouch-dev/vouch/substituter"
	"github.com/vouch-dev/vouch/verdict"
	"github.com/vouch-dev/vouch/witness"
)

// Node is a configured, not yet running, vouch node.
type Node struct {
	cfg    *config.Config
	logger *slog.Logger

	identity  *keys.Identity
	mux       *http.ServeMux
	index     *index.Index         // the follower index, when following
	policy    *verdict.Policy      // the quorum rule, when following
	dashboard *dashboard.Dashboard // the web dashboard, when enabled
	// substituter is the Nix binary cache, when a nix-key is configured.
	substituter *substituter.Server
	// metrics gathers every role's Prometheus metrics, served at /metrics.
	metrics *prometheus.Registry
	// info is what STATE/node.json records, so that local commands can
	// ask this node, and check it is this node, while it holds the index.
	info *query.NodeInfo

	// Ready, if set, is called once the node listens, with the HTTP address.
	Ready func(addr string)
}

// New prepares a node: it creates the state directory and loads keys, but
// opens nothing yet.
func New(cfg *config.Config, logger *slog.Logger) (*Node, error) {
	if err := os.MkdirAll(cfg.State, 0o700); err != nil {
		return nil, fmt.Errorf("state directory %s: %w", cfg.State, err)
	}
	if cfg.NixKey != "" {
		// A cache serves only paths a quorum of followed builders agreed
		// on: without builders the key would be silently ignored, and a
		// user would believe a cache runs. Load it now, so that a bad key
		// file is reported at start, not at the first request.
		if len(cfg.Builders) == 0 {
			return nil, fmt.Errorf("nix-key is set (%s) but no [[builder]] is listed: the cache serves only paths a quorum of followed builders agreed on; list the builders to follow in a config (docs/config.md), or drop nix-key", cfg.NixKey)
		}
		if _, err := keys.LoadNixKey(cfg.NixKey); err != nil {
			return nil, fmt.Errorf("nix-key: %w", err)
		}
	}
	info, err := query.NewNodeInfo(cfg)
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, logger: logger, mux: http.NewServeMux(), metrics: prometheus.NewRegistry(), info: info}
	n.mux.Handle("/metrics", promhttp.HandlerFor(n.metrics, promhttp.HandlerOpts{}))
	n.metrics.MustRegister(buildinfo.Read().Collector())
	if cfg.Key != "" {
		id, err := keys.LoadIdentity(cfg.Key)
		if err != nil {
			return nil, err
		}
		n.identity = id
	}
	return n, nil
}

// Identity is the builder identity, or nil when the log role is off.
func (n *Node) Identity() *keys.Identity { return n.identity }

// SpoolDir is where `vouch hook` queues post-build events for this node.
func SpoolDir(state string) string { return filepath.Join(state, "spool") }

// Run runs every enabled role until ctx ends or one fails.
func (n *Node) Run(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var wg sync.WaitGroup
	errc := make(chan error, 8)
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && !errors.Is(err, context.Canceled) {
				errc <- fmt.Errorf("%s: %w", name, err)
				cancel()
			}
		}()
	}

	var closers []func() error
	defer func() {
		for i := len(closers) - 1; i >= 0; i-- {
			if err := closers[i](); err != nil {
				n.logger.Error("shutdown", "err", err)
			}
		}
	}()

	if n.identity != nil {
		opts := buildlog.Options{Dir: filepath.Join(n.cfg.State, "log"), Identity: n.identity}
		if lc := n.cfg.Log; lc.Backend == config.LogBackendS3 {
			opts.Shared = &buildlog.Shared{
				Bucket: lc.Bucket, Prefix: lc.Prefix, Endpoint: lc.Endpoint, Region: lc.Region,
				AccessKey: lc.AccessKey, SecretKey: lc.SecretKey, DSN: lc.DSN,
				StaleReservation: lc.StaleReservation.Duration,
			}
		}
		for _, w := range n.cfg.Witnesses {
			opts.Witnesses = append(opts.Witnesses, buildlog.Witness{VKey: w.VKey, URL: w.URL})
		}
		l, err := buildlog.Open(ctx, opts)
		if err != nil {
			return err
		}
		closers = append(closers, l.Close)
		n.mux.Handle("/log/", http.StripPrefix("/log", l.Handler()))
		// A builder offers its own store's bytes to other nodes, unsigned:
		// they verify every byte against their own quorum anyway.
		peer, err := substituter.NewStoreServer(n.cfg.Store, n.logger.With("role", "peer"))
		if err != nil {
			return err
		}
		n.mux.Handle("/peer/", http.StripPrefix("/peer", peer))
		if err := n.startLogRole(ctx, l, run); err != nil {
			return err
		}
	}

	if len(n.cfg.Builders) > 0 {
		if err := n.startFollowRole(ctx, run, &closers); err != nil {
			return err
		}
	}

	if n.cfg.ServeWitness {
		if err := n.startWitnessRole(&closers); err != nil {
			return err
		}
	}

	if len(n.cfg.Builders) == 0 {
		// No follower: no cache and no dashboard own "/". Say what this
		// node is to whoever opens it, instead of a bare 404.
		n.mux.Handle("/{$}", n.about())
	}

	ln, err := net.Listen("tcp", n.cfg.Listen)
	if err != nil {
		return fmt.Errorf("listen on %s: %w (set --listen to a free address)", n.cfg.Listen, err)
	}
	n.info.Listen = ln.Addr().String() // the configured address may be ":0"
	srv := &http.Server{Handler: n.mux, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute}
	run("http", func(ctx context.Context) error {
		go func() {
			<-ctx.Done()
			sctx, c := context.WithTimeout(context.Background(), 10*time.Second)
			defer c()
			srv.Shutdown(sctx)
		}()
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			return err
		}
		return nil
	})
	n.logger.Info("listening", "addr", ln.Addr().String())
	// Tell local commands (vouch verdict, report …) where to ask while this
	// node holds the index, and how to know it is this node.
	if remove, err := query.WriteNodeFile(n.cfg.State, n.info); err != nil {
		n.logger.Warn("cannot record this node in its state directory; local commands will not ask it", "file", query.NodeFile(n.cfg.State), "err", err)
	} else {
		defer remove()
	}
	if n.Ready != nil {
		n.Ready(ln.Addr().String())
	}

	<-ctx.Done()
	wg.Wait()
	close(errc)
	return <-errc
}

// SummaryInterval is the shortest time between two walks of the follower
// index for the dissent counts in /metrics (each walk reads every subject).
var SummaryInterval = 30 * time.Second

// about answers GET / on a node that follows no builders: what it is and
// how to use it, in plain text.
func (n *Node) about() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		base := "http://" + r.Host
		var b strings.Builder
		b.WriteString("This is a vouch node: decentralized trust for build outputs.\n\n")
		if id := n.identity; id != nil {
			fmt.Fprintf(&b, "It is a builder: it keeps a signed, append-only log of what it built.\n\n")
			fmt.Fprintf(&b, "  log:          %s/log/   (C2SP tlog-tiles: %s/log/checkpoint, %s/log/tile/…)\n", base, base, base)
			fmt.Fprintf(&b, "  origin:       %s\n", id.Name)
			fmt.Fprintf(&b, "  verifier key: %s\n", id.VerifierKey)
			fmt.Fprintf(&b, "  its store:    %s/peer/   (NARs for other vouch nodes, unsigned: they check every byte against their own quorum)\n\n", base)
			b.WriteString("To follow it, list it in a follower's config:\n\n")
			fmt.Fprintf(&b, "  [[builder]]\n  name = %q\n  vkey = %q\n  log = \"%s/log/\"\n  operator = \"…\"\n\n", id.Name, id.VerifierKey, base)
			b.WriteString("To audit its log from scratch:  vouch log verify " + base + "/log/ '" + id.VerifierKey + "'\n")
			b.WriteString("To log a build on this machine: vouch submit --state STATE /nix/store/…  (or Nix's post-build-hook running vouch hook)\n")
		}
		if n.cfg.ServeWitness {
			fmt.Fprintf(&b, "\nIt is a witness: logs ask it to cosign their checkpoints at %s%sadd-checkpoint (C2SP tlog-witness).\n", base, WitnessPath)
		}
		fmt.Fprintf(&b, "\nIt serves no Nix cache and no dashboard: those need [[builder]]s to follow (docs/config.md).\nMetrics: %s/metrics\n", base)
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		io.WriteString(w, b.String())
	})
}

// WitnessPath is where a witness node serves C2SP tlog-witness
// (POST WitnessPath + "add-checkpoint"); logs list http://HOST/witness/.
const WitnessPath = "/witness/"

// startWitnessRole cosigns the checkpoints of every listed builder's log,
// with the node's key.
func (n *Node) startWitnessRole(closers *[]func() error) error {
	if n.identity == nil {
		return errors.New("serve-witness needs a key to cosign with")
	}
	var logs []witness.Log
	for _, b := range n.cfg.Builders {
		logs = append(logs, witness.Log{VKey: b.VKey})
	}
	w, err := witness.New(witness.Options{
		Dir:        filepath.Join(n.cfg.State, "witness"),
		Identity:   n.identity,
		Logs:       logs,
		Logger:     n.logger.With("role", "witness"),
		Registerer: n.metrics,
	})
	if err != nil {
		return err
	}
	*closers = append(*closers, w.Close)
	n.mux.Handle(WitnessPath, http.StripPrefix(strings.TrimSuffix(WitnessPath, "/"), w))
	n.logger.Info("witnessing", "logs", len(logs), "cosignature-vkey", w.VerifierKey())
	return nil
}

// startFollowRole opens the follower index, starts syncing every listed
// log, and, with a Nix key, serves the substituter from the same index.
func (n *Node) startFollowRole(ctx context.Context, run func(string, func(context.Context) error), closers *[]func() error) error {
	idx, err := follow.OpenIndex(n.cfg)
	if err != nil {
		return err
	}
	*closers = append(*closers, idx.Close)
	n.index = idx
	f, err := follow.New(n.cfg, idx, follow.Options{Logger: n.logger.With("role", "follow"), Registerer: n.metrics})
	if err != nil {
		return err
	}
	run("follow", f.Run)
	policy, err := verdict.NewPolicy(n.cfg)
	if err != nil {
		return err
	}
	n.policy = policy
	// `vouch verdict`, `report`, `evidence`, `verify oci` and `promote` ask
	// these while the node holds the index (package query).
	query.Routes(n.mux, n.info, policy, idx)
	// The summary behind the dashboard also counts outvoted builders for
	// /metrics and the log, so it runs whether or not the pages are served.
	h, err := dashboard.New(dashboard.Options{Index: idx, Policy: policy, Config: n.cfg, Logger: n.logger.With("role", "dashboard"), Registerer: n.metrics})
	if err != nil {
		return err
	}
	if n.cfg.Dashboard {
		n.dashboard = h
	}
	// Re-summarise as the follower indexes, so that an outvoted builder is
	// logged and counted without anyone opening a page. A walk happens only
	// when the index changed, and at most every SummaryInterval.
	run("summary", func(ctx context.Context) error {
		return h.Watch(ctx, max(n.cfg.Follow.Interval.Duration, SummaryInterval))
	})
	if n.cfg.NixKey != "" {
		if err := n.startSubstituter(); err != nil {
			return err
		}
	}
	n.mux.Handle("/", n.root())
	return nil
}

// startSubstituter serves the Nix binary cache of agreed paths.
func (n *Node) startSubstituter() error {
	key, err := keys.LoadNixKey(n.cfg.NixKey)
	if err != nil {
		return err
	}
	opts := substituter.Options{
		Decider:    QuorumDecider{Index: n.index, Policy: n.policy},
		Key:        key,
		Upstreams:  n.cfg.Upstreams,
		Logger:     n.logger.With("role", "substituter"),
		Registerer: n.metrics,
		NARCache:   substituter.NARCacheOptions{Dir: n.cfg.NARCache.Dir, MaxBytes: int64(n.cfg.NARCache.MaxSize)},
		Limits: substituter.Limits{
			MissTTL:  n.cfg.Relay.MissTTL.Duration,
			SpoolDir: n.cfg.Relay.SpoolDir,
		},
	}
	if v := n.cfg.Relay.VerifyFirstMax; v != nil {
		opts.Limits.VerifyFirstMax = int64(*v)
		if *v == 0 {
			opts.Limits.VerifyFirstMax = -1 // stream every NAR
		}
	}
	if opts.Limits.SpoolDir != "" {
		if err := os.MkdirAll(opts.Limits.SpoolDir, 0o700); err != nil {
			return fmt.Errorf("relay.spool-dir: %w", err)
		}
	}
	if n.identity != nil {
		// A builder also offers the paths in its own store, checked like
		// any upstream's.
		opts.Store = n.cfg.Store
	}
	sub, err := substituter.New(opts)
	if err != nil {
		return err
	}
	n.substituter = sub
	n.mux.Handle("/nix-cache-info", sub)
	n.mux.Handle("/nar/", sub)
	n.mux.Handle("/realisations/", sub)
	return nil
}

// root dispatches what no more specific route took: narinfo requests
// (/<hash>.narinfo, which no mux pattern can express) to the substituter,
// everything else to the dashboard, or 404.
func (n *Node) root() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.substituter != nil && strings.HasSuffix(r.URL.Path, ".narinfo") && strings.Count(r.URL.Path, "/") == 1 {
			n.substituter.ServeHTTP(w, r)
			return
		}
		if n.dashboard != nil {
			n.dashboard.ServeHTTP(w, r)
			return
		}
		http.NotFound(w, r)
	})
}

// QuorumDecider answers the substituter from the follower index under the
// node's policy. It decides from the claims alone (DecideEntries): a narinfo
// needs the verdict, not the inclusion proofs that `vouch verdict` shows.
type QuorumDecider struct {
	Index  *index.Index
	Policy *verdict.Policy
}

func (d QuorumDecider) Decide(kind claim.Kind, subject string) (verdict.Verdict, error) {
	entries, err := d.Index.Claims(kind, subject)
	if err != nil {
		return verdict.Verdict{}, err
	}
	return d.Policy.DecideEntries(entries, d.Index.Compromised), nil
}

// Version moves whenever the index's answers may have changed; the policy
// is fixed for the node's lifetime. It makes QuorumDecider a
// substituter.VersionedDecider.
func (d QuorumDecider) Version() uint64 { return d.Index.Version() }

// PathByHash picks, among the store paths claimed with this hash part, the
// one the quorum trusts (normally the only one; a hostile log may claim the
// hash part under other names).
func (d QuorumDecider) PathByHash(hashPart string) (string, bool) {
	paths, err := d.Index.PathsByHash(hashPart)
	if err != nil || len(paths) == 0 {
		return "", false
	}
	if len(paths) > 1 {
		for _, p := range paths {
			if v, err := d.Decide(claim.KindNix, p); err == nil && v.Outcome == verdict.Trusted {
				return p, true
			}
		}
	}
	return paths[0], true
}

// startLogRole opens the submit socket and the hook spool drainer.
func (n *Node) startLogRole(ctx context.Context, l *buildlog.Log, run func(string, func(context.Context) error)) error {
	store := nixstore.Store{Root: n.cfg.Store}
	metered, err := newMeteredLog(l, n.logger, n.metrics, SpoolDir(n.cfg.State))
	if err != nil {
		return err
	}
	drainer := &hook.Drainer{
		Spool: hook.Spool{Dir: SpoolDir(n.cfg.State)},
		Outputs: func(ctx context.Context, drv string) ([]hook.Output, error) {
			built, err := store.BuiltOutputs(ctx, drv)
			if err != nil {
				return nil, err
			}
			outs := make([]hook.Output, len(built))
			for i, b := range built {
				outs[i] = hook.Output{Path: b.Path}
				if b.ContentAddressed {
					outs[i].OutputID = b.OutputID
				}
			}
			return outs, nil
		},
		Log: func(ctx context.Context, o hook.Output) error {
			c, err := store.Claim(ctx, o.Path)
			if err != nil {
				// The path is not (or no longer) in the store: waiting
				// will not bring it back.
				return fmt.Errorf("%w: %v", hook.ErrPermanent, err)
			}
			claims := []*claim.Claim{c}
			if o.OutputID != "" {
				ca, err := nixstore.CAClaimFrom(c, o.OutputID)
				if err != nil {
					return fmt.Errorf("%w: %v", hook.ErrPermanent, err)
				}
				claims = append(claims, ca)
			}
			for _, c := range claims {
				_, err := metered.Add(ctx, c)
				if errors.Is(err, buildlog.ErrConflict) {
					return fmt.Errorf("%w: %v", hook.ErrPermanent, err)
				}
				if err != nil {
					return err
				}
			}
			return nil
		},
		Logf: func(format string, args ...any) { n.logger.Warn(fmt.Sprintf(format, args...)) },
	}
	poke := make(chan struct{}, 1)
	srv := &submit.Server{
		Log:   metered,
		Store: store,
		Drain: func() {
			select {
			case poke <- struct{}{}:
			default:
			}
		},
		Logf: func(format string, args ...any) { n.logger.Warn(fmt.Sprintf(format, args...)) },
	}
	sock, err := submit.Listen(n.cfg.Socket, n.cfg.SocketGroup)
	if err != nil {
		return err
	}
	run("submit", func(ctx context.Context) error { return srv.Serve(ctx, sock) })
	run("hook spool", func(ctx context.Context) error {
		// Drain at start-up (builds that finished while the daemon was
		// down), when poked by the hook, and every few seconds in case a
		// poke was lost.
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			if _, err := drainer.Drain(ctx); err != nil {
				n.logger.Warn("hook spool", "err", err)
			}
			select {
			case <-ctx.Done():
				return nil
			case <-poke:
			case <-t.C:
			}
		}
	})
	return nil
}
