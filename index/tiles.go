package index

import (
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

// A full tile's aux value holds the tile's inner nodes, so that no proof
// ever hashes inside a full tile: heights 1 to 7 (128+64+…+2 = 254 hashes,
// 31.75 bytes per leaf), lowest height first, each height left to right.
//
// Indexes written before this layout hold only heights 4 to 7 (30 hashes,
// 3.75 bytes per leaf); they are still read, by their length, and the few
// hashes below height 4 are then computed from the tile (at most 8 leaves).
// Tiles that fill up after an upgrade get the full aux, so an old index
// needs no migration.
const (
	auxHashes       = tileWidth - 2 // heights 1..7
	legacyAuxHashes = 16 + 8 + 4 + 2
	legacyAuxMin    = 4 // lowest height a legacy aux holds
)

// auxPosition returns the position in an aux value of auxLen hashes of the
// node at height (1..7) whose left edge is leaf position pos*2^height of
// its tile, and whether that aux holds it.
func auxPosition(auxLen, height, pos int) (int, bool) {
	switch auxLen {
	case auxHashes:
		// Heights below h hold 128+64+…+(256>>(h-1)) = 256-(512>>h) hashes.
		return tileWidth - (2*tileWidth)>>height + pos, true
	case legacyAuxHashes:
		if height < legacyAuxMin {
			return 0, false
		}
		// Heights 4 to h-1 hold 16+…+(256>>(h-1)) = 32-(512>>h) hashes.
		return 32 - (2*tileWidth)>>height + pos, true
	}
	return 0, false
}

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
		if len(hs) > 1 {
			for _, h := range hs {
				aux = append(aux, h[:]...)
			}
		}
	}
	return hs[0], aux
}

// storedHashes reads tlog stored hashes from the tiles of one log.
type storedHashes struct {
	b      *bolt.Bucket
	cache  *hashCache
	seq    uint32
	synced uint64 // leaves in the tiles: tells full tiles from partial ones
}

// full reports whether tile (level, n) holds all its 256 hashes.
func (r storedHashes) full(level int, n int64) bool {
	leaves := uint64(n+1) << (TileHeight * (level + 1)) // covered by the full tile
	return leaves>>(TileHeight*(level+1)) == uint64(n+1) && leaves <= r.synced
}

// hashCache keeps, in memory, what every proof reads and is not worth
// reading from disk each time. A stored hash never changes once its
// subtree is complete, so nothing in it ever goes stale.
//
//   - The full tiles of level 1 and above, each with all its inner nodes
//     (510 hashes, 16 KB): together 1/128th of a tree, and every proof
//     reads one tile of each level. Beyond maxUpperTiles a random tile is
//     evicted.
//   - The hashes computed from partial tiles, at the tree's right edge:
//     every proof needs them and each costs up to 127 hash operations.
//     The map is cleared when full.
type hashCache struct {
	mu    sync.Mutex
	upper map[tileCacheKey]*tileNodes
	edge  map[edgeCacheKey]tlog.Hash
}

type tileCacheKey struct {
	seq   uint32
	level int
	n     int64
}

type edgeCacheKey struct {
	seq uint32
	idx int64
}

// tileNodes are the nodes of a full tile at heights 0 (its 256 hashes) to
// 7, lowest height first, each height left to right.
type tileNodes [2*tileWidth - 2]tlog.Hash

// node returns the node at height (0..7) and position pos of the tile.
// Heights below h hold 256+128+…+(256>>(h-1)) = 512-(512>>h) hashes.
func (t *tileNodes) node(height, pos int) tlog.Hash {
	return t[2*tileWidth-(2*tileWidth)>>height+pos]
}

const (
	maxUpperTiles = 1024 // 16 MB: every upper tile of logs totalling 64M entries
	edgeCacheSize = 1 << 14
)

func (c *hashCache) tile(k tileCacheKey) *tileNodes {
	c.mu.Lock()
	t := c.upper[k]
	c.mu.Unlock()
	return t
}

func (c *hashCache) putTile(k tileCacheKey, t *tileNodes) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.upper == nil {
		c.upper = make(map[tileCacheKey]*tileNodes)
	}
	if len(c.upper) >= maxUpperTiles {
		for old := range c.upper { // map order is random: a random victim
			delete(c.upper, old)
			break
		}
	}
	c.upper[k] = t
}

func (c *hashCache) edgeHash(seq uint32, idx int64) (tlog.Hash, bool) {
	c.mu.Lock()
	h, ok := c.edge[edgeCacheKey{seq, idx}]
	c.mu.Unlock()
	return h, ok
}

func (c *hashCache) putEdgeHash(seq uint32, idx int64, h tlog.Hash) {
	c.mu.Lock()
	if c.edge == nil || len(c.edge) >= edgeCacheSize {
		c.edge = make(map[edgeCacheKey]tlog.Hash)
	}
	c.edge[edgeCacheKey{seq, idx}] = h
	c.mu.Unlock()
}

// upperTile returns the nodes of the full tile (level ≥ 1, n) from the
// cache or the database.
func (r storedHashes) upperTile(level int, n int64) (*tileNodes, error) {
	k := tileCacheKey{r.seq, level, n}
	if t := r.cache.tile(k); t != nil {
		return t, nil
	}
	tk := tileKeyArray(level, n)
	data := r.b.Get(tk[:])
	if len(data) != tileWidth*tlog.HashSize {
		return nil, fmt.Errorf("index: tile %d/%d holds %d bytes, want a full tile: the stored tree is inconsistent", level, n, len(data))
	}
	t := new(tileNodes)
	for i := 0; i < tileWidth; i++ {
		copy(t[i][:], data[i*tlog.HashSize:])
	}
	ak := tileKeyArray(level|0x80, n)
	if aux := r.b.Get(ak[:]); len(aux) == auxHashes*tlog.HashSize {
		for i := 0; i < auxHashes; i++ {
			copy(t[tileWidth+i][:], aux[i*tlog.HashSize:])
		}
	} else {
		// A legacy aux: hash the inner nodes once.
		for i := tileWidth; i < len(t); i++ {
			j := 2 * (i - tileWidth)
			t[i] = tlog.NodeHash(t[j], t[j+1])
		}
	}
	r.cache.putTile(k, t)
	return t, nil
}

func (r storedHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	// A proof reads runs of hashes from one tile: fetch each value once.
	var lastKey, lastAuxKey [9]byte
	var lastData, lastAux []byte
	haveData, haveAux := false, false
	var lastUpperKey [2]int64
	var lastUpper *tileNodes
	for i, idx := range indexes {
		level, n := tlog.SplitStoredHashIndex(idx)
		height := level % TileHeight
		pos := int(n % int64(tileWidth>>height))
		t := tlog.TileForIndex(TileHeight, idx)
		full := r.full(t.L, t.N)
		if t.L >= 1 && full {
			if k := [2]int64{int64(t.L), t.N}; lastUpper == nil || k != lastUpperKey {
				u, err := r.upperTile(t.L, t.N)
				if err != nil {
					return nil, err
				}
				lastUpperKey, lastUpper = k, u
			}
			out[i] = lastUpper.node(height, pos)
			continue
		}
		cacheable := false // computed from a partial tile: worth keeping
		if height > 0 && !full {
			// A partial tile at the right edge: every proof needs these
			// hashes, and each costs up to 127 hash operations.
			if h, ok := r.cache.edgeHash(r.seq, idx); ok {
				out[i] = h
				continue
			}
			cacheable = height >= 2
		} else if height > 0 {
			if k := tileKeyArray(t.L|0x80, t.N); !haveAux || k != lastAuxKey {
				lastAuxKey, lastAux, haveAux = k, r.b.Get(k[:]), true
			}
			if j, ok := auxPosition(len(lastAux)/tlog.HashSize, height, pos); ok {
				copy(out[i][:], lastAux[j*tlog.HashSize:])
				continue
			}
			// A height below 4 in a legacy aux: computed from at most 8
			// hashes of the tile below.
		}
		if k := tileKeyArray(t.L, t.N); !haveData || k != lastKey {
			lastKey, lastData, haveData = k, r.b.Get(k[:]), true
		}
		h, err := tlog.HashFromTile(t, lastData, idx)
		if err != nil {
			return nil, fmt.Errorf("index: stored hash %d: %w", idx, err)
		}
		if cacheable {
			r.cache.putEdgeHash(r.seq, idx, h)
		}
		out[i] = h
	}
	return out, nil
}

func tileKeyArray(level int, n int64) [9]byte {
	var k [9]byte
	k[0] = byte(level)
	binary.BigEndian.PutUint64(k[1:], uint64(n))
	return k
}
