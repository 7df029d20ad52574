package oci

import (
	"context"
	"testing"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
)

// TestPushCosign: the .att tag collects one layer per distinct envelope,
// each annotated as cosign expects, and pushing again adds nothing.
func TestPushCosign(t *testing.T) {
	registries(t, func(t *testing.T, host string) {
		s := newScenario(t, host, "cosign")
		ctx := context.Background()
		var tag name.Tag
		for _, b := range []string{"alice", "bob", "alice"} {
			env, err := Sign(ctx, s.ids[b], s.build(s.d, "default"))
			if err != nil {
				t.Fatal(err)
			}
			if tag, err = s.reg.PushCosign(ctx, s.d, env); err != nil {
				t.Fatal(err)
			}
		}
		if want := "sha256-" + s.d.DigestStr()[len("sha256:"):] + ".att"; tag.TagStr() != want {
			t.Fatalf("tag %s, want %s", tag.TagStr(), want)
		}
		img, err := remote.Image(tag)
		if err != nil {
			t.Fatal(err)
		}
		m, err := img.Manifest()
		if err != nil {
			t.Fatal(err)
		}
		if len(m.Layers) != 2 {
			t.Fatalf("%d layers, want 2 (alice's second push is the same envelope)", len(m.Layers))
		}
		for _, l := range m.Layers {
			sig, ok := l.Annotations["dev.cosignproject.cosign/signature"]
			if l.MediaType != EnvelopeMediaType || l.Annotations["predicateType"] != PredicateType || !ok || sig != "" {
				t.Errorf("layer %s: %s %v", l.Digest, l.MediaType, l.Annotations)
			}
		}
		// The referrers of the image are untouched: the .att image has no subject.
		if got, err := s.reg.List(ctx, s.d); err != nil || len(got) != 0 {
			t.Fatalf("referrers after PushCosign: %d, %v", len(got), err)
		}
	})
}
