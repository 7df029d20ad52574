package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strconv"

	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/report"
	"github.com/vouch-dev/vouch/verdict"
)

func init() {
	register(command{name: "report", summary: "reproducibility report: agreement between builders, disagreements, log health", run: runReport})
}

// openReportIndex opens the follower's index a node's config names, for a
// report. It returns the index and a function that closes it.
var openReportIndex = func(cfg *config.Config) (report.Reader, func() error, error) {
	src, closeIndex, err := openSource(cfg)
	if err != nil {
		return nil, nil, err
	}
	r, ok := src.(report.Reader)
	if !ok {
		closeIndex()
		return nil, nil, errNoIndex
	}
	return r, closeIndex, nil
}

func runReport(args []string) int {
	fs := newFlags("report", "")
	configPath := fs.String("config", "", "the node's config file (required)")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	all := fs.Bool("all", false, "list every subject with its outputs and verdict (large)")
	limit := fs.Int("limit", 20, "list at most this many subjects per list (0: no limit; totals always count all)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *configPath == "" || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return fail("report: %v", err)
	}
	policy, err := verdict.NewPolicy(cfg)
	if err != nil {
		return fail("report: %v", err)
	}
	var rep *report.Report
	if idx, closeIndex, openErr := openReportIndex(cfg); openErr == nil {
		defer closeIndex()
		if rep, err = report.Build(idx, policy, report.Options{ListLimit: *limit, AllSubjects: *all}); err != nil {
			return fail("%v", err)
		}
	} else {
		// A running node holds the index open: ask it over loopback.
		query := url.Values{"limit": {strconv.Itoa(*limit)}, "all": {strconv.FormatBool(*all)}}
		fromNode, askErr := askNode[report.Report](cfg, report.HTTPPath, query)
		if askErr != nil {
			return fail("report: %v; nor did a running node answer: %v", openErr, askErr)
		}
		rep = &fromNode
		fmt.Fprintf(os.Stderr, "vouch: the index is in use; this is the report of the node at %s\n", cfg.Listen)
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
