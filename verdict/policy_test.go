package verdict

import (
	"crypto/rand"
	"fmt"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/keys"
)

func verifierKey(t testing.TB, name string) string {
	_, v, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func builderTOML(name, vkey, operator string) string {
	return fmt.Sprintf("[[builder]]\nname = %q\nvkey = %q\nlog = \"http://127.0.0.1:9/%s/\"\noperator = %q\n", name, vkey, name, operator)
}

func TestNewPolicyFromConfig(t *testing.T) {
	a, b, c := verifierKey(t, "alice"), verifierKey(t, "bob"), verifierKey(t, "carol")
	cfg, err := config.Parse([]byte(builderTOML("alice", a, "org-a") + builderTOML("bob", b, "org-b") + builderTOML("carol", c, "org-b") +
		"[quorum]\nmin = 2\nmin-operators = 2\non-conflict = \"majority\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	p, err := NewPolicy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pub, _ := keys.VerifierPublicKey(a)
	if len(p.Members) != 3 || p.Members[0].KeyID != keys.KeyID(pub) || p.Members[2].Operator != "org-b" || p.Members[1].Weight != 1 {
		t.Fatalf("members %+v", p.Members)
	}
	if p.Min != 2 || p.MinOperators != 2 || p.OnConflict != config.OnConflictMajority || p.TotalWeight() != 3 {
		t.Fatalf("quorum %+v", p)
	}
	// bob and carol share an operator: two builders, one operator.
	v := p.DecideEntries([]Entry{
		{Builder: "bob", Claim: nixClaim(subjectHello, "X")},
		{Builder: "carol", Claim: nixClaim(subjectHello, "X")},
	}, nil)
	if v.Outcome != Insufficient || !strings.Contains(v.Reason, "from 1 operator (need 2)") {
		t.Fatalf("%+v", v)
	}
}

func TestNewPolicyRefusesWhatConfigRefuses(t *testing.T) {
	a := verifierKey(t, "alice")
	pub, _ := keys.VerifierPublicKey(a)
	again, err := note.NewEd25519VerifierKey("alias", pub)
	if err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		cfg  *config.Config
		want string
	}{
		"nil":        {nil, "no config"},
		"no builder": {&config.Config{}, "no builders configured"},
		"same key": {&config.Config{Builders: []config.Builder{
			{Name: "alice", VKey: a, Log: "http://127.0.0.1:1/"},
			{Name: "alias", VKey: again, Log: "http://127.0.0.1:2/"},
		}}, "same key"},
		"unreachable": {&config.Config{Builders: []config.Builder{{Name: "alice", VKey: a, Log: "http://127.0.0.1:1/"}},
			Quorum: config.Quorum{Min: 2}}, "can never be met"},
	} {
		_, err := NewPolicy(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", name, err, tc.want)
		}
	}
}

func TestNewPolicyAppliesDefaultsWithoutTouchingTheConfig(t *testing.T) {
	cfg := &config.Config{Builders: []config.Builder{
		{Name: "alice", VKey: verifierKey(t, "alice"), Log: "http://127.0.0.1:1/"},
		{Name: "bob", VKey: verifierKey(t, "bob"), Log: "http://127.0.0.1:2/"},
		{Name: "carol", VKey: verifierKey(t, "carol"), Log: "http://127.0.0.1:3/"},
	}}
	p, err := NewPolicy(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Defaults: weight 1, operator = name, min = strict majority, refuse.
	if p.Min != 2 || p.MinOperators != 1 || p.OnConflict != config.OnConflictRefuse || p.Members[0].Operator != "alice" || p.Members[0].Weight != 1 {
		t.Fatalf("%+v", p)
	}
	if cfg.Builders[0].Weight != 0 || cfg.Quorum.Min != 0 {
		t.Fatal("NewPolicy changed the caller's config")
	}
	if v := p.DecideEntries([]Entry{{Builder: "alice", Claim: nixClaim(subjectHello, "X")}}, nil); v.Outcome != Insufficient {
		t.Fatalf("%+v", v)
	}
}

func TestOtherKinds(t *testing.T) {
	p := four(2, 2, "refuse")
	ca := func(out string) *claim.Claim {
		return &claim.Claim{Kind: claim.KindNixCA, Subject: "sha256:" + strings.Repeat("a", 64) + "!out",
			OutPath: "/nix/store/" + strings.Repeat(out, 32) + "-x", NarHash: narHashFor("X"), NarSize: 5}
	}
	v := p.DecideEntries([]Entry{{Builder: "alice", Claim: ca("1")}, {Builder: "bob", Claim: ca("1")}}, nil)
	if v.Outcome != Trusted || v.Kind != claim.KindNixCA || v.Value.OutPath != ca("1").OutPath {
		t.Fatalf("%+v", v)
	}
	// Another out-path is another output.
	v = p.DecideEntries([]Entry{{Builder: "alice", Claim: ca("1")}, {Builder: "bob", Claim: ca("2")}}, nil)
	if v.Outcome != Conflict {
		t.Fatalf("%+v", v)
	}
	oci := func(digit string) *claim.Claim {
		return &claim.Claim{Kind: claim.KindOCI, Subject: claim.OCISubject("github.com/x/y", "abcdef1", "image", "x86_64-linux"),
			Digest: "sha256:" + strings.Repeat(digit, 64)}
	}
	v = p.DecideEntries([]Entry{{Builder: "carol", Claim: oci("1")}, {Builder: "dave", Claim: oci("1")}, {Builder: "bob", Claim: oci("2")}}, nil)
	if v.Outcome != Conflict || len(v.Agreed) != 2 || v.Disagreed[0].Builder != "bob" {
		t.Fatalf("%+v", v)
	}
}

// TestRosterFollowsMembers checks that the cached roster never outlives a
// change to Members made in place, and that one Policy may decide from
// several goroutines at once (run with -race).
func TestRosterFollowsMembers(t *testing.T) {
	p := four(3, 1, "refuse")
	entries := []Entry{
		{Builder: "alice", Claim: nixClaim(subjectHello, "X")},
		{Builder: "bob", Claim: nixClaim(subjectHello, "X")},
		{Builder: "carol", Claim: nixClaim(subjectHello, "X")},
	}
	if v := p.DecideEntries(entries, nil); v.Outcome != Trusted || p.TotalWeight() != 4 {
		t.Fatalf("%+v, T=%d", v, p.TotalWeight())
	}
	p.Members[2].Weight = 0 // carol no longer counts
	if v := p.DecideEntries(entries, nil); v.Outcome != Insufficient || p.TotalWeight() != 3 {
		t.Fatalf("after carol's weight became 0: %+v, T=%d", v, p.TotalWeight())
	}
	p.Members[2].Weight = 1
	p.Members = append(p.Members, Member{Name: "erin", Operator: "org-e", Weight: 2, KeyID: "ke"})
	if v := p.DecideEntries(entries, nil); v.Outcome != Trusted || p.TotalWeight() != 6 || !strings.Contains(v.Reason, "carrying 3 of 6 votes") {
		t.Fatalf("after erin joined: %+v, T=%d", v, p.TotalWeight())
	}

	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for range 200 {
				if v := p.DecideEntries(entries, nil); v.Outcome != Trusted {
					t.Errorf("%+v", v)
					return
				}
			}
		})
	}
	wg.Wait()
}
