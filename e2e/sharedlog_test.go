package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/keys"
	"github.com/vouch-dev/vouch/submit"
	"github.com/vouch-dev/vouch/verdict"
	"github.com/vouch-dev/vouch/witness"
)

// fleetClaim is the OCI claim for image i; variant "b" is a conflicting
// output for the same subject.
func fleetClaim(i int, variant string) *claim.Claim {
	c := ociClaim(i)
	if variant == "b" {
		c.Digest = fmt.Sprintf("sha256:%064x", 1<<40+i)
	}
	return c
}

type fleetSubmission struct {
	i       int
	variant string
}

// fleetAnswer is a frontend's answer to one submission.
type fleetAnswer struct {
	fleetSubmission
	index    uint64
	conflict bool
}

// TestTwoFrontendsOneBucket: two `vouch serve` frontends with one key
// append to one log in an S3 bucket with a MariaDB database. Concurrent
// submissions are split across their submit sockets, the same subjects on
// both, half of them with conflicting outputs; frontend B is killed with
// SIGKILL mid-burst and the claims it never answered are resubmitted to A.
// The log read from the bucket holds every acknowledged claim exactly once
// at its acknowledged index and no subject twice, and a follower
// configured with the bucket's URL as the builder's log syncs it and
// trusts its claims.
func TestTwoFrontendsOneBucket(t *testing.T) {
	const subjects = 5000 // A submits all; B half of them (half agreeing, half conflicting) and 2500 of its own: 10,000 submissions
	log := newS3Log(t, "fleet")
	a := log.Start(t, t.TempDir(), "")
	b := log.Start(t, t.TempDir(), "")
	if a.VKey != b.VKey {
		t.Fatalf("the frontends sign with different keys: %s, %s", a.VKey, b.VKey)
	}
	clientA := submit.NewClient(filepath.Join(a.State, "vouch.sock"))
	clientB := submit.NewClient(filepath.Join(b.State, "vouch.sock"))

	var forA, forB []fleetSubmission
	for i := 0; i < subjects; i++ {
		forA = append(forA, fleetSubmission{i, "a"})
		switch i % 4 {
		case 1:
			forB = append(forB, fleetSubmission{i, "a"})
		case 3:
			forB = append(forB, fleetSubmission{i, "b"})
		default:
			forB = append(forB, fleetSubmission{subjects + i, "a"})
		}
	}

	var (
		mu       sync.Mutex
		answers  []fleetAnswer
		answered = map[fleetSubmission]bool{}
		failures []string
		killed   atomic.Bool
	)
	// run submits subs through c with 32 workers; onAnswer runs after each
	// answer is recorded.
	run := func(c *submit.Client, subs []fleetSubmission, mayFail func() bool, onAnswer func(n int)) {
		var next atomic.Int64
		var wg sync.WaitGroup
		for range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					k := int(next.Add(1)) - 1
					if k >= len(subs) {
						return
					}
					s := subs[k]
					ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
					idx, _, err := c.Submit(ctx, fleetClaim(s.i, s.variant))
					cancel()
					conflict := err != nil && strings.Contains(err.Error(), "(409)")
					mu.Lock()
					if err != nil && !conflict {
						if !mayFail() {
							failures = append(failures, fmt.Sprintf("%+v: %v", s, err))
						}
						mu.Unlock()
						continue
					}
					answers = append(answers, fleetAnswer{s, idx, conflict})
					answered[s] = true
					n := len(answers)
					mu.Unlock()
					onAnswer(n)
				}
			}()
		}
		wg.Wait()
	}

	start := time.Now()
	var wg sync.WaitGroup
	wg.Add(2)
	var answeredByB atomic.Int64
	go func() {
		defer wg.Done()
		run(clientA, forA, func() bool { return false }, func(int) {})
	}()
	go func() {
		defer wg.Done()
		run(clientB, forB, killed.Load, func(int) {
			if answeredByB.Add(1) == int64(len(forB)/3) {
				killed.Store(true)
				b.Kill9()
			}
		})
	}()
	wg.Wait()
	burst := time.Since(start)
	if !killed.Load() {
		t.Fatal("frontend B was not killed mid-burst")
	}
	if len(failures) > 0 {
		t.Fatalf("%d submissions failed, e.g. %s", len(failures), failures[0])
	}
	// What B never answered, a client retries through A.
	var retry []fleetSubmission
	for _, s := range forB {
		if !answered[s] {
			retry = append(retry, s)
		}
	}
	run(clientA, retry, func() bool { return false }, func(int) {})
	t.Logf("%d submissions across two frontends in %v (B killed after %d answers); %d of B's unanswered resubmitted to A in %v",
		len(forA)+len(forB)-len(retry), burst, len(forB)/3, len(retry), time.Since(start)-burst)
	if len(failures) > 0 {
		t.Fatalf("%d resubmissions failed, e.g. %s", len(failures), failures[0])
	}

	want := subjects + subjects/2
	res, claims := waitForClaims(t, a, want)
	if len(claims) != want {
		t.Errorf("the bucket's log holds %d claims, want %d (one per subject)", len(claims), want)
	}
	at := map[string]int{}
	for i, c := range claims {
		if j, dup := at[c.Key()]; dup {
			t.Fatalf("%s is logged twice, at %d and %d", c.Subject, j, i)
		}
		at[c.Key()] = i
	}
	conflicts := 0
	for _, ans := range answers {
		c := fleetClaim(ans.i, ans.variant)
		i, ok := at[c.Key()]
		switch {
		case !ok:
			t.Fatalf("acknowledged %+v is not in the log", ans)
		case ans.conflict:
			conflicts++
			if claims[i].Agrees(c) {
				t.Fatalf("%+v was refused as a conflict, but the log holds that output", ans)
			}
		case uint64(i) != ans.index || !claims[i].Agrees(c):
			t.Fatalf("%+v acknowledged at %d, the log has %s at %d", ans, ans.index, claims[i].Output(), i)
		}
	}
	if conflicts == 0 {
		t.Fatal("no submission met a conflict: the frontends did not race")
	}
	t.Logf("%d answers checked against the log (%d conflicts refused); log size %d", len(answers), conflicts, res.Size)

	// A follower that knows only the bucket's URL.
	state := t.TempDir()
	cfg := filepath.Join(t.TempDir(), "follower.toml")
	text := fmt.Sprintf("state = %q\nlisten = \"127.0.0.1:0\"\n\n[[builder]]\nname = \"fleet\"\nvkey = %q\nlog = %q\n\n[quorum]\nmin = 1\n", state, a.VKey, log.bucketURL)
	if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, code := vouch(t, "sync", "--config", cfg); code != 0 {
		t.Fatalf("vouch sync from the bucket: exit %d\n%s", code, out)
	}
	probe := claims[len(claims)-1]
	v, _ := verdictJSONKind(t, cfg, string(probe.Kind), probe.Subject)
	if v.Outcome != verdict.Trusted {
		t.Fatalf("the follower's verdict on %s: %+v, want trusted", probe.Subject, v)
	}
}

// TestBenchFollowerSyncFromBucket measures how fast a follower (vouch
// sync, a fresh index each time) replicates and verifies a shared log
// read from the S3 server directly and read through a vouch frontend's
// /log/, alternating the two. Run with
//
//	VOUCH_BENCH_SYNC=<claims> go test ./e2e -run TestBenchFollowerSyncFromBucket -v
func TestBenchFollowerSyncFromBucket(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv("VOUCH_BENCH_SYNC"))
	if n == 0 {
		t.Skip("set VOUCH_BENCH_SYNC=<claims> to run")
	}
	log := newS3Log(t, "fleet")
	d := log.Start(t, t.TempDir(), "")
	client := submit.NewClient(filepath.Join(d.State, "vouch.sock"))
	var next atomic.Int64
	var wg sync.WaitGroup
	for range 64 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				if _, _, err := client.Submit(context.Background(), fleetClaim(i, "a")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	waitForClaims(t, d, n)
	for round := 0; round < 3; round++ {
		for _, src := range []struct{ name, url string }{{"bucket", log.bucketURL}, {"frontend", d.LogURL()}} {
			state := t.TempDir()
			cfg := filepath.Join(t.TempDir(), "follower.toml")
			text := fmt.Sprintf("state = %q\n\n[[builder]]\nname = \"fleet\"\nvkey = %q\nlog = %q\n", state, d.VKey, src.url)
			if err := os.WriteFile(cfg, []byte(text), 0o644); err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			if out, code := vouch(t, "sync", "--config", cfg); code != 0 {
				t.Fatalf("vouch sync from the %s: exit %d\n%s", src.name, code, out)
			}
			el := time.Since(start)
			last := fleetClaim(n-1, "a")
			if v, _ := verdictJSONKind(t, cfg, string(last.Kind), last.Subject); v.Outcome != verdict.Trusted {
				t.Fatalf("after syncing from the %s, the last claim is %s, want trusted", src.name, v.Outcome)
			}
			t.Logf("round %d: %d claims synced from the %-8s in %v: %.0f claims/s", round, n, src.name, el.Round(time.Millisecond), float64(n)/el.Seconds())
		}
	}
}

// TestWitnessedSharedLog: both frontends of a shared log have its
// checkpoints cosigned by a witness (whichever publishes a checkpoint asks
// it), the checkpoint in the bucket carries the cosignature, and a
// follower that requires the witness and reads the bucket trusts the
// claims submitted through either frontend.
func TestWitnessedSharedLog(t *testing.T) {
	keyDir := t.TempDir()
	if out, code := vouch(t, "keygen", "--name", "wit", "--dir", keyDir); code != 0 {
		t.Fatal(out)
	}
	witID, err := keys.LoadIdentity(filepath.Join(keyDir, "wit.key"))
	if err != nil {
		t.Fatal(err)
	}
	witKey, err := witness.CosignatureVerifierKey(witID)
	if err != nil {
		t.Fatal(err)
	}
	witAddr := freeAddr(t)
	witEntry := fmt.Sprintf("\n[[witness]]\nname = \"wit\"\nvkey = %q\nurl = \"http://%s/witness/\"\n", witKey, witAddr)

	log := newS3Log(t, "fleet")
	log.config += witEntry
	a := log.Start(t, t.TempDir(), "")
	b := log.Start(t, t.TempDir(), "")
	builderEntry := fmt.Sprintf("[[builder]]\nname = \"fleet\"\nvkey = %q\nlog = %q\n", a.VKey, log.bucketURL)
	startDaemon(t, t.TempDir(), "", "--config", writeConfig(t,
		fmt.Sprintf("key = %q\nserve-witness = true\n", filepath.Join(keyDir, "wit.key"))+builderEntry),
		"--listen", witAddr)

	const n = 20
	var subjects []string
	for i := range n {
		d := []*daemon{a, b}[i%2]
		c := fleetClaim(i, "a")
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if _, _, err := submit.NewClient(filepath.Join(d.State, "vouch.sock")).Submit(ctx, c); err != nil {
			t.Fatal(err)
		}
		cancel()
		subjects = append(subjects, c.Subject)
	}

	logV, err := note.NewVerifier(a.VKey)
	if err != nil {
		t.Fatal(err)
	}
	witV, err := fnote.NewVerifierForCosignatureV1(witKey)
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for {
		raw, err := httpGet(log.bucketURL + "checkpoint")
		if err == nil {
			if nt, err := note.Open(raw, note.VerifierList(logV, witV)); err == nil && len(nt.Sigs) == 2 && strings.Contains(nt.Text, fmt.Sprintf("\n%d\n", n)) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bucket never held a witnessed checkpoint of size %d; last:\n%s\nfrontend A:\n%s", n, raw, a.output.String())
		}
		time.Sleep(200 * time.Millisecond)
	}

	fState := t.TempDir()
	cfg := writeConfig(t, fmt.Sprintf("state = %q\n", fState)+builderEntry+witEntry+"[quorum]\nmin = 1\nwitnesses = 1\n")
	if out, code := vouch(t, "sync", "--config", cfg); code != 0 {
		t.Fatalf("vouch sync of the witnessed bucket: exit %d\n%s", code, out)
	}
	for _, s := range subjects {
		if v, code := verdictJSONKind(t, cfg, string(claim.KindOCI), s); v.Outcome != verdict.Trusted || code != 0 {
			t.Fatalf("%s: %s (exit %d): %s", s, v.Outcome, code, v.Reason)
		}
	}
}
