package keys

import (
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

func TestGenerateLoadSign(t *testing.T) {
	dir := t.TempDir()
	f, err := Generate(dir, "alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{f.Key, f.NixSecret} {
		st, err := os.Stat(p)
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: mode %v, err %v", p, st.Mode().Perm(), err)
		}
	}
	if _, err := Generate(dir, "alice"); err == nil || !strings.Contains(err.Error(), "refusing to overwrite") {
		t.Fatalf("second Generate: %v", err)
	}
	id, err := LoadIdentity(f.Key)
	if err != nil {
		t.Fatal(err)
	}
	vb, _ := os.ReadFile(f.VerifierKey)
	if strings.TrimSpace(string(vb)) != id.VerifierKey {
		t.Fatalf("vkey file %q != derived %q", vb, id.VerifierKey)
	}
	// A note signed by the identity verifies with the stock note package.
	msg, err := note.Sign(&note.Note{Text: "hello\n"}, id.Signer)
	if err != nil {
		t.Fatal(err)
	}
	v, err := NewVerifier(id.VerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
		t.Fatal(err)
	}
	pub, err := VerifierPublicKey(id.VerifierKey)
	if err != nil || !pub.Equal(id.Public()) {
		t.Fatalf("VerifierPublicKey: %v", err)
	}
	if NoteKeyHash("alice", pub) != v.KeyHash() {
		t.Fatal("NoteKeyHash differs from note's key hash")
	}

	nk, err := LoadNixKey(f.NixSecret)
	if err != nil {
		t.Fatal(err)
	}
	pb, _ := os.ReadFile(f.NixPublic)
	name, npub, err := ParseNixPublicKey(string(pb))
	if err != nil || name != "alice" || nk.PublicKey() != strings.TrimSpace(string(pb)) {
		t.Fatalf("nix public key: %v", err)
	}
	sig := nk.Sign("1;/nix/store/x;sha256:y;1;")
	raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(sig, "alice:"))
	if !ed25519.Verify(npub, []byte("1;/nix/store/x;sha256:y;1;"), raw) {
		t.Fatal("nix signature does not verify")
	}
}

func TestRefusesWorldReadableKey(t *testing.T) {
	dir := t.TempDir()
	f, err := Generate(dir, "bob")
	if err != nil {
		t.Fatal(err)
	}
	os.Chmod(f.Key, 0o644)
	if _, err := LoadIdentity(f.Key); err == nil || !strings.Contains(err.Error(), "chmod 600") {
		t.Fatalf("world-readable key loaded: %v", err)
	}
}

func TestBadNames(t *testing.T) {
	for _, n := range []string{"", "a+b", "a:b", "a b", "a/b"} {
		if _, err := Generate(t.TempDir(), n); err == nil {
			t.Errorf("name %q accepted", n)
		}
	}
}
