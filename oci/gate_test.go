package oci

import (
	"context"
	"errors"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/keys"
	"github.com/vouch-dev/vouch/verdict"
)

// promoteGood runs Promote of s.d to s.stable with a current view.
func (s *scenario) promoteGood(t *testing.T, v *Verifier, q Query) (*Promotion, *Report, error) {
	t.Helper()
	if q.Image.DigestStr() == "" {
		q.Image = s.d
	}
	return Promote(context.Background(), v, q, s.stable, PromoteOptions{StateDir: s.stateDir, Freshen: freshNow})
}

func (s *scenario) tagNow(t *testing.T) string {
	t.Helper()
	d, err := s.reg.TagDigest(context.Background(), s.stable)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// loggedAs is a follower index in which each builder logged what it
// attested: builder → build.
func loggedAs(t *testing.T, builds map[string]*Build) logSource {
	src := logSource{}
	for b, build := range builds {
		c, err := build.Claim()
		if err != nil {
			t.Fatal(err)
		}
		src[b] = append(src[b], c)
	}
	return src
}

// The case that moved a tag before: alice and bob attest D, carol built
// the same source and got D2, under on-conflict = "refuse". From D's
// referrers carol is silent; only the logs show her dissent. A gate
// without the logs must not decide, and with them it refuses.
func TestDisputedImageIsNotPromoted(t *testing.T) {
	registries(t, func(t *testing.T, host string) {
		s := newScenario(t, host, "vouch/disputed")
		good, bad := s.build(s.d, "image"), s.build(s.d2, "image")
		s.attest(t, "alice", s.d, good)
		s.attest(t, "bob", s.d, good)
		s.attest(t, "carol", s.d2, bad)

		// Registry attestations alone: refused before anything is asked of
		// the registry, and recorded.
		p, _, err := s.promoteGood(t, s.verifier(t, 2, 2, nil, "alice", "bob", "carol"), Query{})
		if !errors.Is(err, ErrRegistryOnly) || p.Moved || s.tagNow(t) != s.old.DigestStr() {
			t.Fatalf("registry-only promotion of a disputed image: moved=%v err=%v tag=%s", p.Moved, err, s.tagNow(t))
		}
		if last := lastPromotion(t, s.stateDir); last.Error == "" || last.Mode != ModeRegistryOnly {
			t.Fatalf("refusal not recorded: %+v", last)
		}
		// Nor does Verify give a registry-only verdict unless asked to.
		if _, err := s.verifier(t, 2, 2, nil, "alice", "bob", "carol").Verify(context.Background(), Query{Image: s.d}); !errors.Is(err, ErrRegistryOnly) {
			t.Fatalf("verify without logs: %v, want ErrRegistryOnly", err)
		}

		// From the logs carol's dissent is seen: conflict, not moved.
		logs := loggedAs(t, map[string]*Build{"alice": good, "bob": good, "carol": bad})
		p, rep, err := s.promoteGood(t, s.verifier(t, 2, 2, logs, "alice", "bob", "carol"), Query{})
		if err != nil || p.Moved || rep.Verdicts[0].Outcome != verdict.Conflict || s.tagNow(t) != s.old.DigestStr() {
			t.Fatalf("promotion from the logs: moved=%v err=%v report %+v", p.Moved, err, rep)
		}
		if last := lastPromotion(t, s.stateDir); last.Moved || last.Mode != ModeLogs || !strings.Contains(last.Reason, "conflict") || last.View == "" {
			t.Fatalf("recorded %+v", last)
		}
	})
}

// alice signs both D and D2 for one source; bob attests D, carol D2.
// Each digest's referrers show two builders: from the registry both
// would be trusted. Promote refuses without the logs; alice's log can
// hold only one of them, and with the logs exactly one digest is trusted.
func TestEquivocatingBuilderDoesNotMakeBothTrusted(t *testing.T) {
	registries(t, func(t *testing.T, host string) {
		s := newScenario(t, host, "vouch/equivocate")
		good, bad := s.build(s.d, "image"), s.build(s.d2, "image")
		s.attest(t, "alice", s.d, good)
		s.attest(t, "alice", s.d2, bad)
		s.attest(t, "bob", s.d, good)
		s.attest(t, "carol", s.d2, bad)
		for _, d := range []name.Digest{s.d, s.d2} {
			p, _, err := s.promoteGood(t, s.verifier(t, 2, 2, nil, "alice", "bob", "carol"), Query{Image: d})
			if !errors.Is(err, ErrRegistryOnly) || p.Moved {
				t.Fatalf("registry-only promotion of %s: moved=%v err=%v", d.DigestStr(), p.Moved, err)
			}
		}
		if s.tagNow(t) != s.old.DigestStr() {
			t.Fatal("tag moved")
		}
		// alice's log holds D (what she logged first): D2 has one vote.
		logs := loggedAs(t, map[string]*Build{"alice": good, "bob": good, "carol": bad})
		majority := s.verifier(t, 2, 2, logs, "alice", "bob", "carol")
		majority.Policy.OnConflict = "majority"
		p, _, err := s.promoteGood(t, majority, Query{Image: s.d2})
		if err != nil || p.Moved {
			t.Fatalf("D2 from the logs: moved=%v err=%v", p.Moved, err)
		}
		p, rep, err := s.promoteGood(t, majority, Query{Image: s.d})
		if err != nil || !p.Moved || s.tagNow(t) != s.d.DigestStr() {
			t.Fatalf("D from the logs under majority: moved=%v err=%v %+v", p.Moved, err, rep)
		}
	})
}

// A gate decides on a fresh view: a log that was not synced within
// MaxAge (or never) stops the promotion, names the log, and is recorded;
// a compromised log does not count, so its age does not matter.
func TestPromoteRefusesStaleView(t *testing.T) {
	host := inProcessRegistry(t)
	s := newScenario(t, host, "vouch/stale")
	good := s.build(s.d, "image")
	logs := loggedAs(t, map[string]*Build{"alice": good, "bob": good})
	v := s.verifier(t, 2, 2, logs, "alice", "bob", "carol")
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	view := func(carol time.Time, compromised bool) func(context.Context) (Freshness, error) {
		return func(context.Context) (Freshness, error) {
			return Freshness{Logs: []LogFreshness{
				{Builder: "alice", Synced: now.Add(-2 * time.Second)},
				{Builder: "bob", Synced: now.Add(-time.Second)},
				{Builder: "carol", Synced: carol, Compromised: compromised, Error: "dial tcp: connection refused"},
			}}, nil
		}
	}
	promote := func(freshen func(context.Context) (Freshness, error), maxAge time.Duration) (*Promotion, error) {
		p, _, err := Promote(context.Background(), v, Query{Image: s.d, Subject: good.Subject()}, s.stable, PromoteOptions{StateDir: s.stateDir, Freshen: freshen, MaxAge: maxAge, Now: func() time.Time { return now }})
		return p, err
	}

	p, err := promote(view(now.Add(-time.Hour), false), 10*time.Minute)
	var stale *StaleError
	if !errors.As(err, &stale) || p.Moved || !strings.Contains(err.Error(), "carol: last synced 1h0m0s ago (dial tcp: connection refused)") {
		t.Fatalf("an hour-old view of carol's log: moved=%v err=%v", p.Moved, err)
	}
	if last := lastPromotion(t, s.stateDir); last.Moved || !strings.Contains(last.Error, "older than 10m0s") || !strings.Contains(last.View, "1h0m0s ago at the oldest (carol)") {
		t.Fatalf("recorded %+v", last)
	}
	if p, err := promote(view(time.Time{}, false), time.Hour); err == nil || p.Moved || !strings.Contains(err.Error(), "carol: never synced") {
		t.Fatalf("carol never synced: moved=%v err=%v", p.Moved, err)
	}
	if p, _, err := Promote(context.Background(), v, Query{Image: s.d}, s.stable, PromoteOptions{StateDir: s.stateDir}); err == nil || p.Moved {
		t.Fatalf("no Freshen: moved=%v err=%v", p.Moved, err)
	}
	if s.tagNow(t) != s.old.DigestStr() {
		t.Fatal("tag moved on a stale view")
	}
	// The bound is the caller's: an hour-old view is accepted under 2h.
	if p, err := promote(view(now.Add(-time.Hour), false), 2*time.Hour); err != nil || !p.Moved {
		t.Fatalf("accepted bound: moved=%v err=%v", p.Moved, err)
	}
	// A compromised log counts for nothing; its age does not matter.
	if p, err := promote(view(time.Time{}, true), time.Minute); err != nil || !p.Moved || p.View != "logs synced 2s ago at the oldest (alice)" {
		t.Fatalf("compromised carol: %+v err=%v", p, err)
	}
}

// hangingRegistry accepts connections and never answers, and returns
// its address.
func hangingRegistry(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c) // held open, never read or written
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// Every registry call gives up after Registry.Timeout; a promotion
// against a registry that never answers ends in an error that says so,
// and the error is recorded.
func TestRegistryTimeout(t *testing.T) {
	host := hangingRegistry(t)
	w := newWorld(t, host, "alice", "bob")
	w.reg.Timeout = 300 * time.Millisecond
	image, err := name.NewDigest(host + "/vouch/hang@sha256:" + strings.Repeat("ab", 32))
	if err != nil {
		t.Fatal(err)
	}
	b := w.build(image, "image")
	env, err := Sign(context.Background(), w.ids["alice"], b)
	if err != nil {
		t.Fatal(err)
	}
	alice := TrustedKey{KeyID: keys.KeyID(w.ids["alice"].Public()), Public: w.ids["alice"].Public()}
	logs := logSource{}
	for _, n := range []string{"alice", "bob"} {
		c, _ := b.Claim()
		logs[n] = []*claim.Claim{c}
	}
	state := t.TempDir()
	calls := map[string]func(ctx context.Context) error{
		"List": func(ctx context.Context) error { _, err := w.reg.List(ctx, image); return err },
		"Resolve": func(ctx context.Context) error {
			_, err := w.reg.Resolve(ctx, image.Context().Tag("stable"))
			return err
		},
		"TagDigest": func(ctx context.Context) error {
			_, err := w.reg.TagDigest(ctx, image.Context().Tag("stable"))
			return err
		},
		"Tag": func(ctx context.Context) error { return w.reg.Tag(ctx, image, image.Context().Tag("stable")) },
		"Attach": func(ctx context.Context) error {
			_, _, _, err := w.reg.Attach(ctx, image, env, alice)
			return err
		},
		"PushCosign": func(ctx context.Context) error { _, err := w.reg.PushCosign(ctx, image, env); return err },
		"Promote": func(ctx context.Context) error {
			v := w.verifier(t, 2, 2, logs, "alice", "bob")
			p, _, err := Promote(ctx, v, Query{Image: image, Subject: b.Subject()}, image.Context().Tag("stable"), PromoteOptions{StateDir: state, Freshen: freshNow})
			if p == nil || p.Moved {
				t.Errorf("promotion %+v", p)
			}
			return err
		},
	}
	for what, call := range calls {
		t.Run(what, func(t *testing.T) {
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- call(context.Background()) }()
			select {
			case err := <-done:
				var te *TimeoutError
				if !errors.As(err, &te) && !strings.Contains(errString(err), "did not answer within 300ms") {
					t.Fatalf("%s against a registry that never answers: %v, want a timeout", what, err)
				}
				t.Logf("%s gave up after %s: %v", what, time.Since(start).Round(time.Millisecond), err)
			case <-time.After(30 * time.Second):
				t.Fatalf("%s still waiting after 30s on a registry that never answers", what)
			}
		})
	}
	if last := lastPromotion(t, state); last.Moved || !strings.Contains(last.Error, "did not answer within 300ms") {
		t.Fatalf("recorded %+v", last)
	}
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// Attesting again (a new signing time, so a new envelope) adds no second
// referrer: the earlier attestation of the same build by the same key is
// found and kept.
func TestAttachIsIdempotent(t *testing.T) {
	registries(t, func(t *testing.T, host string) {
		s := newScenario(t, host, "vouch/again")
		alice := TrustedKey{KeyID: keys.KeyID(s.ids["alice"].Public()), Public: s.ids["alice"].Public()}
		attach := func(at time.Time) (name.Digest, bool) {
			t.Helper()
			b := s.build(s.d, "image")
			b.Time = at
			env, err := Sign(context.Background(), s.ids["alice"], b)
			if err != nil {
				t.Fatal(err)
			}
			att, _, already, err := s.reg.Attach(context.Background(), s.d, env, alice)
			if err != nil {
				t.Fatal(err)
			}
			return att, already
		}
		first, already := attach(epoch)
		if already {
			t.Fatal("first attestation reported as already there")
		}
		second, already := attach(epoch.Add(time.Hour))
		if !already || second != first {
			t.Fatalf("second attach: %s already=%v, want the first one %s", second, already, first)
		}
		// Another builder's attestation of the same build is its own.
		env, _ := Sign(context.Background(), s.ids["bob"], s.build(s.d, "image"))
		bob := TrustedKey{KeyID: keys.KeyID(s.ids["bob"].Public()), Public: s.ids["bob"].Public()}
		if _, _, already, err := s.reg.Attach(context.Background(), s.d, env, bob); err != nil || already {
			t.Fatalf("bob's attestation: already=%v, %v", already, err)
		}
		got, err := s.reg.List(context.Background(), s.d)
		if err != nil || len(got) != 2 {
			t.Fatalf("after attesting twice as alice and once as bob: %d referrers (%v), want 2", len(got), err)
		}
	})
}

// On a registry without the referrers API, an attestation deleted from
// the registry leaves its entry in the referrers tag. distribution then
// refuses every rewrite of that index, so no later attestation of the
// image could be pushed; Attach drops the dangling entry first.
func TestAttachAfterAnAttestationWasDeleted(t *testing.T) {
	host := distributionRegistry(t)
	s := newScenario(t, host, "vouch/deleted")
	key := func(n string) TrustedKey {
		return TrustedKey{KeyID: keys.KeyID(s.ids[n].Public()), Public: s.ids[n].Public()}
	}
	attach := func(who string) (name.Digest, error) {
		env, err := Sign(context.Background(), s.ids[who], s.build(s.d, "image"))
		if err != nil {
			t.Fatal(err)
		}
		att, _, _, err := s.reg.Attach(context.Background(), s.d, env, key(who))
		return att, err
	}
	gone, err := attach("alice")
	if err != nil {
		t.Fatal(err)
	}
	if err := remote.Delete(gone); err != nil {
		t.Fatal(err)
	}
	bobs, err := attach("bob")
	if err != nil {
		t.Fatalf("attesting after an earlier attestation was deleted: %v", err)
	}
	// alice attests again: hers is gone, so a new one is pushed.
	alices, err := attach("alice")
	if err != nil || alices != gone {
		t.Fatalf("alice again: %s %v (want the same manifest %s, pushed anew)", alices, err, gone)
	}
	got, err := s.reg.List(context.Background(), s.d)
	if err != nil {
		t.Fatal(err)
	}
	var listed []string
	for _, f := range got {
		if f.Err != nil {
			t.Errorf("listed %s: %v", f.Manifest, f.Err)
		}
		listed = append(listed, f.Manifest)
	}
	if len(got) != 2 || !strings.Contains(strings.Join(listed, " "), bobs.DigestStr()) || !strings.Contains(strings.Join(listed, " "), alices.DigestStr()) {
		t.Fatalf("referrers after recovery: %v, want bob's %s and alice's %s", listed, bobs.DigestStr(), alices.DigestStr())
	}
}
