package witness

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/internal/durable"
)

// logState is the witness's record of one log: the latest checkpoint it
// cosigned. mu is held from the moment a request is compared with the
// record until the new record is durable and the cosignature is made, so
// two requests for one log can never both be checked against the same old
// record (the rollback race the spec describes).
type logState struct {
	origin   string
	verifier note.Verifier
	path     string // STATE/logs/<sha256(origin)>.checkpoint

	mu sync.Mutex
	// known is false until the first checkpoint of this log is cosigned.
	known bool
	cp    checkpoint
	// signed is the log-signed checkpoint note behind cp, as received: the
	// record's own proof, and half of the evidence of a split view.
	signed []byte
}

// fileID names a log's files by the hash of its origin: origins are
// arbitrary text, file names are not.
func fileID(origin string) string {
	h := sha256.Sum256([]byte(origin))
	return hex.EncodeToString(h[:])
}

// load reads the record, if any. A record that does not verify with the
// configured key is an error, never a fresh start: starting over would let
// the witness cosign a history inconsistent with one it already cosigned.
func (s *logState) load() error {
	b, err := os.ReadFile(s.path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("witness: read the record of %q: %w", s.origin, err)
	}
	n, err := note.Open(b, note.VerifierList(s.verifier))
	if err != nil {
		return fmt.Errorf("witness: %s, the record of log %q, does not verify with the configured key (%v); if the log changed its key on purpose, move the file away to trust its next checkpoint anew", s.path, s.origin, err)
	}
	cp, err := parseCheckpoint(n.Text)
	if err != nil || cp.Origin != s.origin {
		return fmt.Errorf("witness: %s, the record of log %q, is not a checkpoint of that log; restore it from a backup or move it away to trust the log anew", s.path, s.origin)
	}
	s.known, s.cp, s.signed = true, cp, b
	return nil
}

// store makes signed (whose parsed form is cp) the record, durably.
// The caller holds mu.
func (s *logState) store(cp checkpoint, signed []byte) error {
	if err := durable.Replace(s.path, signed, 0o600); err != nil {
		return fmt.Errorf("witness: record checkpoint %d of %q: %w", cp.Size, s.origin, err)
	}
	s.known, s.cp, s.signed = true, cp, signed
	return nil
}

// saveEvidence keeps the two signed checkpoints of a split view side by
// side in STATE/evidence: the one this witness cosigned and the
// conflicting one. Both are plain signed notes anyone can verify with the
// log's key; together they prove that the log signed two histories. A
// conflicting checkpoint that was already saved is not written again, so a
// log retrying the same checkpoint does not fill the disk.
func (s *logState) saveEvidence(dir string, conflicting checkpoint, signed []byte) (string, error) {
	base := filepath.Join(dir, fmt.Sprintf("%s.%s.%s", fileID(s.origin)[:16], strconv.FormatUint(conflicting.Size, 10), hex.EncodeToString(conflicting.Root[:8])))
	if _, err := os.Stat(base + ".conflicting"); err == nil {
		return base, nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", err
	}
	for _, f := range []struct {
		suffix string
		data   []byte
	}{{".cosigned", s.signed}, {".conflicting", signed}} {
		if err := durable.Replace(base+f.suffix, f.data, 0o600); err != nil {
			return "", err
		}
	}
	return base, nil
}

// emptyRoot is the RFC 6962 root of the empty tree, SHA-256 of nothing:
// the only root a checkpoint of size 0 may have.
var emptyRoot = tlog.Hash(sha256.Sum256(nil))
