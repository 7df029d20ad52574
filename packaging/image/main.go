// Command image builds vouch's container image from a vouch binary, with
// go-containerregistry and no container engine, reproducibly: the same
// binary and the same time give the same image digest, on any machine.
//
//	go run ./packaging/image --binary BIN --time UNIX --layout DIR [--push REF]
//
// scripts/build-image.sh builds the binary from the committed HEAD (static,
// -trimpath, the commit's time) and calls it. The image holds one layer:
//
//	/usr/bin/vouch              the binary, 0755
//	/etc/passwd, /etc/group     the vouch user and group, uid and gid 65532
//	/var/lib/vouch/             its state directory, owned by vouch
//	/etc/ssl/certs/ca-certificates.crt   when --ca-certificates names a file
//
// Every file has the given time, owner root (but the state directory),
// and no extended attributes; the tar is written in a fixed order, and
// the layer uncompressed-then-gzip at a fixed level, so its digest depends
// on the contents alone. The config runs `vouch serve` as uid 65532 with
// state in /var/lib/vouch and listens on 0.0.0.0:8080.
package main

import (
	"archive/tar"
	"bytes"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/layout"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/tarball"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

func main() {
	binary := flag.String("binary", "", "the vouch binary to put in the image (static: CGO_ENABLED=0)")
	epoch := flag.Int64("time", 0, "the time of every file and of the image, in Unix seconds (the commit's time)")
	outLayout := flag.String("layout", "", "write the image to this OCI image layout directory")
	push := flag.String("push", "", "also push the image to this reference (REGISTRY/REPO:TAG)")
	certs := flag.String("ca-certificates", "", "a CA bundle to include, for logs and caches served over https")
	version := flag.String("version", "", "the image's org.opencontainers.image.version label")
	revision := flag.String("revision", "", "the image's org.opencontainers.image.revision label")
	arch := flag.String("arch", runtime.GOARCH, "the binary's architecture, as GOARCH names it")
	flag.Parse()
	if *binary == "" || (*outLayout == "" && *push == "") {
		fmt.Fprintln(os.Stderr, "usage: image --binary BIN --time UNIX (--layout DIR | --push REF)")
		os.Exit(2)
	}
	img, err := build(*binary, *certs, *arch, time.Unix(*epoch, 0).UTC(), *version, *revision)
	if err != nil {
		fail(err)
	}
	digest, err := img.Digest()
	if err != nil {
		fail(err)
	}
	if *outLayout != "" {
		os.RemoveAll(*outLayout)
		p, err := layout.Write(*outLayout, empty.Index)
		if err != nil {
			fail(err)
		}
		if err := p.AppendImage(img); err != nil {
			fail(err)
		}
	}
	if *push != "" {
		ref, err := name.ParseReference(*push)
		if err != nil {
			fail(err)
		}
		if err := remote.Write(ref, img); err != nil {
			fail(fmt.Errorf("pushing to %s: %w", ref, err))
		}
	}
	fmt.Println(digest)
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "image:", err)
	os.Exit(1)
}

// build returns the image: one layer, a fixed config.
func build(binary, certs, arch string, t time.Time, version, revision string) (v1.Image, error) {
	bin, err := os.ReadFile(binary)
	if err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	const uid = 65532
	dir := func(name string, owner int) error {
		return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: name, Mode: 0o755, Uid: owner, Gid: owner, ModTime: t, Format: tar.FormatPAX})
	}
	file := func(name string, mode int64, data []byte) error {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: int64(len(data)), ModTime: t, Format: tar.FormatPAX}); err != nil {
			return err
		}
		_, err := tw.Write(data)
		return err
	}
	steps := []func() error{
		func() error { return dir("etc/", 0) },
		func() error {
			return file("etc/group", 0o644, fmt.Appendf(nil, "root:x:0:\nvouch:x:%d:\n", uid))
		},
		func() error {
			return file("etc/passwd", 0o644, fmt.Appendf(nil, "root:x:0:0:root:/root:/sbin/nologin\nvouch:x:%d:%d:vouch:/var/lib/vouch:/sbin/nologin\n", uid, uid))
		},
	}
	if certs != "" {
		pem, err := os.ReadFile(certs)
		if err != nil {
			return nil, err
		}
		steps = append(steps,
			func() error { return dir("etc/ssl/", 0) },
			func() error { return dir("etc/ssl/certs/", 0) },
			func() error { return file("etc/ssl/certs/ca-certificates.crt", 0o644, pem) })
	}
	steps = append(steps,
		func() error { return dir("tmp/", 0) },
		func() error { return dir("usr/", 0) },
		func() error { return dir("usr/bin/", 0) },
		func() error { return file("usr/bin/vouch", 0o755, bin) },
		func() error { return dir("var/", 0) },
		func() error { return dir("var/lib/", 0) },
		func() error { return dir("var/lib/vouch/", uid) },
	)
	for _, s := range steps {
		if err := s(); err != nil {
			return nil, err
		}
	}
	if err := tw.Close(); err != nil {
		return nil, err
	}
	tarBytes := buf.Bytes()
	layer, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(tarBytes)), nil
	}, tarball.WithCompressionLevel(9), tarball.WithMediaType(types.OCILayer))
	if err != nil {
		return nil, err
	}
	img, err := mutate.AppendLayers(mutate.MediaType(empty.Image, types.OCIManifestSchema1), layer)
	if err != nil {
		return nil, err
	}
	img = mutate.ConfigMediaType(img, types.OCIConfigJSON)
	cf, err := img.ConfigFile()
	if err != nil {
		return nil, err
	}
	cf = cf.DeepCopy()
	cf.Created = v1.Time{Time: t}
	cf.Architecture, cf.OS = arch, "linux"
	cf.Config.Entrypoint = []string{"/usr/bin/vouch"}
	cf.Config.Cmd = []string{"serve", "--state", "/var/lib/vouch", "--listen", "0.0.0.0:8080"}
	cf.Config.User = fmt.Sprintf("%d:%d", uid, uid)
	cf.Config.WorkingDir = "/var/lib/vouch"
	cf.Config.Env = []string{"PATH=/usr/bin", "SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt"}
	cf.Config.ExposedPorts = map[string]struct{}{"8080/tcp": {}}
	cf.Config.Volumes = map[string]struct{}{"/var/lib/vouch": {}}
	cf.Config.Labels = map[string]string{
		"org.opencontainers.image.title":    "vouch",
		"org.opencontainers.image.licenses": "Apache-2.0",
		"org.opencontainers.image.version":  version,
		"org.opencontainers.image.revision": revision,
	}
	cf.History = []v1.History{{Created: v1.Time{Time: t}, CreatedBy: "packaging/image", Comment: "vouch " + version}}
	return mutate.ConfigFile(img, cf)
}
