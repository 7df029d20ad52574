package nixstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/vouch-dev/vouch/claim"
)

// BuiltOutput is one output of a derivation that has been built.
type BuiltOutput struct {
	Path string
	// OutputID is the derivation output id "sha256:<hash modulo>!<name>".
	OutputID string
	// ContentAddressed is true for outputs of floating content-addressed
	// derivations: their path is known only from the realisation, and the
	// id → path mapping is itself worth a (nix-ca) claim.
	ContentAddressed bool
}

// BuiltOutputs lists the outputs of a built derivation from Nix's
// realisations, which cover both input-addressed outputs and floating
// content-addressed ones (whose paths "nix-store --query --outputs" cannot
// name). Outputs that --query --outputs cannot name are content-addressed.
func (s Store) BuiltOutputs(ctx context.Context, drvPath string) ([]BuiltOutput, error) {
	if err := claim.ValidStorePath(drvPath); err != nil || !strings.HasSuffix(drvPath, ".drv") {
		return nil, fmt.Errorf("nixstore: outputs: %q is not a derivation store path", drvPath)
	}
	out, err := s.nix(ctx, "realisation", "info", drvPath)
	if err != nil {
		return nil, err
	}
	static := map[string]bool{}
	if paths, err := s.Outputs(ctx, drvPath); err == nil {
		for _, p := range paths {
			static[p] = true
		}
	}
	var res []BuiltOutput
	for i, line := range strings.Split(strings.TrimSuffix(string(out), "\n"), "\n") {
		id, p, ok := strings.Cut(line, " ")
		if !ok || claim.ValidStorePath(p) != nil || !strings.Contains(id, "!") {
			return nil, fmt.Errorf("nixstore: realisations of %s: line %d %q is not \"<output id> <store path>\"", drvPath, i+1, trunc(line))
		}
		res = append(res, BuiltOutput{Path: p, OutputID: id, ContentAddressed: !static[p]})
	}
	if len(res) == 0 {
		return nil, fmt.Errorf("nixstore: %s has no realised outputs (was it built in this store?)", drvPath)
	}
	return res, nil
}

// CAClaim returns the nix-ca claim for a content-addressed derivation
// output: the output id, the path it realised to, and that path's NAR hash,
// size and references.
func (s Store) CAClaim(ctx context.Context, outputID, storePath string) (*claim.Claim, error) {
	c, err := s.Claim(ctx, storePath)
	if err != nil {
		return nil, err
	}
	ca := &claim.Claim{
		Kind:       claim.KindNixCA,
		Subject:    outputID,
		OutPath:    storePath,
		NarHash:    c.NarHash,
		NarSize:    c.NarSize,
		References: c.References,
		Time:       c.Time,
	}
	if err := ca.Validate(); err != nil {
		return nil, fmt.Errorf("nixstore: nix-ca claim for %s: %w", outputID, err)
	}
	return ca, nil
}

// nix runs the nix command (with the experimental features vouch's queries
// need) against s, bounded by QueryTimeout.
func (s Store) nix(ctx context.Context, args ...string) ([]byte, error) {
	root, err := s.root()
	if err != nil {
		return nil, err
	}
	pre := []string{"--extra-experimental-features", "nix-command ca-derivations"}
	if root != "/" {
		pre = append(pre, "--store", root)
	}
	args = append(pre, args...)
	ctx, cancel := context.WithTimeout(ctx, QueryTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "nix", args...)
	cmd.WaitDelay = 5 * time.Second
	var stdout bytes.Buffer
	stderr := &tailBuffer{max: maxStderr}
	cmd.Stdout, cmd.Stderr = &stdout, stderr
	if err := cmd.Run(); err != nil {
		command := "nix " + strings.Join(args, " ")
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("nixstore: %s: nix is not on PATH; install Nix or add its bin directory to PATH", command)
		}
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			return nil, fmt.Errorf("nixstore: %s: no answer within %v", command, QueryTimeout)
		}
		return nil, fmt.Errorf("nixstore: %s failed (%v): %s", command, err, strings.TrimSpace(stderr.String()))
	}
	return stdout.Bytes(), nil
}
