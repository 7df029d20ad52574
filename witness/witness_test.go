package witness

import (
	"bytes"
	"crypto/ed25519"
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
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/internal/memtlog"
	"github.com/vouch-dev/vouch/keys"
)

// identityFromSeed builds a keys.Identity from a fixed seed, so that
// signatures (Ed25519 is deterministic) are reproducible.
func identityFromSeed(t testing.TB, name string, seed byte) *keys.Identity {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	pub := priv.Public().(ed25519.PublicKey)
	skey := fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", name, keys.NoteKeyHash(name, pub),
		base64.StdEncoding.EncodeToString(append([]byte{1}, priv.Seed()...)))
	signer, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := note.NewEd25519VerifierKey(name, pub)
	if err != nil {
		t.Fatal(err)
	}
	return &keys.Identity{Name: name, Signer: signer, Private: priv, VerifierKey: vkey}
}

// memLog is a real Merkle log held in memory, signed by id: the source of
// genuine checkpoints and consistency proofs.
type memLog struct {
	id   *keys.Identity
	fork string // entries of a second history differ by this text
	memtlog.Tree
}

func (l *memLog) append(n int) {
	for range n {
		l.Add(fmt.Appendf(nil, "%s%s entry %d", l.id.Name, l.fork, l.N()))
	}
}

func (l *memLog) root(t testing.TB, n int64) tlog.Hash {
	t.Helper()
	if n == 0 {
		return sha256.Sum256(nil)
	}
	h, err := l.Root(n)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// forkAt returns a second history of the same log that shares the first
// n entries and then differs.
func (l *memLog) forkAt(n int64) *memLog {
	return &memLog{id: l.id, fork: l.fork + " fork", Tree: *l.Prefix(n)}
}

// checkpoint returns the log's signed checkpoint of size n.
func (l *memLog) checkpoint(t testing.TB, n int64) []byte {
	t.Helper()
	return signCheckpoint(t, l.id, n, l.root(t, n))
}

func signCheckpoint(t testing.TB, id *keys.Identity, n int64, root tlog.Hash) []byte {
	t.Helper()
	b, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n%d\n%s\n", id.Name, n, root)}, id.Signer)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (l *memLog) proof(t testing.TB, old, n int64) tlog.TreeProof {
	t.Helper()
	if old == 0 || old == n {
		return nil
	}
	p, err := tlog.ProveTree(n, old, &l.Tree)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func requestBody(old int64, proof tlog.TreeProof, cp []byte) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "old %d\n", old)
	for _, h := range proof {
		b.WriteString(base64.StdEncoding.EncodeToString(h[:]) + "\n")
	}
	b.WriteString("\n")
	b.Write(cp)
	return b.Bytes()
}

type testWitness struct {
	*Witness
	url    string
	dir    string
	id     *keys.Identity
	logBuf *bytes.Buffer
	logsMu *sync.Mutex
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.w.Write(p)
}

// startWitness runs a witness over dir on 127.0.0.1, mounted under
// /witness as a node mounts it.
func startWitness(t testing.TB, dir string, id *keys.Identity, now func() time.Time, logs ...*keys.Identity) *testWitness {
	t.Helper()
	tw := &testWitness{dir: dir, id: id, logBuf: &bytes.Buffer{}, logsMu: &sync.Mutex{}}
	var ls []Log
	for _, l := range logs {
		ls = append(ls, Log{VKey: l.VerifierKey})
	}
	w, err := New(Options{
		Dir: dir, Identity: id, Logs: ls, Now: now,
		Logger: slog.New(slog.NewTextHandler(lockedWriter{tw.logsMu, tw.logBuf}, &slog.HandlerOptions{Level: slog.LevelDebug})),
	})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/witness/", http.StripPrefix("/witness", w))
	srv := httptest.NewServer(mux)
	t.Cleanup(func() { srv.Close(); w.Close() })
	tw.Witness, tw.url = w, srv.URL+"/witness"
	return tw
}

func (tw *testWitness) logText() string {
	tw.logsMu.Lock()
	defer tw.logsMu.Unlock()
	return tw.logBuf.String()
}

func (tw *testWitness) post(t testing.TB, body []byte) (int, string, string) {
	t.Helper()
	resp, err := http.Post(tw.url+"/add-checkpoint", "text/plain", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header.Get("Content-Type")
}

// cosigned checks that answer is a cosignature of cp by the witness that
// formats' verifier accepts, with the expected timestamp.
func (tw *testWitness) checkCosigned(t testing.TB, cp []byte, answer string, at time.Time) {
	t.Helper()
	v, err := fnote.NewVerifierForCosignatureV1(tw.VerifierKey())
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(append(append([]byte{}, cp...), answer...), note.VerifierList(v))
	if err != nil {
		t.Fatalf("the answer %q is not a valid cosignature: %v", answer, err)
	}
	if len(n.Sigs) != 1 || n.Sigs[0].Name != tw.id.Name {
		t.Fatalf("cosignatures %+v", n.Sigs)
	}
	ts, err := fnote.CoSigV1Timestamp(n.Sigs[0])
	if err != nil {
		t.Fatal(err)
	}
	if !ts.Equal(at.Truncate(time.Second)) {
		t.Fatalf("cosignature time %v, want %v", ts, at)
	}
	if strings.Count(answer, "\n") != 1 || !strings.HasPrefix(answer, "— ") {
		t.Fatalf("the answer must be exactly the signature line: %q", answer)
	}
}

var clock = time.Date(2025, 1, 3, 16, 46, 5, 0, time.UTC)

func fixedClock() time.Time { return clock }

func TestVerifierKeyIsCosignatureV1(t *testing.T) {
	id := identityFromSeed(t, "alice", 1)
	tw := startWitness(t, t.TempDir(), id, fixedClock, identityFromSeed(t, "bob", 2))
	vkey, err := CosignatureVerifierKey(id)
	if err != nil {
		t.Fatal(err)
	}
	if vkey != tw.VerifierKey() {
		t.Fatalf("%q != %q", vkey, tw.VerifierKey())
	}
	parts := strings.SplitN(vkey, "+", 3)
	raw, _ := base64.StdEncoding.DecodeString(parts[2])
	if parts[0] != "alice" || len(raw) != 33 || raw[0] != 0x04 || !bytes.Equal(raw[1:], id.Public()) {
		t.Fatalf("verifier key %q is not alice's Ed25519 key with type 0x04", vkey)
	}
	if vkey == id.VerifierKey {
		t.Fatal("the cosignature key must differ from the log key (type 0x04, another key hash)")
	}
}

func TestFirstCheckpointThenGrowth(t *testing.T) {
	bob := &memLog{id: identityFromSeed(t, "bob", 2)}
	now := clock
	tw := startWitness(t, t.TempDir(), identityFromSeed(t, "alice", 1), func() time.Time { return now }, bob.id)

	bob.append(5)
	cp5 := bob.checkpoint(t, 5)
	code, answer, ctype := tw.post(t, requestBody(0, nil, cp5))
	if code != 200 || !strings.HasPrefix(ctype, "text/plain") {
		t.Fatalf("first checkpoint: %d %q", code, answer)
	}
	tw.checkCosigned(t, cp5, answer, now)
	if !strings.Contains(tw.logText(), "trusted on first use") {
		t.Fatalf("the first checkpoint is not logged as trust on first use:\n%s", tw.logText())
	}

	// Every size the log grows through, with a real consistency proof.
	for _, size := range []int64{6, 8, 13, 64, 100} {
		now = now.Add(90 * time.Second)
		old := bob.N()
		bob.append(int(size - bob.N()))
		cp := bob.checkpoint(t, size)
		code, answer, _ := tw.post(t, requestBody(old, bob.proof(t, old, size), cp))
		if code != 200 {
			t.Fatalf("%d → %d: %d %q", old, size, code, answer)
		}
		tw.checkCosigned(t, cp, answer, now)
	}

	// The same checkpoint again (a log republishing): cosigned again, at
	// the new time, with an empty proof.
	now = now.Add(time.Hour)
	cp := bob.checkpoint(t, 100)
	code, answer, _ = tw.post(t, requestBody(100, nil, cp))
	if code != 200 {
		t.Fatalf("republished checkpoint: %d %q", code, answer)
	}
	tw.checkCosigned(t, cp, answer, now)
}

func TestRefusals(t *testing.T) {
	alice := identityFromSeed(t, "alice", 1)
	bob := &memLog{id: identityFromSeed(t, "bob", 2)}
	tw := startWitness(t, t.TempDir(), alice, fixedClock, bob.id)
	bob.append(10)
	if code, answer, _ := tw.post(t, requestBody(0, nil, bob.checkpoint(t, 4))); code != 200 {
		t.Fatalf("first checkpoint: %d %q", code, answer)
	}

	carol := &memLog{id: identityFromSeed(t, "carol", 3)}
	carol.append(3)
	forger := identityFromSeed(t, "bob", 4) // bob's name, another key
	goodProof := bob.proof(t, 4, 10)
	badProof := append(tlog.TreeProof{}, goodProof...)
	badProof[0][0] ^= 1
	otherTree := bob.forkAt(0)
	otherTree.append(11) // bob's key, but other entries
	for _, c := range []struct {
		name  string
		body  []byte
		code  int
		ctype string
		want  string
	}{
		{"unknown log", requestBody(0, nil, carol.checkpoint(t, 3)), 404, textPlain, "does not witness"},
		{"forged signature", requestBody(4, goodProof, signCheckpoint(t, forger, 10, bob.root(t, 10))), 403, textPlain, "no valid signature"},
		{"signature over other text", requestBody(4, goodProof, bytes.Replace(bob.checkpoint(t, 10), []byte("\n10\n"), []byte("\n11\n"), 1)), 403, textPlain, "no valid signature"},
		{"stale old size", requestBody(0, nil, bob.checkpoint(t, 10)), 409, tlogSize, "4\n"},
		{"old size ahead of the record", requestBody(6, bob.proof(t, 6, 10), bob.checkpoint(t, 10)), 409, tlogSize, "4\n"},
		{"checkpoint smaller than the record", requestBody(2, bob.proof(t, 2, 3), bob.checkpoint(t, 3)), 409, tlogSize, "4\n"},
		{"old size beyond the checkpoint", requestBody(4, nil, bob.checkpoint(t, 3)), 400, textPlain, "larger than"},
		{"wrong proof", requestBody(4, badProof, bob.checkpoint(t, 10)), 422, textPlain, "does not verify"},
		{"proof for other sizes", requestBody(4, bob.proof(t, 5, 10), bob.checkpoint(t, 10)), 422, textPlain, "does not verify"},
		{"truncated proof", requestBody(4, goodProof[:len(goodProof)-1], bob.checkpoint(t, 10)), 422, textPlain, "does not verify"},
		{"fork with a valid-looking proof", requestBody(4, otherTree.proof(t, 4, 11), otherTree.checkpoint(t, 11)), 422, textPlain, "does not verify"},
		{"proof between equal sizes", requestBody(4, goodProof[:1], bob.checkpoint(t, 4)), 422, textPlain, "must be empty"},
		{"malformed body", []byte("old 4\n\nbob\nnot a note"), 400, textPlain, "signed note"},
		{"size 0 with a root", requestBody(0, nil, signCheckpoint(t, bob.id, 0, bob.root(t, 1))), 400, textPlain, "empty tree"},
	} {
		t.Run(c.name, func(t *testing.T) {
			code, answer, ctype := tw.post(t, c.body)
			if code != c.code || ctype != c.ctype || !strings.Contains(answer, c.want) {
				t.Fatalf("got %d %s %q, want %d %s containing %q", code, ctype, answer, c.code, c.ctype, c.want)
			}
		})
	}
	// None of that moved the record: the honest growth still works.
	code, answer, _ := tw.post(t, requestBody(4, goodProof, bob.checkpoint(t, 10)))
	if code != 200 {
		t.Fatalf("honest growth after refusals: %d %q", code, answer)
	}
	tw.checkCosigned(t, bob.checkpoint(t, 10), answer, clock)
}

func TestSplitViewRefusedAndKeptAsEvidence(t *testing.T) {
	bob := &memLog{id: identityFromSeed(t, "bob", 2)}
	dir := t.TempDir()
	tw := startWitness(t, dir, identityFromSeed(t, "alice", 1), fixedClock, bob.id)
	bob.append(7)
	fork := bob.forkAt(3) // bob signs a second history
	fork.append(4)
	cosigned, conflicting := bob.checkpoint(t, 7), fork.checkpoint(t, 7)

	if code, answer, _ := tw.post(t, requestBody(0, nil, cosigned)); code != 200 {
		t.Fatalf("%d %q", code, answer)
	}
	for range 2 { // a log retries; the evidence is kept once
		code, answer, ctype := tw.post(t, requestBody(7, nil, conflicting))
		if code != 409 || ctype == tlogSize || !strings.Contains(answer, "split view") {
			t.Fatalf("split view: %d %s %q", code, ctype, answer)
		}
	}
	files, _ := filepath.Glob(filepath.Join(dir, "evidence", "*"))
	if len(files) != 2 {
		t.Fatalf("evidence files %v", files)
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want := cosigned
		if strings.HasSuffix(f, ".conflicting") {
			want = conflicting
		} else if !strings.HasSuffix(f, ".cosigned") {
			t.Fatalf("unexpected evidence file %s", f)
		}
		if !bytes.Equal(b, want) {
			t.Fatalf("%s holds %q, want %q", f, b, want)
		}
	}
	if !strings.Contains(tw.logText(), "SPLIT VIEW") || !strings.Contains(tw.logText(), "level=ERROR") {
		t.Fatalf("the split view was not logged as an error:\n%s", tw.logText())
	}
	// The fork cannot be cosigned later either, at any size.
	fork.append(2)
	if code, answer, _ := tw.post(t, requestBody(7, fork.proof(t, 7, 9), fork.checkpoint(t, 9))); code != 422 {
		t.Fatalf("growth of the fork: %d %q", code, answer)
	}
}

func TestRestartKeepsRecord(t *testing.T) {
	alice := identityFromSeed(t, "alice", 1)
	bob := &memLog{id: identityFromSeed(t, "bob", 2)}
	dir := filepath.Join(t.TempDir(), "witness")
	tw := startWitness(t, dir, alice, fixedClock, bob.id)
	bob.append(20)
	if code, answer, _ := tw.post(t, requestBody(0, nil, bob.checkpoint(t, 12))); code != 200 {
		t.Fatalf("%d %q", code, answer)
	}
	if _, err := New(Options{Dir: dir, Identity: alice, Logs: []Log{{bob.id.VerifierKey}}}); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Fatalf("a second witness on the same state: %v", err)
	}
	tw.Close()

	tw = startWitness(t, dir, alice, fixedClock, bob.id)
	if code, answer, ctype := tw.post(t, requestBody(0, nil, bob.checkpoint(t, 20))); code != 409 || answer != "12\n" || ctype != tlogSize {
		t.Fatalf("after restart, old 0: %d %s %q", code, ctype, answer)
	}
	code, answer, _ := tw.post(t, requestBody(12, bob.proof(t, 12, 20), bob.checkpoint(t, 20)))
	if code != 200 {
		t.Fatalf("after restart, growth: %d %q", code, answer)
	}
	tw.checkCosigned(t, bob.checkpoint(t, 20), answer, clock)
	st, err := os.Stat(filepath.Join(dir, "logs", fileID("bob")+".checkpoint"))
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("record: %v %v", st, err)
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Fatalf("state directory mode %v", st.Mode().Perm())
	}
}

func TestRecordUnderAnotherKeyRefusesToStart(t *testing.T) {
	alice := identityFromSeed(t, "alice", 1)
	bob := &memLog{id: identityFromSeed(t, "bob", 2)}
	dir := t.TempDir()
	tw := startWitness(t, dir, alice, fixedClock, bob.id)
	bob.append(2)
	if code, answer, _ := tw.post(t, requestBody(0, nil, bob.checkpoint(t, 2))); code != 200 {
		t.Fatalf("%d %q", code, answer)
	}
	tw.Close()
	rotated := identityFromSeed(t, "bob", 5)
	_, err := New(Options{Dir: dir, Identity: alice, Logs: []Log{{rotated.VerifierKey}}})
	if err == nil || !strings.Contains(err.Error(), "move the file away") {
		t.Fatalf("a record signed by another key was accepted: %v", err)
	}
}

// TestConcurrentForksOneCosigned races many requests carrying checkpoints
// of two histories: whatever the interleaving, every cosigned checkpoint
// must belong to one history.
func TestConcurrentForksOneCosigned(t *testing.T) {
	bob := &memLog{id: identityFromSeed(t, "bob", 2)}
	bob.append(40)
	fork := bob.forkAt(8)
	fork.append(32)
	tw := startWitness(t, t.TempDir(), identityFromSeed(t, "alice", 1), fixedClock, bob.id)
	if code, answer, _ := tw.post(t, requestBody(0, nil, bob.checkpoint(t, 8))); code != 200 {
		t.Fatalf("%d %q", code, answer)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	cosigned := map[*memLog]int{}
	for size := int64(9); size <= 40; size++ {
		for _, l := range []*memLog{bob, fork} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				// Every request claims growth from 8: only the first to
				// be recorded can succeed, the others see a stale size.
				code, _, _ := tw.post(t, requestBody(8, l.proof(t, 8, size), l.checkpoint(t, size)))
				if code == 200 {
					mu.Lock()
					cosigned[l]++
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	if len(cosigned) != 1 || cosigned[bob]+cosigned[fork] != 1 {
		t.Fatalf("cosigned %d of bob's and %d of the fork's checkpoints; want exactly one", cosigned[bob], cosigned[fork])
	}
}

func TestHTTPEdges(t *testing.T) {
	tw := startWitness(t, t.TempDir(), identityFromSeed(t, "alice", 1), fixedClock, identityFromSeed(t, "bob", 2))
	resp, err := http.Get(tw.url + "/add-checkpoint")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "POST" {
		t.Fatalf("GET: %d", resp.StatusCode)
	}
	resp, err = http.Post(tw.url+"/other", "text/plain", strings.NewReader("old 0\n\n"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Fatalf("other path: %d", resp.StatusCode)
	}
	big := append([]byte("old 0\n\n"), bytes.Repeat([]byte("x"), maxBodySize)...)
	if code, _, _ := tw.post(t, big); code != http.StatusRequestEntityTooLarge {
		t.Fatalf("oversized body: %d", code)
	}
	tw.Close()
	if code, _, _ := tw.post(t, requestBody(0, nil, []byte("bob\n0\n\n— bob AAAA\n"))); code != http.StatusServiceUnavailable {
		t.Fatalf("after Close: %d", code)
	}
}

func TestNewValidates(t *testing.T) {
	alice := identityFromSeed(t, "alice", 1)
	bob := Log{identityFromSeed(t, "bob", 2).VerifierKey}
	for _, c := range []struct {
		name string
		opts Options
		want string
	}{
		{"no dir", Options{Identity: alice, Logs: []Log{bob}}, "state directory"},
		{"no identity", Options{Dir: t.TempDir(), Logs: []Log{bob}}, "identity"},
		{"no logs", Options{Dir: t.TempDir(), Identity: alice}, "no logs"},
		{"bad key", Options{Dir: t.TempDir(), Identity: alice, Logs: []Log{{"bob+zz"}}}, "verifier key"},
		{"twice", Options{Dir: t.TempDir(), Identity: alice, Logs: []Log{bob, bob}}, "listed twice"},
	} {
		if _, err := New(c.opts); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error about %q", c.name, err, c.want)
		}
	}
}

// FuzzAddCheckpoint sends arbitrary bodies to a witness that recorded
// bob's checkpoint of size 5. Whatever the body, the witness must not
// panic, and it may cosign only checkpoints of bob's one real history.
func FuzzAddCheckpoint(f *testing.F) {
	bob := &memLog{id: identityFromSeed(f, "bob", 2)}
	bob.append(12)
	fork := bob.forkAt(3) // shares 3 entries with the record of size 5
	fork.append(9)
	f.Add(requestBody(5, bob.proof(f, 5, 12), bob.checkpoint(f, 12)))
	f.Add(requestBody(5, nil, bob.checkpoint(f, 5)))
	f.Add(requestBody(5, fork.proof(f, 5, 12), fork.checkpoint(f, 12)))
	f.Add(requestBody(5, bob.proof(f, 5, 9), bob.checkpoint(f, 9)))
	f.Add(requestBody(0, nil, bob.checkpoint(f, 5)))
	record := bob.checkpoint(f, 5)
	f.Fuzz(func(t *testing.T, body []byte) {
		dir := t.TempDir()
		if err := os.MkdirAll(filepath.Join(dir, "logs"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "logs", fileID("bob")+".checkpoint"), record, 0o600); err != nil {
			t.Fatal(err)
		}
		w, err := New(Options{Dir: dir, Identity: identityFromSeed(t, "alice", 1), Logs: []Log{{bob.id.VerifierKey}},
			Now: fixedClock, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
		if err != nil {
			t.Fatal(err)
		}
		defer w.Close()
		code, _, _ := w.addCheckpoint(body)
		s := w.logs["bob"]
		if code == 200 && (s.cp.Size < 5 || s.cp.Size > 12 || s.cp.Root != bob.root(t, int64(s.cp.Size))) {
			t.Fatalf("cosigned and recorded %+v, which is not bob's history", s.cp)
		}
	})
}

// TestUnrecordableCheckpointNotCosigned: when the record cannot be
// written, the witness answers 500 and keeps its old record, in memory too.
func TestUnrecordableCheckpointNotCosigned(t *testing.T) {
	bob := &memLog{id: identityFromSeed(t, "bob", 2)}
	dir := t.TempDir()
	tw := startWitness(t, dir, identityFromSeed(t, "alice", 1), fixedClock, bob.id)
	bob.append(9)
	if code, answer, _ := tw.post(t, requestBody(0, nil, bob.checkpoint(t, 4))); code != 200 {
		t.Fatalf("%d %q", code, answer)
	}
	logs := filepath.Join(dir, "logs")
	saved := filepath.Join(dir, "logs.saved")
	if err := os.Rename(logs, saved); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(logs, nil, 0o600); err != nil { // a file where the directory was
		t.Fatal(err)
	}
	code, answer, _ := tw.post(t, requestBody(4, bob.proof(t, 4, 9), bob.checkpoint(t, 9)))
	if code != 500 || strings.HasPrefix(answer, "—") {
		t.Fatalf("unrecordable checkpoint: %d %q", code, answer)
	}
	if err := os.Remove(logs); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(saved, logs); err != nil {
		t.Fatal(err)
	}
	if code, answer, _ := tw.post(t, requestBody(4, bob.proof(t, 4, 9), bob.checkpoint(t, 9))); code != 200 {
		t.Fatalf("after the disk came back: %d %q", code, answer)
	}
}
