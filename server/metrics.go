package server

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// metrics are a node's Prometheus series. Each Server has its own registry
// so that several nodes can live in one test process.
type metrics struct {
	reg           *prometheus.Registry
	connections   *prometheus.GaugeVec
	sessions      prometheus.Gauge
	subscriptions prometheus.Gauge
	messagesIn    prometheus.Counter
	messagesOut   prometheus.Counter
	published     prometheus.Counter
	latency       prometheus.Histogram
	errors        *prometheus.CounterVec
	slowConsumers prometheus.Counter
	restored      *prometheus.CounterVec
	released      prometheus.Counter
	shed          prometheus.Counter
	received      prometheus.Counter
	// connectsThrottled counts /meta/connect replies that advised a
	// client cycling its connects too fast to wait (connectBurst).
	connectsThrottled prometheus.Counter
	brokerErrors      prometheus.Counter
	accepted          *prometheus.CounterVec
	rewritten         prometheus.Counter
	limits            *prometheus.GaugeVec
	limited           *prometheus.CounterVec
	// replayOverLimit counts replays refused for being longer than the
	// queue limit, by what the client was answered: gone (a subscribe's
	// ext.replay) or slow_consumer (a take-over, which ends the session).
	replayOverLimit *prometheus.CounterVec
	tokensExpired   prometheus.Counter
	invalidText     prometheus.Counter
	// handshakes counts /meta/handshake replies by outcome (ok, failed):
	// the handshake failure rate a canary analysis compares.
	handshakes *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		connections: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wsfleet_connections", Help: "Open client connections by transport (long-polling counts requests in flight).",
		}, []string{"transport"}),
		sessions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wsfleet_sessions", Help: "Bayeux sessions held by this node.",
		}),
		subscriptions: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "wsfleet_subscriptions", Help: "Subscriptions of the sessions held by this node.",
		}),
		messagesIn: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsfleet_messages_in_total", Help: "Bayeux messages received from clients and the publish endpoint.",
		}),
		messagesOut: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsfleet_messages_out_total", Help: "Published messages handed to clients.",
		}),
		published: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsfleet_published_total", Help: "Messages this node published to the broker.",
		}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "wsfleet_publish_deliver_seconds", Help: "Time from the broker accepting a message to handing it to a client.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsfleet_errors_total", Help: "Bayeux errors returned to clients, and HTTP 400s, by code.",
		}, []string{"code"}),
		slowConsumers: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsfleet_slow_consumers_total", Help: "Clients disconnected because their queue overflowed.",
		}),
		restored: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsfleet_sessions_restored_total", Help: "Sessions taken over from the shared session store, by outcome.",
		}, []string{"outcome"}),
		released: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsfleet_drain_released_total", Help: "Clients released by a drain.",
		}),
		shed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsfleet_clients_shed_total", Help: "Clients released by a shed (POST /admin/shed), with a drain's hand-over.",
		}),
		received: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsfleet_sessions_received_total", Help: "Sessions taken over from another node and kept here: a released or dropped client that reconnected to this node.",
		}),
		connectsThrottled: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsfleet_connects_throttled_total", Help: "Connect replies that told a client cycling its connects too fast to wait.",
		}),
		brokerErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsfleet_broker_errors_total", Help: "Failed broker operations (publish, history, session store).",
		}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsfleet_connects_total", Help: "Websocket connections accepted, and long-polling /meta/connect requests, by transport: the reconnect rate a drain causes.",
		}, []string{"transport"}),
		rewritten: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsfleet_resent_total", Help: "Messages written again to a resumed websocket because the client's ext.since showed it never got them.",
		}),
		limits: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "wsfleet_limit", Help: "The node's limits as configured (durations in seconds, sizes in bytes, 0: off), by limit.",
		}, []string{"limit"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsfleet_limited_total", Help: "Requests and connections a limit refused or closed, by limit.",
		}, []string{"limit"}),
		replayOverLimit: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsfleet_replays_over_limit_total", Help: "Replays refused because they held more messages than the queue limit, by the answer: gone (subscribe) or slow_consumer (session take-over).",
		}, []string{"answer"}),
		tokensExpired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsfleet_tokens_expired_total", Help: "Sessions ended at a connect, subscribe or publish because their token had expired.",
		}),
		invalidText: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "wsfleet_invalid_text_total", Help: "Requests and published data refused because they were not valid UTF-8 text (invalid bytes or a lone surrogate escape).",
		}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "wsfleet_handshakes_total", Help: "/meta/handshake replies, by outcome: ok (a session) or failed (an error reply).",
		}, []string{"outcome"}),
	}
	m.handshakes.WithLabelValues("ok")
	m.handshakes.WithLabelValues("failed")
	for _, l := range []string{limitMaxConnections, limitHandshakeTimeout, limitReadTimeout, limitHandshakesPerIP} {
		m.limited.WithLabelValues(l)
	}
	m.reg.MustRegister(m.limits, m.limited, m.connections, m.sessions, m.subscriptions, m.messagesIn, m.messagesOut, m.published,
		m.latency, m.errors, m.slowConsumers, m.restored, m.released, m.shed, m.received, m.connectsThrottled, m.brokerErrors, m.accepted, m.rewritten,
		m.replayOverLimit, m.tokensExpired, m.invalidText, m.handshakes,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// setLimits publishes the configured limits.
func (m *metrics) setLimits(c Config) {
	maxConns := float64(c.MaxConnections)
	if c.MaxConnections < 0 {
		maxConns = 0
	}
	m.limits.WithLabelValues(limitMaxConnections).Set(maxConns)
	m.limits.WithLabelValues("handshake_timeout_seconds").Set(c.HandshakeTimeout.Seconds())
	m.limits.WithLabelValues("read_timeout_seconds").Set(c.ReadTimeout.Seconds())
	m.limits.WithLabelValues("read_header_timeout_seconds").Set(c.ReadHeaderTimeout.Seconds())
	m.limits.WithLabelValues("idle_timeout_seconds").Set(c.IdleTimeout.Seconds())
	m.limits.WithLabelValues("ws_send_buffer_bytes").Set(float64(max(c.WSSendBuffer, 0)))
	m.limits.WithLabelValues("handshakes_per_ip_per_second").Set(c.HandshakeRate)
	m.limits.WithLabelValues("handshake_burst").Set(float64(c.HandshakeBurst))
}

// handshake counts one handshake reply.
func (m *metrics) handshake(ok bool) {
	if ok {
		m.handshakes.WithLabelValues("ok").Inc()
		return
	}
	m.handshakes.WithLabelValues("failed").Inc()
}

func (m *metrics) errorCode(code int) { m.errors.WithLabelValues(strconv.Itoa(code)).Inc() }
