package logmonitor

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/vouch-dev/vouch/internal/keytest"
)

// TestTail: the newest entries of a real log, across a bundle boundary,
// each checked against the signed root; another key, or a flipped byte in
// a bundle, is refused.
func TestTail(t *testing.T) {
	id, _ := keytest.Identity(t, "", "alice")
	l, url := servedLog(t, id)
	grow(t, l, 0, 300, "aaaa")
	ctx := context.Background()

	cp, entries, err := Tail(ctx, nil, url, id.VerifierKey, 50)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != 300 || len(entries) != 50 || entries[0].Index != 250 || entries[49].Index != 299 {
		t.Fatalf("tail of 50: size %d, %d entries from %d", cp.Size, len(entries), entries[0].Index)
	}
	for _, e := range entries {
		if e.Claim == nil || !strings.Contains(e.Claim.Subject, "github.com/x/y@") {
			t.Fatalf("entry %d: %+v", e.Index, e.Claim)
		}
	}
	if _, all, err := Tail(ctx, nil, url, id.VerifierKey, 0); err != nil || len(all) != 300 || all[0].Index != 0 {
		t.Fatalf("the whole log: %d entries, %v", len(all), err)
	}

	other, _ := keytest.Identity(t, "", "alice")
	if _, _, err := Tail(ctx, nil, url, other.VerifierKey, 5); err == nil {
		t.Error("a checkpoint signed by another key was accepted")
	}

	// A proxy that flips one byte of every entry bundle.
	tamper := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		resp, err := http.Get(strings.TrimSuffix(url, "/") + r.URL.Path)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if strings.Contains(r.URL.Path, "/entries/") && len(body) > 10 {
			body = bytes.Clone(body)
			body[len(body)-3] ^= 1
		}
		w.WriteHeader(resp.StatusCode)
		w.Write(body)
	}))
	defer tamper.Close()
	if _, _, err := Tail(ctx, nil, tamper.URL+"/", id.VerifierKey, 5); err == nil || !strings.Contains(err.Error(), "does not hash") {
		t.Errorf("a flipped bundle byte: %v", err)
	}
}
