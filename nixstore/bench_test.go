package nixstore

import (
	"io"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/vouch-dev/vouch/nixstore/internal/benchtree"
)

// bigFileMiB is the size of the big-file benchmark input: 512 MiB, or
// VOUCH_BENCH_BIG_MIB for a quicker run.
func bigFileMiB(b *testing.B) int {
	if s := os.Getenv("VOUCH_BENCH_BIG_MIB"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n <= 0 {
			b.Fatalf("VOUCH_BENCH_BIG_MIB=%q is not a positive number of MiB", s)
		}
		return n
	}
	return 512
}

func bigFile(b *testing.B) string {
	p := filepath.Join(b.TempDir(), "big")
	mib := bigFileMiB(b)
	if err := benchtree.BigFile(p, mib); err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(mib) << 20)
	return p
}

func smallTree(b *testing.B) string {
	dir := filepath.Join(b.TempDir(), "small")
	total, err := benchtree.SmallTree(dir)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(total)
	return dir
}

func benchNarHash(b *testing.B, p string) {
	b.ResetTimer()
	for b.Loop() {
		if _, _, err := NarHash(p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkNarHashBigFile(b *testing.B)    { benchNarHash(b, bigFile(b)) }
func BenchmarkNarHashSmallFiles(b *testing.B) { benchNarHash(b, smallTree(b)) }

// The go-nix serializer on the same inputs (into io.Discard, so without
// even the hashing): the measurement behind writing our own (see narWriter).
func benchGoNix(b *testing.B, p string) {
	b.ResetTimer()
	for b.Loop() {
		if err := nar.DumpPath(io.Discard, p); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkGoNixBigFile(b *testing.B)    { benchGoNix(b, bigFile(b)) }
func BenchmarkGoNixSmallFiles(b *testing.B) { benchGoNix(b, smallTree(b)) }
