package dashboard

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/follow"
	"github.com/vouch-dev/vouch/report"
	"github.com/vouch-dev/vouch/verdict"
)

var (
	sharedOnce  sync.Once
	sharedWorld *world
)

// theWorld builds the five-log world once for the tests that only read it.
func theWorld(t *testing.T) *world {
	sharedOnce.Do(func() { sharedWorld = newWorld(&keepT{T: t}) })
	if sharedWorld == nil {
		t.Fatal("building the test world failed")
	}
	return sharedWorld
}

// keepT keeps the shared world's servers and index alive for the whole
// test binary: its Cleanup is dropped, TempDir stays the first test's
// (removed when that test ends, so it must not be used after setup).
type keepT struct{ *testing.T }

func (k *keepT) Cleanup(f func()) { keptCleanups = append(keptCleanups, f) }

var keptCleanups []func()

func (k *keepT) TempDir() string {
	return mustTempDir()
}

func getJSON[T any](t *testing.T, w *world, target string) T {
	t.Helper()
	code, h, body := w.get(t, target)
	if code != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		t.Fatalf("GET %s: %d %s\n%s", target, code, h.Get("Content-Type"), trimBody(body))
	}
	var v T
	if err := json.Unmarshal([]byte(body), &v); err != nil {
		t.Fatalf("GET %s: %v", target, err)
	}
	return v
}

// TestOverviewMatchesReport: the overview's numbers are the report's, and
// the report's verdicts are vouch verdict's for every subject.
func TestOverviewMatchesReport(t *testing.T) {
	w := theWorld(t)
	o := getJSON[Overview](t, w, "/api/v1/overview")
	rep, err := report.Build(w.idx, w.policy, report.Options{AllSubjects: true})
	if err != nil {
		t.Fatal(err)
	}
	if o.Totals != rep.Totals {
		t.Errorf("overview totals %+v, report %+v", o.Totals, rep.Totals)
	}
	if o.Totals.Subjects != 14 || o.Totals.Evidence != 1 || o.Totals.Disagreements != 2 {
		t.Errorf("totals %+v: want 14 subjects, 1 evidence, 2 disagreements", o.Totals)
	}
	for _, s := range rep.Subjects {
		v, err := w.policy.Decide(w.idx, s.Kind, s.Subject)
		if err != nil || v.Outcome != s.Outcome {
			t.Errorf("%s: report says %s, Decide %s (%v)", s.Subject, s.Outcome, v.Outcome, err)
		}
		page := getJSON[SubjectPage](t, w, "/api/v1/subject?"+url.Values{"kind": {string(s.Kind)}, "s": {s.Subject}}.Encode())
		if page.Verdict.Outcome != s.Outcome {
			t.Errorf("%s: subject page says %s, report %s", s.Subject, page.Verdict.Outcome, s.Outcome)
		}
	}
	byName := map[string]BuilderView{}
	for _, b := range o.Builders {
		byName[b.Name] = b
	}
	if !byName["dave"].Compromised || len(byName["dave"].Evidence) != 1 || byName["alice"].Compromised {
		t.Errorf("builders: %+v", o.Builders)
	}
	if r := byName["carol"].AgreementRate; r == nil || *r >= *byName["alice"].AgreementRate {
		t.Errorf("carol (tampered and noisy) should agree less than alice: %v vs %v", r, byName["alice"].AgreementRate)
	}
	if len(o.Days) != 2 || o.Days[0].Day != "2026-03-01" || o.Days[0].Reproduced != 10 || o.Days[1].Disagreeing != 2 {
		t.Errorf("days: %+v", o.Days)
	}

	code, _, body := w.get(t, "/")
	if code != http.StatusOK {
		t.Fatalf("GET /: %d", code)
	}
	mustContain(t, "overview", body, "<svg", "agreement per builder", "reproducibility by day", `href="/builders/carol"`,
		`href="/evidence/1"`, "compromised", `<link rel="stylesheet" href="/assets/style.css">`)
}

// TestSubjectPage: each builder's claim with an inclusion proof that
// checks against the root the page shows, and the policy's verdict.
func TestSubjectPage(t *testing.T) {
	w := theWorld(t)
	path := storePath("tampered")
	p := getJSON[SubjectPage](t, w, "/api/v1/subject?s="+url.QueryEscape(path))
	if p.Verdict.Outcome != verdict.Trusted || len(p.Verdict.Disagreed) != 1 || p.Verdict.Disagreed[0].Builder != "carol" {
		t.Fatalf("verdict %+v", p.Verdict)
	}
	// Five claims: dave's too, shown compromised (its split view came
	// after its claims were verified).
	if len(p.Claims) != 5 || len(p.Outputs) != 2 {
		t.Fatalf("claims %d outputs %d, want 5 and 2", len(p.Claims), len(p.Outputs))
	}
	for _, c := range p.Claims {
		if c.Agrees == (c.Builder == "carol") {
			t.Errorf("%s: agrees = %v", c.Builder, c.Agrees)
		}
		var proof tlog.RecordProof
		for _, h := range c.Proof {
			proof = append(proof, mustHash(t, h))
		}
		if tlog.RecordHash([]byte(c.Entry)) != mustHash(t, c.LeafHash) {
			t.Errorf("%s: leaf hash is not the entry's", c.Builder)
		}
		if err := tlog.CheckRecord(proof, int64(c.TreeSize), mustHash(t, c.RootHash), int64(c.Index), mustHash(t, c.LeafHash)); err != nil {
			t.Errorf("%s: the inclusion proof shown does not check: %v", c.Builder, err)
		}
	}
	code, _, body := w.get(t, "/subject?kind=nix&s="+url.QueryEscape(path))
	if code != http.StatusOK {
		t.Fatalf("subject page: %d", code)
	}
	mustContain(t, "subject page", body, "trusted", path, "inclusion proof", `href="/builders/carol"`, "other output")

	for _, bad := range []string{"/subject?s=not-a-path", "/api/v1/subject?kind=bogus&s=x", "/subject?s=" + strings.Repeat("a", MaxQuery+1)} {
		if code, _, _ := w.get(t, bad); code != http.StatusBadRequest {
			t.Errorf("GET %s: %d, want 400", bad, code)
		}
	}
}

func mustHash(t *testing.T, s string) tlog.Hash {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil || len(b) != tlog.HashSize {
		t.Fatalf("%q is not a hex hash", s)
	}
	return tlog.Hash(b)
}

// TestSearch finds subjects by store path, path inside it, basename, hash
// part, NAR hash and image digest.
func TestSearch(t *testing.T) {
	w := theWorld(t)
	path := storePath("noise")
	want := "/subject?" + url.Values{"kind": {"nix"}, "s": {path}}.Encode()
	for _, q := range []string{path, path + "/bin/noise", strings.TrimPrefix(path, claim.StoreDir+"/"), claim.HashPart(path),
		"sha256:" + nix32("nar noise by bob", 52)} {
		code, h, body := w.get(t, "/search?q="+url.QueryEscape(q))
		if code != http.StatusSeeOther || h.Get("Location") != want {
			t.Errorf("search %q: %d %q, want a redirect to %s\n%s", q, code, h.Get("Location"), want, trimBody(body))
		}
	}
	digest := fmt.Sprintf("%x", sha256Sum("image"))
	s := getJSON[SearchPage](t, w, "/api/v1/search?q="+digest)
	if len(s.Matches) != 1 || s.Matches[0].Subject != xssSubject {
		t.Errorf("search by digest: %+v", s)
	}
	// Ten subjects share one NAR hash: a list, not a redirect.
	s = getJSON[SearchPage](t, w, "/api/v1/search?q=sha256:"+nix32("nar same", 52))
	if len(s.Matches) != 11 {
		t.Errorf("search by a shared NAR hash: %d matches, want 11", len(s.Matches))
	}
	s = getJSON[SearchPage](t, w, "/api/v1/search?q="+url.QueryEscape(storePath("never-built")))
	if len(s.Matches) != 0 || !strings.Contains(s.Note, "Nothing") {
		t.Errorf("search for an unknown path: %+v", s)
	}
	// By package name: the name without its version lists every version,
	// the whole name finds the one path.
	if code, h, _ := w.get(t, "/search?q=noise"); code != http.StatusSeeOther || h.Get("Location") != want {
		t.Errorf("search by package name noise: %d %q, want a redirect to %s", code, h.Get("Location"), want)
	}
	s = getJSON[SearchPage](t, w, "/api/v1/search?q=ok")
	if len(s.Matches) != 10 || !strings.Contains(s.Note, "package name") {
		t.Errorf("search by package name ok: %d matches, want ok-0 … ok-9 (%s)", len(s.Matches), s.Note)
	}
	s = getJSON[SearchPage](t, w, "/api/v1/search?q=ok-3")
	if len(s.Matches) != 1 || s.Matches[0].Subject != storePath("ok-3") {
		t.Errorf("search by full name ok-3: %+v", s.Matches)
	}
	if s = getJSON[SearchPage](t, w, "/api/v1/search?q=hello"); len(s.Matches) != 0 {
		t.Errorf("search for a name nobody built: %+v", s.Matches)
	}
	if code, _, _ := w.get(t, "/search?q="+strings.Repeat("x", MaxQuery+1)); code != http.StatusBadRequest {
		t.Errorf("an over-long query: %d, want 400", code)
	}
}

// TestConflicts lists the subjects with two or more outputs.
func TestConflicts(t *testing.T) {
	w := theWorld(t)
	c := getJSON[ConflictsPage](t, w, "/api/v1/conflicts")
	var got []string
	for _, s := range c.Subjects {
		got = append(got, s.Subject)
	}
	if c.Total != 2 || !strings.Contains(strings.Join(got, " "), storePath("noise")) || !strings.Contains(strings.Join(got, " "), storePath("tampered")) {
		t.Errorf("conflicts: %+v", c)
	}
	_, _, body := w.get(t, "/conflicts")
	mustContain(t, "conflicts page", body, storePath("noise"), "carol")
	if code, _, _ := w.get(t, "/conflicts?page=0"); code != http.StatusBadRequest {
		t.Errorf("page=0: %d", code)
	}
}

// TestEvidence: the alarm against dave, its page, and a download that is
// the export file, checkable with only dave's key.
func TestEvidence(t *testing.T) {
	w := theWorld(t)
	l := getJSON[EvidenceList](t, w, "/api/v1/evidence")
	if len(l.Evidence) != 1 || l.Evidence[0].Builder != "dave" {
		t.Fatalf("evidence: %+v", l)
	}
	id := l.Evidence[0].ID
	p := getJSON[EvidencePage](t, w, "/api/v1/evidence/"+id)
	if p.CheckError != "" || p.Check == "" {
		t.Errorf("evidence does not check: %+v", p)
	}
	code, _, body := w.get(t, "/evidence/"+id)
	if code != http.StatusOK {
		t.Fatalf("evidence page: %d", code)
	}
	mustContain(t, "evidence page", body, "split-view", `href="/evidence/`+id+`.json"`, "dave")

	code, h, file := w.get(t, "/evidence/"+id+".json")
	e, err := w.idx.EvidenceByID(id)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := follow.MarshalEvidence(e)
	if code != http.StatusOK || file != string(want) || !strings.Contains(h.Get("Content-Disposition"), "attachment") {
		t.Errorf("download: %d %v, not the export file", code, h)
	}
	var back struct{ VKey string }
	json.Unmarshal([]byte(file), &back)
	if back.VKey != w.logs["dave"].vkey {
		t.Errorf("the file's key is %q, want dave's", back.VKey)
	}
	for _, bad := range []string{"/evidence/99", "/evidence/x.json", "/evidence/-1", "/api/v1/evidence/1e3"} {
		if code, _, _ := w.get(t, bad); code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", bad, code)
		}
	}
}

// TestBuilders shows log health per builder.
func TestBuilders(t *testing.T) {
	w := theWorld(t)
	views := getJSON[[]BuilderView](t, w, "/api/v1/builders")
	if len(views) != 5 {
		t.Fatalf("%d builders", len(views))
	}
	for _, v := range views {
		if v.Name != "dave" && (v.TreeSize != 13 && v.TreeSize != 14 || v.Entries != v.TreeSize || v.LastOK.IsZero() || v.AgeSeconds < 0) {
			t.Errorf("%s: %+v", v.Name, v)
		}
	}
	// carol alone logged another output for "tampered", which alice, bob
	// and erin agree on: she is outvoted there. Every counted builder
	// logged its own output for "noise": nobody is singled out for it.
	for _, v := range views {
		wantOutvoted := 0
		if v.Name == "carol" {
			wantOutvoted = 1
		}
		if v.Outvoted != wantOutvoted {
			t.Errorf("%s outvoted on %d subjects, want %d", v.Name, v.Outvoted, wantOutvoted)
		}
		if v.Name != "dave" && v.NonReproducible != 1 {
			t.Errorf("%s non-reproducible on %d subjects, want 1 (noise)", v.Name, v.NonReproducible)
		}
	}
	code, body := 0, ""
	code, _, body = w.get(t, "/builders/carol")
	mustContain(t, "carol's page", body, "1 subject where its output lost against an agreeing quorum")
	code, _, body = w.get(t, "/builders/dave")
	if code != http.StatusOK {
		t.Fatalf("/builders/dave: %d", code)
	}
	mustContain(t, "dave's page", body, "compromised", `href="/evidence/1"`, "org-d", strings.ReplaceAll(w.logs["dave"].vkey, "+", "&#43;"))
	if code, _, _ := w.get(t, "/builders/mallory"); code != http.StatusNotFound {
		t.Errorf("an unknown builder: %d, want 404", code)
	}
}

// TestNotOwnedPaths404: the dashboard leaves every other role's paths
// alone, and only answers GET and HEAD.
func TestNotOwnedPaths404(t *testing.T) {
	w := theWorld(t)
	for _, p := range []string{"/nix-cache-info", "/" + nix32("x", 32) + ".narinfo", "/nar/abc.nar.xz", "/realisations/sha256:ab!out.doi",
		"/log/checkpoint", "/api/verdict", "/api/v1/nope", "/subjectsx", "/assets/nope.css", "/builders/", "/index.html"} {
		if code, _, _ := w.get(t, p); code != http.StatusNotFound {
			t.Errorf("GET %s: %d, want 404", p, code)
		}
	}
	rec := httptest.NewRecorder()
	w.h.ServeHTTP(rec, httptest.NewRequest(http.MethodPost, "/", strings.NewReader("x")))
	if rec.Code != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d, want 405", rec.Code)
	}
	rec = httptest.NewRecorder()
	w.h.ServeHTTP(rec, httptest.NewRequest(http.MethodHead, "/", nil))
	if rec.Code != http.StatusOK {
		t.Errorf("HEAD /: %d", rec.Code)
	}
	if code, h, _ := w.get(t, "/assets/style.css"); code != http.StatusOK || !strings.HasPrefix(h.Get("Content-Type"), "text/css") {
		t.Errorf("style.css: %d %s", code, h.Get("Content-Type"))
	}
}

// TestHostileTextIsEscaped: a subject made of markup, logged by two
// builders, and markup in queries never reach a page unescaped.
func TestHostileTextIsEscaped(t *testing.T) {
	w := theWorld(t)
	targets := []string{"/", "/subjects?limit=500", "/subject?" + url.Values{"kind": {"oci"}, "s": {xssSubject}}.Encode(),
		"/search?q=" + url.QueryEscape("<script>alert(3)</script>"), "/search?q=" + url.QueryEscape(`"><svg onload=alert(4)>`),
		"/subject?kind=oci&s=" + url.QueryEscape("<script>x</script>"), "/builders/" + url.PathEscape("<script>"),
		"/evidence/" + url.PathEscape("<b>")}
	for _, target := range targets {
		_, h, body := w.get(t, target)
		low := strings.ToLower(body)
		for _, bad := range []string{"<script", "<img", "<svg onload"} {
			if strings.Contains(low, bad) {
				t.Errorf("GET %s: the page contains %q unescaped", target, bad)
			}
		}
		if !strings.Contains(h.Get("Content-Security-Policy"), "default-src 'none'") {
			t.Errorf("GET %s: no restrictive Content-Security-Policy", target)
		}
	}
	_, _, body := w.get(t, "/subject?"+url.Values{"kind": {"oci"}, "s": {xssSubject}}.Encode())
	mustContain(t, "hostile subject page", body, "&lt;script&gt;alert(1)&lt;/script&gt;", "trusted")
}

// TestPanicIsA500: a panicking handler answers 500 and the server lives.
func TestPanicIsA500(t *testing.T) {
	w := theWorld(t)
	h, err := New(Options{Index: w.idx, Policy: w.policy, Config: w.cfg, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	d := h
	m := http.NewServeMux()
	m.HandleFunc("/", func(http.ResponseWriter, *http.Request) { panic("boom") })
	d.mux = m
	rec := httptest.NewRecorder()
	d.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
	if rec.Code != http.StatusInternalServerError || strings.Contains(rec.Body.String(), "boom") {
		t.Errorf("panic: %d %q", rec.Code, rec.Body.String())
	}
}

// TestPagination walks 5,000 subjects of a real log, a page at a time.
func TestPagination(t *testing.T) {
	if testing.Short() {
		t.Skip("logs 5,000 claims")
	}
	l := newTestLog(t, "alice", nil)
	const n = 5000
	var cs []*claim.Claim
	for i := range n {
		cs = append(cs, nixClaim(fmt.Sprintf("p%d", i), "x", day1))
	}
	l.add(cs...)
	cfg := &config.Config{State: t.TempDir(), Builders: []config.Builder{l.builder("org")}, Quorum: config.Quorum{Min: 1, MinOperators: 1}}
	cfg.Defaults()
	w := followWorld(t, cfg, map[string]*testLog{"alice": l})

	seen := map[string]bool{}
	pages := 0
	for after := ""; ; pages++ {
		p := getJSON[SubjectsPage](t, w, "/api/v1/subjects?limit=500&after="+after)
		for _, s := range p.Subjects {
			if seen[s.Subject] {
				t.Fatalf("%s on two pages", s.Subject)
			}
			seen[s.Subject] = true
			if s.Outcome != verdict.Trusted {
				t.Fatalf("%s: %s", s.Subject, s.Outcome)
			}
		}
		if p.Next == "" {
			break
		}
		after = p.Next
	}
	if len(seen) != n || pages != n/500-1 {
		t.Errorf("walked %d subjects in %d pages, want %d in %d", len(seen), pages+1, n, n/500)
	}
	// The HTML pages link to each other with the same cursors.
	code, _, body := w.get(t, "/subjects")
	first := getJSON[SubjectsPage](t, w, "/api/v1/subjects")
	if code != http.StatusOK || len(first.Subjects) != PageSize {
		t.Fatalf("first page: %d, %d rows", code, len(first.Subjects))
	}
	mustContain(t, "subjects page", body, `href="/subjects?after=`+first.Next+`"`, first.Subjects[0].Subject)
	for _, bad := range []string{"?limit=0", "?limit=501", "?after=zz", "?after=" + strings.Repeat("0", 17)} {
		if code, _, _ := w.get(t, "/api/v1/subjects"+bad); code != http.StatusBadRequest {
			t.Errorf("subjects%s: %d, want 400", bad, code)
		}
	}
}
