package report

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/index"
	"github.com/vouch-dev/vouch/keys"
	"github.com/vouch-dev/vouch/verdict"
)

// world is a real follower index filled the way the follow package fills
// it: entries appended in batches with their leaf hashes, then a signed
// checkpoint over them.
type world struct {
	t       testing.TB
	x       *index.Index
	ids     map[string]index.LogID
	signers map[string]note.Signer
	policy  *verdict.Policy
}

func newWorld(t testing.TB, builders [][2]string, unlisted ...string) *world {
	w := &world{t: t, ids: map[string]index.LogID{}, signers: map[string]note.Signer{}, policy: &verdict.Policy{}}
	var configured []index.LogID
	for _, b := range append(append([][2]string{}, builders...), namesOnly(unlisted)...) {
		skey, vkey, err := note.GenerateKey(rand.Reader, b[0])
		if err != nil {
			t.Fatal(err)
		}
		signer, err := note.NewSigner(skey)
		if err != nil {
			t.Fatal(err)
		}
		pub, err := keys.VerifierPublicKey(vkey)
		if err != nil {
			t.Fatal(err)
		}
		id := index.LogID{Name: b[0], KeyID: keys.KeyID(pub)}
		w.ids[b[0]], w.signers[b[0]] = id, signer
		if b[1] != "" { // configured
			configured = append(configured, id)
			w.policy.Members = append(w.policy.Members, verdict.Member{Name: b[0], Operator: b[1], Weight: 1, KeyID: id.KeyID})
		}
	}
	x, err := index.Open(filepath.Join(t.TempDir(), "index.db"), configured...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { x.Close() })
	w.x = x
	return w
}

func namesOnly(names []string) [][2]string {
	var out [][2]string
	for _, n := range names {
		out = append(out, [2]string{n, ""})
	}
	return out
}

// log appends claims to builder's log and publishes a checkpoint of
// extra more entries than it indexes (a sync under way) when extra > 0.
func (w *world) log(builder string, extra uint64, claims ...*claim.Claim) {
	w.t.Helper()
	id := w.ids[builder]
	st, err := w.x.State(id)
	if err != nil {
		w.t.Fatal(err)
	}
	b := &index.Batch{First: st.Synced}
	for _, c := range claims {
		e, err := c.Marshal()
		if err != nil {
			w.t.Fatal(err)
		}
		b.Entries = append(b.Entries, e)
		b.Claims = append(b.Claims, c)
		b.Hashes = append(b.Hashes, tlog.RecordHash(e))
	}
	if conflict, err := w.x.Append(id, b); err != nil || conflict != nil {
		w.t.Fatalf("append: %v %v", conflict, err)
	}
	size := st.Synced + uint64(len(claims))
	w.checkpoint(builder, size)
	if extra > 0 {
		// A later checkpoint whose entries are not indexed yet.
		w.checkpoint(builder, size+extra)
	}
}

func (w *world) checkpoint(builder string, size uint64) {
	w.t.Helper()
	id := w.ids[builder]
	var root tlog.Hash
	if st, _ := w.x.State(id); size <= st.Synced {
		var err error
		if root, err = w.x.RootAt(id, size); err != nil {
			w.t.Fatal(err)
		}
	}
	text := fmt.Sprintf("%s\n%d\n%s\n", builder, size, base64.StdEncoding.EncodeToString(root[:]))
	signed, err := note.Sign(&note.Note{Text: text}, w.signers[builder])
	if err != nil {
		w.t.Fatal(err)
	}
	if err := w.x.SetCheckpoint(id, &index.Checkpoint{Origin: builder, Size: size, Root: root, Note: signed}); err != nil {
		w.t.Fatal(err)
	}
}

func path(i int) string { return fmt.Sprintf("/nix/store/%032d-s%d", i, i) }

func nixClaim(subject, output string) *claim.Claim {
	const nix32 = "0123456789abcdfghijklmnpqrsvwxyz"
	c := nix32[int(output[0])%len(nix32)]
	return &claim.Claim{Kind: claim.KindNix, Subject: subject, NarHash: "sha256:" + strings.Repeat(string(c), 52), NarSize: 100}
}

func fourBuilders(t *testing.T) *world {
	w := newWorld(t, [][2]string{{"alice", "org-a"}, {"bob", "org-b"}, {"carol", "org-c"}, {"dave", "org-d"}}, "mallory")
	w.policy.Min, w.policy.MinOperators, w.policy.OnConflict = 3, 2, "refuse"
	claimsOf := map[string][]*claim.Claim{}
	add := func(i int, spec string) {
		for _, f := range strings.Fields(spec) {
			b, o, _ := strings.Cut(f, "=")
			claimsOf[b] = append(claimsOf[b], nixClaim(path(i), o))
		}
	}
	for i := 1; i <= 5; i++ {
		add(i, "alice=X bob=X carol=X dave=X mallory=M") // reproducible
	}
	add(6, "alice=X bob=X carol=X dave=Y mallory=M") // dave tampered
	add(7, "alice=A bob=B carol=C dave=D")           // not reproducible
	add(8, "alice=X")                                // only alice built it
	add(9, "alice=X bob=X")                          // two agree, two silent
	add(10, "mallory=M")                             // unlisted only: not a subject
	for _, b := range []string{"alice", "bob", "carol", "dave", "mallory"} {
		extra := uint64(0)
		if b == "carol" {
			extra = 3
		}
		w.log(b, extra, claimsOf[b]...)
	}
	return w
}

func TestReportFourBuilders(t *testing.T) {
	w := fourBuilders(t)
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	if err := w.x.SetHealth(w.ids["alice"], now.Add(-90*time.Second), nil); err != nil {
		t.Fatal(err)
	}
	if err := w.x.SetHealth(w.ids["bob"], now.Add(-10*time.Second), errors.New("connection refused")); err != nil {
		t.Fatal(err)
	}
	rep, err := Build(w.x, w.policy, Options{Now: now, AllSubjects: true, PageSize: 2})
	if err != nil {
		t.Fatal(err)
	}

	want := Totals{Subjects: 9, Trusted: 5, Conflict: 2, Insufficient: 2, Disagreements: 2, BuiltByOne: 6, Outvoted: 1, NonReproducible: 1}
	if rep.Totals != want {
		t.Errorf("totals %+v, want %+v", rep.Totals, want)
	}
	if len(rep.Builders) != 4 || len(rep.Logs) != 4 {
		t.Fatalf("builders %+v", rep.Builders)
	}
	alice := rep.Builders[0]
	if alice.Name != "alice" || alice.Entries != 9 || alice.Subjects != 9 {
		t.Errorf("alice %+v", alice)
	}
	rates := map[string]Agreement{}
	for _, a := range alice.Agreement {
		rates[a.With] = a
	}
	// alice and bob both built 1-7 and 9, and differ only on 7.
	if a := rates["bob"]; a.Shared != 8 || a.Agreed != 7 || *a.Rate != 7.0/8 {
		t.Errorf("alice~bob %+v", a)
	}
	if a := rates["dave"]; a.Shared != 7 || a.Agreed != 5 {
		t.Errorf("alice~dave %+v", a)
	}
	if _, self := rates["alice"]; self || len(alice.Agreement) != 3 {
		t.Errorf("alice's agreement list %+v", alice.Agreement)
	}

	// dave, who tampered with subject 6, is the one builder outvoted; all
	// four are non-reproducible on subject 7, where nobody has a majority.
	for _, b := range rep.Builders {
		wantOutvoted := 0
		if b.Name == "dave" {
			wantOutvoted = 1
		}
		if b.Outvoted != wantOutvoted || b.NonReproducible != 1 {
			t.Errorf("%s: outvoted %d, non-reproducible %d; want %d and 1", b.Name, b.Outvoted, b.NonReproducible, wantOutvoted)
		}
	}
	wantOutvotes := []Outvote{{Kind: claim.KindNix, Subject: path(6), Builder: "dave", Output: nixClaim(path(6), "Y").Output(),
		Agreed: nixClaim(path(6), "X").Output(), Quorum: []string{"alice", "bob", "carol"}}}
	if !reflect.DeepEqual(rep.Outvotes, wantOutvotes) {
		t.Errorf("outvotes %+v, want %+v", rep.Outvotes, wantOutvotes)
	}

	var disagreeing []string
	for _, s := range rep.Disagreements {
		disagreeing = append(disagreeing, s.Subject)
	}
	if !reflect.DeepEqual(sortStrings(disagreeing), []string{path(6), path(7)}) {
		t.Errorf("disagreements %v", disagreeing)
	}
	for _, s := range rep.Disagreements {
		if s.Subject == path(6) {
			if len(s.Outputs) != 2 || !reflect.DeepEqual(s.Outputs[0].Builders, []string{"alice", "bob", "carol"}) ||
				!reflect.DeepEqual(s.Outputs[1].Builders, []string{"dave"}) {
				t.Errorf("outputs of the tampered subject %+v", s.Outputs)
			}
		}
	}
	onlyAlice := 0
	for _, s := range rep.BuiltByOne {
		if s.Subject == path(8) && s.Builder == "alice" && s.Others == 0 {
			onlyAlice++
		}
		if s.Subject == path(7) && s.Others != 3 {
			t.Errorf("non-reproducible %+v", s)
		}
	}
	if onlyAlice != 1 {
		t.Errorf("built by one %+v", rep.BuiltByOne)
	}

	logs := map[string]Log{}
	for _, l := range rep.Logs {
		logs[l.Builder] = l
	}
	if l := logs["alice"]; l.TreeSize != 9 || l.Indexed != 9 || l.Lag != 0 || l.Age != 90 || l.Error != "" {
		t.Errorf("alice's log %+v", l)
	}
	if l := logs["bob"]; l.Error != "connection refused" || l.Age != -1 || !l.LastChecked.Equal(now.Add(-10*time.Second)) ||
		!l.Unavailable || l.Failures != 1 || l.FailingSince == nil || !l.FailingSince.Equal(now.Add(-10*time.Second)) || l.StaleView || logs["alice"].Unavailable {
		t.Errorf("bob's log %+v", l)
	}
	var text strings.Builder
	if err := rep.WriteText(&text); err != nil || !strings.Contains(text.String(), "UNAVAILABLE (1 round since") {
		t.Errorf("the text report does not show bob unavailable (%v):\n%s", err, text.String())
	}
	if l := logs["carol"]; l.TreeSize != 10 || l.Indexed != 7 || l.Lag != 3 {
		t.Errorf("carol's log %+v", l)
	}

	assertMatchesDecide(t, w, rep)
}

// assertMatchesDecide checks the report's verdict of every subject against
// Policy.Decide on the same index, as `vouch verdict` computes it.
func assertMatchesDecide(t *testing.T, w *world, rep *Report) {
	t.Helper()
	if len(rep.Subjects) != rep.Totals.Subjects {
		t.Fatalf("%d subjects listed, %d counted", len(rep.Subjects), rep.Totals.Subjects)
	}
	for _, s := range rep.Subjects {
		v, err := w.policy.Decide(w.x, s.Kind, s.Subject)
		if err != nil {
			t.Fatal(err)
		}
		if v.Outcome != s.Outcome || v.Reason != s.Reason {
			t.Errorf("%s: report says %s (%s), verdict says %s (%s)", s.Subject, s.Outcome, s.Reason, v.Outcome, v.Reason)
		}
	}
}

func TestReportAfterEvidence(t *testing.T) {
	w := fourBuilders(t)
	if err := w.x.AddEvidence(w.ids["dave"], &index.Evidence{Kind: index.EvidenceSplitView, Summary: "two trees of one size"}); err != nil {
		t.Fatal(err)
	}
	rep, err := Build(w.x, w.policy, Options{AllSubjects: true, ListLimit: 1})
	if err != nil {
		t.Fatal(err)
	}
	// dave no longer counts: subject 6 is trusted, 1-5 stay trusted with
	// three builders; 7 is still a conflict among alice, bob and carol.
	if rep.Totals.Trusted != 6 || rep.Totals.Conflict != 1 || rep.Totals.Evidence != 1 {
		t.Errorf("totals %+v", rep.Totals)
	}
	// The lists are bounded, the totals are not.
	if len(rep.BuiltByOne) != 1 || rep.Totals.BuiltByOne != 6 || len(rep.Disagreements) != 1 {
		t.Errorf("bounded lists: %d built by one, %d disagreements", len(rep.BuiltByOne), len(rep.Disagreements))
	}
	for _, l := range rep.Logs {
		if (l.Builder == "dave") != (l.Compromised && l.Evidence == 1) {
			t.Errorf("log %+v", l)
		}
	}
	assertMatchesDecide(t, w, rep)
}

func sortStrings(s []string) []string {
	out := append([]string{}, s...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j] < out[i] {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestWriteText(t *testing.T) {
	w := fourBuilders(t)
	rep, err := Build(w.x, w.policy, Options{ListLimit: 1})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	if err := rep.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"subjects          9  5 trusted, 2 conflict, 2 insufficient",
		"outvoted          1  subjects where a builder's output lost",
		"non-reproducible  1  subjects with several outputs",
		"dave   7        7         1         1                 <- outvoted by a quorum",
		"dave logged nar-hash=",
		"71% (7)", // alice~dave: 5 of 7
		"88% (8)", // alice~bob: 7 of 8
		"carol  10    7        3",
		"… and 1 more",
		"      dave: nar-hash=",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("report text lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "mallory") {
		t.Errorf("an unlisted log appears in the report:\n%s", out)
	}
}
