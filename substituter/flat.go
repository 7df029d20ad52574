package substituter

import (
	"bytes"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"io"
)

func newHash(algo string) (hash.Hash, error) {
	switch algo {
	case "md5":
		return md5.New(), nil
	case "sha1":
		return sha1.New(), nil
	case "sha256":
		return sha256.New(), nil
	case "sha512":
		return sha512.New(), nil
	}
	return nil, fmt.Errorf("unknown hash algorithm %q", algo)
}

// narString encodes s as NAR does: little-endian 64-bit length, the bytes,
// zero padding to a multiple of 8.
func narString(s string) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(s)))
	b = append(b, s...)
	for len(b)%8 != 0 {
		b = append(b, 0)
	}
	return b
}

func narStrings(ss ...string) []byte {
	var b []byte
	for _, s := range ss {
		b = append(b, narString(s)...)
	}
	return b
}

// The two ways a NAR of a single regular file can begin, up to the
// contents' length field.
var (
	flatPrefix     = narStrings("nix-archive-1", "(", "type", "regular", "contents")
	flatExecPrefix = narStrings("nix-archive-1", "(", "type", "regular", "executable", "", "contents")
	flatSuffix     = narString(")")
)

// flatFile is an io.Writer that takes a NAR as it streams, requires it to
// be a single regular file, and writes that file's contents to contents:
// flat and text content addresses hash the file, not the NAR.
type flatFile struct {
	contents  io.Writer
	header    []byte // bytes before the contents, collected until complete
	size      uint64 // contents length, once the header is complete
	sizeKnown bool
	body      uint64 // contents bytes seen
	trailer   []byte // padding and ")" after the contents
	err       error
}

func (f *flatFile) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 && f.err == nil {
		switch {
		case !f.sizeKnown:
			// Collect the shorter header first; if it is not that one,
			// the executable one.
			target := len(flatPrefix) + 8
			if len(f.header) >= target {
				target = len(flatExecPrefix) + 8
			}
			take := min(target-len(f.header), len(p))
			f.header = append(f.header, p[:take]...)
			p = p[take:]
			if len(f.header) == target {
				f.parseHeader()
			}
		case f.body < f.size:
			take := uint64(len(p))
			if take > f.size-f.body {
				take = f.size - f.body
			}
			f.contents.Write(p[:take])
			f.body += take
			p = p[take:]
		default:
			f.trailer = append(f.trailer, p...)
			if len(f.trailer) > 8+len(flatSuffix) {
				f.err = errors.New("NAR holds more than one regular file")
			}
			p = nil
		}
	}
	return n, nil
}

func (f *flatFile) parseHeader() {
	for _, prefix := range [][]byte{flatPrefix, flatExecPrefix} {
		if len(f.header) == len(prefix)+8 && bytes.HasPrefix(f.header, prefix) {
			f.size = binary.LittleEndian.Uint64(f.header[len(prefix):])
			f.sizeKnown = true
			return
		}
	}
	if len(f.header) >= len(flatExecPrefix)+8 {
		f.err = errors.New("NAR is not a single regular file, as a flat or text content address requires")
	}
}

// finish checks that the NAR ended right after the file.
func (f *flatFile) finish() error {
	if f.err != nil {
		return f.err
	}
	if !f.sizeKnown || f.body != f.size {
		return errors.New("NAR ends inside the file")
	}
	pad := (8 - f.size%8) % 8
	want := append(make([]byte, pad), flatSuffix...)
	if !bytes.Equal(f.trailer, want) {
		return errors.New("NAR does not end after its single file")
	}
	return nil
}
