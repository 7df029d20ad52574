package memtlog

import (
	"fmt"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
)

// TestProofsCheck: what tlog proves over the tree checks against its roots,
// and a prefix grows apart from the tree it was cut from.
func TestProofsCheck(t *testing.T) {
	var tree Tree
	for i := range 300 {
		tree.Add(fmt.Appendf(nil, "record %d", i))
	}
	root, err := tree.Root(300)
	if err != nil {
		t.Fatal(err)
	}
	p, err := tlog.ProveRecord(300, 123, &tree)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckRecord(p, 300, root, 123, tlog.RecordHash([]byte("record 123"))); err != nil {
		t.Fatal(err)
	}
	old, _ := tree.Root(100)
	tp, err := tlog.ProveTree(300, 100, &tree)
	if err != nil {
		t.Fatal(err)
	}
	if err := tlog.CheckTree(tp, 300, root, 100, old); err != nil {
		t.Fatal(err)
	}
	fork := tree.Prefix(100)
	fork.Add([]byte("other"))
	if a, _ := fork.Root(101); a == mustRoot(t, &tree, 101) {
		t.Fatal("a fork has the same root as the tree it left")
	}
	if a, _ := fork.Root(100); a != old {
		t.Fatal("a prefix lost the shared history")
	}
	if _, err := tree.ReadHashes([]int64{1 << 40}); err == nil {
		t.Fatal("a hash beyond the tree was read")
	}
}

func mustRoot(t *testing.T, tree *Tree, n int64) tlog.Hash {
	h, err := tree.Root(n)
	if err != nil {
		t.Fatal(err)
	}
	return h
}
