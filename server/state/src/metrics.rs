//! Prometheus metrics of the State service, served as text at `GET /metrics`.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

pub struct PushMetrics {
    /// The process's registry: these metrics under `syncsphere_state_`, and whatever other
    /// services register ([`PushMetrics::register_collector`]) — one `/metrics` per process.
    registry: std::sync::RwLock<Registry>,
    /// Open, registered WebSocket connections.
    pub connections: Gauge,
    /// Upgraded WebSocket sockets still open: registered, authenticating or closing. A socket
    /// the hub has dropped counts here until its close handshake ends and it is gone.
    pub sockets: Gauge,
    /// Connections ended because a write to the socket did not finish in time (the peer stopped
    /// reading).
    pub write_timeouts: Counter,
    /// Connections ended because the peer answered no ping and sent nothing for the silence
    /// limit (a client gone without closing, or one that stopped reading).
    pub silent_peers: Counter,
    /// Messages (changes, presence, resync) written to sockets.
    pub messages_pushed: Counter,
    /// Connections dropped because their queue was full.
    pub queue_overflows: Counter,
    /// Connections refused because the user had too many.
    pub connections_refused: Counter,
    /// Seconds from a commit being handed to the hub to its frame being written to a socket.
    pub push_latency: Histogram,
    /// `@connections` calls to API Gateway that failed (other than a connection found gone).
    pub gateway_failures: Counter,
}

impl Default for PushMetrics {
    fn default() -> Self {
        let mut root = Registry::default();
        let registry = root.sub_registry_with_prefix("syncsphere_state");
        let connections = Gauge::default();
        let sockets = Gauge::default();
        let write_timeouts = Counter::default();
        let silent_peers = Counter::default();
        let messages_pushed = Counter::default();
        let queue_overflows = Counter::default();
        let connections_refused = Counter::default();
        let gateway_failures = Counter::default();
        // 50 µs … ~1.6 s.
        let push_latency = Histogram::new(exponential_buckets(0.000_05, 2.0, 16));
        registry.register(
            "connections",
            "Open WebSocket connections",
            connections.clone(),
        );
        registry.register(
            "sockets",
            "Open WebSocket sockets, registered or not (closing ones included)",
            sockets.clone(),
        );
        registry.register(
            "write_timeouts",
            "Connections ended because a socket write did not finish in time",
            write_timeouts.clone(),
        );
        registry.register(
            "silent_peers",
            "Connections ended because the peer answered no ping for the silence limit",
            silent_peers.clone(),
        );
        registry.register(
            "messages_pushed",
            "Messages written to WebSocket connections",
            messages_pushed.clone(),
        );
        registry.register(
            "queue_overflows",
            "Connections dropped because their push queue was full",
            queue_overflows.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections refused by the per-user connection limit",
            connections_refused.clone(),
        );
        registry.register(
            "gateway_failures",
            "Calls to API Gateway's @connections API that failed",
            gateway_failures.clone(),
        );
        registry.register(
            "push_latency_seconds",
            "Time from commit to the change being written to a socket",
            push_latency.clone(),
        );
        PushMetrics {
            registry: std::sync::RwLock::new(root),
            connections,
            sockets,
            write_timeouts,
            silent_peers,
            messages_pushed,
            gateway_failures,
            queue_overflows,
            connections_refused,
            push_latency,
        }
    }
}

impl PushMetrics {
    /// The OpenMetrics text exposition.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.read().unwrap_or_else(|e| e.into_inner());
        encode(&mut out, &registry).expect("writing to a String cannot fail");
        out
    }

    /// Adds another service's metrics, read at each scrape, to this process's `/metrics`.
    pub fn register_collector(&self, collector: Box<dyn prometheus_client::collector::Collector>) {
        self.registry
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .register_collector(collector);
    }
}
