// Package benchtree creates the inputs of the NAR hashing benchmarks, so the
// Go benchmarks and the comparison with nix-hash (bench/narhash.sh) measure
// the very same trees.
package benchtree

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
)

// SmallFiles is the number of files SmallTree creates.
const SmallFiles = 20000

// BigFile writes a file of mib MiB of pseudo-random bytes at path.
func BigFile(path string, mib int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	w := bufio.NewWriterSize(f, 1<<20)
	rng := rand.NewChaCha8([32]byte{'b', 'i', 'g'})
	chunk := make([]byte, 1<<20)
	for range mib {
		rng.Read(chunk)
		if _, err := w.Write(chunk); err != nil {
			f.Close()
			return err
		}
	}
	if err := w.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// SmallTree creates at dir a tree of SmallFiles files in 200 directories of
// 100, shaped like a typical package output: sizes from 1 byte to about
// 8 KiB (every padding length occurs), every tenth file executable. It
// returns the total size of the files' contents.
func SmallTree(dir string) (int64, error) {
	rng := rand.NewChaCha8([32]byte{'s', 'm', 'a', 'l', 'l'})
	buf := make([]byte, 8192)
	var total int64
	for i := range SmallFiles {
		sub := filepath.Join(dir, fmt.Sprintf("d%03d", i/100))
		if i%100 == 0 {
			if err := os.MkdirAll(sub, 0o755); err != nil {
				return 0, err
			}
		}
		size := 1 + (i*7919)%8192
		rng.Read(buf[:size])
		mode := os.FileMode(0o644)
		if i%10 == 0 {
			mode = 0o755
		}
		p := filepath.Join(sub, fmt.Sprintf("f%05d", i))
		if err := os.WriteFile(p, buf[:size], mode); err != nil {
			return 0, err
		}
		if err := os.Chmod(p, mode); err != nil {
			return 0, err
		}
		total += int64(size)
	}
	return total, nil
}
