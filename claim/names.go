package claim

import (
	"errors"
	"fmt"
	"strings"
)

// StoreDir is the only Nix store directory vouch claims are about. A chroot
// store (nix-build --store DIR) still names its paths /nix/store/...; only its
// files live elsewhere on disk.
const StoreDir = "/nix/store"

// nix32Alphabet is Nix's base-32 alphabet (no e, o, u, t).
const nix32Alphabet = "0123456789abcdfghijklmnpqrsvwxyz"

// isNix32Char is a lookup table: validating claims is on the append path.
var isNix32Char = func() (t [256]bool) {
	for i := 0; i < len(nix32Alphabet); i++ {
		t[nix32Alphabet[i]] = true
	}
	return t
}()

func isNix32(s string) bool {
	for i := 0; i < len(s); i++ {
		if !isNix32Char[s[i]] {
			return false
		}
	}
	return true
}

// ValidStorePath checks that p is "/nix/store/<32 nix32 chars>-<name>" with a
// name Nix would accept, and nothing after it (no sub-path).
func ValidStorePath(p string) error {
	base, ok := strings.CutPrefix(p, StoreDir+"/")
	if !ok {
		return fmt.Errorf("%q is not in %s", trunc(p), StoreDir)
	}
	return validBaseName(base)
}

// validBaseName checks that base is a store path's basename,
// "<32 nix32 chars>-<name>", as ValidStorePath does for a full path.
func validBaseName(base string) error {
	if len(base) < 34 || base[32] != '-' || !isNix32(base[:32]) {
		return fmt.Errorf("%q does not start with a 32-character Nix hash and '-'", trunc(base))
	}
	name := base[33:]
	if len(name) > 211 {
		return fmt.Errorf("store path name of %d characters is longer than 211", len(name))
	}
	if name[0] == '.' {
		return fmt.Errorf("store path name %q starts with '.'", trunc(name))
	}
	for i := 0; i < len(name); i++ {
		if !isNameChar[name[i]] {
			return fmt.Errorf("store path name %q has the forbidden character %q", trunc(name), name[i])
		}
	}
	return nil
}

// isNameChar is a lookup table of the characters Nix allows in a store
// path's name.
var isNameChar = func() (t [256]bool) {
	for c := 0; c < 256; c++ {
		t[c] = c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("+-._?=", byte(c)) >= 0
	}
	return t
}()

// HashPart returns the 32-character hash of a valid store path or basename.
func HashPart(p string) string {
	p = strings.TrimPrefix(p, StoreDir+"/")
	if len(p) < 32 {
		return ""
	}
	return p[:32]
}

func validNarHash(h string) error {
	d, ok := strings.CutPrefix(h, "sha256:")
	if !ok || len(d) != 52 || !isNix32(d) {
		return fmt.Errorf("%q is not sha256: followed by 52 Nix base-32 characters", trunc(h))
	}
	return nil
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if !(s[i] >= '0' && s[i] <= '9' || s[i] >= 'a' && s[i] <= 'f') {
			return false
		}
	}
	return true
}

func validDigest(d string) error {
	h, ok := strings.CutPrefix(d, "sha256:")
	if !ok || len(h) != 64 || !isLowerHex(h) {
		return fmt.Errorf("%q is not sha256: followed by 64 lower-case hex digits", trunc(d))
	}
	return nil
}

// validOutputID checks a content-addressed derivation output id,
// "sha256:<64 hex or 52 nix32>!<output name>", as Nix names realisations.
func validOutputID(id string) error {
	h, out, ok := strings.Cut(id, "!")
	if !ok || out == "" || strings.ContainsAny(out, "!/") {
		return fmt.Errorf("%q is not <drv hash>!<output name>", trunc(id))
	}
	d, ok := strings.CutPrefix(h, "sha256:")
	if !ok || !(len(d) == 64 && isLowerHex(d) || len(d) == 52 && isNix32(d)) {
		return fmt.Errorf("%q does not start with a sha256 derivation hash", trunc(id))
	}
	return nil
}

// OCISubject builds the subject of an oci claim: the source repository, the
// commit it was built from, the attribute or build target, and the system.
func OCISubject(source, commit, attr, system string) string {
	return source + "@" + commit + "#" + attr + "?system=" + system
}

// ParseOCISubject splits and checks an oci subject built by OCISubject.
func ParseOCISubject(s string) (source, commit, attr, system string, err error) {
	rest, system, ok := strings.Cut(s, "?system=")
	if !ok || system == "" || strings.ContainsAny(system, "?#@/") {
		return "", "", "", "", fmt.Errorf("%q does not end in ?system=<system>", trunc(s))
	}
	rest, attr, ok = strings.Cut(rest, "#")
	if !ok || attr == "" || strings.ContainsAny(attr, "?#") {
		return "", "", "", "", fmt.Errorf("%q has no #<attribute or target>", trunc(s))
	}
	i := strings.LastIndexByte(rest, '@')
	if i <= 0 {
		return "", "", "", "", fmt.Errorf("%q has no <source>@<commit>", trunc(s))
	}
	source, commit = rest[:i], rest[i+1:]
	if len(commit) < 7 || len(commit) > 64 || !isLowerHex(commit) {
		return "", "", "", "", errors.New("commit must be 7 to 64 lower-case hex digits")
	}
	if strings.ContainsAny(source, "?# \t") {
		return "", "", "", "", fmt.Errorf("source %q contains ?, # or whitespace", trunc(source))
	}
	return source, commit, attr, system, nil
}
