package witness

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"golang.org/x/mod/sumdb/tlog"
)

const (
	// maxBodySize bounds an add-checkpoint request. A real one is a few
	// KiB: at most 63 proof lines of 45 bytes and a checkpoint whose note
	// carries at most 100 signatures (note.Open's own cap).
	maxBodySize = 1 << 20
	// maxProofHashes is the spec's bound: a consistency proof between two
	// trees of at most 2^64 leaves has at most 63 hashes.
	maxProofHashes = 63
)

// addCheckpoint is a parsed add-checkpoint request body.
type addCheckpoint struct {
	OldSize uint64
	Proof   tlog.TreeProof
	// Checkpoint is the signed note, unverified: the bytes after the
	// blank line that ends the proof.
	Checkpoint []byte
}

// parseAddCheckpoint parses a request body strictly:
//
//	old <decimal, no leading zeroes>\n
//	<base64 of a 32-byte hash>\n     (0 to 63 lines)
//	\n
//	<signed checkpoint note>
//
// Anything else (a missing blank line, a short or padded-differently hash,
// "old 007", a carriage return) is refused: there is exactly one encoding
// of a request, so two parsers can never read one body two ways.
func parseAddCheckpoint(body []byte) (addCheckpoint, error) {
	var req addCheckpoint
	line, rest, ok := bytes.Cut(body, []byte("\n"))
	if !ok {
		return req, errors.New("the body must start with an \"old <size>\" line ending in a newline")
	}
	sizeText, ok := strings.CutPrefix(string(line), "old ")
	if !ok {
		return req, fmt.Errorf("the first line must be \"old <size>\", not %.40q", line)
	}
	old, err := parseDecimal(sizeText)
	if err != nil {
		return req, fmt.Errorf("old size: %w", err)
	}
	req.OldSize = old
	for {
		line, rest, ok = bytes.Cut(rest, []byte("\n"))
		if !ok {
			return req, errors.New("the consistency proof must end with a blank line followed by the checkpoint")
		}
		if len(line) == 0 {
			break
		}
		if len(req.Proof) == maxProofHashes {
			return req, fmt.Errorf("the consistency proof has more than %d hashes", maxProofHashes)
		}
		h, err := parseHash(string(line))
		if err != nil {
			return req, fmt.Errorf("consistency proof line %d: %w", len(req.Proof)+1, err)
		}
		req.Proof = append(req.Proof, h)
	}
	if len(rest) == 0 {
		return req, errors.New("the checkpoint after the blank line is missing")
	}
	req.Checkpoint = rest
	return req, nil
}

// checkpoint is the part of a C2SP tlog-checkpoint a witness reasons
// about. Extension lines are signed over and cosigned, but carry no
// meaning for consistency.
type checkpoint struct {
	Origin string
	Size   uint64
	Root   tlog.Hash
}

// parseCheckpoint parses the text of a checkpoint note (without its
// signatures): origin line, decimal size, base64 root hash, then optional
// non-empty extension lines, each ending in a newline.
func parseCheckpoint(text string) (checkpoint, error) {
	var c checkpoint
	if !strings.HasSuffix(text, "\n") {
		return c, errors.New("checkpoint text must end with a newline")
	}
	lines := strings.Split(text[:len(text)-1], "\n")
	if len(lines) < 3 {
		return c, errors.New("a checkpoint has an origin line, a size line and a root hash line")
	}
	for i, l := range lines {
		if l == "" {
			return c, fmt.Errorf("checkpoint line %d is empty", i+1)
		}
	}
	size, err := parseDecimal(lines[1])
	if err != nil {
		return c, fmt.Errorf("checkpoint size: %w", err)
	}
	root, err := parseHash(lines[2])
	if err != nil {
		return c, fmt.Errorf("checkpoint root hash: %w", err)
	}
	return checkpoint{Origin: lines[0], Size: size, Root: root}, nil
}

// originOf returns the first line of a checkpoint note: its origin, still
// unauthenticated. It only chooses which log's key verifies the note.
func originOf(note []byte) string {
	line, _, _ := bytes.Cut(note, []byte("\n"))
	return string(line)
}

// parseDecimal accepts an ASCII decimal that fits in 64 bits, without sign
// or leading zeroes ("0" itself excepted).
func parseDecimal(s string) (uint64, error) {
	if s == "" || len(s) > 20 || (s[0] == '0' && len(s) > 1) {
		return 0, fmt.Errorf("%.40q is not a decimal without leading zeroes", s)
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return 0, fmt.Errorf("%.40q is not a decimal without leading zeroes", s)
		}
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%.40q does not fit in 64 bits", s)
	}
	return n, nil
}

// parseHash accepts exactly the standard, padded base64 of 32 bytes.
func parseHash(s string) (tlog.Hash, error) {
	var h tlog.Hash
	if len(s) != base64.StdEncoding.EncodedLen(len(h)) {
		return h, fmt.Errorf("%.60q is not the base64 of a 32-byte hash", s)
	}
	var buf [33]byte // DecodedLen(44): Decode may need room for a full quantum
	n, err := base64.StdEncoding.Strict().Decode(buf[:], []byte(s))
	if err != nil || n != len(h) {
		return h, fmt.Errorf("%.60q is not the base64 of a 32-byte hash", s)
	}
	copy(h[:], buf[:n])
	return h, nil
}
