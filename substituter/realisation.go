package substituter

// # Realisations of content-addressed derivations
//
// A floating content-addressed derivation has no output path until it is
// built: Nix names the output by a derivation output id, "sha256:<hex of
// the derivation's hash modulo>!<output name>", and asks a binary cache
// which path that id realised to:
//
//	GET /realisations/sha256:56bb5a58…3f00!out.doi
//
//	{"dependentRealisations":{},"id":"sha256:56bb5a58…3f00!out",
//	 "outPath":"zsx9dpncqx2q3q2anbkgxwksjyb80sbm-ca","signatures":["cache-1:rEvv…CQ=="]}
//
// outPath is a basename, as Nix's Realisation::toJSON writes it. Nix 2.8
// substitutes the output by fetching this document and then the narinfo of
// outPath — and it does not check the realisation's signatures. Whoever
// answers this request decides which bytes the build's output is, so the
// node answers it only when the quorum agrees on the nix-ca claim for the
// id (Decider.Decide(claim.KindNixCA, id) is Trusted); anything else is a
// 404 with an X-Vouch-Refusal header, as for narinfos.
//
// The document is signed with the node's Nix key the way Nix signs
// realisations (Realisation::sign), so that a Nix that does check them
// (nix copy into a store that requires signatures) accepts it. The signed
// fingerprint is the document without its "signatures" member, as
// nlohmann::json dumps it: compact, members sorted by name:
//
//	{"dependentRealisations":{},"id":"sha256:<hex>!out","outPath":"<hash>-<name>"}
//
// dependentRealisations is always empty: claims do not record the
// realisations a build used, and an empty set is what Nix itself writes
// for outputs whose inputs are not floating CA outputs. For outputs that
// do depend on them, Nix fetches and registers those itself when it
// realises the dependent derivations.
//
// Serving a realisation also makes its out path's narinfo available when
// only the nix-ca claim is agreed (the nix claim about the same path may
// be missing or below quorum): the node remembers which output id realised
// to which hash part and, when a narinfo or NAR is asked for that hash
// part, decides the nix-ca claim again. Nix always fetches the realisation
// before the out path, so the memory only has to last that long.

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/narinfo"
	"github.com/vouch-dev/vouch/verdict"
)

const contentTypeRealisation = "application/json"

// Realisation is the document Nix's binary caches serve at
// realisations/<id>.doi.
type Realisation struct {
	// ID is the derivation output id, "sha256:<64 hex>!<output name>".
	ID string
	// OutPath is the full store path the output realised to. The JSON
	// carries its basename.
	OutPath string
	// Signatures are "keyname:base64" Ed25519 signatures of Fingerprint.
	Signatures []string
}

// Fingerprint is what Nix signs for a realisation: its JSON without the
// signatures, members sorted, no whitespace.
func (r *Realisation) Fingerprint() string {
	var b bytes.Buffer
	b.WriteString(`{"dependentRealisations":{},"id":`)
	writeJSONString(&b, r.ID)
	b.WriteString(`,"outPath":`)
	writeJSONString(&b, strings.TrimPrefix(r.OutPath, claim.StoreDir+"/"))
	b.WriteByte('}')
	return b.String()
}

// Marshal returns the realisation as Nix writes it: the fingerprint's
// members plus "signatures", in name order.
func (r *Realisation) Marshal() []byte {
	fp := r.Fingerprint()
	var b bytes.Buffer
	b.WriteString(fp[:len(fp)-1])
	b.WriteString(`,"signatures":[`)
	for i, s := range r.Signatures {
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSONString(&b, s)
	}
	b.WriteString("]}")
	return b.Bytes()
}

// writeJSONString writes s as a JSON string. The values written here are
// validated ids, store path basenames and base64 signatures, which need no
// escaping; encoding/json (without HTML escaping) covers the rest the way
// nlohmann::json does for valid UTF-8.
func writeJSONString(b *bytes.Buffer, s string) {
	enc := json.NewEncoder(b)
	enc.SetEscapeHTML(false)
	enc.Encode(s)
	b.Truncate(b.Len() - 1) // Encode appends a newline
}

// ParseOutputID checks a derivation output id as Nix 2.8 requests it,
// "sha256:<64 lowercase hex>!<output name>", and returns its parts. The
// output name must be usable in a store path name, as Nix requires.
func ParseOutputID(id string) (drvHash, output string, err error) {
	drvHash, output, ok := strings.Cut(id, "!")
	hex, isSHA256 := strings.CutPrefix(drvHash, "sha256:")
	if !ok || !isSHA256 || len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" {
		return "", "", fmt.Errorf("%q is not a derivation output id, sha256:<64 lowercase hex>!<output name>", trunc(id))
	}
	if output == "" || claim.ValidStorePath(claim.StoreDir+"/00000000000000000000000000000000-"+output) != nil {
		return "", "", fmt.Errorf("output name %q is empty or has characters a store path name cannot", trunc(output))
	}
	return drvHash, output, nil
}

func trunc(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

// serveRealisation answers GET|HEAD /realisations/<id>.doi.
func (s *Server) serveRealisation(w http.ResponseWriter, r *http.Request, id string) {
	if _, _, err := ParseOutputID(id); err != nil {
		s.metrics.realisations.WithLabelValues("bad-id").Inc()
		s.refuse(w, r, http.StatusNotFound, "bad-id", err.Error())
		return
	}
	c, code, reason := s.agreedRealisation(id)
	if c == nil {
		s.metrics.realisations.WithLabelValues(code).Inc()
		s.refuse(w, r, http.StatusNotFound, code, reason)
		return
	}
	s.metrics.realisations.WithLabelValues(string(verdict.Trusted)).Inc()
	s.realised.Add(claim.HashPart(c.OutPath), id)
	b := s.realisationFor(id, c.OutPath)
	h := w.Header()
	h.Set("Content-Type", contentTypeRealisation)
	h.Set("Content-Length", strconv.Itoa(len(b)))
	if r.Method == http.MethodGet {
		w.Write(b)
	}
}

// agreedRealisation returns the agreed nix-ca claim for id, after checking
// that its value is about id and well formed, or says why there is none.
func (s *Server) agreedRealisation(id string) (c *claim.Claim, code, reason string) {
	v, err := s.decider.Decide(claim.KindNixCA, id)
	switch {
	case err != nil:
		s.log.Error("verdict failed", "output-id", id, "err", err)
		return nil, outcomeError, "the verdict could not be computed (see the node's log)"
	case v.Outcome != verdict.Trusted:
		reason := v.Reason
		if reason == "" {
			reason = "no quorum of the configured builders agrees on what this derivation output realised to"
		}
		return nil, string(v.Outcome), reason
	}
	c = v.Value
	if err := checkCAValue(id, c); err != nil {
		s.log.Error("trusted verdict unusable", "output-id", id, "err", err)
		return nil, outcomeBadValue, err.Error()
	}
	return c, "", ""
}

func checkCAValue(id string, c *claim.Claim) error {
	if c == nil {
		return fmt.Errorf("trusted verdict for %s has no value", id)
	}
	if c.Kind != claim.KindNixCA || c.Subject != id {
		return fmt.Errorf("trusted verdict for %s carries a claim about %s %s", id, c.Kind, c.Subject)
	}
	if err := claim.ValidStorePath(c.OutPath); err != nil {
		return fmt.Errorf("trusted verdict for %s: out-path: %w", id, err)
	}
	h, err := narinfo.NormaliseNarHash(c.NarHash)
	if err != nil || h != c.NarHash || c.NarSize == 0 {
		return fmt.Errorf("trusted verdict for %s has NAR hash %q size %d; want sha256:<nix32> and a size > 0", id, c.NarHash, c.NarSize)
	}
	return nil
}

// realisationFor renders and signs the realisation of id to outPath.
func (s *Server) realisationFor(id, outPath string) []byte {
	rl := Realisation{ID: id, OutPath: outPath}
	fp := rl.Fingerprint()
	sig, ok := s.sigs.Get(fp)
	if !ok {
		sig = s.key.Sign(fp)
		s.sigs.Add(fp, sig)
	}
	rl.Signatures = []string{sig}
	return rl.Marshal()
}

// realisedPath returns what the path with hashPart must be when a
// realisation this node served named it and the quorum still agrees on
// that realisation's nix-ca claim; nil otherwise.
func (s *Server) realisedPath(hashPart string) *expectation {
	id, ok := s.realised.Get(hashPart)
	if !ok {
		return nil
	}
	c, _, _ := s.agreedRealisation(id)
	if c == nil || claim.HashPart(c.OutPath) != hashPart {
		return nil
	}
	exp := &expectation{StorePath: c.OutPath, NarHash: c.NarHash, NarSize: c.NarSize, References: c.References}
	// A floating CA output without self-references is addressed by its
	// NAR hash: say so in the narinfo when the agreed values prove it, so
	// that Nix records the path as content-addressed, as a local build
	// would have.
	if h, err := narinfo.ParseHash(c.NarHash); err == nil {
		ca := narinfo.ContentAddress{Method: narinfo.CARecursive, Hash: h}
		if ca.Certifies(c.OutPath, c.References) == nil {
			exp.CA = &ca
		}
	}
	return exp
}
