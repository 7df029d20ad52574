package index

import (
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/claim"
)

// TestPathsByHash: a hash part finds the store paths configured, complete
// logs claimed; another name for the same hash part from a second log is a
// second candidate; unlisted logs and incomplete entries find nothing.
func TestPathsByHash(t *testing.T) {
	alice, bob, unlisted := LogID{"alice", "k1"}, LogID{"bob", "k2"}, LogID{"mallory", "k3"}
	x, err := Open(filepath.Join(t.TempDir(), "index.db"), alice, bob)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	complete := func(id LogID, size uint64) {
		root, _ := x.RootAt(id, size)
		if err := x.SetCheckpoint(id, checkpointNote(id.Name, size, root)); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []LogID{alice, unlisted} {
		if c, err := x.Append(id, batch(t, 0, 600, "o")); err != nil || c != nil {
			t.Fatal(c, err)
		}
		complete(id, 600)
	}
	_, c := entry(t, 321, "o")
	hp := claim.HashPart(c.Subject)
	if got, err := x.PathsByHash(hp); err != nil || len(got) != 1 || got[0] != c.Subject {
		t.Fatalf("PathsByHash(%s) = %v, %v; want [%s]", hp, got, err, c.Subject)
	}
	// bob claims the same hash part under another name (what a hostile
	// log would do to shadow the real path): both are candidates.
	other := *c
	other.Subject = c.Subject + "-evil"
	raw, _ := other.Marshal()
	b := &Batch{First: 0, Entries: [][]byte{raw}, Claims: []*claim.Claim{&other}, Hashes: []tlog.Hash{tlog.RecordHash(raw)}}
	if cf, err := x.Append(bob, b); err != nil || cf != nil {
		t.Fatal(cf, err)
	}
	if got, _ := x.PathsByHash(hp); len(got) != 1 {
		t.Fatalf("bob's entry is not covered by a checkpoint yet, but PathsByHash = %v", got)
	}
	complete(bob, 1)
	if got, _ := x.PathsByHash(hp); len(got) != 2 || got[0] != c.Subject || got[1] != other.Subject {
		t.Fatalf("PathsByHash = %v, want both names", got)
	}
	if got, _ := x.PathsByHash("00000000000000000000000000000000"); len(got) != 0 {
		t.Fatalf("unknown hash part found %v", got)
	}
}
