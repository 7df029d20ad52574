package narinfo

import (
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixbase32"
)

// hashSizes are the digest lengths of the algorithms Nix knows.
var hashSizes = map[string]int{"md5": 16, "sha1": 20, "sha256": 32, "sha512": 64}

// Hash is a decoded Nix hash.
type Hash struct {
	Algo   string // md5, sha1, sha256 or sha512
	Digest []byte
}

// String returns "<algo>:<nix32>", the form Nix prints in narinfos.
func (h Hash) String() string { return h.Algo + ":" + nixbase32.EncodeToString(h.Digest) }

// Base16 returns "<algo>:<hex>", the form store path computation hashes.
func (h Hash) Base16() string { return h.Algo + ":" + hex.EncodeToString(h.Digest) }

// ParseHash decodes a hash in any form Nix accepts with an explicit
// algorithm: "<algo>:<nix32|base16|base64>" or SRI "<algo>-<base64>". The
// encoding is told apart by length, as Nix does.
func ParseHash(s string) (Hash, error) {
	algo, enc, ok := strings.Cut(s, ":")
	sri := false
	if !ok {
		algo, enc, ok = strings.Cut(s, "-")
		sri = true
	}
	size, known := hashSizes[algo]
	if !ok || !known {
		return Hash{}, fmt.Errorf("hash %q does not start with md5:, sha1:, sha256: or sha512: (or the SRI form sha256-…)", trunc(s))
	}
	var (
		digest []byte
		err    error
	)
	switch {
	case sri:
		digest, err = base64.StdEncoding.DecodeString(enc)
	case len(enc) == hex.EncodedLen(size):
		digest, err = hex.DecodeString(enc)
	case len(enc) == nixbase32.EncodedLen(size):
		digest, err = nixbase32.DecodeString(enc)
		if err == nil && nixbase32.EncodeToString(digest) != enc {
			// Nix-base32 of a digest has unused high bits; only the
			// canonical spelling is accepted so one hash has one text.
			err = fmt.Errorf("non-canonical base-32")
		}
	case len(enc) == base64.StdEncoding.EncodedLen(size):
		digest, err = base64.StdEncoding.DecodeString(enc)
	default:
		return Hash{}, fmt.Errorf("%s hash %q has %d characters: not base-16, Nix base-32 or base-64 of %d bytes", algo, trunc(s), len(enc), size)
	}
	if err != nil || len(digest) != size {
		return Hash{}, fmt.Errorf("%s hash %q does not decode to %d bytes", algo, trunc(s), size)
	}
	return Hash{Algo: algo, Digest: digest}, nil
}

// NormaliseHash returns h in "<algo>:<nix32>" form.
func NormaliseHash(h string) (string, error) {
	p, err := ParseHash(h)
	if err != nil {
		return "", err
	}
	return p.String(), nil
}

// NormaliseNarHash returns a NAR hash as "sha256:" + nix32, the only form
// claims and fingerprints use. A NAR hash must be SHA-256.
func NormaliseNarHash(h string) (string, error) {
	p, err := ParseHash(h)
	if err != nil {
		return "", err
	}
	if p.Algo != "sha256" {
		return "", fmt.Errorf("NAR hash must be sha256, got %s", p.Algo)
	}
	return p.String(), nil
}
