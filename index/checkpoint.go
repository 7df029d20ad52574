package index

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"

	"golang.org/x/mod/sumdb/tlog"
)

// Checkpoint is a decoded C2SP tlog-checkpoint. The body of a checkpoint
// note is
//
//	<origin>
//	<tree size, decimal, no leading zeros>
//	<root hash, standard base64 of 32 bytes>
//	[extension lines...]
//
// each line ending in a newline; then a blank line and the signatures:
//
//	example.com/log
//	4
//	YEKBEc4IFzdW1Gf1UuCpYFx/RT2V1LLkSWDrDJoTTwA=
//
//	— example.com/log Az3grlgt...
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   tlog.Hash
	// Note is the whole signed note as the log served it, signatures
	// included, kept verbatim so it can be shown to third parties.
	Note []byte
}

// ErrCheckpoint is wrapped by every error ParseCheckpoint returns.
var ErrCheckpoint = errors.New("malformed checkpoint")

// ParseCheckpoint parses a checkpoint body (the text of a signed note,
// without the signatures), strictly: a non-canonical size or hash is an
// error, extension lines are allowed and ignored.
func ParseCheckpoint(text []byte) (*Checkpoint, error) {
	if len(text) == 0 || text[len(text)-1] != '\n' {
		return nil, fmt.Errorf("%w: body must end with a newline", ErrCheckpoint)
	}
	lines := bytes.Split(text[:len(text)-1], []byte("\n"))
	if len(lines) < 3 {
		return nil, fmt.Errorf("%w: want origin, size and root hash lines, got %d lines", ErrCheckpoint, len(lines))
	}
	origin := string(lines[0])
	if origin == "" {
		return nil, fmt.Errorf("%w: empty origin line", ErrCheckpoint)
	}
	size, err := strconv.ParseUint(string(lines[1]), 10, 64)
	if err != nil || strconv.FormatUint(size, 10) != string(lines[1]) || size >= 1<<63 {
		return nil, fmt.Errorf("%w: tree size %q is not a canonical decimal number", ErrCheckpoint, trunc(lines[1]))
	}
	// Go's base64 decoder skips CR and LF; re-encoding catches a hash line
	// that is not canonical base64.
	raw, err := base64.StdEncoding.DecodeString(string(lines[2]))
	if err != nil || len(raw) != tlog.HashSize || base64.StdEncoding.EncodeToString(raw) != string(lines[2]) {
		return nil, fmt.Errorf("%w: root hash %q is not base64 of %d bytes", ErrCheckpoint, trunc(lines[2]), tlog.HashSize)
	}
	for i, l := range lines[3:] {
		if len(l) == 0 {
			return nil, fmt.Errorf("%w: empty extension line %d", ErrCheckpoint, i+4)
		}
	}
	cp := &Checkpoint{Origin: origin, Size: size}
	copy(cp.Root[:], raw)
	return cp, nil
}

// ParseCheckpointBody parses the body of a stored signed note (text, blank
// line, signatures) without checking its signatures: it is for notes that
// were verified before they were stored.
func ParseCheckpointBody(note []byte) (*Checkpoint, error) {
	i := bytes.LastIndex(note, []byte("\n\n"))
	if i < 0 {
		return nil, fmt.Errorf("%w: not a signed note (no blank line before the signatures)", ErrCheckpoint)
	}
	cp, err := ParseCheckpoint(note[:i+1])
	if err != nil {
		return nil, err
	}
	cp.Note = note
	return cp, nil
}

func trunc(b []byte) string {
	if len(b) > 64 {
		return string(b[:64]) + "…"
	}
	return string(b)
}
