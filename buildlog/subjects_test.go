package buildlog

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/vouch-dev/vouch/claim"
)

// openTestIndex opens a subject index whose "log" is testClaim(i, "a") at
// every index i.
func openTestIndex(t *testing.T, path string) *subjectIndex {
	t.Helper()
	s, err := openSubjectIndex(path)
	if err != nil {
		t.Fatal(err)
	}
	s.reader = func(idx uint64) (*claim.Claim, error) { return testClaim(int(idx), "a"), nil }
	return s
}

func recordClaims(t *testing.T, s *subjectIndex, from, to, flushEvery int) {
	t.Helper()
	for i := from; i < to; i++ {
		s.record(subjectHash(testClaim(i, "a").Key()), uint64(i))
		if (i+1)%flushEvery == 0 {
			if err := s.flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// checkMapped looks up every stride-th claim in [from, to).
func checkMapped(t *testing.T, s *subjectIndex, from, to, stride int) {
	t.Helper()
	for i := from; i < to; i += stride {
		key := testClaim(i, "a").Key()
		_, idx, ok, err := s.lookup(key, subjectHash(key))
		if err != nil || !ok || idx != uint64(i) {
			t.Fatalf("lookup of claim %d: index %d, found %v, %v", i, idx, ok, err)
		}
	}
}

func allocatedBytes(t *testing.T, path string) int64 {
	t.Helper()
	info, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return info.Sys().(*syscall.Stat_t).Blocks * 512
}

func TestFilterGrowsWithoutForgetting(t *testing.T) {
	s := openTestIndex(t, filepath.Join(t.TempDir(), "subjects.db"))
	defer s.close()
	if err := s.startFilter(); err != nil {
		t.Fatal(err)
	}
	// The first filter holds 65536 hashes; 200,000 make it double twice,
	// with flushes moving mappings from memory to the runs in between.
	const n = 200_000
	recordClaims(t, s, 0, n, 30_000)
	if got := s.filter.Len(); got != n {
		t.Fatalf("filter holds %d hashes, want %d", got, n)
	}
	checkMapped(t, s, 0, n, 1)
	maybe := 0
	for i := n; i < n+10_000; i++ {
		key := testClaim(i, "a").Key()
		if _, _, ok, err := s.lookup(key, subjectHash(key)); ok || err != nil {
			t.Fatalf("claim %d was never recorded but lookup found it (%v)", i, err)
		}
		if h := subjectHash(key); s.filter.MayContain(h[:]) {
			maybe++
		}
	}
	if maybe > 300 {
		t.Fatalf("the filter sent %d of 10000 new subjects to the runs, want about 1%%", maybe)
	}
}

func TestCompactionKeepsEveryMapping(t *testing.T) {
	path := filepath.Join(t.TempDir(), "subjects.db")
	s := openTestIndex(t, path)
	if err := s.startFilter(); err != nil {
		t.Fatal(err)
	}
	// 400,000 mappings in runs of 20,000: many merges, each freeing pages
	// its larger result cannot reuse.
	const n = 400_000
	recordClaims(t, s, 0, n, 20_000)
	data := int64(n * 13)
	// Compaction starts when half the file is free, so the file stays
	// below about twice its records.
	t.Logf("after flushes: %d bytes for %d bytes of records", allocatedBytes(t, path), data)
	if got := allocatedBytes(t, path); got > 2*data+1<<20 {
		t.Fatalf("after flushes the index takes %d bytes for %d bytes of records: compaction did not reclaim freed pages", got, data)
	}
	if err := s.compact(); err != nil {
		t.Fatal(err)
	}
	if got := allocatedBytes(t, path); got > data+data/4+64<<10 {
		t.Fatalf("compacted index takes %d bytes for %d bytes of records", got, data)
	}
	checkMapped(t, s, 0, n, 7)
	// Runs written after the copy must still sort after the old ones.
	recordClaims(t, s, n, n+50_000, 10_000)
	checkMapped(t, s, 0, n+50_000, 7)
	if err := s.close(); err != nil {
		t.Fatal(err)
	}

	// A copy left by a crash during compaction is discarded at open.
	if err := os.WriteFile(path+".compact", []byte("torn"), 0o600); err != nil {
		t.Fatal(err)
	}
	s = openTestIndex(t, path)
	defer s.close()
	if _, err := os.Stat(path + ".compact"); !os.IsNotExist(err) {
		t.Fatalf("unfinished compaction copy still there: %v", err)
	}
	if hw, err := s.highWater(); err != nil || hw != n+50_000 {
		t.Fatalf("high-water mark after reopen: %d %v", hw, err)
	}
	if err := s.startFilter(); err != nil {
		t.Fatal(err)
	}
	checkMapped(t, s, 0, n+50_000, 7)
}

func TestAckWindowFollowsTheAcknowledgedPrefix(t *testing.T) {
	const n = 5000
	w := ackWindow{next: 100}
	order := rand.New(rand.NewPCG(1, 2)).Perm(n)
	seen := make([]bool, n)
	prefix := 0
	for _, i := range order {
		w.add(uint64(100 + i))
		w.add(uint64(99)) // below next: already acknowledged, ignored
		seen[i] = true
		for prefix < n && seen[prefix] {
			prefix++
		}
		if w.next != uint64(100+prefix) {
			t.Fatalf("after acknowledging %d: next %d, want %d", 100+i, w.next, 100+prefix)
		}
	}
	if len(w.words) > 1 {
		t.Fatalf("window keeps %d words after the prefix caught up", len(w.words))
	}
}
