package dashboard

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Watch keeps the snapshot current while ctx lives: every interval it
// rebuilds the snapshot if the index changed, so that a builder newly
// outvoted by an agreeing quorum is logged when the follower indexes its
// claim rather than when someone next opens a page, and /metrics reads a
// recent snapshot. It returns nil when ctx ends.
func (d *Dashboard) Watch(ctx context.Context, interval time.Duration) error {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if _, _, err := d.snapshot(ctx); err != nil && ctx.Err() == nil {
			d.logger.Warn("dashboard: summarising the index failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// reportDissent logs each builder whose count of outvoted subjects grew
// from the previous snapshot (prev may be nil: the first one after start).
func (d *Dashboard) reportDissent(prev, cur *snapshot) {
	before := map[string]int{}
	if prev != nil {
		for _, b := range prev.report.Builders {
			before[b.Name] = b.Outvoted
		}
	}
	for _, b := range cur.report.Builders {
		if b.Outvoted <= before[b.Name] {
			continue
		}
		args := []any{"builder", b.Name, "outvoted", b.Outvoted, "new", b.Outvoted - before[b.Name]}
		for _, o := range cur.report.Outvotes {
			if o.Builder == b.Name {
				args = append(args, "example", string(o.Kind)+" "+o.Subject, "its-output", o.Output, "agreed-output", o.Agreed)
				break
			}
		}
		d.logger.Warn("builder outvoted by an agreeing quorum: its output differs from one a quorum agreed on", args...)
	}
}

// collector exports the latest snapshot's per-builder dissent counts. A
// scrape never waits for a walk of the index: it reads the snapshot Watch
// or a page request last built.
type collector struct {
	d                         *Dashboard
	outvoted, nonReproducible *prometheus.Desc
}

func newCollector(d *Dashboard) *collector {
	return &collector{d: d,
		outvoted: prometheus.NewDesc("vouch_builder_outvoted_subjects",
			"Subjects for which the builder's output lost against an agreeing quorum (a strict majority that meets the policy).",
			[]string{"builder"}, nil),
		nonReproducible: prometheus.NewDesc("vouch_builder_nonreproducible_subjects",
			"Subjects for which the builder's output is one of several and no output holds such a majority.",
			[]string{"builder"}, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.outvoted
	ch <- c.nonReproducible
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.d.snaps.mu.Lock()
	s := c.d.snaps.current
	c.d.snaps.mu.Unlock()
	if s == nil {
		return
	}
	for _, b := range s.report.Builders {
		ch <- prometheus.MustNewConstMetric(c.outvoted, prometheus.GaugeValue, float64(b.Outvoted), b.Name)
		ch <- prometheus.MustNewConstMetric(c.nonReproducible, prometheus.GaugeValue, float64(b.NonReproducible), b.Name)
	}
}
