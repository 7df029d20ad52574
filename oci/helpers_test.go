package oci

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"io"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"

	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/internal/keytest"
	"github.com/vouch-dev/vouch/internal/testregistry"
	"github.com/vouch-dev/vouch/keys"
	"github.com/vouch-dev/vouch/verdict"
)

// epoch is the fixed time every file and the image config carry, as
// SOURCE_DATE_EPOCH does for a reproducible build.
var epoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// buildImage builds an OCI image from files deterministically: sorted tar
// entries, fixed owner, mode and time, fixed config. Two calls with the
// same files give the same manifest digest, as two honest builders would.
func buildImage(t testing.TB, files map[string]string) v1.Image {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		hdr := &tar.Header{Name: p, Mode: 0o644, Size: int64(len(files[p])), ModTime: epoch, Typeflag: tar.TypeReg, Format: tar.FormatUSTAR}
		if err := tw.WriteHeader(hdr); err != nil {
			t.Fatal(err)
		}
		io.WriteString(tw, files[p])
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	tarBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(tarBytes)), nil },
		tarball.WithMediaType(types.OCILayer))
	if err != nil {
		t.Fatal(err)
	}
	img := mutate.MediaType(empty.Image, types.OCIManifestSchema1)
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	img, err = mutate.Append(img, mutate.Addendum{Layer: layer, History: v1.History{Created: v1.Time{Time: epoch}, CreatedBy: "vouch test"}})
	if err != nil {
		t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: epoch}
	cf.Architecture, cf.OS = "amd64", "linux"
	cf.Config.Entrypoint = []string{"/hello"}
	img, err = mutate.ConfigFile(img, cf)
	if err != nil {
		t.Fatal(err)
	}
	return img
}

// pushImage writes img to repo (by digest only) and returns its reference.
func pushImage(t testing.TB, repo name.Repository, img v1.Image) name.Digest {
	t.Helper()
	d, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	ref := repo.Digest(d.String())
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	return ref
}

func inProcessRegistry(t testing.TB) string { return testregistry.InProcess(t) }

func distributionRegistry(t testing.TB) string { return testregistry.Distribution(t, false) }

// world is a set of builder keys and a policy over some of them.
type world struct {
	dir  string
	ids  map[string]*keys.Identity
	reg  *Registry
	host string
}

func newWorld(t testing.TB, host string, names ...string) *world {
	t.Helper()
	w := &world{dir: t.TempDir(), ids: map[string]*keys.Identity{}, reg: &Registry{}, host: host}
	for _, n := range names {
		w.ids[n], _ = keytest.Identity(t, w.dir, n)
	}
	return w
}

// policy is a policy over the named builders, each run by its own operator
// unless ops says otherwise, with quorum min and min-operators.
func (w *world) verifier(t testing.TB, min, minOps int, logs verdict.Source, members ...string) *Verifier {
	t.Helper()
	var b strings.Builder
	fmt.Fprintf(&b, "state = %q\n", filepath.Join(w.dir, "state"))
	for _, m := range members {
		fmt.Fprintf(&b, "[[builder]]\nname = %q\nvkey = %q\nlog = \"https://%s.example/log/\"\noperator = \"org-%s\"\n", m, w.ids[m].VerifierKey, m, m)
	}
	fmt.Fprintf(&b, "[quorum]\nmin = %d\nmin-operators = %d\non-conflict = \"refuse\"\n", min, minOps)
	cfg, err := config.Parse([]byte(b.String()))
	if err != nil {
		t.Fatal(err)
	}
	pol, err := verdict.NewPolicy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return NewVerifier(w.reg, pol, VerifierKeys(cfg), logs)
}

func (w *world) build(digest name.Digest, attr string) *Build {
	return &Build{Image: digest.Context().Name(), Digest: digest.DigestStr(), Source: "https://example.org/hello.git", Commit: "0123456789abcdef0123456789abcdef01234567", Attribute: attr, System: "x86_64-linux", Time: epoch}
}

func (w *world) attest(t testing.TB, builder string, image name.Digest, b *Build) name.Digest {
	t.Helper()
	env, err := Sign(context.Background(), w.ids[builder], b)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := w.reg.Push(context.Background(), image, env)
	if err != nil {
		t.Fatal(err)
	}
	return ref
}
