package buildlog

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
	"github.com/transparency-dev/tessera"

	"github.com/vouch-dev/vouch/claim"
)

// mysqlGuard is the SubjectGuard of a shared log: a table in the log's
// database with one row per subject, keyed by SHA-256 of the subject key.
//
// Reserve inserts the row before the append (logIndex NULL: reserved);
// the database's primary key makes the insert succeed for exactly one
// writer, whichever frontend it runs in, which is what makes
// check-and-record linearizable. Confirm sets logIndex; a confirmed row is
// never changed or removed. A writer that finds a reserved row waits for it
// to be confirmed or released.
//
// The row also records the holding frontend's id and fromIndex, the log's
// next index just before the reservation: if the holder's claim reached
// the log, it is at or above it. Every frontend holds a database
// session lock (GET_LOCK) named after its id for as long as it runs; the
// server releases it when the session ends, at once when the process dies
// (kill -9 closes its connections) and after sessionTimeout when its
// machine vanishes. A reservation whose holder's lock is free and that was
// not renewed for staleAfter is resolved by the next writer that meets it:
// it waits until every entry sequenced so far is integrated, then searches
// the log from fromIndex. If the claim is there, the row is confirmed with
// its index; if not, the row is deleted and the subject is free. Each row
// carries a random token so that a resolution or a late Confirm only ever
// acts on the reservation it saw. A live frontend's reservations are never
// resolved, however slow its append.
//
// What remains is the window of a frontend whose lock session is lost
// (killed by the server after sessionTimeout without pings, a network
// partition) while the process lives on with an append in flight. The
// frontend then refuses new reservations and renewals until it has its
// lock again, and Confirm reports a reservation resolved under it.
type mysqlGuard struct {
	db         *sql.DB
	reader     tessera.LogReader // set once the engine runs, before any Reserve
	staleAfter time.Duration
	id         []byte // this frontend's id; its session lock is lockName(id)

	lockMu   sync.Mutex
	lockConn *sql.Conn // holds the session lock; nil while lost
	stop     chan struct{}
	stopOnce sync.Once
	stopped  chan struct{}

	reserves chan reserveReq // to the batcher (mysqlbatch.go)
	confirms chan confirmReq
}

// sessionTimeout is how long the server keeps a silent frontend's session
// (and so its lock); the frontend pings it every sessionPing.
const (
	sessionTimeout = 60
	sessionPing    = 10 * time.Second
)

func lockName(id []byte) string { return fmt.Sprintf("vouch-frontend-%x", id) }

// DefaultStaleReservation is Shared.StaleReservation when unset: a dead
// frontend's process holds nothing in flight, so a few seconds suffice.
const DefaultStaleReservation = 5 * time.Second

// reservationPoll is how often a writer re-reads a subject another writer
// has reserved.
const reservationPoll = 10 * time.Millisecond

func openMySQLGuard(ctx context.Context, dsn *mysql.Config, origin string, staleAfter time.Duration) (*mysqlGuard, error) {
	if staleAfter == 0 {
		staleAfter = DefaultStaleReservation
	}
	db, err := openMySQLDB(ctx, dsn)
	if err != nil {
		return nil, fmt.Errorf("buildlog: subject guard: %w", err)
	}
	g := &mysqlGuard{db: db, staleAfter: staleAfter, id: make([]byte, 16), stop: make(chan struct{}), stopped: make(chan struct{})}
	rand.Read(g.id)
	for _, stmt := range []string{
		`CREATE TABLE IF NOT EXISTS VouchLog (
			id INT UNSIGNED NOT NULL,
			origin VARCHAR(255) NOT NULL,
			PRIMARY KEY (id)
		)`,
		`CREATE TABLE IF NOT EXISTS VouchSubjects (
			subjectHash BINARY(32) NOT NULL,
			claim MEDIUMBLOB NOT NULL,
			logIndex BIGINT UNSIGNED NULL,
			fromIndex BIGINT UNSIGNED NOT NULL,
			token BINARY(16) NOT NULL,
			frontend BINARY(16) NOT NULL,
			reservedAt TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
			PRIMARY KEY (subjectHash)
		)`,
	} {
		if _, err := db.ExecContext(ctx, stmt); err != nil {
			db.Close()
			return nil, fmt.Errorf("buildlog: create the subject guard's tables: %w", err)
		}
	}
	if err := g.checkOrigin(ctx, origin); err != nil {
		db.Close()
		return nil, err
	}
	if err := g.takeLock(ctx); err != nil {
		db.Close()
		return nil, err
	}
	go g.keepLock()
	g.reserves, g.confirms = make(chan reserveReq), make(chan confirmReq)
	go batchLoop(g.reserves, g.stop, g.reserveBatch)
	go batchLoop(g.confirms, g.stop, g.confirmBatch)
	return g, nil
}

// takeLock opens the session that holds this frontend's lock.
func (g *mysqlGuard) takeLock(ctx context.Context) error {
	conn, err := g.db.Conn(ctx)
	if err != nil {
		return fmt.Errorf("buildlog: open the frontend's lock session: %w", err)
	}
	var got sql.NullInt64
	if _, err = conn.ExecContext(ctx, fmt.Sprintf("SET SESSION wait_timeout = %d", sessionTimeout)); err == nil {
		err = conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", lockName(g.id)).Scan(&got)
	}
	if err != nil || got.Int64 != 1 {
		conn.Close()
		return fmt.Errorf("buildlog: take the frontend's lock %s: %v (got %v)", lockName(g.id), err, got)
	}
	g.lockMu.Lock()
	g.lockConn = conn
	g.lockMu.Unlock()
	return nil
}

// keepLock pings the lock session, and takes the lock again in a new
// session if the old one was lost.
func (g *mysqlGuard) keepLock() {
	defer close(g.stopped)
	t := time.NewTicker(sessionPing)
	defer t.Stop()
	for {
		select {
		case <-g.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), sessionPing)
		g.lockMu.Lock()
		conn := g.lockConn
		g.lockMu.Unlock()
		if conn != nil {
			var held sql.NullInt64
			err := conn.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?) = CONNECTION_ID()", lockName(g.id)).Scan(&held)
			if err != nil || held.Int64 != 1 {
				g.lockMu.Lock()
				g.lockConn = nil
				g.lockMu.Unlock()
				conn.Close()
			}
		}
		g.lockMu.Lock()
		lost := g.lockConn == nil
		g.lockMu.Unlock()
		if lost {
			g.takeLock(ctx)
		}
		cancel()
	}
}

// alive reports an error while this frontend does not hold its lock:
// others may then resolve its reservations, so it must not append.
func (g *mysqlGuard) alive() error {
	g.lockMu.Lock()
	defer g.lockMu.Unlock()
	if g.lockConn == nil {
		return errors.New("buildlog: this frontend lost its database session; refusing to append until it has it back")
	}
	return nil
}

// checkOrigin pins the database to one log, as the origin file does for a
// POSIX log: a frontend with another key would sign a fork of the log.
func (g *mysqlGuard) checkOrigin(ctx context.Context, origin string) error {
	if _, err := g.db.ExecContext(ctx, `INSERT IGNORE INTO VouchLog (id, origin) VALUES (0, ?)`, origin); err != nil {
		return fmt.Errorf("buildlog: record the log's origin: %w", err)
	}
	var got string
	if err := g.db.QueryRowContext(ctx, `SELECT origin FROM VouchLog WHERE id = 0`).Scan(&got); err != nil {
		return fmt.Errorf("buildlog: read the log's origin: %w", err)
	}
	if got != origin {
		return fmt.Errorf("buildlog: the shared log in this database was created for key %q but the configured key is %q; every frontend of a log must use the same key", got, origin)
	}
	return nil
}

// claimKeyHash is the key of a subject in the shared guard: SHA-256 of
// "kind subject", in full, so that distinct subjects never share a row.
func claimKeyHash(c *claim.Claim) []byte { return subjectKeyHash(c.Key()) }

func subjectKeyHash(key string) []byte {
	h := sha256.Sum256([]byte(key))
	return h[:]
}

func (g *mysqlGuard) Reserve(ctx context.Context, c *claim.Claim) (Reservation, error) {
	entry, err := c.Marshal()
	if err != nil {
		return nil, err
	}
	h := claimKeyHash(c)
	if err := g.alive(); err != nil {
		return nil, err
	}
	// The common case, a subject nobody holds, in a batch.
	token := make([]byte, 16)
	rand.Read(token)
	req := reserveReq{h: h, entry: entry, token: token, won: make(chan error, 1)}
	select {
	case g.reserves <- req:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	switch err := <-req.won; {
	case err == nil:
		return &mysqlReservation{g: g, h: h, token: token}, nil
	case err != errLost:
		return nil, err
	}
	// The subject has a row: the one-claim path reads it and decides.
	for {
		if err := g.alive(); err != nil {
			return nil, err
		}
		from, err := g.reader.NextIndex(ctx)
		if err != nil {
			return nil, fmt.Errorf("buildlog: read the log's next index: %w", err)
		}
		var token [16]byte
		rand.Read(token[:])
		_, err = g.db.ExecContext(ctx,
			`INSERT INTO VouchSubjects (subjectHash, claim, logIndex, fromIndex, token, frontend) VALUES (?, ?, NULL, ?, ?, ?)`,
			h, entry, from, token[:], g.id)
		if err == nil {
			return &mysqlReservation{g: g, h: h, token: token[:]}, nil
		}
		if !isDuplicateKey(err) {
			return nil, fmt.Errorf("buildlog: reserve the subject: %w", err)
		}
		row, err := g.read(ctx, h)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			// Released since the insert failed: try again.
			continue
		case err != nil:
			return nil, err
		case row.logIndex.Valid:
			logged, err := claim.Parse(row.claim)
			if err != nil {
				return nil, fmt.Errorf("buildlog: the subject guard holds an invalid claim for %s: %w", c.Key(), err)
			}
			return loggedReservation{logged, uint64(row.logIndex.Int64)}, nil
		case row.age >= g.staleAfter && !row.holderAlive:
			if err := g.resolve(ctx, h, row); err != nil {
				return nil, err
			}
			continue
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("buildlog: waiting for another frontend's append of %s: %w", c.Key(), ctx.Err())
		case <-time.After(reservationPoll):
		}
	}
}

type subjectRow struct {
	claim     []byte
	logIndex  sql.NullInt64
	fromIndex uint64
	token     []byte
	age       time.Duration // since reserved or last renewed
	// holderAlive: the reserving frontend still holds its session lock.
	holderAlive bool
}

func (g *mysqlGuard) read(ctx context.Context, h []byte) (subjectRow, error) {
	var r subjectRow
	var ageMicros int64
	err := g.db.QueryRowContext(ctx,
		`SELECT claim, logIndex, fromIndex, token, TIMESTAMPDIFF(MICROSECOND, reservedAt, CURRENT_TIMESTAMP(6)),
			IS_USED_LOCK(CONCAT('vouch-frontend-', LOWER(HEX(frontend)))) IS NOT NULL
		FROM VouchSubjects WHERE subjectHash = ?`, h).
		Scan(&r.claim, &r.logIndex, &r.fromIndex, &r.token, &ageMicros, &r.holderAlive)
	if err != nil && !errors.Is(err, sql.ErrNoRows) {
		return r, fmt.Errorf("buildlog: read the subject guard: %w", err)
	}
	r.age = time.Duration(ageMicros) * time.Microsecond
	return r, err
}

// resolve settles a stale reservation from the log: confirmed at the
// index where its claim is, or deleted if the claim is not in the log.
func (g *mysqlGuard) resolve(ctx context.Context, h []byte, row subjectRow) error {
	next, err := g.reader.NextIndex(ctx)
	if err != nil {
		return fmt.Errorf("buildlog: resolve a stale reservation: %w", err)
	}
	// Everything sequenced so far — the dead holder's claim included, if it
	// got that far — must be integrated before the log can be searched.
	for {
		size, err := g.reader.IntegratedSize(ctx)
		if err != nil {
			return fmt.Errorf("buildlog: resolve a stale reservation: %w", err)
		}
		if size >= next {
			break
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("buildlog: resolve a stale reservation: waiting for entries up to %d to be integrated: %w", next, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	var found bool
	var foundAt uint64
	var foundEntry []byte
	err = scanEntries(ctx, g.reader, row.fromIndex, next, func(idx uint64, entry []byte) bool {
		c, err := claim.Parse(entry)
		if err != nil || string(claimKeyHash(c)) != string(h) {
			return true
		}
		found, foundAt, foundEntry = true, idx, entry
		return false
	})
	if err != nil {
		return fmt.Errorf("buildlog: resolve a stale reservation: %w", err)
	}
	if found {
		_, err = g.db.ExecContext(ctx,
			`UPDATE VouchSubjects SET logIndex = ?, claim = ? WHERE subjectHash = ? AND token = ? AND logIndex IS NULL`,
			foundAt, foundEntry, h, row.token)
	} else {
		_, err = g.db.ExecContext(ctx,
			`DELETE FROM VouchSubjects WHERE subjectHash = ? AND token = ? AND logIndex IS NULL`, h, row.token)
	}
	if err != nil {
		return fmt.Errorf("buildlog: resolve a stale reservation: %w", err)
	}
	return nil
}

func (g *mysqlGuard) Lookup(ctx context.Context, kind claim.Kind, subject string) (*claim.Claim, uint64, bool, error) {
	row, err := g.read(ctx, subjectKeyHash(string(kind)+" "+subject))
	if errors.Is(err, sql.ErrNoRows) || (err == nil && !row.logIndex.Valid) {
		return nil, 0, false, nil
	}
	if err != nil {
		return nil, 0, false, err
	}
	c, err := claim.Parse(row.claim)
	if err != nil {
		return nil, 0, false, fmt.Errorf("buildlog: the subject guard holds an invalid claim for %s %s: %w", kind, subject, err)
	}
	return c, uint64(row.logIndex.Int64), true, nil
}

func (g *mysqlGuard) Close() error {
	g.stopOnce.Do(func() { close(g.stop) })
	<-g.stopped
	g.lockMu.Lock()
	if g.lockConn != nil {
		g.lockConn.Close()
	}
	g.lockMu.Unlock()
	return g.db.Close()
}

type mysqlReservation struct {
	g     *mysqlGuard
	h     []byte
	token []byte
}

func (r *mysqlReservation) Logged() (*claim.Claim, uint64, bool) { return nil, 0, false }

func (r *mysqlReservation) Renew(ctx context.Context) error {
	if err := r.g.alive(); err != nil {
		return err
	}
	res, err := r.g.db.ExecContext(ctx,
		`UPDATE VouchSubjects SET reservedAt = CURRENT_TIMESTAMP(6) WHERE subjectHash = ? AND token = ? AND logIndex IS NULL`, r.h, r.token)
	if err != nil {
		return fmt.Errorf("buildlog: renew the subject's reservation: %w", err)
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		return errors.New("buildlog: the subject's reservation expired and was resolved by another frontend")
	}
	return nil
}

func (r *mysqlReservation) Confirm(ctx context.Context, idx uint64) error {
	// The claim is in the log: finish recording it even if the caller has
	// gone.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	req := confirmReq{h: r.h, token: r.token, idx: idx, done: make(chan bool, 1)}
	select {
	case r.g.confirms <- req:
		if <-req.done {
			return nil
		}
	case <-ctx.Done():
	}
	res, err := r.confirmOne(ctx, idx)
	if err != nil {
		// While this frontend lives nobody else resolves the reservation,
		// so keep trying in the background (a resubmission waits for it
		// meanwhile); if this frontend dies first, the reservation is
		// resolved from the log, where the claim is.
		go r.keepConfirming(idx)
		return err
	}
	if n, err := res.RowsAffected(); err == nil && n == 0 {
		// Another frontend resolved the reservation as stale. If it found
		// the claim, the row says so; anything else breaks the lease.
		row, err := r.g.read(ctx, r.h)
		if err == nil && row.logIndex.Valid && uint64(row.logIndex.Int64) == idx {
			return nil
		}
		return errors.New("the subject's reservation was resolved by another frontend while this one appended (it had lost its database session): the log may hold a conflicting claim for it")
	}
	return nil
}

func (r *mysqlReservation) confirmOne(ctx context.Context, idx uint64) (sql.Result, error) {
	var res sql.Result
	err := retryDeadlocks(ctx, func() (err error) {
		res, err = r.g.db.ExecContext(ctx,
			`UPDATE VouchSubjects SET logIndex = ? WHERE subjectHash = ? AND token = ? AND logIndex IS NULL`, idx, r.h, r.token)
		return err
	})
	return res, err
}

// keepConfirming retries a failed confirmation every few seconds until it
// succeeds or the guard closes.
func (r *mysqlReservation) keepConfirming(idx uint64) {
	for {
		select {
		case <-r.g.stop:
			return
		case <-time.After(3 * time.Second):
		}
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		_, err := r.confirmOne(ctx, idx)
		cancel()
		if err == nil {
			return
		}
	}
}

// Abandon releases the subject only when the append certainly did not
// happen: tessera pushed the batch back before sequencing it. Any other
// failure may have happened after the batch was committed; the reservation
// is then left to go stale and be resolved from the log.
func (r *mysqlReservation) Abandon(appendErr error) {
	if !errors.Is(appendErr, tessera.ErrPushback) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r.g.db.ExecContext(ctx, `DELETE FROM VouchSubjects WHERE subjectHash = ? AND token = ? AND logIndex IS NULL`, r.h, r.token)
}

// isDuplicateKey reports a MySQL ER_DUP_ENTRY (1062).
func isDuplicateKey(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1062
}
