package dashboard

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/follow"
	"github.com/vouch-dev/vouch/verdict"
)

// TestUnavailableBuilderShown: a log whose entry bundles reach the follower
// altered is shown unavailable (how many rounds, since when), not
// compromised, and the claims verified before still decide verdicts.
func TestUnavailableBuilderShown(t *testing.T) {
	var corrupt atomic.Bool
	l := newTestLog(t, "alice", func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !corrupt.Load() || !strings.Contains(r.URL.Path, "/tile/entries/") {
				next.ServeHTTP(w, r)
				return
			}
			rec := httptest.NewRecorder()
			next.ServeHTTP(rec, r)
			body := rec.Body.Bytes()
			body[len(body)-3] ^= 0x01
			w.WriteHeader(rec.Code)
			w.Write(body)
		})
	})
	l.add(nixClaim("before", "x", day1))
	cfg := &config.Config{State: t.TempDir(), Dashboard: true, Builders: []config.Builder{l.builder("org")}, Quorum: config.Quorum{Min: 1, MinOperators: 1}}
	cfg.Defaults()
	w := followWorld(t, cfg, map[string]*testLog{"alice": l})

	l.add(nixClaim("after", "x", day2))
	corrupt.Store(true)
	f, err := follow.New(cfg, w.idx, follow.Options{Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if r := f.SyncOnce(context.Background())[0]; !errors.Is(r.Err, follow.ErrBadData) || r.Evidence != nil {
			t.Fatalf("sync of altered bundles: %+v", r)
		}
	}
	views := getJSON[[]BuilderView](t, w, "/api/v1/builders")
	if v := views[0]; !v.Unavailable || v.Failures != 2 || v.FailingSince.IsZero() || v.StaleView || v.Compromised || len(v.Evidence) != 0 {
		t.Fatalf("alice: %+v", v)
	}
	_, _, body := w.get(t, "/builders/alice")
	mustContain(t, "alice's page", body, "unavailable", "2 failed rounds in a row", "its verified claims still count")
	_, _, body = w.get(t, "/")
	mustContain(t, "overview", body, "failing: builder alice", "served data that does not match")
	p := getJSON[SubjectPage](t, w, "/api/v1/subject?s="+url.QueryEscape(storePath("before")))
	if p.Verdict.Outcome != verdict.Trusted {
		t.Fatalf("a claim verified before the fault: %+v", p.Verdict)
	}
}

// TestReadmissionShown: the evidence page of a re-admitted builder says
// so, with the operator's reason, and the builder no longer shows as
// compromised.
func TestReadmissionShown(t *testing.T) {
	l := newTestLog(t, "alice", nil)
	l.add(nixClaim("one", "x", day1))
	l.splitView = true
	cfg := &config.Config{State: t.TempDir(), Dashboard: true, Builders: []config.Builder{l.builder("org")}, Quorum: config.Quorum{Min: 1, MinOperators: 1}}
	cfg.Defaults()
	w := followWorld(t, cfg, map[string]*testLog{"alice": l})
	if !w.idx.Compromised("alice") {
		t.Fatal("the split view was not recorded")
	}
	const reason = "the log lost its state in a disk failure; checked with alice"
	if _, err := follow.Readmit(w.idx, cfg, "alice", reason); err != nil {
		t.Fatal(err)
	}
	_, _, body := w.get(t, "/evidence/1")
	mustContain(t, "evidence page", body, "split-view", "re-admitted", reason)
	if v := getJSON[[]BuilderView](t, w, "/api/v1/builders")[0]; v.Compromised {
		t.Fatalf("alice after re-admission: %+v", v)
	}
}
