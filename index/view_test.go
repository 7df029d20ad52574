package index

import (
	"path/filepath"
	"reflect"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/verdict"
)

// sourceOnly hides Index.View, so that Decide reads through the Source
// methods one transaction at a time.
type sourceOnly struct{ verdict.Source }

// TestDecideThroughView checks that a verdict read through one view equals
// the verdict read through the Source methods, for complete, incomplete
// (not returned) and disagreeing logs (2 of 4 against 1: a conflict), and
// that every proof checks against
// the log's root.
func TestDecideThroughView(t *testing.T) {
	ids := []LogID{{"alice", "k1"}, {"bob", "k2"}, {"carol", "k3"}, {"dave", "k4"}}
	x, err := Open(filepath.Join(t.TempDir(), "index.db"), ids...)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	roots := map[string]tlog.Hash{}
	for i, id := range ids {
		out := "o"
		if id.Name == "carol" {
			out = "other"
		}
		n := 300 + 7*i
		if c, err := x.Append(id, batch(t, 0, n, out)); err != nil || c != nil {
			t.Fatal(c, err)
		}
		if id.Name == "dave" {
			continue // no checkpoint: nothing of dave's is complete
		}
		root, err := x.RootAt(id, uint64(n))
		if err != nil {
			t.Fatal(err)
		}
		roots[id.Name] = root
		if err := x.SetCheckpoint(id, checkpointNote(id.Name, uint64(n), root)); err != nil {
			t.Fatal(err)
		}
	}
	p := &verdict.Policy{Min: 2, MinOperators: 1, OnConflict: "majority"}
	for _, id := range ids {
		p.Members = append(p.Members, verdict.Member{Name: id.Name, Operator: id.Name, Weight: 1, KeyID: id.KeyID})
	}
	var _ verdict.Viewer = x
	for _, i := range []int{0, 1, 255, 256, 299} {
		_, c := entry(t, i, "o")
		viewed, err := p.Decide(x, claim.KindNix, c.Subject)
		if err != nil {
			t.Fatal(err)
		}
		plain, err := p.Decide(sourceOnly{x}, claim.KindNix, c.Subject)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(viewed, plain) {
			t.Fatalf("entry %d: through a view\n%+v\nthrough the Source methods\n%+v", i, viewed, plain)
		}
		if viewed.Outcome != verdict.Conflict || len(viewed.Agreed) != 2 || len(viewed.Disagreed) != 1 || !reflect.DeepEqual(viewed.Silent, []string{"dave"}) {
			t.Fatalf("entry %d: %+v", i, viewed)
		}
		for _, vote := range append(viewed.Agreed, viewed.Disagreed...) {
			e, err := x.Entry(x.byName[vote.Builder], vote.Index)
			if err != nil {
				t.Fatal(err)
			}
			proof := make(tlog.RecordProof, len(vote.Proof))
			for j := range proof {
				copy(proof[j][:], vote.Proof[j])
			}
			if err := tlog.CheckRecord(proof, int64(vote.TreeSize), roots[vote.Builder], int64(vote.Index), tlog.RecordHash(e)); err != nil {
				t.Fatalf("entry %d, %s: %v", i, vote.Builder, err)
			}
		}
	}
	// A view of a builder that is not configured proves nothing.
	err = x.View(func(s verdict.Source) error {
		if _, _, err := s.InclusionProof("mallory", 0); err == nil {
			t.Error("a proof for an unconfigured builder")
		}
		if s.Compromised("mallory") {
			t.Error("an unconfigured builder compromised")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
