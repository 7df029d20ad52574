package dashboard

import (
	"encoding/hex"
	"fmt"
	"html/template"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/follow"
	"github.com/vouch-dev/vouch/index"
	"github.com/vouch-dev/vouch/report"
	"github.com/vouch-dev/vouch/verdict"
)

// Overview is the front page: /api/v1/overview.
type Overview struct {
	// Generated is when the numbers were computed; Stale is set when the
	// index has changed since (a new summary is on its way).
	Generated       time.Time         `json:"generated"`
	Stale           bool              `json:"stale"`
	SnapshotSeconds float64           `json:"snapshot_seconds"` // how long computing them took
	Policy          report.Policy     `json:"policy"`
	Totals          report.Totals     `json:"totals"`
	Builders        []BuilderView     `json:"builders"`
	Days            []Day             `json:"days"`
	Undated         int               `json:"undated"` // subjects whose claims carry no time
	Evidence        []EvidenceSummary `json:"evidence"`
	// Attention lists, worst first, the builders an operator should look
	// at: compromised, unavailable, shown a stale view, never synced,
	// outvoted.
	Attention []Attention `json:"attention"`

	AgreementChart template.HTML `json:"-"`
	Matrix         matrix        `json:"-"`
	DaysChart      template.HTML `json:"-"`
}

func (Overview) Title() string { return "vouch" }

// BuilderView is one configured builder and its log's health.
type BuilderView struct {
	Name     string `json:"name"`
	Operator string `json:"operator"`
	Weight   int    `json:"weight"`
	Log      string `json:"log"` // the log's URL
	KeyID    string `json:"key_id"`
	VKey     string `json:"vkey"`

	Entries     uint64 `json:"entries"`   // entries indexed
	Subjects    uint64 `json:"subjects"`  // distinct subjects it claimed
	TreeSize    uint64 `json:"tree_size"` // latest verified checkpoint; 0 before the first sync
	Lag         uint64 `json:"lag"`       // entries of that checkpoint not indexed yet
	Compromised bool   `json:"compromised"`
	// LastChecked and LastOK are when the last sync attempt and the last
	// successful one ended; AgeSeconds is how long ago the checkpoint was
	// last confirmed (-1: never).
	LastChecked time.Time `json:"last_checked"`
	LastOK      time.Time `json:"last_ok"`
	AgeSeconds  float64   `json:"age_seconds"`
	Error       string    `json:"error,omitempty"`
	Checkpoint  string    `json:"checkpoint,omitempty"` // the signed note, verbatim
	// Unavailable is set while the log's sync rounds fail: Failures in a
	// row since FailingSince (index.Health). Its verified claims still
	// count. StaleView: the last round was shown an older checkpoint.
	Unavailable  bool      `json:"unavailable"`
	Failures     int       `json:"failures"`
	FailingSince time.Time `json:"failing_since,omitzero"`
	StaleView    bool      `json:"stale_view"`

	// AgreementRate is the share of subjects it shares with other builders
	// on which their outputs are equal, over all other builders (nil when
	// it shares none). Agreement details it per builder.
	AgreementRate *float64           `json:"agreement_rate"`
	Agreement     []report.Agreement `json:"agreement"`
	// Outvoted counts the subjects where its output lost against an
	// agreeing quorum; NonReproducible those where its output was one of
	// several and none had a quorum majority (package report).
	Outvoted        int               `json:"outvoted"`
	NonReproducible int               `json:"non_reproducible"`
	Evidence        []EvidenceSummary `json:"evidence"`
}

func (b BuilderView) Title() string { return "builder " + b.Name }

// EvidenceSummary is one alarm in a list.
type EvidenceSummary struct {
	ID      string             `json:"id"`
	Kind    index.EvidenceKind `json:"kind"`
	Builder string             `json:"builder"`
	Time    time.Time          `json:"time"`
	Summary string             `json:"summary"`
	Proven  bool               `json:"proven"` // convinces a third party on its own
}

func summarise(e *index.Evidence) EvidenceSummary {
	return EvidenceSummary{ID: e.ID, Kind: e.Kind, Builder: e.Builder, Time: e.Time, Summary: e.Summary, Proven: e.Proven()}
}

func (d *Dashboard) overview(r *http.Request) (string, any, error) {
	s, stale, err := d.snapshot(r.Context())
	if err != nil {
		return "", nil, err
	}
	builders, evidence, err := d.builderViews(s)
	if err != nil {
		return "", nil, err
	}
	o := Overview{Generated: s.built.UTC(), Stale: stale, SnapshotSeconds: s.took.Seconds(),
		Policy: s.report.Policy, Totals: s.report.Totals, Builders: builders, Days: s.days, Undated: s.undated,
		Evidence: evidence}
	if o.Days == nil {
		o.Days = []Day{}
	}
	o.Attention = attention(builders, d.cfg.Follow.Interval.Duration, d.now())
	o.AgreementChart = agreementChart(builders)
	o.Matrix = agreementMatrix(s.report.Builders)
	o.DaysChart = daysChart(s.days)
	return "overview", o, nil
}

// builderViews joins the config, the live log states, the snapshot's
// agreement numbers and the evidence, one view per configured builder.
func (d *Dashboard) builderViews(s *snapshot) ([]BuilderView, []EvidenceSummary, error) {
	stats, err := d.idx.Stats()
	if err != nil {
		return nil, nil, err
	}
	all, err := d.idx.Evidence()
	if err != nil {
		return nil, nil, err
	}
	evidence := make([]EvidenceSummary, 0, len(all))
	for i := len(all) - 1; i >= 0; i-- { // newest first
		evidence = append(evidence, summarise(all[i]))
	}
	agreement := map[string]report.Builder{}
	if s != nil {
		for _, b := range s.report.Builders {
			agreement[b.Name] = b
		}
	}
	now := d.now()
	var views []BuilderView
	for _, st := range stats {
		v := BuilderView{Name: st.Name, KeyID: st.KeyID, Entries: st.Synced, Subjects: st.Subjects, Lag: st.Pending,
			Compromised: st.Compromised, LastChecked: st.Health.Checked, LastOK: st.Health.OK, AgeSeconds: -1,
			Error: st.Health.Error, Agreement: []report.Agreement{}, Evidence: []EvidenceSummary{}}
		for _, b := range d.cfg.Builders {
			if b.Name == st.Name {
				v.Operator, v.Weight, v.Log, v.VKey = b.Operator, b.Weight, b.Log, b.VKey
			}
		}
		if v.Operator == "" {
			v.Operator = v.Name
		}
		if st.Checkpoint != nil {
			v.TreeSize = st.Checkpoint.Size
			v.Checkpoint = string(st.Checkpoint.Note)
		}
		if !st.Health.OK.IsZero() {
			v.AgeSeconds = now.Sub(st.Health.OK).Seconds()
		}
		if h := st.Health; h.Unavailable() && !st.Compromised {
			v.Unavailable, v.Failures, v.FailingSince, v.StaleView = true, h.Failures, h.FailingSince, h.Stale
		}
		if b, ok := agreement[st.Name]; ok {
			v.Agreement = b.Agreement
			v.Outvoted, v.NonReproducible = b.Outvoted, b.NonReproducible
			shared, agreed := 0, 0
			for _, a := range b.Agreement {
				shared += a.Shared
				agreed += a.Agreed
			}
			if shared > 0 {
				rate := float64(agreed) / float64(shared)
				v.AgreementRate = &rate
			}
		}
		for _, e := range evidence {
			if e.Builder == st.Name {
				v.Evidence = append(v.Evidence, e)
			}
		}
		views = append(views, v)
	}
	return views, evidence, nil
}

func (d *Dashboard) builders(r *http.Request) (string, any, error) {
	s, _, err := d.snapshot(r.Context())
	if err != nil {
		return "", nil, err
	}
	views, _, err := d.builderViews(s)
	if err != nil {
		return "", nil, err
	}
	return "", views, nil
}

func (d *Dashboard) builder(r *http.Request) (string, any, error) {
	name := r.PathValue("name")
	if _, ok := d.idx.Configured(name); !ok {
		return "", nil, notFound("no builder %q is configured on this node", trunc(name))
	}
	s, _, err := d.snapshot(r.Context())
	if err != nil {
		return "", nil, err
	}
	views, _, err := d.builderViews(s)
	if err != nil {
		return "", nil, err
	}
	for _, v := range views {
		if v.Name == name {
			return "builder", v, nil
		}
	}
	return "", nil, notFound("no builder %q is configured on this node", trunc(name))
}

// SubjectRow is one subject in a list: its outputs and verdict.
type SubjectRow = report.Subject

// SubjectsPage is one page of every subject: /api/v1/subjects.
type SubjectsPage struct {
	Subjects []SubjectRow `json:"subjects"`
	// Next is the cursor of the following page ("" on the last page):
	// pass it as after=.
	Next  string `json:"next"`
	After string `json:"-"`
}

func (SubjectsPage) Title() string { return "subjects" }

func limitParam(r *http.Request) (int, error) {
	s := r.URL.Query().Get("limit")
	if s == "" {
		return PageSize, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxPageSize {
		return 0, badRequest("limit must be a number from 1 to %d", MaxPageSize)
	}
	return n, nil
}

func (d *Dashboard) subjects(r *http.Request) (string, any, error) {
	after := r.URL.Query().Get("after")
	if len(after) > 16 {
		return "", nil, badRequest("after must be a cursor from a previous page")
	}
	limit, err := limitParam(r)
	if err != nil {
		return "", nil, err
	}
	page, next, err := d.idx.Subjects(after, limit)
	if err != nil {
		if after != "" {
			return "", nil, badRequest("after must be a cursor from a previous page: %v", err)
		}
		return "", nil, err
	}
	p := SubjectsPage{Subjects: make([]SubjectRow, 0, len(page)), Next: next, After: after}
	for _, s := range page {
		p.Subjects = append(p.Subjects, d.row(s.Kind, s.Subject, s.Claims))
	}
	return "subjects", p, nil
}

// row decides one subject the way report.Build does.
func (d *Dashboard) row(kind claim.Kind, subject string, claims []verdict.Entry) SubjectRow {
	v := d.policy.DecideEntries(claims, d.idx.Compromised)
	return SubjectRow{Kind: kind, Subject: subject, Outcome: v.Outcome, Reason: v.Reason, Outputs: outputsOf(claims)}
}

// outputsOf groups claims by output, most builders first, as reports do.
func outputsOf(claims []verdict.Entry) []report.Output {
	var out []report.Output
	for _, e := range claims {
		o := e.Claim.Output()
		i := slices.IndexFunc(out, func(x report.Output) bool { return x.Output == o })
		if i < 0 {
			out = append(out, report.Output{Output: o})
			i = len(out) - 1
		}
		if !slices.Contains(out[i].Builders, e.Builder) {
			out[i].Builders = append(out[i].Builders, e.Builder)
		}
	}
	for i := range out {
		slices.Sort(out[i].Builders)
	}
	slices.SortStableFunc(out, func(a, b report.Output) int {
		if len(a.Builders) != len(b.Builders) {
			return len(b.Builders) - len(a.Builders)
		}
		return strings.Compare(a.Output, b.Output)
	})
	return out
}

// SubjectPage is one subject: /api/v1/subject.
type SubjectPage struct {
	Kind    claim.Kind      `json:"kind"`
	Subject string          `json:"subject"`
	Verdict verdict.Verdict `json:"verdict"`
	Outputs []report.Output `json:"outputs"`
	Claims  []ClaimView     `json:"claims"`
}

func (p SubjectPage) Title() string { return string(p.Verdict.Outcome) + ": " + p.Subject }

// ClaimView is one builder's claim with its inclusion proof.
type ClaimView struct {
	Builder     string `json:"builder"`
	Compromised bool   `json:"compromised"`
	Agrees      bool   `json:"agrees"` // its output is the verdict's value
	// Stand is how its output fares, in words for the badge: "agrees" (the
	// trusted value), "leading output" (most votes, not trusted),
	// "outvoted" (lost against an agreeing quorum), or "other output".
	Stand      string   `json:"stand"`
	Output     string   `json:"output"`
	OutPath    string   `json:"out_path,omitempty"`
	NarHash    string   `json:"nar_hash,omitempty"`
	NarSize    uint64   `json:"nar_size,omitempty"`
	References []string `json:"references,omitempty"`
	Digest     string   `json:"digest,omitempty"`
	Deriver    string   `json:"deriver,omitempty"`
	Time       string   `json:"time,omitempty"`
	Entry      string   `json:"entry"` // the log entry, verbatim
	// Index is the entry's position in the builder's log; LeafHash its
	// RFC 6962 leaf hash, Proof the inclusion proof of that leaf in the
	// tree of size TreeSize whose signed root is RootHash (all hex).
	Index    uint64   `json:"index"`
	TreeSize uint64   `json:"tree_size"`
	LeafHash string   `json:"leaf_hash"`
	RootHash string   `json:"root_hash"`
	Proof    []string `json:"proof"`
	ProofErr string   `json:"proof_error,omitempty"`
}

func subjectParams(r *http.Request) (claim.Kind, string, error) {
	q := r.URL.Query()
	kind, subject := claim.Kind(q.Get("kind")), q.Get("s")
	if len(subject) > MaxQuery {
		return "", "", badRequest("the subject is longer than %d bytes", MaxQuery)
	}
	if kind == "" {
		kind = claim.KindNix
	}
	if err := verdict.CheckSubject(kind, subject); err != nil {
		return "", "", badRequest("want ?kind=nix|nix-ca|oci&s=SUBJECT: %v", err)
	}
	return kind, subject, nil
}

func (d *Dashboard) subject(r *http.Request) (string, any, error) {
	kind, subject, err := subjectParams(r)
	if err != nil {
		return "", nil, err
	}
	v, err := d.policy.Decide(d.idx, kind, subject)
	if err != nil {
		return "", nil, err
	}
	claims, err := d.idx.Claims(kind, subject)
	if err != nil {
		return "", nil, err
	}
	p := SubjectPage{Kind: kind, Subject: subject, Verdict: v, Outputs: outputsOf(claims), Claims: []ClaimView{}}
	if p.Outputs == nil {
		p.Outputs = []report.Output{}
	}
	roots := map[string]string{}
	for _, e := range claims {
		c := e.Claim
		cv := ClaimView{Builder: e.Builder, Compromised: d.idx.Compromised(e.Builder), Output: c.Output(),
			OutPath: c.OutPath, NarHash: c.NarHash, NarSize: c.NarSize, References: c.References, Digest: c.Digest,
			Deriver: c.Deriver, Index: e.Index, Proof: []string{}}
		cv.Agrees = v.Value != nil && v.Value.Output() == cv.Output
		cv.Stand = standOf(v, cv.Output)
		if !c.Time.IsZero() {
			cv.Time = c.Time.UTC().Format(time.RFC3339)
		}
		if id, ok := d.idx.Configured(e.Builder); ok {
			if raw, err := d.idx.Entry(id, e.Index); err == nil {
				cv.Entry = string(raw)
				h := tlog.RecordHash(raw)
				cv.LeafHash = hex.EncodeToString(h[:])
			}
			if _, ok := roots[e.Builder]; !ok {
				if st, err := d.idx.State(id); err == nil && st.Complete != nil {
					roots[e.Builder] = hex.EncodeToString(st.Complete.Root[:])
				}
			}
			cv.RootHash = roots[e.Builder]
		}
		size, proof, err := d.idx.InclusionProof(e.Builder, e.Index)
		if err != nil {
			cv.ProofErr = err.Error()
		}
		cv.TreeSize = size
		for _, h := range proof {
			cv.Proof = append(cv.Proof, hex.EncodeToString(h))
		}
		p.Claims = append(p.Claims, cv)
	}
	return "subject", p, nil
}

// ConflictsPage lists the subjects with two or more outputs:
// /api/v1/conflicts.
type ConflictsPage struct {
	Generated time.Time `json:"generated"`
	Stale     bool      `json:"stale"`
	// Total counts every such subject; Listed how many the summary keeps
	// (at most ConflictsKept), which is what the pages go through.
	Total    int          `json:"total"`
	Listed   int          `json:"listed"`
	Page     int          `json:"page"` // from 1
	Pages    int          `json:"pages"`
	Subjects []SubjectRow `json:"subjects"`
}

func (ConflictsPage) Title() string { return "conflicts" }

func (p ConflictsPage) Prev() int { return p.Page - 1 }
func (p ConflictsPage) Next() int {
	if p.Page >= p.Pages {
		return 0
	}
	return p.Page + 1
}

func (d *Dashboard) conflicts(r *http.Request) (string, any, error) {
	page := 1
	if s := r.URL.Query().Get("page"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > ConflictsKept {
			return "", nil, badRequest("page must be a number from 1")
		}
		page = n
	}
	limit, err := limitParam(r)
	if err != nil {
		return "", nil, err
	}
	s, stale, err := d.snapshot(r.Context())
	if err != nil {
		return "", nil, err
	}
	list := s.report.Disagreements
	p := ConflictsPage{Generated: s.built.UTC(), Stale: stale, Total: s.report.Totals.Disagreements, Listed: len(list),
		Page: page, Pages: max(1, (len(list)+limit-1)/limit), Subjects: []SubjectRow{}}
	if from := (page - 1) * limit; from < len(list) {
		p.Subjects = list[from:min(len(list), from+limit)]
	}
	return "conflicts", p, nil
}

// EvidenceList is every alarm: /api/v1/evidence.
type EvidenceList struct {
	Evidence []EvidenceSummary `json:"evidence"`
}

func (EvidenceList) Title() string { return "evidence" }

func (d *Dashboard) evidenceList(r *http.Request) (string, any, error) {
	all, err := d.idx.Evidence()
	if err != nil {
		return "", nil, err
	}
	l := EvidenceList{Evidence: make([]EvidenceSummary, 0, len(all))}
	for i := len(all) - 1; i >= 0; i-- {
		l.Evidence = append(l.Evidence, summarise(all[i]))
	}
	return "evidence-list", l, nil
}

// EvidencePage is one alarm: /api/v1/evidence/ID. Check is what checking
// the evidence file with only the builder's verifier key establishes
// (follow.VerifyEvidence), CheckError why it did not check.
type EvidencePage struct {
	Evidence   *index.Evidence `json:"evidence"`
	Proven     bool            `json:"proven"`
	Check      string          `json:"check,omitempty"`
	CheckError string          `json:"check_error,omitempty"`
	Download   string          `json:"download"` // path of the exportable file
	Entries    []string        `json:"-"`
}

func (p EvidencePage) Title() string {
	return "evidence " + p.Evidence.ID + ": " + string(p.Evidence.Kind)
}

func (d *Dashboard) lookupEvidence(id string) (*index.Evidence, error) {
	if id == "" || len(id) > 20 || strings.Trim(id, "0123456789") != "" {
		return nil, notFound("evidence ids are numbers; /evidence lists them")
	}
	e, err := d.idx.EvidenceByID(id)
	if err != nil {
		return nil, notFound("%v", err)
	}
	return e, nil
}

func (d *Dashboard) evidence(r *http.Request) (string, any, error) {
	e, err := d.lookupEvidence(r.PathValue("id"))
	if err != nil {
		return "", nil, err
	}
	p := EvidencePage{Evidence: e, Proven: e.Proven(), Download: "/evidence/" + e.ID + ".json"}
	if p.Check, err = follow.VerifyEvidence(e, e.VKey); err != nil {
		p.CheckError = err.Error()
	}
	for _, c := range e.Claims {
		p.Entries = append(p.Entries, string(c.Entry))
	}
	return "evidence", p, nil
}

// evidencePage serves /evidence/ID (the page) and /evidence/ID.json (the
// exportable file, the bytes `vouch evidence export` writes).
func (d *Dashboard) evidencePage(w http.ResponseWriter, r *http.Request) {
	id, isFile := strings.CutSuffix(r.PathValue("id"), ".json")
	if !isFile {
		d.renderPage(w, r, d.evidence)
		return
	}
	e, err := d.lookupEvidence(id)
	if err != nil {
		status, msg := statusOf(err)
		http.Error(w, msg, status)
		return
	}
	b, err := follow.MarshalEvidence(e)
	if err != nil {
		http.Error(w, "encoding the evidence: "+err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=\"vouch-evidence-%s.json\"", e.ID))
	w.Write(b)
}

// SearchPage is the answer to a search: /api/v1/search.
type SearchPage struct {
	Query   string       `json:"query"`
	Matches []SubjectRow `json:"matches"`
	// Note says what the query was taken for, or why nothing matched.
	Note string `json:"note"`
}

func (SearchPage) Title() string { return "search" }

func (d *Dashboard) search(r *http.Request) (string, any, error) {
	q := strings.TrimSpace(r.URL.Query().Get("q"))
	if len(q) > MaxQuery {
		return "", nil, badRequest("the query is longer than %d bytes", MaxQuery)
	}
	p := SearchPage{Query: q, Matches: []SubjectRow{}}
	if q == "" {
		p.Note = "Type a package name (hello, or hello-2.12), a store path, a subject, a store path's hash part, a NAR hash or an image digest."
		return "search", p, nil
	}
	exact, byToken, note := parseQuery(q)
	p.Note = note
	seen := map[string]bool{}
	add := func(kind claim.Kind, subject string, claims []verdict.Entry) {
		key := string(kind) + " " + subject
		if len(claims) == 0 || seen[key] || len(p.Matches) >= PageSize {
			return
		}
		seen[key] = true
		p.Matches = append(p.Matches, d.row(kind, subject, claims))
	}
	for _, ks := range exact {
		claims, err := d.idx.Claims(ks.kind, ks.subject)
		if err != nil {
			return "", nil, err
		}
		add(ks.kind, ks.subject, claims)
	}
	if len(byToken) > 0 && len(p.Matches) == 0 {
		s, _, err := d.snapshot(r.Context())
		if err != nil {
			return "", nil, err
		}
		for _, tok := range byToken {
			for _, key := range s.find(tok[0], tok[1]) {
				subs, err := d.subjectsAt(key)
				if err != nil {
					return "", nil, err
				}
				for _, sub := range subs {
					if holds(sub, tok) && (tok[0] != "name" || nameMatches(sub, q)) {
						add(sub.Kind, sub.Subject, sub.Claims)
					}
				}
			}
		}
	}
	if len(p.Matches) == 0 {
		p.Note += " Nothing in the index matches."
	}
	return "search", p, nil
}

// searchPage is search for browsers: one match goes straight to its page.
func (d *Dashboard) searchPage(r *http.Request) (string, any, error) {
	name, data, err := d.search(r)
	if p, ok := data.(SearchPage); ok && err == nil && len(p.Matches) == 1 {
		return name, redirect(subjectURL(p.Matches[0].Kind, p.Matches[0].Subject)), nil
	}
	return name, data, err
}

// subjectsAt returns the subjects stored under the index key key.
func (d *Dashboard) subjectsAt(key uint64) ([]index.Subject, error) {
	after := ""
	if key > 0 {
		after = fmt.Sprintf("%016x", key-1)
	}
	page, _, err := d.idx.Subjects(after, 1)
	var out []index.Subject
	for _, s := range page {
		if subjectKey(s.Kind, s.Subject) == key {
			out = append(out, s)
		}
	}
	return out, err
}

// holds reports whether a subject has a claim with the token.
func holds(s index.Subject, tok [2]string) bool {
	for _, e := range s.Claims {
		if slices.Contains(tokens(e.Claim), tok) {
			return true
		}
	}
	return false
}

type kindSubject struct {
	kind    claim.Kind
	subject string
}

// parseQuery says what a search query can be: subjects to look up
// exactly, search tokens to look up in the snapshot, and a note saying
// what the query was taken for.
func parseQuery(q string) (exact []kindSubject, byToken [][2]string, note string) {
	// A path inside a store path, or a store path's basename.
	if rest, ok := strings.CutPrefix(q, claim.StoreDir+"/"); ok {
		base, _, _ := strings.Cut(rest, "/")
		path := claim.StoreDir + "/" + base
		if claim.ValidStorePath(path) == nil {
			return []kindSubject{{claim.KindNix, path}}, [][2]string{{"hash", claim.HashPart(path)}}, "Taken as the store path " + path + "."
		}
	}
	if claim.ValidStorePath(claim.StoreDir+"/"+q) == nil {
		path := claim.StoreDir + "/" + q
		return []kindSubject{{claim.KindNix, path}}, [][2]string{{"hash", claim.HashPart(path)}}, "Taken as the store path " + path + "."
	}
	if len(q) == 32 && claim.ValidStorePath(claim.StoreDir+"/"+q+"-x") == nil {
		return nil, [][2]string{{"hash", q}}, "Taken as a store path's hash part."
	}
	for _, kind := range []claim.Kind{claim.KindNixCA, claim.KindOCI} {
		if verdict.CheckSubject(kind, q) == nil {
			return []kindSubject{{kind, q}}, nil, "Taken as a " + string(kind) + " subject."
		}
	}
	if hexDigest(q) {
		return nil, [][2]string{{"output", "sha256:" + q}}, "Taken as an image digest."
	}
	if h, ok := strings.CutPrefix(q, "sha256:"); ok {
		if hexDigest(h) {
			return nil, [][2]string{{"output", q}}, "Taken as an image digest."
		}
		return nil, [][2]string{{"output", q}}, "Taken as a NAR hash."
	}
	if validPackageName(q) && packageName(q) != "" {
		return nil, [][2]string{{"name", packageName(q)}}, "Taken as a package name."
	}
	return nil, nil, "Not a package name, store path, subject, hash part, NAR hash or digest."
}

// validPackageName reports whether q can be (the start of) a store path's
// name: the characters Nix allows in one, not starting with a dot.
func validPackageName(q string) bool {
	if q == "" || len(q) > 211 || q[0] == '.' {
		return false
	}
	for i := 0; i < len(q); i++ {
		c := q[i]
		if !(isLetter(c) || c >= '0' && c <= '9' || strings.IndexByte("+-._?=", c) >= 0) {
			return false
		}
	}
	return true
}

// nameMatches reports whether a subject's store path is named q: the
// whole name ("hello-2.12"), or its package name ("hello").
func nameMatches(s index.Subject, q string) bool {
	for _, e := range s.Claims {
		p := e.Claim.Subject
		if e.Claim.Kind == claim.KindNixCA {
			p = e.Claim.OutPath
		}
		if n := pathName(p); n == q || packageName(n) == q {
			return true
		}
	}
	return false
}

func hexDigest(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil && strings.ToLower(s) == s
}

func subjectURL(kind claim.Kind, subject string) string {
	return "/subject?" + url.Values{"kind": {string(kind)}, "s": {subject}}.Encode()
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "…"
	}
	return s
}
