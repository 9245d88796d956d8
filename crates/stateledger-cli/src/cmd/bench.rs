//! `stateledger bench`: throughput and latency of a real 3-node cluster (TLS, fsync) under
//! closed-loop load, optionally against a 3-member etcd cluster in the same run; and the cost of
//! reconstructing one system's state in a large ledger. Prints numbers; asserts nothing.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use stateledger_client::{ConnectOptions, LedgerClient};
use stateledger_core::note::NoteSigner;
use stateledger_core::record::{pb, Body, CheckedRecord};
use stateledger_core::trust::TrustPolicy;

use super::dev::{spawn, wait_ready};
use super::output::OutputArgs;
use super::profile::Profile;
use super::submit::now_nanos;
use crate::errln;

pub const HELP: &str = "\
Examples:
  stateledger bench cluster --levels 1,16,64,256 --seconds 10
  stateledger bench cluster --etcd --floor
  stateledger bench reconstruct --ledgers 10000,1000000
  stateledger bench cluster --levels 16 --seconds 5 --output json > run.json

docs/PERFORMANCE.md has the method and the numbers. Benchmarks print numbers and assert nothing.
With --output json the running lines go to standard error and standard output holds one JSON
document at the end (docs/CLI.md).

Exit status:
  0  the benchmark ran
  2  it could not run (ports in use, etcd missing for --etcd, a node failed)";

#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Closed-loop load against a real 3-node cluster on loopback (TLS, fsync).
    #[command(after_help = HELP)]
    Cluster(ClusterArgs),
    /// Reconstruction of one system (with state proof and offline verification) in large ledgers.
    #[command(after_help = HELP)]
    Reconstruct(ReconstructArgs),
}

#[derive(clap::Args, Debug)]
pub struct ClusterArgs {
    /// Concurrency levels (closed-loop clients), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,16,64,256")]
    pub levels: Vec<usize>,
    /// Seconds per level.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// Approximate record size in bytes.
    #[arg(long, default_value_t = 300)]
    pub record_bytes: usize,
    /// Pre-signed records available for the whole run.
    #[arg(long, default_value_t = 400_000)]
    pub pool: usize,
    /// Records in each request (1: the workload). More shares each request's gRPC, TLS
    /// and wake-ups among its records; raise --pool to match.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub records_per_request: u16,
    /// Also run the same load against a 3-member etcd cluster (Debian's etcd-server) and print ratios.
    #[arg(long)]
    pub etcd: bool,
    /// Keep the cluster's files here instead of a temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Override the nodes' shortest gap between checkpoint cosigning rounds (ms).
    #[arg(long)]
    pub checkpoint_interval_ms: Option<u64>,
    /// Override the nodes' shortest gap between checkpoints published through Raft (ms).
    #[arg(long)]
    pub publish_interval_ms: Option<u64>,
    /// Also measure the floor of this stack: the same closed loop calling the leader's `Status`
    /// RPC (same TLS channels, no Raft, no disk, no signature check). No design that sends one
    /// record per gRPC request can be faster than this on this machine.
    #[arg(long)]
    pub floor: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

#[derive(clap::Args, Debug)]
pub struct ReconstructArgs {
    /// Ledger sizes to build, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "10000,1000000")]
    pub ledgers: Vec<u64>,
    /// Records of the reconstructed system in each ledger.
    #[arg(long, default_value_t = 1000)]
    pub system_records: u64,
    /// Keep the ledgers here instead of a temporary directory.
    #[arg(long)]
    pub dir: Option<PathBuf>,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// `outln!` for a benchmark's running text: standard output, or standard error with
/// `--output json` (see [`say`]).
#[macro_export]
macro_rules! bench_say {
    ($($arg:tt)*) => {
        $crate::cmd::bench::say(format_args!($($arg)*))
    };
}

/// Set by `--output json`: the lines a benchmark prints as it goes are then progress on
/// standard error, and standard output holds only the JSON document printed at the end.
static LINES_TO_STDERR: AtomicBool = AtomicBool::new(false);

/// Prints one line of a benchmark's running text (see [`LINES_TO_STDERR`]).
pub fn say(args: std::fmt::Arguments<'_>) -> anyhow::Result<()> {
    if LINES_TO_STDERR.load(Ordering::Relaxed) {
        errln!("{args}");
        Ok(())
    } else {
        crate::cmd::output::line(args)
    }
}

/// One concurrency level as `--output json` prints it (docs/CLI.md).
pub fn level_json(r: &LevelResult) -> serde_json::Value {
    serde_json::json!({
        "clients": r.clients,
        "requests": r.ops,
        "records_per_request": r.records_per_op,
        "seconds": r.seconds,
        "records_per_second": r.rate(),
        "latency_ms_p50": r.p50_us as f64 / 1000.0,
        "latency_ms_p99": r.p99_us as f64 / 1000.0,
        "latency_ms_p999": r.p999_us as f64 / 1000.0,
        "errors": r.errors,
        "leader_cpu_us_per_record": r.cpu_us_per_op,
    })
}

pub fn run(command: BenchCommand) -> anyhow::Result<()> {
    let output = match &command {
        BenchCommand::Cluster(a) => a.output,
        BenchCommand::Reconstruct(a) => a.output,
    };
    LINES_TO_STDERR.store(output.is_json(), Ordering::Relaxed);
    match command {
        BenchCommand::Cluster(a) => run_cluster(a),
        BenchCommand::Reconstruct(a) => super::bench_reconstruct::run(a),
    }
}

/// Results of one concurrency level.
#[derive(Debug, Clone)]
pub struct LevelResult {
    pub clients: usize,
    pub ops: usize,
    pub seconds: f64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub errors: usize,
    /// Leader CPU per record.
    pub cpu_us_per_op: Option<f64>,
    /// Records (or puts) per request: 1 unless `--records-per-request` says otherwise.
    pub records_per_op: usize,
}

impl LevelResult {
    /// Records (or puts) per second.
    pub fn rate(&self) -> f64 {
        (self.ops * self.records_per_op) as f64 / self.seconds
    }
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

/// CPU time (user + system) of a process, in microseconds.
pub fn cpu_micros(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the ")" that closes the command name: state is field 3; utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    // Linux reports clock ticks of 1/100 s on every platform we run on (CLK_TCK = 100).
    Some((utime + stime) * 10_000)
}

fn free_base_port() -> u16 {
    loop {
        let base = 22_000 + (rand::random::<u16>() % 18_000);
        let free = (1..=3).all(|i| {
            [base + i, base + 100 + i, base + 200 + i, base + 300 + i]
                .iter()
                .all(|p| std::net::TcpListener::bind(("127.0.0.1", *p)).is_ok())
        });
        if free {
            return base;
        }
    }
}

fn presign(
    writers: &[NoteSigner],
    count: usize,
    record_bytes: usize,
) -> anyhow::Result<Vec<CheckedRecord>> {
    let started = Instant::now();
    let threads = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .max(1);
    let per = count.div_ceil(threads);
    let run_id = now_nanos();
    let mut handles = Vec::new();
    for t in 0..threads {
        let writers: Vec<NoteSigner> = writers.to_vec();
        handles.push(std::thread::spawn(
            move || -> anyhow::Result<Vec<CheckedRecord>> {
                let mut out = Vec::with_capacity(per);
                for i in (t * per)..((t + 1) * per).min(count) {
                    let w = &writers[i % writers.len()];
                    let mut record = pb::Record {
                        system: format!("bench-{}", i % writers.len()),
                        scope: "bench".into(),
                        observed_at_unix_nanos: run_id + i as u64,
                        body: Some(Body::Mutation(pb::Mutation {
                            kind: "order_created".into(),
                            id: format!("evt-{run_id}-{i}"),
                            source: format!("kafka:bench/{}", i % writers.len()),
                            sequence: (i / writers.len()) as u64 + 1,
                            origin: String::new(),
                            payload_digest: format!("sha256:{:064x}", i),
                            external_ref: Some(pb::mutation::ExternalRef::Kafka(pb::KafkaRef {
                                topic: "bench".into(),
                                partition: (i % writers.len()) as u32,
                                offset: i as u64,
                            })),
                            captures: Vec::new(),
                        })),
                    };
                    let base = prost::Message::encoded_len(&record);
                    if let Some(Body::Mutation(m)) = record.body.as_mut() {
                        m.origin = "x".repeat(record_bytes.saturating_sub(base + 2).max(1));
                    }
                    out.push(CheckedRecord::sign(record, w.signing_key())?);
                }
                Ok(out)
            },
        ));
    }
    let mut all = Vec::with_capacity(count);
    for h in handles {
        all.extend(
            h.join()
                .map_err(|_| anyhow::anyhow!("a signing thread panicked"))??,
        );
    }
    errln!(
        "pre-signed {} records of ~{} bytes in {:.1} s",
        all.len(),
        all.first().map_or(0, |r| r.bytes.len()),
        started.elapsed().as_secs_f64()
    );
    Ok(all)
}

/// Runs `clients` closed-loop clients for `seconds`, each submitting one record at a time.
pub async fn closed_loop<F, Fut>(clients: usize, seconds: u64, op: F) -> (Vec<u64>, usize, f64)
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = bool> + Send,
{
    let op = Arc::new(op);
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..clients {
        let op = op.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut errors = 0;
            while Instant::now() < deadline {
                let t = Instant::now();
                if op(c).await {
                    lat.push(t.elapsed().as_micros() as u64);
                } else {
                    errors += 1;
                    if errors > 1000 {
                        break;
                    }
                }
            }
            (lat, errors)
        }));
    }
    let mut all = Vec::new();
    let mut errors = 0;
    for t in tasks {
        if let Ok((lat, e)) = t.await {
            all.extend(lat);
            errors += e;
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    all.sort_unstable();
    (all, errors, elapsed)
}

fn print_level(name: &str, r: &LevelResult) -> anyhow::Result<()> {
    crate::bench_say!(
        "{name:<12} {:>5} clients  {:>10.0} {}  p50 {:>8.2} ms  p99 {:>8.2} ms  p999 {:>8.2} ms  errors {:>4}{}",
        r.clients,
        r.rate(),
        if r.records_per_op == 1 {
            "ops/s".to_string()
        } else {
            format!("rec/s ({} per request)", r.records_per_op)
        },
        r.p50_us as f64 / 1000.0,
        r.p99_us as f64 / 1000.0,
        r.p999_us as f64 / 1000.0,
        r.errors,
        r.cpu_us_per_op.map_or(String::new(), |c| format!("  leader CPU {c:.1} µs/record"))
    )
}

fn run_cluster(args: ClusterArgs) -> anyhow::Result<()> {
    let temp = tempfile::tempdir()?;
    let dir = args
        .dir
        .clone()
        .unwrap_or_else(|| temp.path().to_path_buf());
    let base = free_base_port();
    let cluster = stateledger_node::dev::create(&dir, 3, base, "stateledger.bench/cluster")
        .map_err(anyhow::Error::msg)?;
    let mut endpoints = Vec::new();
    let mut cadence = (0, 0);
    for c in &cluster.configs {
        let mut config = stateledger_node::config::NodeConfig::load(c)?;
        endpoints.push(config.public_addr());
        if args.checkpoint_interval_ms.is_some() || args.publish_interval_ms.is_some() {
            if let Some(ms) = args.checkpoint_interval_ms {
                config.limits.checkpoint_interval_ms = ms;
            }
            if let Some(ms) = args.publish_interval_ms {
                config.limits.checkpoint_publish_interval_ms = ms;
            }
            std::fs::write(c, toml::to_string_pretty(&config)?)?;
        }
        cadence = (
            config.limits.checkpoint_interval_ms,
            config.limits.checkpoint_publish_interval_ms,
        );
    }
    let profile = Profile {
        endpoints: endpoints.clone(),
        cluster_endpoints: Vec::new(),
        ca_cert: dir.join("ca.pem"),
        trust_policy: dir.join("trust_policy.json"),
        admin_cert: None,
        admin_key: None,
        admin_signing_key: None,
    };
    let mut nodes = spawn(&dir, &cluster.configs)?;
    let writers: Vec<NoteSigner> = (0..8)
        .map(|i| NoteSigner::from_seed(&format!("bench-writer-{i}"), &rand::random::<[u8; 32]>()))
        .collect::<Result<_, _>>()?;
    let pool = presign(&writers, args.pool, args.record_bytes)?;
    let pool_record_bytes = pool.first().map_or(0, |r| r.bytes.len());
    let pool = Arc::new(pool);
    let rt = super::runtime()?;
    let results = rt.block_on(async {
        wait_ready(&profile, &mut nodes, Duration::from_secs(60)).await?;
        let policy = TrustPolicy::from_json(&std::fs::read(&cluster.trust_policy)?)?;
        let ca = std::fs::read_to_string(&cluster.ca_cert)?;
        let admin = NoteSigner::parse(&std::fs::read_to_string(&cluster.admin_key)?)?;
        let client = LedgerClient::new(ConnectOptions::new(endpoints.clone(), ca.clone()), policy.clone())?;
        for (i, w) in writers.iter().enumerate() {
            let grant = pb::Record {
                system: format!("bench-{i}"),
                scope: String::new(),
                observed_at_unix_nanos: now_nanos(),
                body: Some(Body::Policy(pb::Policy {
                    change: Some(pb::policy::Change::Grant(pb::WriterGrant {
                        writer_key: w.verifier().key.to_bytes().to_vec(),
                        writer_name: w.name.clone(),
                    })),
                })),
            };
            client.sign_and_submit(vec![grant], admin.signing_key()).await?;
        }
        crate::bench_say!(
            "StateLedger: 3 nodes on loopback, TLS, fsync per commit, records ~{} B, {} per request, {} s per level; checkpoints cosigned at most every {} ms, published at most every {} ms",
            pool.first().map_or(0, |r| r.bytes.len()),
            args.records_per_request,
            args.seconds,
            cadence.0,
            cadence.1
        )?;
        let next = Arc::new(AtomicUsize::new(0));
        let mut results = Vec::new();
        for &level in &args.levels {
            let channels = channels_for(level, &endpoints, &ca, &policy)?;
            let leader_pid = leader_of(&client, &nodes).await?.map(|(_, pid)| pid);
            let cpu_before = leader_pid.and_then(cpu_micros);
            let pool = pool.clone();
            let next = next.clone();
            let per_request = usize::from(args.records_per_request);
            let (lat, errors, elapsed) = closed_loop(level, args.seconds, move |c| {
                let client = channels[c % channels.len()].clone();
                let pool = pool.clone();
                let next = next.clone();
                async move {
                    let i = next.fetch_add(per_request, Ordering::Relaxed);
                    let Some(records) = pool.get(i..i + per_request) else {
                        tokio::time::sleep(Duration::from_millis(10)).await;
                        return false;
                    };
                    client.submit(records).await.is_ok()
                }
            })
            .await;
            let cpu_after = leader_pid.and_then(cpu_micros);
            let ops = lat.len();
            let r = LevelResult {
                clients: level,
                ops,
                seconds: elapsed,
                p50_us: percentile(&lat, 0.5),
                p99_us: percentile(&lat, 0.99),
                p999_us: percentile(&lat, 0.999),
                errors,
                cpu_us_per_op: cpu_per(cpu_before, cpu_after, ops * per_request),
                records_per_op: per_request,
            };
            print_level("stateledger", &r)?;
            results.push(r);
        }
        let mut floor = Vec::new();
        if args.floor {
            crate::bench_say!("floor: the leader's Status RPC over the same TLS channels (no Raft, no disk, no signature check); leader CPU is per call")?;
            for &level in &args.levels {
                let r = rpc_floor(&client, &endpoints, &nodes, &ca, &policy, level, args.seconds).await?;
                print_level("rpc floor", &r)?;
                floor.push(r);
            }
        }
        anyhow::Ok((results, floor))
    })?;
    let (results, floor) = results;
    drop(nodes);
    let mut etcd = Vec::new();
    if args.etcd {
        let etcd_results =
            super::bench_etcd::run(&dir, base, &args.levels, args.seconds, args.record_bytes)?;
        crate::bench_say!("\nratio (StateLedger / etcd, same machine, same run):")?;
        for (s, e) in results.iter().zip(&etcd_results) {
            crate::bench_say!(
                "{:>5} clients  throughput x{:.2}  p50 {:.2} vs {:.2} ms  p99 {:.2} vs {:.2} ms",
                s.clients,
                s.rate() / e.rate().max(1e-9),
                s.p50_us as f64 / 1000.0,
                e.p50_us as f64 / 1000.0,
                s.p99_us as f64 / 1000.0,
                e.p99_us as f64 / 1000.0
            )?;
        }
        etcd = etcd_results;
    }
    if args.output.is_json() {
        let levels = |rs: &[LevelResult]| rs.iter().map(level_json).collect::<Vec<_>>();
        super::output::json(&serde_json::json!({
            "record_bytes": pool_record_bytes,
            "records_per_request": args.records_per_request,
            "seconds_per_level": args.seconds,
            "checkpoint_interval_ms": cadence.0,
            "publish_interval_ms": cadence.1,
            "stateledger": levels(&results),
            "floor": levels(&floor),
            "etcd": levels(&etcd),
        }))?;
    }
    Ok(())
}

/// Client channels for `level` closed-loop clients (at most 8 connections, shared).
fn channels_for(
    level: usize,
    endpoints: &[String],
    ca: &str,
    policy: &TrustPolicy,
) -> anyhow::Result<Vec<Arc<LedgerClient>>> {
    (0..level.clamp(1, 8))
        .map(|_| {
            LedgerClient::new(
                ConnectOptions::new(endpoints.to_vec(), ca.to_string()),
                policy.clone(),
            )
            .map(Arc::new)
            .map_err(anyhow::Error::from)
        })
        .collect()
}

/// The current leader: its position among the benchmark's nodes (the order of their
/// endpoints) and its process id; `None` if the leader is not one of them.
async fn leader_of(
    client: &LedgerClient,
    nodes: &super::dev::Nodes,
) -> anyhow::Result<Option<(usize, u32)>> {
    let name = format!("node-{}", client.status(None).await?.leader_id);
    Ok(nodes
        .children
        .iter()
        .position(|(n, _)| *n == name)
        .map(|i| (i, nodes.children[i].1.id())))
}

/// CPU microseconds per operation between two readings, when both exist and `ops` > 0.
fn cpu_per(before: Option<u64>, after: Option<u64>, ops: usize) -> Option<f64> {
    match (before, after) {
        (Some(a), Some(b)) if ops > 0 => Some(b.saturating_sub(a) as f64 / ops as f64),
        _ => None,
    }
}

/// One level of the `--floor` measurement: `clients` closed-loop clients calling the leader's
/// `Status` RPC, with the leader's CPU per call.
async fn rpc_floor(
    client: &LedgerClient,
    endpoints: &[String],
    nodes: &super::dev::Nodes,
    ca: &str,
    policy: &TrustPolicy,
    clients: usize,
    seconds: u64,
) -> anyhow::Result<LevelResult> {
    let (leader_index, leader_pid) = leader_of(client, nodes)
        .await?
        .context("the leader is not one of the benchmark's nodes")?;
    let leader_endpoint = Arc::new(endpoints[leader_index].clone());
    let channels = channels_for(clients, endpoints, ca, policy)?;
    let cpu_before = cpu_micros(leader_pid);
    let (lat, errors, elapsed) = closed_loop(clients, seconds, move |c| {
        let client = channels[c % channels.len()].clone();
        let endpoint = leader_endpoint.clone();
        async move { client.status(Some(&endpoint)).await.is_ok() }
    })
    .await;
    let mut r = results_of(&lat, errors, elapsed, clients);
    r.cpu_us_per_op = cpu_per(cpu_before, cpu_micros(leader_pid), r.ops);
    Ok(r)
}

pub fn results_of(lat: &[u64], errors: usize, elapsed: f64, clients: usize) -> LevelResult {
    LevelResult {
        clients,
        ops: lat.len(),
        seconds: elapsed,
        p50_us: percentile(lat, 0.5),
        p99_us: percentile(lat, 0.99),
        p999_us: percentile(lat, 0.999),
        errors,
        cpu_us_per_op: None,
        records_per_op: 1,
    }
}

pub fn print_result(name: &str, r: &LevelResult) -> anyhow::Result<()> {
    print_level(name, r)
}

/// Directory helper for the etcd runner.
pub fn child_dir(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let d = dir.join(name);
    std::fs::create_dir_all(&d).with_context(|| format!("cannot create {}", d.display()))?;
    Ok(d)
}
