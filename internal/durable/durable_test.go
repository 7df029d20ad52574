package durable

import (
	"os"
	"path/filepath"
	"testing"
)

func TestWriteNewRefusesToOverwrite(t *testing.T) {
	p := filepath.Join(t.TempDir(), "k")
	if err := WriteNew(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteNew(p, []byte("two"), 0o600); err == nil {
		t.Fatal("overwrote an existing file")
	}
	if b, _ := os.ReadFile(p); string(b) != "one" {
		t.Fatalf("file holds %q", b)
	}
	if st, _ := os.Stat(p); st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v", st.Mode().Perm())
	}
}

func TestAppend(t *testing.T) {
	p := filepath.Join(t.TempDir(), "log")
	for _, s := range []string{"a\n", "b\n"} {
		if err := Append(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if b, _ := os.ReadFile(p); string(b) != "a\nb\n" {
		t.Fatalf("file holds %q", b)
	}
}
