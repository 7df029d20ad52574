package main

import (
	"encoding/json"
	"fmt"
	"os"

	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/query"
	"github.com/vouch-dev/vouch/report"
)

func init() {
	register(command{name: "report", summary: "reproducibility report: agreement between builders, disagreements, log health", run: runReport})
}

func runReport(args []string) int {
	fs := newFlags("report", "")
	configPath := fs.String("config", "", "the node's config file (required)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	all := fs.Bool("all", false, "list every subject with its outputs and verdict (large)")
	limit := fs.Int("limit", 20, "list at most this many subjects per list (0: no limit; totals always count all)")
	if status, ok := parseFlags(fs, args); !ok {
		return status
	}
	if *configPath == "" || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return fail("report: %v", err)
	}
	src, err := query.Open(cfg)
	if err != nil {
		return fail("report: %v", err)
	}
	defer src.Close()
	rep, err := src.Report(report.Options{ListLimit: *limit, AllSubjects: *all})
	if err != nil {
		return fail("report: %v", err)
	}
	if o := src.Origin(); o != "" {
		fmt.Fprintf(os.Stderr, "vouch: %s\n", o)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(rep)
	} else {
		err = rep.WriteText(os.Stdout)
	}
	if err != nil {
		return fail("report: %v", err)
	}
	return 0
}
