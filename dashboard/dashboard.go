package dashboard

import (
	"embed"
	"encoding/json"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"runtime/debug"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/index"
	"github.com/vouch-dev/vouch/verdict"
)

// Limits on what a request may ask for.
const (
	// MaxQuery bounds a search query and a subject parameter, in bytes.
	// The longest subjects (oci sources) are far shorter.
	MaxQuery = 2048
	// PageSize is the number of rows of a list page; the API's limit
	// parameter may ask for up to MaxPageSize.
	PageSize    = 50
	MaxPageSize = 500
)

// DefaultFreshWait is how long a request waits for a snapshot the index
// has outgrown to be rebuilt before it is answered from the older one.
const DefaultFreshWait = 150 * time.Millisecond

// Options configure a dashboard.
type Options struct {
	Index  *index.Index    // the node's follower index
	Policy *verdict.Policy // the node's quorum rule
	Config *config.Config  // the node's config: builders' operators and log URLs
	Logger *slog.Logger    // default slog.Default()
	// FreshWait overrides DefaultFreshWait.
	FreshWait time.Duration
	// Now is the clock ages are measured with; default time.Now.
	Now func() time.Time
	// Registerer, if set, receives the per-builder outvoted and
	// non-reproducible gauges (vouch_builder_outvoted_subjects,
	// vouch_builder_nonreproducible_subjects) of the latest snapshot.
	Registerer prometheus.Registerer
}

// Dashboard serves the pages and the JSON API.
type Dashboard struct {
	idx       *index.Index
	policy    *verdict.Policy
	cfg       *config.Config
	logger    *slog.Logger
	freshWait time.Duration
	now       func() time.Time
	pages     map[string]*template.Template
	mux       *http.ServeMux
	snaps     snapshots
}

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// New returns the dashboard handler. It answers the paths the package doc
// lists and 404s every other one.
func New(opts Options) (*Dashboard, error) {
	if opts.Index == nil || opts.Policy == nil || opts.Config == nil {
		return nil, errors.New("dashboard: Index, Policy and Config are all needed (is the follow role on?)")
	}
	d := &Dashboard{idx: opts.Index, policy: opts.Policy, cfg: opts.Config, logger: opts.Logger,
		freshWait: opts.FreshWait, now: opts.Now, pages: map[string]*template.Template{}}
	if d.logger == nil {
		d.logger = slog.Default()
	}
	if d.freshWait <= 0 {
		d.freshWait = DefaultFreshWait
	}
	if d.now == nil {
		d.now = time.Now
	}
	for _, page := range []string{"overview", "subjects", "search", "subject", "conflicts", "builder", "evidence", "evidence-list", "error"} {
		t, err := template.New(page).Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/rows.html", "templates/"+page+".html")
		if err != nil {
			return nil, fmt.Errorf("dashboard: template %s: %w", page, err)
		}
		d.pages[page] = t
	}
	assets, err := fs.Sub(assetFS, "assets")
	if err != nil {
		return nil, err
	}

	m := http.NewServeMux()
	m.Handle("GET /assets/", http.StripPrefix("/assets/", assetHandler(http.FileServerFS(assets))))
	page := func(pattern string, h func(*http.Request) (string, any, error)) {
		m.HandleFunc("GET "+pattern, func(w http.ResponseWriter, r *http.Request) { d.renderPage(w, r, h) })
	}
	api := func(pattern string, h func(*http.Request) (string, any, error)) {
		m.HandleFunc("GET /api/v1"+pattern, func(w http.ResponseWriter, r *http.Request) { d.renderJSON(w, r, h) })
	}
	page("/{$}", d.overview)
	api("/overview", d.overview)
	page("/subjects", d.subjects)
	api("/subjects", d.subjects)
	page("/search", d.searchPage)
	api("/search", d.search)
	page("/subject", d.subject)
	api("/subject", d.subject)
	page("/conflicts", d.conflicts)
	api("/conflicts", d.conflicts)
	page("/builders/{name}", d.builder)
	api("/builders", d.builders)
	api("/builders/{name}", d.builder)
	page("/evidence", d.evidenceList)
	api("/evidence", d.evidenceList)
	m.HandleFunc("GET /evidence/{id}", d.evidencePage)
	api("/evidence/{id}", d.evidence)
	d.mux = m
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(newCollector(d)); err != nil {
			return nil, fmt.Errorf("dashboard: registering metrics: %w", err)
		}
	}
	return d, nil
}

// ServeHTTP routes r, answering 404 for paths the dashboard does not own
// and 500 (never a crash) when a handler panics.
func (d *Dashboard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	defer func() {
		if p := recover(); p != nil {
			if p == http.ErrAbortHandler {
				panic(p)
			}
			d.logger.Error("dashboard: handler panicked", "path", r.URL.Path, "panic", p, "stack", string(debug.Stack()))
			http.Error(w, "internal error in the dashboard (logged)", http.StatusInternalServerError)
		}
	}()
	h := w.Header()
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
	d.mux.ServeHTTP(w, r)
}

// assetHandler lets browsers cache the embedded assets for a day.
func assetHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=86400")
		h.ServeHTTP(w, r)
	})
}

// httpError is an error with the status a request should get for it.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

func badRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

func notFound(format string, args ...any) error {
	return &httpError{http.StatusNotFound, fmt.Sprintf(format, args...)}
}

// redirect is returned by a page handler that answers with a redirect.
type redirect string

func statusOf(err error) (int, string) {
	var he *httpError
	if errors.As(err, &he) {
		return he.status, he.msg
	}
	return http.StatusInternalServerError, "the index could not be read: " + err.Error()
}

// renderPage runs h and renders the template it names with its data.
func (d *Dashboard) renderPage(w http.ResponseWriter, r *http.Request, h func(*http.Request) (string, any, error)) {
	name, data, err := h(r)
	if to, ok := data.(redirect); ok && err == nil {
		http.Redirect(w, r, string(to), http.StatusSeeOther)
		return
	}
	status := http.StatusOK
	if err != nil {
		var msg string
		status, msg = statusOf(err)
		if status == http.StatusInternalServerError {
			d.logger.Warn("dashboard", "path", r.URL.Path, "err", err)
		}
		name, data = "error", errorPage{Status: status, Text: http.StatusText(status), Message: msg}
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	if err := d.pages[name].ExecuteTemplate(w, "layout", data); err != nil {
		d.logger.Warn("dashboard: rendering", "page", name, "err", err)
	}
}

// renderJSON runs h and writes its data as JSON.
func (d *Dashboard) renderJSON(w http.ResponseWriter, r *http.Request, h func(*http.Request) (string, any, error)) {
	_, data, err := h(r)
	status := http.StatusOK
	if err != nil {
		var msg string
		status, msg = statusOf(err)
		data = map[string]string{"error": msg}
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.Encode(data)
}

type errorPage struct {
	Status  int
	Text    string
	Message string
}

// Title is used by the layout.
func (e errorPage) Title() string { return fmt.Sprintf("%d %s", e.Status, e.Text) }
