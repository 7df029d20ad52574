package narinfo

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/vouch-dev/vouch/keys"
)

// The files in testdata were written by Nix 2.8's `nix copy --to file://`
// (xz, zstd, bzip2, none; signed with testdata/golden-1.sec; CA paths from
// builtins.path, builtins.toFile and a floating CA derivation).
func goldenFiles(t *testing.T) []string {
	t.Helper()
	files, err := filepath.Glob("testdata/*.narinfo")
	if err != nil || len(files) < 10 {
		t.Fatalf("golden narinfos missing: %v %v", files, err)
	}
	return files
}

func TestGoldenRoundTrip(t *testing.T) {
	for _, f := range goldenFiles(t) {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		n, err := Parse(b)
		if err != nil {
			t.Errorf("%s: %v", f, err)
			continue
		}
		if got := n.Marshal(); !bytes.Equal(got, b) {
			t.Errorf("%s: Marshal differs from what Nix wrote:\n%s\nwant:\n%s", f, got, b)
		}
	}
}

// TestGoldenSignatures checks the fingerprint against signatures Nix made:
// Ed25519 is deterministic, so signing our fingerprint with the same key must
// give Nix's Sig byte for byte, and Nix's Sig must verify over it.
func TestGoldenSignatures(t *testing.T) {
	secret, err := os.ReadFile("testdata/golden-1.sec")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "k.sec")
	if err := os.WriteFile(keyFile, secret, 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := keys.LoadNixKey(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	pubText, _ := os.ReadFile("testdata/golden-1.pub")
	_, pub, err := keys.ParseNixPublicKey(string(pubText))
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob("testdata/signed-*.narinfo")
	if len(files) != 4 {
		t.Fatalf("want 4 signed golden narinfos, got %d", len(files))
	}
	for _, f := range files {
		b, _ := os.ReadFile(f)
		n, err := Parse(b)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(n.Sigs) != 1 {
			t.Fatalf("%s: want one Sig", f)
		}
		if got := key.Sign(n.Fingerprint()); got != n.Sigs[0] {
			t.Errorf("%s: our signature %s differs from Nix's %s (fingerprint %q)", f, got, n.Sigs[0], n.Fingerprint())
		}
		raw, _ := base64.StdEncoding.DecodeString(strings.TrimPrefix(n.Sigs[0], "golden-1:"))
		if !ed25519.Verify(pub, []byte(n.Fingerprint()), raw) {
			t.Errorf("%s: Nix's signature does not verify over %q", f, n.Fingerprint())
		}
	}
}

func TestGoldenContentAddresses(t *testing.T) {
	for _, f := range []string{"source-ca", "ca-derivation", "text-ca", "text-ref-ca", "flat-ca"} {
		b, err := os.ReadFile("testdata/" + f + ".narinfo")
		if err != nil {
			t.Fatal(err)
		}
		n, err := Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		ca, err := ParseCA(n.CA)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := ca.Certifies(n.StorePath, n.References); err != nil {
			t.Errorf("%s: %v", f, err)
		}
		// Any change of name, references or hash must break it.
		other := strings.Replace(n.StorePath, n.StorePath[44:], "renamed", 1)
		if ca.Certifies(other, n.References) == nil {
			t.Errorf("%s: certifies a renamed path", f)
		}
		if ca.Method != CAFlat {
			if ca.Certifies(n.StorePath, append(n.References, "1gfcb4v97r618qvrb6s1g12rr1qrq87h-a")) == nil {
				t.Errorf("%s: certifies with an extra reference", f)
			}
		}
		ca.Hash.Digest[0] ^= 1
		if ca.Certifies(n.StorePath, n.References) == nil {
			t.Errorf("%s: certifies with another hash", f)
		}
	}
}

func TestHashForms(t *testing.T) {
	want := "sha256:17prm5q6w01jys0mkysgwc7j8mjq9xvam6cy0h9yrgfdgvrypb18"
	h, err := ParseHash(want)
	if err != nil {
		t.Fatal(err)
	}
	b64 := base64.StdEncoding.EncodeToString(h.Digest)
	for _, form := range []string{
		want,
		h.Base16(),
		strings.ToUpper(h.Base16()[7:]),
		"sha256:" + b64,
		"sha256-" + b64,
	} {
		if !strings.HasPrefix(form, "sha256") {
			form = "sha256:" + form
		}
		got, err := NormaliseNarHash(form)
		if err != nil || got != want {
			t.Errorf("NormaliseNarHash(%q) = %q, %v; want %q", form, got, err, want)
		}
	}
	for _, bad := range []string{
		"", "sha256", "sha256:", "md4:abc", "sha1:" + strings.Repeat("0", 40),
		"sha256:" + strings.Repeat("e", 52), // e is not in the alphabet
		"sha256:" + strings.Repeat("z", 52), // overflows 256 bits
		"sha256:" + strings.Repeat("0", 63),
	} {
		if got, err := NormaliseNarHash(bad); err == nil {
			t.Errorf("NormaliseNarHash(%q) = %q, want an error", bad, got)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	good, _ := os.ReadFile("testdata/b-xz.narinfo")
	cases := map[string]string{
		"oversized":         string(good) + "System: " + strings.Repeat("x", MaxSize) + "\n",
		"unknown key":       string(good) + "Evil: yes\n",
		"duplicate NarHash": string(good) + "NarHash: sha256:17prm5q6w01jys0mkysgwc7j8mjq9xvam6cy0h9yrgfdgvrypb18\n",
		"CRLF":              strings.ReplaceAll(string(good), "\n", "\r\n"),
		"blank line":        strings.Replace(string(good), "\nURL", "\n\nURL", 1),
		"no StorePath":      strings.SplitN(string(good), "\n", 2)[1],
		"bad store path":    strings.Replace(string(good), "/nix/store/qqz6", "/gnu/store/qqz6", 1),
		"NarSize 0":         strings.Replace(string(good), "NarSize: 328", "NarSize: 0", 1),
		"NarSize +1":        strings.Replace(string(good), "NarSize: 328", "NarSize: +328", 1),
		"NarSize leading 0": strings.Replace(string(good), "NarSize: 328", "NarSize: 0328", 1),
		"bad reference":     strings.Replace(string(good), "References: 1gfc", "References: ../1gfc", 1),
		"repeated ref":      strings.Replace(string(good), "References: 1gfcb4v97r618qvrb6s1g12rr1qrq87h-a", "References: 1gfcb4v97r618qvrb6s1g12rr1qrq87h-a 1gfcb4v97r618qvrb6s1g12rr1qrq87h-a", 1),
		"short sig":         string(good) + "Sig: k:AAAA\n",
		"no colon":          string(good) + "garbage\n",
		"md5 NarHash":       strings.Replace(string(good), "NarHash: sha256:17prm5q6w01jys0mkysgwc7j8mjq9xvam6cy0h9yrgfdgvrypb18", "NarHash: md5:00000000000000000000000000000000", 1),
		"bad CA":            string(good) + "CA: fixed:sha256:nope\n",
		"empty":             "",
		"binary":            "\x00\x01\x02",
	}
	for name, in := range cases {
		if _, err := Parse([]byte(in)); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	if _, err := Read(strings.NewReader(strings.Repeat("StorePath: x\n", 1<<20))); err == nil {
		t.Error("Read accepted a 13 MB narinfo")
	}
}

func TestParseNormalises(t *testing.T) {
	in := "StorePath: /nix/store/qqz6k7qq3m3ndb782n09wh3lbjpdirl7-b\n" +
		"URL: nar/x.nar\n" +
		"NarHash: sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n" +
		"NarSize: 1\n" +
		"References:\n" +
		"Deriver: unknown-deriver"
	n, err := Parse([]byte(in))
	if err != nil {
		t.Fatal(err)
	}
	want := &NarInfo{
		StorePath: "/nix/store/qqz6k7qq3m3ndb782n09wh3lbjpdirl7-b",
		URL:       "nar/x.nar",
		NarHash:   "sha256:" + strings.Repeat("0", 52),
		NarSize:   1,
	}
	if !reflect.DeepEqual(n, want) {
		t.Errorf("got %+v, want %+v", n, want)
	}
	if n.EffectiveCompression() != "bzip2" {
		t.Errorf("missing Compression must mean bzip2, got %q", n.EffectiveCompression())
	}
}

func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob("testdata/*.narinfo")
	for _, file := range files {
		b, _ := os.ReadFile(file)
		f.Add(b)
	}
	f.Add([]byte("StorePath: /nix/store/qqz6k7qq3m3ndb782n09wh3lbjpdirl7-b\nURL: u\nNarHash: sha256-AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nNarSize: 1\nReferences:\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := Parse(b)
		if err != nil {
			return
		}
		// What Parse accepts, Marshal writes in a form Parse reads back
		// to the same value: the renderer never produces a narinfo the
		// parser (or Nix) would read differently.
		out := n.Marshal()
		m, err := Parse(out)
		if err != nil {
			t.Fatalf("re-parse of %q: %v", out, err)
		}
		if !reflect.DeepEqual(n, m) {
			t.Fatalf("round trip changed %+v into %+v", n, m)
		}
		if !bytes.Equal(m.Marshal(), out) {
			t.Fatalf("Marshal is not stable")
		}
		if n.CA != "" {
			ca, err := ParseCA(n.CA)
			if err != nil {
				t.Fatal(err)
			}
			_ = ca.Certifies(n.StorePath, n.References) // must not panic
		}
	})
}
