package nixstore

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nix-community/go-nix/pkg/nar"
	"github.com/nix-community/go-nix/pkg/nixbase32"
	"golang.org/x/sys/unix"
)

// nixDump returns what "nix-store --dump p" writes: Nix's own NAR of p.
// It works on any path, not only store paths.
func nixDump(t testing.TB, args ...string) []byte {
	t.Helper()
	out, err := exec.Command("nix-store", append([]string{"--dump"}, args...)...).Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("nix-store --dump %v: %v: %s", args, err, ee.Stderr)
		}
		t.Fatalf("nix-store --dump %v: %v", args, err)
	}
	return out
}

func needNix(t testing.TB) {
	t.Helper()
	if _, err := exec.LookPath("nix-store"); err != nil {
		t.Skip("nix-store is not on PATH; these tests compare with real Nix")
	}
}

func write(t testing.TB, path string, content string, mode os.FileMode) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // umask-proof
		t.Fatal(err)
	}
}

func symlink(t testing.TB, target, path string) {
	t.Helper()
	if err := os.Symlink(target, path); err != nil {
		t.Fatal(err)
	}
}

// specialTree builds a tree with every kind of node and the corner cases of
// the format: padding of every length, names that sort differently bytewise
// than by locale, empty files and directories, executables, dangling,
// absolute and long symlinks, nesting, and a file larger than the buffer.
func specialTree(t testing.TB) string {
	root := filepath.Join(t.TempDir(), "tree")
	for n := 0; n <= 17; n++ {
		write(t, filepath.Join(root, "pad", fmt.Sprintf("len%02d", n)), strings.Repeat("x", n), 0o644)
	}
	write(t, filepath.Join(root, "bin", "tool"), "#!/bin/sh\necho tool\n", 0o755)
	write(t, filepath.Join(root, "bin", "owner-exec-only"), "x", 0o744)
	write(t, filepath.Join(root, "bin", "group-exec-only"), "x", 0o654)
	write(t, filepath.Join(root, "empty-file"), "", 0o644)
	for _, n := range []string{"B", "a", "a-b", "a.b", "a_b", "ab", "Z", "~", "é", "a b"} {
		write(t, filepath.Join(root, "sorting", n), n, 0o644)
	}
	if err := os.MkdirAll(filepath.Join(root, "empty-dir"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(root, "deep", "1", "2", "3", "4", "5", "6", "7"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(root, "deep", "1", "2", "3", "leaf"), "leaf\n", 0o644)
	symlink(t, "../empty-file", filepath.Join(root, "bin", "relative-link"))
	symlink(t, "/nix/store/00000000000000000000000000000000-dangling", filepath.Join(root, "absolute-link"))
	symlink(t, strings.Repeat("long/", 200)+"end", filepath.Join(root, "long-link"))
	symlink(t, "deep", filepath.Join(root, "dir-link"))
	big := bytes.Repeat([]byte("0123456789abcdef"), (3*bufferSize+5)/16)
	big = append(big, "tail!"...)
	write(t, filepath.Join(root, "big"), string(big), 0o644)
	write(t, filepath.Join(root, "exact-buffer"), strings.Repeat("b", bufferSize), 0o644)
	return root
}

func narHashOf(nar []byte) string {
	sum := sha256.Sum256(nar)
	return "sha256:" + nixbase32.EncodeToString(sum[:])
}

// TestNARMatchesNix compares WriteNAR and NarHash with nix-store --dump on
// trees with every node type and corner case, including store paths that
// are a single file, an executable or a symlink.
func TestNARMatchesNix(t *testing.T) {
	needNix(t)
	tree := specialTree(t)
	single := filepath.Join(t.TempDir(), "single")
	write(t, single, "just one file\n", 0o644)
	exe := filepath.Join(t.TempDir(), "exe")
	write(t, exe, "#!/bin/sh\n", 0o755)
	link := filepath.Join(t.TempDir(), "link")
	symlink(t, "/nix/store/00000000000000000000000000000000-target", link)
	emptyDir := filepath.Join(t.TempDir(), "empty")
	if err := os.Mkdir(emptyDir, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{tree, single, exe, link, emptyDir, filepath.Join(tree, "sorting")} {
		want := nixDump(t, p)
		var got bytes.Buffer
		if err := WriteNAR(&got, p); err != nil {
			t.Fatalf("WriteNAR(%s): %v", p, err)
		}
		if !bytes.Equal(got.Bytes(), want) {
			t.Errorf("WriteNAR(%s) differs from nix-store --dump (%d vs %d bytes) first at byte %d", p, got.Len(), len(want), firstDiff(got.Bytes(), want))
		}
		h, size, err := NarHash(p)
		if err != nil {
			t.Fatalf("NarHash(%s): %v", p, err)
		}
		if h != narHashOf(want) || size != uint64(len(want)) {
			t.Errorf("NarHash(%s) = %s %d, nix-store --dump hashes to %s %d", p, h, size, narHashOf(want), len(want))
		}
	}
}

// TestNARMatchesGoNix cross-checks with go-nix's independent serializer,
// so the corner cases are checked even where Nix is not installed.
func TestNARMatchesGoNix(t *testing.T) {
	tree := specialTree(t)
	var want, got bytes.Buffer
	if err := nar.DumpPath(&want, tree); err != nil {
		t.Fatal(err)
	}
	if err := WriteNAR(&got, tree); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("WriteNAR differs from go-nix DumpPath (%d vs %d bytes) first at byte %d", got.Len(), want.Len(), firstDiff(got.Bytes(), want.Bytes()))
	}
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestNARRefusesWhatNixCannotSerialise(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "sub", "fifo")
	if err := os.MkdirAll(filepath.Dir(fifo), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := mkfifo(fifo); err != nil {
		t.Skipf("cannot make a fifo here: %v", err)
	}
	_, _, err := NarHash(dir)
	if err == nil || !strings.Contains(err.Error(), "sub/fifo") || !strings.Contains(err.Error(), "neither a regular file") {
		t.Fatalf("NarHash of a tree with a fifo: err = %v, want one naming sub/fifo", err)
	}
	_, _, err = NarHash(filepath.Join(dir, "missing"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("NarHash of a missing path: err = %v, want fs.ErrNotExist", err)
	}
}

// failingWriter fails after n bytes, like a peer that hangs up.
type failingWriter struct{ n int }

func (f *failingWriter) Write(p []byte) (int, error) {
	if len(p) > f.n {
		n := f.n
		f.n = 0
		return n, io.ErrClosedPipe
	}
	f.n -= len(p)
	return len(p), nil
}

func TestWriteNARReportsWriteErrors(t *testing.T) {
	tree := specialTree(t)
	err := WriteNAR(&failingWriter{n: 1000}, tree)
	if !errors.Is(err, io.ErrClosedPipe) {
		t.Fatalf("WriteNAR to a failing writer: err = %v, want io.ErrClosedPipe", err)
	}
}

func mkfifo(p string) error { return unix.Mkfifo(p, 0o644) }
