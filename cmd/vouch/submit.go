package main

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/nixstore"
	"github.com/vouch-dev/vouch/query"
	"github.com/vouch-dev/vouch/submit"
)

func init() {
	register(command{name: "submit", summary: "log store paths through the local daemon", run: runSubmit})
}

func runSubmit(args []string) int {
	fs := newFlags("submit", "STOREPATH...")
	nf := addNodeFlags(fs)
	closure := fs.Bool("closure", false, "submit every path in the closure of each STOREPATH")
	if status, ok := parseFlags(fs, args); !ok {
		return status
	}
	if fs.NArg() == 0 {
		fs.Usage()
		return 2
	}
	cfg, err := nf.load()
	if err != nil {
		return fail("%v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 24*time.Hour)
	defer cancel()
	// Like vouch verdict, take ./result (a symlink into the store) or a
	// basename; refuse a file inside a store path (it is not what a build
	// produced: say which path is) and derivations.
	var paths []string
	for _, arg := range fs.Args() {
		if rest, ok := strings.CutPrefix(arg, claim.StoreDir+"/"); ok && strings.Contains(strings.Trim(rest, "/"), "/") {
			base, _, _ := strings.Cut(rest, "/")
			return fail("%s is not a store path: it is a file inside %s/%s; submit that path", arg, claim.StoreDir, base)
		}
		_, p, err := verdictSubject(string(claim.KindNix), arg)
		if err != nil {
			return fail("%v", err)
		}
		if strings.HasSuffix(p, ".drv") {
			return fail("%s is a derivation, not a build output: vouch logs what a build produced; submit its outputs (nix-store --query --outputs %s)", p, p)
		}
		paths = append(paths, p)
	}
	if *closure {
		// The closure is read from the store the daemon logs from: the
		// one --store names, else the running daemon's own.
		root := cfg.Store
		if *nf.store == "" {
			if info, err := query.ReadNodeFile(cfg.State); err == nil && info.Store != "" {
				root = info.Store
			}
		}
		st := nixstore.Store{Root: root}
		seen := map[string]bool{}
		var all []string
		for _, p := range paths {
			cl, err := st.Closure(ctx, p)
			if err != nil {
				return fail("closure of %s: %v", p, err)
			}
			for _, q := range cl {
				if !seen[q] {
					seen[q] = true
					all = append(all, q)
				}
			}
		}
		paths = all
	}
	c := submit.NewClient(cfg.Socket)
	bar := newProgress(len(paths), "submitted")
	failed := 0
	const chunk = 64
	for i := 0; i < len(paths); i += chunk {
		part := paths[i:min(i+chunk, len(paths))]
		res, err := c.SubmitPaths(ctx, part)
		if err != nil {
			bar.done()
			return fail("%v", err)
		}
		for _, r := range res {
			switch {
			case r.Error != "":
				failed++
				bar.printf("%s: %s\n", r.Subject, r.Error)
			case !bar.active():
				dup := ""
				if r.Duplicate {
					dup = " (already logged)"
				}
				fmt.Printf("%s logged at index %d%s\n", r.Subject, r.Index, dup)
			}
		}
		bar.add(len(part))
	}
	bar.done()
	if failed > 0 {
		fmt.Fprintf(os.Stderr, "vouch: %d of %d paths were not logged\n", failed, len(paths))
		return 1
	}
	return 0
}
