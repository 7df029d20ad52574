package index

import (
	"bytes"
	"encoding/binary"
	"fmt"

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
	root := fullTileRoot(data)
	return appendToTile(b, level+1, n/tileWidth, int(n%tileWidth), []tlog.Hash{root})
}

// fullTileRoot returns the Merkle root of a full tile's 256 hashes.
func fullTileRoot(data []byte) tlog.Hash {
	hs := make([]tlog.Hash, tileWidth)
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

// storedHashes reads tlog stored hashes from the tiles of one log.
type storedHashes struct{ b *bolt.Bucket }

func (r storedHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	var lastKey, lastData []byte
	for i, idx := range indexes {
		t := tlog.TileForIndex(TileHeight, idx)
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
		out[i] = h
	}
	return out, nil
}
