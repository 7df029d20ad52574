package dashboard

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vouch-dev/vouch/buildlog"
	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/follow"
	"github.com/vouch-dev/vouch/index"
	"github.com/vouch-dev/vouch/internal/keytest"
	"github.com/vouch-dev/vouch/keys"
	"github.com/vouch-dev/vouch/verdict"
)

// testLog is a real vouch builder log (package buildlog) served over HTTP
// on 127.0.0.1, optionally through a handler that alters what it serves.
type testLog struct {
	t    testing.TB
	name string
	log  *buildlog.Log
	vkey string
	url  string
	// splitView, when set, makes followWorld show the follower, after a
	// first honest sync, a checkpoint of the same size with another
	// root, signed with the log's key: proof of a split view.
	splitView bool
	forged    atomic.Pointer[[]byte] // served as the checkpoint when set
	id        *keys.Identity
}

func newTestLog(t testing.TB, name string, alter func(http.Handler) http.Handler) *testLog {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	dir := t.TempDir()
	id, _ := keytest.Identity(t, dir, name)
	l, err := buildlog.Open(ctx, buildlog.Options{Dir: filepath.Join(dir, "log"), Identity: id,
		CheckpointInterval: 100 * time.Millisecond, BatchMaxAge: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	tl := &testLog{t: t, name: name, log: l, vkey: id.VerifierKey, id: id}
	var h http.Handler = http.StripPrefix("/log", buildlog.Handler(l.TilesDir()))
	if alter != nil {
		h = alter(h)
	}
	honest := h
	h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cp := tl.forged.Load(); cp != nil && r.URL.Path == "/log/checkpoint" {
			w.Write(*cp)
			return
		}
		honest.ServeHTTP(w, r)
	})
	srv := httptest.NewServer(h)
	t.Cleanup(func() { srv.Close(); l.Close(); cancel() })
	tl.url = srv.URL + "/log/"
	return tl
}

// forgeSplitView makes the log serve a checkpoint of its current size
// with another root, signed with its key.
func (l *testLog) forgeSplitView() {
	l.t.Helper()
	raw, err := l.log.Checkpoint(context.Background())
	if err != nil {
		l.t.Fatal(err)
	}
	cp, err := index.ParseCheckpointBody(raw)
	if err != nil {
		l.t.Fatal(err)
	}
	other := sha256.Sum256([]byte("another history"))
	body := fmt.Sprintf("%s\n%d\n%s\n", cp.Origin, cp.Size, base64.StdEncoding.EncodeToString(other[:]))
	msg, err := note.Sign(&note.Note{Text: body}, l.id.Signer)
	if err != nil {
		l.t.Fatal(err)
	}
	l.forged.Store(&msg)
}

// add logs claims concurrently (the log batches them) and waits until a
// published checkpoint covers them all.
func (l *testLog) add(claims ...*claim.Claim) {
	l.t.Helper()
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, len(claims))
	sem := make(chan struct{}, 256)
	for _, c := range claims {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			if _, err := l.log.Add(ctx, c); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		l.t.Fatal(err)
	}
	want, err := l.log.Size(ctx)
	if err != nil {
		l.t.Fatal(err)
	}
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		raw, err := l.log.Checkpoint(ctx)
		if err == nil {
			if cp, err := index.ParseCheckpointBody(raw); err == nil && cp.Size >= want {
				return
			}
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("log %s: no checkpoint of size %d after 20s", l.name, want)
		}
	}
}

func (l *testLog) builder(operator string) config.Builder {
	return config.Builder{Name: l.name, VKey: l.vkey, Log: l.url, Operator: operator}
}

func nix32(s string, n int) string {
	const alphabet = "0123456789abcdfghijklmnpqrsvwxyz"
	out := make([]byte, 0, n)
	for i := 0; len(out) < n; i++ {
		h := sha256.Sum256([]byte(fmt.Sprintf("%s/%d", s, i)))
		for _, b := range h {
			if len(out) < n {
				out = append(out, alphabet[b%32])
			}
		}
	}
	return string(out)
}

func storePath(name string) string { return claim.StoreDir + "/" + nix32(name, 32) + "-" + name }

var (
	day1 = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	day2 = time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
)

func nixClaim(name, output string, at time.Time) *claim.Claim {
	return &claim.Claim{Kind: claim.KindNix, Subject: storePath(name), NarHash: "sha256:" + nix32("nar "+output, 52),
		NarSize: 1000 + uint64(len(output)), References: []string{nix32("dep", 32) + "-dep"}, Deriver: nix32(name+".drv", 32) + "-" + name + ".drv", Time: at}
}

// xssSubject is an oci subject a hostile builder could log: its source
// and attribute are markup.
const xssSubject = `<script>alert(1)</script>@abcdef0123#"><img_src=x_onerror=alert(2)>?system=x86_64-linux`

func ociClaim(subject, digestOf string, at time.Time) *claim.Claim {
	return &claim.Claim{Kind: claim.KindOCI, Subject: subject, Digest: fmt.Sprintf("sha256:%x", sha256.Sum256([]byte(digestOf))), Time: at}
}

// world is five real logs followed into a real index, under a 3-of-5
// majority policy:
//
//   - alice, bob, carol, erin agree on ok-0…ok-9 (day 1) and on shared (day 2);
//   - carol logged another output for tampered (the others agree);
//   - each logged a different output for noise;
//   - all but carol logged the hostile oci subject xssSubject;
//   - dave's log shows the follower two trees of one size: evidence.
type world struct {
	cfg    *config.Config
	idx    *index.Index
	policy *verdict.Policy
	h      http.Handler
	logs   map[string]*testLog
}

func newWorld(t testing.TB) *world {
	t.Helper()
	logs := map[string]*testLog{}
	for _, name := range []string{"alice", "bob", "carol", "erin"} {
		logs[name] = newTestLog(t, name, nil)
	}
	logs["dave"] = newTestLog(t, "dave", nil)
	logs["dave"].splitView = true
	for name, l := range logs {
		var cs []*claim.Claim
		for i := range 10 {
			cs = append(cs, nixClaim(fmt.Sprintf("ok-%d", i), "same", day1))
		}
		cs = append(cs, nixClaim("shared", "same", day2), nixClaim("noise", "noise by "+name, day2))
		tampered := "honest"
		if name == "carol" {
			tampered = "backdoored"
		}
		cs = append(cs, nixClaim("tampered", tampered, day2))
		if name != "carol" {
			cs = append(cs, ociClaim(xssSubject, "image", day2))
		}
		l.add(cs...)
	}
	cfg := &config.Config{State: t.TempDir(), Dashboard: true,
		Builders: []config.Builder{logs["alice"].builder("org-a"), logs["bob"].builder("org-b"), logs["carol"].builder("org-c"), logs["dave"].builder("org-d"), logs["erin"].builder("org-e")},
		Quorum:   config.Quorum{Min: 3, MinOperators: 2, OnConflict: config.OnConflictMajority}}
	cfg.Defaults()
	return followWorld(t, cfg, logs)
}

func followWorld(t testing.TB, cfg *config.Config, logs map[string]*testLog) *world {
	t.Helper()
	idx, err := follow.OpenIndex(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { idx.Close() })
	f, err := follow.New(cfg, idx, follow.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range f.SyncOnce(context.Background()) {
		if r.Err != nil && r.Evidence == nil {
			t.Fatalf("sync %s: %v", r.Builder, r.Err)
		}
	}
	split := false
	for _, l := range logs {
		if l.splitView {
			l.forgeSplitView()
			split = true
		}
	}
	if split {
		for _, r := range f.SyncOnce(context.Background()) {
			if r.Err != nil && r.Evidence == nil {
				t.Fatalf("sync %s: %v", r.Builder, r.Err)
			}
		}
	}
	policy, err := verdict.NewPolicy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h, err := New(Options{Index: idx, Policy: policy, Config: cfg, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	return &world{cfg: cfg, idx: idx, policy: policy, h: h, logs: logs}
}

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// get serves one request in-process.
func (w *world) get(t testing.TB, target string) (int, http.Header, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	w.h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, target, nil))
	return rec.Code, rec.Header(), rec.Body.String()
}

func mustContain(t testing.TB, what, body string, wants ...string) {
	t.Helper()
	for _, want := range wants {
		if !strings.Contains(body, want) {
			t.Errorf("%s does not contain %q:\n%s", what, want, trimBody(body))
		}
	}
}

func trimBody(s string) string {
	if len(s) > 4000 {
		return s[:4000] + "…"
	}
	return s
}

func sha256Sum(s string) [32]byte { return sha256.Sum256([]byte(s)) }

var tempRoot string

// mustTempDir makes a directory that outlives a test (for the shared
// world), under a root TestMain removes.
func mustTempDir() string {
	d, err := os.MkdirTemp(tempRoot, "world")
	if err != nil {
		panic(err)
	}
	return d
}

func TestMain(m *testing.M) {
	var err error
	if tempRoot, err = os.MkdirTemp("", "vouch-dashboard-test"); err != nil {
		panic(err)
	}
	code := m.Run()
	for i := len(keptCleanups) - 1; i >= 0; i-- {
		keptCleanups[i]()
	}
	os.RemoveAll(tempRoot)
	os.Exit(code)
}
