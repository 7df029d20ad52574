package substituter

import (
	"net/http"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// metrics are the substituter's Prometheus series. Upstream labels are the
// configured URLs (a short, operator-chosen list), never request data.
type metrics struct {
	requests         *prometheus.CounterVec   // endpoint, code
	verdicts         *prometheus.CounterVec   // outcome
	realisations     *prometheus.CounterVec   // outcome
	upstreamSeconds  *prometheus.HistogramVec // upstream, stage
	upstreamFailures *prometheus.CounterVec   // upstream, reason
	verifiedBytes    prometheus.Counter
	aborted          prometheus.Counter
	narCache         *prometheus.CounterVec // result: hit, miss, stored, store-failed
	upstreamUp       *prometheus.GaugeVec   // upstream
	lookups          *prometheus.CounterVec // result: fetched, shared
	clientGone       prometheus.Counter
	noSource         prometheus.Counter
	verifiedFirst    *prometheus.CounterVec // where: memory, file
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vouch_substituter_requests_total",
			Help: "Binary cache requests by endpoint and HTTP status.",
		}, []string{"endpoint", "code"}),
		verdicts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vouch_substituter_verdicts_total",
			Help: "Path lookups by outcome: trusted, exception (trusted only through a policy exception), insufficient, conflict, unknown-path, realised, self-certified, error, bad-value.",
		}, []string{"outcome"}),
		realisations: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vouch_substituter_realisation_verdicts_total",
			Help: "Realisation lookups by outcome: trusted, insufficient, conflict, bad-id, error, bad-value.",
		}, []string{"outcome"}),
		upstreamSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "vouch_substituter_upstream_seconds",
			Help:    "Time spent on one upstream request, by stage (narinfo, nar).",
			Buckets: prometheus.ExponentialBuckets(0.001, 4, 10),
		}, []string{"upstream", "stage"}),
		upstreamFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vouch_substituter_upstream_failures_total",
			Help: "Upstream answers refused, by reason: missing, status, timeout, stall, oversize, malformed, mismatch, hash, overrun, truncated, compression, ca-mismatch, busy, network, read, unavailable.",
		}, []string{"upstream", "reason"}),
		verifiedBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vouch_substituter_verified_bytes_total",
			Help: "NAR bytes served after their hash and size were verified.",
		}),
		aborted: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vouch_substituter_nar_aborted_total",
			Help: "NAR responses cut short because their source failed after bytes were sent.",
		}),
		narCache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vouch_substituter_nar_cache_total",
			Help: "NAR cache lookups and writes by result: hit, miss, stored, store-failed.",
		}, []string{"result"}),
	}
	m.upstreamUp = prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "vouch_substituter_upstream_up",
		Help: "1 while an upstream is used, 0 while its circuit breaker skips it after a timeout, network error, stall or 5xx.",
	}, []string{"upstream"})
	m.lookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vouch_substituter_upstream_narinfo_lookups_total",
		Help: "Upstream narinfo lookups by result: fetched (a request was sent), shared (answered from the cache or a request in flight).",
	}, []string{"result"})
	m.clientGone = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vouch_substituter_client_gone_total",
		Help: "NAR requests the client abandoned before they were answered; never counted against an upstream.",
	})
	m.noSource = prometheus.NewCounter(prometheus.CounterOpts{
		Name: "vouch_substituter_no_source_total",
		Help: "Narinfos of agreed paths refused because no source had the NAR yet (X-Vouch-Refusal: no-source).",
	})
	m.verifiedFirst = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "vouch_substituter_nar_verified_first_total",
		Help: "NARs received and verified whole before the first byte was sent, by where they waited: memory, file.",
	}, []string{"where"})
	for _, c := range []prometheus.Collector{m.requests, m.verdicts, m.realisations, m.upstreamSeconds, m.upstreamFailures, m.verifiedBytes, m.aborted, m.narCache,
		m.upstreamUp, m.lookups, m.clientGone, m.noSource, m.verifiedFirst} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

func promHandler(g prometheus.Gatherer) http.Handler {
	return promhttp.HandlerFor(g, promhttp.HandlerOpts{})
}
