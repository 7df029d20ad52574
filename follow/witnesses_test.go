package follow

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"strings"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"github.com/vouch-dev/vouch/config"
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
