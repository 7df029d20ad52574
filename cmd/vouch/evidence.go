package main

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"

	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/follow"
	"github.com/vouch-dev/vouch/index"
	"github.com/vouch-dev/vouch/keys"
	"github.com/vouch-dev/vouch/query"
)

func init() {
	register(command{name: "evidence", summary: "list the evidence of misbehaving logs", run: runEvidence})
	register(command{name: "evidence export", summary: "write one piece of evidence to a self-contained file", run: runEvidenceExport})
	register(command{name: "evidence verify", summary: "check an evidence file with only the builder's public key", run: runEvidenceVerify})
}

// openEvidence opens the evidence of the state a config names: from its
// index, or from the node that holds it (package query).
func openEvidence(path string) (query.Source, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, err
	}
	src, err := query.Open(cfg)
	if err != nil {
		return nil, err
	}
	if o := src.Origin(); o != "" {
		fmt.Fprintf(os.Stderr, "vouch: %s\n", o)
	}
	return src, nil
}

func runEvidence(args []string) int {
	fs := newFlags("evidence", "")
	cfgPath := fs.String("config", "", "config file (required)")
	asJSON := fs.Bool("json", false, "print JSON (the full records)")
	if status, ok := parseFlags(fs, args); !ok {
		return status
	}
	if *cfgPath == "" || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	src, err := openEvidence(*cfgPath)
	if err != nil {
		return fail("evidence: %v", err)
	}
	defer src.Close()
	evs, err := src.Evidence()
	if err != nil {
		return fail("evidence: %v", err)
	}
	if *asJSON {
		if evs == nil {
			evs = []*index.Evidence{}
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(evs); err != nil {
			return fail("evidence: %v", err)
		}
		return 0
	}
	if len(evs) == 0 {
		fmt.Println("no evidence recorded")
		return 0
	}
	for _, e := range evs {
		how := "observed"
		if e.Proven() {
			how = "proof"
		}
		fmt.Printf("%-4s %s  %-10s %-18s %-8s %s\n", e.ID, e.Time.Format("2006-01-02 15:04:05Z"), e.Builder, e.Kind, how, e.Summary)
		if r := e.Readmitted; r != nil {
			fmt.Printf("     re-admitted %s: %s\n", r.Time.Format("2006-01-02 15:04:05Z"), r.Reason)
		}
	}
	fmt.Printf("\nexport one with: vouch evidence export --config %s ID FILE\n", *cfgPath)
	return 0
}

func runEvidenceExport(args []string) int {
	fs := newFlags("evidence export", "ID OUT")
	cfgPath := fs.String("config", "", "config file (required)")
	if status, ok := parseFlags(fs, args); !ok {
		return status
	}
	if *cfgPath == "" || fs.NArg() != 2 {
		fs.Usage()
		return 2
	}
	src, err := openEvidence(*cfgPath)
	if err != nil {
		return fail("evidence export: %v", err)
	}
	defer src.Close()
	e, err := src.EvidenceByID(fs.Arg(0))
	if err != nil {
		return fail("evidence export: %v", err)
	}
	if err := follow.ExportEvidence(e, fs.Arg(1)); err != nil {
		return fail("evidence export: %v", err)
	}
	fmt.Printf("wrote %s; anyone can check it with: vouch evidence verify %s '%s'\n", fs.Arg(1), fs.Arg(1), e.VKey)
	return 0
}

func runEvidenceVerify(args []string) int {
	fs := newFlags("evidence verify", "FILE VKEY")
	if status, ok := parseFlags(fs, args); !ok {
		return status
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return 2
	}
	e, err := follow.ReadEvidence(fs.Arg(0))
	if err != nil {
		return fail("evidence verify: %v", err)
	}
	vkey, err := readVKey(fs.Arg(1))
	if err != nil {
		return fail("evidence verify: %v", err)
	}
	msg, err := follow.VerifyEvidence(e, vkey)
	if err != nil {
		return fail("evidence verify: %s: does not hold: %v", fs.Arg(0), err)
	}
	fmt.Printf("%s (%s): %s\n", e.Kind, e.Builder, msg)
	return 0
}

// readVKey accepts a verifier key or the path of a file holding one.
func readVKey(arg string) (string, error) {
	if _, err := keys.NewVerifier(arg); err == nil {
		return arg, nil
	}
	b, err := os.ReadFile(arg)
	if err != nil {
		return "", fmt.Errorf("%q is neither a verifier key (name+hex8+base64) nor a readable file: %v", arg, err)
	}
	return strings.TrimSpace(string(b)), nil
}
