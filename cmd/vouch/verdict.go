package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/query"
	"github.com/vouch-dev/vouch/report"
	"github.com/vouch-dev/vouch/verdict"
)

func init() {
	register(command{name: "verdict", summary: "decide whether a store path or subject is trusted (exit 0 only if so)", run: runVerdict})
}

func runVerdict(args []string) int {
	fs := newFlags("verdict", "STOREPATH|SUBJECT")
	configPath := fs.String("config", "", "the node's config file (required)")
	asJSON := fs.Bool("json", false, "print the verdict as JSON")
	kindFlag := fs.String("kind", "", "claim kind: nix, nix-ca or oci (default: guessed from the argument, nix for store paths)")
	if status, ok := parseFlags(fs, args); !ok {
		return status
	}
	if *configPath == "" || fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	kind, subject, err := verdictSubject(*kindFlag, fs.Arg(0))
	if err != nil {
		return fail("verdict: %v", err)
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return fail("verdict: %v", err)
	}
	src, err := query.Open(cfg)
	if err != nil {
		return fail("verdict: %v", err)
	}
	defer src.Close()
	v, err := src.Verdict(kind, subject)
	if err != nil {
		return fail("verdict: %v", err)
	}
	var missing []report.Absent
	if x := query.LocalIndex(src); x != nil && v.Outcome != verdict.Trusted && !*asJSON {
		// Say who is missing and why, as the report does.
		missing, _ = report.Missing(x, &v, time.Time{})
	}
	if o := src.Origin(); o != "" {
		fmt.Fprintf(os.Stderr, "vouch: %s\n", o)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(v); err != nil {
			return fail("verdict: %v", err)
		}
	} else {
		printVerdict(os.Stdout, v)
		printMissing(os.Stdout, missing)
	}
	if v.Outcome != verdict.Trusted {
		return 1
	}
	return 0
}

// verdictSubject turns the command's argument into a (kind, subject). For
// nix it accepts a store path (a path inside one is cut to the store path),
// its basename, or a symlink to one such as ./result. Without --kind, an
// output id ("sha256:…!out") is nix-ca and "source@commit#attr?system=…" is
// oci.
func verdictSubject(kind, arg string) (claim.Kind, string, error) {
	if kind == "" {
		switch {
		case strings.Contains(arg, "!"):
			kind = string(claim.KindNixCA)
		case strings.Contains(arg, "?system="):
			kind = string(claim.KindOCI)
		default:
			kind = string(claim.KindNix)
		}
	}
	switch claim.Kind(kind) {
	case claim.KindNix:
		p := arg
		if !strings.HasPrefix(p, claim.StoreDir+"/") {
			if target, err := os.Readlink(p); err == nil && strings.HasPrefix(target, claim.StoreDir+"/") {
				p = target
			} else if !strings.Contains(p, "/") {
				p = claim.StoreDir + "/" + p
			}
		}
		if rest, ok := strings.CutPrefix(p, claim.StoreDir+"/"); ok {
			base, _, _ := strings.Cut(rest, "/")
			p = claim.StoreDir + "/" + base
		}
		if err := claim.ValidStorePath(p); err != nil {
			return "", "", fmt.Errorf("%s is not a store path: %v (give /nix/store/<hash>-<name>, or --kind for another kind of subject)", arg, err)
		}
		return claim.KindNix, filepath.Clean(p), nil
	case claim.KindNixCA, claim.KindOCI:
		if err := verdict.CheckSubject(claim.Kind(kind), arg); err != nil {
			return "", "", fmt.Errorf("%q is not a valid %s subject: %v", arg, kind, err)
		}
		return claim.Kind(kind), arg, nil
	}
	return "", "", fmt.Errorf("unknown --kind %q (want nix, nix-ca or oci)", kind)
}

// printMissing lists the silent builders of a verdict with why they are.
func printMissing(w io.Writer, missing []report.Absent) {
	for i, a := range missing {
		label := "missing:"
		if i > 0 {
			label = ""
		}
		fmt.Fprintf(w, "%-12s %s: %s (%s)\n", label, a.Builder, a.State, a.Detail)
	}
}

// printVerdict writes the verdict for a human.
func printVerdict(w io.Writer, v verdict.Verdict) {
	fmt.Fprintf(w, "%s: %s %s\n", v.Outcome, v.Kind, v.Subject)
	if v.Value != nil {
		fmt.Fprintf(w, "value:       %s\n", v.Value.Output())
	}
	fmt.Fprintf(w, "reason:      %s\n", v.Reason)
	if e := v.Exception; e != nil {
		fmt.Fprintf(w, "exception:   admitted by the exception for %s (rule: %s): %s\n", e.Match, e.Rule, e.Reason)
	}
	votes := func(label string, vs []verdict.Vote, withOutput bool) {
		if len(vs) == 0 {
			fmt.Fprintf(w, "%-12s -\n", label)
			return
		}
		for i, vote := range vs {
			if i > 0 {
				label = ""
			}
			fmt.Fprintf(w, "%-12s %s (operator %s, weight %d): log entry %d, tree size %d", label, vote.Builder, vote.Operator, vote.Weight, vote.Index, vote.TreeSize)
			if vote.Log != "" {
				fmt.Fprintf(w, " in log %s", vote.Log)
			}
			if withOutput {
				fmt.Fprintf(w, ": %s", vote.Output)
			}
			fmt.Fprintln(w)
		}
	}
	votes("agreed:", v.Agreed, v.Value == nil)
	votes("disagreed:", v.Disagreed, true)
	list := func(label string, names []string) {
		s := strings.Join(names, ", ")
		if s == "" {
			s = "-"
		}
		fmt.Fprintf(w, "%-12s %s\n", label, s)
	}
	list("silent:", v.Silent)
	list("compromised:", v.Compromised)
}
