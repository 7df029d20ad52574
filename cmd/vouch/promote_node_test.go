package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/random"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/internal/keytest"
	"github.com/vouch-dev/vouch/internal/testregistry"
)

// TestPromoteOnlyOnThisConfigsVerdict: a 2-of-2 promote must not move a
// tag on the verdict of a node that serves the same state under a 1-of-2
// policy (the node runs for real; the registry is a real one on
// 127.0.0.1), and the node for the promote's own config does answer.
func TestPromoteOnlyOnThisConfigsVerdict(t *testing.T) {
	ctx := context.Background()
	host := testregistry.InProcess(t)
	img, err := random.Image(256, 1)
	if err != nil {
		t.Fatal(err)
	}
	ref, err := name.ParseReference(host + "/app:build")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Write(ref, img); err != nil {
		t.Fatal(err)
	}
	digest, err := img.Digest()
	if err != nil {
		t.Fatal(err)
	}
	const source, commit, system = "https://example.org/app", "0123456789abcdef0123456789abcdef01234567", "x86_64-linux"
	subject := claim.OCISubject(source, commit, "default", system)

	// alice logged the image; bob never did.
	dir := t.TempDir()
	alice, _ := keytest.Identity(t, filepath.Join(dir, "keys"), "alice")
	bob, _ := keytest.Identity(t, filepath.Join(dir, "keys"), "bob")
	aliceLog, aliceURL := serveLog(t, alice, filepath.Join(dir, "alice"))
	_, bobURL := serveLog(t, bob, filepath.Join(dir, "bob"))
	if _, err := aliceLog.Add(ctx, &claim.Claim{Kind: claim.KindOCI, Subject: subject, Digest: digest.String()}); err != nil {
		t.Fatal(err)
	}
	listen := freeAddr(t)
	writeConfig := func(file, quorum string) string {
		p := filepath.Join(dir, file)
		text := fmt.Sprintf("state = %q\nlisten = %q\n[follow]\ninterval = \"200ms\"\n"+
			"[[builder]]\nname = \"alice\"\nvkey = %q\nlog = %q\n[[builder]]\nname = \"bob\"\nvkey = %q\nlog = %q\n[quorum]\n%s\n",
			filepath.Join(dir, "state"), listen, alice.VerifierKey, aliceURL, bob.VerifierKey, bobURL, quorum)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	strict := writeConfig("strict.toml", "min = 2")
	loose := writeConfig("loose.toml", "min = 1\non-conflict = \"refuse\"")

	startServe(t, "--config", loose)
	for deadline := time.Now().Add(30 * time.Second); ; {
		if code, _, _ := runVouch(t, "verdict", "--config", loose, subject); code == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the loose node never trusted the image")
		}
		time.Sleep(200 * time.Millisecond)
	}
	image := host + "/app@" + digest.String()
	flags := []string{"--source", source, "--commit", commit, "--system", system}
	code, out, stderr := runVouch(t, append([]string{"promote", image, "--tag", "stable", "--config", strict}, flags...)...)
	if code == 0 || !strings.Contains(stderr, "under another policy") {
		t.Fatalf("promote --config strict while a 1-of-2 node serves its state: exit %d\n%s%s", code, out, stderr)
	}
	if _, err := remote.Head(mustTag(t, host+"/app:stable")); err == nil {
		t.Fatal("the tag moved on another policy's verdict")
	}
	if code, out, stderr := runVouch(t, append([]string{"verify", "oci", image, "--config", strict}, flags...)...); code == 0 || !strings.Contains(stderr, "under another policy") {
		t.Fatalf("verify oci --config strict: exit %d\n%s%s", code, out, stderr)
	}

	// The node's own config: it answers, and the gate moves the tag.
	code, out, stderr = runVouch(t, append([]string{"promote", image, "--tag", "stable", "--config", loose}, flags...)...)
	if code != 0 || !strings.Contains(out, "moved") || !strings.Contains(stderr, "in use by the node at "+listen) {
		t.Fatalf("promote --config loose through its node: exit %d\n%s%s", code, out, stderr)
	}
	if desc, err := remote.Head(mustTag(t, host+"/app:stable")); err != nil || desc.Digest != digest {
		t.Fatalf("stable after the promotion: %v %v", desc, err)
	}
}

func mustTag(t *testing.T, s string) name.Tag {
	tag, err := name.NewTag(s)
	if err != nil {
		t.Fatal(err)
	}
	return tag
}
