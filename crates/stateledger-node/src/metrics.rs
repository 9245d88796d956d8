//! The node's Prometheus metrics and its optional HTTP listener (`[metrics] listen`): `/metrics`
//! (the registry in the OpenMetrics text format), `/healthz` (the process answers) and `/readyz`
//! (the node can serve current reads; see [`Probe`]). docs/OPERATIONS.md "Monitoring" lists every
//! metric with what to alert on.
//!
//! Two kinds of metric live here. Events (records appended, submissions refused, latencies) are
//! counted where they happen, by code that holds a clone of the handle it updates — the handles
//! are cheap to clone and share one value. States (term, leader, indexes, lag, checkpoint, flags)
//! are sampled when someone asks, by a [`Probe`] that the node implements: nothing runs between
//! scrapes, and a scrape never sees a value older than itself.
//!
//! Architecture invariant: this module knows nothing of the node (`node.rs`); the node hands it a
//! probe. The listener is plain HTTP and only ever reads: bind it to loopback or a monitoring
//! network. Under the simulation there is no listener (madsim simulates no plain TCP server); the
//! metrics themselves still count, so the same code paths run.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// Labels of a family: `(name, value)` pairs.
pub type Labels = Vec<(&'static str, String)>;

/// A gauge holding a float (seconds).
pub type FloatGauge = Gauge<f64, AtomicU64>;

/// Every metric of one node, and the registry that names them (prefix `stateledger_`).
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Sampled by the probe.
    pub raft_term: Gauge,
    pub leader_id: Gauge,
    pub is_leader: Gauge,
    pub last_log_index: Gauge,
    pub applied_index: Gauge,
    /// Leader only: entries each follower's matched index is behind the leader's last log index.
    pub follower_lag: Family<Labels, Gauge>,
    pub checkpoint_size: Gauge,
    pub checkpoint_age_seconds: FloatGauge,
    pub checkpoint_cosigners: Gauge,
    pub corrupt: Gauge,
    pub repairing: Gauge,
    pub disk_space_alarm: Gauge,
    pub ready: Gauge,
    /// Counted where they happen.
    pub records_appended: Counter,
    pub submissions_refused: Family<Labels, Counter>,
    pub commit_seconds: Histogram,
    pub log_sync_seconds: Histogram,
}

/// Latency buckets: 0.25 ms doubling to about 4 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.000_25, 2.0, 15)
}

/// A histogram of latencies in seconds, not registered anywhere (for stores built without a
/// node, such as the storage conformance tests).
pub fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("stateledger");
        let m = Metrics {
            registry: Registry::default(),
            raft_term: Gauge::default(),
            leader_id: Gauge::default(),
            is_leader: Gauge::default(),
            last_log_index: Gauge::default(),
            applied_index: Gauge::default(),
            follower_lag: Family::default(),
            checkpoint_size: Gauge::default(),
            checkpoint_age_seconds: FloatGauge::default(),
            checkpoint_cosigners: Gauge::default(),
            corrupt: Gauge::default(),
            repairing: Gauge::default(),
            disk_space_alarm: Gauge::default(),
            ready: Gauge::default(),
            records_appended: Counter::default(),
            submissions_refused: Family::default(),
            commit_seconds: latency_histogram(),
            log_sync_seconds: latency_histogram(),
        };
        let r = &mut registry;
        r.register("raft_term", "Current Raft term", m.raft_term.clone());
        r.register(
            "raft_leader_id",
            "Id of the leader this node knows (0: none)",
            m.leader_id.clone(),
        );
        r.register(
            "raft_is_leader",
            "1 while this node leads with a quorum's acknowledgement within the lease",
            m.is_leader.clone(),
        );
        r.register(
            "raft_last_log_index",
            "Index of the last entry in this node's Raft log",
            m.last_log_index.clone(),
        );
        r.register(
            "raft_applied_index",
            "Index of the last entry applied to the ledger",
            m.applied_index.clone(),
        );
        r.register(
            "raft_follower_lag_entries",
            "Leader only: entries between the leader's last log index and each follower's matched index",
            m.follower_lag.clone(),
        );
        r.register(
            "checkpoint_size",
            "Tree size of the freshest quorum-cosigned checkpoint held",
            m.checkpoint_size.clone(),
        );
        r.register(
            "checkpoint_age_seconds",
            "Seconds since the ledger time of the freshest quorum-cosigned checkpoint held",
            m.checkpoint_age_seconds.clone(),
        );
        r.register(
            "checkpoint_cosigners",
            "Signatures on the freshest quorum-cosigned checkpoint held",
            m.checkpoint_cosigners.clone(),
        );
        r.register(
            "corrupt",
            "1 once stored data was found corrupt or the storage engine failed",
            m.corrupt.clone(),
        );
        r.register(
            "repairing",
            "1 while the node repairs lost state (it neither votes nor cosigns)",
            m.repairing.clone(),
        );
        r.register(
            "disk_space_alarm",
            "1 while free space on the data directory is below the reserve",
            m.disk_space_alarm.clone(),
        );
        r.register("ready", "1 when /readyz answers 200", m.ready.clone());
        r.register(
            "records_appended",
            "Records this node appended as leader",
            m.records_appended.clone(),
        );
        r.register(
            "submissions_refused",
            "Submit requests refused, by machine-readable reason",
            m.submissions_refused.clone(),
        );
        r.register(
            "commit_seconds",
            "Submit request accepted by the leader to its outcome (committed and applied)",
            m.commit_seconds.clone(),
        );
        r.register(
            "log_sync_seconds",
            "One fsync of the Raft log",
            m.log_sync_seconds.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Counts a refused submit request under `reason` (a `pb::ErrorReason` name).
    pub fn refused(&self, reason: &str) {
        self.submissions_refused
            .get_or_create(&vec![("reason", reason.to_string())])
            .inc();
    }

    /// The registry in the OpenMetrics text format.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)?;
        Ok(text)
    }
}

/// Observes the seconds since `start` in `histogram`.
pub fn observe_since(histogram: &Histogram, start: std::time::Instant) {
    histogram.observe(start.elapsed().as_secs_f64());
}

/// Why `/readyz` answers 503 (its text is the response body).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NotReady {
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("repairing lost state")]
    Repairing,
    #[error("no leader heard from within the lease")]
    NoLeader,
    #[error("applied index {applied} is {behind} entries behind the log (most {max})")]
    Behind { applied: u64, behind: u64, max: u64 },
}

/// What the listener asks of the node at each request.
pub trait Probe: Send + Sync + 'static {
    /// Brings the sampled gauges up to date and says whether the node is ready.
    fn sample(&self) -> Pin<Box<dyn Future<Output = Result<(), NotReady>> + Send + '_>>;
}

/// Most connections the metrics listener serves at once; more wait to be accepted.
pub const CONNECTIONS_MAX: usize = 16;
/// A connection is closed after this long, whatever it is doing.
pub const CONNECTION_TIME_MAX: Duration = Duration::from_secs(30);

/// Binds `addr` and serves `/metrics`, `/healthz` and `/readyz` until `shutdown` is set; `Err`
/// if `addr` cannot be bound.
#[cfg(not(madsim))]
pub async fn serve(
    addr: &str,
    metrics: std::sync::Arc<Metrics>,
    probe: std::sync::Arc<dyn Probe>,
    mut shutdown: tokio::sync::watch::Receiver<bool>,
    tasks: &mut Vec<tokio::task::JoinHandle<()>>,
) -> std::io::Result<std::net::SocketAddr> {
    use std::sync::Arc;

    let listener = tokio::net::TcpListener::bind(addr).await?;
    let local = listener.local_addr()?;
    let slots = Arc::new(tokio::sync::Semaphore::new(CONNECTIONS_MAX));
    tasks.push(tokio::spawn(async move {
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let accepted = tokio::select! {
                a = listener.accept() => a,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            let stream = match accepted {
                Ok((stream, _)) => stream,
                Err(e) => {
                    // Out of file descriptors, most likely: wait rather than spin.
                    tracing::warn!(error = %e, "metrics listener: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (metrics, probe) = (metrics.clone(), probe.clone());
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request| {
                    let (metrics, probe) = (metrics.clone(), probe.clone());
                    async move {
                        Ok::<_, std::convert::Infallible>(answer(&metrics, &*probe, request).await)
                    }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(Duration::from_secs(5))
                    .serve_connection(hyper_util::rt::TokioIo::new(stream), service);
                let _ = tokio::time::timeout(CONNECTION_TIME_MAX, connection).await;
                drop(slot);
            });
        }
    }));
    Ok(local)
}

#[cfg(not(madsim))]
type Reply = hyper::Response<http_body_util::Full<bytes::Bytes>>;

#[cfg(not(madsim))]
fn reply(status: u16, content_type: &'static str, body: String) -> Reply {
    let mut r = hyper::Response::new(http_body_util::Full::new(bytes::Bytes::from(body)));
    *r.status_mut() =
        hyper::StatusCode::from_u16(status).unwrap_or(hyper::StatusCode::INTERNAL_SERVER_ERROR);
    r.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static(content_type),
    );
    r
}

#[cfg(not(madsim))]
async fn answer<B>(metrics: &Metrics, probe: &dyn Probe, request: hyper::Request<B>) -> Reply {
    const TEXT: &str = "text/plain; charset=utf-8";
    if request.method() != hyper::Method::GET {
        return reply(405, TEXT, "only GET is served\n".into());
    }
    match request.uri().path() {
        "/healthz" => reply(200, TEXT, "ok\n".into()),
        "/readyz" => match probe.sample().await {
            Ok(()) => reply(200, TEXT, "ready\n".into()),
            Err(why) => reply(503, TEXT, format!("not ready: {why}\n")),
        },
        "/metrics" => {
            // Not being ready is itself a sampled value (`stateledger_ready`).
            let _ = probe.sample().await;
            match metrics.encode() {
                Ok(text) => reply(
                    200,
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                    text,
                ),
                Err(e) => reply(500, TEXT, format!("cannot encode the metrics: {e}\n")),
            }
        }
        _ => reply(
            404,
            TEXT,
            "not found: try /metrics, /healthz or /readyz\n".into(),
        ),
    }
}
