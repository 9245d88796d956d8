//! Limits on the connections each listener holds, so that idle or slow sockets cannot use up the
//! node's file descriptors (docs/SECURITY.md, "Connection limits"). Measured before these
//! limits: 20 108 sockets that never sent a TLS byte used up a leader's 20 000 descriptors; new
//! clients then timed out and the cluster stopped committing, and nothing was logged.
//!
//! Per listener ([`ConnLimiter`]):
//! - at most `connections_max` connections at once, and `connections_per_ip_max` from one peer
//!   address, counted from accept (a connection still in its TLS handshake holds a descriptor
//!   too). A connection over a cap is closed at once, logged (at most once per
//!   [`REFUSAL_LOG_INTERVAL`], with the count since) and counted.
//! - when the listener is full, a new connection takes the place of the oldest one that has never
//!   carried a call (an idle socket, or one still in its handshake), which is closed: a flood of
//!   idle sockets from many addresses cannot keep real clients out for long.
//! - a connection with no call in flight for `idle_timeout_ms` is closed (tonic's client channels
//!   reconnect by themselves on their next call).
//! - the TLS handshake must finish within `tls_handshake_timeout_ms` (tonic's acceptor), and the
//!   server sends HTTP/2 keep-alive pings, closing a connection whose peer stops answering.
//!
//! [`Limited`] is the socket wrapper that keeps the count (released on drop) and closes the
//! connection when it is evicted or idle; [`ActivityLayer`] marks calls in flight. Not compiled
//! under the simulation, which has no sockets.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use futures::task::AtomicWaker;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Refusals are logged at most this often (with how many there were since).
pub const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// The limits of one listener.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    pub connections_max: usize,
    pub connections_per_ip_max: usize,
    pub idle_timeout: Duration,
}

/// Counters of one listener (shown in Status).
#[derive(Debug, Default)]
pub struct ConnStats {
    pub open: AtomicU64,
    pub refused: AtomicU64,
    pub evicted: AtomicU64,
    pub idle_closed: AtomicU64,
}

/// One connection's state, shared by its socket wrapper and the calls it carries.
#[derive(Debug)]
struct ConnState {
    /// Has carried at least one call (is never evicted to make room).
    proven: AtomicBool,
    in_flight: AtomicUsize,
    /// When the last call ended (or the connection was accepted).
    last_active: Mutex<Instant>,
    evicted: AtomicBool,
    waker: AtomicWaker,
}

#[derive(Debug)]
struct Entry {
    addr: SocketAddr,
    state: Arc<ConnState>,
}

#[derive(Debug, Default)]
struct Table {
    /// By accept order (oldest first).
    conns: BTreeMap<u64, Entry>,
    by_addr: HashMap<SocketAddr, u64>,
    per_ip: HashMap<IpAddr, usize>,
    next: u64,
    /// Refusals not yet logged, and when the last log line was written.
    unlogged: u64,
    logged_at: Option<Instant>,
}

/// See the module comment.
#[derive(Debug)]
pub struct ConnLimiter {
    name: &'static str,
    limits: Limits,
    table: Mutex<Table>,
    pub stats: ConnStats,
}

impl ConnLimiter {
    pub fn new(name: &'static str, limits: Limits) -> Arc<ConnLimiter> {
        Arc::new(ConnLimiter {
            name,
            limits,
            table: Mutex::new(Table::default()),
            stats: ConnStats::default(),
        })
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Takes a newly accepted connection in, or refuses it (`None`: the socket is dropped, which
    /// closes it).
    pub fn admit<T>(self: &Arc<Self>, io: T, peer: SocketAddr) -> Option<Limited<T>> {
        let mut t = self.table();
        let ip = peer.ip();
        let from_ip = t.per_ip.get(&ip).copied().unwrap_or(0);
        if from_ip >= self.limits.connections_per_ip_max {
            let why = format!(
                "{from_ip} connections from {ip} already (at most {} per address)",
                self.limits.connections_per_ip_max
            );
            self.refuse(&mut t, peer, &why);
            return None;
        }
        if t.conns.len() >= self.limits.connections_max {
            let oldest_idle = t
                .conns
                .iter()
                .find(|(_, e)| !e.state.proven.load(Ordering::Relaxed))
                .map(|(seq, _)| *seq);
            match oldest_idle {
                Some(seq) => {
                    if let Some(e) = self.remove(&mut t, seq) {
                        e.state.evicted.store(true, Ordering::Relaxed);
                        e.state.waker.wake();
                        self.stats.evicted.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(listener = self.name, peer = %e.addr, "closed a connection that never carried a call, to make room");
                    }
                }
                None => {
                    let why = format!(
                        "{} connections open, all carrying calls (at most {})",
                        t.conns.len(),
                        self.limits.connections_max
                    );
                    self.refuse(&mut t, peer, &why);
                    return None;
                }
            }
        }
        let seq = t.next;
        t.next += 1;
        let state = Arc::new(ConnState {
            proven: AtomicBool::new(false),
            in_flight: AtomicUsize::new(0),
            last_active: Mutex::new(Instant::now()),
            evicted: AtomicBool::new(false),
            waker: AtomicWaker::new(),
        });
        t.conns.insert(
            seq,
            Entry {
                addr: peer,
                state: state.clone(),
            },
        );
        t.by_addr.insert(peer, seq);
        *t.per_ip.entry(ip).or_insert(0) += 1;
        self.stats
            .open
            .store(t.conns.len() as u64, Ordering::Relaxed);
        drop(t);
        Some(Limited {
            inner: io,
            state,
            limiter: self.clone(),
            seq,
            idle: Box::pin(tokio::time::sleep(self.limits.idle_timeout)),
        })
    }

    fn refuse(&self, t: &mut Table, peer: SocketAddr, why: &str) {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        t.unlogged += 1;
        let now = Instant::now();
        if t.logged_at
            .is_none_or(|at| now.duration_since(at) >= REFUSAL_LOG_INTERVAL)
        {
            tracing::warn!(
                listener = self.name,
                peer = %peer,
                refused_since_last_report = t.unlogged,
                refused_total = self.stats.refused.load(Ordering::Relaxed),
                "connection refused: {why}"
            );
            t.unlogged = 0;
            t.logged_at = Some(now);
        }
    }

    fn remove(&self, t: &mut Table, seq: u64) -> Option<Entry> {
        let e = t.conns.remove(&seq)?;
        if t.by_addr.get(&e.addr) == Some(&seq) {
            t.by_addr.remove(&e.addr);
        }
        let ip = e.addr.ip();
        if let Some(n) = t.per_ip.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                t.per_ip.remove(&ip);
            }
        }
        self.stats
            .open
            .store(t.conns.len() as u64, Ordering::Relaxed);
        Some(e)
    }

    fn release(&self, seq: u64) {
        let mut t = self.table();
        self.remove(&mut t, seq);
    }

    fn state_of(&self, peer: SocketAddr) -> Option<Arc<ConnState>> {
        let t = self.table();
        let seq = t.by_addr.get(&peer)?;
        t.conns.get(seq).map(|e| e.state.clone())
    }
}

/// A socket counted by a [`ConnLimiter`] (see the module comment).
#[derive(Debug)]
pub struct Limited<T> {
    inner: T,
    state: Arc<ConnState>,
    limiter: Arc<ConnLimiter>,
    seq: u64,
    idle: Pin<Box<tokio::time::Sleep>>,
}

impl<T> Limited<T> {
    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// `Err` once the connection must close: evicted, or idle for the limit.
    fn check_open(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        self.state.waker.register(cx.waker());
        if self.state.evicted.load(Ordering::Relaxed) {
            return Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                "closed to make room for a new connection",
            ));
        }
        while self.idle.as_mut().poll(cx).is_ready() {
            let idle_for = self.limiter.limits.idle_timeout;
            let last = *self
                .state
                .last_active
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let busy = self.state.in_flight.load(Ordering::Relaxed) > 0;
            let now = Instant::now();
            if !busy && now.duration_since(last) >= idle_for {
                self.limiter
                    .stats
                    .idle_closed
                    .fetch_add(1, Ordering::Relaxed);
                tracing::debug!(listener = self.limiter.name, "closing an idle connection");
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "idle connection closed",
                ));
            }
            let next = if busy {
                now + idle_for
            } else {
                last + idle_for
            };
            self.idle
                .as_mut()
                .reset(tokio::time::Instant::from_std(next));
        }
        Ok(())
    }
}

impl<T> Drop for Limited<T> {
    fn drop(&mut self) {
        self.limiter.release(self.seq);
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Limited<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if let Err(e) = self.check_open(cx) {
            return Poll::Ready(Err(e));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Limited<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, data)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl tonic::transport::server::Connected for Limited<tokio::net::TcpStream> {
    type ConnectInfo = tonic::transport::server::TcpConnectInfo;

    fn connect_info(&self) -> Self::ConnectInfo {
        self.inner.connect_info()
    }
}

/// Marks the calls each connection carries (a tower layer on the server): a connection with a
/// call in flight is not idle, and one that carried a call is never evicted.
#[derive(Clone, Debug)]
pub struct ActivityLayer {
    limiter: Arc<ConnLimiter>,
}

impl ActivityLayer {
    pub fn new(limiter: Arc<ConnLimiter>) -> ActivityLayer {
        ActivityLayer { limiter }
    }
}

impl<S> tower::Layer<S> for ActivityLayer {
    type Service = Activity<S>;

    fn layer(&self, inner: S) -> Activity<S> {
        Activity {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

/// See [`ActivityLayer`].
#[derive(Clone, Debug)]
pub struct Activity<S> {
    inner: S,
    limiter: Arc<ConnLimiter>,
}

/// A call in flight on a connection; ending it (drop) stamps the connection's last activity.
#[derive(Debug)]
struct InFlight(Arc<ConnState>);

impl InFlight {
    fn start(state: Arc<ConnState>) -> InFlight {
        state.proven.store(true, Ordering::Relaxed);
        state.in_flight.fetch_add(1, Ordering::Relaxed);
        InFlight(state)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.last_active.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

fn peer_of<B>(request: &tonic::codegen::http::Request<B>) -> Option<SocketAddr> {
    use tonic::transport::server::{TcpConnectInfo, TlsConnectInfo};
    let ext = request.extensions();
    ext.get::<TlsConnectInfo<TcpConnectInfo>>()
        .and_then(|i| i.get_ref().remote_addr())
        .or_else(|| ext.get::<TcpConnectInfo>().and_then(|i| i.remote_addr()))
}

impl<S, B> tower::Service<tonic::codegen::http::Request<B>> for Activity<S>
where
    S: tower::Service<tonic::codegen::http::Request<B>>,
    S::Future: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<S::Response, S::Error>> + Send>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: tonic::codegen::http::Request<B>) -> Self::Future {
        let guard = peer_of(&request)
            .and_then(|p| self.limiter.state_of(p))
            .map(InFlight::start);
        let call = self.inner.call(request);
        Box::pin(async move {
            let result = call.await;
            drop(guard);
            result
        })
    }
}

/// Raises this process's open-file limit to its hard limit, and returns the limit in force.
pub fn raise_open_files_limit() -> Option<u64> {
    use rustix::process::{getrlimit, setrlimit, Resource};
    let mut limit = getrlimit(Resource::Nofile);
    if let (Some(cur), max) = (limit.current, limit.maximum) {
        let target = max.unwrap_or(u64::MAX).min(1 << 20);
        if target > cur {
            let raised = rustix::process::Rlimit {
                current: Some(target),
                maximum: max,
            };
            if setrlimit(Resource::Nofile, raised).is_ok() {
                limit = raised;
            }
        }
    }
    limit.current
}

/// The two listeners' limiters, with caps fitted to the open-file limit.
#[derive(Clone, Debug)]
pub struct Listeners {
    pub public: Arc<ConnLimiter>,
    pub cluster: Arc<ConnLimiter>,
}

impl Listeners {
    pub fn new(c: &crate::config::ConnectionsSection) -> Listeners {
        let idle_timeout = Duration::from_millis(c.idle_timeout_ms);
        let (public, cluster) = fit_to_descriptors(
            Limits {
                connections_max: c.public_max,
                connections_per_ip_max: c.public_per_ip_max,
                idle_timeout,
            },
            Limits {
                connections_max: c.cluster_max,
                connections_per_ip_max: c.cluster_per_ip_max,
                idle_timeout,
            },
            raise_open_files_limit(),
        );
        Listeners {
            public: ConnLimiter::new("public", public),
            cluster: ConnLimiter::new("cluster", cluster),
        }
    }

    /// Connections refused, evicted and closed idle, on both ports.
    pub fn totals(&self) -> (u64, u64, u64) {
        let sum = |f: fn(&ConnStats) -> &AtomicU64| {
            f(&self.public.stats).load(Ordering::Relaxed)
                + f(&self.cluster.stats).load(Ordering::Relaxed)
        };
        (
            sum(|s| &s.refused),
            sum(|s| &s.evicted),
            sum(|s| &s.idle_closed),
        )
    }

    /// Accepted connections, counted by `limiter` (over a cap: closed at once), writes coalesced.
    pub fn incoming(
        limiter: Arc<ConnLimiter>,
        listener: tokio::net::TcpListener,
    ) -> impl futures::Stream<Item = io::Result<crate::wire::Coalescing<Limited<tokio::net::TcpStream>>>>
    {
        use futures::StreamExt as _;
        tonic::transport::server::TcpIncoming::from(listener)
            .with_nodelay(Some(true))
            .filter_map(move |conn| {
                let limiter = limiter.clone();
                async move {
                    match conn {
                        Ok(tcp) => {
                            let peer = tcp.peer_addr().ok()?;
                            limiter
                                .admit(tcp, peer)
                                .map(|l| Ok(crate::wire::Coalescing::new(l)))
                        }
                        Err(e) => Some(Err(e)),
                    }
                }
            })
    }
}

/// Descriptors kept apart from the listeners' caps: storage files, outgoing connections, logs.
pub const DESCRIPTORS_RESERVED: u64 = 128;

/// Scales the two listeners' caps down when together they would exceed the open-file limit
/// (less [`DESCRIPTORS_RESERVED`]), so that the node never runs out of descriptors: a node
/// under systemd's default of 1 024 open files gets smaller caps, and says so.
pub fn fit_to_descriptors(
    public: Limits,
    cluster: Limits,
    open_files: Option<u64>,
) -> (Limits, Limits) {
    let Some(files) = open_files else {
        return (public, cluster);
    };
    let budget = files.saturating_sub(DESCRIPTORS_RESERVED).max(16) as usize;
    let wanted = public.connections_max + cluster.connections_max;
    if wanted <= budget {
        return (public, cluster);
    }
    let scale = |l: Limits| {
        let max = (l.connections_max * budget / wanted).max(4);
        Limits {
            connections_max: max,
            connections_per_ip_max: l.connections_per_ip_max.min(max),
            ..l
        }
    };
    let (p, c) = (scale(public), scale(cluster));
    tracing::warn!(
        open_files = files,
        public_connections_max = p.connections_max,
        cluster_connections_max = c.connections_max,
        "the open-file limit is lower than the configured connection caps; the caps were lowered \
         to fit (raise LimitNOFILE to keep them)"
    );
    (p, c)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(max: usize, per_ip: usize) -> Limits {
        Limits {
            connections_max: max,
            connections_per_ip_max: per_ip,
            idle_timeout: Duration::from_secs(60),
        }
    }

    fn addr(ip: [u8; 4], port: u16) -> SocketAddr {
        SocketAddr::from((ip, port))
    }

    #[tokio::test]
    async fn the_per_address_cap_refuses_and_a_closed_connection_frees_its_place() {
        let l = ConnLimiter::new("test", limits(10, 2));
        let a = l.admit((), addr([10, 0, 0, 1], 1)).expect("first");
        let _b = l.admit((), addr([10, 0, 0, 1], 2)).expect("second");
        assert!(
            l.admit((), addr([10, 0, 0, 1], 3)).is_none(),
            "third refused"
        );
        assert_eq!(l.stats.refused.load(Ordering::Relaxed), 1);
        let _c = l
            .admit((), addr([10, 0, 0, 2], 1))
            .expect("another address");
        drop(a);
        assert!(l.admit((), addr([10, 0, 0, 1], 4)).is_some());
        assert_eq!(l.stats.open.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn a_full_listener_evicts_the_oldest_connection_that_never_carried_a_call() {
        let l = ConnLimiter::new("test", limits(2, 10));
        let a = l.admit((), addr([10, 0, 0, 1], 1)).expect("a");
        let b = l.admit((), addr([10, 0, 0, 2], 1)).expect("b");
        // `a` carries a call: it is kept; `b` never did: it makes room.
        let _call = InFlight::start(l.state_of(addr([10, 0, 0, 1], 1)).expect("known"));
        let _c = l
            .admit((), addr([10, 0, 0, 3], 1))
            .expect("c takes b's place");
        assert!(b.state.evicted.load(Ordering::Relaxed));
        assert!(!a.state.evicted.load(Ordering::Relaxed));
        assert_eq!(l.stats.evicted.load(Ordering::Relaxed), 1);
        // Full of connections that carried calls: refused.
        let _call_c = InFlight::start(l.state_of(addr([10, 0, 0, 3], 1)).expect("known"));
        assert!(l.admit((), addr([10, 0, 0, 4], 1)).is_none());
        drop(b);
        assert_eq!(
            l.stats.open.load(Ordering::Relaxed),
            2,
            "b was already uncounted"
        );
    }

    #[tokio::test]
    async fn an_idle_connection_is_closed_and_a_busy_one_is_not() {
        let l = ConnLimiter::new(
            "test",
            Limits {
                idle_timeout: Duration::from_millis(100),
                ..limits(10, 10)
            },
        );
        let (client, server) = tokio::io::duplex(64);
        let mut idle = l.admit(server, addr([10, 0, 0, 1], 1)).expect("admitted");
        let mut buf = [0u8; 8];
        let read = tokio::io::AsyncReadExt::read(&mut idle, &mut buf);
        let err = tokio::time::timeout(Duration::from_secs(1), read)
            .await
            .expect("the idle timer fires")
            .expect_err("closed");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        assert_eq!(l.stats.idle_closed.load(Ordering::Relaxed), 1);
        drop(client);

        let (_client, server) = tokio::io::duplex(64);
        let mut busy = l.admit(server, addr([10, 0, 0, 1], 2)).expect("admitted");
        let _call = InFlight::start(l.state_of(addr([10, 0, 0, 1], 2)).expect("known"));
        let read = tokio::io::AsyncReadExt::read(&mut busy, &mut buf);
        assert!(
            tokio::time::timeout(Duration::from_secs(1), read)
                .await
                .is_err(),
            "a connection with a call in flight stays open"
        );
    }

    #[test]
    fn caps_shrink_to_fit_the_open_file_limit() {
        let (p, c) = fit_to_descriptors(limits(4096, 512), limits(256, 64), Some(1024));
        assert!(p.connections_max + c.connections_max <= 1024 - DESCRIPTORS_RESERVED as usize);
        assert!(p.connections_per_ip_max <= p.connections_max);
        let (p, c) = fit_to_descriptors(limits(4096, 512), limits(256, 64), Some(1 << 20));
        assert_eq!((p.connections_max, c.connections_max), (4096, 256));
    }
}
