//! Applies the fault plan to the cluster as simulated time passes: starts each fault when due,
//! ends it after its duration, toggles flapping partitions, and keeps the network configuration
//! at the worst loss and latency currently active.

use std::time::Duration;

use madsim::net::NetSim;
use madsim::rand::{thread_rng, Rng};
use stateledger_node::store::wal::frame;
use stateledger_node::store::Tree;

use crate::cluster::Cluster;
use crate::plan::{Fault, PlannedFault, Targets, Trigger};
use crate::trace::Trace;

/// What a started fault holds, so ending it releases exactly that.
#[derive(Debug)]
enum Held {
    Links(Vec<(usize, usize)>),
    Crashed(Vec<usize>),
    Paused(usize),
    SlowDisk(Vec<usize>),
    Network,
    Flapping {
        links: Vec<(usize, usize)>,
        period: Duration,
        clogged: bool,
    },
}

#[derive(Debug)]
struct Active {
    start: Duration,
    end: Duration,
    fault: Fault,
    held: Held,
}

/// What an armed [`Fault::CrashOn`] last saw of its node.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Vote(openraft::Vote<u64>),
    Append(Option<u64>),
    /// (snapshot, last applied).
    Snapshot(Option<openraft::LogId<u64>>, Option<openraft::LogId<u64>>),
}

/// A [`Fault::CrashOn`] waiting for its trigger.
#[derive(Debug)]
struct Armed {
    until: Duration,
    node: usize,
    on: Trigger,
    after: Duration,
    down: Duration,
    fault: Fault,
    /// (incarnation, what it saw): a restart starts the comparison afresh.
    seen: Option<(u64, Seen)>,
}

/// See the module comment.
#[derive(Debug)]
pub struct FaultRunner {
    pending: Vec<PlannedFault>,
    active: Vec<Active>,
    armed: Vec<Armed>,
}

/// Every directed link between `side` and the other servers.
fn cut(side: &[usize], servers: usize) -> Vec<(usize, usize)> {
    let mut links = Vec::new();
    for a in side {
        for b in (0..servers).filter(|b| !side.contains(b)) {
            links.push((*a, b));
            links.push((b, *a));
        }
    }
    links
}

impl FaultRunner {
    pub fn new(faults: Vec<PlannedFault>) -> FaultRunner {
        let mut pending = faults;
        // Due faults are popped from the back.
        pending.sort_by(|a, b| b.start.cmp(&a.start));
        FaultRunner {
            pending,
            active: Vec::new(),
            armed: Vec::new(),
        }
    }

    /// True while a timed crash waits for its trigger: the harness then looks every
    /// millisecond, since the windows it aims at last a few.
    pub fn wants_fine_steps(&self) -> bool {
        !self.armed.is_empty()
    }

    /// Fires each armed crash whose node did what it waits for.
    fn check_armed(&mut self, now: Duration, cluster: &mut Cluster, trace: &Trace) {
        let mut i = 0;
        while i < self.armed.len() {
            let a = &mut self.armed[i];
            if now >= a.until {
                trace.log(format!("fault ends untriggered: {:?}", a.fault));
                self.armed.remove(i);
                continue;
            }
            let server = &cluster.servers[a.node];
            let Some(shared) = server.shared() else {
                i += 1;
                continue;
            };
            let m = shared.raft.metrics().borrow().clone();
            let now_seen = match a.on {
                Trigger::Vote => Seen::Vote(m.vote),
                Trigger::Append => Seen::Append(m.last_log_index),
                Trigger::Snapshot => Seen::Snapshot(m.snapshot, m.last_applied),
            };
            let incarnation = server.incarnation();
            let node_id = server.id;
            let fire = match &a.seen {
                Some((inc, seen)) if *inc == incarnation => {
                    *seen != now_seen
                        && match &now_seen {
                            // A vote granted to another candidate: the one whose loss lets a
                            // second leader be elected in the same term.
                            Seen::Vote(v) => {
                                !v.is_committed()
                                    && v.leader_id().voted_for().is_some_and(|c| c != node_id)
                            }
                            // Installed: a snapshot beyond what the node had applied (one it
                            // built never is).
                            Seen::Snapshot(snapshot, _) => match seen {
                                Seen::Snapshot(_, applied) => snapshot > applied,
                                _ => false,
                            },
                            Seen::Append(_) => true,
                        }
                }
                _ => false,
            };
            if !fire {
                a.seen = Some((incarnation, now_seen));
                i += 1;
                continue;
            }
            let a = self.armed.remove(i);
            if a.on == Trigger::Vote && thread_rng().gen_bool(0.6) {
                // The leader that vote may elect is then cut off, so that the others can elect
                // another one — in the same term, if the vote was forgotten.
                let start = now + Duration::from_millis(thread_rng().gen_range(50..400));
                self.pending.push(PlannedFault {
                    start,
                    duration: Duration::from_millis(thread_rng().gen_range(1000..5000)),
                    fault: Fault::IsolateLeader,
                });
                self.pending.sort_by(|a, b| b.start.cmp(&a.start));
            }
            let what = match a.on {
                Trigger::Vote => "it granted a vote",
                Trigger::Append => "it appended",
                Trigger::Snapshot => "it installed a snapshot",
            };
            if a.after.is_zero() {
                trace.log(format!(
                    "fault: {} lost power right after {what} ({now_seen:?})",
                    cluster.servers[a.node].name,
                ));
                cluster.crash(a.node, 0);
                self.active.push(Active {
                    start: now,
                    end: now + a.down,
                    fault: a.fault,
                    held: Held::Crashed(vec![a.node]),
                });
            } else {
                trace.log(format!(
                    "fault: {} loses power {}ms after {what} ({now_seen:?})",
                    cluster.servers[a.node].name,
                    a.after.as_millis()
                ));
                self.pending.push(PlannedFault {
                    start: now + a.after,
                    duration: a.down,
                    fault: Fault::Crash {
                        targets: Targets::Nodes(vec![a.node]),
                        keep_unsynced: 0,
                    },
                });
                self.pending.sort_by(|a, b| b.start.cmp(&a.start));
            }
        }
    }

    /// Starts and ends whatever is due at `now`.
    pub fn step(&mut self, now: Duration, cluster: &mut Cluster, trace: &Trace) {
        let mut i = 0;
        while i < self.active.len() {
            if self.active[i].end <= now {
                let a = self.active.remove(i);
                self.end(a, cluster, trace);
            } else {
                i += 1;
            }
        }
        while self.pending.last().is_some_and(|f| f.start <= now) {
            if let Some(f) = self.pending.pop() {
                self.begin(f, now, cluster, trace);
            }
        }
        self.check_armed(now, cluster, trace);
        for a in &mut self.active {
            if let Held::Flapping {
                links,
                period,
                clogged,
            } = &mut a.held
            {
                let phase =
                    (now.saturating_sub(a.start).as_millis() / period.as_millis().max(1)) % 2;
                let want = phase == 0;
                if want != *clogged {
                    for (from, to) in links.iter() {
                        if want {
                            cluster.clog(*from, *to);
                        } else {
                            cluster.unclog(*from, *to);
                        }
                    }
                    *clogged = want;
                }
            }
        }
    }

    /// Ends every active fault and drops the rest of the plan.
    pub fn end_all(&mut self, cluster: &mut Cluster, trace: &Trace) {
        self.pending.clear();
        self.armed.clear();
        for a in std::mem::take(&mut self.active) {
            self.end(a, cluster, trace);
        }
        self.apply_network();
    }

    fn begin(&mut self, f: PlannedFault, now: Duration, cluster: &mut Cluster, trace: &Trace) {
        let servers = cluster.servers.len();
        let held = match &f.fault {
            Fault::Partition { side } => {
                trace.log(format!("fault: partition {side:?} from the rest"));
                let links = cut(side, servers);
                for (a, b) in &links {
                    cluster.clog(*a, *b);
                }
                Held::Links(links)
            }
            Fault::IsolateLeader => {
                let Some(leader) = cluster.leader() else {
                    trace.log("fault: isolate leader: no leader now");
                    return;
                };
                trace.log(format!(
                    "fault: isolate leader {}",
                    cluster.servers[leader].name
                ));
                let links = cut(&[leader], servers);
                for (a, b) in &links {
                    cluster.clog(*a, *b);
                }
                Held::Links(links)
            }
            Fault::OneWay { node, inbound } => {
                let dir = if *inbound { "into" } else { "out of" };
                trace.log(format!(
                    "fault: links {dir} {} cut",
                    cluster.servers[*node].name
                ));
                let links: Vec<(usize, usize)> = (0..servers)
                    .filter(|o| o != node)
                    .map(|o| if *inbound { (o, *node) } else { (*node, o) })
                    .collect();
                for (a, b) in &links {
                    cluster.clog(*a, *b);
                }
                Held::Links(links)
            }
            Fault::Flapping { side, period } => {
                trace.log(format!(
                    "fault: flapping partition {side:?} every {}ms",
                    period.as_millis()
                ));
                Held::Flapping {
                    links: cut(side, servers),
                    period: *period,
                    clogged: false,
                }
            }
            Fault::PacketLoss { rate } => {
                trace.log(format!("fault: packet loss {rate:.2}"));
                Held::Network
            }
            Fault::Latency { max } => {
                trace.log(format!("fault: latency up to {}ms", max.as_millis()));
                Held::Network
            }
            Fault::Crash {
                targets,
                keep_unsynced,
            } => {
                let Some(nodes) = resolve(targets, cluster) else {
                    trace.log("fault: crash leader: no leader now");
                    return;
                };
                trace.log(format!(
                    "fault: power loss of {:?} keeping {keep_unsynced} unsynced writes",
                    nodes
                        .iter()
                        .map(|i| cluster.servers[*i].id)
                        .collect::<Vec<_>>()
                ));
                for n in &nodes {
                    cluster.crash(*n, *keep_unsynced);
                }
                Held::Crashed(nodes)
            }
            Fault::Pause { node } => {
                trace.log(format!("fault: pause {}", cluster.servers[*node].name));
                cluster.pause(*node);
                Held::Paused(*node)
            }
            Fault::ClockJump { node, delta_nanos } => {
                trace.log(format!(
                    "fault: clock of {} jumps {:+.3}s",
                    cluster.servers[*node].name,
                    *delta_nanos as f64 / 1e9
                ));
                cluster.servers[*node].clock.adjust(*delta_nanos);
                return;
            }
            Fault::Corrupt { node } => {
                corrupt(cluster, *node, trace);
                return;
            }
            Fault::LoseState { node, loss } => {
                trace.log(format!(
                    "fault: power loss of {} which then loses state: {loss:?}",
                    cluster.servers[*node].name
                ));
                cluster.crash(*node, 0);
                cluster.lose_state(*node, *loss);
                Held::Crashed(vec![*node])
            }
            Fault::TakeCopy { node } => {
                cluster.take_copy(*node);
                return;
            }
            Fault::RackLoss {
                node,
                loss,
                lag,
                others_down,
            } => {
                let voters = cluster.voter_indexes();
                let leader = cluster.leader();
                let mut rng = thread_rng();
                let mut candidates: Vec<usize> = voters
                    .iter()
                    .copied()
                    .filter(|v| v != node && Some(*v) != leader)
                    .collect();
                let mut behind = Vec::new();
                while behind.len() < (voters.len().saturating_sub(1)) / 2 && !candidates.is_empty()
                {
                    behind.push(candidates.remove(rng.gen_range(0..candidates.len())));
                }
                if behind.is_empty() || !voters.contains(node) {
                    trace.log(format!(
                        "fault: rack loss around {}: no minority to cut off; only the state loss",
                        cluster.servers[*node].name
                    ));
                    self.pending.push(PlannedFault {
                        start: now,
                        duration: f.duration,
                        fault: Fault::LoseState {
                            node: *node,
                            loss: *loss,
                        },
                    });
                    self.pending.sort_by(|a, b| b.start.cmp(&a.start));
                    return;
                }
                let rack: Vec<usize> = voters
                    .iter()
                    .copied()
                    .filter(|v| v != node && !behind.contains(v))
                    .collect();
                trace.log(format!(
                    "fault: rack loss: {:?} fall behind for {:.3}s, then {} and {:?} lose power and {} loses state ({loss:?})",
                    behind.iter().map(|i| cluster.servers[*i].id).collect::<Vec<_>>(),
                    lag.as_secs_f64(),
                    cluster.servers[*node].name,
                    rack.iter().map(|i| cluster.servers[*i].id).collect::<Vec<_>>(),
                    cluster.servers[*node].name,
                ));
                self.pending.push(PlannedFault {
                    start: now + *lag,
                    duration: f.duration,
                    fault: Fault::LoseState {
                        node: *node,
                        loss: *loss,
                    },
                });
                if !rack.is_empty() {
                    self.pending.push(PlannedFault {
                        start: now + *lag + Duration::from_millis(1),
                        duration: *others_down,
                        fault: Fault::Crash {
                            targets: Targets::Nodes(rack),
                            keep_unsynced: 0,
                        },
                    });
                }
                self.pending.sort_by(|a, b| b.start.cmp(&a.start));
                let links = cut(&behind, servers);
                for (a, b) in &links {
                    cluster.clog(*a, *b);
                }
                self.active.push(Active {
                    start: now,
                    end: now + *lag,
                    fault: Fault::Partition { side: behind },
                    held: Held::Links(links),
                });
                self.apply_network();
                return;
            }
            Fault::SlowDisk {
                targets,
                sync_delay,
            } => {
                let Some(nodes) = resolve(targets, cluster) else {
                    trace.log("fault: slow disk of the leader: no leader now");
                    return;
                };
                for n in &nodes {
                    trace.log(format!(
                        "fault: every fsync of {} takes {}ms",
                        cluster.servers[*n].name,
                        sync_delay.as_millis()
                    ));
                    cluster.set_sync_delay(*n, Some(*sync_delay));
                }
                Held::SlowDisk(nodes)
            }
            Fault::CrashOn {
                targets,
                on,
                after,
                down,
            } => {
                let Some(nodes) = resolve(targets, cluster) else {
                    trace.log("fault: crash the leader on a trigger: no leader now");
                    return;
                };
                for node in nodes {
                    trace.log(format!(
                        "fault: {} loses power the next time {} (for {:.3}s)",
                        cluster.servers[node].name,
                        match on {
                            Trigger::Vote => "it grants a vote",
                            Trigger::Append => "it appends",
                            Trigger::Snapshot => "it installs a snapshot",
                        },
                        f.duration.as_secs_f64()
                    ));
                    self.armed.push(Armed {
                        until: now + f.duration,
                        node,
                        on: *on,
                        after: *after,
                        down: *down,
                        fault: f.fault.clone(),
                        seen: None,
                    });
                }
                return;
            }
        };
        self.active.push(Active {
            start: now,
            end: now + f.duration,
            fault: f.fault,
            held,
        });
        self.apply_network();
    }

    fn end(&mut self, a: Active, cluster: &mut Cluster, trace: &Trace) {
        trace.log(format!("fault ends: {:?}", a.fault));
        match a.held {
            Held::Links(links) => {
                for (x, y) in links {
                    cluster.unclog(x, y);
                }
            }
            Held::Flapping { links, clogged, .. } => {
                if clogged {
                    for (x, y) in links {
                        cluster.unclog(x, y);
                    }
                }
            }
            Held::Crashed(nodes) => {
                for n in nodes {
                    cluster.release_crash(n);
                }
            }
            Held::Paused(n) => cluster.release_pause(n),
            Held::SlowDisk(nodes) => {
                for n in nodes {
                    cluster.set_sync_delay(n, None);
                }
            }
            Held::Network => {}
        }
        self.apply_network();
    }

    /// The worst loss and latency among active faults, or the defaults.
    fn apply_network(&self) {
        let mut config = madsim::net::Config::default();
        for a in &self.active {
            match &a.fault {
                Fault::PacketLoss { rate } => {
                    config.packet_loss_rate = config.packet_loss_rate.max(*rate);
                }
                Fault::Latency { max } => {
                    if *max > config.send_latency.end {
                        config.send_latency = config.send_latency.start..*max;
                    }
                }
                _ => {}
            }
        }
        NetSim::current().update_config(|c| *c = config);
    }
}

/// The servers `targets` names now (`None`: it names the leader and there is none).
fn resolve(targets: &Targets, cluster: &Cluster) -> Option<Vec<usize>> {
    match targets {
        Targets::Nodes(n) => Some(n.clone()),
        Targets::Leader => cluster.leader().map(|l| vec![l]),
    }
}

/// Flips one stored bit of `node`: in any value of the ledger tree (leaves, metadata, checkpoints,
/// whatever the layout keeps there) or inside a synced record of the Raft log file. The server is
/// marked corrupted first, so the invariants know what to expect.
fn corrupt(cluster: &mut Cluster, node: usize, trace: &Trace) {
    let server = &mut cluster.servers[node];
    let mut rng = thread_rng();
    let log_first = rng.gen_bool(0.3);
    for log in [log_first, !log_first] {
        if log {
            let Some(name) = server
                .log_dir
                .names()
                .into_iter()
                .find(|n| n.ends_with(".wal"))
            else {
                continue;
            };
            let bytes = server.log_dir.durable(&name).unwrap_or_default();
            let end = frame::recover(&bytes).valid_end;
            let start = frame::FILE_MAGIC.len();
            if end <= start {
                continue;
            }
            let offset = rng.gen_range(start..end);
            server.corrupted = true;
            server.log_dir.flip_bit(&name, offset, rng.gen_range(0..8));
            trace.log(format!(
                "fault: flip a bit of {} Raft log file {name} byte {offset}",
                server.name
            ));
            return;
        }
        let keys = server.kv.keys(Tree::Ledger);
        if keys.is_empty() {
            continue;
        }
        let key = &keys[rng.gen_range(0..keys.len())];
        let byte = rng.gen_range(0..4096);
        server.corrupted = true;
        server.kv.corrupt(Tree::Ledger, key, byte);
        trace.log(format!(
            "fault: flip a bit of {} tree ledger key {} byte {byte}",
            server.name,
            stateledger_node::store::describe_key(key)
        ));
        return;
    }
    trace.log(format!(
        "fault: nothing stored on {} to corrupt yet",
        server.name
    ));
}
