package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"

	"github.com/vouch-dev/vouch/internal/buildinfo"
)

func init() {
	register(command{name: "version", summary: "print the version and VCS revision this binary was built from", run: runVersion})
}

func runVersion(args []string) int {
	fs := newFlags("version", "")
	asJSON := fs.Bool("json", false, "print the build information as JSON")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() != 0 {
		fs.Usage()
		return 2
	}
	info := buildinfo.Read()
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(info); err != nil {
			return fail("version: %v", err)
		}
		return 0
	}
	fmt.Println(info)
	return 0
}
