package index

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"sync"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

const tileWidth = 1 << TileHeight // hashes in a full tile

func tileKey(level int, n int64) []byte {
	k := make([]byte, 9)
	k[0] = byte(level)
	binary.BigEndian.PutUint64(k[1:], uint64(n))
	return k
}

// appendHashes adds the leaf hashes of entries [first, first+len(hashes))
// to the tiles in b. The tree must hold exactly first leaves. Whenever a
// tile fills up, its root joins the tile one level up, as in tlog-tiles.
func appendHashes(b *bolt.Bucket, first uint64, hashes []tlog.Hash) error {
	b.FillPercent = 1 // tile keys only ever grow
	for len(hashes) > 0 {
		n := int64(first / tileWidth)
		off := int(first % tileWidth)
		take := min(tileWidth-off, len(hashes))
		if err := appendToTile(b, 0, n, off, hashes[:take]); err != nil {
			return err
		}
		first += uint64(take)
		hashes = hashes[take:]
	}
	return nil
}

// appendToTile appends hashes at position off of tile (level, n), which
// must hold exactly off hashes, and carries the tile's root up a level when
// it becomes full.
func appendToTile(b *bolt.Bucket, level int, n int64, off int, hashes []tlog.Hash) error {
	key := tileKey(level, n)
	old := b.Get(key)
	if len(old) != off*tlog.HashSize {
		return fmt.Errorf("index: tile %d/%d holds %d bytes, want %d: the stored tree is inconsistent", level, n, len(old), off*tlog.HashSize)
	}
	data := make([]byte, 0, (off+len(hashes))*tlog.HashSize)
	data = append(data, old...)
	for _, h := range hashes {
		data = append(data, h[:]...)
	}
	if err := b.Put(key, data); err != nil {
		return err
	}
	if len(data) < tileWidth*tlog.HashSize {
		return nil
	}
	root, aux := fullTileRoot(data)
	if err := b.Put(auxKey(level, n), aux); err != nil {
		return err
	}
	return appendToTile(b, level+1, n/tileWidth, int(n%tileWidth), []tlog.Hash{root})
}

// A full tile's aux value holds the tile's inner nodes at heights 4 to 7
// (16+8+4+2 hashes, 3.75 bytes per leaf). With them, any node inside a
// tile is either stored or the root of at most 8 stored hashes, so an
// inclusion proof costs a few dozen hash operations instead of hundreds.
const (
	auxMinHeight = 4
	auxHashes    = 16 + 8 + 4 + 2
)

// auxOffset is the position in aux of the first node at height h (4..7).
var auxOffset = [8]int{4: 0, 5: 16, 6: 24, 7: 28}

func auxKey(level int, n int64) []byte {
	k := tileKey(level, n)
	k[0] |= 0x80
	return k
}

// fullTileRoot returns the Merkle root of a full tile's 256 hashes and its
// aux value.
func fullTileRoot(data []byte) (tlog.Hash, []byte) {
	hs := make([]tlog.Hash, tileWidth)
	for i := range hs {
		copy(hs[i][:], data[i*tlog.HashSize:])
	}
	aux := make([]byte, 0, auxHashes*tlog.HashSize)
	for height := 1; len(hs) > 1; height++ {
		for i := 0; i < len(hs)/2; i++ {
			hs[i] = tlog.NodeHash(hs[2*i], hs[2*i+1])
		}
		hs = hs[:len(hs)/2]
		if height >= auxMinHeight && len(hs) > 1 {
			for _, h := range hs {
				aux = append(aux, h[:]...)
			}
		}
	}
	return hs[0], aux
}

// storedHashes reads tlog stored hashes from the tiles of one log.
type storedHashes struct {
	b     *bolt.Bucket
	cache *hashCache
	seq   uint32
}

// hashCache remembers stored hashes computed from partial tiles (at the
// tree's right edge every proof needs them, and each costs up to 127 hash
// operations). A stored hash never changes once its subtree is complete, so
// entries never go stale; the cache is simply cleared when full.
type hashCache struct {
	mu sync.Mutex
	m  map[[2]int64]tlog.Hash
}

const hashCacheSize = 1 << 14

func (c *hashCache) get(seq uint32, idx int64) (tlog.Hash, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	h, ok := c.m[[2]int64{int64(seq), idx}]
	return h, ok
}

func (c *hashCache) put(seq uint32, idx int64, h tlog.Hash) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= hashCacheSize {
		c.m = make(map[[2]int64]tlog.Hash)
	}
	c.m[[2]int64{int64(seq), idx}] = h
}

func (r storedHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var lastKey, lastData, lastAuxKey, lastAux []byte
	for i, idx := range indexes {
		t := tlog.TileForIndex(TileHeight, idx)
		level, n := tlog.SplitStoredHashIndex(idx)
		if height := level % TileHeight; height >= auxMinHeight {
			if k := auxKey(t.L, t.N); !bytes.Equal(k, lastAuxKey) {
				lastAuxKey, lastAux = k, r.b.Get(k)
			}
			if aux := lastAux; aux != nil {
				j := auxOffset[height] + int((n<<height)%tileWidth)>>height
				copy(out[i][:], aux[j*tlog.HashSize:])
				continue
			}
		}
		if h, ok := r.cache.get(r.seq, idx); ok {
			out[i] = h
			continue
		}
		key := tileKey(t.L, t.N)
		data := lastData
		if !bytes.Equal(key, lastKey) {
			data = r.b.Get(key)
			lastKey, lastData = key, data
		}
		h, err := tlog.HashFromTile(t, data, idx)
		if err != nil {
			return nil, fmt.Errorf("index: stored hash %d: %w", idx, err)
		}
		if level%TileHeight >= 2 {
			r.cache.put(r.seq, idx, h)
		}
		out[i] = h
	}
	return out, nil
}
