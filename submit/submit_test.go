package submit

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vouch-dev/vouch/buildlog"
	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/internal/keytest"
)

// storeOf is a Claimer over a fixed set of outputs: the store on disk and
// its hashing are nixstore's (tested there, against real Nix); here the
// server, the client and a real log are under test.
type storeOf map[string]*claim.Claim

func (s storeOf) Claim(_ context.Context, p string) (*claim.Claim, error) {
	if c, ok := s[p]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("%s is not in the store", p)
}

func storePath(i int) string { return fmt.Sprintf("/nix/store/%032d-p%d", i, i) }

func nixClaim(i int, output string) *claim.Claim {
	h := strings.Repeat(output, 52)[:52]
	return &claim.Claim{Kind: claim.KindNix, Subject: storePath(i), NarHash: "sha256:" + h, NarSize: uint64(100 + i)}
}

// serve runs a Server over a real builder log on a socket in a fresh
// directory and returns a client for it.
func serve(t *testing.T, store storeOf) (*Client, string) {
	t.Helper()
	id, _ := keytest.Identity(t, "", "builder")
	l, err := buildlog.Open(context.Background(), buildlog.Options{Dir: t.TempDir(), Identity: id, CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(t.TempDir(), "vouch.sock")
	ln, err := Listen(sock, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (&Server{Log: l, Store: store}).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		l.Close()
	})
	return NewClient(sock), sock
}

// TestConcurrentSubmissions: many submitters at once, by path and by
// claim, each acknowledged once with its own index; resubmitting is a
// no-op that returns the same index; another output for a logged subject
// is a conflict.
func TestConcurrentSubmissions(t *testing.T) {
	store := storeOf{}
	for i := range 200 {
		store[storePath(i)] = nixClaim(i, "1")
	}
	c, _ := serve(t, store)
	ctx := context.Background()

	var mu sync.Mutex
	indexes := map[uint64]string{}
	record := func(subject string, index uint64) {
		mu.Lock()
		defer mu.Unlock()
		if other, taken := indexes[index]; taken && other != subject {
			t.Errorf("index %d acknowledged for %s and %s", index, other, subject)
		}
		indexes[index] = subject
	}
	var wg sync.WaitGroup
	for g := range 20 {
		wg.Go(func() { // by path, ten paths a request
			var paths []string
			for i := g * 10; i < g*10+10; i++ {
				paths = append(paths, storePath(i))
			}
			res, err := c.SubmitPaths(ctx, paths)
			if err != nil {
				t.Error(err)
				return
			}
			for _, r := range res {
				if r.Error != "" {
					t.Errorf("%s: %s", r.Subject, r.Error)
				}
				record(r.Subject, r.Index)
			}
		})
		wg.Go(func() { // by claim
			cl := &claim.Claim{Kind: claim.KindOCI, Subject: fmt.Sprintf("github.com/x/y@%040d#img?system=x86_64-linux", g), Digest: fmt.Sprintf("sha256:%064d", g)}
			index, dup, err := c.Submit(ctx, cl)
			if err != nil || dup {
				t.Errorf("oci claim %d: %v (duplicate %v)", g, err, dup)
				return
			}
			record(cl.Subject, index)
		})
	}
	wg.Wait()
	if len(indexes) != 220 {
		t.Fatalf("%d distinct indexes acknowledged, want 220", len(indexes))
	}

	// Resubmitting is idempotent: the same index, flagged duplicate.
	res, err := c.SubmitPaths(ctx, []string{storePath(7)})
	if err != nil || !res[0].Duplicate || indexes[res[0].Index] != storePath(7) {
		t.Errorf("resubmission: %+v, %v", res, err)
	}
	// Another output for a logged subject is refused as a conflict.
	store[storePath(7)] = nixClaim(7, "2")
	res, err = c.SubmitPaths(ctx, []string{storePath(7)})
	if err != nil || !res[0].Conflict || res[0].Error == "" {
		t.Errorf("a conflicting output: %+v, %v", res, err)
	}
}

// TestBadRequestsAndSocket: malformed input is refused whole with a reason,
// nix claims must come as paths, the socket is the daemon's user's only,
// and a second server cannot take a live socket.
func TestBadRequestsAndSocket(t *testing.T) {
	store := storeOf{storePath(1): nixClaim(1, "1")}
	c, sock := serve(t, store)
	ctx := context.Background()
	if _, err := c.SubmitPaths(ctx, []string{storePath(1), "/etc/passwd"}); err == nil || !strings.Contains(err.Error(), "not a store path") {
		t.Errorf("a path outside the store: %v", err)
	}
	if _, _, err := c.Submit(ctx, nixClaim(1, "1")); err == nil || !strings.Contains(err.Error(), "/v1/paths") {
		t.Errorf("a nix claim sent whole: %v", err)
	}
	res, err := c.SubmitPaths(ctx, []string{storePath(2)})
	if err != nil || !strings.Contains(res[0].Error, "not in the store") {
		t.Errorf("a path the store does not hold: %+v, %v", res, err)
	}
	fi, err := os.Stat(sock)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket mode %v (%v), want 0600", fi.Mode().Perm(), err)
	}
	if _, err := Listen(sock, ""); err == nil || !strings.Contains(err.Error(), "in use") {
		t.Errorf("a second listener on a live socket: %v", err)
	}
}
