package logmonitor

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vouch-dev/vouch/buildlog"
	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/follow"
	"github.com/vouch-dev/vouch/index"
	"github.com/vouch-dev/vouch/internal/keytest"
	"github.com/vouch-dev/vouch/keys"
)

// servedLog is a real builder log signed by id, served on 127.0.0.1.
func servedLog(t *testing.T, id *keys.Identity) (*buildlog.Log, string) {
	l, err := buildlog.Open(context.Background(), buildlog.Options{Dir: t.TempDir(), Identity: id, CheckpointInterval: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	srv := httptest.NewServer(buildlog.Handler(l.TilesDir()))
	t.Cleanup(srv.Close)
	return l, srv.URL + "/"
}

// grow adds claims until the log's published checkpoint has size n; seed
// makes the outputs differ between histories.
func grow(t *testing.T, l *buildlog.Log, from, n int, seed string) {
	ctx := context.Background()
	errs := make(chan error, n-from)
	for i := from; i < n; i++ {
		go func() { // concurrently, as many builds would: each Add waits for its batch
			c := &claim.Claim{Kind: claim.KindOCI, Subject: fmt.Sprintf("github.com/x/y@%040d#img?system=x86_64-linux", i), Digest: "sha256:" + fmt.Sprintf("%s%060d", seed, i)}
			_, err := l.Add(ctx, c)
			errs <- err
		}()
	}
	for i := from; i < n; i++ {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if cp, err := l.Checkpoint(ctx); err == nil && strings.Contains(string(cp), fmt.Sprintf("\n%d\n", n)) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no checkpoint of size %d", n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestCheckAgainstAPin(t *testing.T) {
	ctx := context.Background()
	id, _ := keytest.Identity(t, t.TempDir(), "alice")
	honest, honestURL := servedLog(t, id)
	grow(t, honest, 0, 300, "aaaa") // a full tile and a partial one
	first, err := Check(ctx, Options{URL: honestURL, VKey: id.VerifierKey})
	if err != nil || !first.Sound() || first.Checkpoint.Size != 300 {
		t.Fatalf("first check: %+v %v", first, err)
	}
	pin := first.Checkpoint

	grow(t, honest, 300, 600, "aaaa")
	res, err := Check(ctx, Options{URL: honestURL, VKey: id.VerifierKey, Pinned: pin})
	if err != nil || !res.Sound() || res.Extends != "extended by 300 entries" {
		t.Fatalf("a grown log: %+v %v", res, err)
	}

	// The same key, another history, longer than the pin.
	forked, forkedURL := servedLog(t, id)
	grow(t, forked, 0, 700, "bbbb")
	res, err = Check(ctx, Options{URL: forkedURL, VKey: id.VerifierKey, Pinned: pin})
	if err != nil || res.Sound() || len(res.Evidence) != 1 || res.Evidence[0].Kind != index.EvidenceFork {
		t.Fatalf("a fork: %+v %v", res, err)
	}
	msg, err := follow.VerifyEvidence(res.Evidence[0], id.VerifierKey)
	if err != nil || !strings.HasPrefix(msg, "proven:") {
		t.Fatalf("the fork evidence does not check with the key alone: %q %v", msg, err)
	}

	// A pin signed by another key is refused, not compared.
	other, _ := keytest.Identity(t, t.TempDir(), "alice")
	path := filepath.Join(t.TempDir(), "pin")
	if err := SavePin(path, pin); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadPin(path, other.VerifierKey); err == nil {
		t.Fatal("a pin that does not verify with the key was accepted")
	}
	if got, err := ReadPin(path, id.VerifierKey); err != nil || got.Size != 300 || got.Root != pin.Root {
		t.Fatalf("ReadPin after SavePin: %+v %v", got, err)
	}
}

// A log that is unreachable establishes nothing: an error, no evidence.
func TestCheckUnreachable(t *testing.T) {
	id, _ := keytest.Identity(t, t.TempDir(), "alice")
	srv := httptest.NewServer(http.NotFoundHandler())
	srv.Close()
	res, err := Check(context.Background(), Options{URL: srv.URL + "/", VKey: id.VerifierKey})
	if err == nil || (res != nil && len(res.Evidence) > 0) {
		t.Fatalf("unreachable log: %+v %v", res, err)
	}
}
