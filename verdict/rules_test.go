package verdict

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/claim"
)

// four is the policy of the package doc's worked example, with the quorum
// of each test case.
func four(min, minOps int, onConflict string) *Policy {
	return &Policy{
		Members: []Member{
			{Name: "alice", Operator: "org-a", Weight: 1, KeyID: "ka"},
			{Name: "bob", Operator: "org-b", Weight: 1, KeyID: "kb"},
			{Name: "carol", Operator: "org-c", Weight: 1, KeyID: "kc"},
			{Name: "dave", Operator: "org-d", Weight: 1, KeyID: "kd"},
		},
		Min: min, MinOperators: minOps, OnConflict: onConflict,
	}
}

// vote is "builder=OUTPUT" for the claims of a test case.
type vote struct{ builder, output string }

func votes(spec string) []vote {
	var out []vote
	for _, f := range strings.Fields(spec) {
		b, o, _ := strings.Cut(f, "=")
		out = append(out, vote{b, o})
	}
	return out
}

func TestDecideEntries(t *testing.T) {
	sameKey := &Policy{
		Members: []Member{
			{Name: "alice", Operator: "org-a", Weight: 1, KeyID: "ka"},
			{Name: "alice-again", Operator: "org-z", Weight: 5, KeyID: "ka"},
			{Name: "bob", Operator: "org-b", Weight: 1, KeyID: "kb"},
			{Name: "carol", Operator: "org-c", Weight: 1, KeyID: "kc"},
		},
		Min: 3, MinOperators: 2, OnConflict: "refuse",
	}
	weighted := &Policy{
		Members: []Member{
			{Name: "alice", Operator: "org-a", Weight: 3, KeyID: "ka"},
			{Name: "bob", Operator: "org-b", Weight: 1, KeyID: "kb"},
			{Name: "carol", Operator: "org-c", Weight: 1, KeyID: "kc"},
			{Name: "dave", Operator: "org-d", Weight: 1, KeyID: "kd"},
		},
		Min: 4, MinOperators: 2, OnConflict: "majority",
	}
	oneOrg := &Policy{
		Members: []Member{
			{Name: "alice", Operator: "acme", Weight: 1, KeyID: "ka"},
			{Name: "bob", Operator: "acme", Weight: 1, KeyID: "kb"},
			{Name: "carol", Operator: "acme", Weight: 1, KeyID: "kc"},
			{Name: "dave", Operator: "org-d", Weight: 1, KeyID: "kd"},
		},
		Min: 3, MinOperators: 2, OnConflict: "majority",
	}
	seven := &Policy{Min: 7, MinOperators: 7, OnConflict: "refuse"}
	for i := 0; i < 7; i++ {
		seven.Members = append(seven.Members, Member{Name: fmt.Sprintf("b%d", i), Weight: 1, KeyID: fmt.Sprintf("k%d", i)})
	}
	unlisted := "alice=X bob=X carol=X"
	for i := 0; i < 100; i++ {
		unlisted += fmt.Sprintf(" sybil%03d=Y", i)
	}

	cases := []struct {
		name        string
		policy      *Policy
		claims      string // builder=OUTPUT ...
		compromised string // builder names
		outcome     Outcome
		value       string // output letter of Value when trusted
		agreed      string
		disagreed   string
		silent      string
		bad         string // Compromised
		reason      string // substring
		outvoted    bool   // the dissenters lost against an agreeing quorum
	}{
		{name: "reproducible, 3 of 4", policy: four(3, 2, "refuse"), claims: "alice=X bob=X carol=X",
			outcome: Trusted, value: "X", agreed: "alice bob carol", silent: "dave",
			reason: "3 of 4 builders agree (need 3), from 3 operators (need 2); 1 silent"},
		{name: "tampering builder outvoted (majority)", policy: four(3, 2, "majority"), claims: "alice=X bob=X carol=X dave=Y",
			outcome: Trusted, value: "X", agreed: "alice bob carol", disagreed: "dave", outvoted: true,
			reason: "1 disagrees with 1 other output, but the leading output holds a strict majority (3 of 4 votes)"},
		{name: "tampering builder refused", policy: four(3, 2, "refuse"), claims: "alice=X bob=X carol=X dave=Y",
			outcome: Conflict, agreed: "alice bob carol", disagreed: "dave", outvoted: true, reason: "the policy refuses conflicts"},
		{name: "a majority short of the quorum outvotes nobody", policy: four(4, 1, "majority"), claims: "alice=X bob=X carol=X dave=Y",
			outcome: Conflict, agreed: "alice bob carol", disagreed: "dave", reason: "only 3 of 4 builders agree (need 4)"},
		{name: "one answering log of four is not 100%", policy: four(3, 2, "majority"), claims: "alice=X",
			outcome: Insufficient, agreed: "alice", silent: "bob carol dave",
			reason: "only 1 of 4 builders agree (need 3), from 1 operator (need 2); 3 silent"},
		{name: "no claim at all", policy: four(3, 2, "majority"),
			outcome: Insufficient, silent: "alice bob carol dave", reason: "no configured builder has a counted claim"},
		{name: "a zero quorum still needs one claim", policy: four(0, 0, "refuse"),
			outcome: Insufficient, silent: "alice bob carol dave", reason: "need 1"},
		{name: "4 of 4 is reachable", policy: four(4, 4, "refuse"), claims: "alice=X bob=X carol=X dave=X",
			outcome: Trusted, value: "X", agreed: "alice bob carol dave", reason: "4 of 4 builders agree (need 4), from 4 operators (need 4)"},
		{name: "7 of 7 is reachable", policy: seven, claims: "b0=X b1=X b2=X b3=X b4=X b5=X b6=X",
			outcome: Trusted, value: "X", agreed: "b0 b1 b2 b3 b4 b5 b6", reason: "7 of 7 builders agree (need 7)"},
		{name: "4 of 4 with one silent", policy: four(4, 1, "refuse"), claims: "alice=X bob=X carol=X",
			outcome: Insufficient, agreed: "alice bob carol", silent: "dave", reason: "only 3 of 4 builders agree (need 4)"},
		{name: "tie goes to the smaller output, never trusted", policy: four(2, 1, "majority"), claims: "alice=Y bob=Y carol=X dave=X",
			outcome: Conflict, agreed: "carol dave", disagreed: "alice bob", reason: "holds 2 of 4 votes, not a strict majority"},
		{name: "tie with outputs swapped", policy: four(2, 1, "majority"), claims: "alice=X bob=X carol=Y dave=Y",
			outcome: Conflict, agreed: "alice bob", disagreed: "carol dave"},
		{name: "three outputs", policy: four(2, 1, "majority"), claims: "alice=Z bob=Y carol=X dave=Y",
			outcome: Conflict, agreed: "bob dave", disagreed: "carol alice", reason: "2 disagree with 2 other outputs"},
		{name: "weights: heavy builder plus one", policy: weighted, claims: "alice=X bob=X",
			outcome: Trusted, value: "X", agreed: "alice bob", silent: "carol dave",
			reason: "2 builders carrying 4 of 6 votes agree (need 4)"},
		{name: "weights: heavy builder alone", policy: weighted, claims: "alice=X",
			outcome: Insufficient, agreed: "alice", silent: "bob carol dave", reason: "only 1 builder carrying 3 of 6 votes agrees (need 4)"},
		{name: "weights: three light builders outweigh the heavy one", policy: weighted, claims: "alice=X bob=Y carol=Y dave=Y",
			outcome: Conflict, agreed: "alice", disagreed: "bob carol dave"},
		{name: "operator diversity enforced", policy: oneOrg, claims: "alice=X bob=X carol=X",
			outcome: Insufficient, agreed: "alice bob carol", silent: "dave", reason: "from 1 operator (need 2)"},
		{name: "operator diversity met", policy: oneOrg, claims: "alice=X bob=X dave=X",
			outcome: Trusted, value: "X", agreed: "alice bob dave", silent: "carol"},
		{name: "compromised dissenter counts for nothing", policy: four(3, 2, "refuse"), claims: "alice=X bob=X carol=X dave=Y", compromised: "dave",
			outcome: Trusted, value: "X", agreed: "alice bob carol", bad: "dave", reason: "; 1 compromised"},
		{name: "compromised supporter counts for nothing", policy: four(3, 2, "refuse"), claims: "alice=X bob=X carol=X", compromised: "carol",
			outcome: Insufficient, agreed: "alice bob", silent: "dave", bad: "carol", reason: "only 2 of 4 builders agree (need 3)"},
		{name: "compromised and silent is listed as compromised", policy: four(2, 1, "refuse"), claims: "alice=X bob=X", compromised: "dave",
			outcome: Trusted, value: "X", agreed: "alice bob", silent: "carol", bad: "dave"},
		{name: "one builder with two outputs counts for neither", policy: four(3, 2, "refuse"), claims: "alice=X bob=X dave=X dave=Y",
			outcome: Insufficient, agreed: "alice bob", silent: "carol", bad: "dave", reason: "1 logged two outputs for this subject (dave)"},
		{name: "one builder with two outputs cannot block", policy: four(3, 2, "refuse"), claims: "alice=X bob=X carol=X dave=Y dave=X",
			outcome: Trusted, value: "X", agreed: "alice bob carol", bad: "dave"},
		{name: "repeated identical claim is one vote", policy: four(3, 1, "refuse"), claims: "alice=X alice=X alice=X bob=X",
			outcome: Insufficient, agreed: "alice bob", silent: "carol dave", reason: "only 2 of 4"},
		{name: "same key under two names counts once", policy: sameKey, claims: "alice=X alice-again=X bob=X",
			outcome: Insufficient, agreed: "alice bob", silent: "carol", reason: "only 2 of 3 builders agree (need 3)"},
		{name: "an alias's claim is its builder's", policy: sameKey, claims: "alice-again=X bob=X carol=X",
			outcome: Trusted, value: "X", agreed: "alice bob carol", reason: "3 of 3 builders agree"},
		{name: "alias disagreeing with its own name is two outputs", policy: sameKey, claims: "alice=X alice-again=Y bob=X carol=X",
			outcome: Insufficient, agreed: "bob carol", bad: "alice", reason: "logged two outputs"},
		{name: "compromised alias compromises the key", policy: sameKey, claims: "alice=X bob=X carol=X", compromised: "alice-again",
			outcome: Insufficient, agreed: "bob carol", bad: "alice"},
		{name: "100 unlisted logs that agree change nothing", policy: four(3, 2, "refuse"), claims: unlisted,
			outcome: Trusted, value: "X", agreed: "alice bob carol", silent: "dave"},
		{name: "unlisted logs alone are nothing", policy: four(1, 1, "refuse"), claims: "sybil1=X sybil2=X",
			outcome: Insufficient, silent: "alice bob carol dave"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var entries []Entry
			next := map[string]uint64{}
			for _, v := range votes(tc.claims) {
				entries = append(entries, Entry{Builder: v.builder, Claim: nixClaim(subjectHello, v.output), Index: next[v.builder]})
				next[v.builder]++
			}
			bad := map[string]bool{}
			for _, b := range strings.Fields(tc.compromised) {
				bad[b] = true
			}
			got := tc.policy.DecideEntries(entries, func(b string) bool { return bad[b] })
			if got.Outcome != tc.outcome {
				t.Errorf("outcome %s, want %s (reason: %s)", got.Outcome, tc.outcome, got.Reason)
			}
			if tc.outcome == Trusted {
				if got.Value == nil || got.Value.Output() != nixClaim(subjectHello, tc.value).Output() {
					t.Errorf("value %+v, want output %s", got.Value, tc.value)
				}
			} else if got.Value != nil {
				t.Errorf("value %+v on a %s verdict", got.Value, got.Outcome)
			}
			check := func(what string, got []string, want string) {
				t.Helper()
				if w := strings.Fields(want); !reflect.DeepEqual(got, append([]string{}, w...)) {
					t.Errorf("%s = %q, want %q", what, got, w)
				}
			}
			check("agreed", names(got.Agreed), tc.agreed)
			check("disagreed", names(got.Disagreed), tc.disagreed)
			check("silent", got.Silent, tc.silent)
			check("compromised", got.Compromised, tc.bad)
			if got.Outvoted != tc.outvoted {
				t.Errorf("outvoted = %v, want %v", got.Outvoted, tc.outvoted)
			}
			if !strings.Contains(got.Reason, tc.reason) {
				t.Errorf("reason %q does not contain %q", got.Reason, tc.reason)
			}
			again := tc.policy.DecideEntries(reversed(entries), func(b string) bool { return bad[b] })
			if !reflect.DeepEqual(got, again) {
				t.Errorf("reversing the entries changed the verdict:\n%+v\n%+v", got, again)
			}
		})
	}
}

func reversed(es []Entry) []Entry {
	out := make([]Entry, len(es))
	for i, e := range es {
		out[len(es)-1-i] = e
	}
	return out
}

func TestAliasVoteNamesItsLog(t *testing.T) {
	p := &Policy{Members: []Member{{Name: "a", Weight: 1, KeyID: "k"}, {Name: "b", Weight: 1, KeyID: "k"}}, Min: 1, MinOperators: 1}
	v := p.DecideEntries([]Entry{{Builder: "b", Claim: nixClaim(subjectHello, "X"), Index: 7}}, nil)
	if v.Outcome != Trusted || len(v.Agreed) != 1 || v.Agreed[0].Builder != "a" || v.Agreed[0].Log != "b" || v.Agreed[0].Index != 7 {
		t.Fatalf("%+v", v)
	}
	// The builder's own log wins over the alias's, whatever the indexes.
	v = p.DecideEntries([]Entry{
		{Builder: "b", Claim: nixClaim(subjectHello, "X"), Index: 1},
		{Builder: "a", Claim: nixClaim(subjectHello, "X"), Index: 9},
	}, nil)
	if v.Agreed[0].Log != "" || v.Agreed[0].Index != 9 {
		t.Fatalf("%+v", v.Agreed)
	}
	if got := p.TotalWeight(); got != 1 {
		t.Fatalf("total weight %d, want 1", got)
	}
	if got := p.Aliases(); !reflect.DeepEqual(got, map[string][]string{"a": {"b"}}) {
		t.Fatalf("aliases %v", got)
	}
}

func TestClaimsAboutOtherSubjectsNeverAgree(t *testing.T) {
	p := four(2, 1, "refuse")
	other := "/nix/store/1c6kzph7l0dcbfmjap64f0czdafn3b7x-other"
	v := p.DecideEntries([]Entry{
		{Builder: "alice", Claim: nixClaim(subjectHello, "X")},
		{Builder: "bob", Claim: nixClaim(other, "X")},
	}, nil)
	if v.Outcome == Trusted {
		t.Fatalf("claims about two subjects were counted together: %+v", v)
	}
}

func TestDecideAttachesVerifiableProofs(t *testing.T) {
	src := newMemSource()
	// Unrelated claims first, so indexes and tree sizes differ per log.
	for i := 0; i < 5; i++ {
		src.add("alice", nixClaim(fmt.Sprintf("/nix/store/%032d-pad", i), "P"))
	}
	src.add("alice", nixClaim(subjectHello, "X"))
	src.add("bob", nixClaim(subjectHello, "X"))
	for i := 0; i < 3; i++ {
		src.add("carol", nixClaim(fmt.Sprintf("/nix/store/%032d-pad", i), "P"))
	}
	src.add("carol", nixClaim(subjectHello, "X"))
	src.add("dave", nixClaim(subjectHello, "Y"))
	src.add("mallory", nixClaim(subjectHello, "Y"))

	v, err := four(3, 2, "majority").Decide(src, claim.KindNix, subjectHello)
	if err != nil {
		t.Fatal(err)
	}
	if v.Outcome != Trusted || v.Kind != claim.KindNix || v.Subject != subjectHello {
		t.Fatalf("%+v", v)
	}
	all := append(append([]Vote{}, v.Agreed...), v.Disagreed...)
	if len(all) != 4 {
		t.Fatalf("votes %+v", all)
	}
	for _, vote := range all {
		size, root := src.root(vote.Builder)
		if vote.TreeSize != uint64(size) {
			t.Errorf("%s: tree size %d, want %d", vote.Builder, vote.TreeSize, size)
		}
		c := nixClaim(subjectHello, "X")
		if vote.Builder == "dave" {
			c = nixClaim(subjectHello, "Y")
		}
		data, _ := c.Marshal()
		proof := make(tlog.RecordProof, len(vote.Proof))
		for i := range vote.Proof {
			copy(proof[i][:], vote.Proof[i])
		}
		if err := tlog.CheckRecord(proof, size, root, int64(vote.Index), tlog.RecordHash(data)); err != nil {
			t.Errorf("%s: inclusion proof of entry %d does not verify: %v", vote.Builder, vote.Index, err)
		}
	}
	if v.Agreed[0].Index != 5 || v.Agreed[2].Index != 3 {
		t.Errorf("indexes %+v", v.Agreed)
	}
}

func TestDecideErrorsAreNeverTrusted(t *testing.T) {
	src := newMemSource()
	for _, b := range []string{"alice", "bob", "carol"} {
		src.add(b, nixClaim(subjectHello, "X"))
	}
	src.failProofs = errors.New("disk on fire")
	v, err := four(3, 2, "refuse").Decide(src, claim.KindNix, subjectHello)
	if err == nil || !strings.Contains(err.Error(), "disk on fire") || v.Outcome != Insufficient || v.Value != nil {
		t.Fatalf("proof failure: %+v, %v", v, err)
	}
	src.failProofs, src.failClaims = nil, errors.New("index closed")
	v, err = four(3, 2, "refuse").Decide(src, claim.KindNix, subjectHello)
	if err == nil || v.Outcome != Insufficient || !strings.Contains(v.Reason, "index closed") {
		t.Fatalf("index failure: %+v, %v", v, err)
	}
}

// misfiled wraps a Source that wrongly returns claims about another subject.
type misfiled struct {
	*memSource
	extra []Entry
}

func (m misfiled) Claims(kind claim.Kind, subject string) ([]Entry, error) {
	es, err := m.memSource.Claims(kind, subject)
	return append(append([]Entry{}, m.extra...), es...), err
}

func TestDecideDropsMisfiledEntries(t *testing.T) {
	src := newMemSource()
	src.add("alice", nixClaim(subjectHello, "X"))
	other := nixClaim("/nix/store/1c6kzph7l0dcbfmjap64f0czdafn3b7x-other", "Y")
	m := misfiled{src, []Entry{{Builder: "bob", Claim: other}, {Builder: "carol"}}}
	v, err := four(1, 1, "refuse").Decide(m, claim.KindNix, subjectHello)
	if err != nil {
		t.Fatal(err)
	}
	if v.Outcome != Trusted || !reflect.DeepEqual(names(v.Agreed), []string{"alice"}) || len(v.Disagreed) != 0 {
		t.Fatalf("%+v", v)
	}
}
