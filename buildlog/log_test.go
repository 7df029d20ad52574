package buildlog

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/internal/keytest"
	"github.com/vouch-dev/vouch/internal/tlogaudit"
	"github.com/vouch-dev/vouch/keys"
)

func testIdentity(t testing.TB, dir string) *keys.Identity {
	t.Helper()
	id, _ := keytest.Identity(t, dir, "builder-test")
	return id
}

// fakeHash makes a distinct valid nix32 store hash from n.
func fakeHash(n int) string {
	const alpha = "0123456789abcdfghijklmnpqrsvwxyz"
	b := []byte(strings.Repeat("0", 32))
	for i := 31; i >= 0 && n > 0; i-- {
		b[i] = alpha[n%32]
		n /= 32
	}
	return string(b)
}

func testClaim(n int, out string) *claim.Claim {
	narHash := "sha256:" + strings.Repeat("1", 52-len(out)) + out
	return &claim.Claim{
		Kind:       claim.KindNix,
		Subject:    fmt.Sprintf("/nix/store/%s-pkg-%d", fakeHash(n), n),
		NarHash:    narHash,
		NarSize:    uint64(1000 + n),
		References: []string{fakeHash(n+1_000_000) + "-dep"},
		Time:       time.Unix(1790000000, 0).UTC(),
	}
}

// logDir is a temporary directory for a log that, unlike t.TempDir, is
// removed with retries: the engine's background loops may write one last
// file just after Close (see Log.Close).
func logDir(t testing.TB) string {
	dir, err := os.MkdirTemp("", "vouch-buildlog-test")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		for try := 0; try < 50; try++ {
			if os.RemoveAll(dir) == nil {
				return
			}
			time.Sleep(20 * time.Millisecond)
		}
	})
	return dir
}

func openTest(t testing.TB, dir string, id *keys.Identity) *Log {
	t.Helper()
	l, err := Open(context.Background(), Options{Dir: dir, Identity: id, CheckpointInterval: 100 * time.Millisecond, BatchMaxAge: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestAddDuplicateConflictReopen(t *testing.T) {
	dir := logDir(t)
	id := testIdentity(t, t.TempDir())
	l := openTest(t, dir, id)
	ctx := context.Background()

	var wg sync.WaitGroup
	for i := 0; i < 300; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if r, err := l.Add(ctx, testClaim(i, "a")); err != nil || r.Duplicate {
				t.Errorf("add %d: %+v %v", i, r, err)
			}
		}(i)
	}
	wg.Wait()

	first, _, ok, err := l.Lookup(claim.KindNix, testClaim(7, "a").Subject)
	if err != nil || !ok || !first.Agrees(testClaim(7, "a")) {
		t.Fatalf("lookup: %v %v", ok, err)
	}
	// Same output, different time: a no-op returning the logged index.
	again := testClaim(7, "a")
	again.Time = again.Time.Add(time.Hour)
	r, err := l.Add(ctx, again)
	if err != nil || !r.Duplicate {
		t.Fatalf("resubmission: %+v %v", r, err)
	}
	// Different output for the same subject: refused, logged claim kept.
	_, err = l.Add(ctx, testClaim(7, "b"))
	var ce *ConflictError
	if !errors.As(err, &ce) || !errors.Is(err, ErrConflict) || ce.Index != r.Index || !strings.Contains(err.Error(), "logged claim is kept") {
		t.Fatalf("conflicting resubmission: %v", err)
	}
	size, _ := l.Size(ctx)
	if size != 300 {
		t.Fatalf("size %d, want 300", size)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	// Reopen; the conflict is still refused and nothing changed.
	l = openTest(t, dir, id)
	defer l.Close()
	if _, err := l.Add(ctx, testClaim(7, "b")); !errors.Is(err, ErrConflict) {
		t.Fatalf("after reopen: %v", err)
	}
	if size, _ := l.Size(ctx); size != 300 {
		t.Fatalf("size after reopen %d", size)
	}
}

func TestSecondWriterRefused(t *testing.T) {
	dir := logDir(t)
	id := testIdentity(t, t.TempDir())
	l := openTest(t, dir, id)
	defer l.Close()
	_, err := Open(context.Background(), Options{Dir: dir, Identity: id})
	if err == nil || !strings.Contains(err.Error(), "another vouch daemon") {
		t.Fatalf("second writer: %v", err)
	}
}

func TestOtherKeyRefused(t *testing.T) {
	dir := logDir(t)
	l := openTest(t, dir, testIdentity(t, t.TempDir()))
	l.Close()
	other, _ := keys.Generate(t.TempDir(), "someone-else")
	oid, _ := keys.LoadIdentity(other.Key)
	_, err := Open(context.Background(), Options{Dir: dir, Identity: oid})
	if err == nil || !strings.Contains(err.Error(), "created for key") {
		t.Fatalf("other key: %v", err)
	}
}

func TestCatchUpRebuildsLostIndex(t *testing.T) {
	dir := logDir(t)
	id := testIdentity(t, t.TempDir())
	l := openTest(t, dir, id)
	for i := 0; i < 600; i++ {
		if _, err := l.Add(context.Background(), testClaim(i, "a")); err != nil {
			t.Fatal(err)
		}
	}
	l.Close()
	// The subject index is derived data: losing it must not let a
	// conflicting claim in.
	if err := os.Remove(filepath.Join(dir, "subjects.db")); err != nil {
		t.Fatal(err)
	}
	l = openTest(t, dir, id)
	defer l.Close()
	if _, err := l.Add(context.Background(), testClaim(599, "b")); !errors.Is(err, ErrConflict) {
		t.Fatalf("conflict after index rebuild: %v", err)
	}
	if r, err := l.Add(context.Background(), testClaim(300, "a")); err != nil || !r.Duplicate || r.Index != 300 {
		t.Fatalf("duplicate after rebuild: %+v %v", r, err)
	}
}

func TestServedLogPassesIndependentAudit(t *testing.T) {
	dir := logDir(t)
	id := testIdentity(t, t.TempDir())
	l := openTest(t, dir, id)
	defer l.Close()
	const n = 700 // several full tiles, a partial tile, a level-1 tile
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if _, err := l.Add(context.Background(), testClaim(i, "a")); err != nil {
				t.Error(err)
			}
		}(i)
	}
	wg.Wait()
	waitForCheckpoint(t, l, n)
	srv := httptest.NewServer(Handler(l.TilesDir()))
	defer srv.Close()
	res, err := tlogaudit.Audit(srv.URL+"/", id.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	if res.Size != n {
		t.Fatalf("audited %d entries, want %d", res.Size, n)
	}
	// The engine's private state is not served.
	for _, p := range []string{"/.state/treeState", "/../log.lock", "/tile/x/y", "/tile/0/000.p/0/extra"} {
		resp, err := srv.Client().Get(srv.URL + p)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != 404 {
				t.Errorf("%s: status %d", p, resp.StatusCode)
			}
		}
	}
}

func waitForCheckpoint(t testing.TB, l *Log, size uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		cp, err := l.Checkpoint(context.Background())
		if err == nil {
			lines := strings.SplitN(string(cp), "\n", 3)
			if len(lines) > 1 && lines[1] == fmt.Sprint(size) {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no checkpoint of size %d published", size)
}

func TestConcurrentSubmissionsOfOneSubjectLogOneOutput(t *testing.T) {
	dir := logDir(t)
	l := openTest(t, dir, testIdentity(t, t.TempDir()))
	defer l.Close()
	ctx := context.Background()
	// Forty submissions of each of two outputs for each of three subjects,
	// all at once: exactly one claim per subject is logged, and every
	// submission is either a duplicate of it or refused as a conflict.
	type outcome struct {
		subject, out string
		r            Result
		err          error
	}
	results := make(chan outcome, 240)
	var wg sync.WaitGroup
	for n := 0; n < 3; n++ {
		for i := 0; i < 80; i++ {
			out := []string{"a", "b"}[i%2]
			wg.Add(1)
			go func() {
				defer wg.Done()
				r, err := l.Add(ctx, testClaim(n, out))
				results <- outcome{testClaim(n, out).Subject, out, r, err}
			}()
		}
	}
	wg.Wait()
	close(results)
	winner := map[string]string{}
	fresh := map[string]int{}
	var all []outcome
	for o := range results {
		all = append(all, o)
		if o.err == nil && !o.r.Duplicate {
			fresh[o.subject]++
			winner[o.subject] = o.out
		}
	}
	for _, o := range all {
		if fresh[o.subject] != 1 {
			t.Fatalf("%s was logged %d times", o.subject, fresh[o.subject])
		}
		switch {
		case o.out == winner[o.subject] && o.err != nil:
			t.Fatalf("%s output %s agrees with the logged one but failed: %v", o.subject, o.out, o.err)
		case o.out != winner[o.subject] && !errors.Is(o.err, ErrConflict):
			t.Fatalf("%s output %s disagrees with the logged %s but was not refused: %+v %v", o.subject, o.out, winner[o.subject], o.r, o.err)
		}
	}
	if size, _ := l.Size(ctx); size != 3 {
		t.Fatalf("log size %d, want 3", size)
	}
}
