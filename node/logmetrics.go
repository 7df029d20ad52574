package node

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vouch-dev/vouch/buildlog"
	"github.com/vouch-dev/vouch/claim"
	"github.com/vouch-dev/vouch/hook"
)

// meteredLog is the builder's log as its two writers (the submit socket
// and the hook spool) see it: every append is counted by outcome, its time
// to acknowledgement (durable) observed, and each claim logged once at
// INFO.
type meteredLog struct {
	log     *buildlog.Log
	logger  *slog.Logger
	appends *prometheus.CounterVec // outcome: logged, duplicate, conflict, error
	latency prometheus.Histogram
}

func newMeteredLog(l *buildlog.Log, logger *slog.Logger, reg prometheus.Registerer, spoolDir string) (*meteredLog, error) {
	m := &meteredLog{log: l, logger: logger,
		appends: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vouch_builder_appends_total",
			Help: "Claims submitted to this builder's log, by outcome: logged, duplicate (already logged, idempotent), conflict (another output for a logged subject, refused), error (not acknowledged; retried by the submitter).",
		}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "vouch_builder_ack_seconds",
			Help:    "Time from a claim's submission to its acknowledgement (durable in the log).",
			Buckets: prometheus.ExponentialBuckets(0.005, 2, 12),
		}),
	}
	spool := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "vouch_builder_spool_jobs",
		Help: "Post-build hook events queued in the spool, not yet logged (the builder was down, or the paths are being hashed).",
	}, func() float64 {
		n, _ := hook.Spool{Dir: spoolDir}.Len()
		return float64(n)
	})
	for _, c := range []prometheus.Collector{m.appends, m.latency, spool} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func (m *meteredLog) Add(ctx context.Context, c *claim.Claim) (buildlog.Result, error) {
	start := time.Now()
	res, err := m.log.Add(ctx, c)
	switch {
	case errors.Is(err, buildlog.ErrConflict):
		m.appends.WithLabelValues("conflict").Inc()
	case err != nil:
		m.appends.WithLabelValues("error").Inc()
	case res.Duplicate:
		m.appends.WithLabelValues("duplicate").Inc()
		m.latency.Observe(time.Since(start).Seconds())
	default:
		m.appends.WithLabelValues("logged").Inc()
		m.latency.Observe(time.Since(start).Seconds())
		m.logger.Info("logged", "kind", c.Kind, "subject", c.Subject, "index", res.Index)
	}
	return res, err
}
