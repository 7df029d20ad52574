// Command narhash prints the NAR hash and size of a path as nixstore.NarHash
// computes them, and creates the inputs of the benchmark that compares it
// with nix-hash (see ../narhash.sh).
//
//	narhash PATH                 print "sha256:<nix32> <size>"
//	narhash make-big FILE MIB    create a file of MIB MiB of pseudo-random bytes
//	narhash make-small DIR       create a tree of 20,000 small files
package main

import (
	"fmt"
	"os"
	"strconv"

	"github.com/vouch-dev/vouch/nixstore"
	"github.com/vouch-dev/vouch/nixstore/internal/benchtree"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "narhash:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	switch {
	case len(args) == 3 && args[0] == "make-big":
		mib, err := strconv.Atoi(args[2])
		if err != nil || mib <= 0 {
			return fmt.Errorf("make-big: %q is not a positive number of MiB", args[2])
		}
		return benchtree.BigFile(args[1], mib)
	case len(args) == 2 && args[0] == "make-small":
		_, err := benchtree.SmallTree(args[1])
		return err
	case len(args) == 1:
		h, size, err := nixstore.NarHash(args[0])
		if err != nil {
			return err
		}
		fmt.Println(h, size)
		return nil
	}
	return fmt.Errorf("usage: narhash PATH | make-big FILE MIB | make-small DIR")
}
