package follow

import (
	"encoding/binary"
	"errors"
	"fmt"
)

// ErrBundle is wrapped by every error ParseEntryBundle returns.
var ErrBundle = errors.New("malformed entry bundle")

// ParseEntryBundle splits a C2SP tlog-tiles entry bundle into its entries.
// A bundle is the concatenation of at most 256 entries, each a big-endian
// uint16 length followed by that many bytes:
//
//	00 03 'a' 'b' 'c'   00 01 'x'   → ["abc", "x"]
//
// Trailing bytes that do not form a whole entry are an error. The entries
// returned share data's memory.
func ParseEntryBundle(data []byte) ([][]byte, error) {
	entries := make([][]byte, 0, 256)
	for off := 0; off < len(data); {
		if len(entries) == 256 {
			return nil, fmt.Errorf("%w: more than 256 entries", ErrBundle)
		}
		if len(data)-off < 2 {
			return nil, fmt.Errorf("%w: %d stray bytes at offset %d", ErrBundle, len(data)-off, off)
		}
		n := int(binary.BigEndian.Uint16(data[off:]))
		off += 2
		if len(data)-off < n {
			return nil, fmt.Errorf("%w: entry %d claims %d bytes, only %d remain", ErrBundle, len(entries), n, len(data)-off)
		}
		entries = append(entries, data[off:off+n:off+n])
		off += n
	}
	return entries, nil
}
