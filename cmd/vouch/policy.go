package main

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/query"
	"github.com/vouch-dev/vouch/report"
	"github.com/vouch-dev/vouch/verdict"
)

func init() {
	register(command{name: "policy check", summary: "validate a config's trust policy and explain it in words", run: runPolicyCheck})
	register(command{name: "policy test", summary: "how a policy would decide the subjects already indexed, against another: what would change", run: runPolicyTest})
}

// loadPolicy loads a config and builds its policy, the same way every
// command that decides does.
func loadPolicy(path string) (*config.Config, *verdict.Policy, error) {
	cfg, err := config.Load(path)
	if err != nil {
		return nil, nil, err
	}
	p, err := verdict.NewPolicy(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, p, nil
}

func runPolicyCheck(args []string) int {
	fs := newFlags("policy check", "")
	configPath := fs.String("config", "", "the config file whose policy to check (required)")
	if status, ok := parseFlags(fs, args); !ok {
		return status
	}
	if *configPath == "" || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	_, p, err := loadPolicy(*configPath)
	if err != nil {
		return fail("policy check: %v", err)
	}
	fmt.Printf("%s: the policy is valid.\n\n%s\nfingerprint: %s\n", *configPath, p.Explain(), p.Fingerprint())
	return 0
}

func runPolicyTest(args []string) int {
	fs := newFlags("policy test", "")
	configPath := fs.String("config", "", "the config with the policy to test (required); its index is read")
	against := fs.String("against", "", "the config of the policy to compare with, e.g. the one in force (default: --config's [quorum] keys alone, without groups and exceptions)")
	asJSON := fs.Bool("json", false, "print the comparison as JSON")
	limit := fs.Int("limit", 50, "list at most this many changed subjects (0: no limit; counts always cover all)")
	since := fs.String("since", "", "only subjects with a claim logged since this time (RFC 3339, e.g. 2026-12-01T00:00:00Z) or this long ago (e.g. 72h)")
	if status, ok := parseFlags(fs, args); !ok {
		return status
	}
	if *configPath == "" || fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	var sinceTime time.Time
	if *since != "" {
		if d, err := time.ParseDuration(*since); err == nil {
			sinceTime = time.Now().Add(-d)
		} else if sinceTime, err = time.Parse(time.RFC3339, *since); err != nil {
			return fail("policy test: --since %q: want an RFC 3339 time (2026-12-01T00:00:00Z) or a duration (72h)", *since)
		}
	}
	cfg, proposed, err := loadPolicy(*configPath)
	if err != nil {
		return fail("policy test: %v", err)
	}
	var current *verdict.Policy
	label := *against
	if *against != "" {
		if _, current, err = loadPolicy(*against); err != nil {
			return fail("policy test: --against: %v", err)
		}
	} else {
		label = "[quorum] of " + *configPath
		if current, err = verdict.NewPolicy(cfg.SimpleRule()); err != nil {
			return fail("policy test: the [quorum] keys of %s alone are not a valid policy (%v); compare with another config using --against", *configPath, err)
		}
	}
	idx, closeIndex, err := openReportIndex(cfg)
	if err != nil {
		return fail("policy test: %v (a running node holds the index open: stop it, or run this on a copy of its state directory)", err)
	}
	defer closeIndex()
	c, err := report.Compare(idx, current, proposed, label, *configPath, report.CompareOptions{ListLimit: *limit, Since: sinceTime})
	if err != nil {
		return fail("%v", err)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(c)
	} else {
		err = c.WriteText(os.Stdout)
	}
	if err != nil {
		return fail("policy test: %v", err)
	}
	return 0
}

// openReportIndex opens the follower index cfg names, for policy test,
// which reads every subject: a running node holding it does not do.
func openReportIndex(cfg *config.Config) (report.Reader, func() error, error) {
	src, err := query.Open(cfg)
	if err != nil {
		return nil, nil, err
	}
	x := query.LocalIndex(src)
	if x == nil {
		src.Close()
		return nil, nil, fmt.Errorf("the index of %s is held by a running node", cfg.State)
	}
	return x, src.Close, nil
}
