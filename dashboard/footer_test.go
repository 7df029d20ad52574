package dashboard

import (
	"html/template"
	"net/http"
	"testing"

	"github.com/vouch-dev/vouch/internal/buildinfo"
)

// TestFooterNamesTheBuild: every page says which vouch serves it.
func TestFooterNamesTheBuild(t *testing.T) {
	w := theWorld(t)
	want := "<footer>vouch " + template.HTMLEscapeString(buildinfo.Read().Short()) + " ·"
	for _, page := range []string{"/", "/subjects", "/conflicts", "/evidence"} {
		code, _, body := w.get(t, page)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d", page, code)
		}
		mustContain(t, page, body, want)
	}
}
