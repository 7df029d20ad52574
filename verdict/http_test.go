package verdict

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/vouch-dev/vouch/claim"
)

func TestHandler(t *testing.T) {
	src := newMemSource()
	for _, b := range []string{"alice", "bob", "carol"} {
		src.add(b, nixClaim(subjectHello, "X"))
	}
	srv := httptest.NewServer(Handler(four(3, 2, "refuse"), src))
	defer srv.Close()
	get := func(query string) (*http.Response, Verdict) {
		t.Helper()
		resp, err := http.Get(srv.URL + HTTPPath + "?" + query)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var v Verdict
		if resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusInternalServerError {
			if err := json.NewDecoder(resp.Body).Decode(&v); err != nil {
				t.Fatal(err)
			}
		}
		return resp, v
	}
	resp, v := get(url.Values{"kind": {"nix"}, "subject": {subjectHello}}.Encode())
	if resp.StatusCode != 200 || v.Outcome != Trusted || len(v.Agreed) != 3 || v.Agreed[0].TreeSize != 1 {
		t.Fatalf("%s %+v", resp.Status, v)
	}
	resp, v = get(url.Values{"subject": {"/nix/store/1c6kzph7l0dcbfmjap64f0czdafn3b7x-other"}}.Encode())
	if resp.StatusCode != 200 || v.Outcome != Insufficient || v.Kind != claim.KindNix {
		t.Fatalf("default kind: %s %+v", resp.Status, v)
	}
	for _, bad := range []string{"", "kind=rpm&subject=x", "subject=/tmp/x", "kind=oci&subject=" + url.QueryEscape(subjectHello)} {
		if resp, _ := get(bad); resp.StatusCode != http.StatusBadRequest {
			t.Errorf("%q: %s, want 400", bad, resp.Status)
		}
	}
	if resp, err := http.Post(srv.URL+HTTPPath, "text/plain", strings.NewReader("")); err != nil || resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: %v %v", resp.Status, err)
	}
	src.failClaims = errors.New("index closed")
	resp, v = get("subject=" + url.QueryEscape(subjectHello))
	if resp.StatusCode != 500 || v.Outcome != Insufficient || !strings.Contains(v.Reason, "index closed") {
		t.Fatalf("failing index: %s %+v", resp.Status, v)
	}
}

func TestCheckSubject(t *testing.T) {
	for _, tc := range []struct {
		kind    claim.Kind
		subject string
		ok      bool
	}{
		{claim.KindNix, subjectHello, true},
		{claim.KindNix, subjectHello + "/bin", false},
		{claim.KindNixCA, "sha256:" + strings.Repeat("a", 64) + "!out", true},
		{claim.KindNixCA, "sha256:zz!out", false},
		{claim.KindOCI, claim.OCISubject("github.com/x/y", "abcdef1", "image", "x86_64-linux"), true},
		{claim.KindOCI, "github.com/x/y", false},
		{"rpm", "x", false},
	} {
		if err := CheckSubject(tc.kind, tc.subject); (err == nil) != tc.ok {
			t.Errorf("%s %q: %v", tc.kind, tc.subject, err)
		}
	}
}
