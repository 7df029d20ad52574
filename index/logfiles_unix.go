//go:build unix

package index

import (
	"os"

	"golang.org/x/sys/unix"
)

// mapFile maps length bytes of f, read-only and shared: the map sees what
// is written to the file after it was made.
func mapFile(f *os.File, length uint64) ([]byte, error) {
	return unix.Mmap(int(f.Fd()), 0, int(length), unix.PROT_READ, unix.MAP_SHARED)
}

func unmapFile(b []byte) { unix.Munmap(b) }
