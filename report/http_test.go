package report

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"
)

func TestHandler(t *testing.T) {
	w := fourBuilders(t)
	srv := httptest.NewServer(Handler(w.policy, w.x))
	defer srv.Close()
	resp, err := http.Get(srv.URL + HTTPPath + "?limit=1&all=1")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var rep Report
	if err := json.NewDecoder(resp.Body).Decode(&rep); err != nil || resp.StatusCode != 200 {
		t.Fatalf("%s %v", resp.Status, err)
	}
	if rep.Totals.Subjects != 9 || len(rep.Subjects) != 9 || len(rep.BuiltByOne) != 1 || len(rep.Builders) != 4 {
		t.Fatalf("%+v", rep.Totals)
	}
	for _, q := range []string{"limit=-1", "limit=x", "all=maybe"} {
		resp, err := http.Get(srv.URL + HTTPPath + "?" + q)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%s: %s, want 400", q, resp.Status)
		}
	}
}
