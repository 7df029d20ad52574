package main

import (
	"fmt"
	"os"

	"github.com/vouch-dev/vouch/keys"
)

func init() {
	register(command{name: "keygen", summary: "create a builder key and a Nix cache key", run: runKeygen})
}

func runKeygen(args []string) int {
	fs := newFlags("keygen", "")
	name := fs.String("name", "", "key name (the log's origin and the Nix key name)")
	dir := fs.String("dir", ".", "directory to write the keys to")
	if status, ok := parseFlags(fs, args); !ok {
		return status
	}
	if *name == "" {
		fs.Usage()
		return 2
	}
	f, err := keys.Generate(*dir, *name)
	if err != nil {
		return fail("keygen: %v", err)
	}
	vk, _ := os.ReadFile(f.VerifierKey)
	np, _ := os.ReadFile(f.NixPublic)
	fmt.Printf("builder key:      %s (private, 0600)\nverifier key:     %s\n  %s", f.Key, f.VerifierKey, vk)
	fmt.Printf("nix cache key:    %s (private, 0600)\nnix public key:   %s\n  %s", f.NixSecret, f.NixPublic, np)
	return 0
}
