package nixstore

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/vouch-dev/vouch/claim"
)

// BuiltOutput is one output of a derivation that has been built.
type BuiltOutput struct {
	Path string
	// ContentAddressed is true for outputs of floating content-addressed
	// derivations: their path is known only from the realisation, and the
	// id → path mapping is itself worth a (nix-ca) claim.
	ContentAddressed bool
	// OutputID is the derivation output id "sha256:<hash modulo>!<name>",
	// set when ContentAddressed.
	OutputID string
}

// BuiltOutputs lists the outputs of a built derivation, for a post-build
// hook that knows only DRV_PATH.
//
// Input-addressed outputs come from "nix-store --query --outputs"; only
// when Nix cannot name them that way (a floating content-addressed
// derivation) do they come from the realisations. Not the other way round:
// Nix records realisations of input-addressed derivations only when the
// ca-derivations feature was enabled during the build, so on an ordinary
// Nix installation "nix realisation info" fails for them.
func (s Store) BuiltOutputs(ctx context.Context, drvPath string) ([]BuiltOutput, error) {
	paths, err := s.Outputs(ctx, drvPath)
	if err == nil {
		res := make([]BuiltOutput, len(paths))
		for i, p := range paths {
			res[i] = BuiltOutput{Path: p}
		}
		return res, nil
	}
	if ctx.Err() != nil {
		return nil, err
	}
	rs, rerr := s.Realisations(ctx, drvPath)
	if rerr != nil {
		return nil, errors.Join(err, rerr)
	}
	if len(rs) == 0 {
		return nil, fmt.Errorf("nixstore: %s has no realised outputs (was it built in this store?)", drvPath)
	}
	res := make([]BuiltOutput, len(rs))
	for i, r := range rs {
		res[i] = BuiltOutput{Path: r.OutPath, ContentAddressed: true, OutputID: r.ID}
	}
	return res, nil
}

// CAClaim returns the nix-ca claim for a content-addressed derivation
// output: that outputID realised to storePath, with that path's NAR hash
// and size (from disk) and references (from Nix), as for Claim.
func (s Store) CAClaim(ctx context.Context, outputID, storePath string) (*claim.Claim, error) {
	c, err := s.Claim(ctx, storePath)
	if err != nil {
		return nil, err
	}
	return CAClaimFrom(c, outputID)
}

// CAClaimFrom returns the nix-ca claim that outputID realised to the path
// of the nix claim c, reusing c's hash, size and references: a caller that
// already made c need not hash the path a second time.
func CAClaimFrom(c *claim.Claim, outputID string) (*claim.Claim, error) {
	ca := &claim.Claim{Kind: claim.KindNixCA, Subject: outputID, OutPath: c.Subject,
		NarHash: c.NarHash, NarSize: c.NarSize, References: c.References, Time: c.Time}
	if err := ca.Validate(); err != nil {
		return nil, fmt.Errorf("nixstore: nix-ca claim for %s: %w", outputID, err)
	}
	return ca, nil
}

// Realisation maps a derivation output to the store path it was built to,
// as Nix records it for content-addressed derivations.
type Realisation struct {
	// ID is the derivation output id, "sha256:<hash modulo of the .drv,
	// hex>!<output name>": the subject of a nix-ca claim.
	ID string
	// OutPath is the full store path the output realised to.
	OutPath string
}

// Realisations returns the realisations Nix recorded for the outputs of
// drvPath, sorted by ID. Floating content-addressed derivations get one per
// built output; input-addressed derivations get them only when built with
// the ca-derivations feature enabled, and none otherwise.
func (s Store) Realisations(ctx context.Context, drvPath string) ([]Realisation, error) {
	if err := claim.ValidStorePath(drvPath); err != nil || !strings.HasSuffix(drvPath, ".drv") {
		return nil, fmt.Errorf("nixstore: realisations: %q is not a derivation store path (/nix/store/<hash>-<name>.drv)", drvPath)
	}
	info := func(installable string) ([]byte, error) {
		return s.run(ctx, "nix", "realisation", "info", "--json",
			"--extra-experimental-features", "nix-command ca-derivations", installable)
	}
	out, err := info(drvPath)
	if err != nil {
		return nil, err
	}
	if namesOnlyThePath(out) {
		// Nix 2.13 and later read a bare .drv path as the file itself
		// ({"opaquePath": …}); its outputs are "<drv>^*". Nix 2.8 knows no
		// "^" and answers the bare path with the outputs.
		if out, err = info(drvPath + "^*"); err != nil {
			return nil, err
		}
	}
	rs, err := parseRealisations(out)
	if err != nil {
		return nil, fmt.Errorf("nixstore: realisations of %s: %w", drvPath, err)
	}
	return rs, nil
}

// namesOnlyThePath reports whether "nix realisation info --json" answered
// with opaque paths only: the installable was taken as a store path, not as
// a derivation's outputs.
func namesOnlyThePath(out []byte) bool {
	var raw []map[string]json.RawMessage
	if json.Unmarshal(out, &raw) != nil || len(raw) == 0 {
		return false
	}
	for _, r := range raw {
		if _, opaque := r["opaquePath"]; !opaque || len(r) != 1 {
			return false
		}
	}
	return true
}

// parseRealisations parses the JSON that "nix realisation info --json"
// prints: an array of {"id": ..., "outPath": "<basename>", ...}. Other
// fields (signatures, dependentRealisations) are ignored: vouch signs its
// own claims and Nix 2.8 does not check realisation signatures anyway.
func parseRealisations(out []byte) ([]Realisation, error) {
	var raw []struct {
		ID      string `json:"id"`
		OutPath string `json:"outPath"`
	}
	if err := json.Unmarshal(out, &raw); err != nil {
		return nil, fmt.Errorf("nix realisation info printed something other than a JSON array: %w", err)
	}
	rs := make([]Realisation, 0, len(raw))
	for _, r := range raw {
		hash, output, ok := strings.Cut(r.ID, "!")
		hex, isSHA := strings.CutPrefix(hash, "sha256:")
		if !ok || !isSHA || len(hex) != 64 || strings.Trim(hex, "0123456789abcdef") != "" || !validOutputName(output) {
			return nil, fmt.Errorf("realisation id %q is not sha256:<64 hex>!<output>", trunc(r.ID))
		}
		p := claim.StoreDir + "/" + r.OutPath
		if err := claim.ValidStorePath(p); err != nil {
			return nil, fmt.Errorf("realisation %s: %w", r.ID, err)
		}
		rs = append(rs, Realisation{ID: r.ID, OutPath: p})
	}
	slices.SortFunc(rs, func(a, b Realisation) int { return strings.Compare(a.ID, b.ID) })
	for i := 1; i < len(rs); i++ {
		if rs[i].ID == rs[i-1].ID {
			return nil, fmt.Errorf("realisation id %s appears twice", rs[i].ID)
		}
	}
	return rs, nil
}
