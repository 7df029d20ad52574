package index

import (
	"errors"
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// TestOpenClearsUnprovenMarks: an index written by an earlier version
// marked a log compromised for an observation (bad-tile, bad-entry,
// rollback). Open keeps the record and clears the mark; a mark set by
// proof stays.
func TestOpenClearsUnprovenMarks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "index.db")
	alice, bob := LogID{"alice", "k1"}, LogID{"bob", "k2"}
	x, err := Open(path, alice, bob)
	if err != nil {
		t.Fatal(err)
	}
	observed := &Evidence{Kind: EvidenceBadTile, Summary: "tiles that do not hash to the root"}
	if err := x.AddEvidence(alice, observed); err != nil {
		t.Fatal(err)
	}
	if x.Compromised("alice") {
		t.Fatal("an observation marked the log compromised")
	}
	// What an earlier version wrote with it.
	if err := x.db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket(bucketLogs).Bucket(alice.bucketKey()).Put(keyCompromised, []byte(observed.ID))
	}); err != nil {
		t.Fatal(err)
	}
	if err := x.AddEvidence(bob, &Evidence{Kind: EvidenceSplitView, Summary: "two trees of one size"}); err != nil {
		t.Fatal(err)
	}
	x.Close()

	x, err = Open(path, alice, bob)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if x.Compromised("alice") || !x.Compromised("bob") {
		t.Fatalf("after Open: alice compromised %v (want false), bob %v (want true)", x.Compromised("alice"), x.Compromised("bob"))
	}
	if st, _ := x.State(alice); st.Compromised {
		t.Fatal("alice's state still says compromised")
	}
	evs, err := x.Evidence()
	if err != nil || len(evs) != 2 || evs[0].Kind != EvidenceBadTile || evs[0].Proven() {
		t.Fatalf("the records are kept: %+v %v", evs, err)
	}

	// Re-admission: recorded on the evidence, mark cleared, and kept
	// cleared across Open; a second one has nothing to override.
	r, err := x.Readmit(bob, "investigated: a log software bug", time.Now())
	if err != nil || len(r.Overrides) != 1 || r.Overrides[0] != evs[1].ID || !r.Resynced {
		t.Fatalf("readmit: %+v %v", r, err)
	}
	if _, err := x.Readmit(bob, "again", time.Now()); !errors.Is(err, ErrNotCompromised) {
		t.Fatalf("second readmit: %v", err)
	}
	if _, err := x.Readmit(alice, "an observation", time.Now()); !errors.Is(err, ErrNotCompromised) {
		t.Fatalf("readmit of a log only observed: %v", err)
	}
	x.Close()
	x, err = Open(path, alice, bob)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if x.Compromised("bob") {
		t.Fatal("a re-admitted log is compromised again after Open")
	}
	if evs, _ := x.Evidence(); evs[1].Readmitted == nil || evs[1].Readmitted.Reason != "investigated: a log software bug" {
		t.Fatalf("re-admission not recorded: %+v", evs[1])
	}
}
