package follow

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/index"
	"github.com/vouch-dev/vouch/verdict"
)

// TestFaultsAreNotEvidence: what anyone on the network path can cause — an
// older genuine checkpoint, a tile or bundle that does not match the signed
// root — fails the round and proves nothing. The log is not marked
// compromised, its health says what happened, and once the log is served
// honestly again it syncs on to the newest checkpoint.
func TestFaultsAreNotEvidence(t *testing.T) {
	cases := []struct {
		name string
		want error // what the attacked round's error wraps
		// first is what the follower is served first (and syncs in full,
		// unless interrupt), then is the fault; honest is the log served
		// correctly afterwards, of size size.
		first     func(l *tileLog) string
		interrupt bool // the first sync stops after its first batch
		then      func(l *tileLog) string
		size      int
	}{
		{"older-checkpoint-prefix", ErrStaleView,
			func(l *tileLog) string { return l.publish(600) }, false,
			func(l *tileLog) string { return l.publish(300) }, 600},
		{"older-checkpoint-not-yet-indexed", ErrStaleView,
			func(l *tileLog) string { return l.publish(600) }, true,
			func(l *tileLog) string { return l.publish(300) }, 600},
		{"corrupted-tile", ErrBadData,
			func(l *tileLog) string { return l.publish(300) }, false,
			func(l *tileLog) string {
				dir := l.publish(600)
				flipByte(t, filepath.Join(dir, "tile/0/001"), 100)
				return dir
			}, 600},
		{"corrupted-tile-first-sync", ErrBadData,
			nil, false,
			func(l *tileLog) string {
				dir := l.publish(600)
				flipByte(t, filepath.Join(dir, "tile/0/001"), 100)
				return dir
			}, 600},
		{"corrupted-entry", ErrBadData,
			func(l *tileLog) string { return l.publish(300) }, false,
			func(l *tileLog) string {
				dir := l.publish(600)
				flipByte(t, filepath.Join(dir, "tile/entries/001"), fileSize(t, filepath.Join(dir, "tile/entries/001"))-5) // inside entry 511
				return dir
			}, 600},
		{"truncated-bundle", ErrBadData,
			func(l *tileLog) string { return l.publish(300) }, false,
			func(l *tileLog) string {
				dir := l.publish(600)
				p := filepath.Join(dir, "tile/entries/002.p/88")
				b, _ := os.ReadFile(p)
				os.WriteFile(p, b[:len(b)-7], 0o644)
				return dir
			}, 600},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			l := newTileLog(t, "carol")
			l.addClaims("c", 600, "x")
			srv := newSwitchServer(t, t.TempDir())
			cfg := testConfig(t, config.Builder{Name: "carol", VKey: l.vkey, Log: srv.url()})
			id, _ := LogID(cfg.Builders[0])
			f, idx := openFollower(t, cfg, Options{BatchEntries: 256, Logger: discardLogger()})
			ctx := context.Background()
			verified := 0
			if tc.first != nil {
				srv.serve(tc.first(l))
				if tc.interrupt {
					ictx, cancel := context.WithCancel(ctx)
					fi, err := New(cfg, idx, Options{BatchEntries: 256, Progress: func(Progress) { cancel() }})
					if err != nil {
						t.Fatal(err)
					}
					if r := fi.SyncOnce(ictx)[0]; r.Size != 256 {
						t.Fatalf("interrupted first sync: %+v", r)
					}
				} else {
					r := f.SyncOnce(ctx)[0]
					if r.Err != nil {
						t.Fatalf("honest first round: %v", r.Err)
					}
					verified = int(r.Size)
				}
			}

			srv.serve(tc.then(l))
			for round := 1; round <= 2; round++ {
				r := f.SyncOnce(ctx)[0]
				if !errors.Is(r.Err, tc.want) || r.Evidence != nil || errors.Is(r.Err, ErrCompromised) {
					t.Fatalf("faulty round %d: %+v; want an error wrapping %q and no evidence", round, r, tc.want)
				}
				if round == 1 {
					t.Logf("error: %v", r.Err)
				}
				st, _ := idx.State(id)
				h := st.Health
				if st.Compromised || idx.Compromised("carol") || !h.Unavailable() || h.Failures != round || h.FailingSince.IsZero() ||
					h.Stale != errors.Is(tc.want, ErrStaleView) {
					t.Fatalf("after faulty round %d: compromised %v, health %+v", round, st.Compromised, h)
				}
			}
			if evs, err := idx.Evidence(); err != nil || len(evs) != 0 {
				t.Fatalf("evidence recorded for a fault: %v %v", evs, err)
			}
			// The claims verified before the fault still count.
			if verified > 0 {
				c := mustClaim(t, testClaim(t, "c-5", "x"))
				if es, err := idx.Claims(c.Kind, c.Subject); err != nil || len(es) != 1 || es[0].Builder != "carol" {
					t.Fatalf("a verified claim is gone after a fault: %v %v", es, err)
				}
			}

			// Honest answers again: the log syncs to the newest checkpoint.
			srv.serve(l.publish(tc.size))
			r := f.SyncOnce(ctx)[0]
			if r.Err != nil || r.Size != uint64(tc.size) {
				t.Fatalf("after the fault: %+v", r)
			}
			st, _ := idx.State(id)
			if st.Complete == nil || st.Complete.Size != uint64(tc.size) || st.Health.Unavailable() || st.Health.Failures != 0 || st.Health.Stale {
				t.Fatalf("state after recovery: complete %v, health %+v", st.Complete, st.Health)
			}
		})
	}
}

// tamperProxy stands between a follower and a real log server on
// 127.0.0.1, over plain http, as anyone on the path could: it forwards
// requests honestly, serves a copy of the log's files taken earlier
// (replay), or flips one byte in every response whose path contains flip.
type tamperProxy struct {
	srv    *httptest.Server
	replay atomic.Pointer[string] // directory of an earlier copy of the log
	flip   atomic.Pointer[string] // path fragment whose responses are altered
}

func newTamperProxy(t *testing.T, upstream string) *tamperProxy {
	p := &tamperProxy{}
	up, err := url.Parse(upstream)
	if err != nil {
		t.Fatal(err)
	}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if dir := p.replay.Load(); dir != nil {
			http.StripPrefix("/log", http.FileServer(http.Dir(*dir))).ServeHTTP(w, r)
			return
		}
		resp, err := http.Get(up.ResolveReference(&url.URL{Path: r.URL.Path}).String())
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		if f := p.flip.Load(); f != nil && resp.StatusCode == http.StatusOK && strings.Contains(r.URL.Path, *f) && len(body) > 0 {
			body[min(40, len(body)-1)] ^= 0x01
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(body)
	}))
	t.Cleanup(p.srv.Close)
	return p
}

func (p *tamperProxy) url() string { return p.srv.URL + "/log/" }

// TestNetworkAttacksKeepBuilderCounted runs the attacks of a hostile
// network path against a real tessera log behind a proxy on plain http: a
// replayed older checkpoint with its tiles, a flipped byte in a tile, a
// flipped byte in an entry bundle. Under a 2-of-2 policy, every attack
// leaves the attacked builder counted: its verified claims still make
// verdicts trusted, and once the proxy is honest again it syncs to the
// newest checkpoint.
func TestNetworkAttacksKeepBuilderCounted(t *testing.T) {
	for _, attack := range []string{"replay", "flip-tile", "flip-bundle"} {
		t.Run(attack, func(t *testing.T) {
			alice := newTesseraLog(t, "alice")
			alice.add(claimsFor(t, "p", 0, 300, "out")...)
			proxy := newTamperProxy(t, alice.url)
			bob := newTileLog(t, "bob")
			for _, e := range claimsFor(t, "p", 0, 300, "out") {
				bob.add(e)
			}
			bobSrv := newSwitchServer(t, bob.publish(300))
			cfg := testConfig(t,
				config.Builder{Name: "alice", VKey: alice.vkey, Log: proxy.url()},
				config.Builder{Name: "bob", VKey: bob.vkey, Log: bobSrv.url()})
			cfg.Quorum.Min = 2
			policy, err := verdict.NewPolicy(cfg)
			if err != nil {
				t.Fatal(err)
			}
			reg := prometheus.NewRegistry()
			f, idx := openFollower(t, cfg, Options{BatchEntries: 256, Logger: discardLogger(), Registerer: reg})
			ctx := context.Background()
			sync := func() Result {
				rs := f.SyncOnce(ctx)
				if rs[1].Err != nil {
					t.Fatalf("bob: %v", rs[1].Err)
				}
				return rs[0]
			}
			trusted := func(when string) {
				t.Helper()
				c := mustClaim(t, claimsFor(t, "p", 7, 8, "out")[0])
				v, err := policy.Decide(idx, c.Kind, c.Subject)
				if err != nil || v.Outcome != verdict.Trusted || len(v.Agreed) != 2 || len(v.Compromised) != 0 {
					t.Fatalf("%s: verdict %+v %v; want trusted by alice and bob", when, v, err)
				}
			}
			if r := sync(); r.Err != nil || r.Size != 300 {
				t.Fatalf("honest first round: %+v", r)
			}
			trusted("before the attack")
			// What an attacker can record: the public files of the log now.
			snapshot := t.TempDir()
			if err := os.CopyFS(snapshot, os.DirFS(alice.dir)); err != nil {
				t.Fatal(err)
			}
			alice.add(claimsFor(t, "p", 300, 600, "out")...)

			want := ErrBadData
			switch attack {
			case "replay":
				// The follower verifies 600 first; then it is shown 300.
				if r := sync(); r.Err != nil || r.Size != 600 {
					t.Fatalf("honest second round: %+v", r)
				}
				proxy.replay.Store(&snapshot)
				want = ErrStaleView
			case "flip-tile":
				frag := "/tile/0/"
				proxy.flip.Store(&frag)
			case "flip-bundle":
				frag := "/tile/entries/"
				proxy.flip.Store(&frag)
			}
			r := sync()
			if !errors.Is(r.Err, want) || r.Evidence != nil {
				t.Fatalf("attacked round: %+v; want an error wrapping %q and no evidence", r, want)
			}
			t.Logf("attacked round: %v", r.Err)
			if idx.Compromised("alice") {
				t.Fatal("a network attack marked the builder compromised")
			}
			trusted("during the attack")
			stale := 0.0
			if attack == "replay" {
				stale = 1
			}
			for name, want := range map[string]float64{"vouch_follow_log_unavailable": 1, "vouch_follow_log_consecutive_failures": 1,
				"vouch_follow_log_stale_view": stale, "vouch_follow_log_compromised": 0} {
				if got := gauge(t, reg, name, "alice"); got != want {
					t.Errorf("/metrics during the attack: %s{builder=alice} = %v, want %v", name, got, want)
				}
			}
			if gauge(t, reg, "vouch_follow_log_failing_since_timestamp_seconds", "alice") == 0 || gauge(t, reg, "vouch_follow_log_unavailable", "bob") != 0 {
				t.Error("/metrics: failing_since unset for alice, or bob unavailable")
			}

			// The path is honest again, and the log has grown meanwhile.
			proxy.replay.Store(nil)
			proxy.flip.Store(nil)
			alice.add(claimsFor(t, "p", 600, 700, "out")...)
			if r := sync(); r.Err != nil || r.Size != 700 {
				t.Fatalf("after the attack: %+v", r)
			}
			id, _ := LogID(cfg.Builders[0])
			if st, _ := idx.State(id); st.Complete == nil || st.Complete.Size != 700 || st.Health.Unavailable() {
				t.Fatalf("after the attack: complete %v, health %+v", st.Complete, st.Health)
			}
			if evs, _ := idx.Evidence(); len(evs) != 0 {
				t.Fatalf("evidence recorded: %v", evs)
			}
			trusted("after the attack")
			if gauge(t, reg, "vouch_follow_log_unavailable", "alice") != 0 || gauge(t, reg, "vouch_follow_log_entries", "alice") != 700 {
				t.Error("/metrics after the attack: alice still unavailable, or not at 700 entries")
			}
		})
	}
}

// TestReadmit: a builder caught with proof stays excluded until an operator
// re-admits it. The re-admission is recorded on the evidence, which is
// kept; the log syncs again (from scratch after two histories, past the
// accepted conflict after two outputs), and new misbehaviour is evidence
// again.
func TestReadmit(t *testing.T) {
	t.Run("split-view", func(t *testing.T) {
		l := newTileLog(t, "dave")
		l.addClaims("d", 300, "x")
		srv := newSwitchServer(t, l.publish(300))
		cfg := testConfig(t, config.Builder{Name: "dave", VKey: l.vkey, Log: srv.url()})
		id, _ := LogID(cfg.Builders[0])
		f, idx := openFollower(t, cfg, Options{BatchEntries: 256})
		ctx := context.Background()
		if r := f.SyncOnce(ctx)[0]; r.Err != nil {
			t.Fatal(r.Err)
		}
		// The log software lost its last entry and wrote another one.
		other := l.fork(299)
		other.add(testClaim(t, "d-new", "x"))
		other.addClaims("e", 20, "x")
		srv.serve(other.publish(300))
		r := f.SyncOnce(ctx)[0]
		if r.Evidence == nil || r.Evidence.Kind != index.EvidenceSplitView || !idx.Compromised("dave") {
			t.Fatalf("split view: %+v", r)
		}
		evID := r.Evidence.ID
		srv.serve(other.publish(320))
		if r := f.SyncOnce(ctx)[0]; !errors.Is(r.Err, ErrCompromised) {
			t.Fatalf("compromised log synced: %+v", r)
		}
		if _, err := idx.Readmit(id, "", time.Now()); err == nil {
			t.Fatal("re-admitted without a reason")
		}
		ra, err := Readmit(idx, cfg, "dave", "tessera state lost on disk failure, investigated with the builder (ticket 42)")
		if err != nil {
			t.Fatal(err)
		}
		if !ra.Resynced || len(ra.Overrides) != 1 || ra.Overrides[0] != evID {
			t.Fatalf("re-admission: %+v", ra)
		}
		if idx.Compromised("dave") {
			t.Fatal("still compromised after re-admission")
		}
		evs, _ := idx.Evidence()
		if len(evs) != 1 || evs[0].Readmitted == nil || evs[0].Readmitted.Reason != ra.Reason {
			t.Fatalf("evidence after re-admission: %+v", evs)
		}
		// The log syncs again, from scratch, the history it serves now.
		r = f.SyncOnce(ctx)[0]
		if r.Err != nil || r.Size != 320 {
			t.Fatalf("after re-admission: %+v", r)
		}
		st, _ := idx.State(id)
		if st.Pinned.Size != 320 || st.Complete.Size != 320 {
			t.Fatalf("after re-admission: pinned %v complete %v", st.Pinned, st.Complete)
		}
		c := mustClaim(t, testClaim(t, "d-new", "x"))
		if es, _ := idx.Claims(c.Kind, c.Subject); len(es) != 1 || es[0].Index != 299 {
			t.Fatalf("claims of the new history: %v", es)
		}
		c = mustClaim(t, testClaim(t, "d-299", "x"))
		if es, _ := idx.Claims(c.Kind, c.Subject); len(es) != 0 {
			t.Fatalf("a claim of the dropped history still counts: %v", es)
		}
		if _, err := Readmit(idx, cfg, "dave", "again"); !errors.Is(err, index.ErrNotCompromised) {
			t.Fatalf("second re-admission: %v", err)
		}
		// A new split view is evidence again.
		third := other.fork(319)
		third.add(testClaim(t, "f", "x"))
		srv.serve(third.publish(320))
		if r := f.SyncOnce(ctx)[0]; r.Evidence == nil || !idx.Compromised("dave") {
			t.Fatalf("split view after re-admission: %+v", r)
		}
	})

	t.Run("conflicting-claims", func(t *testing.T) {
		l := newTileLog(t, "erin")
		l.addClaims("e", 300, "x")
		l.add(testClaim(t, "e-17", "rebuilt-differently"))
		srv := newSwitchServer(t, l.publish(301))
		cfg := testConfig(t, config.Builder{Name: "erin", VKey: l.vkey, Log: srv.url()})
		f, idx := openFollower(t, cfg, Options{BatchEntries: 256})
		ctx := context.Background()
		r := f.SyncOnce(ctx)[0]
		if r.Evidence == nil || r.Evidence.Kind != index.EvidenceConflictingClaims {
			t.Fatalf("conflict: %+v", r)
		}
		ra, err := Readmit(idx, cfg, "erin", "a bug in the post-build hook logged a stale NarHash; fixed in the builder's vouch 1.2")
		if err != nil || ra.Resynced {
			t.Fatalf("re-admission: %+v %v", ra, err)
		}
		l.addClaims("g", 10, "x")
		srv.serve(l.publish(311))
		if r := f.SyncOnce(ctx)[0]; r.Err != nil || r.Size != 311 {
			t.Fatalf("after re-admission: %+v", r)
		}
		c := mustClaim(t, testClaim(t, "e-17", "x"))
		if es, _ := idx.Claims(c.Kind, c.Subject); len(es) != 1 || es[0].Index != 17 {
			t.Fatalf("the accepted conflict's subject: %v", es)
		}
		// Another conflict is new evidence.
		l.add(testClaim(t, "e-18", "other"))
		srv.serve(l.publish(312))
		if r := f.SyncOnce(ctx)[0]; r.Evidence == nil || !idx.Compromised("erin") {
			t.Fatalf("new conflict after re-admission: %+v", r)
		}
	})
}

func fileSize(t *testing.T, path string) int {
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return int(fi.Size())
}

// gauge returns the value of the gauge name{builder=builder} that reg
// gathers, failing the test if there is none.
func gauge(t *testing.T, reg *prometheus.Registry, name, builder string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "builder" && l.GetValue() == builder {
					return m.GetGauge().GetValue()
				}
			}
		}
	}
	t.Fatalf("no metric %s{builder=%q}", name, builder)
	return 0
}
