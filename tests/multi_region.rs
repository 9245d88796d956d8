//! Five real nodes in three regions under WAN latency, configured like
//! `cluster-configs/multi-region-5` (its `[raft]` and `[limits]` sections are read from there):
//! region A holds nodes 1 and 2, B nodes 3 and 4, C node 5; round trips are 40 ms A–B, 120 ms A–C,
//! 150 ms B–C and 1 ms inside a region, made by the delaying relay of `support/wan.rs` (this
//! kernel has no `netem`). Clients of a region connect from an address of that region. The test
//! prints its numbers; docs/OPERATIONS.md ("Multi-region") records them.
//!
//! 1. Commit latency, p50 and p99, with 1 and with 16 clients in each region. Every commit must
//!    take at least the round trip from the client to the leader plus the leader's round trip to
//!    its nearest quorum (two more of five nodes), which proves the relay is in the path.
//! 2. Local reads: a client in each region, which knows only its region's nodes, gets receipts and
//!    verifies them against the trust policy (quorum-cosigned checkpoints); the relay shows it
//!    never left its region.
//! 3. A two-node region without the leader is cut off: writes from the other regions go on; on
//!    healing it catches up.
//! 4. The leader's region is lost (its nodes SIGKILLed): writes from the other regions go on after
//!    an election (time measured); restarted, the region catches up.
//! 5. Every acknowledged record is on every node at its acknowledged index, and all five nodes
//!    have the same root.
//!
//! The default (short) form runs in `cargo test` (as root in CI); `STATELEDGER_WAN_LONG=1` runs
//! the long form with more records. Needs root (iptables nat rules; see `support/wan.rs`).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use stateledger_client::LedgerClient;
use stateledger_core::note::NoteSigner;
use stateledger_node::config::NodeConfig;
use stateledger_tests::cluster::TestCluster;
use stateledger_tests::records::{self, writer_key};
use stateledger_tests::wait;
use stateledger_tests::wan::{Region, Topology, Wan};
use stateledger_tests::writer::{Ack, Writer};

const SYSTEM: &str = "multi-region";
const A: Region = Region("A");
const B: Region = Region("B");
const C: Region = Region("C");
const REGIONS: [Region; 3] = [A, B, C];
const NODES: [u64; 5] = [1, 2, 3, 4, 5];
/// A client library call's deadline, retries included.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(30);

/// How much the test does: the short form in `cargo test`, the long one with
/// `STATELEDGER_WAN_LONG=1`.
#[derive(Clone, Copy, Debug)]
struct Form {
    /// Records the single client of a region submits, measured.
    single_client_records: usize,
    /// Records each of the 16 clients of a region submits, measured.
    per_client_records: usize,
    /// Records acknowledged after a region is lost or cut, per writer, before it comes back.
    writes_while_lost: usize,
    /// Receipts each region's reader verifies.
    reads_per_region: usize,
}

fn form() -> Form {
    if std::env::var_os("STATELEDGER_WAN_LONG").is_some_and(|v| v != "0") {
        Form {
            single_client_records: 200,
            per_client_records: 25,
            writes_while_lost: 100,
            reads_per_region: 100,
        }
    } else {
        Form {
            single_client_records: 20,
            per_client_records: 4,
            writes_while_lost: 10,
            reads_per_region: 10,
        }
    }
}

fn region_of(id: u64) -> Region {
    match id {
        1 | 2 => A,
        3 | 4 => B,
        _ => C,
    }
}

fn nodes_in(region: Region) -> Vec<u64> {
    NODES
        .iter()
        .copied()
        .filter(|id| region_of(*id) == region)
        .collect()
}

fn region_index(region: Region) -> u8 {
    REGIONS
        .iter()
        .position(|r| *r == region)
        .expect("one of the three regions") as u8
}

/// Source address of region `region`'s writing clients.
fn writer_address(cluster: &TestCluster, region: Region) -> Ipv4Addr {
    cluster.net_address(101 + region_index(region))
}

/// Source address of region `region`'s reading client.
fn reader_address(cluster: &TestCluster, region: Region) -> Ipv4Addr {
    cluster.net_address(111 + region_index(region))
}

fn topology(cluster: &TestCluster) -> Topology {
    let ms = Duration::from_millis;
    let mut topology = Topology::new()
        .rtt(A, A, ms(1))
        .rtt(B, B, ms(1))
        .rtt(C, C, ms(1))
        .rtt(A, B, ms(40))
        .rtt(A, C, ms(120))
        .rtt(B, C, ms(150));
    for id in NODES {
        topology = topology.host(cluster.host_ip(id), region_of(id));
    }
    for region in REGIONS {
        topology = topology
            .host(writer_address(cluster, region), region)
            .host(reader_address(cluster, region), region);
    }
    topology
}

/// Copies `[raft]` and `[limits]` of `cluster-configs/multi-region-5` into the test cluster's
/// configs (addresses, keys and paths stay the test cluster's own).
fn configure_like_multi_region_5(cluster: &TestCluster) {
    let dir =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../cluster-configs/multi-region-5");
    for id in NODES {
        let path = dir.join(format!("node-{id}.toml"));
        let text = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let shipped: NodeConfig = toml::from_str(&text)
            .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()));
        cluster.edit_config(id, |c| {
            c.raft = shipped.raft.clone();
            c.limits = shipped.limits.clone();
        });
    }
}

/// The leader's round trip to the nearest quorum: it needs two more of the five nodes.
fn quorum_rtt(topology: &Topology, leader: u64) -> Duration {
    let mut rtts: Vec<Duration> = NODES
        .iter()
        .filter(|id| **id != leader)
        .map(|id| topology.round_trip(region_of(leader), region_of(*id)))
        .collect();
    rtts.sort();
    rtts[1]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// The `p`th percentile (nearest rank) of sorted durations.
fn percentile(sorted: &[Duration], p: usize) -> Duration {
    let rank = (sorted.len() * p).div_ceil(100).max(1);
    sorted[rank - 1]
}

/// Submits `per_client` records from each of `clients` clients of `region` at once (each its
/// own connection, from the region's address), after one unmeasured record each that finds the
/// leader. Returns each measured commit's latency and every acknowledged record.
async fn measure(
    cluster: &TestCluster,
    region: Region,
    clients: usize,
    per_client: usize,
    key: &NoteSigner,
) -> (Vec<Duration>, Vec<Ack>) {
    let mut tasks = Vec::new();
    for c in 0..clients {
        let client = cluster.client_from(
            &nodes_in(region),
            writer_address(cluster, region),
            CLIENT_TIMEOUT,
        );
        let key = key.clone();
        let name = format!("{region}-{clients}-{c}");
        tasks.push(tokio::spawn(async move {
            let mut latencies = Vec::new();
            let mut acks = Vec::new();
            for n in 0..=per_client {
                let record = records::signed(
                    records::mutation(SYSTEM, &format!("{name}-{n}"), n as u64 + 1),
                    &key,
                );
                let start = Instant::now();
                let submitted = client
                    .submit(std::slice::from_ref(&record))
                    .await
                    .unwrap_or_else(|e| panic!("{name}: record {n} is not acknowledged: {e}"));
                let at = Instant::now();
                if n > 0 {
                    latencies.push(at - start);
                }
                acks.push(Ack {
                    index: submitted[0].index,
                    leaf_hash: submitted[0].leaf_hash,
                    record: record.bytes.clone(),
                    at,
                });
            }
            (latencies, acks)
        }));
    }
    let mut latencies = Vec::new();
    let mut acks = Vec::new();
    for task in tasks {
        let (l, a) = task.await.expect("a measuring client does not panic");
        latencies.extend(l);
        acks.extend(a);
    }
    latencies.sort();
    (latencies, acks)
}

/// A client of `region` that knows every node (it must find a leader in another region when
/// its own is lost) and keeps writing.
fn regional_writer(cluster: &TestCluster, region: Region, key: &NoteSigner) -> Writer {
    let client = cluster.client_from(&NODES, writer_address(cluster, region), CLIENT_TIMEOUT);
    Writer::spawn(
        client,
        key.clone(),
        SYSTEM,
        &format!("writer-{region}-{}", rand::random::<u32>()),
        Duration::ZERO,
    )
}

/// Waits until each writer has `count` acknowledgements after `t`; returns the earliest first
/// acknowledgement after `t` among them.
async fn writes_go_on(writers: &[(Region, Writer)], t: Instant, count: usize) -> Instant {
    for (_, writer) in writers {
        writer
            .wait_acked_after(t, count, Duration::from_secs(90))
            .await;
    }
    writers
        .iter()
        .filter_map(|(_, w)| w.first_ack_after(t))
        .min()
        .expect("each writer acknowledged records after t")
}

/// The longest time without an acknowledgement among `acks` (from all writers) that ends after
/// `t`.
fn longest_gap(acks: &[Ack], t: Instant) -> Duration {
    let mut times: Vec<Instant> = acks.iter().map(|a| a.at).collect();
    times.sort();
    times
        .windows(2)
        .filter(|w| w[1] > t)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default()
}

/// Waits until every node of `among` names the same leader, one of `among`.
async fn leader_among(cluster: &TestCluster, among: &[u64], timeout: Duration) -> u64 {
    wait::until("a leader among the survivors", timeout, || async {
        let mut seen = Vec::new();
        for id in among {
            let s = cluster.status(*id).await?;
            seen.push((s.node_id, s.leader_id, s.role));
        }
        let leader = seen[0].1;
        if among.contains(&leader)
            && seen.iter().all(|(_, l, _)| *l == leader)
            && seen.iter().any(|(n, _, r)| *n == leader && r == "leader")
        {
            Ok(leader)
        } else {
            Err(format!("(node, leader, role): {seen:?}"))
        }
    })
    .await
}

/// Every acknowledged record is on node `id` at its acknowledged index.
async fn assert_acks_on(cluster: &TestCluster, id: u64, acks: &[Ack]) {
    for ack in acks {
        let leaf = cluster.entry(id, ack.index).await.unwrap_or_else(|e| {
            panic!(
                "node {id} cannot serve acknowledged leaf {}: {:?} {}",
                ack.index,
                e.code(),
                e.message()
            )
        });
        assert_eq!(
            leaf.leaf_hash().0,
            ack.leaf_hash,
            "node {id}: leaf {} is not the acknowledged leaf",
            ack.index
        );
        assert_eq!(leaf.record, ack.record, "node {id}: leaf {}", ack.index);
    }
}

/// Region `region`'s reader, which knows only the region's nodes and connects from the region,
/// gets a receipt for each of `acks`, verified against the trust policy by the client library and
/// again offline here. Returns each read's latency.
async fn read_locally(cluster: &TestCluster, region: Region, acks: &[Ack]) -> Vec<Duration> {
    let reader: LedgerClient = cluster.client_from(
        &nodes_in(region),
        reader_address(cluster, region),
        CLIENT_TIMEOUT,
    );
    let policy = cluster.policy();
    let mut latencies = Vec::new();
    for ack in acks {
        let start = Instant::now();
        let (receipt, summary) = reader
            .receipt(ack.index, Duration::from_secs(10))
            .await
            .unwrap_or_else(|e| {
                panic!(
                    "region {region}: no verified receipt for leaf {}: {e}",
                    ack.index
                )
            });
        latencies.push(start.elapsed());
        assert_eq!(summary.leaf_hash.0, ack.leaf_hash, "leaf {}", ack.index);
        let offline = receipt
            .verify(&policy)
            .unwrap_or_else(|e| panic!("the receipt for leaf {} fails offline: {e}", ack.index));
        assert!(
            offline.checkpoint.signers.len() >= policy.threshold,
            "checkpoint cosigned by {:?}, threshold {}",
            offline.checkpoint.signers,
            policy.threshold
        );
    }
    latencies.sort();
    latencies
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_regions_commit_read_lose_a_region_and_heal() {
    let started = Instant::now();
    let form = form();
    eprintln!("form: {form:?}");
    let mut cluster = TestCluster::with_hosts(5);
    configure_like_multi_region_5(&cluster);
    let topology = topology(&cluster);
    let node_ips: Vec<Ipv4Addr> = NODES.iter().map(|id| cluster.host_ip(*id)).collect();
    let wan = Wan::start(topology.clone(), &node_ips).await;
    cluster.start_all();
    let leader = cluster.wait_leader(&NODES, Duration::from_secs(60)).await;
    eprintln!(
        "node {leader} (region {}) leads, {:.1} s after start",
        region_of(leader),
        started.elapsed().as_secs_f64()
    );
    let key = writer_key("multi-region");
    cluster.grant(SYSTEM, &key).await;
    let mut all_acks: Vec<Ack> = Vec::new();

    // 1. Commit latency per region, 1 and 16 clients.
    let quorum = quorum_rtt(&topology, leader);
    let mut table = Vec::new();
    for region in REGIONS {
        let to_leader = topology.round_trip(region, region_of(leader));
        let floor = to_leader + quorum;
        for (clients, per_client) in [
            (1, form.single_client_records),
            (16, form.per_client_records),
        ] {
            let t = Instant::now();
            let (latencies, acks) = measure(&cluster, region, clients, per_client, &key).await;
            let elapsed = t.elapsed();
            let line = format!(
                "region {region}, {clients:>2} client(s): p50 {:6.1} ms  p99 {:6.1} ms  min {:6.1} ms  \
                 (n={}, {:.0} records/s); floor = client-leader RTT {:.0} ms + leader's quorum RTT {:.0} ms = {:.0} ms",
                ms(percentile(&latencies, 50)),
                ms(percentile(&latencies, 99)),
                ms(latencies[0]),
                latencies.len(),
                acks.len() as f64 / elapsed.as_secs_f64(),
                ms(to_leader),
                ms(quorum),
                ms(floor),
            );
            eprintln!("{line}");
            table.push(line);
            assert!(
                latencies[0] >= floor,
                "region {region}: a commit took {:?}, less than the simulated floor {floor:?}: \
                 is the relay in the path?",
                latencies[0]
            );
            all_acks.extend(acks);
        }
    }

    // 2. Local reads with receipts verified against quorum-cosigned checkpoints.
    let step = (all_acks.len() / form.reads_per_region).max(1);
    let sample: Vec<Ack> = all_acks
        .iter()
        .step_by(step)
        .take(form.reads_per_region)
        .cloned()
        .collect();
    for region in REGIONS {
        let latencies = read_locally(&cluster, region, &sample).await;
        let line = format!(
            "region {region} local reads: {} receipts verified, p50 {:.1} ms, p99 {:.1} ms",
            latencies.len(),
            ms(percentile(&latencies, 50)),
            ms(percentile(&latencies, 99)),
        );
        eprintln!("{line}");
        table.push(line);
        let reader = reader_address(&cluster, region);
        let local: Vec<Ipv4Addr> = nodes_in(region)
            .iter()
            .map(|id| cluster.host_ip(*id))
            .collect();
        let went_to: Vec<Ipv4Addr> = wan
            .accepted()
            .iter()
            .filter(|c| c.source == reader)
            .map(|c| *c.destination.ip())
            .collect();
        assert!(
            !went_to.is_empty(),
            "region {region}'s reader made no connection through the relay"
        );
        assert!(
            went_to.iter().all(|ip| local.contains(ip)),
            "region {region}'s reader left its region: it connected to {went_to:?}"
        );
    }

    // 3. A two-node region without the leader is cut off; the others keep writing.
    let cut = if region_of(leader) == B { A } else { B };
    let writing: Vec<Region> = REGIONS.iter().copied().filter(|r| *r != cut).collect();
    let writers: Vec<(Region, Writer)> = writing
        .iter()
        .map(|r| (*r, regional_writer(&cluster, *r, &key)))
        .collect();
    let before = Instant::now();
    writes_go_on(&writers, before, 3).await;
    let t0 = Instant::now();
    wan.isolate(cut);
    let first = writes_go_on(&writers, t0, form.writes_while_lost).await;
    let during_cut = Instant::now();
    let acked_during_cut: usize = writers.iter().map(|(_, w)| w.acked_after(t0)).sum();
    let leader_now = cluster.status(leader).await.map(|s| s.leader_id);
    let mut phase_acks = Vec::new();
    let mut intervals = Vec::new();
    for (_, writer) in writers {
        let acked = writer.stop().await.acked;
        let times: Vec<Instant> = acked.iter().map(|a| a.at).filter(|at| *at > t0).collect();
        intervals.extend(times.windows(2).map(|w| w[1] - w[0]));
        phase_acks.extend(acked);
    }
    intervals.sort();
    let newest = phase_acks.iter().map(|a| a.index).max().unwrap_or(0);
    // The cut region really was cut: it lacks what the others acknowledged meanwhile.
    for id in nodes_in(cut) {
        let s = cluster
            .status(id)
            .await
            .expect("a cut-off node still answers the test");
        assert!(
            s.tree_size <= newest,
            "node {id} in the cut-off region {cut} has {} leaves, acknowledged leaf {newest} among them",
            s.tree_size
        );
    }
    let cut_line = format!(
        "region {cut} cut off: first write acknowledged {:.0} ms after the cut; {acked_during_cut} \
         acknowledged in {:.1} s while cut, one writer's commits {:.0} ms apart at p50 (the quorum \
         now needs the far region); leader {leader_now:?} (was node {leader}); longest time \
         without an acknowledgement {:.2} s",
        ms(first - t0),
        (during_cut - t0).as_secs_f64(),
        ms(percentile(&intervals, 50)),
        longest_gap(&phase_acks, t0).as_secs_f64(),
    );
    eprintln!("{cut_line}");
    table.push(cut_line);
    all_acks.extend(phase_acks);
    wan.heal();
    let healed = Instant::now();
    let status = cluster
        .wait_converged(&NODES, Duration::from_secs(90))
        .await;
    let catch_line = format!(
        "region {cut} healed: all five nodes at tree size {} with one root {:.1} s later",
        status.tree_size,
        healed.elapsed().as_secs_f64()
    );
    eprintln!("{catch_line}");
    table.push(catch_line);

    // 4. The leader's region is lost: SIGKILL all its nodes while it leads.
    let leader = cluster.wait_leader(&NODES, Duration::from_secs(60)).await;
    let lost = region_of(leader);
    let survivors: Vec<u64> = NODES
        .iter()
        .copied()
        .filter(|id| region_of(*id) != lost)
        .collect();
    let writing: Vec<Region> = REGIONS.iter().copied().filter(|r| *r != lost).collect();
    let writers: Vec<(Region, Writer)> = writing
        .iter()
        .map(|r| (*r, regional_writer(&cluster, *r, &key)))
        .collect();
    let before = Instant::now();
    writes_go_on(&writers, before, 3).await;
    let t0 = Instant::now();
    for id in nodes_in(lost) {
        cluster.kill9(id);
    }
    let new_leader = leader_among(&cluster, &survivors, Duration::from_secs(60)).await;
    let elected = Instant::now();
    // Acknowledgements between the kill and the election answer writes the old leader had
    // already committed; recovery is the first one the new leader gives.
    let first = writes_go_on(&writers, elected, form.writes_while_lost).await;
    let acked_after_loss: usize = writers.iter().map(|(_, w)| w.acked_after(t0)).sum();
    let mut failures = 0;
    let mut phase_acks = Vec::new();
    for (_, writer) in writers {
        let log = writer.stop().await;
        failures += log.failures.len();
        phase_acks.extend(log.acked);
    }
    let loss_line = format!(
        "region {lost} (leader node {leader}) SIGKILLed: node {new_leader} (region {}) leads \
         {:.2} s later; writes acknowledged again {:.2} s after the kill (longest time without \
         an acknowledgement {:.2} s); {acked_after_loss} acknowledged without region {lost}, \
         {failures} submissions failed",
        region_of(new_leader),
        (elected - t0).as_secs_f64(),
        (first - t0).as_secs_f64(),
        longest_gap(&phase_acks, t0).as_secs_f64(),
    );
    eprintln!("{loss_line}");
    table.push(loss_line);
    all_acks.extend(phase_acks);
    for id in &survivors {
        assert_acks_on(&cluster, *id, &all_acks).await;
    }

    // 5. The lost region comes back and catches up; nothing acknowledged is missing anywhere.
    let back = Instant::now();
    for id in nodes_in(lost) {
        cluster.start(id);
    }
    let status = cluster
        .wait_converged(&NODES, Duration::from_secs(120))
        .await;
    let back_line = format!(
        "region {lost} restarted: all five nodes at tree size {} with one root {:.1} s later",
        status.tree_size,
        back.elapsed().as_secs_f64()
    );
    eprintln!("{back_line}");
    table.push(back_line);
    for id in NODES {
        assert_acks_on(&cluster, id, &all_acks).await;
    }
    let max_index = all_acks.iter().map(|a| a.index).max().unwrap_or(0);
    assert!(
        status.tree_size > max_index,
        "tree size {} does not cover acknowledged leaf {max_index}",
        status.tree_size
    );
    cluster.assert_running(&NODES);

    eprintln!(
        "\n== multi-region summary ({} acknowledged records checked on all five nodes; {:.0} s)\n{}",
        all_acks.len(),
        started.elapsed().as_secs_f64(),
        table.join("\n")
    );
}
