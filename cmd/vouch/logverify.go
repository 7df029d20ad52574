package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"

	"github.com/vouch-dev/vouch/follow"
)

func init() {
	register(command{name: "log verify", summary: "audit a whole log from scratch: signature, tree, entries, claims", run: runLogVerify})
}

// runLogVerify exits 0 when the log is sound, 1 when it is not (with the
// evidence), 3 when it could not be audited (unreachable, bad signature).
func runLogVerify(args []string) int {
	fs := newFlags("log verify", "URL VKEY")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 2 {
		fs.Usage()
		return 2
	}
	vkey, err := readVKey(fs.Arg(1))
	if err != nil {
		return fail("log verify: %v", err)
	}
	bar := newSyncBar(isTerminal(os.Stderr))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := follow.Audit(ctx, fs.Arg(0), vkey, nil, bar.update)
	bar.finish()
	if res != nil && res.Evidence != nil {
		fmt.Fprintf(os.Stderr, "vouch: log verify: %s is NOT sound: %s: %s\n", fs.Arg(0), res.Evidence.Kind, res.Evidence.Summary)
		return 1
	}
	if errors.Is(err, follow.ErrBadData) {
		// Proof for nobody else (the path could have altered it), but this
		// audit was served a log that does not match its own signature.
		fmt.Fprintf(os.Stderr, "vouch: log verify: %s is NOT sound as served here: %v\n", fs.Arg(0), err)
		return 1
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "vouch: log verify: could not audit %s: %v\n", fs.Arg(0), err)
		return 3
	}
	cp := res.Checkpoint
	fmt.Printf("ok: %s is sound: %d entries verified against the checkpoint signed by %s (size %d, root %v); %d subjects, none with two outputs\n",
		fs.Arg(0), res.Entries, cp.Origin, cp.Size, cp.Root, res.Claims)
	return 0
}
