package follow

import (
	"bytes"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/internal/keytest"
	"github.com/vouch-dev/vouch/keys"
	"github.com/vouch-dev/vouch/witness"
)

// cosigningWitness is a witness key pair in cosignature/v1 form.
type cosigningWitness struct {
	entry  config.Witness
	signer note.Signer
}

func newCosigningWitness(t *testing.T, name string) cosigningWitness {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		t.Fatal(err)
	}
	cosig, err := fnote.VKeyToCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return cosigningWitness{entry: config.Witness{Name: name, VKey: cosig, URL: "http://127.0.0.1:1/"}, signer: s}
}

// TestWitnessPolicyCounts: only valid cosignatures of listed witnesses
// count, each witness once; a listed witness's broken cosignature is an
// error, not a vote.
func TestWitnessPolicyCounts(t *testing.T) {
	logSkey, logVkey, _ := note.GenerateKey(rand.Reader, "builder")
	logS, _ := note.NewSigner(logSkey)
	logV, _ := note.NewVerifier(logVkey)
	w1, w2, outsider := newCosigningWitness(t, "w1"), newCosigningWitness(t, "w2"), newCosigningWitness(t, "outsider")
	text := "builder\n5\n" + strings.Repeat("A", 43) + "=\n"
	sign := func(signers ...note.Signer) []byte {
		b, err := note.Sign(&note.Note{Text: text}, append([]note.Signer{logS}, signers...)...)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	policy := func(need int) *witnessPolicy {
		p, err := newWitnessPolicy(&config.Config{Witnesses: []config.Witness{w1.entry, w2.entry}, Quorum: config.Quorum{Witnesses: need}})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name string
		raw  []byte
		need int
		ok   bool
	}{
		{"no witnesses needed", sign(), 0, true},
		{"none cosigned", sign(), 1, false},
		{"one of one", sign(w1.signer), 1, true},
		{"an outsider does not count", sign(outsider.signer), 1, false},
		{"one of two needed", sign(w2.signer, outsider.signer), 2, false},
		{"two of two", sign(w1.signer, w2.signer), 2, true},
	} {
		err := policy(tc.need).check(tc.raw, logV)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// The same cosignature line twice is one witness.
	raw := sign(w1.signer)
	lines := bytes.SplitAfter(raw, []byte("\n"))
	doubled := append(raw[:len(raw):len(raw)], lines[len(lines)-2]...)
	if err := policy(2).check(doubled, logV); err == nil {
		t.Error("one witness's cosignature counted twice")
	}
	// A forged cosignature under a listed witness's key is refused.
	forged := bytes.Replace(raw, lines[len(lines)-2], []byte(fmt.Sprintf("— w1 %s\n", forgedSig(lines[len(lines)-2]))), 1)
	if err := policy(1).check(forged, logV); err == nil {
		t.Error("a forged cosignature was accepted")
	}
}

// forgedSig changes one base64 character in the middle of a signature
// line's signature, keeping its key hash. (Not near the end: the last
// characters before "==" padding carry bits the decoder ignores.)
func forgedSig(line []byte) string {
	f := strings.Fields(string(line))
	b := []byte(f[2])
	mid := len(b) / 2
	if b[mid] == 'A' {
		b[mid] = 'B'
	} else {
		b[mid] = 'A'
	}
	return string(b)
}

// timedWitness is a witness whose cosignatures carry the time the test
// chooses.
type timedWitness struct {
	entry config.Witness
	id    *keys.Identity
}

func newTimedWitness(t *testing.T, name string) timedWitness {
	t.Helper()
	id, _ := keytest.Identity(t, "", name)
	vkey, err := witness.CosignatureVerifierKey(id)
	if err != nil {
		t.Fatal(err)
	}
	return timedWitness{entry: config.Witness{Name: name, VKey: vkey, URL: "http://127.0.0.1:1/"}, id: id}
}

// cosign adds w's cosignature, made at time at, to the signed checkpoint
// raw (which logV verifies).
func (w timedWitness) cosign(t *testing.T, raw []byte, logV note.Verifier, at time.Time) []byte {
	t.Helper()
	n, err := note.Open(raw, note.VerifierList(logV))
	if err != nil {
		t.Fatal(err)
	}
	s, _, err := witness.NewCosigner(w.id, func() time.Time { return at })
	if err != nil {
		t.Fatal(err)
	}
	out, err := note.Sign(n, s)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestWitnessPolicyFreshness: the need-th newest cosignature must be
// younger than maxAge; each witness counts once, with its newest time.
func TestWitnessPolicyFreshness(t *testing.T) {
	logSkey, logVkey, _ := note.GenerateKey(rand.Reader, "builder")
	logS, _ := note.NewSigner(logSkey)
	logV, _ := note.NewVerifier(logVkey)
	w1, w2 := newTimedWitness(t, "w1"), newTimedWitness(t, "w2")
	raw, err := note.Sign(&note.Note{Text: "builder\n5\n" + strings.Repeat("A", 43) + "=\n"}, logS)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	fresh, old := now.Add(-10*time.Minute), now.Add(-3*time.Hour)
	policy := func(need int, maxAge time.Duration) *witnessPolicy {
		p, err := newWitnessPolicy(&config.Config{
			Witnesses: []config.Witness{w1.entry, w2.entry},
			Quorum:    config.Quorum{Witnesses: need, WitnessMaxAge: &config.Duration{Duration: maxAge}},
		})
		if err != nil {
			t.Fatal(err)
		}
		p.now = func() time.Time { return now }
		return p
	}
	for _, tc := range []struct {
		name   string
		raw    []byte
		need   int
		maxAge time.Duration
		ok     bool
	}{
		{"fresh", w1.cosign(t, raw, logV, fresh), 1, time.Hour, true},
		{"old", w1.cosign(t, raw, logV, old), 1, time.Hour, false},
		{"old, but the check is off", w1.cosign(t, raw, logV, old), 1, 0, true},
		{"not cosigned", raw, 1, time.Hour, false},
		{"one fresh of two needed", w2.cosign(t, w1.cosign(t, raw, logV, fresh), logV, old), 2, time.Hour, false},
		{"two fresh", w2.cosign(t, w1.cosign(t, raw, logV, fresh), logV, fresh), 2, time.Hour, true},
		{"one witness, an old and a fresh cosignature", w1.cosign(t, w1.cosign(t, raw, logV, old), logV, fresh), 1, time.Hour, true},
		{"one witness twice is not two", w1.cosign(t, w1.cosign(t, raw, logV, fresh), logV, fresh), 2, time.Hour, false},
	} {
		err := policy(tc.need, tc.maxAge).stale(tc.raw, logV)
		if (err == nil) != tc.ok {
			t.Errorf("%s: %v", tc.name, err)
		}
		if err != nil && !strings.Contains(err.Error(), "freezing") {
			t.Errorf("%s: the error does not say what it may mean: %v", tc.name, err)
		}
	}
}

// TestFrozenLogIsReported: a log that keeps serving one old checkpoint
// with its old cosignatures is reported once quorum.witness-max-age has
// passed; what it showed keeps counting; a fresh cosignature clears it.
func TestFrozenLogIsReported(t *testing.T) {
	l := newTileLog(t, "frozen")
	logV, err := note.NewVerifier(l.vkey)
	if err != nil {
		t.Fatal(err)
	}
	w := newTimedWitness(t, "w1")
	t0 := time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)
	publish := func(n int, cosignedAt time.Time) string {
		dir := l.publish(n)
		p := filepath.Join(dir, "checkpoint")
		raw, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, w.cosign(t, raw, logV, cosignedAt), 0o644); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	l.addClaims("f", 300, "x")
	srv := newSwitchServer(t, publish(300, t0))
	cfg := &config.Config{
		State:     t.TempDir(),
		Builders:  []config.Builder{{Name: "frozen", VKey: l.vkey, Log: srv.url()}},
		Witnesses: []config.Witness{w.entry},
		Quorum:    config.Quorum{Witnesses: 1, WitnessMaxAge: &config.Duration{Duration: time.Hour}},
	}
	cfg.Defaults()
	f, idx := openFollower(t, cfg, Options{BatchEntries: 256})
	now := t0.Add(30 * time.Minute)
	f.logs[0].witnesses.now = func() time.Time { return now }
	ctx := context.Background()
	round := func() Result { return f.SyncOnce(ctx)[0] }

	if r := round(); r.Err != nil || r.Size != 300 {
		t.Fatalf("fresh checkpoint: %+v", r)
	}
	now = t0.Add(3 * time.Hour) // the log serves the same cosigned checkpoint
	r := round()
	if r.Err == nil || !strings.Contains(r.Err.Error(), "witness-max-age") || r.Evidence != nil {
		t.Fatalf("frozen log not reported, or reported as evidence: %+v", r)
	}
	t.Logf("reported: %v", r.Err)
	if idx.Compromised("frozen") {
		t.Fatal("a frozen log is not evidence of anything")
	}
	if es, err := idx.Claims(claim.KindNix, "/nix/store/"+nix32Like("f-7")+"-pkg"); err != nil || len(es) != 1 {
		t.Fatalf("claims shown before the freeze stopped counting: %v %v", es, err)
	}

	srv.serve(publish(300, now.Add(-time.Minute))) // cosigned again
	if r := round(); r.Err != nil {
		t.Fatalf("cosigned again: %v", r.Err)
	}

	// A new checkpoint whose cosignature is old is consistent and
	// witnessed: its entries are indexed, and the age is reported.
	l.addClaims("g", 10, "x")
	srv.serve(publish(310, t0))
	if r := round(); r.Size != 310 || r.Err == nil || !strings.Contains(r.Err.Error(), "witness-max-age") {
		t.Fatalf("grown log with an old cosignature: %+v", r)
	}
}
