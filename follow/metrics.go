package follow

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/vouch-dev/vouch/index"
)

// healthCollector exports every configured log's sync health as
// Prometheus gauges, labelled by builder name (an operator-chosen list).
// It reads the index on each scrape, so /metrics says what vouch report
// says, including what was recorded before a restart.
type healthCollector struct {
	idx                                         *index.Index
	unavailable, failures, failingSince, stale  *prometheus.Desc
	compromised, lastSuccess, entries, treeSize *prometheus.Desc
}

func newHealthCollector(idx *index.Index) *healthCollector {
	d := func(name, help string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, []string{"builder"}, nil)
	}
	return &healthCollector{
		idx:          idx,
		unavailable:  d("vouch_follow_log_unavailable", "1 while the log's sync rounds fail (a fault of the fetch, not evidence: its verified claims still count), else 0."),
		failures:     d("vouch_follow_log_consecutive_failures", "Sync rounds of the log that failed in a row."),
		failingSince: d("vouch_follow_log_failing_since_timestamp_seconds", "When the first of the failed rounds in a row ended (Unix time); 0 while the log syncs."),
		stale:        d("vouch_follow_log_stale_view", "1 when the last round was shown an older checkpoint than the one verified (a stale mirror or cache, or a replay), else 0."),
		compromised:  d("vouch_follow_log_compromised", "1 when proven evidence marks the log compromised (its claims count for nothing), else 0."),
		lastSuccess:  d("vouch_follow_log_last_success_timestamp_seconds", "When the last successful sync round ended (Unix time); 0 if none did."),
		entries:      d("vouch_follow_log_entries", "Entries of the log verified and indexed."),
		treeSize:     d("vouch_follow_log_tree_size", "Size of the latest verified checkpoint of the log."),
	}
}

func (c *healthCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.unavailable, c.failures, c.failingSince, c.stale, c.compromised, c.lastSuccess, c.entries, c.treeSize} {
		ch <- d
	}
}

func (c *healthCollector) Collect(ch chan<- prometheus.Metric) {
	stats, err := c.idx.Stats()
	if err != nil {
		ch <- prometheus.NewInvalidMetric(c.unavailable, err)
		return
	}
	bit := func(b bool) float64 {
		if b {
			return 1
		}
		return 0
	}
	unix := func(h index.Health, ok bool) float64 {
		t := h.FailingSince
		if ok {
			t = h.OK
		}
		if t.IsZero() {
			return 0
		}
		return float64(t.UnixNano()) / 1e9
	}
	for _, s := range stats {
		h := s.Health
		var size uint64
		if s.Checkpoint != nil {
			size = s.Checkpoint.Size
		}
		for _, m := range []struct {
			d *prometheus.Desc
			v float64
		}{
			{c.unavailable, bit(h.Unavailable() && !s.Compromised)},
			{c.failures, float64(h.Failures)},
			{c.failingSince, unix(h, false)},
			{c.stale, bit(h.Stale)},
			{c.compromised, bit(s.Compromised)},
			{c.lastSuccess, unix(h, true)},
			{c.entries, float64(s.Synced)},
			{c.treeSize, float64(size)},
		} {
			ch <- prometheus.MustNewConstMetric(m.d, prometheus.GaugeValue, m.v, s.Name)
		}
	}
}
