package dashboard

import (
	"strings"
	"testing"
	"time"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/verdict"
)

func TestAttentionOrdersWorstFirst(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	builders := []BuilderView{
		{Name: "ok", TreeSize: 5, LastOK: now, AgeSeconds: 1},
		{Name: "liar", TreeSize: 5, LastOK: now, AgeSeconds: 1, Outvoted: 2},
		{Name: "down", TreeSize: 5, LastOK: now.Add(-time.Minute), AgeSeconds: 60, Unavailable: true, Failures: 3,
			FailingSince: now.Add(-time.Minute), Error: "builder down (http://x/log/): dial tcp: connection refused"},
		{Name: "forked", TreeSize: 5, Compromised: true, Evidence: []EvidenceSummary{{ID: "7", Kind: "fork"}}},
		{Name: "stale", TreeSize: 5, LastOK: now, AgeSeconds: 1, Unavailable: true, StaleView: true, Failures: 1},
		{Name: "new", AgeSeconds: -1},
		{Name: "old", TreeSize: 5, LastOK: now.Add(-2 * time.Hour), AgeSeconds: 7200},
	}
	got := attention(builders, 10*time.Second, now)
	var order []string
	for _, a := range got {
		order = append(order, a.Builder+":"+a.Level)
	}
	want := "forked:bad down:warn stale:warn new:warn old:warn liar:bad"
	if strings.Join(order, " ") != want {
		t.Fatalf("attention %v, want %s", order, want)
	}
	for _, a := range got {
		switch a.Builder {
		case "forked":
			if !strings.Contains(a.Text, "evidence 7: fork") || !strings.Contains(a.Text, "readmit") {
				t.Errorf("forked: %s", a.Text)
			}
		case "down":
			if !strings.Contains(a.Text, "for 1m0s, 3 rounds") || !strings.Contains(a.Text, "connection refused") || !strings.Contains(a.Text, "still count") {
				t.Errorf("down: %s", a.Text)
			}
		case "stale":
			if !strings.Contains(a.Text, "older checkpoint") {
				t.Errorf("stale: %s", a.Text)
			}
		case "old":
			if !strings.Contains(a.Text, "2h0m0s ago") {
				t.Errorf("old: %s", a.Text)
			}
		case "liar":
			if !strings.Contains(a.Text, "outvoted on 2 subjects") {
				t.Errorf("liar: %s", a.Text)
			}
		}
	}
	if got := attention(builders[:1], 10*time.Second, now); len(got) != 0 {
		t.Errorf("a healthy builder needs attention: %+v", got)
	}
}

func TestStandOf(t *testing.T) {
	value := &claim.Claim{Kind: claim.KindNix, Subject: "/nix/store/" + strings.Repeat("a", 32) + "-x", NarHash: "sha256:" + strings.Repeat("1", 52), NarSize: 1}
	x := value.Output()
	trusted := verdict.Verdict{Outcome: verdict.Trusted, Value: value, Agreed: []verdict.Vote{{Output: x}}, Disagreed: []verdict.Vote{{Output: "y"}}, Outvoted: true}
	refused := trusted
	refused.Outcome, refused.Value = verdict.Conflict, nil
	tie := verdict.Verdict{Outcome: verdict.Conflict, Agreed: []verdict.Vote{{Output: x}}, Disagreed: []verdict.Vote{{Output: "y"}}}
	for _, tc := range []struct {
		v      verdict.Verdict
		output string
		want   string
	}{
		{trusted, x, "agrees"}, {trusted, "y", "outvoted"},
		{refused, x, "leading output"}, {refused, "y", "outvoted"},
		{tie, x, "leading output"}, {tie, "y", "other output"},
	} {
		if got := standOf(tc.v, tc.output); got != tc.want {
			t.Errorf("standOf(%s, %s) = %s, want %s", tc.v.Outcome, tc.output, got, tc.want)
		}
	}
}
