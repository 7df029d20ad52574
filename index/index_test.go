package index

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/internal/memtlog"
)

func entry(t testing.TB, i int, output string) ([]byte, *claim.Claim) {
	h := sha256.Sum256([]byte(fmt.Sprint(i)))
	const alphabet = "0123456789abcdfghijklmnpqrsvwxyz"
	name := make([]byte, 32)
	for j := range name {
		name[j] = alphabet[h[j]%32]
	}
	o := sha256.Sum256([]byte(output))
	nar := make([]byte, 52)
	for j := range nar {
		nar[j] = alphabet[(h[j%32]^o[j%32]^byte(j))%32]
	}
	c := &claim.Claim{Kind: claim.KindNix, Subject: "/nix/store/" + string(name) + "-p",
		NarHash: "sha256:" + string(nar), NarSize: 1}
	b, err := c.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	return b, c
}

func batch(t testing.TB, first, n int, output string) *Batch {
	b := &Batch{First: uint64(first)}
	for i := first; i < first+n; i++ {
		e, c := entry(t, i, output)
		b.Entries = append(b.Entries, e)
		b.Claims = append(b.Claims, c)
		b.Hashes = append(b.Hashes, tlog.RecordHash(e))
	}
	return b
}

func checkpointNote(origin string, size uint64, root tlog.Hash) *Checkpoint {
	note := fmt.Sprintf("%s\n%d\n%s\n\n— %s AAAA\n", origin, size, base64.StdEncoding.EncodeToString(root[:]), origin)
	cp, err := ParseCheckpointBody([]byte(note))
	if err != nil {
		panic(err)
	}
	return cp
}

// TestTreeMatchesTlog appends in uneven batches and checks every root and
// proof the index computes against sumdb/tlog's own stored-hash tree.
func TestTreeMatchesTlog(t *testing.T) {
	id := LogID{"alice", "k1"}
	x, err := Open(filepath.Join(t.TempDir(), "index.db"), id)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	var ref memtlog.Tree // the reference: sumdb/tlog's own tree
	n := 0
	for _, size := range []int{1, 254, 1, 300, 256 * 3, 5} {
		b := batch(t, n, size, "o")
		if c, err := x.Append(id, b); err != nil || c != nil {
			t.Fatal(c, err)
		}
		for _, e := range b.Entries {
			ref.Add(e)
		}
		n += size
		for _, m := range []int{1, max(1, n/2), max(1, n-1), n} {
			want, _ := ref.Root(int64(m))
			got, err := x.RootAt(id, uint64(m))
			if err != nil || got != want {
				t.Fatalf("root at %d of %d: %v %v, want %v", m, n, got, err, want)
			}
			p, err := x.ProveRecord(id, uint64(n), uint64(m-1))
			if err != nil {
				t.Fatal(err)
			}
			root, _ := ref.Root(int64(n))
			if err := tlog.CheckRecord(p, int64(n), root, int64(m-1), b0(t, m-1)); err != nil {
				t.Fatalf("record proof %d in %d: %v", m-1, n, err)
			}
			tp, err := x.ProveTree(id, uint64(n), uint64(m))
			if err != nil || tlog.CheckTree(tp, int64(n), root, int64(m), want) != nil {
				t.Fatalf("tree proof %d→%d: %v", m, n, err)
			}
		}
	}
}

func b0(t testing.TB, i int) tlog.Hash {
	e, _ := entry(t, i, "o")
	return tlog.RecordHash(e)
}

func TestClaimsConflictsAndResume(t *testing.T) {
	alice, bob, bobOld, unlisted := LogID{"alice", "k1"}, LogID{"bob", "k2"}, LogID{"bob", "k0"}, LogID{"mallory", "k3"}
	path := filepath.Join(t.TempDir(), "index.db")
	x, err := Open(path, alice, bob)
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []LogID{alice, bob, bobOld, unlisted} {
		out := "o"
		if id == bobOld {
			out = "z" // an old key of bob's said something else
		}
		b := batch(t, 0, 10, out)
		if c, err := x.Append(id, b); err != nil || c != nil {
			t.Fatal(c, err)
		}
		if id == bob {
			continue // bob's checkpoint is not stored: nothing is complete
		}
		root, _ := x.RootAt(id, 10)
		if err := x.SetCheckpoint(id, checkpointNote(id.Name, 10, root)); err != nil {
			t.Fatal(err)
		}
	}
	_, c := entry(t, 3, "o")
	es, err := x.Claims(c.Kind, c.Subject)
	if err != nil || len(es) != 1 || es[0].Builder != "alice" || es[0].Index != 3 {
		t.Fatalf("claims: %+v %v (want only alice: bob incomplete, bob's old key and mallory unlisted)", es, err)
	}
	root, _ := x.RootAt(bob, 10)
	x.SetCheckpoint(bob, checkpointNote("bob", 10, root))
	if es, _ = x.Claims(c.Kind, c.Subject); len(es) != 2 || es[1].Builder != "bob" || es[1].Claim.Output() != c.Output() {
		t.Fatalf("claims after bob's checkpoint: %+v", es)
	}

	// Same output again: fine. Another output: a conflict, nothing written.
	b := batch(t, 10, 2, "o")
	dup, dc := entry(t, 4, "o")
	b.Entries[1], b.Claims[1], b.Hashes[1] = dup, dc, tlog.RecordHash(dup)
	if c, err := x.Append(alice, b); err != nil || c != nil {
		t.Fatal(c, err)
	}
	b = batch(t, 12, 2, "o")
	bad, bc := entry(t, 5, "other")
	b.Entries[0], b.Claims[0], b.Hashes[0] = bad, bc, tlog.RecordHash(bad)
	conflict, err := x.Append(alice, b)
	if err != nil || conflict == nil || conflict.FirstIndex != 5 || conflict.SecondIndex != 12 {
		t.Fatalf("conflict: %+v %v", conflict, err)
	}
	st, _ := x.State(alice)
	if st.Synced != 12 || st.Subjects != 11 {
		t.Fatalf("after refused batch: synced %d subjects %d", st.Synced, st.Subjects)
	}
	if _, err := x.Append(alice, batch(t, 20, 1, "o")); err == nil {
		t.Fatal("a batch with a gap was accepted")
	}
	if err := x.AddEvidence(alice, &Evidence{Kind: EvidenceConflictingClaims, Summary: "two outputs"}); err != nil {
		t.Fatal(err)
	}
	x.Close()

	// Reopen: state, evidence and the compromised flag survive.
	x, err = Open(path, alice, bob)
	if err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	if !x.Compromised("alice") || x.Compromised("bob") {
		t.Fatal("compromised flag lost on reopen")
	}
	evs, _ := x.Evidence()
	if len(evs) != 1 || evs[0].ID != "1" || evs[0].Builder != "alice" {
		t.Fatalf("evidence after reopen: %+v", evs)
	}
	if st, _ = x.State(alice); st.Synced != 12 || st.Complete.Size != 10 || st.Pinned.Size != 10 {
		t.Fatalf("state after reopen: %+v", st)
	}

	// Paginate all subjects: 10 subjects, each claimed by alice and bob.
	var all []Subject
	for cur := ""; ; {
		page, next, err := x.Subjects(cur, 3)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if next == "" {
			break
		}
		cur = next
	}
	if len(all) != 10 {
		t.Fatalf("%d subjects, want 10", len(all))
	}
	for _, s := range all {
		if len(s.Claims) != 2 || s.Claims[0].Builder != "alice" || s.Claims[1].Builder != "bob" {
			t.Fatalf("subject %s: %+v", s.Subject, s.Claims)
		}
	}
	stats, _ := x.Stats()
	if len(stats) != 2 || stats[0].Name != "alice" || !stats[0].Compromised || stats[0].Pending != 0 {
		t.Fatalf("stats: %+v", stats)
	}
}

// BenchmarkAppend measures indexing throughput (claims/s) and bytes per
// claim, by batch size. Each iteration appends one batch to a growing log.
func BenchmarkAppend(b *testing.B) {
	for _, per := range []int{8192, 32768} {
		b.Run(fmt.Sprint(per), func(b *testing.B) {
			id := LogID{"alice", "k1"}
			x, err := Open(filepath.Join(b.TempDir(), "index.db"), id)
			if err != nil {
				b.Fatal(err)
			}
			defer x.Close()
			n := 0
			for b.Loop() {
				b.StopTimer()
				bt := batch(b, n, per, "o")
				b.StartTimer()
				if c, err := x.Append(id, bt); err != nil || c != nil {
					b.Fatal(c, err)
				}
				n += per
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "claims/s")
			bpc, _ := x.BytesPerClaim()
			b.ReportMetric(bpc, "index-bytes/claim")
		})
	}
}

// BenchmarkLookup measures Claims plus an InclusionProof for one subject
// in a log of VOUCH_BENCH_CLAIMS (default 1,000,000) claims: what a
// verdict reads per followed log.
func BenchmarkLookup(b *testing.B) {
	n := 1_000_000
	if v := os.Getenv("VOUCH_BENCH_CLAIMS"); v != "" {
		fmt.Sscan(v, &n)
	}
	id := LogID{"alice", "k1"}
	x, err := Open(filepath.Join(b.TempDir(), "index.db"), id)
	if err != nil {
		b.Fatal(err)
	}
	defer x.Close()
	for first := 0; first < n; first += 32768 {
		if c, err := x.Append(id, batch(b, first, min(32768, n-first), "o")); err != nil || c != nil {
			b.Fatal(c, err)
		}
	}
	root, _ := x.RootAt(id, uint64(n))
	if err := x.SetCheckpoint(id, checkpointNote("alice", uint64(n), root)); err != nil {
		b.Fatal(err)
	}
	subjects := make([]*claim.Claim, 1024)
	for i := range subjects {
		_, subjects[i] = entry(b, i*977%n, "o")
	}
	i := 0
	for b.Loop() {
		c := subjects[i%len(subjects)]
		i++
		es, err := x.Claims(c.Kind, c.Subject)
		if err != nil || len(es) != 1 {
			b.Fatal(es, err)
		}
		if _, _, err := x.InclusionProof("alice", es[0].Index); err != nil {
			b.Fatal(err)
		}
	}
}

// TestProofsFromEveryLayout checks proofs in a tree with a full level-1
// tile, first as written, then with some full tiles rewritten to the
// earlier layouts (inner nodes in an aux value, all of them or only heights
// 4 to 7), as an index written by an earlier version holds them.
func TestProofsFromEveryLayout(t *testing.T) {
	id := LogID{"alice", "k1"}
	path := filepath.Join(t.TempDir(), "index.db")
	x, err := Open(path, id)
	if err != nil {
		t.Fatal(err)
	}
	const n = tileWidth*tileWidth + 256*2 + 17
	for first := 0; first < n; first += 8192 {
		if c, err := x.Append(id, batch(t, first, min(8192, n-first), "o")); err != nil || c != nil {
			t.Fatal(c, err)
		}
	}
	var ref memtlog.Tree
	for i := 0; i < n; i++ {
		ref.Add(mustEntry(t, i))
	}
	root, _ := ref.Root(n)
	check := func(x *Index) {
		t.Helper()
		for _, size := range []int64{n, tileWidth * tileWidth, 1000} {
			want, _ := ref.Root(size)
			for i := int64(0); i < size; i += 1 + size/300 {
				p, err := x.ProveRecord(id, uint64(size), uint64(i))
				if err != nil {
					t.Fatal(err)
				}
				if err := tlog.CheckRecord(p, size, want, i, b0(t, int(i))); err != nil {
					t.Fatalf("record proof %d in %d: %v", i, size, err)
				}
			}
		}
		if got, err := x.RootAt(id, n); err != nil || got != root {
			t.Fatalf("root: %v %v", got, err)
		}
	}
	check(x)
	check(x) // now from the cache of upper tiles

	rewritten := 0
	err = x.db.Update(func(tx *bolt.Tx) error {
		tiles, prefix := tx.Bucket(bucketTiles), seqPrefix(x.meta(id).seq)
		// An earlier version kept the leaf tiles in the database too.
		for i := int64(0); i < n/tileWidth; i++ {
			v, err := x.meta(id).files.leafTile(i)
			if err != nil {
				return err
			}
			if err := tiles.Put(tileKey(prefix, 0, i), bytes.Clone(v)); err != nil {
				return err
			}
		}
		if err := tx.Bucket(bucketLogs).Bucket(id.bucketKey()).Delete(keyTileFiles); err != nil {
			return err
		}
		for _, tile := range []struct {
			level, n int
			aux      int // hashes of the aux: auxHashes or legacyAuxHashes; 0 for the inner nodes inline
		}{{0, 0, legacyAuxHashes}, {0, 1, auxHashes}, {0, 2, legacyAuxHashes}, {0, 4, auxHashes}, {1, 0, legacyAuxHashes}, {0, 3, 0}, {0, 5, 0}, {0, 6, 0}} {
			k := tileKey(prefix, tile.level, int64(tile.n))
			blocked := tiles.Get(k)
			if len(blocked) != blockedLen {
				return fmt.Errorf("tile %v holds %d bytes", tile, len(blocked))
			}
			// The tile in the order of tileNodes, as the layout before
			// the blocked one stored it.
			v := make([]byte, fullTileHashes*tlog.HashSize)
			for height := 0; height < TileHeight; height++ {
				for pos := 0; pos < tileWidth>>height; pos++ {
					copy(v[tileNodeIndex(height, pos)*tlog.HashSize:(tileNodeIndex(height, pos)+1)*tlog.HashSize], blocked[blockedIndex(height, pos)*tlog.HashSize:])
				}
			}
			if tile.aux == 0 {
				if err := tiles.Put(k, v); err != nil {
					return err
				}
				rewritten++
				continue
			}
			if err := tiles.Put(k, v[:tileWidth*tlog.HashSize]); err != nil {
				return err
			}
			// Heights 4 to 7 are the last 30 inner nodes.
			if err := tiles.Put(tileKey(prefix, tile.level|0x80, int64(tile.n)), v[(fullTileHashes-tile.aux)*tlog.HashSize:]); err != nil {
				return err
			}
			rewritten++
		}
		return nil
	})
	if err != nil || rewritten != 8 {
		t.Fatal(rewritten, err)
	}
	x.Close()
	if x, err = Open(path, id); err != nil {
		t.Fatal(err)
	}
	defer x.Close()
	check(x)
	// The leaf tiles moved to the log's files, their aux values went.
	x.db.View(func(tx *bolt.Tx) error {
		prefix := seqPrefix(x.meta(id).seq)
		c := tx.Bucket(bucketTiles).Cursor()
		for k, _ := c.Seek(prefix[:]); k != nil && bytes.HasPrefix(k, prefix[:]); k, _ = c.Next() {
			if k[4]&0x7f == 0 && int64(binary.BigEndian.Uint64(k[5:])) < n/tileWidth {
				t.Errorf("tile %x is still in the database", k)
			}
		}
		return nil
	})
}

func mustEntry(t testing.TB, i int) []byte {
	e, _ := entry(t, i, "o")
	return e
}

// TestSearchRun checks the binary search of a run against a linear scan,
// for present and absent hashes, at both ends of the hash space.
func TestSearchRun(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	even := func() uint64 { return rng.Uint64() }
	// Hashes crowded in a corner of the range, with outliers at both ends,
	// defeat the interpolation: the search must still find every one.
	crowded := func() uint64 { return 1<<40 + rng.Uint64N(5000) }
	for _, size := range []int{0, 1, 2, 3, 17, 100, 1000, 5000} {
		for _, gen := range []func() uint64{even, crowded} {
			testSearchRun(t, rng, size, gen)
		}
	}
}

func testSearchRun(t *testing.T, rng *rand.Rand, size int, gen func() uint64) {
	hs := []uint64{0, 1<<64 - 1}
	for len(hs) < size {
		hs = append(hs, gen())
	}
	hs = hs[:size]
	slices.Sort(hs)
	hs = slices.Compact(hs)
	var run []byte
	for i, h := range hs {
		run = putRecord(run, binary.BigEndian.AppendUint64(nil, h), uint64(i*7))
	}
	probes := append([]uint64{0, 1, 1<<64 - 1, 1<<64 - 2}, hs...)
	for range 100 {
		probes = append(probes, rng.Uint64(), gen())
	}
	for _, p := range probes {
		want, wantOK := uint64(0), false
		if i := slices.Index(hs, p); i >= 0 {
			want, wantOK = uint64(i*7), true
		}
		got, ok := searchRun(run, binary.BigEndian.AppendUint64(nil, p))
		if got != want || ok != wantOK {
			t.Fatalf("run of %d, hash %x: got %d %v, want %d %v", len(hs), p, got, ok, want, wantOK)
		}
	}
}

// TestBlockedIndex: the blocked layout places every node of a tile once,
// and a proof's path within a tile lies in the top block and one leaf
// block.
func TestBlockedIndex(t *testing.T) {
	seen := make([]bool, fullTileHashes)
	for height := 0; height < TileHeight; height++ {
		for pos := 0; pos < tileWidth>>height; pos++ {
			i := blockedIndex(height, pos)
			if i < 0 || i >= fullTileHashes || seen[i] {
				t.Fatalf("height %d pos %d: index %d out of range or taken", height, pos, i)
			}
			seen[i] = true
		}
	}
	for leaf := 0; leaf < tileWidth; leaf++ {
		for height := 0; height < TileHeight; height++ {
			sibling := blockedIndex(height, (leaf>>height)^1)
			block := sibling / 30
			if height >= 4 && block != 0 || height < 4 && block != 1+leaf/16 {
				t.Fatalf("leaf %d: sibling at height %d is in block %d", leaf, height, block)
			}
		}
	}
}
