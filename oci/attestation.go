package oci

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/keys"
)

// The identifiers of a vouch attestation. They are part of the format: a
// verifier refuses anything else.
const (
	// StatementType is the in-toto Statement v1 type.
	StatementType = "https://in-toto.io/Statement/v1"
	// PredicateType names the vouch OCI build predicate (see the package doc).
	PredicateType = "https://vouch.dev/attestation/oci-build/v1"
	// PayloadType is the DSSE payload type of an in-toto statement.
	PayloadType = "application/vnd.in-toto+json"
	// ArtifactType is the OCI artifactType of the manifest that carries an
	// attestation in a registry.
	ArtifactType = "application/vnd.vouch.attestation.v1+dsse"
	// EnvelopeMediaType is the media type of the layer holding the DSSE
	// envelope, the one in-toto and sigstore tools use for DSSE.
	EnvelopeMediaType = "application/vnd.dsse.envelope.v1+json"
)

// MaxEnvelopeSize bounds an envelope read from a registry. A vouch envelope
// is about 1.5 KiB; anything near this limit is not one.
const MaxEnvelopeSize = 64 << 10

// Statement is an in-toto Statement v1 with the vouch predicate.
type Statement struct {
	Type          string    `json:"_type"`
	Subject       []Subject `json:"subject"`
	PredicateType string    `json:"predicateType"`
	Predicate     Predicate `json:"predicate"`
}

// Subject is one in-toto resource descriptor: the image, by name and
// manifest digest.
type Subject struct {
	Name   string            `json:"name"`
	Digest map[string]string `json:"digest"`
}

// Predicate is what the builder states about the image it built.
type Predicate struct {
	Source    string  `json:"source"`    // repository the image was built from
	Commit    string  `json:"commit"`    // lower-case hex commit id
	Attribute string  `json:"attribute"` // flake attribute or Containerfile target
	System    string  `json:"system"`    // e.g. x86_64-linux
	NarHash   string  `json:"narHash,omitempty"`
	Builder   Builder `json:"builder"`
	Time      string  `json:"time"` // RFC 3339, UTC, second precision
}

// Builder identifies the key that signs the attestation. Only KeyID (and
// the key behind it) is trusted by a verifier; Name and VerifierKey are
// there so that a human reading the attestation knows whom to ask.
type Builder struct {
	Name        string `json:"name"`
	VerifierKey string `json:"verifierKey"` // signed-note verifier key
	KeyID       string `json:"keyid"`       // keys.KeyID of the public key
}

// Build describes one image build, the input of Sign.
type Build struct {
	Image     string // repository of the image, without tag or digest
	Digest    string // manifest digest, "sha256:<64 hex>"
	Source    string
	Commit    string
	Attribute string // "default" when the build has no attribute or target
	System    string
	NarHash   string // optional, for images built by Nix
	Time      time.Time
}

// Subject returns the claim subject of the build (claim.OCISubject).
func (b *Build) Subject() string { return claim.OCISubject(b.Source, b.Commit, b.Attribute, b.System) }

// Claim returns the oci claim the builder logs for the build.
func (b *Build) Claim() (*claim.Claim, error) {
	c := &claim.Claim{Kind: claim.KindOCI, Subject: b.Subject(), Digest: b.Digest, NarHash: b.NarHash, Time: b.Time.UTC().Truncate(time.Second)}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("oci claim: %w", err)
	}
	return c, nil
}

// Sign builds the statement for b and signs it with the builder's key. The
// envelope carries exactly one signature, whose keyid is keys.KeyID of the
// builder's public key.
func Sign(ctx context.Context, id *keys.Identity, b *Build) (*dsse.Envelope, error) {
	if _, err := b.Claim(); err != nil {
		return nil, err
	}
	if b.Image == "" || strings.ContainsAny(b.Image, "@ \t\n") {
		return nil, fmt.Errorf("image name %q must be a repository without tag or digest", b.Image)
	}
	pub := id.Public()
	st := Statement{
		Type:          StatementType,
		Subject:       []Subject{{Name: b.Image, Digest: map[string]string{"sha256": strings.TrimPrefix(b.Digest, "sha256:")}}},
		PredicateType: PredicateType,
		Predicate: Predicate{
			Source: b.Source, Commit: b.Commit, Attribute: b.Attribute, System: b.System, NarHash: b.NarHash,
			Builder: Builder{Name: id.Name, VerifierKey: id.VerifierKey, KeyID: keys.KeyID(pub)},
			Time:    b.Time.UTC().Truncate(time.Second).Format(time.RFC3339),
		},
	}
	payload, err := json.Marshal(st)
	if err != nil {
		return nil, err
	}
	signer, err := dsse.NewEnvelopeSigner(ed25519Signer{id.Private})
	if err != nil {
		return nil, err
	}
	return signer.SignPayload(ctx, PayloadType, payload)
}

// ed25519Signer adapts a builder key to dsse.Signer. DSSE signs
// PAE(payloadType, payload); Ed25519 signs that message as is (pure
// Ed25519, no pre-hash).
type ed25519Signer struct{ key ed25519.PrivateKey }

func (s ed25519Signer) Sign(_ context.Context, data []byte) ([]byte, error) {
	return ed25519.Sign(s.key, data), nil
}

func (s ed25519Signer) KeyID() (string, error) {
	return keys.KeyID(s.key.Public().(ed25519.PublicKey)), nil
}

// TrustedKey is a public key a verifier accepts signatures from.
type TrustedKey struct {
	KeyID  string
	Public ed25519.PublicKey
}

// Attestation is an envelope that passed Open: a well-formed statement about
// the expected image, signed by at least one trusted key.
type Attestation struct {
	Statement Statement
	Claim     *claim.Claim // the oci claim the statement amounts to
	// SignedBy lists the distinct trusted key ids whose signatures verify,
	// sorted. A key that signed twice appears once.
	SignedBy []string
	// Ignored explains every signature that did not count, one per entry.
	Ignored []string
}

// RejectedError says why an envelope counts for nothing.
type RejectedError struct{ Reason string }

func (e *RejectedError) Error() string { return "attestation rejected: " + e.Reason }

func reject(format string, args ...any) error {
	return &RejectedError{Reason: fmt.Sprintf(format, args...)}
}

// Open checks an envelope read from anywhere (a registry, a file) against
// the image digest it is supposed to describe and the trusted keys, and
// returns what it attests. It verifies the signatures before it parses the
// payload, and it parses strictly: unknown fields, a second subject, another
// predicate type or a predicate whose builder is not the signer are errors,
// because a verifier that skips what it does not understand can be made to
// count a statement it never read.
//
// Every rejection is a *RejectedError whose reason names the problem.
func Open(raw []byte, wantDigest string, trusted []TrustedKey) (*Attestation, error) {
	if len(raw) > MaxEnvelopeSize {
		return nil, reject("envelope of %d bytes exceeds the %d-byte limit", len(raw), MaxEnvelopeSize)
	}
	var env dsse.Envelope
	if err := strictJSON(raw, &env); err != nil {
		return nil, reject("not a DSSE envelope: %v", err)
	}
	if env.PayloadType != PayloadType {
		return nil, reject("payload type %q, want %q", env.PayloadType, PayloadType)
	}
	payload, err := base64.StdEncoding.Strict().DecodeString(env.Payload)
	if err != nil {
		return nil, reject("payload is not standard base64: %v", err)
	}
	if len(env.Signatures) == 0 {
		return nil, reject("envelope has no signature")
	}
	a := &Attestation{}
	pae := dsse.PAE(env.PayloadType, payload)
	signed := map[string]bool{}
	for i, s := range env.Signatures {
		sig, err := base64.StdEncoding.Strict().DecodeString(s.Sig)
		if err != nil || len(sig) != ed25519.SignatureSize {
			a.Ignored = append(a.Ignored, fmt.Sprintf("signature #%d (keyid %s) is truncated or not base64 (%d bytes, an Ed25519 signature has %d)", i+1, short(s.KeyID), len(sig), ed25519.SignatureSize))
			continue
		}
		// The keyid in the envelope is only a hint: it is not signed. The
		// key that verifies decides whose signature this is.
		who := ""
		for _, k := range trusted {
			if ed25519.Verify(k.Public, pae, sig) {
				who = k.KeyID
				break
			}
		}
		switch {
		case who != "":
			signed[who] = true
		case keyListed(trusted, s.KeyID):
			a.Ignored = append(a.Ignored, fmt.Sprintf("signature #%d claims trusted key %s but does not verify: forged, or the payload was altered", i+1, short(s.KeyID)))
		default:
			a.Ignored = append(a.Ignored, fmt.Sprintf("signature #%d is by key %s, which is not in the policy: it counts for nothing", i+1, short(s.KeyID)))
		}
	}
	if len(signed) == 0 {
		return nil, reject("no valid signature by a key in the policy (%s)", strings.Join(a.Ignored, "; "))
	}
	for k := range signed {
		a.SignedBy = append(a.SignedBy, k)
	}
	sort.Strings(a.SignedBy)

	st, err := ParseStatement(payload)
	if err != nil {
		return nil, reject("%v", err)
	}
	a.Statement = *st
	got := "sha256:" + st.Subject[0].Digest["sha256"]
	if got != wantDigest {
		return nil, reject("statement is about %s, not about this image %s: an attestation copied from another image", got, wantDigest)
	}
	if len(a.SignedBy) != 1 || a.SignedBy[0] != st.Predicate.Builder.KeyID {
		return nil, reject("predicate names builder key %s but the envelope is signed by %s", short(st.Predicate.Builder.KeyID), strings.Join(a.SignedBy, ","))
	}
	tm, _ := time.Parse(time.RFC3339, st.Predicate.Time)
	a.Claim = &claim.Claim{Kind: claim.KindOCI, Subject: claim.OCISubject(st.Predicate.Source, st.Predicate.Commit, st.Predicate.Attribute, st.Predicate.System), Digest: got, NarHash: st.Predicate.NarHash, Time: tm}
	if err := a.Claim.Validate(); err != nil {
		return nil, reject("predicate does not make a valid oci claim: %v", err)
	}
	return a, nil
}

// ParseStatement decodes and checks an in-toto statement carrying the vouch
// predicate. It does not check signatures: use Open for anything read from
// outside.
func ParseStatement(payload []byte) (*Statement, error) {
	var st Statement
	if err := strictJSON(payload, &st); err != nil {
		return nil, fmt.Errorf("statement is not valid JSON of the expected shape: %v", err)
	}
	if st.Type != StatementType {
		return nil, fmt.Errorf("statement _type %q, want %q", st.Type, StatementType)
	}
	if st.PredicateType != PredicateType {
		return nil, fmt.Errorf("predicate type %q, want %q", st.PredicateType, PredicateType)
	}
	if len(st.Subject) != 1 {
		return nil, fmt.Errorf("statement has %d subjects, a vouch attestation has exactly one image", len(st.Subject))
	}
	d := st.Subject[0].Digest
	if len(d) != 1 || len(d["sha256"]) != 64 || !isLowerHex(d["sha256"]) {
		return nil, errors.New("subject digest must be exactly {\"sha256\": <64 lower-case hex>}")
	}
	p := st.Predicate
	if _, _, _, _, err := claim.ParseOCISubject(claim.OCISubject(p.Source, p.Commit, p.Attribute, p.System)); err != nil {
		return nil, fmt.Errorf("predicate source/commit/attribute/system: %v", err)
	}
	if len(p.Builder.KeyID) != 32 || !isLowerHex(p.Builder.KeyID) {
		return nil, fmt.Errorf("predicate builder keyid %q is not a vouch key id (32 hex)", p.Builder.KeyID)
	}
	if p.Builder.VerifierKey != "" {
		pub, err := keys.VerifierPublicKey(p.Builder.VerifierKey)
		if err != nil || keys.KeyID(pub) != p.Builder.KeyID {
			return nil, errors.New("predicate builder verifierKey does not match its keyid")
		}
	}
	if t, err := time.Parse(time.RFC3339, p.Time); err != nil || t.UTC().Format(time.RFC3339) != p.Time {
		return nil, fmt.Errorf("predicate time %q is not RFC 3339 UTC with second precision", p.Time)
	}
	return &st, nil
}

// strictJSON decodes exactly one JSON value into v, refusing unknown fields
// and trailing data.
func strictJSON(b []byte, v any) error {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return err
	}
	if dec.More() {
		return errors.New("trailing data after the JSON value")
	}
	return nil
}

func keyListed(trusted []TrustedKey, id string) bool {
	for _, k := range trusted {
		if k.KeyID == id {
			return true
		}
	}
	return false
}

func isLowerHex(s string) bool {
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

func short(keyID string) string {
	if keyID == "" {
		return "(none)"
	}
	if len(keyID) > 12 {
		return keyID[:12]
	}
	return keyID
}
