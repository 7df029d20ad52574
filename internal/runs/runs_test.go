package runs

import "testing"

func TestBuildKeepsFirstOfEachHashAndSkips(t *testing.T) {
	h := func(b byte) [8]byte { return [8]byte{b} }
	recs := []Record{{h(3), 9}, {h(1), 7}, {h(3), 2}, {h(2), 5}}
	run := Build(recs, func(hash []byte) bool { return hash[0] == 2 })
	if len(run) != 2*RecordSize {
		t.Fatalf("run holds %d records, want 2", len(run)/RecordSize)
	}
	if n, ok := Search(run, []byte{1, 0, 0, 0, 0, 0, 0, 0}); !ok || n != 7 {
		t.Fatalf("hash 1 → %d %v", n, ok)
	}
	if n, ok := Search(run, []byte{3, 0, 0, 0, 0, 0, 0, 0}); !ok || n != 2 {
		t.Fatalf("hash 3 → %d %v, want the earliest index 2", n, ok)
	}
	if _, ok := Search(run, []byte{2, 0, 0, 0, 0, 0, 0, 0}); ok {
		t.Fatal("skipped hash 2 is in the run")
	}
}
