package hook

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// ErrPermanent marks a submission failure that retrying cannot fix (the
// output conflicts with a logged claim, or the path is gone from the store).
// A job that fails only with permanent errors is removed after reporting.
var ErrPermanent = errors.New("permanent")

// Output is one output of a built derivation.
type Output struct {
	Path string
	// OutputID is set for outputs of content-addressed derivations, whose
	// id → path mapping is logged as a nix-ca claim too.
	OutputID string
}

// Drainer turns spooled jobs into logged claims.
type Drainer struct {
	Spool Spool
	// Outputs lists a built derivation's outputs.
	Outputs func(ctx context.Context, drvPath string) ([]Output, error)
	// Log makes and logs the claims for one output; it returns an error
	// wrapping ErrPermanent when retrying cannot help.
	Log func(ctx context.Context, out Output) error
	// Logf reports what happened to each job.
	Logf func(format string, args ...any)

	mu sync.Mutex // one drain at a time
}

// Drain processes every pending job once. It returns the number of jobs
// completed and the first transient error (the job stays spooled).
func (d *Drainer) Drain(ctx context.Context) (int, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	jobs, errs := d.Spool.Pending()
	for _, err := range errs {
		d.logf("%v", err)
	}
	done := 0
	var firstErr error
	for _, j := range jobs {
		if err := d.one(ctx, j); err != nil {
			if firstErr == nil {
				firstErr = err
			}
			d.logf("hook spool: %s stays queued: %v", j.DrvPath, err)
			continue
		}
		if err := d.Spool.Done(j); err != nil {
			return done, err
		}
		done++
	}
	return done, firstErr
}

func (d *Drainer) one(ctx context.Context, j Job) error {
	var outs []Output
	for _, p := range j.Outputs {
		outs = append(outs, Output{Path: p})
	}
	// Nix 2.8 passes no OUT_PATHS, and even when it does, only the
	// realisations say which outputs are content-addressed.
	if derived, err := d.Outputs(ctx, j.DrvPath); err == nil {
		outs = derived
	} else if len(outs) == 0 {
		return fmt.Errorf("outputs of %s: %w", j.DrvPath, err)
	}
	for _, o := range outs {
		if err := d.Log(ctx, o); err != nil {
			if errors.Is(err, ErrPermanent) {
				d.logf("hook spool: %s (from %s) not logged: %v", o.Path, j.DrvPath, err)
				continue
			}
			return err
		}
	}
	return nil
}

func (d *Drainer) logf(format string, args ...any) {
	if d.Logf != nil {
		d.Logf(format, args...)
	}
}
