package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vouch-dev/vouch/logmonitor"
	"github.com/vouch-dev/vouch/query"
)

func init() {
	register(command{name: "log show", summary: "the newest claims of a log, checked against its signed checkpoint", run: runLogShow})
}

// runLogShow prints the tail of a log: the local builder's (--state) or
// any (URL VKEY).
func runLogShow(args []string) int {
	fs := newFlags("log show", "[URL VKEY]")
	state := fs.String("state", "", "a builder's state directory: show the log of the node serving it (default $VOUCH_STATE)")
	n := fs.Int("n", 20, "how many of the newest entries to show (0: all)")
	asJSON := fs.Bool("json", false, "print JSON: the checkpoint and the entries with their claims")
	if status, ok := parseFlags(fs, args); !ok {
		return status
	}
	var url, vkey string
	switch fs.NArg() {
	case 2:
		var err error
		url = fs.Arg(0)
		if vkey, err = readVKey(fs.Arg(1)); err != nil {
			return fail("log show: %v", err)
		}
	case 0:
		if *state == "" {
			*state = os.Getenv("VOUCH_STATE")
		}
		if *state == "" {
			fs.Usage()
			return 2
		}
		var err error
		if url, vkey, err = ownLog(*state); err != nil {
			return fail("log show: %v", err)
		}
	default:
		fs.Usage()
		return 2
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cp, entries, err := logmonitor.Tail(ctx, nil, url, vkey, *n)
	if err != nil {
		return fail("log show %s: %v", url, err)
	}
	if *asJSON {
		out := struct {
			Log        string                 `json:"log"`
			Origin     string                 `json:"origin"`
			Size       uint64                 `json:"tree_size"`
			Checkpoint string                 `json:"checkpoint"`
			Entries    []logmonitor.TailEntry `json:"entries"`
		}{url, cp.Origin, cp.Size, string(cp.Note), entries}
		if out.Entries == nil {
			out.Entries = []logmonitor.TailEntry{}
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(out); err != nil {
			return fail("%v", err)
		}
		return 0
	}
	fmt.Printf("log %s (origin %q): %d entries; the newest %d, checked against its signed checkpoint:\n", url, cp.Origin, cp.Size, len(entries))
	for i := len(entries) - 1; i >= 0; i-- {
		e := entries[i]
		if e.Claim == nil {
			fmt.Printf("%8d  (not a claim this vouch reads, %d bytes)\n", e.Index, len(e.Entry))
			continue
		}
		when := ""
		if !e.Claim.Time.IsZero() {
			when = "  " + e.Claim.Time.UTC().Format(time.RFC3339)
		}
		fmt.Printf("%8d  %-6s %s  %s%s\n", e.Index, e.Claim.Kind, e.Claim.Subject, e.Claim.Output(), when)
	}
	return 0
}

// ownLog finds the log of the node serving state: its address from
// STATE/node.json, its verifier key from STATE/keys.
func ownLog(state string) (url, vkey string, err error) {
	info, err := query.ReadNodeFile(state)
	if err != nil {
		return "", "", fmt.Errorf("no node serves %s (%v): start vouch serve, or give the log's URL and verifier key", state, err)
	}
	vkeys, _ := filepath.Glob(filepath.Join(state, "keys", "*.vkey"))
	if len(vkeys) != 1 {
		return "", "", fmt.Errorf("%s holds %d verifier keys: give the log's URL and verifier key", filepath.Join(state, "keys"), len(vkeys))
	}
	b, err := os.ReadFile(vkeys[0])
	if err != nil {
		return "", "", err
	}
	return "http://" + info.Listen + "/log/", strings.TrimSpace(string(b)), nil
}
