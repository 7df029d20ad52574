package oci

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/crane"
	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/secure-systems-lab/go-securesystemslib/dsse"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/verdict"
)

func TestReproducibleImage(t *testing.T) {
	files := map[string]string{"hello": "#!/bin/sh\necho hello\n", "etc/motd": "hi\n"}
	a, _ := buildImage(t, files).Digest()
	b, _ := buildImage(t, files).Digest()
	if a != b {
		t.Fatalf("two deterministic builds differ: %s vs %s", a, b)
	}
	files["etc/motd"] = "hi!\n"
	c, _ := buildImage(t, files).Digest()
	if c == a {
		t.Fatal("different content gave the same digest")
	}
}

// registries runs f against the in-process registry (referrers API) and
// Debian's docker-registry (tag fallback).
func registries(t *testing.T, f func(t *testing.T, host string)) {
	t.Run("referrers-api", func(t *testing.T) { f(t, inProcessRegistry(t)) })
	t.Run("tag-fallback", func(t *testing.T) { f(t, distributionRegistry(t)) })
}

// scenario is one repository with a good image D, a different build D2 of
// the same source, and a tag "stable" that points at an older image.
type scenario struct {
	*world
	repo     name.Repository
	d, d2    name.Digest
	old      name.Digest
	stable   name.Tag
	stateDir string
}

func newScenario(t *testing.T, host, repoName string) *scenario {
	w := newWorld(t, host, "alice", "bob", "carol", "mallory", "eve")
	repo, err := name.NewRepository(host + "/" + repoName)
	if err != nil {
		t.Fatal(err)
	}
	s := &scenario{world: w, repo: repo, stateDir: filepath.Join(w.dir, "state")}
	s.d = pushImage(t, repo, buildImage(t, map[string]string{"hello": "hello v2\n"}))
	s.d2 = pushImage(t, repo, buildImage(t, map[string]string{"hello": "hello v2 (backdoored)\n"}))
	s.old = pushImage(t, repo, buildImage(t, map[string]string{"hello": "hello v1\n"}))
	s.stable = repo.Tag("stable")
	if err := w.reg.Tag(context.Background(), s.old, s.stable); err != nil {
		t.Fatal(err)
	}
	return s
}

// promote verifies s.d from the registry alone (the explicit,
// registry-only diagnostic) and checks the outcome; then it checks that
// Promote refuses to move the tag on such a verdict, whatever it was,
// and records the refusal.
func (s *scenario) promote(t *testing.T, v *Verifier, wantTrusted bool) *Report {
	t.Helper()
	v.RegistryOnly = true
	rep, err := v.Verify(context.Background(), Query{Image: s.d})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Trusted != wantTrusted {
		t.Fatalf("registry-only verdict: trusted=%v, want %v (reason: %s)", rep.Trusted, wantTrusted, rep.Reason)
	}
	p, _, err := Promote(context.Background(), v, Query{Image: s.d}, s.stable, PromoteOptions{StateDir: s.stateDir, Freshen: freshNow})
	if !errors.Is(err, ErrRegistryOnly) || p.Moved {
		t.Fatalf("promote from registry attestations alone: moved=%v, err %v; want ErrRegistryOnly", p.Moved, err)
	}
	if now, err := s.reg.TagDigest(context.Background(), s.stable); err != nil || now != s.old.DigestStr() {
		t.Fatalf("tag now %s (%v), want it left at %s", now, err, s.old.DigestStr())
	}
	last := lastPromotion(t, s.stateDir)
	if last.Moved || last.Digest != s.d.DigestStr() || last.Tag != s.stable.String() || last.Mode != ModeRegistryOnly || !strings.Contains(last.Error, "registry attestations alone") {
		t.Fatalf("recorded %+v", last)
	}
	return rep
}

// freshNow is the Freshen of a view that is current: the in-memory logs
// of these tests are the logs.
func freshNow(context.Context) (Freshness, error) {
	return Freshness{Logs: []LogFreshness{{Builder: "memory", Synced: time.Now()}}}, nil
}

// lastPromotion reads the last record of STATE/promotions.log.
func lastPromotion(t *testing.T, stateDir string) Promotion {
	t.Helper()
	f, err := os.Open(filepath.Join(stateDir, PromotionsLog))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var last Promotion
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		last = Promotion{}
		if err := json.Unmarshal(sc.Bytes(), &last); err != nil {
			t.Fatal(err)
		}
	}
	return last
}

func mustContain(t *testing.T, rep *Report, parts ...string) {
	t.Helper()
	all := rep.Reason
	for _, a := range rep.Attestations {
		all += "\n" + a.Reason
	}
	for _, p := range parts {
		if !strings.Contains(all, p) {
			t.Errorf("report does not say %q:\n%s", p, all)
		}
	}
}

func TestQuorumMet(t *testing.T) {
	registries(t, func(t *testing.T, host string) {
		s := newScenario(t, host, "vouch/met")
		s.attest(t, "alice", s.d, s.build(s.d, "image"))
		s.attest(t, "bob", s.d, s.build(s.d, "image"))
		// An unlisted key attesting too changes nothing.
		s.attest(t, "mallory", s.d, s.build(s.d, "image"))
		v := s.verifier(t, 2, 2, nil, "alice", "bob", "carol")
		rep := s.promote(t, v, true)
		if !rep.Trusted || rep.Mode != ModeRegistryOnly || rep.Subject != s.build(s.d, "image").Subject() {
			t.Fatalf("report %+v", rep)
		}
		mustContain(t, rep, "2 of 3", "not in the policy")
		counted := 0
		for _, a := range rep.Attestations {
			if a.Counted {
				counted++
			}
		}
		if counted != 2 || len(rep.Attestations) != 3 {
			t.Fatalf("attestations %+v", rep.Attestations)
		}
	})
}

func TestQuorumUnmet(t *testing.T) {
	registries(t, func(t *testing.T, host string) {
		s := newScenario(t, host, "vouch/unmet")
		s.attest(t, "alice", s.d, s.build(s.d, "image"))
		rep := s.promote(t, s.verifier(t, 2, 2, nil, "alice", "bob", "carol"), false)
		mustContain(t, rep, "insufficient", "1 of 3")
	})
}

func TestOneBuilderGotAnotherDigest(t *testing.T) {
	registries(t, func(t *testing.T, host string) {
		s := newScenario(t, host, "vouch/differ")
		s.attest(t, "alice", s.d, s.build(s.d, "image"))
		// bob built the same source and got D2; his attestation is on D2.
		s.attest(t, "bob", s.d2, s.build(s.d2, "image"))
		rep := s.promote(t, s.verifier(t, 2, 2, nil, "alice", "bob"), false)
		mustContain(t, rep, "1 of 2")
		// D2 is not trusted either.
		v2 := s.verifier(t, 2, 2, nil, "alice", "bob")
		v2.RegistryOnly = true
		r2, err := v2.Verify(context.Background(), Query{Image: s.d2})
		if err != nil || r2.Trusted {
			t.Fatalf("D2: %+v %v", r2, err)
		}
	})
}

func TestSameKeyTwiceUnderTwoNames(t *testing.T) {
	registries(t, func(t *testing.T, host string) {
		s := newScenario(t, host, "vouch/twice")
		s.attest(t, "alice", s.d, s.build(s.d, "image"))
		alias := *s.ids["alice"]
		alias.Name = "alice-second-name"
		s.ids["alice-alias"] = &alias
		s.attest(t, "alice-alias", s.d, s.build(s.d, "image"))
		rep := s.promote(t, s.verifier(t, 2, 2, nil, "alice", "bob"), false)
		mustContain(t, rep, "1 of 2")
		if len(rep.Attestations) != 2 || rep.Attestations[0].Builder != "alice" || rep.Attestations[1].Builder != "alice" {
			t.Fatalf("both attestations should be alice's: %+v", rep.Attestations)
		}
		if rep.Attestations[0].Counted == rep.Attestations[1].Counted {
			t.Errorf("exactly one of alice's two attestations should count: %+v", rep.Attestations)
		}
		mustContain(t, rep, "one key is one vote")
		// A policy listing one key under two names is refused outright.
		cfg := fmt.Sprintf("[[builder]]\nname = \"alice\"\nvkey = %q\nlog = \"https://a.example/\"\n[[builder]]\nname = \"alice2\"\nvkey = %q\nlog = \"https://b.example/\"\n", s.ids["alice"].VerifierKey, s.ids["alice"].VerifierKey)
		if _, err := config.Parse([]byte(cfg)); err == nil || !strings.Contains(err.Error(), "same key") {
			t.Errorf("config with one key under two names: %v", err)
		}
	})
}

func TestForgedAndTruncatedSignatures(t *testing.T) {
	registries(t, func(t *testing.T, host string) {
		s := newScenario(t, host, "vouch/forged")
		s.attest(t, "alice", s.d, s.build(s.d, "image"))
		env, err := Sign(context.Background(), s.ids["bob"], s.build(s.d, "image"))
		if err != nil {
			t.Fatal(err)
		}
		forged := *env
		junk := make([]byte, 64)
		rand.Read(junk)
		forged.Signatures = []dsse.Signature{{KeyID: env.Signatures[0].KeyID, Sig: base64.StdEncoding.EncodeToString(junk)}}
		truncated := *env
		sig, _ := base64.StdEncoding.DecodeString(env.Signatures[0].Sig)
		truncated.Signatures = []dsse.Signature{{KeyID: env.Signatures[0].KeyID, Sig: base64.StdEncoding.EncodeToString(sig[:40])}}
		// bob's genuine signature over a payload altered to say "carol".
		altered := *env
		payload, _ := base64.StdEncoding.DecodeString(env.Payload)
		altered.Payload = base64.StdEncoding.EncodeToString([]byte(strings.Replace(string(payload), `"attribute":"image"`, `"attribute":"other"`, 1)))
		for _, e := range []*dsse.Envelope{&forged, &truncated, &altered} {
			if _, err := s.reg.Push(context.Background(), s.d, e); err != nil {
				t.Fatal(err)
			}
		}
		rep := s.promote(t, s.verifier(t, 2, 2, nil, "alice", "bob"), false)
		mustContain(t, rep, "1 of 2", "does not verify", "truncated")
	})
}

func TestAttestationForAnotherImage(t *testing.T) {
	registries(t, func(t *testing.T, host string) {
		s := newScenario(t, host, "vouch/other")
		s.attest(t, "alice", s.d, s.build(s.d, "image"))
		// bob's honest attestation of D2, copied onto D.
		s.attest(t, "bob", s.d, s.build(s.d2, "image"))
		rep := s.promote(t, s.verifier(t, 2, 2, nil, "alice", "bob"), false)
		mustContain(t, rep, "1 of 2", "not about this image")
	})
}

func TestUnlistedKeys(t *testing.T) {
	registries(t, func(t *testing.T, host string) {
		s := newScenario(t, host, "vouch/unlisted")
		for _, b := range []string{"mallory", "eve"} {
			s.attest(t, b, s.d, s.build(s.d, "image"))
		}
		rep := s.promote(t, s.verifier(t, 1, 1, nil, "alice", "bob"), false)
		mustContain(t, rep, "no attestation", "not in the policy")
	})
}

// An independent client sees what Push wrote: crane reads the attestation
// manifest and (on the fallback registry) the referrers tag; a plain HTTP
// GET reads the referrers API.
func TestIndependentClientSeesReferrers(t *testing.T) {
	registries(t, func(t *testing.T, host string) {
		s := newScenario(t, host, "vouch/crane")
		att := s.attest(t, "alice", s.d, s.build(s.d, "image"))
		raw, err := crane.Manifest(att.String())
		if err != nil {
			t.Fatal(err)
		}
		var m artifactManifest
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatal(err)
		}
		if m.ArtifactType != ArtifactType || m.Subject == nil || m.Subject.Digest.String() != s.d.DigestStr() {
			t.Fatalf("crane manifest: %s", raw)
		}
		hex := strings.TrimPrefix(s.d.DigestStr(), "sha256:")
		var idx v1.IndexManifest
		if strings.HasSuffix(t.Name(), "tag-fallback") {
			tags, err := crane.ListTags(s.repo.String())
			if err != nil {
				t.Fatal(err)
			}
			if !contains(tags, "sha256-"+hex) {
				t.Fatalf("crane ls: no referrers tag sha256-%s in %v", hex, tags)
			}
			raw, err = crane.Manifest(s.repo.Tag("sha256-" + hex).String())
			if err != nil {
				t.Fatal(err)
			}
		} else {
			resp, err := http.Get("http://" + host + "/v2/" + s.repo.RepositoryStr() + "/referrers/" + s.d.DigestStr())
			if err != nil {
				t.Fatal(err)
			}
			raw, _ = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if err := json.Unmarshal(raw, &idx); err != nil {
			t.Fatal(err)
		}
		if len(idx.Manifests) != 1 || idx.Manifests[0].Digest.String() != att.DigestStr() || idx.Manifests[0].ArtifactType != ArtifactType {
			t.Fatalf("referrers: %s", raw)
		}
		// Pushing the same envelope again adds no second referrer.
		env, _ := Sign(context.Background(), s.ids["alice"], s.build(s.d, "image"))
		if again, err := s.reg.Push(context.Background(), s.d, env); err != nil || again != att {
			t.Fatalf("re-push: %v %v", again, err)
		}
		got, err := s.reg.List(context.Background(), s.d)
		if err != nil || len(got) != 1 {
			t.Fatalf("list after re-push: %d %v", len(got), err)
		}
	})
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

// logSource is a follower index held in memory: each builder's logged
// oci claims. It stands for the index package's verified replica.
type logSource map[string][]*claim.Claim

func (l logSource) Claims(kind claim.Kind, subject string) ([]verdict.Entry, error) {
	var out []verdict.Entry
	for b, cs := range l {
		for i, c := range cs {
			if c.Kind == kind && c.Subject == subject {
				out = append(out, verdict.Entry{Builder: b, Claim: c, Index: uint64(i)})
			}
		}
	}
	return out, nil
}
func (l logSource) Compromised(string) bool { return false }
func (l logSource) InclusionProof(string, uint64) (uint64, [][]byte, error) {
	return 1, nil, nil
}

// With the logs, a registry that hides attestations cannot stop a verdict
// and one that shows attestations the logs lack cannot make one.
func TestLogsAreTheTruth(t *testing.T) {
	host := inProcessRegistry(t)
	s := newScenario(t, host, "vouch/logs")
	b := s.build(s.d, "image")
	logged := func(builders ...string) logSource {
		src := logSource{}
		for _, n := range builders {
			c, err := b.Claim()
			if err != nil {
				t.Fatal(err)
			}
			src[n] = append(src[n], c)
		}
		return src
	}
	// Registry shows nothing; the logs have alice and bob: trusted.
	rep, err := s.verifier(t, 2, 2, logged("alice", "bob"), "alice", "bob", "carol").Verify(context.Background(), Query{Image: s.d, Subject: b.Subject()})
	if err != nil || !rep.Trusted || rep.Mode != ModeLogs {
		t.Fatalf("hidden registry attestations: %+v %v", rep, err)
	}
	// Registry shows alice and bob, but only alice logged it: not trusted.
	s.attest(t, "alice", s.d, b)
	s.attest(t, "bob", s.d, b)
	rep, err = s.verifier(t, 2, 2, logged("alice"), "alice", "bob", "carol").Verify(context.Background(), Query{Image: s.d})
	if err != nil || rep.Trusted {
		t.Fatalf("registry-only votes counted: %+v %v", rep, err)
	}
	if !strings.Contains(strings.Join(rep.Notes, "\n"), "bob attested") {
		t.Errorf("notes do not mention bob's unlogged attestation: %v", rep.Notes)
	}
	// bob logged D2 for the same source: a conflict, whatever the registry says.
	src := logged("alice")
	c2, _ := s.build(s.d2, "image").Claim()
	src["bob"] = []*claim.Claim{c2}
	rep, err = s.verifier(t, 1, 1, src, "alice", "bob").Verify(context.Background(), Query{Image: s.d})
	if err != nil || rep.Trusted || rep.Verdicts[0].Outcome != verdict.Conflict {
		t.Fatalf("conflict not found: %+v %v", rep, err)
	}
	if !strings.Contains(strings.Join(rep.Notes, "\n"), "contradicts its log") {
		t.Errorf("notes do not mention bob's contradiction: %v", rep.Notes)
	}
}

// The digest, not the tag, is what is verified and promoted.
func TestResolveTag(t *testing.T) {
	host := inProcessRegistry(t)
	s := newScenario(t, host, "vouch/resolve")
	ref, err := s.reg.ParseReference(s.stable.String())
	if err != nil {
		t.Fatal(err)
	}
	d, err := s.reg.Resolve(context.Background(), ref)
	if err != nil || d != s.old {
		t.Fatalf("resolve: %v %v", d, err)
	}
	if _, err := remote.Head(s.d); err != nil {
		t.Fatal(err)
	}
}
