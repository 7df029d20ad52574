package runs

import (
	"crypto/sha256"
	"encoding/binary"
	"testing"
)

func testHash(i int) []byte {
	h := sha256.Sum256(binary.BigEndian.AppendUint64(nil, uint64(i)))
	return h[:8]
}

func TestFilterNeverForgetsAndRarelyInvents(t *testing.T) {
	const n = 200_000
	f := NewFilter(n)
	for i := 0; i < n; i++ {
		f.Add(testHash(i))
	}
	for i := 0; i < n; i++ {
		if !f.MayContain(testHash(i)) {
			t.Fatalf("hash %d was added but the filter says it is absent", i)
		}
	}
	if f.Full() {
		t.Fatal("a filter holding exactly its capacity reports Full")
	}
	falsePositives := 0
	for i := n; i < 2*n; i++ {
		if f.MayContain(testHash(i)) {
			falsePositives++
		}
	}
	// 10 bits and 7 probes per hash in 512-bit blocks: about 1%.
	if rate := float64(falsePositives) / n; rate > 0.02 {
		t.Fatalf("false-positive rate %.4f at capacity, want ≤ 0.02", rate)
	} else {
		t.Logf("false-positive rate at capacity: %.4f", rate)
	}
	f.Add(testHash(2 * n))
	if !f.Full() {
		t.Fatal("a filter past its capacity does not report Full")
	}
}

func TestFilterOfCollidingBlocksStillFindsAll(t *testing.T) {
	// Hashes that agree on their high bits land in one block: the filter
	// degrades to "maybe" for everything, never to a false "absent".
	f := NewFilter(1 << 16)
	for i := 0; i < 5000; i++ {
		h := binary.BigEndian.AppendUint64(nil, 0xabcdef0000000000|uint64(i))
		f.Add(h)
	}
	for i := 0; i < 5000; i++ {
		h := binary.BigEndian.AppendUint64(nil, 0xabcdef0000000000|uint64(i))
		if !f.MayContain(h) {
			t.Fatalf("colliding hash %d reported absent", i)
		}
	}
}

func BenchmarkFilterMayContain(b *testing.B) {
	const n = 1 << 20
	f := NewFilter(n)
	hs := make([][]byte, n)
	for i := range hs {
		hs[i] = testHash(i)
		if i%2 == 0 {
			f.Add(hs[i])
		}
	}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		f.MayContain(hs[i&(n-1)])
	}
}
