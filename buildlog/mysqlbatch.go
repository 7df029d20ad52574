package buildlog

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
)

// The shared guard's common case — a subject nobody holds, reserved, then
// confirmed — costs the database a commit (an fsync) per statement. Done
// one claim at a time that bounds a frontend to a few hundred claims a
// second, far below what tessera sequences. So concurrent Reserve and
// Confirm calls are gathered into batches: one multi-row INSERT IGNORE
// reserves a batch of subjects (each row still reserved or not on its
// own, by the primary key, so linearizability is unchanged), and one
// UPDATE confirms a batch. Whatever a batch did not settle — a subject
// already reserved or logged, a confirmation that did not apply — goes
// the one-claim path, which reads the row and decides.

// guardBatchMax is the most claims per batched statement; guardBatchWait
// is how long the first claim of a batch waits for company.
const (
	guardBatchMax  = 512
	guardBatchWait = 2 * time.Millisecond
	// guardBatchesInFlight bounds concurrent batched statements per queue.
	guardBatchesInFlight = 4
)

type reserveReq struct {
	h, entry, token []byte
	won             chan error // nil: the row is ours; else why not (errLost: another row holds the subject)
}

type confirmReq struct {
	h, token []byte
	idx      uint64
	done     chan bool // true: confirmed by the batch
}

var errLost = fmt.Errorf("subject held by another reservation")

// batchLoop gathers requests from ch into batches and runs them, a few
// at a time, until stop is closed.
func batchLoop[T any](ch <-chan T, stop <-chan struct{}, run func([]T)) {
	sem := make(chan struct{}, guardBatchesInFlight)
	for {
		var first T
		select {
		case <-stop:
			return
		case first = <-ch:
		}
		batch := []T{first}
		timer := time.NewTimer(guardBatchWait)
	gather:
		for len(batch) < guardBatchMax {
			select {
			case r := <-ch:
				batch = append(batch, r)
			case <-timer.C:
				break gather
			}
		}
		timer.Stop()
		sem <- struct{}{}
		go func() {
			defer func() { <-sem }()
			run(batch)
		}()
	}
}

// reserveBatch inserts a row for every request whose subject has none and
// tells each request whether its row is the one in the table.
func (g *mysqlGuard) reserveBatch(batch []reserveReq) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	fail := func(err error) {
		for _, r := range batch {
			r.won <- err
		}
	}
	from, err := g.reader.NextIndex(ctx)
	if err != nil {
		fail(fmt.Errorf("buildlog: read the log's next index: %w", err))
		return
	}
	// Rows in one order in every frontend's batches, so that two batches
	// lock index records in the same order.
	sort.Slice(batch, func(i, j int) bool { return bytes.Compare(batch[i].h, batch[j].h) < 0 })
	var q strings.Builder
	args := make([]any, 0, 5*len(batch))
	q.WriteString(`INSERT IGNORE INTO VouchSubjects (subjectHash, claim, logIndex, fromIndex, token, frontend) VALUES `)
	for i, r := range batch {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(?, ?, NULL, ?, ?, ?)")
		args = append(args, r.h, r.entry, from, r.token, g.id)
	}
	if err := retryDeadlocks(ctx, func() error { _, err := g.db.ExecContext(ctx, q.String(), args...); return err }); err != nil {
		fail(fmt.Errorf("buildlog: reserve subjects: %w", err))
		return
	}
	q.Reset()
	args = args[:0]
	q.WriteString(`SELECT subjectHash, token FROM VouchSubjects WHERE subjectHash IN (`)
	for i, r := range batch {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("?")
		args = append(args, r.h)
	}
	q.WriteString(")")
	rows, err := g.db.QueryContext(ctx, q.String(), args...)
	if err != nil {
		fail(fmt.Errorf("buildlog: read reserved subjects: %w", err))
		return
	}
	holder := map[string][]byte{}
	for rows.Next() {
		var h, token []byte
		if err := rows.Scan(&h, &token); err != nil {
			rows.Close()
			fail(fmt.Errorf("buildlog: read reserved subjects: %w", err))
			return
		}
		holder[string(h)] = token
	}
	if err := rows.Err(); err != nil {
		fail(fmt.Errorf("buildlog: read reserved subjects: %w", err))
		return
	}
	rows.Close()
	for _, r := range batch {
		if bytes.Equal(holder[string(r.h)], r.token) {
			r.won <- nil
		} else {
			r.won <- errLost
		}
	}
}

// confirmBatch records the log index of every request in one statement.
// If it changed fewer rows than requested, no request is reported
// confirmed: each then takes the one-claim path, which finds out.
func (g *mysqlGuard) confirmBatch(batch []confirmReq) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sort.Slice(batch, func(i, j int) bool { return bytes.Compare(batch[i].h, batch[j].h) < 0 })
	var q strings.Builder
	args := make([]any, 0, 4*len(batch))
	q.WriteString(`UPDATE VouchSubjects SET logIndex = CASE subjectHash`)
	for _, r := range batch {
		q.WriteString(" WHEN ? THEN ?")
		args = append(args, r.h, r.idx)
	}
	q.WriteString(` END WHERE logIndex IS NULL AND (subjectHash, token) IN (`)
	for i, r := range batch {
		if i > 0 {
			q.WriteString(", ")
		}
		q.WriteString("(?, ?)")
		args = append(args, r.h, r.token)
	}
	q.WriteString(")")
	var res sql.Result
	err := retryDeadlocks(ctx, func() (err error) { res, err = g.db.ExecContext(ctx, q.String(), args...); return err })
	ok := false
	if err == nil {
		n, err := res.RowsAffected()
		ok = err == nil && n == int64(len(batch))
	}
	for _, r := range batch {
		r.done <- ok
	}
}

// retryDeadlocks runs a single-statement transaction again when the
// database chose it as a deadlock victim or it timed out waiting for a lock:
// the statement was rolled back whole, so running it again is safe.
func retryDeadlocks(ctx context.Context, stmt func() error) error {
	wait := 2 * time.Millisecond
	for try := 0; ; try++ {
		err := stmt()
		var me *mysql.MySQLError
		if err == nil || try == 8 || !errors.As(err, &me) || (me.Number != 1213 && me.Number != 1205) {
			return err
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(wait):
		}
		wait *= 2
	}
}
