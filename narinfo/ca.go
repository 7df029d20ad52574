package narinfo

import (
	"crypto/sha256"
	"fmt"
	"slices"
	"strings"

	"github.com/nix-community/go-nix/pkg/nixbase32"

	"github.com/vouch-dev/vouch/claim"
)

// Content-address methods, as written at the start of a CA field.
const (
	// CAText: a single file added with builtins.toFile or a .drv; the hash
	// is SHA-256 of the file's contents.
	CAText = "text"
	// CAFlat: a fixed-output path ingested flat (fetchurl); the hash is of
	// the single regular file's contents.
	CAFlat = "fixed"
	// CARecursive: a fixed-output path ingested recursively (builtins.path,
	// fetchTarball, floating CA derivations); the hash is of the NAR.
	CARecursive = "fixed:r"
)

// ContentAddress is a decoded CA field: how the path's content was hashed,
// and the hash. The store path of a content-addressed path is a function of
// this, its name and its references only, so a CA path certifies itself.
type ContentAddress struct {
	Method string // CAText, CAFlat or CARecursive
	Hash   Hash
}

// ParseCA decodes "text:sha256:<hash>", "fixed:<algo>:<hash>" or
// "fixed:r:<algo>:<hash>", with the hash in any encoding ParseHash accepts.
func ParseCA(s string) (ContentAddress, error) {
	var ca ContentAddress
	rest := s
	switch {
	case strings.HasPrefix(s, "text:"):
		ca.Method, rest = CAText, s[len("text:"):]
	case strings.HasPrefix(s, "fixed:r:"):
		ca.Method, rest = CARecursive, s[len("fixed:r:"):]
	case strings.HasPrefix(s, "fixed:"):
		ca.Method, rest = CAFlat, s[len("fixed:"):]
	default:
		return ca, fmt.Errorf("content address %q does not start with text:, fixed: or fixed:r:", trunc(s))
	}
	h, err := ParseHash(rest)
	if err != nil {
		return ca, fmt.Errorf("content address: %w", err)
	}
	if ca.Method == CAText && h.Algo != "sha256" {
		return ca, fmt.Errorf("text content address must use sha256, got %s", h.Algo)
	}
	ca.Hash = h
	return ca, nil
}

// String returns the CA field as Nix writes it: "<method>:<algo>:<nix32>".
func (ca ContentAddress) String() string { return ca.Method + ":" + ca.Hash.String() }

// StorePath computes the store path Nix gives content with this address,
// named name, referring to references (basenames, not including the path
// itself) and, if selfReference, to itself. It follows Nix's makeStorePath,
// makeFixedOutputPath and makeTextPath:
//
//	path   = /nix/store/<nix32(fold20(sha256("<type>:sha256:<inner hex>:/nix/store:<name>")))>-<name>
//	fixed:r:sha256  type "source" + ":<ref full path>"… + (":self" if self-referencing),
//	                inner = the NAR hash
//	text            type "text" + ":<ref full path>"…, inner = SHA-256 of the file
//	any other fixed type "output:out", no references,
//	                inner = sha256("fixed:out:" + ("r:" if recursive) + "<algo>:<hex>" + ":")
//
// References are sorted, as Nix's StorePathSet is.
func (ca ContentAddress) StorePath(name string, references []string, selfReference bool) (string, error) {
	refs := slices.Clone(references)
	slices.Sort(refs)
	var typ string
	inner := ca.Hash
	switch {
	case ca.Method == CARecursive && ca.Hash.Algo == "sha256", ca.Method == CAText:
		typ = "source"
		if ca.Method == CAText {
			typ = "text"
			if selfReference {
				return "", fmt.Errorf("a text path cannot refer to itself")
			}
		}
		for _, r := range refs {
			typ += ":" + claim.StoreDir + "/" + r
		}
		if selfReference {
			typ += ":self"
		}
	default:
		if len(refs) > 0 || selfReference {
			return "", fmt.Errorf("a %s:%s content address cannot have references", ca.Method, ca.Hash.Algo)
		}
		typ = "output:out"
		prefix := ""
		if ca.Method == CARecursive {
			prefix = "r:"
		}
		d := sha256.Sum256([]byte("fixed:out:" + prefix + ca.Hash.Base16() + ":"))
		inner = Hash{Algo: "sha256", Digest: d[:]}
	}
	return makeStorePath(typ, inner, name), nil
}

// Certifies checks that storePath is the path this content address gives
// for its name and references (basenames; the path's own basename among
// them marks a self-reference). When it does, the path certifies itself:
// content that hashes to ca is exactly what that path must contain.
func (ca ContentAddress) Certifies(storePath string, references []string) error {
	if err := claim.ValidStorePath(storePath); err != nil {
		return err
	}
	base := strings.TrimPrefix(storePath, claim.StoreDir+"/")
	others := make([]string, 0, len(references))
	self := false
	for _, r := range references {
		if r == base {
			self = true
			continue
		}
		others = append(others, r)
	}
	want, err := ca.StorePath(base[33:], others, self)
	if err != nil {
		return err
	}
	if want != storePath {
		return fmt.Errorf("content address %s with these references gives %s, not %s", ca, want, storePath)
	}
	return nil
}

func makeStorePath(typ string, inner Hash, name string) string {
	s := typ + ":" + inner.Base16() + ":" + claim.StoreDir + ":" + name
	h := sha256.Sum256([]byte(s))
	var folded [20]byte
	for i, b := range h {
		folded[i%20] ^= b
	}
	return claim.StoreDir + "/" + nixbase32.EncodeToString(folded[:]) + "-" + name
}
