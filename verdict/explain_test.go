package verdict

import (
	"strings"
	"testing"

	"github.com/vouch-dev/vouch/claim"
)

func TestExplain(t *testing.T) {
	p := release("majority")
	p.Exceptions = []Exception{{Name: "hello-doc-*", Rule: "ci1", Reason: "embeds the build date"}, {Subject: subjectHello, Reason: "timestamps"}}
	got := p.Explain()
	for _, want := range []string{
		"Builders counted: 5, carrying 5 builders in all",
		"  r2 (operator org-2)",
		"An output is trusted when builders carrying at least 1 of the 5 builders agree on it, from at least 1 distinct operator, and they meet group release: all of (group ci: all of {ci1, ci2}; group community: 2 of {r1, r2, r3} from 2 distinct operators).",
		"Each builder counts once across all groups",
		"holds a strict majority: more than 2 of the 5 builders.",
		"  name hello-doc-*: ci1; reason: embeds the build date",
		"  subject " + subjectHello + ": the rule above, without the conflict condition; reason: timestamps",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("Explain lacks %q:\n%s", want, got)
		}
	}
	if s := four(3, 2, "refuse").Explain(); !strings.Contains(s, "No exceptions: a subject the rule does not trust is refused.") || strings.Contains(s, "group") {
		t.Errorf("simple policy:\n%s", s)
	}
}

func TestCanonical(t *testing.T) {
	a, b := release("majority"), release("majority")
	// Member order and group order do not matter; anything decisive does.
	b.Members[0], b.Members[4] = b.Members[4], b.Members[0]
	b.Groups[0], b.Groups[1] = b.Groups[1], b.Groups[0]
	if a.Fingerprint() != b.Fingerprint() {
		t.Fatalf("reordering changed the fingerprint:\n%s\n%s", a.Canonical(), b.Canonical())
	}
	for name, change := range map[string]func(p *Policy){
		"min":         func(p *Policy) { p.Min = 2 },
		"on-conflict": func(p *Policy) { p.OnConflict = "refuse" },
		"group":       func(p *Policy) { p.Group = "ci" },
		"threshold":   func(p *Policy) { p.Groups[1].Need = 3 },
		"operators":   func(p *Policy) { p.Groups[1].MinOperators = 1 },
		"member":      func(p *Policy) { p.Groups[0].Members = []string{"ci1", "r1"} },
		"exception":   func(p *Policy) { p.Exceptions = []Exception{{Name: "x*", Reason: "r"}} },
		"weight":      func(p *Policy) { p.Members[2].Weight = 2 },
		"key":         func(p *Policy) { p.Members[2].KeyID = "other" },
	} {
		p := release("majority")
		change(p)
		if p.Fingerprint() == a.Fingerprint() {
			t.Errorf("%s: the fingerprint did not change:\n%s", name, p.Canonical())
		}
	}
	if !strings.HasPrefix(string(a.Canonical()), "vouch-policy/v1\nbuilder ci1 k-ci1 ours 1\n") {
		t.Errorf("canonical:\n%s", a.Canonical())
	}
}

// TestExceptionsOfOtherKinds: a name pattern covers store paths only; an
// exact subject covers any kind.
func TestExceptionsOfOtherKinds(t *testing.T) {
	subject := claim.OCISubject("github.com/x/y", "abcdef1", "image", "x86_64-linux")
	oci := func(digit string) *claim.Claim {
		return &claim.Claim{Kind: claim.KindOCI, Subject: subject, Digest: "sha256:" + strings.Repeat(digit, 64)}
	}
	es := []Entry{{Builder: "alice", Claim: oci("1")}, {Builder: "bob", Claim: oci("2")}}
	p := four(2, 2, "refuse")
	p.Exceptions = []Exception{{Name: "*image*", Reason: "r", Rule: "alice"}, {Name: "github.com*", Reason: "r", Rule: "alice"}}
	if v := p.DecideEntries(es, nil); v.Outcome != Conflict || v.Exception != nil {
		t.Fatalf("a name pattern matched an OCI subject: %+v", v)
	}
	p.Exceptions = []Exception{{Subject: subject, Reason: "layer timestamps", Rule: "alice"}}
	if v := p.DecideEntries(es, nil); v.Outcome != Trusted || v.Exception == nil || v.Value.Digest != oci("1").Digest {
		t.Fatalf("an exact OCI subject: %+v", v)
	}
}
