package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/hook"
	"github.com/vouch-dev/vouch/node"
	"github.com/vouch-dev/vouch/submit"
)

func init() {
	register(command{name: "hook", summary: "Nix post-build-hook: queue the built outputs for the log (never fails a build)", run: runHook})
}

// runHook always exits 0: Nix fails the build when its post-build-hook
// fails, and a builder's log being down must never break a build. Problems
// are reported on stderr, which Nix shows in the build log.
func runHook(args []string) int {
	fs := newFlags("hook", "")
	state := fs.String("state", "", "the daemon's state directory (default $VOUCH_STATE or "+config.DefaultState()+")")
	socket := fs.String("socket", "", "the daemon's submit socket (default STATE/vouch.sock)")
	if _, ok := parseFlags(fs, args); !ok {
		return 0 // a hook never fails a build, not even on a bad flag
	}
	if *state == "" {
		*state = os.Getenv("VOUCH_STATE")
	}
	if *state == "" {
		*state = config.DefaultState()
	}
	if *socket == "" {
		*socket = (&config.Config{State: *state}).DefaultSocket()
	}
	drv := os.Getenv("DRV_PATH")
	if drv == "" {
		fmt.Fprintln(os.Stderr, "vouch hook: DRV_PATH is not set; run me as Nix's post-build-hook")
		return 0
	}
	sp := hook.Spool{Dir: node.SpoolDir(*state)}
	if err := sp.Enqueue(drv, hook.ParseOutPaths(os.Getenv("OUT_PATHS"))); err != nil {
		fmt.Fprintf(os.Stderr, "vouch hook: could not queue %s for the log: %v (the build itself succeeded)\n", drv, err)
		return 0
	}
	// Poke the daemon; it also drains periodically, so a lost poke only
	// delays logging.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := submit.NewClient(*socket).Drain(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "vouch hook: queued %s; the daemon will log it when it is back (%v)\n", drv, err)
	}
	return 0
}
