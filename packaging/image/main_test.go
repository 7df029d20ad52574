package main

import (
	"archive/tar"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TestBuildIsReproducible: the same binary and time give the same digest;
// another time or binary another; the image runs vouch serve as the vouch
// user, and every file carries the given time.
func TestBuildIsReproducible(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "vouch")
	os.WriteFile(bin, []byte("#!/bin/false\nnot really vouch\n"), 0o755)
	at := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	digest := func(bin string, at time.Time) string {
		t.Helper()
		img, err := build(bin, "", "amd64", at, "v1", "abc")
		if err != nil {
			t.Fatal(err)
		}
		d, err := img.Digest()
		if err != nil {
			t.Fatal(err)
		}
		return d.String()
	}
	first := digest(bin, at)
	if again := digest(bin, at); again != first {
		t.Fatalf("two builds: %s and %s", first, again)
	}
	if other := digest(bin, at.Add(time.Second)); other == first {
		t.Error("another time gave the same digest")
	}
	bin2 := filepath.Join(t.TempDir(), "vouch")
	os.WriteFile(bin2, []byte("#!/bin/false\nanother vouch\n"), 0o755)
	if other := digest(bin2, at); other == first {
		t.Error("another binary gave the same digest")
	}

	img, err := build(bin, "", "amd64", at, "v1", "abc")
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	if cf.Config.User != "65532:65532" || cf.Config.Entrypoint[0] != "/usr/bin/vouch" || cf.Config.Cmd[0] != "serve" || !cf.Created.Time.Equal(at) {
		t.Errorf("config %+v", cf.Config)
	}
	layers, err := img.Layers()
	if err != nil || len(layers) != 1 {
		t.Fatalf("%d layers, %v", len(layers), err)
	}
	rc, err := layers[0].Uncompressed()
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	tr := tar.NewReader(rc)
	found := map[string]*tar.Header{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if !h.ModTime.Equal(at) {
			t.Errorf("%s has time %v", h.Name, h.ModTime)
		}
		found[h.Name] = h
	}
	if h := found["usr/bin/vouch"]; h == nil || h.Mode != 0o755 || h.Uid != 0 {
		t.Errorf("usr/bin/vouch: %+v", h)
	}
	if h := found["var/lib/vouch/"]; h == nil || h.Uid != 65532 {
		t.Errorf("the state directory: %+v", h)
	}
}
