package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"time"

	"github.com/vouch-dev/vouch/follow"
	"github.com/vouch-dev/vouch/index"
	"github.com/vouch-dev/vouch/logmonitor"
)

func init() {
	register(command{name: "log verify", summary: "audit a log from scratch; with --since/--save, monitor it for forks and rollbacks", run: runLogVerify})
}

const logVerifyHelp = `
Audits the log at URL with the builder's verifier key VKEY (or a file
holding it): the checkpoint's signature, every entry against the signed
root, every claim, no subject with two outputs.

To monitor a log (from cron, say), pin what you verified and require the
log to extend it next time:

  vouch log verify --save alice.pin URL VKEY                 # first run
  vouch log verify --since alice.pin --save alice.pin URL VKEY

A checkpoint that does not extend the pin — a fork, a split view (another
tree of the same size) or a rollback (a smaller tree) — is reported with
evidence: a file holding both signed checkpoints (and, for a fork, the
proof), which anyone can check with 'vouch evidence verify FILE VKEY'.
The pin is only ever replaced by a checkpoint proven to extend it.

What it can and cannot see: only its own view of the log, when it runs.
A log can show other users another history of their own (a split view
across users); that shows only when views are compared — a pin is a plain
signed checkpoint, so '--since THEIR.pin' checks that the log you see
extends what another monitor saw — or with witnesses that cosign
consistent checkpoints only (quorum.witnesses for followers). A fork that
returns to the known history between two runs is not seen either. Each
run downloads and checks the whole log again.

Exit status: 0 sound (and extends the pin), 1 not sound (evidence
written), 3 could not audit (unreachable, bad signature, bad pin file).
`

// runLogVerify exits 0 when the log is sound, 1 when it is not (with the
// evidence), 3 when it could not be audited (unreachable, bad signature).
func runLogVerify(args []string) int {
	fs := newFlags("log verify", "URL VKEY")
	since := fs.String("since", "", "a checkpoint saved by an earlier --save: the log must extend it")
	save := fs.String("save", "", "write the verified checkpoint here when the log is sound (and extends --since)")
	evidenceOut := fs.String("evidence", "", "write evidence here when the log is not sound (default with --since: vouch-evidence-TIME.json beside the pin)")
	usage := fs.Usage
	fs.Usage = func() {
		usage()
		fmt.Fprint(fs.Output(), logVerifyHelp)
	}
	if status, ok := parseFlags(fs, args); !ok {
		return status
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return 2
	}
	logURL := fs.Arg(0)
	vkey, err := readVKey(fs.Arg(1))
	if err != nil {
		fmt.Fprintf(os.Stderr, "vouch: log verify: %v\n", err)
		return 3
	}
	opts := logmonitor.Options{URL: logURL, VKey: vkey}
	if *since != "" {
		if opts.Pinned, err = logmonitor.ReadPin(*since, vkey); err != nil {
			fmt.Fprintf(os.Stderr, "vouch: log verify: %v\n", err)
			return 3
		}
	}
	bar := newSyncBar(isTerminal(os.Stderr))
	opts.Progress = bar.update
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := logmonitor.Check(ctx, opts)
	bar.finish()
	if res != nil && len(res.Evidence) > 0 {
		path := *evidenceOut
		if path == "" && *since != "" {
			path = filepath.Join(filepath.Dir(*since), "vouch-evidence-"+time.Now().UTC().Format("20060102T150405Z")+".json")
		}
		for i, e := range res.Evidence {
			fmt.Fprintf(os.Stderr, "vouch: log verify: %s is NOT sound: %s: %s\n", logURL, e.Kind, e.Summary)
			if path == "" {
				continue
			}
			p := path
			if i > 0 {
				p = fmt.Sprintf("%s.%d", path, i+1)
			}
			if err := writeEvidence(e, p, vkey); err != nil {
				fmt.Fprintf(os.Stderr, "vouch: log verify: writing the evidence: %v\n", err)
			}
		}
		if path == "" {
			fmt.Fprintln(os.Stderr, "  (give --evidence FILE to keep it)")
		}
		return 1
	}
	if errors.Is(err, follow.ErrBadData) {
		// Proof for nobody else (the path could have altered it), but this
		// audit was served a log that does not match its own signature.
		fmt.Fprintf(os.Stderr, "vouch: log verify: %s is NOT sound as served here: %v\n", fs.Arg(0), err)
		return 1
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "vouch: log verify: could not audit %s: %v\n", logURL, err)
		return 3
	}
	cp := res.Checkpoint
	note := ""
	if res.Extends != "" {
		note = fmt.Sprintf("; %s since the pinned checkpoint of size %d", res.Extends, opts.Pinned.Size)
	}
	fmt.Printf("ok: %s is sound: %d entries verified against the checkpoint signed by %s (size %d, root %v); %d subjects, none with two outputs%s\n",
		logURL, res.Audit.Entries, cp.Origin, cp.Size, cp.Root, res.Audit.Claims, note)
	if *save != "" {
		if err := logmonitor.SavePin(*save, cp); err != nil {
			fmt.Fprintf(os.Stderr, "vouch: log verify: saving the checkpoint: %v\n", err)
			return 3
		}
		fmt.Printf("pinned the checkpoint of size %d in %s\n", cp.Size, *save)
	}
	return 0
}

// writeEvidence exports e and says how to check it.
func writeEvidence(e *index.Evidence, path, vkey string) error {
	if err := follow.ExportEvidence(e, path); err != nil {
		return err
	}
	fmt.Fprintf(os.Stderr, "  evidence written to %s; anyone can check it with: vouch evidence verify %s '%s'\n", path, path, vkey)
	return nil
}
