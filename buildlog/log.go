// Package buildlog is a builder's own log: an append-only Merkle log of
// claims (package claim) published as static C2SP tlog-tiles with a C2SP
// tlog-checkpoint signed by the builder's key.
//
// The log engine is tessera. By default it runs on tessera's POSIX driver
// in a local directory, with one writer process; alternatively
// (Options.Shared) on tessera's AWS driver, the tiles in S3-compatible
// object storage and the sequencing in a MySQL-compatible database, so
// that several frontends can append to one log and it can be served
// straight from the bucket.
// This package is the thin vouch "personality" on top of the engine. It
// adds what tessera has no notion of:
//
//   - One subject, one output. A log must never hold two different outputs
//     for the same (kind, subject). Add refuses such a claim with
//     ErrConflict and keeps the logged one. The check is a SubjectGuard:
//     on POSIX a subject index (bbolt) that follows the log, rebuilt from
//     the log's own entries after a crash, so the log, not the index, is
//     the truth; on the shared backend a table in the log's database that
//     every frontend reserves subjects in before appending (mysqlguard.go).
//   - Idempotence. Resubmitting a claim that agrees with the logged one
//     returns the logged index and Duplicate=true. A client whose connection
//     died after the claim became durable can therefore simply retry.
//   - One writer per POSIX log. An exclusive flock on STATE/log.lock is
//     taken at Open; a second daemon on the same state directory fails at
//     once with a clear error instead of corrupting the log.
//
// # Cost
//
// On POSIX, beyond what tessera stores, a claim costs 13 bytes on disk in
// the subject index (which is compacted when merges leave half of it
// free) and about 1.25–2.5 bytes of memory in the filter that lets Add
// skip the index for a subject never logged before (see subjects.go).
// On the shared backend a
// claim costs a row in the database's subject table (about 660 bytes in
// InnoDB; BENCHMARKS.md).
//
// # Durability
//
// On POSIX, Add returns only when tessera has integrated the entry: the
// entry bundle, the hash tiles and the tree state are written with fsync
// and atomic renames. An acknowledged claim therefore survives kill -9 and
// power loss. A checkpoint committing to it is published within the
// checkpoint interval (one second by default). On the shared backend Add
// returns once the entry is sequenced — committed to the database, from
// which any frontend integrates it into the bucket, normally within a
// second — and its subject is reserved and confirmed in the database
// (shared.go, mysqlguard.go); tessera's AWS driver publishes checkpoints at
// most once a second. If Add returns an error other than ErrConflict or
// a validation error, the claim's fate is unknown: retry it (retries are
// idempotent), do not assume it was rejected.
package buildlog

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/transparency-dev/tessera"
	"github.com/transparency-dev/tessera/api"
	"github.com/transparency-dev/tessera/storage/posix"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/internal/durable"
	"github.com/vouch-dev/vouch/internal/runs"
	"github.com/vouch-dev/vouch/keys"
)

// ErrConflict is returned by Add when the log already holds a different
// output for the claim's subject.
var ErrConflict = errors.New("the log already holds a different output for this subject")

// ConflictError carries the logged claim that a new claim disagreed with.
type ConflictError struct {
	Logged *claim.Claim
	Index  uint64
}

func (e *ConflictError) Error() string {
	return fmt.Sprintf("%v: %s was logged at index %d with %s; the logged claim is kept", ErrConflict, e.Logged.Subject, e.Index, e.Logged.Output())
}

func (e *ConflictError) Unwrap() error { return ErrConflict }

// Options configure a log.
type Options struct {
	// Dir is the directory holding the tiles (served at /log/) and the
	// log's private state. It is created if missing.
	Dir string
	// Identity signs checkpoints; its name is the log's origin line.
	Identity *keys.Identity
	// CheckpointInterval is how often a new checkpoint is published while
	// the log grows. Default 1s.
	CheckpointInterval time.Duration
	// BatchMaxAge bounds how long an entry waits for its batch to fill
	// before being integrated: the latency to durable. Default 25ms.
	BatchMaxAge time.Duration
	// BatchMaxSize is the most entries integrated in one batch. Size it to
	// the expected concurrency. Default 1024.
	BatchMaxSize uint
	// GarbageCollectionInterval is how often the engine removes partial
	// tiles and bundles that full ones superseded. Default 10s.
	GarbageCollectionInterval time.Duration
	// Witnesses are asked to cosign every new checkpoint (C2SP
	// tlog-witness); their cosignatures are published with it. A witness
	// that is down or refuses delays a checkpoint by at most
	// WitnessTimeout and never stops the log: it is then published with
	// the cosignatures it got, and followers whose policy needs more wait
	// for a later one.
	Witnesses []Witness
	// WitnessTimeout bounds the wait for witnesses. Default 5s.
	WitnessTimeout time.Duration

	// Shared, if set, keeps the log in object storage and a database
	// instead of Dir; several frontends may then append to it at once.
	Shared *Shared
}

// Witness is a tlog-witness a log submits its checkpoints to.
type Witness struct {
	VKey string // the witness's cosignature/v1 verifier key
	URL  string // its root; add-checkpoint is POSTed below it
}

// Log is an open builder log. It is safe for concurrent use.
type Log struct {
	dir      string // POSIX only: the tiles directory
	origin   string
	appender *tessera.Appender
	shutdown func(context.Context) error
	reader   tessera.LogReader
	guard    SubjectGuard
	subjects *subjectIndex // POSIX only: the local guard's index
	cancel   context.CancelFunc
	lockFile *os.File // POSIX only

	inflight [inflightShards]inflightShard
}

// inflightShards spreads the subjects being added over independent locks,
// so a thousand concurrent Adds do not all queue on one mutex.
const inflightShards = 64

type inflightShard struct {
	mu sync.Mutex
	m  map[[8]byte]chan struct{} // subject hash being added → closed when that Add ends (nil until someone waits)
	_  [48]byte                  // one shard per cache line
}

// Open opens (or creates) the log. On POSIX (opts.Shared unset) it lives
// in opts.Dir: Open takes the single-writer lock and brings the subject
// index up to date with the log before accepting any write. With
// opts.Shared it opens the shared log described there.
func Open(ctx context.Context, opts Options) (*Log, error) {
	if opts.Identity == nil {
		return nil, errors.New("buildlog: a builder identity is required to sign checkpoints")
	}
	opts.defaults()
	if opts.Shared != nil {
		return openShared(ctx, opts)
	}
	return openPOSIX(ctx, opts)
}

func (opts *Options) defaults() {
	if opts.CheckpointInterval == 0 {
		opts.CheckpointInterval = time.Second
	}
	if opts.BatchMaxAge == 0 {
		opts.BatchMaxAge = 25 * time.Millisecond
	}
	if opts.BatchMaxSize == 0 {
		opts.BatchMaxSize = 1024
	}
	if opts.GarbageCollectionInterval == 0 {
		opts.GarbageCollectionInterval = 10 * time.Second
	}
}

func openPOSIX(ctx context.Context, opts Options) (*Log, error) {
	tiles := filepath.Join(opts.Dir, "tiles")
	if err := os.MkdirAll(tiles, 0o755); err != nil {
		return nil, fmt.Errorf("buildlog: %w", err)
	}
	lock, err := lockExclusive(filepath.Join(opts.Dir, "log.lock"))
	if err != nil {
		return nil, err
	}
	if err := checkOrigin(filepath.Join(opts.Dir, "origin"), opts.Identity.Name); err != nil {
		lock.Close()
		return nil, err
	}
	l := newLog(opts.Identity.Name)
	l.dir, l.lockFile = tiles, lock
	fail := func(err error) (*Log, error) {
		l.closeAfterFailedOpen()
		return nil, err
	}
	if err := checkTilesDir(tiles); err != nil {
		return fail(err)
	}

	l.subjects, err = openSubjectIndex(filepath.Join(opts.Dir, "subjects.db"))
	if err != nil {
		return fail(err)
	}
	l.subjects.reader = l.readEntry
	l.guard = localGuard{l}

	bg, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	driver, err := posix.New(bg, posix.Config{Path: tiles})
	if err != nil {
		return fail(fmt.Errorf("buildlog: open tiles in %s: %w", tiles, err))
	}
	if err := l.start(bg, driver, opts); err != nil {
		return fail(fmt.Errorf("buildlog: start the log in %s: %w (if the state directory was damaged, restore it from a backup; vouch will not rewrite a log)", tiles, err))
	}
	if err := l.catchUp(ctx); err != nil {
		return fail(err)
	}
	if err := l.subjects.startFilter(); err != nil {
		return fail(err)
	}
	return l, nil
}

func newLog(origin string) *Log {
	l := &Log{origin: origin}
	for i := range l.inflight {
		l.inflight[i].m = map[[8]byte]chan struct{}{}
	}
	return l
}

// start runs tessera on driver.
func (l *Log) start(bg context.Context, driver tessera.Driver, opts Options) error {
	ao := tessera.NewAppendOptions().
		WithCheckpointSigner(opts.Identity.Signer).
		WithCheckpointInterval(opts.CheckpointInterval).
		WithBatching(opts.BatchMaxSize, opts.BatchMaxAge).
		// vouch's subject index replaces tessera's antispam; the posix
		// driver's garbage collector only removes partial tiles and bundles
		// superseded by full ones.
		WithGarbageCollectionInterval(opts.GarbageCollectionInterval)
	if len(opts.Witnesses) > 0 {
		group, err := witnessGroup(opts.Witnesses)
		if err != nil {
			return err
		}
		ao.WithWitnesses(group, &tessera.WitnessOptions{Timeout: opts.WitnessTimeout, FailOpen: true})
	}
	appender, shutdown, reader, err := tessera.NewAppender(bg, driver, ao)
	if err != nil {
		return err
	}
	l.appender, l.shutdown, l.reader = appender, shutdown, reader
	return nil
}

// witnessGroup asks every witness: the log wants as many cosignatures as
// it can get; how many are enough is each follower's policy.
func witnessGroup(ws []Witness) (tessera.WitnessGroup, error) {
	g := tessera.NewWitnessGroup(0)
	for _, w := range ws {
		u, err := url.Parse(w.URL)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
			return g, fmt.Errorf("buildlog: witness URL %q must be http:// or https://", w.URL)
		}
		tw, err := tessera.NewWitness(w.VKey, u)
		if err != nil {
			return g, fmt.Errorf("buildlog: witness %s: %w (want its cosignature verifier key)", w.URL, err)
		}
		g.Components = append(g.Components, tw)
	}
	g.N = len(g.Components)
	return g, nil
}

func (l *Log) closeAfterFailedOpen() {
	if l.shutdown != nil {
		sctx, c := context.WithTimeout(context.Background(), 5*time.Second)
		l.shutdown(sctx)
		c()
	}
	if l.cancel != nil {
		l.cancel()
	}
	if l.guard != nil {
		l.guard.Close()
	} else if l.subjects != nil {
		l.subjects.close()
	}
	if l.lockFile != nil {
		l.lockFile.Close()
	}
}

// lockExclusive takes a non-blocking exclusive flock, so that exactly one
// process writes a log: two writers on one tessera POSIX log corrupt it.
func lockExclusive(path string) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("buildlog: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, fmt.Errorf("buildlog: %s is locked by another process (is another vouch daemon running on this state directory?): %w", path, err)
	}
	return f, nil
}

// checkOrigin pins the log's origin: a state directory created for one key
// must not silently start signing with another, which would look like a
// fork to every follower.
func checkOrigin(path, origin string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return durable.WriteNew(path, []byte(origin+"\n"), 0o644)
	}
	if err != nil {
		return fmt.Errorf("buildlog: %w", err)
	}
	if got := string(b); got != origin+"\n" {
		return fmt.Errorf("buildlog: this log was created for key %q but the configured key is %q; use the original key or a new state directory", trimNL(got), origin)
	}
	return nil
}

// checkTilesDir refuses to start on a tiles directory that has lost its
// tree state while keeping tiles: tessera would start a fresh, empty tree
// over the old tiles, and followers would see the log roll back.
func checkTilesDir(tiles string) error {
	_, errState := os.Stat(filepath.Join(tiles, ".state", "treeState"))
	_, errCP := os.Stat(filepath.Join(tiles, "checkpoint"))
	if errors.Is(errState, os.ErrNotExist) && errCP == nil {
		return fmt.Errorf("buildlog: %s has a checkpoint but no .state/treeState: the state directory is damaged; restore it from a backup (starting over would roll the log back and followers would flag it)", tiles)
	}
	if errState == nil {
		b, err := os.ReadFile(filepath.Join(tiles, ".state", "treeState"))
		if err != nil || len(b) == 0 {
			return fmt.Errorf("buildlog: %s/.state/treeState is unreadable or empty: the state directory is damaged; restore it from a backup", tiles)
		}
	}
	return nil
}

func trimNL(s string) string {
	if n := len(s); n > 0 && s[n-1] == '\n' {
		return s[:n-1]
	}
	return s
}

// Origin is the log's origin line (the builder key's name).
func (l *Log) Origin() string { return l.origin }

// TilesDir is the directory served at /log/ for a POSIX log; it is empty
// for a shared log, which Handler serves through the engine's reader.
func (l *Log) TilesDir() string { return l.dir }

// Handler serves the log in tlog-tiles layout (see the package-level
// Handler): from the tiles directory on POSIX, through tessera's reader
// from the bucket for a shared log.
func (l *Log) Handler() http.Handler {
	if l.dir != "" {
		return Handler(l.dir)
	}
	return ReaderHandler(l.reader)
}

// Result is the outcome of a successful Add.
type Result struct {
	Index     uint64
	Duplicate bool // an agreeing claim was already logged at Index
}

// Add appends c to the log and returns once it is durable. See the package
// doc for the conflict and idempotence rules.
func (l *Log) Add(ctx context.Context, c *claim.Claim) (Result, error) {
	entry, err := c.Marshal()
	if err != nil {
		return Result{}, fmt.Errorf("invalid claim: %w", err)
	}
	r, err := l.guard.Reserve(ctx, c)
	if err != nil {
		return Result{}, err
	}
	if logged, idx, ok := r.Logged(); ok {
		if logged.Agrees(c) {
			return Result{Index: idx, Duplicate: true}, nil
		}
		return Result{}, &ConflictError{Logged: logged, Index: idx}
	}
	idx, err := l.append(ctx, entry, r.Renew)
	if err != nil {
		r.Abandon(err)
		return Result{}, fmt.Errorf("append (the claim may or may not be logged; retrying is safe): %w", err)
	}
	if err := r.Confirm(ctx, idx.Index); err != nil {
		return Result{}, fmt.Errorf("the claim is logged at index %d but recording its subject failed (retrying is safe): %w", idx.Index, err)
	}
	return Result{Index: idx.Index}, nil
}

// append adds entry to the log, waiting out pushback (the shared engine
// refuses new batches while too many sequenced entries await integration)
// until ctx ends. Before every attempt after the first it renews the
// subject's reservation, so that a long wait can neither let the
// reservation expire unnoticed nor append after it was resolved.
func (l *Log) append(ctx context.Context, entry []byte, renew func(context.Context) error) (tessera.Index, error) {
	wait := 10 * time.Millisecond
	for try := 0; ; try++ {
		if try > 0 {
			if err := renew(ctx); err != nil {
				return tessera.Index{}, fmt.Errorf("%w (the claim was not appended)", err)
			}
		}
		idx, err := l.appender.Add(ctx, tessera.NewEntry(entry))()
		if !errors.Is(err, tessera.ErrPushback) {
			return idx, err
		}
		select {
		case <-ctx.Done():
			return idx, err
		case <-time.After(wait):
		}
		wait = min(2*wait, time.Second)
	}
}

// lockSubject serialises Adds for one subject, so two concurrent
// submissions with different outputs cannot both pass the conflict check.
// It is keyed by the subject's hash: two subjects sharing it merely wait
// for each other.
func (l *Log) lockSubject(key [8]byte) func() {
	shard := &l.inflight[key[7]%inflightShards]
	shard.mu.Lock()
	for {
		waiters, busy := shard.m[key]
		if !busy {
			break
		}
		// The first waiter makes the channel; an uncontended Add (nearly
		// all of them) never allocates one.
		if waiters == nil {
			waiters = make(chan struct{})
			shard.m[key] = waiters
		}
		shard.mu.Unlock()
		<-waiters
		shard.mu.Lock()
	}
	shard.m[key] = nil
	shard.mu.Unlock()
	return func() {
		shard.mu.Lock()
		waiters := shard.m[key]
		delete(shard.m, key)
		shard.mu.Unlock()
		if waiters != nil {
			close(waiters)
		}
	}
}

// Lookup returns the logged claim for (kind, subject), if any.
func (l *Log) Lookup(kind claim.Kind, subject string) (*claim.Claim, uint64, bool, error) {
	return l.guard.Lookup(context.Background(), kind, subject)
}

// Size returns the size of the integrated tree (which may be ahead of the
// latest published checkpoint by up to one checkpoint interval).
func (l *Log) Size(ctx context.Context) (uint64, error) {
	return l.reader.IntegratedSize(ctx)
}

// Checkpoint returns the latest published signed checkpoint.
func (l *Log) Checkpoint(ctx context.Context) ([]byte, error) {
	return l.reader.ReadCheckpoint(ctx)
}

// catchUp indexes every entry between the subject index's high-water mark
// and the integrated size. After a crash between integration and indexing
// this is what keeps "one subject, one output" true.
func (l *Log) catchUp(ctx context.Context) error {
	size, err := l.reader.IntegratedSize(ctx)
	if err != nil {
		return fmt.Errorf("buildlog: read tree size: %w", err)
	}
	from, err := l.subjects.highWater()
	if err != nil {
		return err
	}
	if from > size {
		return fmt.Errorf("buildlog: the subject index has seen %d entries but the log holds only %d: the log was rolled back or replaced; restore the state directory from a backup", from, size)
	}
	for from < size {
		bundleIdx := from / 256
		n := size - bundleIdx*256
		var p uint8
		if n < 256 {
			p = uint8(n)
		} else {
			n = 256
		}
		raw, err := l.reader.ReadEntryBundle(ctx, bundleIdx, p)
		if err != nil {
			return fmt.Errorf("buildlog: catch up: read entry bundle %d: %w", bundleIdx, err)
		}
		var eb api.EntryBundle
		if err := eb.UnmarshalText(raw); err != nil || uint64(len(eb.Entries)) < n {
			return fmt.Errorf("buildlog: catch up: entry bundle %d is corrupt (want %d entries): %v", bundleIdx, n, err)
		}
		batch := make([]runs.Record, 0, n)
		for i := from - bundleIdx*256; i < n; i++ {
			c, err := claim.Parse(eb.Entries[i])
			if err != nil {
				return fmt.Errorf("buildlog: catch up: entry %d is not a valid claim: %w", bundleIdx*256+i, err)
			}
			batch = append(batch, runs.Record{Hash: subjectHash(c.Key()), Index: bundleIdx*256 + i})
		}
		if err := l.subjects.recordBatch(batch, bundleIdx*256+n); err != nil {
			return err
		}
		from = bundleIdx*256 + n
	}
	return nil
}

// Close stops accepting claims, waits for in-flight ones to be integrated
// and a checkpoint to be published, and releases the lock. The engine's
// background loops (checkpoint publication, garbage collection) stop at
// their next step; tessera offers no way to wait for that, so a caller that
// deletes the directory right after Close may race with one last write.
func (l *Log) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// Shut tessera down before cancelling its context, or pending futures
	// hang.
	err := l.shutdown(ctx)
	l.cancel()
	if err2 := l.guard.Close(); err == nil {
		err = err2
	}
	if l.lockFile != nil {
		l.lockFile.Close()
	}
	return err
}
