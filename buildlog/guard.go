package buildlog

import (
	"context"

	"github.com/vouch-dev/vouch/claim"
)

// SubjectGuard keeps a log to "one subject, one output": it decides, for
// every claim about to be appended, whether its subject is free.
//
// The contract, which every implementation must keep for all the writers
// of one log — the goroutines of one process and, for a shared guard, every
// frontend appending to the same log:
//
//   - Check-and-record is linearizable. Reserve either returns the claim
//     logged for the subject or reserves the subject for the caller, as if
//     all Reserve, Confirm and Abandon calls of all writers happened one at
//     a time in an order consistent with real time. At most one writer holds
//     a subject at any moment, and a subject that is logged (confirmed) is
//     never reserved again.
//   - The holder of a reservation appends the claim, then calls Confirm with
//     its log index, or Abandon if the append failed. Reserve calls for the
//     subject by other writers wait until then (or until the reservation is
//     resolved as stale, below): they must not return "free" while the
//     holder's append may still reach the log.
//   - A reservation whose holder vanished (a crash after Reserve) must not
//     block the subject forever, nor be released while its claim might be
//     in the log: a guard resolves it from the log itself — the claim was
//     appended (the subject is logged, at that index) or it was not (the
//     subject is free again).
//   - A subject recorded by Confirm is never forgotten while the log exists.
type SubjectGuard interface {
	// Reserve looks up c's subject. If the log holds a claim for it, the
	// reservation reports it (Logged); otherwise the subject is held for
	// the caller until Confirm or Abandon.
	Reserve(ctx context.Context, c *claim.Claim) (Reservation, error)
	// Lookup returns the logged claim for (kind, subject) and its index.
	Lookup(ctx context.Context, kind claim.Kind, subject string) (*claim.Claim, uint64, bool, error)
	// Close releases the guard's resources.
	Close() error
}

// Reservation is the outcome of SubjectGuard.Reserve.
type Reservation interface {
	// Logged reports the claim already logged for the subject, if any.
	// When ok is true the caller holds nothing: Confirm and Abandon must not
	// be called.
	Logged() (c *claim.Claim, index uint64, ok bool)
	// Renew tells the guard the holder is alive and about to try the append
	// (again). An error means the reservation is no longer held — it was
	// resolved as stale — and the claim must not be appended.
	Renew(ctx context.Context) error
	// Confirm records that the reserved claim is in the log at index.
	Confirm(ctx context.Context, index uint64) error
	// Abandon gives the reservation up after the append failed with
	// appendErr. Whether the claim reached the log may then be unknown: a
	// guard must not let another output in unless it knows the claim is not
	// in the log.
	Abandon(appendErr error)
}

// localGuard is the guard of a log with one writer process: in-process
// locks per subject, and the subject index (bbolt) that follows the log.
type localGuard struct {
	l *Log
}

func (g localGuard) Reserve(ctx context.Context, c *claim.Claim) (Reservation, error) {
	key := c.Key()
	h := subjectHash(key)
	release := g.l.lockSubject(h)
	logged, idx, ok, err := g.l.subjects.lookup(key, h)
	if err != nil {
		release()
		return nil, err
	}
	if ok {
		release()
		return loggedReservation{logged, idx}, nil
	}
	return &localReservation{s: g.l.subjects, h: h, release: release}, nil
}

func (g localGuard) Lookup(_ context.Context, kind claim.Kind, subject string) (*claim.Claim, uint64, bool, error) {
	key := string(kind) + " " + subject
	return g.l.subjects.lookup(key, subjectHash(key))
}

func (g localGuard) Close() error { return g.l.subjects.close() }

// loggedReservation reports a subject that is already logged.
type loggedReservation struct {
	c   *claim.Claim
	idx uint64
}

func (r loggedReservation) Logged() (*claim.Claim, uint64, bool) { return r.c, r.idx, true }
func (r loggedReservation) Confirm(context.Context, uint64) error {
	panic("buildlog: Confirm on a logged subject")
}
func (r loggedReservation) Renew(context.Context) error { panic("buildlog: Renew on a logged subject") }
func (r loggedReservation) Abandon(error)               { panic("buildlog: Abandon on a logged subject") }

type localReservation struct {
	s       *subjectIndex
	h       [8]byte
	release func()
}

func (r *localReservation) Logged() (*claim.Claim, uint64, bool) { return nil, 0, false }

// Renew has nothing to do: an in-process lock does not expire.
func (r *localReservation) Renew(context.Context) error { return nil }

func (r *localReservation) Confirm(_ context.Context, idx uint64) error {
	r.s.record(r.h, idx)
	r.release()
	return nil
}

// Abandon releases the subject, as this guard always has: the POSIX engine
// sequences and integrates a batch in one step before Add returns, so a
// failed Add has, as far as this process can tell, left the claim out. The
// subject index is rebuilt from the log at every start (catchUp), so a
// claim that did land is known again after a restart.
func (r *localReservation) Abandon(error) { r.release() }
