package main

import (
	"fmt"
	"strings"

	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/follow"
)

func init() {
	register(command{name: "builder readmit", summary: "count a builder marked compromised again, deliberately, with a recorded reason", run: runBuilderReadmit})
}

// runBuilderReadmit re-admits a builder after proven evidence against its
// log (follow.Readmit). Flags may come before or after the name.
func runBuilderReadmit(args []string) int {
	fs := newFlags("builder readmit", "NAME")
	cfgPath := fs.String("config", "", "config file (required)")
	reason := fs.String("reason", "", "why the builder is trusted again: what was investigated and found (required; recorded next to the evidence)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: vouch builder readmit --config FILE --reason "..." NAME

Clears the compromised mark of builder NAME: its claims count again and
its log is synced again. The evidence is kept; the re-admission (reason,
time, the evidence it overrides) is recorded next to it and shown by
vouch evidence. After a fork or split view, the log's replica is dropped
and synced again from scratch.

Re-admit only a builder whose evidence you investigated and found to be
no misbehaviour of its key holder, such as a bug in the log software that
rewrote its history. A builder whose key was compromised is not
re-admitted: it gets a new key, and is a new builder in the policy.
Stop vouch serve for this config first (it holds the index).

`)
		fs.PrintDefaults()
	}
	if status, ok := parseFlags(fs, args); !ok {
		return status
	}
	if *cfgPath == "" || fs.NArg() != 1 {
		fs.Usage()
		return 2
	}
	name := fs.Arg(0)
	if strings.TrimSpace(*reason) == "" {
		return fail("builder readmit: --reason is required: say what you investigated and why %s is trusted again (it is recorded next to the evidence)", name)
	}
	cfg, err := config.Load(*cfgPath)
	if err != nil {
		return fail("%v", err)
	}
	idx, err := follow.OpenIndex(cfg)
	if err != nil {
		return fail("builder readmit: %v", err)
	}
	defer idx.Close()
	r, err := follow.Readmit(idx, cfg, name, *reason)
	if err != nil {
		return fail("builder readmit: %v", err)
	}
	fmt.Printf("re-admitted %s, overriding evidence %s (kept; see vouch evidence --config %s)\n", name, strings.Join(r.Overrides, ", "), *cfgPath)
	if r.Resynced {
		fmt.Printf("its log showed two histories: the replica was dropped; the next sync pins the checkpoint it serves then and verifies it from scratch\n")
	}
	fmt.Printf("its claims count again from the next sync (vouch sync --config %s, or vouch serve)\n", *cfgPath)
	return 0
}
