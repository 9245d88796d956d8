//! A wide-area network on one machine: hosts (loopback addresses) are placed in regions, and every
//! TCP connection to a node's address passes through a relay in the test process that holds each
//! chunk for the one-way delay between the two regions. This kernel has no `netem` qdisc, so the
//! delay is made in user space. Needs root and `iptables` (nat table).
//!
//! How a connection reaches the relay: a chain of our own, jumped to from `-t nat OUTPUT`, holds
//! one rule per node address, `-p tcp -d <node> ! -s 127.0.0.250 -j REDIRECT --to-ports <relay>`.
//! REDIRECT of a locally made connection delivers it to `127.0.0.1:<relay>`; the relay reads the
//! original destination with `SO_ORIGINAL_DST`, takes the source address from the peer address,
//! maps both to regions and connects to the original destination from `127.0.0.250`, which the
//! rule exempts, so its own connection is not redirected again. Nodes of a
//! [`super::cluster::TestCluster::with_hosts`] cluster connect to each other from their own
//! address; clients choose a source address of their region (`ConnectOptions::local_address`).
//! Connections from addresses in no region (the test's own status calls from 127.0.0.1) are relayed
//! without delay and are never cut.
//!
//! Per direction, a reader stamps each chunk with the time it may leave (now + one-way delay) and a
//! writer forwards chunks in order once that time has come, so order is kept and the delay does not
//! add up along a stream. Setting up a connection costs one round trip (as a TCP handshake does)
//! before the relay connects onwards. Bytes held per direction are limited
//! ([`HELD_BYTES_MAX`]); a reader waits (TCP back-pressure) when the limit is reached.
//!
//! Cutting two regions apart is done here too, because once redirected the packets no longer carry
//! the node addresses that an iptables DROP rule could match: while a pair of regions is cut, open
//! connections between them forward nothing (what they hold is delivered after healing, as TCP's
//! retransmission would) and new connections are accepted but not connected onwards; when the cut
//! heals, those held connections are closed, so their owners reconnect.
//!
//! Nodes see every relayed connection come from [`RELAY_SOURCE`], so their per-address
//! connection limits (`[connections] *_per_ip_max`) count all relayed connections together; a
//! test must stay below them (five nodes and a few dozen clients do, by far).
//!
//! Dropping the [`Wan`] (also during a panic) removes the jump and the chain and stops the relay.
//! If the test process is killed outright the chain `SLW<pid>-<n>` stays behind; remove it with
//! `iptables -t nat -D OUTPUT -j <chain>; iptables -t nat -F <chain>; iptables -t nat -X <chain>`.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

/// The source address of the relay's onward connections; the REDIRECT rules exempt it.
pub const RELAY_SOURCE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 250);

/// Bytes one direction of one connection may hold before its reader waits.
pub const HELD_BYTES_MAX: usize = 8 * 1024 * 1024;

/// Largest chunk read at once.
const CHUNK_BYTES_MAX: usize = 64 * 1024;

/// Connections the relay serves at once; more wait to be accepted.
const CONNECTIONS_MAX: usize = 1024;

/// A region's name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Region(pub &'static str);

impl std::fmt::Display for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.0)
    }
}

/// Regions, the hosts in them and the round trips between them.
#[derive(Clone, Debug, Default)]
pub struct Topology {
    hosts: HashMap<Ipv4Addr, Region>,
    rtt: BTreeMap<(Region, Region), Duration>,
}

fn pair(a: Region, b: Region) -> (Region, Region) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

impl Topology {
    pub fn new() -> Topology {
        Topology::default()
    }

    /// Places `host` in `region`.
    pub fn host(mut self, host: Ipv4Addr, region: Region) -> Topology {
        self.hosts.insert(host, region);
        self
    }

    /// The round trip between `a` and `b` (either way; `a == b` for inside one region).
    pub fn rtt(mut self, a: Region, b: Region, rtt: Duration) -> Topology {
        self.rtt.insert(pair(a, b), rtt);
        self
    }

    /// The region of `host`, if it is in one.
    pub fn region_of(&self, host: Ipv4Addr) -> Option<Region> {
        self.hosts.get(&host).copied()
    }

    /// The round trip between two regions. Panics if it was not given: a test that forgot a
    /// link would otherwise measure nothing.
    pub fn round_trip(&self, a: Region, b: Region) -> Duration {
        *self
            .rtt
            .get(&pair(a, b))
            .unwrap_or_else(|| panic!("no round trip given between {a} and {b}"))
    }
}

/// One connection the relay accepted.
#[derive(Clone, Copy, Debug)]
pub struct Relayed {
    pub source: Ipv4Addr,
    pub destination: SocketAddrV4,
}

struct Shared {
    topology: Topology,
    /// Pairs of regions (ordered as [`pair`] orders them) that are cut apart.
    cuts: watch::Sender<BTreeSet<(Region, Region)>>,
    accepted: Mutex<Vec<Relayed>>,
    relay_addr: SocketAddr,
}

/// See the module comment.
pub struct Wan {
    chain: String,
    shared: Arc<Shared>,
    acceptor: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Wan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Wan")
            .field("chain", &self.chain)
            .field("relay", &self.shared.relay_addr)
            .finish()
    }
}

fn iptables(args: &[&str]) -> Result<(), String> {
    let out = Command::new("iptables")
        .args(["-w", "5", "-t", "nat"])
        .args(args)
        .output()
        .map_err(|e| format!("cannot run iptables (the WAN tests need it, as root): {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "iptables -t nat {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

impl Wan {
    /// Starts the relay and redirects every TCP connection to one of `nodes` through it. Call
    /// before the nodes start: connections already open are not redirected.
    pub async fn start(topology: Topology, nodes: &[Ipv4Addr]) -> Wan {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("the relay listens on 127.0.0.1");
        let relay_addr = listener
            .local_addr()
            .expect("a bound listener has an address");
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let chain = format!(
            "SLW{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let shared = Arc::new(Shared {
            topology,
            cuts: watch::channel(BTreeSet::new()).0,
            accepted: Mutex::new(Vec::new()),
            relay_addr,
        });
        let acceptor = tokio::spawn(accept(listener, shared.clone()));
        // From here on, Drop removes whatever part of the chain exists.
        let wan = Wan {
            chain,
            shared,
            acceptor,
        };
        iptables(&["-N", &wan.chain]).unwrap_or_else(|e| panic!("{e}"));
        iptables(&["-I", "OUTPUT", "1", "-j", &wan.chain]).unwrap_or_else(|e| panic!("{e}"));
        let port = relay_addr.port().to_string();
        let exempt = RELAY_SOURCE.to_string();
        for node in nodes {
            iptables(&[
                "-A",
                &wan.chain,
                "-p",
                "tcp",
                "-d",
                &node.to_string(),
                "!",
                "-s",
                &exempt,
                "-j",
                "REDIRECT",
                "--to-ports",
                &port,
            ])
            .unwrap_or_else(|e| panic!("{e}"));
        }
        wan
    }

    pub fn topology(&self) -> &Topology {
        &self.shared.topology
    }

    /// Cuts regions `a` and `b` apart (both ways).
    pub fn cut(&self, a: Region, b: Region) {
        self.shared.cuts.send_modify(|cuts| {
            cuts.insert(pair(a, b));
        });
    }

    /// Cuts `region` from every other region of the topology.
    pub fn isolate(&self, region: Region) {
        let others: BTreeSet<Region> = self
            .shared
            .topology
            .hosts
            .values()
            .copied()
            .filter(|r| *r != region)
            .collect();
        for other in others {
            self.cut(region, other);
        }
    }

    /// Removes every cut; connections held during the cut are closed.
    pub fn heal(&self) {
        self.shared.cuts.send_modify(BTreeSet::clear);
    }

    /// Every connection relayed so far.
    pub fn accepted(&self) -> Vec<Relayed> {
        self.shared
            .accepted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl Drop for Wan {
    fn drop(&mut self) {
        self.acceptor.abort();
        // Best effort: a failure here must not hide the test's own failure.
        let _ = iptables(&["-D", "OUTPUT", "-j", &self.chain]);
        let _ = iptables(&["-F", &self.chain]);
        let _ = iptables(&["-X", &self.chain]);
    }
}

/// Accepts connections until aborted; aborting drops the set, which aborts every connection.
async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        while connections.try_join_next().is_some() {}
        if connections.len() >= CONNECTIONS_MAX {
            let _ = connections.join_next().await;
            continue;
        }
        let (inbound, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                eprintln!("wan relay: accept failed: {e}");
                continue;
            }
        };
        connections.spawn(relay(shared.clone(), inbound, peer));
    }
}

/// The destination a connection had before REDIRECT.
fn original_destination(stream: &TcpStream) -> std::io::Result<SocketAddrV4> {
    let addr = socket2::SockRef::from(stream).original_dst_v4()?;
    addr.as_socket_ipv4().ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "the original destination is not IPv4",
        )
    })
}

/// What a connection between two hosts crosses.
#[derive(Clone, Copy, Debug)]
struct Link {
    /// The two regions, `None` when one end is in no region (never delayed, never cut).
    regions: Option<(Region, Region)>,
    one_way: Duration,
}

impl Link {
    fn round_trip(&self) -> Duration {
        self.one_way * 2
    }
}

async fn relay(shared: Arc<Shared>, inbound: TcpStream, peer: SocketAddr) {
    let destination = match original_destination(&inbound) {
        Ok(d) if SocketAddr::V4(d) != shared.relay_addr => d,
        Ok(_) => return, // not redirected: someone dialled the relay itself
        Err(e) => {
            eprintln!("wan relay: no original destination for {peer}: {e}");
            return;
        }
    };
    let source = match peer.ip() {
        IpAddr::V4(ip) => ip,
        IpAddr::V6(_) => return,
    };
    shared
        .accepted
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Relayed {
            source,
            destination,
        });
    let topology = &shared.topology;
    let link = match (
        topology.region_of(source),
        topology.region_of(*destination.ip()),
    ) {
        (Some(a), Some(b)) => Link {
            regions: Some(pair(a, b)),
            one_way: topology.round_trip(a, b) / 2,
        },
        _ => Link {
            regions: None,
            one_way: Duration::ZERO,
        },
    };
    let mut cuts = shared.cuts.subscribe();
    if let Some(regions) = link.regions {
        if cuts.borrow_and_update().contains(&regions) {
            // Held: accepted, never connected onwards; closed when the cut heals (or when its
            // owner gives up). What it sends meanwhile is read and dropped: it will never arrive.
            let mut inbound = inbound;
            let drain = async {
                let mut buf = [0u8; 4096];
                while let Ok(1..) = inbound.read(&mut buf).await {}
            };
            tokio::select! {
                _ = cuts.wait_for(|c| !c.contains(&regions)) => {}
                () = drain => {}
            }
            return;
        }
    }
    // A TCP handshake costs one round trip before the connection carries data.
    tokio::time::sleep(link.round_trip()).await;
    let outbound = async {
        let socket = TcpSocket::new_v4()?;
        socket.bind(SocketAddr::new(IpAddr::V4(RELAY_SOURCE), 0))?;
        socket.connect(SocketAddr::V4(destination)).await
    };
    let Ok(outbound) = outbound.await else {
        return; // refused (the node is down): closing the inbound side says so
    };
    let _ = inbound.set_nodelay(true);
    let _ = outbound.set_nodelay(true);
    let (in_read, in_write) = inbound.into_split();
    let (out_read, out_write) = outbound.into_split();
    let up = direction(in_read, out_write, link, shared.cuts.subscribe());
    let down = direction(out_read, in_write, link, shared.cuts.subscribe());
    // The first direction to fail ends both; a clean end of one waits for the other.
    let _ = tokio::try_join!(up, down);
}

enum Chunk {
    Data {
        due: Instant,
        bytes: Vec<u8>,
        _held: OwnedSemaphorePermit,
    },
    End {
        due: Instant,
    },
}

/// Forwards one direction of a connection, each chunk `link.one_way` after it was read, in
/// order, and nothing while the link is cut.
async fn direction(
    mut from: OwnedReadHalf,
    mut to: OwnedWriteHalf,
    link: Link,
    mut cuts: watch::Receiver<BTreeSet<(Region, Region)>>,
) -> std::io::Result<()> {
    let (tx, mut rx) = mpsc::unbounded_channel::<Chunk>();
    let held = Arc::new(Semaphore::new(HELD_BYTES_MAX));
    let read = async move {
        let mut buf = vec![0u8; CHUNK_BYTES_MAX];
        loop {
            let n = from.read(&mut buf).await?;
            let due = Instant::now() + link.one_way;
            if n == 0 {
                let _ = tx.send(Chunk::End { due });
                return Ok::<(), std::io::Error>(());
            }
            // n <= CHUNK_BYTES_MAX, far below u32::MAX; the semaphore is never closed.
            let permit = held
                .clone()
                .acquire_many_owned(n as u32)
                .await
                .map_err(|_| std::io::Error::other("the held-bytes semaphore closed"))?;
            if tx
                .send(Chunk::Data {
                    due,
                    bytes: buf[..n].to_vec(),
                    _held: permit,
                })
                .is_err()
            {
                return Ok(()); // the writer ended
            }
        }
    };
    let write = async move {
        while let Some(chunk) = rx.recv().await {
            let due = match &chunk {
                Chunk::Data { due, .. } | Chunk::End { due } => *due,
            };
            tokio::time::sleep_until(due).await;
            if let Some(regions) = link.regions {
                if cuts.wait_for(|c| !c.contains(&regions)).await.is_err() {
                    return Ok(()); // the relay is gone
                }
            }
            match chunk {
                Chunk::Data { bytes, .. } => to.write_all(&bytes).await?,
                Chunk::End { .. } => {
                    to.shutdown().await?;
                    return Ok::<(), std::io::Error>(());
                }
            }
        }
        Ok(())
    };
    tokio::try_join!(read, write).map(|_| ())
}
