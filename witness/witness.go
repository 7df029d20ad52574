// Package witness is a C2SP tlog-witness: it cosigns other logs'
// checkpoints, and by doing so promises never to cosign two checkpoints of
// one log that cannot both be true. That promise is what defeats split
// views: a log that shows one history to some users and another to others
// can get at most one of them cosigned by an honest witness, so a user who
// requires cosignatures from witnesses it trusts (DESIGN.md, Witness)
// sees either the one history everybody sees or nothing.
//
// Specifications: https://c2sp.org/tlog-witness (the HTTP protocol) and
// https://c2sp.org/tlog-cosignature (the cosignature, type cosignature/v1,
// Ed25519, key type 0x04). Any client of the protocol works; tessera's
// appender with WithWitnesses is one.
//
// # What a cosignature from this witness means
//
// A cosignature on a checkpoint of log L at time T says: at time T, this
// is the largest checkpoint of L that the witness has verified, and every
// checkpoint of L the witness ever cosigned is a prefix of it (proven with
// an RFC 6962 consistency proof). The witness guarantees:
//
//   - It cosigns only the logs it is configured with (Options.Logs), and
//     only checkpoints that carry a valid signature by the log's key; the
//     log's origin line is its key's name.
//   - Append-only: for each log it keeps one record, the latest cosigned
//     checkpoint, in STATE/logs/<sha256(origin)>.checkpoint (the log-signed
//     note as received). A new checkpoint is cosigned only if a consistency
//     proof from the record verifies, or if it is the record itself.
//   - Durable before answering: the new record is written to a temporary
//     file, fsync'd, renamed over the old one and the directory fsync'd
//     before the cosignature is made. A crash or power loss can lose an
//     answer, never the record of a cosignature that was given.
//   - Serialised: the requests for one log are checked and recorded one at
//     a time, and an exclusive lock on STATE/lock keeps a second process
//     off the same state. Two inconsistent checkpoints are never both
//     cosigned, also across restarts.
//   - Trust on first use: the first checkpoint of a log (old size 0, empty
//     proof) is cosigned without any proof, since there is nothing to be
//     consistent with. A witness that joins late therefore pins whatever
//     history the log shows it first; it protects the users who rely on it
//     from then on.
//   - Evidence: a validly signed checkpoint with the size of the record but
//     a different root hash is a split view, proof that the log signed two
//     histories. The witness refuses it (409), logs it at error level, and
//     keeps both signed checkpoints in STATE/evidence/ as
//     <origin hash>.<size>.<root prefix>.cosigned and .conflicting.
//
// The cosigning key is the node's identity (keys.Identity). Reusing the
// key that signs the node's own log is safe: a cosignature signs
// "cosignature/v1\ntime …\n" followed by the checkpoint, and no vouch log
// checkpoint can start with that line, since a key name cannot contain '/'.
//
// # Protocol
//
// POST <prefix>/add-checkpoint with the body
//
//	old <size of the checkpoint the client believes was last cosigned>
//	<consistency proof from that size: base64 hashes, one a line, ≤ 63>
//	<blank line>
//	<the signed checkpoint>
//
// The answers, checked in this order:
//
//	413 Request Entity Too Large  body over 1 MiB
//	400 Bad Request           malformed body or checkpoint
//	404 Not Found             origin not configured
//	403 Forbidden             no valid signature by the log's key
//	400 Bad Request           old size > checkpoint size, or a size-0
//	                          checkpoint whose root is not the empty tree's
//	409 Conflict              old size ≠ recorded size; body "<recorded size>\n",
//	                          Content-Type text/x.tlog.size: retry with that size
//	422 Unprocessable Entity  the consistency proof does not verify (or is not
//	                          empty where it must be: from 0, or between equal sizes)
//	409 Conflict (text/plain) same size as the record, different root: split view
//	500 Internal Server Error the record could not be written; nothing cosigned
//	200 OK                    the cosignature line, text/plain
//
// Bodies are limited to 1 MiB, and parsed strictly: one encoding of each
// request is accepted (no leading zeroes, canonical padded base64, no
// carriage returns).
//
// # Example
//
// The witness "alice" (cosignature verifier key
// alice+39bfa20e+BIqI4910CfGV/VLbLTy6XXLKZwm/HZQSG/N0iAG0D29c) witnesses
// the log "bob" (key bob+9ebaaa42+AYE5dw6ofRdfVqNUZsNMfszLjYqRtO43ol32D1uPybOU).
// It last cosigned bob's checkpoint of size 1. Bob grew to 3 entries and
// asks for a cosignature, sending the consistency proof from 1 to 3:
//
//	POST /witness/add-checkpoint HTTP/1.1
//
//	old 1
//	G79xkq/sCUKlMRqwJ3f2W8JbMV712fZ1bFsURz37EMg=
//	7rpF3SAmvY7AYUYQXo/E/MQEMKMtooTgHExmfLiaoEw=
//
//	bob
//	3
//	aIW0CpGE+d/m/aOKs7B4KD22uZCV3s0zWvSU+VJ40fs=
//
//	— bob nrqqQvLR1wZNR4BFwqN7j9+0Y2tEPF07EC//aM/bXbetT2neDgIyWMA4Qi0np3IxVZ124lIaLBGmyY2yjuVpVMWrcA8=
//
// The proof verifies from the recorded root of size 1, so the witness
// records the new checkpoint and answers
//
//	HTTP/1.1 200 OK
//	Content-Type: text/plain; charset=utf-8
//
//	— alice Ob+iDgAAAABneBRNs39Ultk7Oh0a6PIss8VW39TAMtjFOZXc4OeqEuSIxIg/37m8shTZ/VeC19szLw9/zM1jDr3L0sxmtf38neSCAg==
//
// The cosignature is base64 of the key hash 39bfa20e, the time 1735922765
// (2025-01-03T16:46:05Z) as 8 big-endian bytes, and the Ed25519 signature
// over "cosignature/v1\ntime 1735922765\nbob\n3\naIW0…0fs=\n". Had bob
// sent "old 0", the witness would have answered 409 with the body "1\n".
// (TestDocExample replays this example.)
//
// # Mounting
//
// The handler serves POST /add-checkpoint relative to where it is mounted;
// a node mounts it with http.StripPrefix("/witness", w). A tessera log then
// lists it as tessera.NewWitness(w.VerifierKey(), u) with u the parsed
// "http://HOST/witness" (tessera appends /add-checkpoint).
package witness

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/keys"
)

// Log is a log this witness cosigns.
type Log struct {
	// VKey is the log's signed-note Ed25519 verifier key; its name is the
	// log's origin line.
	VKey string
}

// Options configure a witness.
type Options struct {
	// Dir is the state directory (created 0700): one record per log, the
	// evidence of split views, and a lock file.
	Dir string
	// Identity is the node's Ed25519 key; it cosigns with cosignature/v1.
	Identity *keys.Identity
	// Logs are the only logs this witness cosigns.
	Logs []Log
	// Now gives the cosignature timestamp. Default time.Now.
	Now func() time.Time
	// Logger receives one line per refused request and an error per split
	// view. Default slog.Default().
	Logger *slog.Logger
	// Registerer, if set, receives the witness's metrics:
	// vouch_witness_requests_total{code} and vouch_witness_split_views_total.
	Registerer prometheus.Registerer
}

// Witness is a running witness. It is an http.Handler and safe for
// concurrent use.
type Witness struct {
	dir      string
	logs     map[string]*logState // by origin
	cosigner *cosigner
	vkey     string
	logger   *slog.Logger
	lock     *os.File
	closed   atomic.Bool

	requests   *prometheus.CounterVec // by HTTP status
	splitViews prometheus.Counter
}

// New opens the witness state in opts.Dir, loading the record of every
// configured log.
func New(opts Options) (*Witness, error) {
	if opts.Dir == "" {
		return nil, errors.New("witness: no state directory")
	}
	if opts.Identity == nil {
		return nil, errors.New("witness: no identity to cosign with")
	}
	if len(opts.Logs) == 0 {
		return nil, errors.New("witness: no logs to witness; list the verifier keys of the logs to cosign")
	}
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	logger := opts.Logger
	if logger == nil {
		logger = slog.Default()
	}
	cs, vkey, err := newCosigner(opts.Identity, now)
	if err != nil {
		return nil, err
	}
	w := &Witness{
		dir:      opts.Dir,
		logs:     make(map[string]*logState, len(opts.Logs)),
		cosigner: cs,
		vkey:     vkey,
		logger:   logger.With("role", "witness"),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vouch_witness_requests_total",
			Help: "add-checkpoint requests by HTTP status: 200 cosigned, 409 stale old size or split view, 422 bad proof, 403 bad signature, 404 unknown log.",
		}, []string{"code"}),
		splitViews: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vouch_witness_split_views_total",
			Help: "Validly signed checkpoints refused because the witness cosigned another tree of the same size (evidence kept in STATE/witness/evidence).",
		}),
	}
	if opts.Registerer != nil {
		for _, c := range []prometheus.Collector{w.requests, w.splitViews} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("witness: metrics: %w", err)
			}
		}
	}
	for _, l := range opts.Logs {
		v, err := keys.NewVerifier(l.VKey)
		if err != nil {
			return nil, fmt.Errorf("witness: log key: %w", err)
		}
		if _, dup := w.logs[v.Name()]; dup {
			return nil, fmt.Errorf("witness: log %q is listed twice; a log has one key", v.Name())
		}
		w.logs[v.Name()] = &logState{
			origin:   v.Name(),
			verifier: v,
			path:     filepath.Join(opts.Dir, "logs", fileID(v.Name())+".checkpoint"),
		}
	}
	if err := os.MkdirAll(filepath.Join(opts.Dir, "logs"), 0o700); err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	if w.lock, err = lockExclusive(filepath.Join(opts.Dir, "lock")); err != nil {
		return nil, err
	}
	for _, s := range w.logs {
		if err := s.load(); err != nil {
			w.lock.Close()
			return nil, err
		}
	}
	return w, nil
}

// lockExclusive takes a non-blocking exclusive flock: two processes on one
// state directory could each cosign one side of a split view.
func lockExclusive(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("witness: %s is locked by another process (is another vouch node running on this state directory?): %w", path, err)
	}
	return f, nil
}

// VerifierKey returns the verifier key of this witness's cosignatures,
// "name+hex8+base64(0x04‖pub)": what users and logs list.
func (w *Witness) VerifierKey() string { return w.vkey }

// Close releases the state directory. Requests after Close are refused
// with 503.
func (w *Witness) Close() error {
	if w.closed.Swap(true) {
		return nil
	}
	// Wait for requests holding a log's lock to finish recording.
	for _, s := range w.logs {
		s.mu.Lock()
		defer s.mu.Unlock()
	}
	return w.lock.Close()
}

// ServeHTTP serves POST /add-checkpoint.
func (w *Witness) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.URL.Path != "/add-checkpoint" {
		http.Error(rw, "not found: the witness serves POST /add-checkpoint", http.StatusNotFound)
		return
	}
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		http.Error(rw, "add-checkpoint takes a POST", http.StatusMethodNotAllowed)
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, maxBodySize))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(rw, fmt.Sprintf("request body over %d bytes", maxBodySize), http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(rw, "reading the request body: "+err.Error(), http.StatusBadRequest)
		return
	}
	code, answer, contentType := w.addCheckpoint(body)
	w.requests.WithLabelValues(strconv.Itoa(code)).Inc()
	switch {
	case code == http.StatusOK:
	case contentType == tlogSize:
		// The normal start of a client that does not know the record.
		w.logger.Debug("add-checkpoint: old size differs from the record", "recorded", strings.TrimSpace(answer), "from", r.RemoteAddr)
	case code == http.StatusConflict:
		// A split view, already logged as an error.
	default:
		w.logger.Info("add-checkpoint refused", "status", code, "reason", strings.TrimSpace(answer), "from", r.RemoteAddr)
	}
	rw.Header().Set("Content-Type", contentType)
	rw.Header().Set("X-Content-Type-Options", "nosniff")
	rw.WriteHeader(code)
	io.WriteString(rw, answer)
}

const (
	textPlain = "text/plain; charset=utf-8"
	// tlogSize is the content type of a 409 that tells the client the
	// recorded size; the client retries with it.
	tlogSize = "text/x.tlog.size"
)

// addCheckpoint decides a request: the status, the body (a reason ending
// in a newline, or the cosignature lines) and its content type.
func (w *Witness) addCheckpoint(body []byte) (int, string, string) {
	fail := func(code int, format string, args ...any) (int, string, string) {
		return code, fmt.Sprintf(format, args...) + "\n", textPlain
	}
	if w.closed.Load() {
		return fail(http.StatusServiceUnavailable, "the witness is shutting down")
	}
	req, err := parseAddCheckpoint(body)
	if err != nil {
		return fail(http.StatusBadRequest, "malformed add-checkpoint request: %v", err)
	}
	log, ok := w.logs[originOf(req.Checkpoint)]
	if !ok {
		return fail(http.StatusNotFound, "this witness does not witness the log %.100q", originOf(req.Checkpoint))
	}
	n, err := note.Open(req.Checkpoint, note.VerifierList(log.verifier))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		if errors.As(err, &unverified) || errors.As(err, &invalid) {
			return fail(http.StatusForbidden, "the checkpoint carries no valid signature by %s's key: %v", log.origin, err)
		}
		return fail(http.StatusBadRequest, "the checkpoint is not a well-formed signed note: %v", err)
	}
	cp, err := parseCheckpoint(n.Text)
	if err != nil {
		return fail(http.StatusBadRequest, "malformed checkpoint: %v", err)
	}
	if cp.Size == 0 && cp.Root != emptyRoot {
		return fail(http.StatusBadRequest, "a checkpoint of size 0 must have the empty tree's root %s", emptyRoot)
	}
	if req.OldSize > cp.Size {
		return fail(http.StatusBadRequest, "old size %d is larger than the checkpoint's size %d", req.OldSize, cp.Size)
	}

	log.mu.Lock()
	defer log.mu.Unlock()
	if w.closed.Load() {
		return fail(http.StatusServiceUnavailable, "the witness is shutting down")
	}
	if req.OldSize != log.cp.Size {
		// Also the answer to a checkpoint smaller than the record: it
		// cannot extend what was cosigned, and the client learns why.
		return http.StatusConflict, strconv.FormatUint(log.cp.Size, 10) + "\n", tlogSize
	}
	if req.OldSize == cp.Size {
		if len(req.Proof) != 0 {
			return fail(http.StatusUnprocessableEntity, "the consistency proof between equal sizes must be empty")
		}
		if log.known && cp.Root != log.cp.Root {
			return w.splitView(log, cp, req.Checkpoint)
		}
	} else if req.OldSize == 0 {
		if len(req.Proof) != 0 {
			return fail(http.StatusUnprocessableEntity, "the consistency proof from size 0 must be empty")
		}
	} else if err := tlog.CheckTree(req.Proof, int64(cp.Size), cp.Root, int64(log.cp.Size), log.cp.Root); err != nil {
		// Not evidence: the proof, not the log's signature, is wrong.
		return fail(http.StatusUnprocessableEntity, "the consistency proof from size %d to %d does not verify", log.cp.Size, cp.Size)
	}
	if !log.known || cp.Size > log.cp.Size {
		if !log.known {
			w.logger.Info("first checkpoint of a log, trusted on first use", "origin", log.origin, "size", cp.Size, "root", cp.Root.String())
		}
		if err := log.store(cp, req.Checkpoint); err != nil {
			w.logger.Error("cannot record a checkpoint; not cosigning", "origin", log.origin, "err", err)
			return fail(http.StatusInternalServerError, "the witness could not record the checkpoint")
		}
	}
	sigs, err := signatureLines(n.Text, w.cosigner)
	if err != nil {
		w.logger.Error("cosigning failed", "origin", log.origin, "err", err)
		return fail(http.StatusInternalServerError, "the witness could not cosign: %v", err)
	}
	w.logger.Debug("cosigned", "origin", log.origin, "old", req.OldSize, "size", cp.Size, "proof_hashes", len(req.Proof))
	return http.StatusOK, string(sigs), textPlain
}

// splitView answers a validly signed checkpoint with the recorded size but
// another root, after keeping both as evidence. The caller holds log.mu.
func (w *Witness) splitView(log *logState, cp checkpoint, signed []byte) (int, string, string) {
	w.splitViews.Inc()
	evidence, err := log.saveEvidence(filepath.Join(w.dir, "evidence"), cp, signed)
	w.logger.Error("SPLIT VIEW: the log signed two different trees of the same size; refusing to cosign",
		"origin", log.origin, "size", cp.Size, "cosigned_root", log.cp.Root.String(), "conflicting_root", cp.Root.String(),
		"evidence", evidence, "evidence_err", err)
	return http.StatusConflict, fmt.Sprintf("split view: this witness cosigned %s at size %d with root %s, not %s\n",
		log.origin, cp.Size, log.cp.Root, cp.Root), textPlain
}
