package main

import (
	"log/slog"
	"net/http"
	"sort"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/cableway/cableway/server/bridge"
)

// Metric names, all under the cableway_bridge_ prefix.
const metricsNamespace = "cableway_bridge"

// statsCollector turns bridge.Stats into Prometheus metrics at scrape
// time: the bridge keeps the counters, so nothing here is mutable state.
type statsCollector struct {
	stats func() bridge.Stats

	sessions, created, framesIn, framesOut, evicted, buffered, commands, reconnects, refusals *prometheus.Desc
}

func newStatsCollector(stats func() bridge.Stats) *statsCollector {
	desc := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(metricsNamespace, "", name), help, labels, nil)
	}
	return &statsCollector{
		stats:      stats,
		sessions:   desc("sessions", "Sessions open now (each holds one upstream ActionCable connection)."),
		created:    desc("sessions_created_total", "Sessions created since start (bridge sessions and plain WebSocket proxies)."),
		framesIn:   desc("frames_in_total", "Sequenced frames received from upstream (pings excluded)."),
		framesOut:  desc("frames_out_total", "Frames written to clients."),
		evicted:    desc("frames_evicted_total", "Frames sent to a client but trimmed from its session's resume window before it acknowledged them."),
		buffered:   desc("buffered_bytes", "Bytes of frames all sessions hold now (counted against --memory-budget)."),
		commands:   desc("commands_total", "Client commands relayed upstream."),
		reconnects: desc("upstream_reconnects_total", "Upstream connections redialled after a loss."),
		refusals:   desc("refusals_total", "Requests and commands refused, by reason.", "reason"),
	}
}

func (c *statsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sessions, c.created, c.framesIn, c.framesOut, c.evicted, c.buffered, c.commands, c.reconnects, c.refusals} {
		ch <- d
	}
}

func (c *statsCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.stats() // one snapshot for the whole scrape
	ch <- prometheus.MustNewConstMetric(c.sessions, prometheus.GaugeValue, float64(s.Sessions))
	ch <- prometheus.MustNewConstMetric(c.buffered, prometheus.GaugeValue, float64(s.BufferedBytes))
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(c.created, s.SessionsCreated)
	counter(c.framesIn, s.FramesIn)
	counter(c.framesOut, s.FramesOut)
	counter(c.evicted, s.Evicted)
	counter(c.commands, s.Commands)
	counter(c.reconnects, s.UpstreamReconnects)
	reasons := make([]string, 0, len(s.Refused))
	for r := range s.Refused {
		reasons = append(reasons, r)
	}
	sort.Strings(reasons)
	for _, r := range reasons {
		counter(c.refusals, s.Refused[r], r)
	}
}

// metricsHandler serves the bridge's metrics, plus the Go runtime's and
// the process's, from a registry of its own.
// connsRefused counts the connections closed for --max-conns-per-ip.
// extra are more collectors (the session store's).
func metricsHandler(b *bridge.Bridge, connsRefused func() uint64, logger *slog.Logger, extra ...prometheus.Collector) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		newStatsCollector(b.Stats),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Namespace: metricsNamespace, Name: "connections_refused_total",
			Help: "TCP connections closed unanswered for the per-client connection cap.",
		}, func() float64 { return float64(connsRefused()) }),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	reg.MustRegister(extra...)
	return promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
		ErrorHandling: promhttp.ContinueOnError,
	})
}
