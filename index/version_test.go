package index

import (
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/claim"
)

// TestVersionMovesWithEveryAnswerChange: a reader caching answers by
// Version must see it move after each write that changes an answer.
func TestVersionMovesWithEveryAnswerChange(t *testing.T) {
	id := LogID{"alice", "k1"}
	x, err := Open(filepath.Join(t.TempDir(), "index.db"), id)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	e, c := entry(t, 1, "o")
	v0 := x.Version()
	if conflict, err := x.Append(id, &Batch{Entries: [][]byte{e}, Claims: []*claim.Claim{c}, Hashes: []tlog.Hash{tlog.RecordHash(e)}}); err != nil || conflict != nil {
		t.Fatal(conflict, err)
	}
	v1 := x.Version()
	if v1 == v0 {
		t.Fatal("Append did not move the version; PathsByHash answers changed")
	}
	if got, _ := x.Claims(c.Kind, c.Subject); len(got) != 0 {
		t.Fatalf("claims count before a checkpoint covers them: %v", got)
	}
	root, err := x.RootAt(id, 1)
	if err != nil {
		t.Fatal(err)
	}
	if err := x.SetCheckpoint(id, checkpointNote("alice", 1, root)); err != nil {
		t.Fatal(err)
	}
	v2 := x.Version()
	if v2 == v1 {
		t.Fatal("completing a checkpoint did not move the version; Claims answers changed")
	}
	if got, _ := x.Claims(c.Kind, c.Subject); len(got) != 1 {
		t.Fatalf("claims under the checkpoint: %v", got)
	}
	if err := x.AddEvidence(id, &Evidence{Kind: EvidenceSplitView}); err != nil {
		t.Fatal(err)
	}
	if x.Version() == v2 || !x.Compromised("alice") {
		t.Fatal("evidence did not move the version; Compromised answers changed")
	}
}
