package buildlog

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/internal/keytest"
	"github.com/vouch-dev/vouch/internal/testservers"
	"github.com/vouch-dev/vouch/internal/tlogaudit"
	"github.com/vouch-dev/vouch/keys"
)

// sharedWorld is a MariaDB server and an S3 server with one empty log's
// database and public bucket.
type sharedWorld struct {
	shared    Shared
	bucketURL string
}

func startSharedWorld(t *testing.T) sharedWorld {
	t.Helper()
	db := testservers.StartMariaDB(t)
	s3 := testservers.StartS3(t)
	return sharedWorld{
		shared: Shared{
			Bucket:    "vouch-log",
			Endpoint:  s3.Endpoint,
			AccessKey: s3.AccessKey,
			SecretKey: s3.SecretKey,
			DSN:       db.NewDatabase(t, "vouchlog"),
		},
		bucketURL: s3.NewPublicBucket(t, "vouch-log"),
	}
}

func openSharedTest(t testing.TB, sh Shared, id *keys.Identity) *Log {
	t.Helper()
	// tessera's AWS driver publishes checkpoints at most once a second.
	l, err := Open(context.Background(), Options{Identity: id, Shared: &sh,
		CheckpointInterval: time.Second, BatchMaxAge: 5 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestSharedLogServedFromBucket: on S3 + MariaDB, Add keeps one output per
// subject and answers retries as duplicates, and the log read from the
// bucket's URL directly — and through the frontend's reader — passes an
// independent audit with the tlog-tiles cache headers.
func TestSharedLogServedFromBucket(t *testing.T) {
	w := startSharedWorld(t)
	id := testIdentity(t, t.TempDir())
	l := openSharedTest(t, w.shared, id)
	defer l.Close()
	ctx := context.Background()

	const n = 300 // a full entry bundle and a partial one
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := l.Add(ctx, testClaim(i, "a")); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	r, err := l.Add(ctx, testClaim(7, "a"))
	if err != nil || !r.Duplicate {
		t.Fatalf("resubmission: %+v %v, want a duplicate", r, err)
	}
	_, err = l.Add(ctx, testClaim(7, "b"))
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Index != r.Index {
		t.Fatalf("conflicting claim: %v, want a conflict with index %d", err, r.Index)
	}
	if c, idx, ok, err := l.Lookup(claim.KindNix, testClaim(7, "a").Subject); err != nil || !ok || idx != r.Index || !c.Agrees(testClaim(7, "a")) {
		t.Fatalf("Lookup: %v %d %v %v", c, idx, ok, err)
	}
	waitForCheckpoint(t, l, n)

	frontend := httptest.NewServer(l.Handler())
	defer frontend.Close()
	for _, base := range []string{w.bucketURL, frontend.URL + "/"} {
		res, err := tlogaudit.Audit(base, id.VerifierKey)
		if err != nil {
			t.Fatalf("audit of %s: %v", base, err)
		}
		if res.Size != n {
			t.Fatalf("%s: audited %d entries, want %d", base, res.Size, n)
		}
		seen := map[string]bool{}
		for i, e := range res.Entries {
			c, err := claim.Parse(e)
			if err != nil {
				t.Fatalf("entry %d: %v", i, err)
			}
			if seen[c.Key()] {
				t.Fatalf("%s is logged twice", c.Key())
			}
			seen[c.Key()] = true
		}
		for path, want := range map[string]string{
			"checkpoint":            "no-cache",
			"tile/entries/000":      "immutable",
			"tile/0/000":            "immutable",
			"tile/entries/001.p/44": "max-age=",
			"tile/0/001.p/44":       "max-age=",
		} {
			resp, err := http.Get(base + path)
			if err != nil {
				t.Fatal(err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || !strings.Contains(resp.Header.Get("Cache-Control"), want) {
				t.Errorf("%s%s: status %d, Cache-Control %q, want it to contain %q", base, path, resp.StatusCode, resp.Header.Get("Cache-Control"), want)
			}
		}
	}
	for _, p := range []string{"/tile/0/999", "/.state", "/tile/x/y"} {
		resp, err := http.Get(frontend.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 404 {
			t.Errorf("frontend %s: status %d, want 404", p, resp.StatusCode)
		}
	}
}

// TestSharedLogRefusesAnotherKey: a frontend with a different key would
// sign a fork of the log; it is refused at start.
func TestSharedLogRefusesAnotherKey(t *testing.T) {
	w := startSharedWorld(t)
	l := openSharedTest(t, w.shared, testIdentity(t, t.TempDir()))
	l.Close()
	other, _ := keytest.Identity(t, t.TempDir(), "builder-other")
	_, err := Open(context.Background(), Options{Identity: other, Shared: &w.shared})
	if err == nil || !strings.Contains(err.Error(), "builder-other") {
		t.Fatalf("second key: %v, want a refusal naming it", err)
	}
}

// submission is one claim a frontend is asked to log, and what it said.
type submission struct {
	N       int    `json:"n"`
	Out     string `json:"out"`
	Outcome string `json:"outcome"` // "logged", "duplicate", "conflict"
	Index   uint64 `json:"index"`
}

// burst is the workload of TestTwoFrontendsConcurrentBurst: for every
// subject, frontend 0 submits output "a"; every second subject is also
// submitted by frontend 1, alternately agreeing ("a") and conflicting
// ("b"), so both frontends race on the same subjects.
func burst(subjects, frontend int) []submission {
	var s []submission
	for i := 0; i < subjects; i++ {
		switch {
		case frontend == 0:
			s = append(s, submission{N: i, Out: "a"})
		case i%4 == 1:
			s = append(s, submission{N: i, Out: "a"})
		case i%4 == 3:
			s = append(s, submission{N: i, Out: "b"})
		case frontend == 1:
			s = append(s, submission{N: subjects + i, Out: "a"})
		}
	}
	return s
}

// submitAll submits subs to l with the given concurrency and reports each
// answer as it comes.
func submitAll(ctx context.Context, l *Log, subs []submission, workers int, report func(submission, error)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= len(subs) || ctx.Err() != nil {
					return
				}
				s := subs[i]
				r, err := l.Add(ctx, testClaim(s.N, s.Out))
				switch {
				case err == nil && r.Duplicate:
					s.Outcome, s.Index = "duplicate", r.Index
				case err == nil:
					s.Outcome, s.Index = "logged", r.Index
				case errors.Is(err, ErrConflict):
					s.Outcome = "conflict"
				}
				report(s, err)
			}
		}()
	}
	wg.Wait()
}

// TestFrontendProcess is the frontend that TestTwoFrontendsConcurrentBurst
// runs in a child process (so that it can be killed with SIGKILL): it
// submits its share of the burst and prints every answer as a JSON line
// once Add has returned it.
func TestFrontendProcess(t *testing.T) {
	cfg := os.Getenv("VOUCH_TEST_FRONTEND")
	if cfg == "" {
		t.Skip("run by TestTwoFrontendsConcurrentBurst")
	}
	var p struct {
		Shared   Shared
		Key      string
		Subjects int
	}
	if err := json.Unmarshal([]byte(cfg), &p); err != nil {
		t.Fatal(err)
	}
	id, err := keys.LoadIdentity(p.Key)
	if err != nil {
		t.Fatal(err)
	}
	l := openSharedTest(t, p.Shared, id)
	defer l.Close()
	var mu sync.Mutex
	enc := json.NewEncoder(os.Stdout)
	submitAll(context.Background(), l, burst(p.Subjects, 1), 64, func(s submission, err error) {
		if err != nil && s.Outcome == "" {
			fmt.Fprintln(os.Stderr, "submit:", err)
			return
		}
		mu.Lock()
		enc.Encode(s)
		mu.Unlock()
	})
}

// TestTwoFrontendsConcurrentBurst: two frontends append to one shared log
// at once — one in this process, one in a child process — racing on the
// same subjects with agreeing and conflicting outputs. The child is killed
// with SIGKILL mid-burst, and its unanswered claims are then resubmitted to
// the survivor (which must resolve the dead frontend's reservations from
// the log). Every acknowledged claim is in the log exactly once, at the
// index it was acknowledged with; no subject has two outputs; every
// conflict answer names a subject logged with the other output.
func TestTwoFrontendsConcurrentBurst(t *testing.T) {
	if testing.Short() {
		t.Skip("starts MariaDB and an S3 server")
	}
	const subjects = 2000 // 2000 + 1500 submissions, 1000 subjects submitted by both
	w := startSharedWorld(t)
	w.shared.StaleReservation = 3 * time.Second
	id, files := keytest.Identity(t, t.TempDir(), "builder-test")
	survivor := openSharedTest(t, w.shared, id)
	defer survivor.Close()

	cfg, _ := json.Marshal(map[string]any{"Shared": w.shared, "Key": files.Key, "Subjects": subjects})
	child := exec.Command(os.Args[0], "-test.run=^TestFrontendProcess$", "-test.v")
	child.Env = append(os.Environ(), "VOUCH_TEST_FRONTEND="+string(cfg))
	stdout, err := child.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var childErr strings.Builder
	child.Stderr = &childErr
	if err := child.Start(); err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	var acked []submission // acknowledged by either frontend
	childAnswered := map[int]bool{}
	var fails []error
	record := func(s submission, err error) {
		mu.Lock()
		defer mu.Unlock()
		if s.Outcome == "" {
			fails = append(fails, fmt.Errorf("subject %d output %s: %w", s.N, s.Out, err))
			return
		}
		acked = append(acked, s)
	}

	// Kill the child once it has answered a third of its share.
	childSubs := burst(subjects, 1)
	killed := make(chan struct{})
	readDone := make(chan struct{})
	go func() {
		defer close(readDone)
		sc := bufio.NewScanner(stdout)
		n := 0
		for sc.Scan() {
			var s submission
			if json.Unmarshal(sc.Bytes(), &s) != nil {
				continue // go test's own output
			}
			record(s, nil)
			mu.Lock()
			childAnswered[s.N*2+map[string]int{"a": 0, "b": 1}[s.Out]] = true
			mu.Unlock()
			if n++; n == len(childSubs)/3 {
				child.Process.Signal(syscall.SIGKILL)
				close(killed)
			}
		}
	}()

	start := time.Now()
	ctx := context.Background()
	submitAll(ctx, survivor, burst(subjects, 0), 64, record)
	<-readDone
	child.Wait()
	select {
	case <-killed:
	default:
		t.Fatalf("the child frontend finished before it could be killed; stderr:\n%s", childErr.String())
	}
	// The dead frontend's unanswered claims, resubmitted to the survivor
	// (as a hook spool or a client retry would).
	var retry []submission
	for _, s := range childSubs {
		if !childAnswered[s.N*2+map[string]int{"a": 0, "b": 1}[s.Out]] {
			retry = append(retry, s)
		}
	}
	burstTime := time.Since(start)
	retried := map[string]int{}
	submitAll(ctx, survivor, retry, 64, func(s submission, err error) {
		record(s, err)
		mu.Lock()
		retried[s.Outcome]++
		mu.Unlock()
	})
	t.Logf("%d submissions in %v; then %d of the killed frontend's unanswered ones resubmitted in %v: %v",
		len(burst(subjects, 0))+len(childSubs)-len(retry), burstTime, len(retry), time.Since(start)-burstTime, retried)
	if len(fails) > 0 {
		t.Fatalf("%d submissions failed, e.g. %v", len(fails), fails[0])
	}

	// Acknowledged means sequenced; wait until all of it is published.
	size, err := survivor.reader.NextIndex(ctx)
	if err != nil {
		t.Fatal(err)
	}
	waitForCheckpoint(t, survivor, size)
	res, err := tlogaudit.Audit(w.bucketURL, id.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string]int{}
	var logged []*claim.Claim
	for i, e := range res.Entries {
		c, err := claim.Parse(e)
		if err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if j, dup := byKey[c.Key()]; dup {
			t.Fatalf("%s is logged twice, at %d (%s) and %d (%s)", c.Key(), j, logged[j].Output(), i, c.Output())
		}
		byKey[c.Key()] = i
		logged = append(logged, c)
	}
	// Every subject submitted is logged: a killed frontend's claims were
	// resubmitted.
	if want := subjects + subjects/2; len(logged) != want {
		t.Errorf("log holds %d claims, want %d (one per subject)", len(logged), want)
	}
	var conflicts int
	for _, s := range acked {
		c := testClaim(s.N, s.Out)
		i, ok := byKey[c.Key()]
		switch {
		case !ok:
			t.Fatalf("acknowledged %+v is not in the log", s)
		case s.Outcome == "conflict":
			conflicts++
			if logged[i].Agrees(c) {
				t.Fatalf("%+v was refused as a conflict, but the log holds that output", s)
			}
		case uint64(i) != s.Index || !logged[i].Agrees(c):
			t.Fatalf("%+v acknowledged at %d, the log has %s at %d", s, s.Index, logged[i].Output(), i)
		}
	}
	if conflicts == 0 {
		t.Errorf("no submission met a conflict: the burst did not race")
	}
	t.Logf("%d answers checked, %d conflicts refused, log size %d", len(acked), conflicts, len(logged))
}

// crash makes l's frontend look dead to the others, as kill -9 does: its
// database session lock is released and it confirms nothing more. (Its
// tessera engine keeps running, as another frontend's would.)
func crash(t *testing.T, l *Log) {
	t.Helper()
	g := l.guard.(*mysqlGuard)
	g.stopOnce.Do(func() { close(g.stop) })
	<-g.stopped
	g.lockMu.Lock()
	defer g.lockMu.Unlock()
	// End the session on the server, as a dead process's closed
	// connection does.
	var session int64
	if err := g.lockConn.QueryRowContext(context.Background(), "SELECT CONNECTION_ID()").Scan(&session); err != nil {
		t.Fatal(err)
	}
	if _, err := g.db.Exec(fmt.Sprintf("KILL %d", session)); err != nil {
		t.Fatal(err)
	}
	g.lockConn.Close()
	g.lockConn = nil
}

// TestDeadFrontendsReservationsResolvedFromTheLog: a frontend dies after
// reserving two subjects, having appended the claim of one but confirmed
// neither. Another frontend resolves both from the log: the appended claim
// counts as logged (a conflicting output is refused, the same claim is a
// duplicate at its index), the other subject is free again.
func TestDeadFrontendsReservationsResolvedFromTheLog(t *testing.T) {
	w := startSharedWorld(t)
	w.shared.StaleReservation = time.Second
	id := testIdentity(t, t.TempDir())
	dying := openSharedTest(t, w.shared, id)
	defer dying.Close()
	survivor := openSharedTest(t, w.shared, id)
	defer survivor.Close()
	ctx := context.Background()

	appended, err := dying.guard.Reserve(ctx, testClaim(1, "a"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, ok := appended.Logged(); ok {
		t.Fatal("a fresh subject is reported logged")
	}
	entry, _ := testClaim(1, "a").Marshal()
	idx, err := dying.append(ctx, entry, appended.Renew)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dying.guard.Reserve(ctx, testClaim(2, "a")); err != nil {
		t.Fatal(err)
	}
	// While the holder lives, its reservations hold, however old.
	short, cancel := context.WithTimeout(ctx, 2*time.Second)
	_, err = survivor.Add(short, testClaim(2, "b"))
	cancel()
	if err == nil || errors.Is(err, ErrConflict) {
		t.Fatalf("a live frontend's reservation was not waited for: %v", err)
	}

	crash(t, dying)
	start := time.Now()
	_, err = survivor.Add(ctx, testClaim(1, "b"))
	t.Logf("the dead frontend's reservation resolved in %v", time.Since(start))
	var ce *ConflictError
	if !errors.As(err, &ce) || ce.Index != idx.Index {
		t.Fatalf("conflicting claim for the dead frontend's appended subject: %v, want a conflict at %d", err, idx.Index)
	}
	if r, err := survivor.Add(ctx, testClaim(1, "a")); err != nil || !r.Duplicate || r.Index != idx.Index {
		t.Fatalf("the dead frontend's appended claim, resubmitted: %+v %v, want a duplicate at %d", r, err, idx.Index)
	}
	r, err := survivor.Add(ctx, testClaim(2, "b"))
	if err != nil || r.Duplicate {
		t.Fatalf("the dead frontend's unappended subject: %+v %v, want it logged afresh", r, err)
	}
	if c, i, ok, err := survivor.Lookup(claim.KindNix, testClaim(2, "b").Subject); err != nil || !ok || i != r.Index || !c.Agrees(testClaim(2, "b")) {
		t.Fatalf("Lookup after resolution: %v %d %v %v", c, i, ok, err)
	}
}
