package witness

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/storage/posix"
	"golang.org/x/mod/sumdb/note"

	"github.com/vouch-dev/vouch/internal/keytest"
	"github.com/vouch-dev/vouch/keys"
)

// tesseraLog is a real tessera POSIX log that asks witnesses to cosign
// every checkpoint, and publishes it only when all of them did.
type tesseraLog struct {
	dir      string
	appender *tessera.Appender
	shutdown func(context.Context) error
	cancel   context.CancelFunc
}

func openTesseraLog(t *testing.T, dir string, id *keys.Identity, witnesses ...*testWitness) *tesseraLog {
	t.Helper()
	var group []tessera.Witness
	for _, w := range witnesses {
		u, err := url.Parse(w.url)
		if err != nil {
			t.Fatal(err)
		}
		wit, err := tessera.NewWitness(w.VerifierKey(), u)
		if err != nil {
			t.Fatal(err)
		}
		group = append(group, wit)
	}
	// NewWitnessGroup's parameter type is unexported: no slice can be
	// spread into it.
	var policy tessera.WitnessGroup
	switch len(group) {
	case 1:
		policy = tessera.NewWitnessGroup(1, group[0])
	case 2:
		policy = tessera.NewWitnessGroup(2, group[0], group[1])
	default:
		t.Fatalf("%d witnesses", len(group))
	}
	ctx, cancel := context.WithCancel(context.Background())
	driver, err := posix.New(ctx, posix.Config{Path: dir})
	if err != nil {
		t.Fatal(err)
	}
	ao := tessera.NewAppendOptions().
		WithCheckpointSigner(id.Signer).
		WithCheckpointInterval(100*time.Millisecond).
		WithBatching(64, 10*time.Millisecond).
		// FailOpen false: a checkpoint the witness refuses is not published.
		WithWitnesses(policy, &tessera.WitnessOptions{Timeout: 5 * time.Second})
	appender, shutdown, _, err := tessera.NewAppender(ctx, driver, ao)
	if err != nil {
		t.Fatal(err)
	}
	l := &tesseraLog{dir: dir, appender: appender, shutdown: shutdown, cancel: cancel}
	t.Cleanup(l.close)
	return l
}

func (l *tesseraLog) close() {
	if l.cancel == nil {
		return
	}
	ctx, c := context.WithTimeout(context.Background(), 10*time.Second)
	defer c()
	l.shutdown(ctx) // before cancelling, or pending futures hang
	l.cancel()
	l.cancel = nil
}

func (l *tesseraLog) add(t *testing.T, n int, tag string) {
	t.Helper()
	var futures []tessera.IndexFuture
	for i := range n {
		futures = append(futures, l.appender.Add(context.Background(), tessera.NewEntry(fmt.Appendf(nil, "%s %d", tag, i))))
	}
	for _, f := range futures {
		if _, err := f(); err != nil {
			t.Fatal(err)
		}
	}
}

// waitCosigned waits until the log serves a checkpoint of size want, and
// checks that it carries both the log's signature and the witness's
// cosignature, with a timestamp no earlier than since.
func (l *tesseraLog) waitCosigned(t *testing.T, logVKey string, want uint64, since time.Time, witnesses ...*testWitness) {
	t.Helper()
	logV, err := note.NewVerifier(logVKey)
	if err != nil {
		t.Fatal(err)
	}
	verifiers := []note.Verifier{logV}
	for _, w := range witnesses {
		v, err := fnote.NewVerifierForCosignatureV1(w.VerifierKey())
		if err != nil {
			t.Fatal(err)
		}
		verifiers = append(verifiers, v)
	}
	deadline := time.Now().Add(20 * time.Second)
	var last string
	for time.Now().Before(deadline) {
		b, err := os.ReadFile(filepath.Join(l.dir, "checkpoint"))
		if err == nil {
			last = string(b)
			n, err := note.Open(b, note.VerifierList(verifiers...))
			if err != nil {
				t.Fatalf("served checkpoint does not verify: %v\n%s", err, b)
			}
			cp, err := parseCheckpoint(n.Text)
			if err != nil {
				t.Fatal(err)
			}
			if cp.Size == want {
				for _, witV := range verifiers[1:] {
					var cosig *note.Signature
					for i, s := range n.Sigs {
						if s.Name == witV.Name() && s.Hash == witV.KeyHash() {
							cosig = &n.Sigs[i]
						}
					}
					if cosig == nil {
						t.Fatalf("served checkpoint of size %d has no cosignature by %s:\n%s", want, witV.Name(), b)
					}
					ts, err := fnote.CoSigV1Timestamp(*cosig)
					if err != nil || ts.Before(since.Truncate(time.Second)) || ts.After(time.Now()) {
						t.Fatalf("cosignature time %v (%v), want between %v and now", ts, err, since)
					}
				}
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no cosigned checkpoint of size %d; last served:\n%s", want, last)
}

// TestTesseraLogCosigned runs tessera's own witness client against this
// witness: the first checkpoint (trust on first use), growth with the
// consistency proofs tessera builds from its tiles, and a restart of both
// the log and the witness.
func TestTesseraLogCosigned(t *testing.T) {
	witnessID, _ := keytest.Identity(t, "", "alice")
	bob, _ := keytest.Identity(t, "", "bob")
	witnessDir, logDir := t.TempDir(), t.TempDir()

	tw := startWitness(t, witnessDir, witnessID, time.Now, bob)
	l := openTesseraLog(t, logDir, bob, tw)
	start := time.Now()
	l.add(t, 5, "first")
	l.waitCosigned(t, bob.VerifierKey, 5, start, tw)

	// Growth: tessera sends "old 5" and a consistency proof from its tiles.
	for _, n := range []int{1, 20, 300} {
		before := tw.logs["bob"].recordedSize()
		l.add(t, n, fmt.Sprintf("grow %d", n))
		l.waitCosigned(t, bob.VerifierKey, before+uint64(n), start, tw)
	}
	if got := tw.logs["bob"].recordedSize(); got != 326 {
		t.Fatalf("the witness recorded size %d, want 326", got)
	}
	logText := tw.logText()
	for _, want := range []string{"trusted on first use", "old=5 size=6 proof_hashes=3", "size=326 proof_hashes="} {
		if !strings.Contains(logText, want) {
			t.Fatalf("the witness log lacks %q:\n%s", want, logText)
		}
	}
	if strings.Contains(logText, "refused") {
		t.Fatalf("tessera's requests were refused:\n%s", logText)
	}

	// Restart both, and add a witness that joins late. The log comes back
	// knowing its last published size and sends it as the old size; the
	// first witness comes back with its record and accepts it; the new
	// one answers 409 "0", tessera retries with "old 0" and the new
	// witness trusts the log's current checkpoint on first use.
	l.close()
	tw.Close()
	tw = startWitness(t, witnessDir, witnessID, time.Now, bob)
	late := startWitness(t, t.TempDir(), identityFromSeed(t, "carol", 3), time.Now, bob)
	l = openTesseraLog(t, logDir, bob, tw, late)
	l.add(t, 50, "after restart")
	l.waitCosigned(t, bob.VerifierKey, 376, start, tw, late)
	if got := tw.logs["bob"].recordedSize(); got != 376 {
		t.Fatalf("the witness recorded size %d after the restart, want 376", got)
	}
	if strings.Contains(tw.logText(), "first use") {
		t.Fatalf("the restarted witness trusted the log anew:\n%s", tw.logText())
	}
	if !strings.Contains(late.logText(), "trusted on first use") {
		t.Fatalf("the late witness:\n%s", late.logText())
	}
}

// recordedSize is the size of the latest checkpoint cosigned for the log.
func (s *logState) recordedSize() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cp.Size
}
