// Package claim defines the unit that a vouch builder logs and that followers
// compare: a statement "building SUBJECT gave OUTPUT", signed as a whole by
// the builder's log checkpoint.
//
// # Encoding (version 1)
//
// A claim is UTF-8 text: a header line followed by "key value" lines, each
// terminated by a single LF, in the fixed order given below. There are no
// blank lines, no comments, no carriage returns, no trailing spaces and no
// optional whitespace, so a claim has exactly one encoding: Marshal(Parse(b))
// == b for every b that Parse accepts. The whole entry is at most MaxSize bytes
// (tlog-tiles entries are limited to 64 KiB).
//
//	vouch-claim/v1
//	kind nix
//	subject /nix/store/yc67d8wxv2y238qmy10ahm67vsjh0gby-b
//	nar-hash sha256:0cag13c7y879xydq9hdd585j6y11ip6z27qki8h93bz8a49m0wcd
//	nar-size 328
//	ref bvs815ip97cck1mwq6klqxgr83xn9fwk-a
//	deriver 6dfmycvm1f6w7icvcvmnvghxdizgz1xp-b.drv
//	time 2026-11-22T00:33:40Z
//
// Keys by kind, in this order ("*" = may repeat, "?" = optional):
//
//	nix     subject nar-hash nar-size ref* deriver? time?
//	nix-ca  subject out-path nar-hash nar-size ref* time?
//	oci     subject digest nar-hash? time?
//
// Kinds:
//
//   - nix: an input-addressed Nix output. subject is the full store path;
//     nar-hash is "sha256:" + the Nix base-32 digest of the path's NAR
//     serialisation, as Nix prints it; nar-size its length in bytes; each ref
//     is the basename of a store path the output references (sorted, unique,
//     the path itself included when it refers to itself). These are exactly
//     the inputs of Nix's narinfo fingerprint
//     "1;<storePath>;<narHash>;<narSize>;<refs as full paths, comma-joined>",
//     so an agreed claim is all a substituter needs to sign a narinfo.
//   - nix-ca: a content-addressed derivation output. subject is the
//     derivation output id "sha256:<hash modulo of the .drv>!<output name>";
//     out-path is the store path it realised to, and nar-hash, nar-size, ref
//     describe that path as for nix.
//   - oci: an OCI image built from a source. subject is
//     "<source>@<commit>#<attribute or target>?system=<system>" (see
//     OCISubject); digest is the image manifest digest "sha256:<64 hex>";
//     nar-hash is given for images built by Nix.
//
// deriver and time are informational: they are logged, shown and exported,
// but never compared.
//
// # Agreement
//
// Two claims agree when they have the same kind and subject and equal
// outputs (Output). They are never compared byte for byte: two builders that
// both built b at different times agree although their entries differ.
package claim

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Header is the first line of every version-1 claim.
const Header = "vouch-claim/v1"

// MaxSize is the largest encoded claim accepted, in bytes. tlog-tiles entry
// bundles cannot hold entries of 64 KiB or more.
const MaxSize = 65535

// MaxRefs bounds the references of one claim. Real store paths rarely have
// more than a few hundred; MaxSize bounds the total anyway.
const MaxRefs = 2000

// Kind is what sort of build a claim is about.
type Kind string

// The kinds of claim this version defines.
const (
	KindNix   Kind = "nix"
	KindNixCA Kind = "nix-ca"
	KindOCI   Kind = "oci"
)

// Claim is one decoded claim. Which fields are set depends on Kind.
type Claim struct {
	Kind    Kind   `json:"kind"`
	Subject string `json:"subject"`

	// Output fields (compared).
	OutPath    string   `json:"out_path,omitempty"`   // nix-ca: the store path the output id realised to
	NarHash    string   `json:"nar_hash,omitempty"`   // nix, nix-ca, optional for oci: "sha256:" + nix32
	NarSize    uint64   `json:"nar_size,omitempty"`   // nix, nix-ca
	References []string `json:"references,omitempty"` // nix, nix-ca: sorted store-path basenames
	Digest     string   `json:"digest,omitempty"`     // oci: "sha256:" + 64 hex

	// Informational fields (never compared).
	Deriver string    `json:"deriver,omitempty"` // nix: basename of the .drv
	Time    time.Time `json:"time,omitzero"`     // when the builder logged it, UTC, second precision
}

// Marshal returns the canonical encoding of c. It validates c first, so a
// claim that Parse would refuse is never written.
func (c *Claim) Marshal() ([]byte, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	var b bytes.Buffer
	line := func(k, v string) { b.WriteString(k); b.WriteByte(' '); b.WriteString(v); b.WriteByte('\n') }
	b.WriteString(Header)
	b.WriteByte('\n')
	line("kind", string(c.Kind))
	line("subject", c.Subject)
	switch c.Kind {
	case KindNix, KindNixCA:
		if c.Kind == KindNixCA {
			line("out-path", c.OutPath)
		}
		line("nar-hash", c.NarHash)
		line("nar-size", strconv.FormatUint(c.NarSize, 10))
		for _, r := range c.References {
			line("ref", r)
		}
		if c.Kind == KindNix && c.Deriver != "" {
			line("deriver", c.Deriver)
		}
	case KindOCI:
		line("digest", c.Digest)
		if c.NarHash != "" {
			line("nar-hash", c.NarHash)
		}
	}
	if !c.Time.IsZero() {
		line("time", c.Time.UTC().Format(time.RFC3339))
	}
	if b.Len() > MaxSize {
		return nil, fmt.Errorf("claim: encoded size %d exceeds the %d-byte limit", b.Len(), MaxSize)
	}
	return b.Bytes(), nil
}

// Output returns the canonical form of the fields that are compared between
// builders. Two claims for the same (Kind, Subject) agree exactly when their
// Outputs are equal.
func (c *Claim) Output() string {
	switch c.Kind {
	case KindNix:
		return "nar-hash=" + c.NarHash + ";nar-size=" + strconv.FormatUint(c.NarSize, 10) + ";refs=" + strings.Join(c.References, ",")
	case KindNixCA:
		return "out-path=" + c.OutPath + ";nar-hash=" + c.NarHash + ";nar-size=" + strconv.FormatUint(c.NarSize, 10) + ";refs=" + strings.Join(c.References, ",")
	case KindOCI:
		return "digest=" + c.Digest + ";nar-hash=" + c.NarHash
	}
	return ""
}

// Key returns "kind subject", the identity under which claims are indexed
// and compared.
func (c *Claim) Key() string { return string(c.Kind) + " " + c.Subject }

// Agrees reports whether c and o are about the same subject and have the
// same output.
func (c *Claim) Agrees(o *Claim) bool {
	return c.Kind == o.Kind && c.Subject == o.Subject && c.Output() == o.Output()
}

// ErrSyntax is wrapped by every error Parse returns.
var ErrSyntax = errors.New("malformed claim")

func syntaxErr(line int, format string, args ...any) error {
	return fmt.Errorf("%w: line %d: %s", ErrSyntax, line, fmt.Sprintf(format, args...))
}

// keyOrder lists, for each kind, the keys a claim may have after "kind",
// in their required order.
var keyOrder = map[Kind][]string{
	KindNix:   {"subject", "nar-hash", "nar-size", "ref", "deriver", "time"},
	KindNixCA: {"subject", "out-path", "nar-hash", "nar-size", "ref", "time"},
	KindOCI:   {"subject", "digest", "nar-hash", "time"},
}

// Parse decodes a claim, strictly: anything but the canonical encoding of a
// valid claim is refused with an error that names the offending line.
//
// Every verdict parses the claims it counts, so Parse is written for speed:
// one copy of the input that every field shares, no per-line allocation,
// and the time read by hand. The tests hold it to a plain line-by-line
// reference parser (same claim, same error, for every input).
func Parse(b []byte) (*Claim, error) {
	if len(b) > MaxSize {
		return nil, fmt.Errorf("%w: %d bytes exceeds the %d-byte limit", ErrSyntax, len(b), MaxSize)
	}
	if len(b) == 0 || b[len(b)-1] != '\n' {
		return nil, fmt.Errorf("%w: must end with a newline", ErrSyntax)
	}
	body := string(b[:len(b)-1])
	// Tabs, CRs and NULs are refused in values; a valid claim has none
	// anywhere, which three vectorised scans establish for all lines at
	// once. Spaces are looked for line by line.
	controls := strings.IndexByte(body, '\t') >= 0 || strings.IndexByte(body, '\r') >= 0 || strings.IndexByte(body, 0) >= 0
	header, rest, more := strings.Cut(body, "\n")
	if header != Header {
		return nil, syntaxErr(1, "header is %q, want %q", trunc(header), Header)
	}
	c := &Claim{}
	// order lists the keys allowed for the kind in their required order;
	// pos is the index of the next key that may appear; seen has bit j set
	// once order[j] appeared.
	var order []string
	var seen uint
	pos := 0
	for n := 2; more; n++ {
		var l string
		l, rest, more = strings.Cut(rest, "\n")
		k, v, ok := strings.Cut(l, " ")
		if !ok || v == "" || strings.IndexByte(v, ' ') >= 0 || controls && hasControl(v) {
			return nil, syntaxErr(n, "want \"key value\" with a non-empty value and no spaces, got %q", trunc(l))
		}
		if n == 2 {
			if k != "kind" {
				return nil, syntaxErr(n, "first key must be kind, got %q", trunc(k))
			}
			c.Kind = Kind(v)
			if order = keyOrder[c.Kind]; order == nil {
				return nil, syntaxErr(n, "unknown kind %q (known: nix, nix-ca, oci)", trunc(v))
			}
			if c.Kind != KindOCI {
				c.References = make([]string, 0, strings.Count(rest, "\nref ")+1)
			}
			continue
		}
		j := pos
		for j < len(order) && order[j] != k {
			j++
		}
		if j == len(order) {
			if k != "ref" {
				if i := slices.Index(order, k); i >= 0 && seen&(1<<i) != 0 {
					return nil, syntaxErr(n, "duplicate key %q", trunc(k))
				}
			}
			return nil, syntaxErr(n, "key %q not allowed here for kind %s", trunc(k), c.Kind)
		}
		if k != "ref" {
			pos = j + 1
		} else {
			pos = j
		}
		seen |= 1 << j
		switch k {
		case "subject":
			c.Subject = v
		case "out-path":
			c.OutPath = v
		case "nar-hash":
			c.NarHash = v
		case "nar-size":
			// Canonical: digits only, no leading zero, within uint64.
			sz, err := strconv.ParseUint(v, 10, 64)
			if err != nil || len(v) > 1 && v[0] == '0' {
				return nil, syntaxErr(n, "nar-size %q is not a canonical decimal number", trunc(v))
			}
			c.NarSize = sz
		case "ref":
			c.References = append(c.References, v)
		case "digest":
			c.Digest = v
		case "deriver":
			c.Deriver = v
		case "time":
			t, ok := parseUTCSeconds(v)
			if !ok {
				return nil, syntaxErr(n, "time %q is not RFC 3339 UTC with second precision", trunc(v))
			}
			c.Time = t
		}
	}
	if len(c.References) == 0 {
		c.References = nil
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSyntax, err)
	}
	return c, nil
}

// hasControl reports whether v holds a tab, a CR or a NUL.
func hasControl(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c == '\t' || c == '\r' || c == 0 {
			return true
		}
	}
	return false
}

// parseUTCSeconds reads the one form Marshal writes a time in,
// "YYYY-MM-DDTHH:MM:SSZ" (RFC 3339, UTC, whole seconds), refusing any
// out-of-range field (a 31st of April, hour 24, second 60) rather than
// normalising it.
func parseUTCSeconds(v string) (time.Time, bool) {
	const layout = "dddd-dd-ddTdd:dd:ddZ"
	if len(v) != len(layout) {
		return time.Time{}, false
	}
	for i := 0; i < len(layout); i++ {
		if layout[i] == 'd' && (v[i] < '0' || v[i] > '9') || layout[i] != 'd' && v[i] != layout[i] {
			return time.Time{}, false
		}
	}
	num := func(i, n int) int {
		x := 0
		for _, d := range v[i : i+n] {
			x = 10*x + int(d-'0')
		}
		return x
	}
	year, month, day := num(0, 4), time.Month(num(5, 2)), num(8, 2)
	hour, minute, sec := num(11, 2), num(14, 2), num(17, 2)
	t := time.Date(year, month, day, hour, minute, sec, 0, time.UTC)
	y, m, d := t.Date()
	if y != year || m != month || d != day || t.Hour() != hour || t.Minute() != minute || t.Second() != sec {
		return time.Time{}, false
	}
	return t, true
}

// Validate checks that every field c's kind requires is present and well
// formed. It does not touch the disk or the network.
func (c *Claim) Validate() error {
	switch c.Kind {
	case KindNix:
		if err := ValidStorePath(c.Subject); err != nil {
			return fmt.Errorf("subject: %w", err)
		}
	case KindNixCA:
		if err := validOutputID(c.Subject); err != nil {
			return fmt.Errorf("subject: %w", err)
		}
		if err := ValidStorePath(c.OutPath); err != nil {
			return fmt.Errorf("out-path: %w", err)
		}
	case KindOCI:
		if _, _, _, _, err := ParseOCISubject(c.Subject); err != nil {
			return fmt.Errorf("subject: %w", err)
		}
		if err := validDigest(c.Digest); err != nil {
			return fmt.Errorf("digest: %w", err)
		}
		if c.NarHash != "" {
			if err := validNarHash(c.NarHash); err != nil {
				return fmt.Errorf("nar-hash: %w", err)
			}
		}
		if len(c.References) > 0 || c.NarSize != 0 || c.OutPath != "" || c.Deriver != "" {
			return errors.New("oci claims carry only subject, digest, nar-hash and time")
		}
		return nil
	case "":
		return errors.New("kind is missing")
	default:
		return fmt.Errorf("unknown kind %q", c.Kind)
	}
	// nix and nix-ca
	if err := validNarHash(c.NarHash); err != nil {
		return fmt.Errorf("nar-hash: %w", err)
	}
	if c.NarSize == 0 {
		return errors.New("nar-size is missing or zero (a NAR is never empty)")
	}
	if len(c.References) > MaxRefs {
		return fmt.Errorf("%d references exceed the limit of %d", len(c.References), MaxRefs)
	}
	for i, r := range c.References {
		if validBaseName(r) != nil {
			return fmt.Errorf("ref %q is not a store path basename", r)
		}
		if i > 0 && c.References[i-1] >= r {
			return fmt.Errorf("refs must be sorted and unique (%q after %q)", r, c.References[i-1])
		}
	}
	if c.Deriver != "" {
		if c.Kind != KindNix || !strings.HasSuffix(c.Deriver, ".drv") || validBaseName(c.Deriver) != nil {
			return fmt.Errorf("deriver %q is not a .drv basename", c.Deriver)
		}
	}
	return nil
}

// SortReferences sorts and deduplicates refs in place and returns it, for
// building a claim from an unordered reference list.
func SortReferences(refs []string) []string {
	sort.Strings(refs)
	out := refs[:0]
	for i, r := range refs {
		if i == 0 || r != refs[i-1] {
			out = append(out, r)
		}
	}
	return out
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
