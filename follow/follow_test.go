package follow

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/index"
)

// tesseraLog is a real tessera POSIX log served over HTTP on 127.0.0.1.
type tesseraLog struct {
	vkey string
	url  string
	dir  string // the files it publishes
	add  func(entries ...[]byte)
}

func newTesseraLog(t *testing.T, name string) *tesseraLog {
	ctx, cancel := context.WithCancel(context.Background())
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	driver, err := posix.New(ctx, posix.Config{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	appender, shutdown, reader, err := tessera.NewAppender(ctx, driver, tessera.NewAppendOptions().
		WithCheckpointSigner(signer).WithBatching(512, 10*time.Millisecond).WithCheckpointInterval(100*time.Millisecond))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { shutdown(ctx); cancel() })
	awaiter := tessera.NewPublicationAwaiter(ctx, reader.ReadCheckpoint, 10*time.Millisecond)
	srv := httptest.NewServer(http.StripPrefix("/log", http.FileServer(http.Dir(dir))))
	t.Cleanup(srv.Close)
	return &tesseraLog{vkey: vkey, url: srv.URL + "/log/", dir: dir, add: func(entries ...[]byte) {
		var last tessera.IndexFuture
		for _, e := range entries {
			last = appender.Add(ctx, tessera.NewEntry(e))
		}
		if _, _, err := awaiter.Await(ctx, last); err != nil {
			t.Fatal(err)
		}
	}}
}

func claimsFor(t testing.TB, prefix string, from, to int, output string) [][]byte {
	var out [][]byte
	for i := from; i < to; i++ {
		out = append(out, testClaim(t, fmt.Sprintf("%s-%d", prefix, i), output))
	}
	return out
}

func testConfig(t testing.TB, builders ...config.Builder) *config.Config {
	cfg := &config.Config{State: t.TempDir(), Builders: builders}
	cfg.Defaults()
	return cfg
}

func openFollower(t testing.TB, cfg *config.Config, opts Options) (*Follower, *index.Index) {
	idx, err := OpenIndex(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idx.Close() })
	f, err := New(cfg, idx, opts)
	if err != nil {
		t.Fatal(err)
	}
	return f, idx
}

// TestSyncTesseraResume syncs a real tessera log, grows it, and resumes an
// interrupted sync; every indexed claim carries a proof to the signed root.
func TestSyncTesseraResume(t *testing.T) {
	tl := newTesseraLog(t, "alice")
	tl.add(claimsFor(t, "a", 0, 700, "out")...)
	cfg := testConfig(t, config.Builder{Name: "alice", VKey: tl.vkey, Log: tl.url})

	// Interrupt the first sync after its first batch: cancel the context
	// from the progress callback.
	ctx, cancel := context.WithCancel(context.Background())
	f, idx := openFollower(t, cfg, Options{BatchEntries: 256, Progress: func(p Progress) { cancel() }})
	r := f.SyncOnce(ctx)[0]
	if r.Err == nil || r.Size != 256 {
		t.Fatalf("interrupted sync: size %d, err %v; want 256 and a context error", r.Size, r.Err)
	}
	id, _ := LogID(cfg.Builders[0])
	st, _ := idx.State(id)
	if st.Synced != 256 || st.Checkpoint.Size != 700 || st.Pinned.Size != 700 {
		t.Fatalf("after interruption: synced %d checkpoint %d pinned %d", st.Synced, st.Checkpoint.Size, st.Pinned.Size)
	}
	// Claims of a half-synced checkpoint are not served yet.
	if es, _ := idx.Claims(claim.KindNix, mustClaim(t, claimsFor(t, "a", 0, 1, "out")[0]).Subject); len(es) != 0 {
		t.Fatalf("claims served before the checkpoint is complete: %v", es)
	}

	// Resume, then grow the log and sync again.
	f, err := New(cfg, idx, Options{BatchEntries: 256})
	if err != nil {
		t.Fatal(err)
	}
	r = f.SyncOnce(context.Background())[0]
	if r.Err != nil || r.Size != 700 || r.Added != 444 {
		t.Fatalf("resumed sync: %+v", r)
	}
	tl.add(claimsFor(t, "a", 700, 1000, "out")...)
	r = f.SyncOnce(context.Background())[0]
	if r.Err != nil || r.Size != 1000 || r.Added != 300 {
		t.Fatalf("second sync: %+v", r)
	}
	st, _ = idx.State(id)
	if st.Pinned.Size != 700 || st.Complete.Size != 1000 || st.Subjects != 1000 {
		t.Fatalf("state: pinned %d complete %d subjects %d", st.Pinned.Size, st.Complete.Size, st.Subjects)
	}

	// Every claim is found and proven in the signed checkpoint.
	for _, i := range []int{0, 255, 256, 699, 700, 999} {
		c := mustClaim(t, claimsFor(t, "a", i, i+1, "out")[0])
		es, err := idx.Claims(c.Kind, c.Subject)
		if err != nil || len(es) != 1 || es[0].Builder != "alice" || es[0].Index != uint64(i) || !es[0].Claim.Agrees(c) {
			t.Fatalf("claims for %d: %v %v", i, es, err)
		}
		size, proof, err := idx.InclusionProof("alice", es[0].Index)
		if err != nil {
			t.Fatal(err)
		}
		p := make(tlog.RecordProof, len(proof))
		for j := range proof {
			copy(p[j][:], proof[j])
		}
		raw, _ := c.Marshal()
		if err := tlog.CheckRecord(p, int64(size), st.Complete.Root, int64(i), tlog.RecordHash(raw)); err != nil {
			t.Fatalf("inclusion proof of %d: %v", i, err)
		}
	}
	// Nothing new: a round is a no-op.
	if r = f.SyncOnce(context.Background())[0]; r.Err != nil || r.Added != 0 {
		t.Fatalf("idle sync: %+v", r)
	}
}

func mustClaim(t testing.TB, b []byte) *claim.Claim {
	c, err := claim.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestMisbehaviour serves a good and a bad log to one follower; the bad one
// misbehaves provably in one way per case. The follower must record
// evidence of the right kind, mark only the bad log compromised, and keep
// syncing the good one. The exported evidence must verify with only the
// bad log's key. (What is not proven is not evidence: TestFaultsAreNotEvidence.)
func TestMisbehaviour(t *testing.T) {
	cases := []struct {
		name   string
		kind   index.EvidenceKind
		proven bool
		// first and then publish the bad log's two states over time.
		first func(bad *tileLog) string
		then  func(bad *tileLog) string
	}{
		{"fork", index.EvidenceFork, true,
			func(bad *tileLog) string { bad.addClaims("b", 300, "x"); return bad.publish(300) },
			func(bad *tileLog) string {
				other := bad.fork(200)
				other.addClaims("evil", 150, "y")
				return other.publish(350)
			}},
		{"rollback-to-other-history", index.EvidenceFork, true,
			func(bad *tileLog) string { bad.addClaims("b", 600, "x"); return bad.publish(600) },
			func(bad *tileLog) string {
				other := bad.fork(100)
				other.addClaims("evil", 10, "y")
				return other.publish(110)
			}},
		{"split-view", index.EvidenceSplitView, true,
			func(bad *tileLog) string { bad.addClaims("b", 300, "x"); return bad.publish(300) },
			func(bad *tileLog) string {
				other := bad.fork(299)
				other.add(testClaim(t, "evil", "y"))
				return other.publish(300)
			}},
		{"two-outputs-one-subject", index.EvidenceConflictingClaims, true,
			func(bad *tileLog) string { bad.addClaims("b", 300, "x"); return bad.publish(300) },
			func(bad *tileLog) string {
				bad.add(testClaim(t, "b-17", "other-output"))
				return bad.publish(301)
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			good := newTileLog(t, "good")
			good.addClaims("g", 300, "x")
			goodSrv := newSwitchServer(t, good.publish(300))
			bad := newTileLog(t, "bad")
			badSrv := newSwitchServer(t, t.TempDir())
			cfg := testConfig(t,
				config.Builder{Name: "good", VKey: good.vkey, Log: goodSrv.url()},
				config.Builder{Name: "bad", VKey: bad.vkey, Log: badSrv.url()})
			f, idx := openFollower(t, cfg, Options{BatchEntries: 256})
			ctx := context.Background()
			if tc.first != nil {
				badSrv.serve(tc.first(bad))
				for _, r := range f.SyncOnce(ctx) {
					if r.Err != nil {
						t.Fatalf("honest first round: %v", r.Err)
					}
				}
			}
			badSrv.serve(tc.then(bad))
			rs := f.SyncOnce(ctx)
			if rs[0].Err != nil || rs[0].Size != 300 {
				t.Fatalf("good log: %+v", rs[0])
			}
			if rs[1].Evidence == nil || !errors.Is(rs[1].Err, ErrCompromised) {
				t.Fatalf("bad log: no evidence: %+v", rs[1])
			}
			if !idx.Compromised("bad") || idx.Compromised("good") {
				t.Fatalf("compromised: bad %v good %v", idx.Compromised("bad"), idx.Compromised("good"))
			}
			evs, err := idx.Evidence()
			if err != nil || len(evs) != 1 || evs[0].Kind != tc.kind || evs[0].Builder != "bad" {
				t.Fatalf("evidence: %v %v", evs, err)
			}
			t.Logf("evidence: %s", evs[0].Summary)

			// The export checks out with only the public key, and says
			// whether it is proof or observation.
			file := filepath.Join(t.TempDir(), "ev.json")
			if err := ExportEvidence(evs[0], file); err != nil {
				t.Fatal(err)
			}
			e, err := ReadEvidence(file)
			if err != nil {
				t.Fatal(err)
			}
			msg, err := VerifyEvidence(e, bad.vkey)
			if err != nil {
				t.Fatalf("verify evidence: %v", err)
			}
			if strings.HasPrefix(msg, "proven") != tc.proven || e.Proven() != tc.proven {
				t.Fatalf("verify says %q, want proven=%v", msg, tc.proven)
			}
			if _, err := VerifyEvidence(e, good.vkey); err == nil {
				t.Fatal("evidence verified under another builder's key")
			}

			// The rest keeps working: the good log grows and is followed;
			// the bad one is not polled again.
			good.addClaims("g2", 50, "x")
			goodSrv.serve(good.publish(350))
			rs = f.SyncOnce(ctx)
			if rs[0].Err != nil || rs[0].Size != 350 {
				t.Fatalf("good log after evidence: %+v", rs[0])
			}
			if !errors.Is(rs[1].Err, ErrCompromised) || rs[1].Evidence != nil {
				t.Fatalf("bad log after evidence: %+v", rs[1])
			}
		})
	}
}

func flipByte(t *testing.T, path string, off int) {
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b[off] ^= 0x20
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestTransientErrorsAreNotEvidence: a log that is down, or serves a
// checkpoint signed by another key, yields an error and no evidence.
func TestTransientErrorsAreNotEvidence(t *testing.T) {
	l := newTileLog(t, "carol")
	l.addClaims("c", 10, "x")
	srv := newSwitchServer(t, t.TempDir()) // empty: 404 everywhere
	impostor := newTileLog(t, "carol")
	impostor.addClaims("c", 10, "y")
	cfg := testConfig(t, config.Builder{Name: "carol", VKey: l.vkey, Log: srv.url()})
	f, idx := openFollower(t, cfg, Options{})
	for _, dir := range []string{t.TempDir(), impostor.publish(10)} {
		srv.serve(dir)
		r := f.SyncOnce(context.Background())[0]
		if r.Err == nil || r.Evidence != nil || idx.Compromised("carol") {
			t.Fatalf("got %+v, want a plain error", r)
		}
		t.Logf("error: %v", r.Err)
	}
	srv.serve(l.publish(10))
	if r := f.SyncOnce(context.Background())[0]; r.Err != nil || r.Size != 10 {
		t.Fatalf("after recovery: %+v", r)
	}
}

// TestRunPollsAndBacksOff runs the follower loop against a log that fails,
// then recovers, and checks it neither spins nor stalls.
func TestRunPollsAndBacksOff(t *testing.T) {
	l := newTileLog(t, "dave")
	l.addClaims("d", 20, "x")
	srv := newSwitchServer(t, t.TempDir())
	var requests atomicCounter
	inner := srv.srv.Config.Handler
	srv.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/checkpoint") {
			requests.add()
		}
		inner.ServeHTTP(w, r)
	})
	cfg := testConfig(t, config.Builder{Name: "dave", VKey: l.vkey, Log: srv.url()})
	f, idx := openFollower(t, cfg, Options{Interval: 100 * time.Millisecond, Logger: discardLogger()})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- f.Run(ctx) }()
	time.Sleep(700 * time.Millisecond) // failing: backoff 200, 400 ms …
	failing := requests.get()
	srv.serve(l.publish(20))
	deadline := time.Now().Add(5 * time.Second)
	id, _ := LogID(cfg.Builders[0])
	for {
		st, _ := idx.State(id)
		if st.Synced == 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("follower never caught up after the log recovered")
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("Run returned %v", err)
	}
	if failing < 2 || failing > 5 {
		t.Fatalf("%d polls in 700ms of failures with a 100ms interval: want backoff (2-5)", failing)
	}
}

func TestBackoff(t *testing.T) {
	for _, tc := range []struct {
		failures int
		want     time.Duration
	}{{0, time.Second}, {1, 2 * time.Second}, {3, 8 * time.Second}, {20, MaxBackoff}} {
		if got := backoff(time.Second, tc.failures); got != tc.want {
			t.Errorf("backoff(1s, %d) = %v, want %v", tc.failures, got, tc.want)
		}
	}
	for range 1000 {
		if d := jitter(time.Second); d < 900*time.Millisecond || d > 1100*time.Millisecond {
			t.Fatalf("jitter(1s) = %v", d)
		}
	}
}

// TestAudit audits a sound log and an unsound one from scratch.
func TestAudit(t *testing.T) {
	l := newTileLog(t, "erin")
	l.addClaims("e", 300, "x")
	srv := newSwitchServer(t, l.publish(300))
	res, err := Audit(context.Background(), srv.url(), l.vkey, nil, nil)
	if err != nil || res.Entries != 300 || res.Claims != 300 || res.Checkpoint.Size != 300 {
		t.Fatalf("sound log: %+v %v", res, err)
	}
	l.add(testClaim(t, "e-5", "changed"))
	srv.serve(l.publish(301))
	res, err = Audit(context.Background(), srv.url(), l.vkey, nil, nil)
	if err == nil || res.Evidence == nil || res.Evidence.Kind != index.EvidenceConflictingClaims {
		t.Fatalf("unsound log: %+v %v", res, err)
	}
	t.Logf("audit: %v", err)
}
