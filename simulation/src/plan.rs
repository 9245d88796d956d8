//! The fault plan: every fault of a run, drawn from the seed before the run starts (so the plan
//! is printed in the trace and a reader sees what the run was about).

use std::time::Duration;

use madsim::rand::{thread_rng, Rng};

use crate::cluster::ServerTuning;

/// Which servers a crash takes down.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Targets {
    Nodes(Vec<usize>),
    /// Whoever leads when the fault starts.
    Leader,
}

/// One kind of fault.
#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    /// The servers in `side` are cut from the others, both directions.
    Partition { side: Vec<usize> },
    /// The leader (when the fault starts) is cut from every other server, both directions.
    /// Clients can still reach it.
    IsolateLeader,
    /// Asymmetric: only the links into `node` (inbound) or only those out of it are cut.
    OneWay { node: usize, inbound: bool },
    /// A partition of `side` that opens and closes every `period`.
    Flapping { side: Vec<usize>, period: Duration },
    /// Messages are lost with this probability (retransmitted by the simulated TCP later).
    PacketLoss { rate: f64 },
    /// Message latency up to `max`.
    Latency { max: Duration },
    /// Power loss; each crashed store keeps `keep_unsynced` of its unsynced writes.
    Crash {
        targets: Targets,
        keep_unsynced: usize,
    },
    /// The process stops being scheduled (a long GC pause, a stopped VM).
    Pause { node: usize },
    /// The node's wall clock jumps.
    ClockJump { node: usize, delta_nanos: i64 },
    /// One stored bit of `node` flips (in a ledger value or a Raft log entry).
    Corrupt { node: usize },
}

/// A fault with its start and duration (instant faults ignore the duration).
#[derive(Clone, Debug, PartialEq)]
pub struct PlannedFault {
    pub start: Duration,
    pub duration: Duration,
    pub fault: Fault,
}

/// A membership change during load: add the spare as a learner, promote it, remove `remove`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MembershipChange {
    pub at: Duration,
    /// Raft id of the voter to remove.
    pub remove: u64,
}

/// Everything drawn from the seed for one run.
#[derive(Clone, Debug)]
pub struct Plan {
    pub faults: Vec<PlannedFault>,
    pub membership: Option<MembershipChange>,
    /// Initial clock skew of each server, ns.
    pub skews: Vec<i64>,
    pub tuning: ServerTuning,
    pub clients: usize,
}

fn pick_side(rng: &mut impl Rng, servers: usize) -> Vec<usize> {
    // A non-empty proper subset: sometimes a minority, sometimes a majority.
    loop {
        let side: Vec<usize> = (0..servers).filter(|_| rng.gen_bool(0.4)).collect();
        if !side.is_empty() && side.len() < servers {
            return side;
        }
    }
}

fn pick_nodes(rng: &mut impl Rng, servers: usize, count: usize) -> Vec<usize> {
    let mut all: Vec<usize> = (0..servers).collect();
    let mut out = Vec::new();
    while out.len() < count && !all.is_empty() {
        let i = rng.gen_range(0..all.len());
        out.push(all.remove(i));
    }
    out.sort_unstable();
    out
}

fn millis(rng: &mut impl Rng, lo: u64, hi: u64) -> Duration {
    Duration::from_millis(rng.gen_range(lo..hi))
}

impl Plan {
    /// Draws a plan for `voters` voters plus one spare over a safety phase of `safety`.
    pub fn draw(voters: usize, safety: Duration) -> Plan {
        let mut rng = thread_rng();
        let servers = voters + 1;
        let safety_ms = safety.as_millis() as u64;
        let count = rng.gen_range(4..14);
        let mut faults = Vec::with_capacity(count + 1);
        for _ in 0..count {
            let start = millis(&mut rng, 500, safety_ms.saturating_sub(500).max(501));
            let kind = rng.gen_range(0..100u32);
            let (fault, duration) = match kind {
                0..=11 => (
                    Fault::Partition {
                        side: pick_side(&mut rng, servers),
                    },
                    millis(&mut rng, 200, 5000),
                ),
                12..=19 => (Fault::IsolateLeader, millis(&mut rng, 300, 5000)),
                20..=27 => (
                    Fault::OneWay {
                        node: rng.gen_range(0..servers),
                        inbound: rng.gen_bool(0.5),
                    },
                    millis(&mut rng, 200, 4000),
                ),
                28..=33 => (
                    Fault::Flapping {
                        side: pick_side(&mut rng, servers),
                        period: millis(&mut rng, 50, 1000),
                    },
                    millis(&mut rng, 1000, 6000),
                ),
                34..=40 => (
                    Fault::PacketLoss {
                        rate: rng.gen_range(0.02..0.4),
                    },
                    millis(&mut rng, 500, 6000),
                ),
                41..=47 => (
                    Fault::Latency {
                        max: millis(&mut rng, 20, 800),
                    },
                    millis(&mut rng, 500, 6000),
                ),
                48..=73 => {
                    // Power losses: often one server, sometimes a majority or all at once (a
                    // rack or a data centre), which only durable acknowledgments survive.
                    let targets = match rng.gen_range(0..10u32) {
                        0..=3 => Targets::Nodes(pick_nodes(&mut rng, servers, 1)),
                        4..=5 => Targets::Leader,
                        6..=7 => Targets::Nodes(pick_nodes(&mut rng, voters, voters / 2 + 1)),
                        _ => Targets::Nodes((0..servers).collect()),
                    };
                    let keep_unsynced = if rng.gen_bool(0.3) {
                        rng.gen_range(1..8)
                    } else {
                        0
                    };
                    (
                        Fault::Crash {
                            targets,
                            keep_unsynced,
                        },
                        millis(&mut rng, 50, 4000),
                    )
                }
                74..=83 => (
                    Fault::Pause {
                        node: rng.gen_range(0..servers),
                    },
                    millis(&mut rng, 100, 4000),
                ),
                _ => {
                    let magnitude = rng.gen_range(1_000_000i64..30_000_000_000);
                    let delta_nanos = if rng.gen_bool(0.5) {
                        magnitude
                    } else {
                        -magnitude
                    };
                    (
                        Fault::ClockJump {
                            node: rng.gen_range(0..servers),
                            delta_nanos,
                        },
                        Duration::ZERO,
                    )
                }
            };
            faults.push(PlannedFault {
                start,
                duration,
                fault,
            });
        }
        if rng.gen_bool(0.35) {
            faults.push(PlannedFault {
                start: millis(&mut rng, 1000, safety_ms.max(1001)),
                duration: Duration::ZERO,
                fault: Fault::Corrupt {
                    node: rng.gen_range(0..servers),
                },
            });
        }
        faults.sort_by_key(|f| f.start);
        let membership = rng.gen_bool(0.6).then(|| MembershipChange {
            at: millis(&mut rng, 1000, (safety_ms * 3 / 5).max(1001)),
            remove: rng.gen_range(1..=voters as u64),
        });
        let skews = (0..servers)
            .map(|_| {
                if rng.gen_bool(0.5) {
                    0
                } else {
                    rng.gen_range(-2_000_000_000i64..2_000_000_000)
                }
            })
            .collect();
        let tuning = ServerTuning {
            snapshot_every_entries: rng.gen_range(20..400),
            sync_delay: (0..servers)
                .map(|_| Duration::from_micros(rng.gen_range(0..3000)))
                .collect(),
        };
        Plan {
            faults,
            membership,
            skews,
            tuning,
            clients: rng.gen_range(1..4),
        }
    }

    /// The plan, one line per item, for the trace.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "plan: {} clients, snapshot every {} entries, sync delays {:?}, skews {:?}",
            self.clients, self.tuning.snapshot_every_entries, self.tuning.sync_delay, self.skews
        )];
        if let Some(m) = &self.membership {
            lines.push(format!(
                "plan: at {:.3}s add the spare, promote it, remove node-{}",
                m.at.as_secs_f64(),
                m.remove
            ));
        }
        for f in &self.faults {
            lines.push(format!(
                "plan: at {:.3}s for {:.3}s: {:?}",
                f.start.as_secs_f64(),
                f.duration.as_secs_f64(),
                f.fault
            ));
        }
        lines
    }
}
