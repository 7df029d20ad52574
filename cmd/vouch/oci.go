package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/follow"
	"github.com/vouch-dev/vouch/keys"
	"github.com/vouch-dev/vouch/oci"
	"github.com/vouch-dev/vouch/query"
	"github.com/vouch-dev/vouch/report"
	"github.com/vouch-dev/vouch/submit"
	"github.com/vouch-dev/vouch/verdict"
)

func init() {
	register(command{name: "attest oci", summary: "sign an image build, log it and attach it to the image", run: runAttestOCI})
	register(command{name: "verify oci", summary: "check an image against the builders' quorum (exit 0 only if trusted)", run: runVerifyOCI})
	register(command{name: "promote", summary: "move a tag to an image only if the quorum trusts it", run: runPromote})
}

// sourceFlags are the flags that name what an image was built from.
type sourceFlags struct{ source, commit, system, attr *string }

func addSourceFlags(fs *flag.FlagSet) sourceFlags {
	return sourceFlags{
		source: fs.String("source", "", "repository the image was built from (e.g. https://github.com/org/app)"),
		commit: fs.String("commit", "", "commit id the image was built from (lower-case hex)"),
		system: fs.String("system", "", "system the image was built for (e.g. x86_64-linux)"),
		attr:   fs.String("attr", "default", "flake attribute or Containerfile target that was built"),
	}
}

// subject returns the claim subject the flags name, "" if none of source,
// commit and system were given.
func (f sourceFlags) subject() (string, error) {
	if *f.source == "" && *f.commit == "" && *f.system == "" {
		return "", nil
	}
	if *f.source == "" || *f.commit == "" || *f.system == "" {
		return "", errors.New("--source, --commit and --system go together")
	}
	s := claim.OCISubject(*f.source, *f.commit, *f.attr, *f.system)
	if _, _, _, _, err := claim.ParseOCISubject(s); err != nil {
		return "", err
	}
	return s, nil
}

func newRegistry(insecure bool, timeout time.Duration) *oci.Registry {
	r := &oci.Registry{Timeout: timeout}
	if insecure {
		r.NameOptions = append(r.NameOptions, name.Insecure)
	}
	return r
}

func runAttestOCI(args []string) int {
	fs := newFlags("attest oci", "IMAGE@sha256:…")
	keyPath := fs.String("key", "", "the builder's private key file (required)")
	sf := addSourceFlags(fs)
	narHash := fs.String("nar-hash", "", "NAR hash of the image's store path, for images built by Nix (sha256:<nix32>)")
	socket := fs.String("socket", "", "the builder daemon's submit socket (default: the --config's socket)")
	configPath := fs.String("config", "", "the builder's config, for the default --socket")
	noLog := fs.Bool("no-log", false, "only push the attestation; do not log the claim (verifiers that follow the logs will not count it)")
	insecure := fs.Bool("insecure", false, "allow plain HTTP to a registry that is not on localhost")
	registryTimeout := fs.Duration("registry-timeout", oci.DefaultTimeout, "give up on a registry request that has not been answered in full within this time")
	cosignLayout := fs.Bool("cosign", false, "also attach the attestation under the image's sha256-<hex>.att tag, where cosign verify-attestation looks")
	if status, ok := parseFlags(fs, args); !ok {
		return status
	}
	if fs.NArg() != 1 || *keyPath == "" {
		fs.Usage()
		return 2
	}
	subject, err := sf.subject()
	if err != nil || subject == "" {
		return fail("attest oci: %v", orMissing(err, "--source, --commit and --system are required"))
	}
	reg := newRegistry(*insecure, *registryTimeout)
	ref, err := reg.ParseReference(fs.Arg(0))
	if err != nil {
		return fail("attest oci: %v", err)
	}
	image, ok := ref.(name.Digest)
	if !ok {
		return fail("attest oci: %s names a tag; attest the digest you built (IMAGE@sha256:…), which a tag may no longer point at", ref)
	}
	if !*noLog && *socket == "" {
		if *configPath == "" {
			return fail("attest oci: give --socket (the daemon's submit socket, STATE/vouch.sock) or --config; --no-log skips the log")
		}
		cfg, err := config.Load(*configPath)
		if err != nil {
			return fail("attest oci: %v", err)
		}
		*socket = cfg.Socket
	}
	id, err := keys.LoadIdentity(*keyPath)
	if err != nil {
		return fail("attest oci: %v", err)
	}
	b := &oci.Build{Image: image.Context().Name(), Digest: image.DigestStr(), Source: *sf.source, Commit: *sf.commit,
		Attribute: *sf.attr, System: *sf.system, NarHash: *narHash, Time: time.Now().UTC()}
	ctx := context.Background()
	cl, err := b.Claim()
	if err != nil {
		return fail("attest oci: %v", err)
	}
	env, err := oci.Sign(ctx, id, b)
	if err != nil {
		return fail("attest oci: %v", err)
	}
	// Log first: if this builder already logged another digest for the
	// source, the registry must not get an attestation its log contradicts.
	if !*noLog {
		idx, dup, err := submit.NewClient(*socket).Submit(ctx, cl)
		if err != nil {
			return fail("attest oci: logging the claim: %v (nothing was pushed)", err)
		}
		note := "logged"
		if dup {
			note = "already logged"
		}
		fmt.Printf("%s claim for %s at index %d\n", note, cl.Subject, idx)
	}
	att, env, already, err := reg.Attach(ctx, image, env, oci.TrustedKey{KeyID: keys.KeyID(id.Public()), Public: id.Public()})
	if err != nil {
		return fail("attest oci: %v", err)
	}
	if already {
		fmt.Printf("attestation %s was already attached to %s (signed by %s, key %s); nothing pushed\n", att.DigestStr(), image, id.Name, keys.KeyID(id.Public()))
	} else {
		fmt.Printf("attestation %s attached to %s (signed by %s, key %s)\n", att.DigestStr(), image, id.Name, keys.KeyID(id.Public()))
	}
	if *cosignLayout {
		tag, err := reg.PushCosign(ctx, image, env)
		if err != nil {
			return fail("attest oci: %v", err)
		}
		fmt.Printf("attestation also in %s (cosign's layout)\n", tag)
	}
	return 0
}

func orMissing(err error, missing string) error {
	if err != nil {
		return err
	}
	return errors.New(missing)
}

// verifierFor builds the verifier a config describes. Votes come from the
// follower index, or from the node that provably holds it under this
// config's policy (package query). Without any index it verifies from the
// registry alone, unless requireLogs.
func verifierFor(cfg *config.Config, reg *oci.Registry, requireLogs bool) (*oci.Verifier, func() error, string, error) {
	v, src, origin, err := verifierWithSource(cfg, reg, requireLogs)
	if err != nil || src == nil {
		return v, func() error { return nil }, origin, err
	}
	return v, src.Close, origin, nil
}

// verifierWithSource is verifierFor that also returns where the votes
// come from (nil in registry-only mode).
func verifierWithSource(cfg *config.Config, reg *oci.Registry, requireLogs bool) (*oci.Verifier, query.Source, string, error) {
	policy, err := verdict.NewPolicy(cfg)
	if err != nil {
		return nil, nil, "", err
	}
	v := oci.NewVerifier(reg, policy, oci.VerifierKeys(cfg), nil)
	src, err := query.Open(cfg)
	switch {
	case err == nil:
		v.LogVerdict = func(subject string) (verdict.Verdict, error) { return src.Verdict(claim.KindOCI, subject) }
		return v, src, src.Origin(), nil
	case !errors.Is(err, query.ErrNoIndex):
		// The index exists but neither it nor a node provably serving it
		// under this policy can answer: never fall back to the registry.
		return nil, nil, "", err
	case requireLogs:
		return nil, nil, "", fmt.Errorf("%w (--registry-only gives the registry's view instead, which no policy can rest on)", err)
	}
	return v, nil, fmt.Sprintf("REGISTRY ONLY: the builders' logs were not consulted (%v); a builder's registry attestation is not checked against its log", err), nil
}

func runVerifyOCI(args []string) int {
	fs := newFlags("verify oci", "IMAGE[:tag|@sha256:…]")
	configPath := fs.String("config", "", "the node's config: its [[builder]] list and [quorum] are the policy (required)")
	sf := addSourceFlags(fs)
	asJSON := fs.Bool("json", false, "print the report as JSON")
	fs.Bool("require-logs", true, "deprecated: deciding from the builders' logs is the default")
	registryOnly := fs.Bool("registry-only", false, "without a follower index, count the attestations on this digest alone: a diagnostic weaker than any policy (a dissent or an equivocation on another digest is not seen), never a gate")
	insecure := fs.Bool("insecure", false, "allow plain HTTP to a registry that is not on localhost")
	registryTimeout := fs.Duration("registry-timeout", oci.DefaultTimeout, "give up on a registry request that has not been answered in full within this time")
	if status, ok := parseFlags(fs, args); !ok {
		return status
	}
	if fs.NArg() != 1 || *configPath == "" {
		fs.Usage()
		return 2
	}
	subject, err := sf.subject()
	if err != nil {
		return fail("verify oci: %v", err)
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return fail("verify oci: %v", err)
	}
	reg := newRegistry(*insecure, *registryTimeout)
	ref, err := reg.ParseReference(fs.Arg(0))
	if err != nil {
		return fail("verify oci: %v", err)
	}
	ctx := context.Background()
	image, err := reg.Resolve(ctx, ref)
	if err != nil {
		return fail("verify oci: %v", err)
	}
	v, closeSource, warning, err := verifierFor(cfg, reg, !*registryOnly)
	if err != nil {
		return fail("verify oci: %v", err)
	}
	defer closeSource()
	v.RegistryOnly = *registryOnly
	rep, err := v.Verify(ctx, oci.Query{Image: image, Subject: subject})
	if err != nil {
		return fail("verify oci: %v", err)
	}
	if warning != "" {
		fmt.Fprintln(os.Stderr, "vouch: "+warning)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return fail("verify oci: %v", err)
		}
	} else {
		printOCIReport(os.Stdout, rep)
	}
	if !rep.Trusted {
		return 1
	}
	return 0
}

func printOCIReport(w io.Writer, rep *oci.Report) {
	outcome := "NOT TRUSTED"
	if rep.Trusted {
		outcome = "TRUSTED"
	}
	fmt.Fprintf(w, "%s@%s: %s (%s)\n  %s\n", rep.Image, rep.Digest, outcome, rep.Mode, rep.Reason)
	for _, vd := range rep.Verdicts {
		fmt.Fprintf(w, "subject %s: %s\n", vd.Subject, vd.Outcome)
		for _, vote := range vd.Agreed {
			fmt.Fprintf(w, "  agreed     %-16s %-16s %s\n", vote.Builder, vote.Operator, vote.Output)
		}
		for _, vote := range vd.Disagreed {
			fmt.Fprintf(w, "  disagreed  %-16s %-16s %s\n", vote.Builder, vote.Operator, vote.Output)
		}
		if len(vd.Silent) > 0 {
			fmt.Fprintf(w, "  silent     %s\n", strings.Join(vd.Silent, ", "))
		}
		if len(vd.Compromised) > 0 {
			fmt.Fprintf(w, "  compromised %s\n", strings.Join(vd.Compromised, ", "))
		}
	}
	if len(rep.Attestations) > 0 {
		fmt.Fprintln(w, "registry attestations:")
	}
	for _, a := range rep.Attestations {
		mark := "ignored"
		if a.Counted {
			mark = "counted"
		}
		fmt.Fprintf(w, "  %-7s %s  %s\n", mark, a.Manifest, a.Reason)
	}
	for _, n := range rep.Notes {
		fmt.Fprintf(w, "note: %s\n", n)
	}
}

func runPromote(args []string) int {
	fs := newFlags("promote", "IMAGE@sha256:…")
	tagFlag := fs.String("tag", "", "tag to move, e.g. stable or registry/repo:stable (required; same repository as the image)")
	configPath := fs.String("config", "", "the node's config: the policy and the state directory for promotions.log (required)")
	sf := addSourceFlags(fs)
	fs.Bool("require-logs", true, "deprecated: promote always decides from the builders' logs")
	maxAge := fs.Duration("max-age", oci.DefaultMaxAge, "refuse to decide when a counted builder's log was last synced longer ago than this (after promote's own sync)")
	insecure := fs.Bool("insecure", false, "allow plain HTTP to a registry that is not on localhost")
	registryTimeout := fs.Duration("registry-timeout", oci.DefaultTimeout, "give up on a registry request that has not been answered in full within this time")
	if status, ok := parseFlags(fs, args); !ok {
		return status
	}
	if fs.NArg() != 1 || *tagFlag == "" || *configPath == "" {
		fs.Usage()
		return 2
	}
	subject, err := sf.subject()
	if err != nil {
		return fail("promote: %v", err)
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return fail("promote: %v", err)
	}
	reg := newRegistry(*insecure, *registryTimeout)
	ref, err := reg.ParseReference(fs.Arg(0))
	if err != nil {
		return fail("promote: %v", err)
	}
	image, ok := ref.(name.Digest)
	if !ok {
		return fail("promote: give the image by digest (IMAGE@sha256:…): a tag could change between verification and promotion")
	}
	tagRef := *tagFlag
	if !strings.ContainsAny(tagRef, "/:") {
		tagRef = image.Context().String() + ":" + tagRef
	}
	tag, err := name.NewTag(tagRef, reg.NameOptions...)
	if err != nil {
		return fail("promote: --tag %q: %v", *tagFlag, err)
	}
	v, closeSource, freshen, warning, err := gateFor(cfg, reg)
	if err != nil {
		// No decision could be made; it is recorded all the same.
		p := &oci.Promotion{Time: time.Now().UTC().Truncate(time.Second), Image: image.Context().Name(), Digest: image.DigestStr(),
			Tag: tag.String(), Subject: subject, Mode: oci.ModeLogs, Reason: "not promoted: " + err.Error(), Error: err.Error()}
		if rerr := oci.Record(cfg.State, p); rerr != nil {
			return fail("promote: %v; recording this in %s also failed: %v", err, oci.PromotionsLog, rerr)
		}
		return fail("promote: %v", err)
	}
	defer closeSource()
	if warning != "" {
		fmt.Fprintln(os.Stderr, "vouch: "+warning)
	}
	p, rep, err := oci.Promote(context.Background(), v, oci.Query{Image: image, Subject: subject}, tag,
		oci.PromoteOptions{StateDir: cfg.State, Freshen: freshen, MaxAge: *maxAge})
	if rep != nil {
		printOCIReport(os.Stdout, rep)
	}
	if p != nil && p.View != "" {
		fmt.Printf("promote: view of the builders' logs: %s (at most %s accepted)\n", p.View, *maxAge)
	}
	if err != nil {
		return fail("promote: %v", err)
	}
	if !p.Moved {
		fmt.Printf("promote: %s NOT moved (still %s); recorded in %s/%s\n", tag, orNone(p.Previous), cfg.State, oci.PromotionsLog)
		return 1
	}
	fmt.Printf("promote: %s moved %s -> %s; recorded in %s/%s\n", tag, orNone(p.Previous), p.Digest, cfg.State, oci.PromotionsLog)
	return 0
}

// gateFor builds the verifier of a promotion and the function that brings
// its view of the builders' logs up to date. With the index free, promote
// syncs every builder log into it first (creating it on first use, as
// vouch sync does), so a CI job without a node decides on a view seconds
// old. When a running node holds the index, the node's follower keeps it
// current and the node's report says how current; promote never decides
// from registry attestations alone (oci.ErrRegistryOnly).
func gateFor(cfg *config.Config, reg *oci.Registry) (*oci.Verifier, func() error, func(context.Context) (oci.Freshness, error), string, error) {
	if len(cfg.Builders) == 0 {
		return nil, nil, nil, "", fmt.Errorf("%s lists no [[builder]]: there is no quorum to promote on", cfg.Path)
	}
	if _, err := os.Stat(query.IndexPath(cfg.State)); errors.Is(err, os.ErrNotExist) {
		if err := os.MkdirAll(cfg.State, 0o700); err != nil {
			return nil, nil, nil, "", err
		}
		x, err := follow.OpenIndex(cfg)
		if err != nil {
			return nil, nil, nil, "", err
		}
		if err := x.Close(); err != nil {
			return nil, nil, nil, "", err
		}
	}
	v, src, warning, err := verifierWithSource(cfg, reg, true)
	if err != nil {
		return nil, nil, nil, "", err
	}
	closeSource := src.Close
	if x := query.LocalIndex(src); x != nil {
		freshen := func(ctx context.Context) (oci.Freshness, error) {
			fr, results, err := oci.SyncLogs(ctx, cfg, x, follow.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
			for _, r := range results {
				if r.Err != nil {
					fmt.Fprintf(os.Stderr, "vouch: %s: sync failed: %v\n", r.Builder, r.Err)
				}
			}
			return fr, err
		}
		return v, closeSource, freshen, warning, nil
	}
	freshen := func(context.Context) (oci.Freshness, error) {
		rep, err := src.Report(report.Options{ListLimit: 1})
		if err != nil {
			return oci.Freshness{}, fmt.Errorf("asking the node how current its logs are: %w", err)
		}
		var fr oci.Freshness
		for _, l := range rep.Logs {
			fr.Logs = append(fr.Logs, oci.LogFreshness{Builder: l.Builder, Synced: l.LastOK, Compromised: l.Compromised, Error: l.Error})
		}
		if len(fr.Logs) != len(cfg.Builders) {
			return fr, fmt.Errorf("the node reports %d logs, the config lists %d builders: it does not follow this config", len(fr.Logs), len(cfg.Builders))
		}
		return fr, nil
	}
	return v, closeSource, freshen, warning, nil
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}
