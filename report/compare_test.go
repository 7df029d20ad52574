package report

import (
	"bytes"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/verdict"
)

// withException is the four-builder world's policy plus an exception for
// subject 7 (which nobody reproduces): alice's output is believed.
func withException(w *world) *verdict.Policy {
	p := &verdict.Policy{Members: w.policy.Members, Min: w.policy.Min, MinOperators: w.policy.MinOperators, OnConflict: w.policy.OnConflict}
	p.Exceptions = []verdict.Exception{{Name: "s7", Reason: "embeds the build date", Rule: "alice"}}
	return p
}

func TestReportShowsExceptions(t *testing.T) {
	w := fourBuilders(t)
	before, err := Build(w.x, w.policy, Options{})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := Build(w.x, withException(w), Options{})
	if err != nil {
		t.Fatal(err)
	}
	want := before.Totals
	want.Trusted++
	want.Conflict--
	want.ByException = 1
	if rep.Totals != want {
		t.Fatalf("totals %+v, want %+v (the exception admits subject 7 and changes nothing else)", rep.Totals, want)
	}
	if len(rep.Exceptions) != 1 || rep.Exceptions[0].Subject != path(7) || rep.Exceptions[0].Reason != "embeds the build date" ||
		rep.Exceptions[0].Rule != "alice" || rep.Exceptions[0].Output != nixClaim(path(7), "A").Output() {
		t.Fatalf("exceptions %+v", rep.Exceptions)
	}
	if rep.Policy.Exceptions != 1 || rep.Policy.Fingerprint == before.Policy.Fingerprint {
		t.Fatalf("policy summary %+v vs %+v", rep.Policy, before.Policy)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"by exception", "subjects admitted by an exception (1)", path(7), "embeds the build date", "1 exception ("} {
		if !strings.Contains(text.String(), s) {
			t.Fatalf("text report lacks %q:\n%s", s, text.String())
		}
	}
}

func TestCompare(t *testing.T) {
	w := fourBuilders(t)
	c, err := Compare(w.x, w.policy, withException(w), "in force", "proposed", CompareOptions{PageSize: 3})
	if err != nil {
		t.Fatal(err)
	}
	if c.Subjects != 9 || c.Changed != 1 || c.ByException != 1 || c.Before.Trusted != 5 || c.After.Trusted != 6 ||
		len(c.Transitions) != 1 || c.Transitions[0] != (Transition{From: verdict.Conflict, To: verdict.Trusted, Count: 1}) {
		t.Fatalf("comparison %+v", c)
	}
	ch := c.Changes[0]
	if ch.Subject != path(7) || ch.Exception != "name s7" || !strings.Contains(ch.ToReason, "admits it") {
		t.Fatalf("change %+v", ch)
	}

	// A stricter policy: 4 of 4 refuses subject 6 (dave disagrees) under
	// majority, and nothing that was refused becomes trusted.
	strict := &verdict.Policy{Members: w.policy.Members, Min: 4, MinOperators: 2, OnConflict: "majority"}
	c, err = Compare(w.x, w.policy, strict, "a", "b", CompareOptions{ListLimit: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, tr := range c.Transitions {
		if tr.From != verdict.Trusted {
			t.Fatalf("a stricter policy trusts more: %+v", c.Transitions)
		}
	}
	if c.Changed != 0 || len(c.Changes) != 0 {
		t.Fatalf("4 of 4 should decide the world as 3 of 4 with refuse: %+v", c)
	}

	// The same policy twice: nothing changes.
	c, err = Compare(w.x, w.policy, w.policy, "a", "a", CompareOptions{})
	if err != nil || c.Changed != 0 || c.Before.Fingerprint != c.After.Fingerprint {
		t.Fatalf("%+v %v", c, err)
	}
	var text bytes.Buffer
	if err := c.WriteText(&text); err != nil || !strings.Contains(text.String(), "no subject is decided differently") {
		t.Fatalf("%v\n%s", err, text.String())
	}
}

// TestMissingBuildersAreExplained: for a subject that is not trusted, each
// silent builder is said to be down, lagging or silent from its log's health.
func TestMissingBuildersAreExplained(t *testing.T) {
	w := fourBuilders(t) // carol's log is 3 entries ahead of the index
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	if err := w.x.SetHealth(w.ids["bob"], now.Add(-time.Hour), nil); err != nil {
		t.Fatal(err)
	}
	if err := w.x.SetHealth(w.ids["bob"], now.Add(-10*time.Second), errors.New("connection refused")); err != nil {
		t.Fatal(err)
	}
	rep, err := Build(w.x, w.policy, Options{Now: now, AllSubjects: true})
	if err != nil {
		t.Fatal(err)
	}
	var only Subject // subject 8: only alice built it
	for _, s := range rep.Subjects {
		if s.Subject == path(8) {
			only = s
		}
		if s.Outcome == verdict.Trusted && s.Missing != nil {
			t.Errorf("%s is trusted and lists missing builders %+v", s.Subject, s.Missing)
		}
	}
	want := []Absent{
		{Builder: "bob", State: "down", Detail: "last sync failed: connection refused; last synced 1h0m0s ago"},
		{Builder: "carol", State: "lagging", Detail: "3 entries of its checkpoint not indexed yet"},
		{Builder: "dave", State: "silent", Detail: "its log is indexed up to its checkpoint of size 7 and holds no claim for this subject"},
	}
	if !reflect.DeepEqual(only.Missing, want) {
		t.Fatalf("missing for subject 8:\n%+v\nwant\n%+v", only.Missing, want)
	}
	var text bytes.Buffer
	if err := rep.WriteText(&text); err != nil || !strings.Contains(text.String(), "missing bob: down (last sync failed: connection refused; last synced 1h0m0s ago)") {
		t.Fatalf("%v\n%s", err, text.String())
	}
}

func TestCompareSince(t *testing.T) {
	w := newWorld(t, [][2]string{{"alice", "org-a"}, {"bob", "org-b"}})
	w.policy.Min, w.policy.MinOperators, w.policy.OnConflict = 2, 1, "refuse"
	at := func(i int, when string) *claim.Claim {
		c := nixClaim(path(i), "X")
		c.Time, _ = time.Parse(time.RFC3339, when)
		return c
	}
	w.log("alice", 0, at(1, "2026-01-01T00:00:00Z"), at(2, "2026-06-01T00:00:00Z"), nixClaim(path(3), "X"))
	w.log("bob", 0, at(1, "2026-01-02T00:00:00Z"), at(2, "2026-06-02T00:00:00Z"))
	since, _ := time.Parse(time.RFC3339, "2026-03-01T00:00:00Z")
	c, err := Compare(w.x, w.policy, w.policy, "a", "b", CompareOptions{Since: since})
	if err != nil {
		t.Fatal(err)
	}
	// Subject 1 is older; 2 is newer; 3 carries no time and is kept.
	if c.Subjects != 2 || c.Before.Trusted != 1 {
		t.Fatalf("since %v: %+v", since, c)
	}
}
