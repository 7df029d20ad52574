// Package narinfo parses and writes Nix's narinfo files strictly, computes
// the fingerprint a narinfo signature covers, and recomputes the store path
// of a content-addressed (self-certifying) path from its CA field.
//
// # Format
//
// A narinfo is the metadata a Nix binary cache serves at /<hash>.narinfo:
// "Key: value" lines, each ended by LF. Real `nix copy --to file://` writes
//
//	StorePath: /nix/store/qqz6k7qq3m3ndb782n09wh3lbjpdirl7-b
//	URL: nar/0l4hfr3lwj3gjqz5fqqpk901ybhssxkkfydbq01j7v8wzd5vhlsd.nar.xz
//	Compression: xz
//	FileHash: sha256:0l4hfr3lwj3gjqz5fqqpk901ybhssxkkfydbq01j7v8wzd5vhlsd
//	FileSize: 212
//	NarHash: sha256:17prm5q6w01jys0mkysgwc7j8mjq9xvam6cy0h9yrgfdgvrypb18
//	NarSize: 328
//	References: 1gfcb4v97r618qvrb6s1g12rr1qrq87h-a
//	Deriver: g8s88g5l11rd9x97n30ikmbi480z5xw7-b.drv
//	Sig: golden-1:0yMUYQfPk9vTHULO2gp5WoFMVNbe508F0qSNSrBqEtLT8fCsdzZC/GGEwKxw++jgxMl+Rh68b5bqorcyg0k2Ag==
//
// and a path added with builtins.path also carries
//
//	CA: fixed:r:sha256:1q8d572y0czwykhyh20djy5lqs7f6ckbcr43ynpbrn3l7blgvb6z
//
// StorePath, URL, NarHash and NarSize are required; Sig may repeat; every
// other key appears at most once. References and Deriver are store-path
// basenames ("References: " with a trailing space when there are none;
// "Deriver: unknown-deriver" means none). A missing Compression means bzip2,
// as in Nix.
//
// Parse is stricter than Nix on purpose, because vouch reads narinfos from
// upstreams it does not trust: at most MaxSize bytes, no unknown or repeated
// keys, no CR, no blank lines, canonical decimal sizes, valid store paths,
// signatures of the right length. Hashes may come in any form Nix accepts
// (nix32, base16, base64, SRI "sha256-…") and are normalised to
// "<algo>:<nix32>", the form Nix prints and the form claims use.
//
// # Fingerprint
//
// A narinfo signature is an Ed25519 signature over
//
//	1;<StorePath>;<NarHash>;<NarSize>;<References as full store paths, comma-joined>
//
// for example
//
//	1;/nix/store/qqz6k7qq3m3ndb782n09wh3lbjpdirl7-b;sha256:17prm5q6w01jys0mkysgwc7j8mjq9xvam6cy0h9yrgfdgvrypb18;328;/nix/store/1gfcb4v97r618qvrb6s1g12rr1qrq87h-a
//
// The fingerprint does not cover URL, Compression, FileHash, FileSize,
// Deriver, System or CA: those are transport details or hints.
package narinfo

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/vouch-dev/vouch/claim"
)

// MaxSize is the largest narinfo accepted, in bytes. A narinfo with 2000
// references is about 80 bytes a reference; real ones are a few hundred
// bytes. Stock Nix accepts a 10 MB narinfo; vouch does not.
const MaxSize = 64 << 10

// NarInfo is one decoded narinfo. Hash fields hold the normalised
// "<algo>:<nix32>" form.
type NarInfo struct {
	StorePath   string   // full path, /nix/store/<hash>-<name>
	URL         string   // where the (compressed) NAR is, relative to the cache
	Compression string   // as written; "" if the key was absent (Nix: bzip2)
	FileHash    string   // hash of the file at URL; "" if absent
	FileSize    uint64   // size of the file at URL; 0 if absent
	NarHash     string   // "sha256:" + nix32 of the uncompressed NAR
	NarSize     uint64   // size of the uncompressed NAR
	References  []string // store-path basenames, as written
	Deriver     string   // basename of the .drv; "" if absent or unknown
	System      string   // "" if absent
	Sigs        []string // "keyname:base64(signature)", in order
	CA          string   // content address, normalised; "" if absent
}

// ErrSyntax is wrapped by every error Parse returns.
var ErrSyntax = errors.New("malformed narinfo")

func syntaxErr(line int, format string, args ...any) error {
	return fmt.Errorf("%w: line %d: %s", ErrSyntax, line, fmt.Sprintf(format, args...))
}

// EffectiveCompression returns the compression of the file at URL, with
// Nix's default (bzip2) when the narinfo names none.
func (n *NarInfo) EffectiveCompression() string {
	if n.Compression == "" {
		return "bzip2"
	}
	return n.Compression
}

// Read reads and parses one narinfo from r, refusing more than MaxSize
// bytes without reading further.
func Read(r io.Reader) (*NarInfo, error) {
	b, err := io.ReadAll(io.LimitReader(r, MaxSize+1))
	if err != nil {
		return nil, fmt.Errorf("narinfo: %w", err)
	}
	return Parse(b)
}

// Parse decodes a narinfo strictly (see the package doc).
func Parse(b []byte) (*NarInfo, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w: larger than the %d-byte limit", ErrSyntax, MaxSize)
	}
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty", ErrSyntax)
	}
	text := string(b)
	// The last line may lack its LF; Nix writes one, a few servers do not.
	text = strings.TrimSuffix(text, "\n")
	n := &NarInfo{}
	seen := map[string]bool{}
	for i, line := range strings.Split(text, "\n") {
		num := i + 1
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return nil, syntaxErr(num, "want \"Key: value\", got %q", trunc(line))
		}
		switch {
		case strings.HasPrefix(v, " "):
			v = v[1:]
		case v == "" && k == "References":
			// "References:" without the space: the same empty list.
		default:
			return nil, syntaxErr(num, "want \"Key: value\" with one space after the colon, got %q", trunc(line))
		}
		if strings.ContainsAny(line, "\r\x00\t") {
			return nil, syntaxErr(num, "contains a carriage return, tab or NUL")
		}
		if seen[k] && k != "Sig" {
			return nil, syntaxErr(num, "duplicate key %q", trunc(k))
		}
		seen[k] = true
		if v == "" && k != "References" {
			return nil, syntaxErr(num, "empty value for %q", trunc(k))
		}
		if v != strings.TrimSpace(v) && k != "References" {
			return nil, syntaxErr(num, "value of %s has surrounding spaces", k)
		}
		var err error
		switch k {
		case "StorePath":
			if err = claim.ValidStorePath(v); err == nil {
				n.StorePath = v
			}
		case "URL":
			if strings.ContainsAny(v, " ") {
				err = errors.New("URL contains a space")
			}
			n.URL = v
		case "Compression":
			if !isToken(v) {
				err = fmt.Errorf("compression %q is not a lower-case word", trunc(v))
			}
			n.Compression = v
		case "FileHash":
			n.FileHash, err = NormaliseHash(v)
		case "FileSize":
			n.FileSize, err = parseSize(v)
		case "NarHash":
			n.NarHash, err = NormaliseNarHash(v)
		case "NarSize":
			n.NarSize, err = parseSize(v)
			if err == nil && n.NarSize == 0 {
				err = errors.New("NarSize is 0; a NAR is never empty")
			}
		case "References":
			n.References, err = parseReferences(v)
		case "Deriver":
			if v != "unknown-deriver" {
				if err = claim.ValidStorePath(claim.StoreDir + "/" + v); err == nil && !strings.HasSuffix(v, ".drv") {
					err = fmt.Errorf("deriver %q does not end in .drv", trunc(v))
				}
				n.Deriver = v
			}
		case "System":
			if !isPrintNoSpace(v) {
				err = fmt.Errorf("system %q is not printable text without spaces", trunc(v))
			}
			n.System = v
		case "Sig":
			if err = validSig(v); err == nil {
				n.Sigs = append(n.Sigs, v)
			}
		case "CA":
			var ca ContentAddress
			if ca, err = ParseCA(v); err == nil {
				n.CA = ca.String()
			}
		default:
			return nil, syntaxErr(num, "unknown key %q (known: StorePath URL Compression FileHash FileSize NarHash NarSize References Deriver System Sig CA)", trunc(k))
		}
		if err != nil {
			return nil, syntaxErr(num, "%s: %v", k, err)
		}
	}
	for _, k := range []string{"StorePath", "URL", "NarHash", "NarSize"} {
		if !seen[k] {
			return nil, fmt.Errorf("%w: required key %s is missing", ErrSyntax, k)
		}
	}
	return n, nil
}

// Marshal writes n in the order and form Nix writes narinfos.
func (n *NarInfo) Marshal() []byte {
	var b bytes.Buffer
	line := func(k, v string) { b.WriteString(k); b.WriteString(": "); b.WriteString(v); b.WriteByte('\n') }
	line("StorePath", n.StorePath)
	line("URL", n.URL)
	if n.Compression != "" {
		line("Compression", n.Compression)
	}
	if n.FileHash != "" {
		line("FileHash", n.FileHash)
	}
	if n.FileSize != 0 {
		line("FileSize", strconv.FormatUint(n.FileSize, 10))
	}
	line("NarHash", n.NarHash)
	line("NarSize", strconv.FormatUint(n.NarSize, 10))
	line("References", strings.Join(n.References, " "))
	if n.Deriver != "" {
		line("Deriver", n.Deriver)
	}
	if n.System != "" {
		line("System", n.System)
	}
	for _, s := range n.Sigs {
		line("Sig", s)
	}
	if n.CA != "" {
		line("CA", n.CA)
	}
	return b.Bytes()
}

// Fingerprint returns what a narinfo signature covers (see the package doc).
func (n *NarInfo) Fingerprint() string {
	return Fingerprint(n.StorePath, n.NarHash, n.NarSize, n.References)
}

// Fingerprint returns "1;<storePath>;<narHash>;<narSize>;<refs>" with refs
// turned into full store paths and comma-joined, as Nix signs it. narHash
// must already be normalised ("sha256:" + nix32).
func Fingerprint(storePath, narHash string, narSize uint64, references []string) string {
	var b strings.Builder
	b.Grow(len(storePath) + len(narHash) + 24 + len(references)*(len(claim.StoreDir)+50))
	b.WriteString("1;")
	b.WriteString(storePath)
	b.WriteByte(';')
	b.WriteString(narHash)
	b.WriteByte(';')
	b.WriteString(strconv.FormatUint(narSize, 10))
	b.WriteByte(';')
	for i, r := range references {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(claim.StoreDir)
		b.WriteByte('/')
		b.WriteString(r)
	}
	return b.String()
}

func parseSize(v string) (uint64, error) {
	sz, err := strconv.ParseUint(v, 10, 64)
	if err != nil || strconv.FormatUint(sz, 10) != v {
		return 0, fmt.Errorf("%q is not a canonical decimal number", trunc(v))
	}
	return sz, nil
}

func parseReferences(v string) ([]string, error) {
	v = strings.TrimSuffix(v, " ")
	if v == "" {
		return nil, nil
	}
	refs := strings.Split(v, " ")
	seen := make(map[string]bool, len(refs))
	for _, r := range refs {
		if err := claim.ValidStorePath(claim.StoreDir + "/" + r); err != nil {
			return nil, fmt.Errorf("reference: %v", err)
		}
		if seen[r] {
			return nil, fmt.Errorf("reference %q listed twice", trunc(r))
		}
		seen[r] = true
	}
	if len(refs) > claim.MaxRefs {
		return nil, fmt.Errorf("%d references exceed the limit of %d", len(refs), claim.MaxRefs)
	}
	return refs, nil
}

// validSig checks "keyname:base64" with a 64-byte Ed25519 signature.
func validSig(v string) error {
	name, enc, ok := strings.Cut(v, ":")
	if !ok || name == "" || !isPrintNoSpace(name) {
		return fmt.Errorf("%q is not keyname:base64", trunc(v))
	}
	raw, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || len(raw) != 64 {
		return fmt.Errorf("signature of key %q is not base64 of 64 bytes", trunc(name))
	}
	return nil
}

func isToken(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return s != ""
}

func isPrintNoSpace(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f {
			return false
		}
	}
	return s != ""
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
