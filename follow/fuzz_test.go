package follow

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// FuzzParseEntryBundle: whatever the bytes, the parser never panics, never
// returns more than 256 entries, and what it accepts re-encodes to exactly
// the input (one encoding per bundle).
func FuzzParseEntryBundle(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte{0, 3, 'a', 'b', 'c', 0, 1, 'x'})
	f.Add([]byte{0, 5, 'a'})
	f.Add([]byte{0})
	f.Add([]byte{0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		entries, err := ParseEntryBundle(data)
		if err != nil {
			return
		}
		if len(entries) > 256 {
			t.Fatalf("%d entries", len(entries))
		}
		var re []byte
		for _, e := range entries {
			re = binary.BigEndian.AppendUint16(re, uint16(len(e)))
			re = append(re, e...)
		}
		if !bytes.Equal(re, data) {
			t.Fatalf("re-encoding differs:\n%x\n%x", re, data)
		}
	})
}

func TestParseEntryBundle(t *testing.T) {
	for _, tc := range []struct {
		in   []byte
		want int // entries, -1 for an error
	}{
		{nil, 0},
		{[]byte{0, 3, 'a', 'b', 'c', 0, 1, 'x'}, 2},
		{[]byte{0, 0}, 1},
		{[]byte{0, 3, 'a', 'b'}, -1},
		{[]byte{0, 1, 'a', 0}, -1},
		{bytes.Repeat([]byte{0, 0}, 256), 256},
		{bytes.Repeat([]byte{0, 0}, 257), -1},
	} {
		got, err := ParseEntryBundle(tc.in)
		if (err != nil) != (tc.want < 0) || (err == nil && len(got) != tc.want) {
			t.Errorf("ParseEntryBundle(%x) = %d entries, %v; want %d", tc.in, len(got), err, tc.want)
		}
	}
}
