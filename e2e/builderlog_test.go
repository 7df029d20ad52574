package e2e

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/internal/tlogaudit"
	"github.com/vouch-dev/vouch/submit"
)

// worldAttrs are the world's derivations a builder builds in these tests.
var worldAttrs = []string{"a", "b", "c", "multi", "multi.dev", "ca", "noise", "tamperme"}

// TestHookLogsEveryOutput: with post-build-hook = vouch hook, building the
// world puts every output in the log, each claim equal to what Nix says,
// and the log as followers read it (the daemon's /log/, or the bucket)
// passes an independent audit — with the log on the local disk and in an
// S3 bucket with a database.
func TestHookLogsEveryOutput(t *testing.T) {
	forEachLogBackend(t, testHookLogsEveryOutput)
}

func testHookLogsEveryOutput(t *testing.T, log *builderLog) {
	state, store := t.TempDir(), t.TempDir()
	d := log.Start(t, state, store)
	outs := nixBuild(t, store, hookScript(t, state), nil, worldAttrs...)
	// multi has two outputs; ca adds a nix-ca claim besides its nix claim.
	if len(outs) != 8 {
		t.Fatalf("nix-build printed %d outputs, want 8: %v", len(outs), outs)
	}
	res, claims := waitForClaims(t, d, 9)
	if len(claims) != 9 {
		t.Fatalf("log holds %d claims, want 9", len(claims))
	}
	info := nixPathInfo(t, store, outs...)
	byPath := map[string]*claim.Claim{}
	var caClaims []*claim.Claim
	for _, c := range claims {
		switch c.Kind {
		case claim.KindNix:
			byPath[c.Subject] = c
		case claim.KindNixCA:
			caClaims = append(caClaims, c)
		}
	}
	for _, p := range outs {
		c, ok := byPath[p]
		if !ok {
			t.Errorf("%s is not in the log", p)
			continue
		}
		pi := info[p]
		var refs []string
		for _, r := range pi.References {
			refs = append(refs, filepath.Base(r))
		}
		sort.Strings(refs)
		if c.NarHash != pi.NarHash || c.NarSize != pi.NarSize || strings.Join(c.References, " ") != strings.Join(refs, " ") {
			t.Errorf("%s: claim %s, nix path-info says narHash=%s narSize=%d refs=%v", p, c.Output(), pi.NarHash, pi.NarSize, refs)
		}
	}
	if len(caClaims) != 1 || !strings.HasSuffix(caClaims[0].OutPath, "-ca") || !strings.HasSuffix(caClaims[0].Subject, "!out") {
		t.Fatalf("want one nix-ca claim for the ca derivation, got %+v", caClaims)
	}
	if ca := caClaims[0]; ca.NarHash != info[ca.OutPath].NarHash {
		t.Errorf("nix-ca claim nar-hash %s, nix says %s", ca.NarHash, info[ca.OutPath].NarHash)
	}
	if res.Size != 9 {
		t.Fatalf("checkpoint size %d", res.Size)
	}
}

// TestDaemonDownDuringBuilds: builds succeed while the daemon is down, and
// their claims appear once it is back (on both log backends).
func TestDaemonDownDuringBuilds(t *testing.T) {
	forEachLogBackend(t, testDaemonDownDuringBuilds)
}

func testDaemonDownDuringBuilds(t *testing.T, log *builderLog) {
	state, store := t.TempDir(), t.TempDir()
	start := time.Now()
	outs := nixBuild(t, store, hookScript(t, state), nil, "a", "b", "c")
	if len(outs) != 3 {
		t.Fatalf("outputs %v", outs)
	}
	t.Logf("3 builds with the daemon down took %v", time.Since(start))
	d := log.Start(t, state, store)
	_, claims := waitForClaims(t, d, 3)
	got := map[string]bool{}
	for _, c := range claims {
		got[c.Subject] = true
	}
	for _, p := range outs {
		if !got[p] {
			t.Errorf("%s was built while the daemon was down and never logged", p)
		}
	}
}

func ociClaim(i int) *claim.Claim {
	commit := fmt.Sprintf("%040x", i)
	return &claim.Claim{
		Kind:    claim.KindOCI,
		Subject: claim.OCISubject("example.org/burst", commit, "image", "x86_64-linux"),
		Digest:  fmt.Sprintf("sha256:%064x", i),
	}
}

// TestKill9DuringBurst: kill -9 during 10,000 concurrent submissions loses
// no acknowledged claim, and the log after restart is consistent with the
// checkpoint served before the kill.
func TestKill9DuringBurst(t *testing.T) {
	state := t.TempDir()
	d := startDaemon(t, state, "")
	client := submit.NewClient(filepath.Join(state, "vouch.sock"))

	const total, workers = 10000, 64
	type ack struct {
		index uint64
		c     *claim.Claim
	}
	var (
		mu    sync.Mutex
		acked []ack
		next  atomic.Int64
		wg    sync.WaitGroup
	)
	killAt := int64(3000 + time.Now().UnixNano()%3000)
	var killed atomic.Bool
	var before []byte
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= total {
					return
				}
				c := ociClaim(int(i))
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				idx, _, err := client.Submit(ctx, c)
				cancel()
				if err != nil {
					if !killed.Load() {
						t.Errorf("submission %d failed before the kill: %v", i, err)
					}
					continue
				}
				mu.Lock()
				acked = append(acked, ack{idx, c})
				n := len(acked)
				mu.Unlock()
				if int64(n) == killAt {
					cp, err := httpGet(d.LogURL() + "checkpoint")
					if err == nil {
						before = cp
					}
					killed.Store(true)
					d.Kill9()
				}
			}
		}()
	}
	wg.Wait()
	if !killed.Load() || before == nil {
		t.Fatalf("the daemon was not killed mid-burst (acked %d)", len(acked))
	}
	t.Logf("killed after %d acknowledged claims (%d acked in all)", killAt, len(acked))

	d2 := startDaemon(t, state, "")
	var maxIdx uint64
	for _, a := range acked {
		maxIdx = max(maxIdx, a.index)
	}
	res, claims := waitForClaims(t, d2, int(maxIdx)+1)
	for _, a := range acked {
		if !claims[a.index].Agrees(a.c) {
			t.Fatalf("acknowledged claim at index %d is not in the log after kill -9: log has %s", a.index, claims[a.index].Subject)
		}
	}
	oldSize, oldRoot, err := tlogaudit.ParseCheckpoint(before, d2.VKey)
	if err != nil {
		t.Fatal(err)
	}
	if err := res.ConsistentWith(oldSize, oldRoot); err != nil {
		t.Fatalf("checkpoint after restart (size %d) is not consistent with the one before the kill (size %d): %v", res.Size, oldSize, err)
	}
	// Retrying acknowledged claims is idempotent: same index, nothing new.
	for _, a := range acked[:100] {
		idx, dup, err := client.Submit(context.Background(), a.c)
		if err != nil || !dup || idx != a.index {
			t.Fatalf("resubmitting index %d: idx=%d dup=%v err=%v", a.index, idx, dup, err)
		}
	}
	// No subject appears twice.
	seen := map[string]int{}
	for i, c := range claims {
		if j, dup := seen[c.Key()]; dup {
			t.Fatalf("subject %s logged at %d and %d", c.Subject, j, i)
		}
		seen[c.Key()] = i
	}
}

// TestBadInput: a conflicting resubmission, a malformed request, a path
// outside the store and a corrupt state directory each get a clear error,
// and nothing already logged changes.
func TestBadInput(t *testing.T) {
	state, store := t.TempDir(), t.TempDir()
	outs := nixBuild(t, store, "", nil, "tamperme", "a")
	d := startDaemon(t, state, store)
	out, code := vouch(t, "submit", "--state", state, "--store", store, outs[0], outs[1])
	if code != 0 {
		t.Fatalf("submit: %d %s", code, out)
	}
	before, _ := waitForClaims(t, d, 2)

	// The builder's own output changes on disk: resubmitting it is refused.
	var tampered string
	for _, p := range outs {
		if strings.HasSuffix(p, "-tamperme") {
			tampered = p
		}
	}
	f := filepath.Join(store, tampered, "file")
	os.Chmod(filepath.Dir(f), 0o755)
	os.Chmod(f, 0o644)
	if err := os.WriteFile(f, []byte("tampered\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	out, code = vouch(t, "submit", "--state", state, "--store", store, tampered)
	if code == 0 || !strings.Contains(out, "different output") || !strings.Contains(out, "logged claim is kept") {
		t.Fatalf("conflicting resubmission: exit %d\n%s", code, out)
	}

	// A path outside the store, and a sub-path of a store path.
	for _, bad := range []string{"/etc/passwd", tampered + "/file", "nix/store/x"} {
		out, code = vouch(t, "submit", "--state", state, "--store", store, bad)
		if code == 0 || !strings.Contains(out, "not a store path") {
			t.Fatalf("submit %s: exit %d\n%s", bad, code, out)
		}
	}

	// Malformed requests on the socket.
	sock := filepath.Join(state, "vouch.sock")
	for _, body := range []string{"{not json", `{"paths": "x"}`, `{"paths": [], "extra": 1}`} {
		st, resp := postSocket(t, sock, "/v1/paths", body)
		if st != 400 || !strings.Contains(resp, "malformed request") && !strings.Contains(resp, "want 1 to") {
			t.Fatalf("malformed %q: %d %s", body, st, resp)
		}
	}
	if st, resp := postSocket(t, sock, "/v1/claims", "vouch-claim/v1\nkind nix\n"); st != 400 || !strings.Contains(resp, "malformed claim") {
		t.Fatalf("malformed claim: %d %s", st, resp)
	}

	after, _ := waitForClaims(t, d, 2)
	if after.Size != before.Size || after.Root != before.Root {
		t.Fatalf("the log changed: %d→%d", before.Size, after.Size)
	}
	d.Stop()

	// A corrupt state directory at start-up: a clear error, and the log is
	// left as it was.
	treeState := filepath.Join(state, "log", "tiles", ".state", "treeState")
	saved, err := os.ReadFile(treeState)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(treeState, nil, 0o644)
	if _, err := tryStartDaemon(t, state, store); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Fatalf("start with an empty treeState: %v", err)
	}
	os.WriteFile(treeState, saved, 0o644)

	subjects := filepath.Join(state, "log", "subjects.db")
	savedDB, _ := os.ReadFile(subjects)
	os.WriteFile(subjects, []byte("garbage garbage garbage"), 0o600)
	if _, err := tryStartDaemon(t, state, store); err == nil || !strings.Contains(err.Error(), "subject index") {
		t.Fatalf("start with a garbage subject index: %v", err)
	}
	os.WriteFile(subjects, savedDB, 0o600)

	d = startDaemon(t, state, store)
	again, _ := waitForClaims(t, d, 2)
	if again.Root != before.Root {
		t.Fatal("the log changed across the failed starts")
	}
}

func httpGet(url string) ([]byte, error) {
	resp, err := httpClient.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return nil, errors.New(resp.Status)
	}
	return []byte(readAll(resp.Body)), nil
}

// TestSubmitClosureReadsTheDaemonsStore: vouch submit --closure without
// --store reads the closure from the store the running daemon logs from
// (a chroot store here), and logs every path of it.
func TestSubmitClosureReadsTheDaemonsStore(t *testing.T) {
	state, store := t.TempDir(), t.TempDir()
	d := startDaemon(t, state, store)
	c := nixBuild(t, store, "", nil, "c")[0]
	out, code := vouch(t, "submit", "--closure", "--state", state, c)
	if code != 0 {
		t.Fatalf("vouch submit --closure: exit %d\n%s", code, out)
	}
	_, claims := waitForClaims(t, d, 3) // c, b and a
	got := map[string]bool{}
	for _, cl := range claims {
		got[cl.Subject[len("/nix/store/")+33:]] = true
	}
	if !got["a"] || !got["b"] || !got["c"] {
		t.Errorf("logged %v, want a, b and c", got)
	}
}
