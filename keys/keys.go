// Package keys manages a vouch node's two identities:
//
//   - the builder identity, an Ed25519 key in C2SP signed-note form. It signs
//     the log's checkpoints (and OCI attestations). Its public half, the
//     verifier key "name+hex8keyid+base64(0x01‖pub)", is what users list in
//     their policy; any golang.org/x/mod/sumdb/note verifier can check it.
//   - the Nix binary-cache key, "name:base64(ed25519 private key)" as
//     nix-store --generate-binary-cache-key writes it. Its public half
//     "name:base64(pub)" is what users put in Nix's trusted-public-keys.
//
// Private keys are written with mode 0600, never overwritten, and never
// logged.
package keys

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/mod/sumdb/note"

	"github.com/vouch-dev/vouch/internal/durable"
)

// Identity is a loaded builder key.
type Identity struct {
	Name    string
	Signer  note.Signer
	Private ed25519.PrivateKey
	// VerifierKey is the public key in signed-note verifier form.
	VerifierKey string
}

// Public returns the Ed25519 public key.
func (id *Identity) Public() ed25519.PublicKey { return id.Private.Public().(ed25519.PublicKey) }

// Files names the files Generate writes for name in dir.
type Files struct {
	Key, VerifierKey, NixSecret, NixPublic string
}

// FilesFor returns the file names used for a key called name in dir.
func FilesFor(dir, name string) Files {
	return Files{
		Key:         filepath.Join(dir, name+".key"),
		VerifierKey: filepath.Join(dir, name+".vkey"),
		NixSecret:   filepath.Join(dir, name+".nix.sec"),
		NixPublic:   filepath.Join(dir, name+".nix.pub"),
	}
}

// ValidName reports whether name can name a key: the signed-note rules
// (non-empty, no whitespace or '+') and, for the Nix key, no ':'.
func ValidName(name string) error {
	if name == "" || strings.ContainsAny(name, "+: \t\n\r/") || !isPrint(name) {
		return fmt.Errorf("key name %q must be non-empty printable text without spaces, '+', ':' or '/'", name)
	}
	return nil
}

func isPrint(s string) bool {
	for _, r := range s {
		if r < 0x21 || r == 0x7f {
			return false
		}
	}
	return true
}

// Generate creates a builder key and a Nix cache key called name in dir
// (created 0700 if missing). It refuses to overwrite any existing file.
func Generate(dir, name string) (Files, error) {
	f := FilesFor(dir, name)
	if err := ValidName(name); err != nil {
		return f, err
	}
	for _, p := range []string{f.Key, f.VerifierKey, f.NixSecret, f.NixPublic} {
		if _, err := os.Lstat(p); err == nil {
			return f, fmt.Errorf("%s already exists; refusing to overwrite a key (move it away or choose another --name)", p)
		}
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return f, err
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		return f, err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return f, err
	}
	writes := []struct {
		path string
		data string
		mode fs.FileMode
	}{
		{f.Key, skey + "\n", 0o600},
		{f.VerifierKey, vkey + "\n", 0o644},
		{f.NixSecret, name + ":" + base64.StdEncoding.EncodeToString(priv), 0o600},
		{f.NixPublic, name + ":" + base64.StdEncoding.EncodeToString(pub) + "\n", 0o644},
	}
	for _, w := range writes {
		if err := durable.WriteNew(w.path, []byte(w.data), w.mode); err != nil {
			return f, err
		}
	}
	return f, nil
}

// LoadIdentity reads a signed-note private key file written by Generate.
func LoadIdentity(path string) (*Identity, error) {
	b, err := readPrivate(path)
	if err != nil {
		return nil, err
	}
	skey := strings.TrimSpace(string(b))
	signer, err := note.NewSigner(skey)
	if err != nil {
		return nil, fmt.Errorf("%s: not a signed-note private key (PRIVATE+KEY+name+id+key): %w", path, err)
	}
	// note.Signer does not expose the key; OCI attestations need it, so the
	// documented encoding is decoded here: PRIVATE+KEY+name+hash+base64(0x01‖seed).
	// The base64 may itself contain '+', so split off exactly four fields.
	parts := strings.SplitN(skey, "+", 5)
	if len(parts) != 5 {
		return nil, fmt.Errorf("%s: malformed signed-note private key", path)
	}
	raw, err := base64.StdEncoding.DecodeString(parts[4])
	if err != nil || len(raw) != 1+ed25519.SeedSize || raw[0] != 1 {
		return nil, fmt.Errorf("%s: only Ed25519 signed-note keys are supported", path)
	}
	priv := ed25519.NewKeyFromSeed(raw[1:])
	vkey, err := note.NewEd25519VerifierKey(signer.Name(), priv.Public().(ed25519.PublicKey))
	if err != nil {
		return nil, err
	}
	return &Identity{Name: signer.Name(), Signer: signer, Private: priv, VerifierKey: vkey}, nil
}

// readPrivate reads a private key file and refuses one that others can
// read: a leaked builder key lets anyone forge that builder's log.
func readPrivate(path string) ([]byte, error) {
	st, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("private key: %w", err)
	}
	if st.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("%s is readable by others (mode %v); run: chmod 600 %s", path, st.Mode().Perm(), path)
	}
	return os.ReadFile(path)
}

// NewVerifier parses a signed-note verifier key, as listed in a policy.
func NewVerifier(vkey string) (note.Verifier, error) {
	v, err := note.NewVerifier(strings.TrimSpace(vkey))
	if err != nil {
		return nil, fmt.Errorf("verifier key %q: %w (want name+hex8+base64 as printed by vouch keygen)", vkey, err)
	}
	return v, nil
}

// VerifierPublicKey returns the raw Ed25519 key inside a verifier key.
func VerifierPublicKey(vkey string) (ed25519.PublicKey, error) {
	parts := strings.SplitN(strings.TrimSpace(vkey), "+", 3)
	if len(parts) != 3 {
		return nil, errors.New("verifier key must have the form name+hex8+base64")
	}
	raw, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(raw) != 1+ed25519.PublicKeySize || raw[0] != 1 {
		return nil, errors.New("verifier key is not an Ed25519 signed-note key")
	}
	return ed25519.PublicKey(raw[1:]), nil
}

// KeyID returns a stable identifier of a public key independent of the name
// it was given: hex of the first 16 bytes of SHA-256 of the raw key. Two
// policy entries with the same KeyID are the same builder.
func KeyID(pub ed25519.PublicKey) string {
	h := sha256.Sum256(pub)
	return fmt.Sprintf("%x", h[:16])
}

// NoteKeyHash is the 4-byte key hash signed notes use to name a key.
func NoteKeyHash(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte("\n"))
	h.Write(append([]byte{1}, pub...))
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// NixKey is a Nix binary-cache signing key.
type NixKey struct {
	Name    string
	Private ed25519.PrivateKey
}

// PublicKey returns the key in trusted-public-keys form, name:base64.
func (k *NixKey) PublicKey() string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(k.Private.Public().(ed25519.PublicKey))
}

// Sign returns a narinfo Sig value, name:base64(signature), over fingerprint.
func (k *NixKey) Sign(fingerprint string) string {
	return k.Name + ":" + base64.StdEncoding.EncodeToString(ed25519.Sign(k.Private, []byte(fingerprint)))
}

// LoadNixKey reads a Nix secret key file (name:base64 of 64 bytes).
func LoadNixKey(path string) (*NixKey, error) {
	b, err := readPrivate(path)
	if err != nil {
		return nil, err
	}
	name, enc, ok := strings.Cut(strings.TrimSpace(string(b)), ":")
	raw, err := base64.StdEncoding.DecodeString(enc)
	if !ok || name == "" || err != nil || len(raw) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("%s: not a Nix secret key (name:base64 of 64 bytes, as nix-store --generate-binary-cache-key writes)", path)
	}
	return &NixKey{Name: name, Private: ed25519.PrivateKey(raw)}, nil
}

// ParseNixPublicKey parses name:base64(pub).
func ParseNixPublicKey(s string) (name string, pub ed25519.PublicKey, err error) {
	name, enc, ok := strings.Cut(strings.TrimSpace(s), ":")
	raw, err := base64.StdEncoding.DecodeString(enc)
	if !ok || name == "" || err != nil || len(raw) != ed25519.PublicKeySize {
		return "", nil, fmt.Errorf("%q is not a Nix public key (name:base64 of 32 bytes)", s)
	}
	return name, ed25519.PublicKey(raw), nil
}
