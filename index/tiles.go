package index

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"slices"
	"sync"

	bolt "go.etcd.io/bbolt"
	"golang.org/x/mod/sumdb/tlog"
)

const tileWidth = 1 << TileHeight // hashes in a full tile

// tileKey is the key of tile (level, n) of the log with prefix in
// tiles/: prefix ‖ level (1) ‖ n (8 BE).
func tileKey(prefix [4]byte, level int, n int64) []byte {
	k := tileKeyArray(prefix, level, n)
	return k[:]
}

func tileKeyArray(prefix [4]byte, level int, n int64) [13]byte {
	var k [13]byte
	copy(k[:], prefix[:])
	k[4] = byte(level)
	binary.BigEndian.PutUint64(k[5:], uint64(n))
	return k
}

// appendHashes adds the leaf hashes of entries [first, first+len(hashes))
// to the tiles of the log with prefix in b. The tree must hold exactly
// first leaves. Whenever a tile fills up, its root joins the tile one
// level up, as in tlog-tiles. The leaf tiles that fill up are returned,
// not stored: they go to the log's files (logfiles.go).
func appendHashes(b *bolt.Bucket, prefix [4]byte, first uint64, hashes []tlog.Hash) ([]leafTile, error) {
	b.FillPercent = 1 // tile keys only ever grow
	var full []leafTile
	for len(hashes) > 0 {
		n := int64(first / tileWidth)
		off := int(first % tileWidth)
		take := min(tileWidth-off, len(hashes))
		if err := appendToTile(b, prefix, 0, n, off, hashes[:take], &full); err != nil {
			return nil, err
		}
		first += uint64(take)
		hashes = hashes[take:]
	}
	return full, nil
}

// appendToTile appends hashes at position off of tile (level, n), which
// must hold exactly off hashes, and carries the tile's root up a level when
// it becomes full. A leaf tile that becomes full is added to leaves.
func appendToTile(b *bolt.Bucket, prefix [4]byte, level int, n int64, off int, hashes []tlog.Hash, leaves *[]leafTile) error {
	key := tileKey(prefix, level, n)
	old := b.Get(key)
	if len(old) != off*tlog.HashSize {
		return fmt.Errorf("index: tile %d/%d holds %d bytes, want %d: the stored tree is inconsistent", level, n, len(old), off*tlog.HashSize)
	}
	data := make([]byte, 0, (off+len(hashes))*tlog.HashSize)
	data = append(data, old...)
	for _, h := range hashes {
		data = append(data, h[:]...)
	}
	if len(data) < tileWidth*tlog.HashSize {
		return b.Put(key, data)
	}
	root, value := blockedTile(data)
	if level == 0 {
		*leaves = append(*leaves, leafTile{n, value})
		if old != nil {
			if err := b.Delete(key); err != nil { // the partial tile it was
				return err
			}
		}
	} else if err := b.Put(key, value); err != nil {
		return err
	}
	return appendToTile(b, prefix, level+1, n/tileWidth, int(n%tileWidth), []tlog.Hash{root}, leaves)
}

// A full tile keeps every node of its subtree, its 256 hashes and the
// inner nodes above them (heights 1 to 7: 128+64+…+2 = 254 hashes, 31.75
// bytes per leaf), so that no proof ever hashes inside a full tile. They
// are laid out in blocks for the proofs' sake: an inclusion proof reads
// one node of each height along one path, and in this order those nodes
// lie in two blocks of 960 bytes rather than across the whole 16 KB value
// (one page or two of the memory map instead of five):
//
//	top block        heights 4 to 7 (16+8+4+2 = 30 hashes), lowest first
//	16 leaf blocks   block b: heights 0 to 3 of leaves [16b, 16b+16)
//	                 (16+8+4+2 = 30 hashes), lowest first
//	1 byte           blockedLayout, which tells this layout by its length
//
// (A partial tile holds only its hashes, in order: it is never read as
// full, and appendToTile extends it.)
//
// Full leaf tiles live in the log's files (logfiles.go), always in this
// layout: Open converts those of an earlier index. The full tiles above
// level 0 stay in tiles/, and earlier layouts of those are still read, by
// the lengths of the values (upperTile):
//
//   - the 510 hashes as tileNodes lays them out: heights 0 to 7, lowest
//     first, each height left to right;
//   - a full tile of 256 hashes and, under the aux key (0x80|level ‖ tile
//     number), its 254 inner nodes as above;
//   - the same with an aux of only heights 4 to 7 (30 hashes).
const (
	blockedLayout   = 1
	blockedLen      = fullTileHashes*tlog.HashSize + 1
	fullTileHashes  = 2*tileWidth - 2 // heights 0..7
	auxHashes       = tileWidth - 2   // heights 1..7
	legacyAuxHashes = 16 + 8 + 4 + 2  // heights 4..7
)

// blockedIndex is the place of the node at height (0..7) and position pos
// of a full tile in the blocked layout.
func blockedIndex(height, pos int) int {
	if height >= 4 {
		// Heights 4 to h-1 hold 16+…+(256>>(h-1)) = 32-(512>>h) hashes.
		return 32 - (2*tileWidth)>>height + pos
	}
	const block = 16 + 8 + 4 + 2
	perBlock := 16 >> height
	// Heights 0 to h-1 of a block hold 16+…+(16>>(h-1)) = 32-(32>>h).
	return block + (pos/perBlock)*block + 32 - 32>>height + pos%perBlock
}

// blockedTile returns the root of a full tile's 256 hashes and the tile's
// value in the blocked layout.
func blockedTile(data []byte) (tlog.Hash, []byte) {
	value := make([]byte, blockedLen)
	value[blockedLen-1] = blockedLayout
	level := make([]tlog.Hash, tileWidth)
	for i := range level {
		copy(level[i][:], data[i*tlog.HashSize:])
	}
	for height := 0; ; height++ {
		for pos, h := range level {
			copy(value[blockedIndex(height, pos)*tlog.HashSize:], h[:])
		}
		for i := 0; i < len(level)/2; i++ {
			level[i] = tlog.NodeHash(level[2*i], level[2*i+1])
		}
		level = level[:len(level)/2]
		if len(level) == 1 {
			return level[0], value
		}
	}
}

// storedHashes reads the nodes of one log's Merkle tree from its tiles. It
// remembers the last tile values it read, so it is used by one goroutine
// within one read transaction.
type storedHashes struct {
	b      *bolt.Bucket // tiles/, shared by all logs
	prefix [4]byte      // this log's keys in b
	cache  *hashCache
	seq    uint32
	synced uint64 // leaves in the tiles: tells full tiles from partial ones

	tiles *bolt.Cursor // reads b; made on first use (or shared by a view)
	// files holds the log's full leaf tiles; leaf is the last one read.
	files *logFiles
	leaf  []byte
	leafN int64

	dataKey  [13]byte // the partial tile last read
	data     []byte
	haveData bool
	upperKey [2]int64
	upper    *tileNodes
}

// get reads the value of key in the tiles bucket.
func (r *storedHashes) get(key []byte) []byte {
	if r.tiles == nil {
		r.tiles = r.b.Cursor()
	}
	return get(r.tiles, key)
}

// full reports whether tile (level, n) holds all its 256 hashes.
func (r *storedHashes) full(level int, n int64) bool {
	leaves := uint64(n+1) << (TileHeight * (level + 1)) // covered by the full tile
	return leaves>>(TileHeight*(level+1)) == uint64(n+1) && leaves <= r.synced
}

// node returns the hash of the complete subtree at level (0 for leaves)
// and index n: tlog's stored hash StoredHashIndex(level, n).
func (r *storedHashes) node(level int, n int64) (tlog.Hash, error) {
	tileLevel, height := level/TileHeight, level%TileHeight
	tile := n >> (TileHeight - height)
	pos := int(n & (tileWidth>>height - 1))
	full := r.full(tileLevel, tile)
	if full && tileLevel >= 1 {
		if k := [2]int64{int64(tileLevel), tile}; r.upper == nil || k != r.upperKey {
			u, err := r.upperTile(tileLevel, tile)
			if err != nil {
				return tlog.Hash{}, err
			}
			r.upperKey, r.upper = k, u
		}
		return r.upper.node(height, pos), nil
	}
	var h tlog.Hash
	if full { // a leaf tile: in the log's files
		if r.leaf == nil || r.leafN != tile {
			data, err := r.files.leafTile(tile)
			if err != nil {
				return h, err
			}
			r.leaf, r.leafN = data, tile
		}
		copy(h[:], r.leaf[blockedIndex(height, pos)*tlog.HashSize:])
		return h, nil
	}
	// A partial tile at the right edge: every proof needs its upper nodes,
	// each costing a read and up to 127 hash operations, so they are
	// cached (all but the leaf-level ones, which few proofs read).
	edge := height >= 2 || tileLevel >= 1
	key := edgeCacheKey{seq: r.seq, a: int64(level), b: n}
	if edge {
		if h, ok := r.cache.edgeHash(key); ok {
			return h, nil
		}
	}
	if k := tileKeyArray(r.prefix, tileLevel, tile); !r.haveData || k != r.dataKey {
		r.dataKey, r.data, r.haveData = k, r.get(k[:]), true
	}
	first, count := pos<<height, 1<<height
	if len(r.data) < (first+count)*tlog.HashSize {
		return h, fmt.Errorf("index: tile %d/%d holds %d bytes, too few for node %d at level %d: the stored tree is inconsistent", tileLevel, tile, len(r.data), n, level)
	}
	h = subtreeHash(r.data[first*tlog.HashSize : (first+count)*tlog.HashSize])
	if edge {
		r.cache.putEdgeHash(key, h)
	}
	return h, nil
}

// subtreeHash returns the root of the perfect tree over the hashes in
// data (a power of two of them).
func subtreeHash(data []byte) tlog.Hash {
	hs := make([]tlog.Hash, len(data)/tlog.HashSize)
	for i := range hs {
		copy(hs[i][:], data[i*tlog.HashSize:])
	}
	for len(hs) > 1 {
		for i := 0; i < len(hs)/2; i++ {
			hs[i] = tlog.NodeHash(hs[2*i], hs[2*i+1])
		}
		hs = hs[:len(hs)/2]
	}
	return hs[0]
}

// ReadHashes implements tlog.HashReader.
func (r *storedHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, idx := range indexes {
		level, n := tlog.SplitStoredHashIndex(idx)
		h, err := r.node(level, n)
		if err != nil {
			return nil, err
		}
		out[i] = h
	}
	return out, nil
}

// rangeHash returns the RFC 6962 hash of leaves [lo, hi), where the range
// is a node of a tree whose right edge is hi: either a complete subtree, or
// a ragged right edge, whose hash is cached (all proofs in a tree of one
// size share the same few).
func (r *storedHashes) rangeHash(lo, hi int64) (tlog.Hash, error) {
	size := hi - lo
	if size&(size-1) == 0 {
		level := bits.TrailingZeros64(uint64(size))
		return r.node(level, lo>>level)
	}
	key := edgeCacheKey{seq: r.seq, ragged: true, a: lo, b: hi}
	if h, ok := r.cache.edgeHash(key); ok {
		return h, nil
	}
	k := int64(1) << (bits.Len64(uint64(size-1)) - 1) // largest power of two < size
	left, err := r.rangeHash(lo, lo+k)
	if err != nil {
		return tlog.Hash{}, err
	}
	right, err := r.rangeHash(lo+k, hi)
	if err != nil {
		return tlog.Hash{}, err
	}
	h := tlog.NodeHash(left, right)
	r.cache.putEdgeHash(key, h)
	return h, nil
}

// proveRecord returns the RFC 6962 inclusion proof of leaf n in the tree of
// the first t leaves, as tlog.ProveRecord does (and tlog.CheckRecord
// checks), reading each node of the path directly. The proof is appended
// to dst[:0].
func (r *storedHashes) proveRecord(dst tlog.RecordProof, t, n int64) (tlog.RecordProof, error) {
	if t < 1 || n < 0 || n >= t || uint64(t) > r.synced {
		return nil, fmt.Errorf("index: no inclusion proof of entry %d in a tree of %d (%d entries indexed)", n, t, r.synced)
	}
	// The path from the root down, each step keeping the half holding n;
	// the proof lists the other halves from the leaf up.
	proof := dst[:0]
	for lo, hi := int64(0), t; hi-lo > 1; {
		k := int64(1) << (bits.Len64(uint64(hi-lo-1)) - 1)
		var sibling tlog.Hash
		var err error
		if n < lo+k {
			sibling, err = r.rangeHash(lo+k, hi)
			hi = lo + k
		} else {
			level := bits.TrailingZeros64(uint64(k))
			sibling, err = r.node(level, lo>>level)
			lo += k
		}
		if err != nil {
			return nil, err
		}
		proof = append(proof, sibling)
	}
	slices.Reverse(proof)
	return proof, nil
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

// edgeCacheKey names a node (level a, index b) or, when ragged, the
// ragged right edge [a, b) of a tree.
type edgeCacheKey struct {
	seq    uint32
	ragged bool
	a, b   int64
}

// tileNodes are the nodes of a full tile at heights 0 (its 256 hashes) to
// 7, lowest height first, each height left to right.
type tileNodes [fullTileHashes]tlog.Hash

// node returns the node at height (0..7) and position pos of the tile.
func (t *tileNodes) node(height, pos int) tlog.Hash {
	return t[tileNodeIndex(height, pos)]
}

// tileNodeIndex is the place of the node at height and position pos in a
// full tile's nodes: heights below h hold 256+128+…+(256>>(h-1)) =
// 512-(512>>h) hashes.
func tileNodeIndex(height, pos int) int {
	return 2*tileWidth - (2*tileWidth)>>height + pos
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

func (c *hashCache) edgeHash(k edgeCacheKey) (tlog.Hash, bool) {
	c.mu.Lock()
	h, ok := c.edge[k]
	c.mu.Unlock()
	return h, ok
}

func (c *hashCache) putEdgeHash(k edgeCacheKey, h tlog.Hash) {
	c.mu.Lock()
	if c.edge == nil || len(c.edge) >= edgeCacheSize {
		c.edge = make(map[edgeCacheKey]tlog.Hash)
	}
	c.edge[k] = h
	c.mu.Unlock()
}

// upperTile returns the nodes of the full tile (level ≥ 1, n) from the
// cache or the database.
func (r *storedHashes) upperTile(level int, n int64) (*tileNodes, error) {
	k := tileCacheKey{r.seq, level, n}
	if t := r.cache.tile(k); t != nil {
		return t, nil
	}
	tk := tileKeyArray(r.prefix, level, n)
	data := r.get(tk[:])
	t := new(tileNodes)
	switch len(data) {
	case blockedLen:
		for height, i := 0, 0; height < TileHeight; height++ {
			for pos := 0; pos < tileWidth>>height; pos, i = pos+1, i+1 {
				copy(t[i][:], data[blockedIndex(height, pos)*tlog.HashSize:])
			}
		}
	case fullTileHashes * tlog.HashSize:
		for i := range t {
			copy(t[i][:], data[i*tlog.HashSize:])
		}
	case tileWidth * tlog.HashSize: // an earlier layout
		for i := 0; i < tileWidth; i++ {
			copy(t[i][:], data[i*tlog.HashSize:])
		}
		ak := tileKeyArray(r.prefix, level|0x80, n)
		if aux := r.get(ak[:]); len(aux) == auxHashes*tlog.HashSize {
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
	default:
		return nil, fmt.Errorf("index: tile %d/%d holds %d bytes, want a full tile: the stored tree is inconsistent", level, n, len(data))
	}
	r.cache.putTile(k, t)
	return t, nil
}
