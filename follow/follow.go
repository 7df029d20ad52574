// Package follow keeps a verified replica of every builder log a policy
// lists, in the node's index (package index).
//
// # What a sync checks
//
// For each configured builder, one sync round does, in order:
//
//  1. Fetch <log>/checkpoint and open it as a signed note with the
//     builder's verifier key. The note's origin line must be the key's
//     name. A bad signature or a malformed body is an error (retried
//     later), not evidence: anyone on the path could have sent it.
//  2. Compare it with the stored checkpoint (old, the latest one verified):
//     - same size, other root: evidence "split-view";
//     - smaller tree than old, when the index holds old's entries: if
//     the smaller tree's root is not the root of the first entries the
//     index holds, evidence "fork" (with a consistency proof from the
//     index); if it is, a stale view (below). When the index does not
//     hold old's entries yet, it cannot tell: a stale view too;
//     - larger: fetch a consistency proof old → new from the log's hash
//     tiles, authenticated against the new root (tlog.TileHashReader),
//     and check it (tlog.CheckTree). A proof that fails against
//     authenticated tiles is evidence "fork"; a tile that does not
//     authenticate is a failed fetch (ErrBadData).
//     The first checkpoint ever accepted is pinned (trust on first use,
//     then never again: every later one must extend it).
//  3. Download the entry bundles from the index's high-water mark up to the
//     new size, in batches of Options.BatchEntries, fetching a few files at a time.
//     Every entry's RFC 6962 leaf hash must equal the hash the signed tree
//     holds at its index (read from authenticated tiles); a bundle that
//     does not parse or holds an entry that does not match is a failed
//     fetch (ErrBadData). Each entry is parsed with
//     claim.Parse (entries that are not version-1 claims are kept for the
//     hashes but not indexed), and each batch is indexed with the new
//     high-water mark in one transaction. A log that claims two outputs for
//     one subject is evidence "conflicting-claims" (both entries, with
//     inclusion proofs to the signed root).
//  4. Recompute the root of the indexed entries and compare it with the
//     signed root: the replica now provably equals the log.
//
// # Evidence, and what is only a failed fetch
//
// Only proven misbehaviour — what anyone holding the builder's public key
// can check on their own (index.Evidence.Proven) — is evidence: two signed
// checkpoints that cannot both be true (split-view, fork), or a signed tree
// that holds two outputs for one subject (conflicting-claims). It is
// recorded in the index and the log is marked compromised: its claims stop
// counting and it is not synced again, until an operator re-admits it
// deliberately (Readmit, `vouch builder readmit`; the evidence is kept,
// the re-admission recorded beside it).
//
// Everything else can be caused by anyone on the path between this node
// and the log — a stale mirror or CDN, a proxy, anyone on plain http —
// and says nothing about the builder: a bad signature, a tile or bundle
// that does not match the signed root (ErrBadData), an older genuine
// checkpoint that is a prefix of the one verified (ErrStaleView: the newer
// one is kept), a timeout. Such a round fails: the log is unavailable
// until a round succeeds, retried with backoff, and the health the index
// keeps (index.Health: error, since when, failures in a row, stale view)
// shows it in vouch report, the dashboard and /metrics. The claims
// already verified keep counting meanwhile; once honest answers return,
// the log syncs on to the newest checkpoint.
//
// Other logs carry on: each log syncs on its own, and one log's failure
// never stops another.
//
// # Memory
//
// Memory is bounded by two batches of Options.BatchEntries entries (one
// being fetched and verified, one being indexed) and a small tile cache,
// whatever the size of the log. During a catch-up (full batches), the
// index file's pages each batch read are released from the process after
// it (index.ReleaseMapped), so its resident set does not grow with the
// index either.
//
// # Scheduling
//
// Run polls each log every config Follow.Interval, with ±10% jitter so
// many followers do not hit a log in lockstep. After a failed round it
// waits Interval×2^k (k failures in a row, capped at MaxBackoff), again
// with jitter; it never polls in a busy loop.
package follow

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/transparency-dev/tessera/api/layout"
	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/config"
	"github.com/vouch-dev/vouch/index"
	"github.com/vouch-dev/vouch/keys"
)

// DefaultBatchEntries is the default number of entries indexed per
// transaction: 128 entry bundles. Larger batches amortise the index's
// commits (each rewrites the B-tree pages its random subject keys touch);
// memory stays bounded by two batches, about 40 MiB for typical claims.
const DefaultBatchEntries = 128 * 256

// MaxBackoff caps the wait after repeated failures.
const MaxBackoff = 10 * time.Minute

// ErrCompromised is returned for a log that has proven evidence recorded
// against it; it is no longer synced until it is re-admitted (Readmit).
var ErrCompromised = errors.New("log is marked compromised")

// ErrBadData is wrapped by the error of a round that was served a tile or
// an entry bundle that does not match the log's signed checkpoint. It
// proves nothing about the builder (anyone on the network path can alter
// bytes), so the round fails and is retried; nothing is recorded.
var ErrBadData = errors.New("served data that does not match the log's signed checkpoint")

// ErrStaleView is wrapped by the error of a round that was served an
// older, genuine checkpoint than the one verified (index.ErrStaleView).
var ErrStaleView = index.ErrStaleView

// Progress reports how far a sync of one log got.
type Progress struct {
	Builder string
	Done    uint64 // entries indexed
	Total   uint64 // size of the checkpoint being synced to
}

// Options tune a Follower. The zero value is fine.
type Options struct {
	// HTTPClient fetches from the logs; default NewHTTPClient().
	HTTPClient *http.Client
	// Progress, if set, is called after each indexed batch. It may be
	// called from several goroutines at once.
	Progress func(Progress)
	// Logger receives one line per sync round and per evidence; default
	// slog.Default().
	Logger *slog.Logger
	// Interval overrides config Follow.Interval.
	Interval time.Duration
	// BatchEntries is the number of entries indexed per transaction,
	// rounded up to a multiple of 256; default DefaultBatchEntries.
	BatchEntries int
	// Registerer, if set, receives every configured log's sync health as
	// gauges (vouch_follow_log_*, see metrics.go).
	Registerer prometheus.Registerer
}

// Follower syncs the logs of a policy into an index.
type Follower struct {
	idx      *index.Index
	logs     []*logSyncer
	interval time.Duration
	progress func(Progress)
	logger   *slog.Logger
}

// LogID returns the index identity of a configured builder.
func LogID(b config.Builder) (index.LogID, error) {
	pub, err := keys.VerifierPublicKey(b.VKey)
	if err != nil {
		return index.LogID{}, fmt.Errorf("builder %s: %w", b.Name, err)
	}
	return index.LogID{Name: b.Name, KeyID: keys.KeyID(pub)}, nil
}

// OpenIndex opens STATE/index.db with the builders cfg lists.
func OpenIndex(cfg *config.Config) (*index.Index, error) {
	ids := make([]index.LogID, 0, len(cfg.Builders))
	for _, b := range cfg.Builders {
		id, err := LogID(b)
		if err != nil {
			return nil, err
		}
		ids = append(ids, id)
	}
	return index.Open(filepath.Join(cfg.State, "index.db"), ids...)
}

// New returns a Follower of cfg's builders that writes to idx (opened with
// OpenIndex(cfg)).
func New(cfg *config.Config, idx *index.Index, opts Options) (*Follower, error) {
	f := &Follower{idx: idx, interval: cfg.Follow.Interval.Duration, progress: opts.Progress, logger: opts.Logger}
	if opts.Interval > 0 {
		f.interval = opts.Interval
	}
	if f.interval <= 0 {
		f.interval = 10 * time.Second
	}
	if f.logger == nil {
		f.logger = slog.Default()
	}
	client := opts.HTTPClient
	if client == nil {
		client = NewHTTPClient()
	}
	batch := uint64(DefaultBatchEntries)
	if opts.BatchEntries > 0 {
		batch = (uint64(opts.BatchEntries) + 255) / 256 * 256
	}
	witnesses, err := newWitnessPolicy(cfg)
	if err != nil {
		return nil, err
	}
	if opts.Registerer != nil {
		if err := opts.Registerer.Register(newHealthCollector(idx)); err != nil {
			return nil, fmt.Errorf("follow: registering metrics: %w", err)
		}
	}
	for _, b := range cfg.Builders {
		s, err := newLogSyncer(b, idx, client)
		if err != nil {
			return nil, err
		}
		s.batch = batch
		s.witnesses = witnesses
		f.logs = append(f.logs, s)
	}
	return f, nil
}

// Result is the outcome of one sync round of one log.
type Result struct {
	Builder string
	Size    uint64 // entries indexed after the round
	Added   uint64 // entries indexed by this round
	// Evidence is set when this round recorded evidence.
	Evidence *index.Evidence
	// Err is why the round failed: ErrCompromised (with Evidence, or for a
	// log marked before), ErrBadData, ErrStaleView, a *FetchError, a bad
	// signature… Only ErrCompromised says anything about the builder.
	Err error
}

// SyncOnce runs one sync round of every log, concurrently, and returns
// their results in configuration order.
func (f *Follower) SyncOnce(ctx context.Context) []Result {
	results := make([]Result, len(f.logs))
	var wg sync.WaitGroup
	for i, s := range f.logs {
		wg.Go(func() { results[i] = f.syncOne(ctx, s) })
	}
	wg.Wait()
	return results
}

func (f *Follower) syncOne(ctx context.Context, s *logSyncer) Result {
	r := s.sync(ctx, f.progress)
	switch {
	case r.Evidence != nil:
		f.logger.Warn("evidence recorded; log marked compromised", "builder", s.builder.Name, "evidence", r.Evidence.ID, "kind", r.Evidence.Kind, "summary", r.Evidence.Summary)
	case errors.Is(r.Err, ErrBadData), errors.Is(r.Err, ErrStaleView):
		// Worth an operator's eye (a tampering path, a stale mirror), but
		// no evidence: the round failed and is retried.
		f.logger.Warn("sync failed; log unavailable this round, its verified claims still count", "builder", s.builder.Name, "err", r.Err)
	case r.Err != nil && !errors.Is(r.Err, ErrCompromised):
		f.logger.Info("sync failed", "builder", s.builder.Name, "err", r.Err)
	}
	if ctx.Err() == nil {
		_ = f.idx.SetHealth(s.id, time.Now(), r.Err) // informational; a failure shows in the next round
	}
	return r
}

// Run syncs every log until ctx is done, each on its own schedule (see
// the package doc). It returns ctx's error.
func (f *Follower) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, s := range f.logs {
		wg.Go(func() { f.runLog(ctx, s) })
	}
	wg.Wait()
	return ctx.Err()
}

func (f *Follower) runLog(ctx context.Context, s *logSyncer) {
	failures := 0
	for {
		r := f.syncOne(ctx, s)
		if errors.Is(r.Err, ErrCompromised) {
			return // nothing more to learn from this log
		}
		wait := f.interval
		if r.Err != nil {
			failures++
			wait = backoff(f.interval, failures)
		} else {
			failures = 0
		}
		t := time.NewTimer(jitter(wait))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// backoff returns interval×2^failures, capped at MaxBackoff (and never
// below interval).
func backoff(interval time.Duration, failures int) time.Duration {
	d := interval
	for i := 0; i < failures && d < MaxBackoff; i++ {
		d *= 2
	}
	return max(interval, min(d, MaxBackoff))
}

// jitter spreads d by ±10%.
func jitter(d time.Duration) time.Duration {
	return d - d/10 + time.Duration(rand.Int64N(int64(d/5)+1))
}

// logSyncer syncs one log.
type logSyncer struct {
	builder  config.Builder
	id       index.LogID
	verifier note.Verifier
	fetch    *fetcher
	idx      *index.Index
	batch    uint64 // entries per transaction, a multiple of 256
	// witnesses is the cosignature rule new checkpoints must meet.
	witnesses *witnessPolicy
}

func newLogSyncer(b config.Builder, idx *index.Index, client *http.Client) (*logSyncer, error) {
	id, err := LogID(b)
	if err != nil {
		return nil, err
	}
	v, err := keys.NewVerifier(b.VKey)
	if err != nil {
		return nil, fmt.Errorf("builder %s: %w", b.Name, err)
	}
	f, err := newFetcher(b.Log, client)
	if err != nil {
		return nil, fmt.Errorf("builder %s: %w", b.Name, err)
	}
	return &logSyncer{builder: b, id: id, verifier: v, fetch: f, idx: idx}, nil
}

// OpenCheckpoint verifies a signed checkpoint note with v and parses it.
// The origin line must be v's name: a log signs its own checkpoints only.
func OpenCheckpoint(raw []byte, v note.Verifier) (*index.Checkpoint, error) {
	n, err := note.Open(raw, note.VerifierList(v))
	if err != nil {
		return nil, fmt.Errorf("checkpoint does not verify with key %s: %w", v.Name(), err)
	}
	cp, err := index.ParseCheckpoint([]byte(n.Text))
	if err != nil {
		return nil, err
	}
	if cp.Origin != v.Name() {
		return nil, fmt.Errorf("checkpoint origin is %q, want the key's name %q", cp.Origin, v.Name())
	}
	cp.Note = raw
	return cp, nil
}

func (s *logSyncer) sync(ctx context.Context, progress func(Progress)) (r Result) {
	r.Builder = s.builder.Name
	defer func() {
		if r.Err != nil {
			r.Err = fmt.Errorf("builder %s (%s): %w", s.builder.Name, s.builder.Log, r.Err)
		}
	}()
	st, err := s.idx.State(s.id)
	if err != nil {
		r.Err = err
		return r
	}
	r.Size = st.Synced
	if st.Compromised {
		r.Err = ErrCompromised
		return r
	}
	raw, err := s.fetch.get(ctx, "checkpoint", maxCheckpointSize)
	if err != nil {
		r.Err = err
		return r
	}
	cp, err := OpenCheckpoint(raw, s.verifier)
	if err != nil {
		r.Err = err
		return r
	}
	tiles := newRemoteTiles(ctx, s.fetch)
	tree := tlog.Tree{N: int64(cp.Size), Hash: cp.Root}
	hashes := tlog.TileHashReader(tree, tiles)

	if old := st.Checkpoint; old != nil {
		ev, err := s.checkExtends(st, old, cp, hashes)
		if ev != nil {
			return s.recordEvidence(r, ev)
		}
		if err != nil {
			r.Err = err
			return r
		}
	}
	// A log that keeps showing an old checkpoint is reported once this
	// round has indexed what that checkpoint holds (witnesses.go).
	staleErr := s.witnesses.stale(raw, s.verifier)
	if st.Checkpoint == nil || cp.Size > st.Checkpoint.Size {
		// Evidence above needs only the log's signature; believing a new
		// checkpoint needs the witnesses too (witnesses.go).
		if err := s.witnesses.check(raw, s.verifier); err != nil {
			r.Err = err
			return r
		}
		if err := s.idx.SetCheckpoint(s.id, cp); err != nil {
			r.Err = err
			return r
		}
	} else {
		cp = st.Checkpoint // unchanged: keep syncing to the stored one
	}

	// Fetching and verifying the next batch overlaps with indexing the
	// current one; at most two batches are alive at once (the channel is
	// unbuffered: one batch being indexed, the next one waiting).
	type fetched struct {
		batch *index.Batch
		err   error
	}
	fetchCtx, stopFetching := context.WithCancel(ctx)
	defer stopFetching()
	batches := make(chan fetched)
	go func() {
		defer close(batches)
		for next := st.Synced; next < cp.Size; {
			end := min(cp.Size, next+s.batch-next%256)
			b, err := s.fetchBatch(fetchCtx, cp, next, end, hashes)
			select {
			case batches <- fetched{b, err}:
			case <-fetchCtx.Done():
				return
			}
			if err != nil {
				return
			}
			next = end
		}
	}()
	for f := range batches {
		if f.err != nil {
			r.Err = f.err
			return r
		}
		if err := ctx.Err(); err != nil {
			r.Err = err
			return r
		}
		conflict, err := s.idx.Append(s.id, f.batch)
		if err != nil {
			r.Err = err
			return r
		}
		if conflict != nil {
			return s.recordEvidence(r, s.conflictEvidence(cp, conflict, hashes))
		}
		end := f.batch.First + uint64(len(f.batch.Entries))
		r.Added += end - f.batch.First
		r.Size = end
		if uint64(len(f.batch.Entries)) == s.batch {
			// A catch-up sync: let go of the index pages this batch read
			// (see index.ReleaseMapped). Small steady-state rounds keep
			// them, for the verdicts that read the same pages.
			if err := s.idx.ReleaseMapped(); err != nil {
				r.Err = fmt.Errorf("releasing the index's mapped pages: %w", err)
				return r
			}
		}
		if progress != nil {
			progress(Progress{Builder: s.builder.Name, Done: end, Total: cp.Size})
		}
	}
	if r.Size < cp.Size {
		r.Err = fmt.Errorf("sync stopped at %d of %d entries: %w", r.Size, cp.Size, context.Cause(ctx))
		return r
	}
	if cp.Size > 0 {
		root, err := s.idx.RootAt(s.id, cp.Size)
		if err != nil {
			r.Err = err
			return r
		}
		if root != cp.Root {
			// Every entry was checked against authenticated hashes, so this
			// means the index itself is damaged, not that the log lied.
			r.Err = fmt.Errorf("the indexed entries hash to %v, not to the signed root %v: the index is damaged; delete %s and sync again", root, cp.Root, s.idx.Path())
			return r
		}
	}
	r.Err = staleErr
	return r
}

// checkExtends checks that cp, just fetched, can follow old, the stored
// checkpoint. It returns evidence when they cannot both be true, an error
// when the check could not be made or cp is an older view (ErrStaleView).
// hashes reads cp's tree from the log's tiles, authenticated.
func (s *logSyncer) checkExtends(st index.State, old, cp *index.Checkpoint, hashes tlog.HashReader) (*index.Evidence, error) {
	switch {
	case cp.Size < old.Size:
		if st.Synced < old.Size {
			// The index does not hold old's entries: whether cp is a prefix
			// of old cannot be told here, and a stale copy of the log
			// (a mirror, a cache, a replay) is the likely reason.
			return nil, fmt.Errorf("%w: the log served a checkpoint of size %d, older than the one of size %d this node verified; keeping that one, and the claims verified so far, and retrying (a stale mirror or cache, or a replay; if it persists, ask the builder)", ErrStaleView, cp.Size, old.Size)
		}
		implied, err := s.idx.RootAt(s.id, cp.Size)
		if err != nil {
			return nil, err
		}
		if implied != cp.Root {
			proof, err := s.idx.ProveTree(s.id, old.Size, cp.Size)
			if err != nil {
				return nil, err
			}
			return s.evidence(index.EvidenceFork,
				fmt.Sprintf("%s signed a tree of size %d whose first %d entries have root %v, and a tree of size %d with root %v: two histories", s.builder.Name, old.Size, cp.Size, implied, cp.Size, cp.Root),
				cp, old, func(e *index.Evidence) { e.TreeProof, e.ImpliedRoot = proof, &implied }), nil
		}
		// A genuine, older view of the same history: nothing is wrong
		// with the builder, only with the copy this node was shown.
		return nil, fmt.Errorf("%w: the log served its genuine checkpoint of size %d, a prefix of the one of size %d this node verified; keeping the newer one, whose claims still count, and retrying (a stale mirror or cache, or a replay)", ErrStaleView, cp.Size, old.Size)
	case cp.Size == old.Size:
		if cp.Root != old.Root {
			return s.evidence(index.EvidenceSplitView,
				fmt.Sprintf("%s signed two different trees of size %d (roots %v and %v)", s.builder.Name, cp.Size, old.Root, cp.Root),
				old, cp, nil), nil
		}
		return nil, nil
	}
	if old.Size == 0 {
		return nil, nil // the empty tree is a prefix of every tree
	}
	proof, err := tlog.ProveTree(int64(cp.Size), int64(old.Size), hashes)
	if err != nil {
		return nil, tileError(err, cp)
	}
	if err := tlog.CheckTree(proof, int64(cp.Size), cp.Root, int64(old.Size), old.Root); err != nil {
		// The proof was read from tiles authenticated against cp's signed
		// root, so it is cp's own tree that disagrees with old: proof.
		implied, err := tlog.TreeHash(int64(old.Size), hashes)
		if err != nil {
			return nil, tileError(err, cp)
		}
		return s.evidence(index.EvidenceFork,
			fmt.Sprintf("%s signed a tree of size %d with root %v, then a tree of size %d whose first %d entries have root %v: the second does not extend the first", s.builder.Name, old.Size, old.Root, cp.Size, old.Size, implied),
			old, cp, func(e *index.Evidence) { e.TreeProof, e.ImpliedRoot = proof, &implied }), nil
	}
	return nil, nil
}

// tileError explains an error of the tile hash reader: a fetch error is
// left as it is; anything else means the tiles served do not authenticate
// against cp's signed root (ErrBadData).
func tileError(err error, cp *index.Checkpoint) error {
	if fe := (*FetchError)(nil); errors.As(err, &fe) {
		return err
	}
	return fmt.Errorf("%w: the hash tiles served do not hash to the signed root %v of size %d (%v); discarded, retrying (altered on the way, or a damaged log)", ErrBadData, cp.Root, cp.Size, err)
}

// fetchBatch downloads and verifies entries [from, to) of the tree of cp;
// to-from is at most one batch and from..to crosses bundle boundaries
// only at multiples of 256. Data that does not match cp is ErrBadData.
func (s *logSyncer) fetchBatch(ctx context.Context, cp *index.Checkpoint, from, to uint64, hashes tlog.HashReader) (*index.Batch, error) {
	// The signed tree's leaf hashes for the batch, authenticated.
	want := make([]int64, 0, to-from)
	for i := from; i < to; i++ {
		want = append(want, tlog.StoredHashIndex(0, int64(i)))
	}
	leafHashes, err := hashes.ReadHashes(want)
	if err != nil {
		return nil, tileError(err, cp)
	}

	// The bundles, a few at a time.
	type bundle struct {
		n    uint64
		path string
		data []byte
		full bool // the full bundle, read in place of a partial one
		err  error
	}
	var bundles []*bundle
	for n := from / 256; n*256 < to; n++ {
		bundles = append(bundles, &bundle{n: n})
	}
	sem := make(chan struct{}, fetchParallelism)
	var wg sync.WaitGroup
	for _, b := range bundles {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			w := int(min(256, cp.Size-b.n*256))
			pathFor := func(p uint8) string { return layout.EntriesPath(b.n, p) }
			b.data, b.path, b.full, b.err = s.fetch.getPartial(ctx, pathFor, w, maxBundleSize)
		})
	}
	wg.Wait()

	batch := &index.Batch{First: from}
	for _, b := range bundles {
		if b.err != nil {
			return nil, b.err
		}
		entries, err := ParseEntryBundle(b.data)
		first := b.n * 256
		lo, hi := max(from, first), min(to, first+256)
		if err == nil && uint64(len(entries)) < hi-first {
			err = fmt.Errorf("%w: %d entries, the signed tree has %d in it", ErrBundle, len(entries), hi-first)
		}
		// A partial bundle holds exactly the entries the tree has there;
		// tlog-tiles asks clients to treat more as an error, not to ignore
		// the surplus (only a full bundle read in its place may hold more).
		if err == nil && !b.full && uint64(len(entries)) > hi-first {
			err = fmt.Errorf("%w: %d entries in a partial bundle of width %d, more than the signed tree holds", ErrBundle, len(entries), hi-first)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: entry bundle %s cannot hold the entries of the signed tree of size %d: %v; discarded, retrying", ErrBadData, b.path, cp.Size, err)
		}
		for i := lo; i < hi; i++ {
			entry := entries[i-first]
			h := tlog.RecordHash(entry)
			if h != leafHashes[i-from] {
				return nil, fmt.Errorf("%w: entry %d in %s does not hash to the leaf hash %v of the signed tree of size %d; discarded, retrying (altered on the way, or a damaged log)", ErrBadData, i, b.path, leafHashes[i-from], cp.Size)
			}
			c, err := claim.Parse(entry)
			if err != nil {
				c = nil // not a claim this version understands: kept, not indexed
			}
			batch.Entries = append(batch.Entries, entry)
			batch.Claims = append(batch.Claims, c)
			batch.Hashes = append(batch.Hashes, h)
		}
	}
	return batch, nil
}

func (s *logSyncer) conflictEvidence(cp *index.Checkpoint, c *index.Conflict, hashes tlog.HashReader) *index.Evidence {
	p1, _ := tlog.ProveRecord(int64(cp.Size), int64(c.FirstIndex), hashes)
	p2, _ := tlog.ProveRecord(int64(cp.Size), int64(c.SecondIndex), hashes)
	return s.evidence(index.EvidenceConflictingClaims,
		fmt.Sprintf("%s logged two different outputs for %s %s, at indexes %d and %d", s.builder.Name, c.Kind, c.Subject, c.FirstIndex, c.SecondIndex),
		cp, nil, func(e *index.Evidence) {
			e.Claims = []index.EvidenceEntry{
				{Index: c.FirstIndex, Entry: c.FirstEntry, Checkpoint: 0, Proof: p1},
				{Index: c.SecondIndex, Entry: c.SecondEntry, Checkpoint: 0, Proof: p2},
			}
		})
}

// evidence builds an Evidence record with the checkpoints a and b (b may
// be nil), then lets fill add kind-specific data.
func (s *logSyncer) evidence(kind index.EvidenceKind, summary string, a, b *index.Checkpoint, fill func(*index.Evidence)) *index.Evidence {
	e := &index.Evidence{Kind: kind, VKey: strings.TrimSpace(s.builder.VKey), Log: s.builder.Log, Time: time.Now().UTC(), Summary: summary}
	e.Checkpoints = append(e.Checkpoints, string(a.Note))
	if b != nil {
		e.Checkpoints = append(e.Checkpoints, string(b.Note))
	}
	if fill != nil {
		fill(e)
	}
	return e
}

func (s *logSyncer) recordEvidence(r Result, e *index.Evidence) Result {
	if err := s.idx.AddEvidence(s.id, e); err != nil {
		r.Err = err
		return r
	}
	r.Evidence = e
	r.Err = fmt.Errorf("%w: evidence %s (%s): %s", ErrCompromised, e.ID, e.Kind, e.Summary)
	return r
}
