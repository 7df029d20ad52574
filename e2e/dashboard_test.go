package e2e

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/vouch-dev/vouch/dashboard"
	"github.com/vouch-dev/vouch/index"
	"github.com/vouch-dev/vouch/keys"
	"github.com/vouch-dev/vouch/report"
	"github.com/vouch-dev/vouch/verdict"
)

// screenshotDir is where the browser's screenshots are kept (relative to
// this package: the repository's artifacts/, which git ignores).
const screenshotDir = "../artifacts/screenshots"

// browser drives Debian's headless chromium.
type browser struct {
	t   *testing.T
	bin string
}

func newBrowser(t *testing.T) *browser {
	for _, name := range []string{"chromium", "chromium-browser"} {
		if bin, err := exec.LookPath(name); err == nil {
			return &browser{t: t, bin: bin}
		}
	}
	t.Fatal("chromium is not on PATH; install it (apt-get install -y chromium; scripts/install-deps.sh does)")
	return nil
}

func (b *browser) run(args ...string) []byte {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	all := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + b.t.TempDir()}, args...)
	cmd := exec.CommandContext(ctx, b.bin, all...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		b.t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// dom loads url and returns the DOM the browser rendered.
func (b *browser) dom(url string) string {
	b.t.Helper()
	return string(b.run("--dump-dom", url))
}

// screenshot saves what the browser shows at url, width×height.
func (b *browser) screenshot(url, name string, width, height int) string {
	b.t.Helper()
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	file, err := filepath.Abs(filepath.Join(screenshotDir, name))
	if err != nil {
		b.t.Fatal(err)
	}
	os.Remove(file)
	b.run("--hide-scrollbars", fmt.Sprintf("--window-size=%d,%d", width, height), "--screenshot="+file, url)
	if st, err := os.Stat(file); err != nil || st.Size() < 1000 {
		b.t.Fatalf("no screenshot of %s in %s (%v)", url, file, err)
	}
	return file
}

// splitViewProxy serves the log at target honestly until forge is
// called; from then on its checkpoint is one of the same size with another
// root, signed with the builder's own key (keyFile): what a log showing
// two histories serves, and proof against it.
func splitViewProxy(t *testing.T, target, keyFile string) (logURL string, forge func()) {
	var forged atomic.Pointer[[]byte]
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if cp := forged.Load(); cp != nil && r.URL.Path == "/log/checkpoint" {
			w.Write(*cp)
			return
		}
		resp, err := http.Get(strings.TrimSuffix(target, "/") + strings.TrimPrefix(r.URL.Path, "/log"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		w.WriteHeader(resp.StatusCode)
		w.Write(body)
	}))
	t.Cleanup(srv.Close)
	return srv.URL + "/log/", func() {
		id, err := keys.LoadIdentity(keyFile)
		if err != nil {
			t.Fatal(err)
		}
		raw, err := httpGet(strings.TrimSuffix(target, "/") + "/checkpoint")
		if err != nil {
			t.Fatal(err)
		}
		cp, err := index.ParseCheckpointBody(raw)
		if err != nil {
			t.Fatal(err)
		}
		other := sha256.Sum256([]byte("another history"))
		msg, err := note.Sign(&note.Note{Text: fmt.Sprintf("%s\n%d\n%s\n", cp.Origin, cp.Size, base64.StdEncoding.EncodeToString(other[:]))}, id.Signer)
		if err != nil {
			t.Fatal(err)
		}
		forged.Store(&msg)
	}
}

var hrefRe = regexp.MustCompile(`href="([^"]+)"`)

// link returns the first href in dom that contains all of parts.
func link(t *testing.T, dom string, parts ...string) string {
	t.Helper()
	for _, m := range hrefRe.FindAllStringSubmatch(dom, -1) {
		href := html.UnescapeString(m[1])
		ok := true
		for _, p := range parts {
			ok = ok && strings.Contains(href, p)
		}
		if ok {
			return href
		}
	}
	t.Fatalf("no link with %q on the page:\n%s", parts, dom)
	return ""
}

func must(t *testing.T, what, dom string, wants ...string) {
	t.Helper()
	for _, w := range wants {
		if !strings.Contains(dom, w) {
			t.Errorf("%s: %q is not on screen", what, w)
		}
	}
}

// TestDashboardInBrowser: a node that follows the four-builder world (and
// a fifth log that shows two histories, which raises an alarm) serves the
// dashboard; a real browser finds the tampering builder, the
// non-reproducible path and the evidence, and the numbers agree with
// vouch verdict and vouch report.
func TestDashboardInBrowser(t *testing.T) {
	w := buildWorld4(t)
	br := newBrowser(t)

	// b5 logs one honest claim, then shows the follower another tree of
	// the same size, signed with its key.
	b5 := startDaemon(t, t.TempDir(), w.stores[0])
	if out, code := vouch(t, "submit", "--state", b5.State, "--store", b5.Store, w.paths["a"]); code != 0 {
		t.Fatalf("vouch submit: %s", out)
	}
	waitForClaims(t, b5, 1)
	b5Keys, _ := filepath.Glob(filepath.Join(b5.State, "keys", "*.key"))
	if len(b5Keys) != 1 {
		t.Fatalf("b5's key files: %v", b5Keys)
	}
	b5URL, forgeB5 := splitViewProxy(t, b5.LogURL(), b5Keys[0])

	state := t.TempDir()
	extra := fmt.Sprintf("dashboard = true\n\n[[builder]]\nname = \"b5\"\nvkey = %q\nlog = %q\noperator = \"org5\"\n", b5.VKey, b5URL)
	cfg := w.followerConfig(t, state, []string{"org1", "org1", "org2", "org3"}, "min = 3\nmin-operators = 2\non-conflict = \"majority\"", extra)
	// A fixed port, so that vouch report can find the node that holds
	// the index.
	listen := freeAddr(t)
	raw, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, []byte(strings.Replace(string(raw), `listen = "127.0.0.1:0"`, fmt.Sprintf("listen = %q", listen), 1)), 0o644)
	out, code := vouch(t, "sync", "--config", cfg)
	t.Logf("vouch sync: exit %d\n%s", code, out)
	forgeB5()
	out, code = vouch(t, "sync", "--config", cfg)
	t.Logf("vouch sync (b5 shows another tree): exit %d\n%s", code, out)

	// What vouch verdict says of every subject, before the node holds the index.
	verdicts := map[string]verdict.Outcome{}
	for _, attr := range []string{"a", "b", "c", "multi", "multi-dev", "ca", "noise", "tamperme"} {
		v, _ := verdictJSON(t, cfg, w.paths[attr])
		verdicts["nix "+w.paths[attr]] = v.Outcome
	}

	node := startDaemon(t, state, "", "--config", cfg, "--listen", listen)
	base := "http://" + node.Addr

	// Overview: the builders, the alarm, the plots.
	dom := br.dom(base + "/")
	must(t, "overview", dom, "b1", "b2", "b3", "b4", "b5", "compromised", "Agreement per builder", "Builder by builder", "Reproducibility by day")
	br.screenshot(base+"/", "overview.png", 1280, 2000)
	br.screenshot(base+"/", "overview-phone.png", 390, 1800)

	// Conflicts: the tampered path (b4 outvoted) and the non-reproducible one.
	dom = br.dom(base + "/conflicts")
	must(t, "conflicts", dom, w.paths["tamperme"], w.paths["noise"])
	br.screenshot(base+"/conflicts", "conflicts.png", 1280, 1400)

	// Follow the link to the non-reproducible path.
	noise := base + link(t, dom, "/subject?", url.QueryEscape(w.paths["noise"]))
	dom = br.dom(noise)
	must(t, "noise page", dom, w.paths["noise"], "inclusion proof")
	if strings.Contains(dom, `badge trusted">trusted`) {
		t.Errorf("the non-reproducible path is shown trusted")
	}
	br.screenshot(noise, "subject-noise.png", 1280, 2400)

	// Follow the link to the tampered path: trusted by b1–b3, b4 disagrees.
	tamper := base + link(t, br.dom(base+"/conflicts"), "/subject?", url.QueryEscape(w.paths["tamperme"]))
	dom = br.dom(tamper)
	must(t, "tamperme page", dom, "trusted", "disagreed", `href="/builders/b4"`, "other output")
	br.screenshot(tamper, "subject-tamperme.png", 1280, 2400)

	// The tampering builder's page, and the split view's alarm.
	dom = br.dom(base + "/builders/b4")
	must(t, "b4 page", dom, "Builder b4", "Agreement with each builder")
	br.screenshot(base+"/builders/b4", "builder-b4.png", 1280, 1400)
	evidence := base + link(t, br.dom(base+"/"), "/evidence/")
	dom = br.dom(evidence)
	must(t, "evidence page", dom, "split-view", "b5", "download the evidence file")
	br.screenshot(evidence, "evidence.png", 1280, 1600)

	// The download is the export file: it checks with only b5's key.
	file := filepath.Join(t.TempDir(), "evidence.json")
	body, err := httpGet(base + link(t, dom, ".json"))
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(file, body, 0o644)
	if out, code := vouch(t, "evidence", "verify", file, b5.VKey); code != 0 {
		t.Errorf("vouch evidence verify of the downloaded file: exit %d\n%s", code, out)
	}

	// Search by hash part lands on the subject page.
	hash := strings.TrimPrefix(w.paths["noise"], "/nix/store/")[:32]
	dom = br.dom(base + "/search?q=" + hash)
	must(t, "search by hash part", dom, w.paths["noise"], "inclusion proof")

	// Numbers: every subject's verdict on the dashboard is vouch verdict's
	// (asked while the node holds the index), and the overview's totals
	// are vouch report's.
	var subjects []report.Subject
	for after := ""; ; {
		var page dashboard.SubjectsPage
		getJSONURL(t, base+"/api/v1/subjects?limit=500&after="+after, &page)
		subjects = append(subjects, page.Subjects...)
		if page.Next == "" {
			break
		}
		after = page.Next
	}
	if len(subjects) < 8 {
		t.Fatalf("the dashboard lists %d subjects", len(subjects))
	}
	for _, s := range subjects {
		want, ok := verdicts[string(s.Kind)+" "+s.Subject]
		if !ok {
			v, _ := verdictJSONKind(t, cfg, string(s.Kind), s.Subject)
			want = v.Outcome
		}
		if want != s.Outcome {
			t.Errorf("%s %s: dashboard %s, vouch verdict %s", s.Kind, s.Subject, s.Outcome, want)
		}
		var page dashboard.SubjectPage
		getJSONURL(t, base+"/api/v1/subject?"+url.Values{"kind": {string(s.Kind)}, "s": {s.Subject}}.Encode(), &page)
		if page.Verdict.Outcome != want {
			t.Errorf("%s %s: subject page %s, vouch verdict %s", s.Kind, s.Subject, page.Verdict.Outcome, want)
		}
	}
	var o dashboard.Overview
	getJSONURL(t, base+"/api/v1/overview", &o)
	// The node holds the index: vouch report asks it.
	out, code = vouch(t, "report", "--json", "--config", cfg)
	var rep report.Report
	if err := json.NewDecoder(strings.NewReader(out[max(0, strings.Index(out, "{")):])).Decode(&rep); err != nil || code != 0 {
		t.Fatalf("vouch report: exit %d: %v\n%s", code, err, out)
	}
	if o.Totals != rep.Totals || o.Totals.Subjects != len(subjects) {
		t.Errorf("overview totals %+v, vouch report %+v, %d subjects listed", o.Totals, rep.Totals, len(subjects))
	}
}

// verdictJSONKind is vouch verdict --kind KIND --json SUBJECT.
func verdictJSONKind(t *testing.T, cfg, kind, subject string) (verdict.Verdict, int) {
	t.Helper()
	out, code := vouch(t, "verdict", "--json", "--config", cfg, "--kind", kind, subject)
	var v verdict.Verdict
	if err := json.NewDecoder(strings.NewReader(out[max(0, strings.Index(out, "{")):])).Decode(&v); err != nil {
		t.Fatalf("vouch verdict %s: exit %d, not JSON: %v\n%s", subject, code, err, out)
	}
	return v, code
}

func freeAddr(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func getJSONURL(t *testing.T, u string, v any) {
	t.Helper()
	body, err := httpGet(u)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(body, v); err != nil {
		t.Fatalf("GET %s: %v\n%s", u, err, body)
	}
}
