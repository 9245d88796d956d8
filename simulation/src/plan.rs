//! The fault plan: every fault of a run, drawn from the seed before the run starts (so the plan
//! is printed in the trace and a reader sees what the run was about).

use std::time::Duration;

use madsim::rand::{thread_rng, Rng};

use stateledger_node::config::RaftSection;

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
    /// Power loss of `node`, which then loses part of its *synced* state while it is down, and
    /// restarts after the duration.
    LoseState { node: usize, loss: StateLoss },
    /// Issue 11's first failure, with the roles chosen when it starts: a minority that holds
    /// neither `node` nor (if it can) the leader is cut off for `lag` while the rest acknowledge
    /// records; then the rest lose power at once (a rack), `node` loses state while down and
    /// comes back after the fault's duration, when the minority is back too, and the others
    /// `others_down` after the power loss. Until then `node` and the minority could form a
    /// majority without the records only the others hold.
    RackLoss {
        node: usize,
        loss: StateLoss,
        lag: Duration,
        others_down: Duration,
    },
    /// The harness keeps a copy of `node`'s durable storage (both of them), for a later
    /// [`StateLoss::LogRolledBack`] or [`StateLoss::LedgerRolledBack`].
    TakeCopy { node: usize },
    /// The disk of `targets` (resolved when the fault starts) syncs slowly: every fsync takes
    /// `sync_delay` (a disk latency spike). A leader then replicates long before its own log is
    /// durable, and a crash meanwhile loses entries a quorum of followers holds.
    SlowDisk {
        targets: Targets,
        sync_delay: Duration,
    },
    /// A crash timed by what the node does: while the fault lasts, the first time `targets`
    /// (resolved when it starts) grants its Raft vote (`on: Trigger::Vote`), appends to its log
    /// (`Trigger::Append`) or installs a snapshot, it loses power `after` that, keeping
    /// none of its unsynced writes, and restarts `down` later. These are the windows in which a
    /// vote or an acknowledgement that was sent but not made durable is lost.
    CrashOn {
        targets: Targets,
        on: Trigger,
        /// How long after the trigger the power goes (0: at once).
        after: Duration,
        down: Duration,
    },
}

/// What a [`Fault::CrashOn`] waits for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trigger {
    /// The node granted its Raft vote to another candidate. Often the leader that vote helps
    /// elect is then cut off for a while.
    Vote,
    /// The node's last log index grew.
    Append,
    /// The node installed a snapshot from the leader (its log is purged behind it soon after).
    Snapshot,
}

/// What a node loses of its synced state (a disk, a file system or an operator at fault). Each
/// is one the node must notice or survive on its own (docs/OPERATIONS.md, "Repairing a node").
/// A whole data directory rolled back to one consistent older copy is not drawn: no local check
/// can tell it from an intact older state, and the operator must run `stateledger node repair`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StateLoss {
    /// The Raft log file is deleted; its sync marker stays.
    LogFileDeleted,
    /// The Raft log's whole directory (file and sync marker) is gone.
    LogDirDeleted,
    /// The Raft log file is cut in the middle of its synced records.
    LogTruncated,
    /// The Raft log file is replaced by the copy of the last [`Fault::TakeCopy`]; its sync marker
    /// stays.
    LogRolledBack,
    /// The ledger's storage (sled) is gone.
    LedgerLost,
    /// The ledger's storage is replaced by the copy of the last [`Fault::TakeCopy`].
    LedgerRolledBack,
}

impl StateLoss {
    /// What is drawn, cuts and rollbacks twice as often: only the log's sync marker tells them
    /// from a torn tail.
    const DRAWN: [StateLoss; 8] = [
        StateLoss::LogFileDeleted,
        StateLoss::LogDirDeleted,
        StateLoss::LogTruncated,
        StateLoss::LogTruncated,
        StateLoss::LogRolledBack,
        StateLoss::LogRolledBack,
        StateLoss::LedgerLost,
        StateLoss::LedgerRolledBack,
    ];
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

/// The leader (half the time) or a random voter.
fn leader_or_voter(rng: &mut impl Rng, voters: usize) -> Targets {
    if rng.gen_bool(0.5) {
        Targets::Leader
    } else {
        Targets::Nodes(vec![rng.gen_range(0..voters)])
    }
}

/// Draws the crashes that aim at the narrow windows of a replicated log: right after a vote,
/// right after an append, after a snapshot install, and on a leader whose disk is slow (its log
/// lags what it replicated). True when it drew a crash after a snapshot install.
fn draw_timed_crashes(
    rng: &mut impl Rng,
    voters: usize,
    safety_ms: u64,
    few_kept: bool,
    faults: &mut Vec<PlannedFault>,
) -> bool {
    let mut on_install = false;
    for _ in 0..rng.gen_range(1..5) {
        let (on, targets, after) = match rng.gen_range(0..5u32) {
            // Votes change on followers and candidates: a leader's vote changes only when it
            // loses leadership.
            0..=1 => (
                Trigger::Vote,
                Targets::Nodes(vec![rng.gen_range(0..voters)]),
                Duration::ZERO,
            ),
            2..=3 => (
                Trigger::Append,
                leader_or_voter(rng, voters),
                Duration::ZERO,
            ),
            // Late enough that the purge behind the snapshot reached the log's disk (with the
            // next append), early enough that the ledger has not been synced again since (by
            // the next snapshot the node builds itself, 20-60 entries later). Only
            // where few entries are kept behind a snapshot: elsewhere nobody installs one.
            _ if few_kept => (
                Trigger::Snapshot,
                Targets::Nodes(vec![rng.gen_range(0..voters)]),
                millis(rng, 10, 150),
            ),
            _ => (
                Trigger::Append,
                leader_or_voter(rng, voters),
                Duration::ZERO,
            ),
        };
        let mut start = millis(rng, 500, safety_ms.saturating_sub(1000).max(501));
        if on == Trigger::Snapshot {
            on_install = true;
            // A node installs a snapshot when it comes back far behind: first it is down.
            let down = millis(rng, 2000, 7000);
            faults.push(PlannedFault {
                start,
                duration: down,
                fault: Fault::Crash {
                    targets: targets.clone(),
                    keep_unsynced: 0,
                },
            });
            start += down;
        }
        faults.push(PlannedFault {
            start,
            duration: millis(rng, 500, 8000),
            fault: Fault::CrashOn {
                targets,
                on,
                after,
                down: millis(rng, 50, 2000),
            },
        });
    }
    if rng.gen_bool(0.7) {
        let start = millis(rng, 500, safety_ms.saturating_sub(3000).max(501));
        let duration = millis(rng, 1000, 6000);
        let targets = if rng.gen_bool(0.7) {
            Targets::Leader
        } else {
            leader_or_voter(rng, voters)
        };
        faults.push(PlannedFault {
            start,
            duration,
            fault: Fault::SlowDisk {
                targets: targets.clone(),
                sync_delay: millis(rng, 5, 80),
            },
        });
        if rng.gen_bool(0.8) {
            // The slow node loses power while its log lags.
            faults.push(PlannedFault {
                start: start + millis(rng, 200, duration.as_millis() as u64),
                duration: millis(rng, 100, 3000),
                fault: Fault::Crash {
                    targets,
                    keep_unsynced: 0,
                },
            });
        }
    }
    on_install
}

/// How often a plan has state losses at all.
const STATE_LOSS_PROBABILITY: f64 = 0.7;

/// Draws up to `f` nodes that lose synced state (f = the failures the cluster tolerates, minus
/// a node whose bytes a [`Fault::Corrupt`] flips, which may repair too).
///
/// Never more than `f` nodes: a majority that may have forgotten what it acknowledged cannot
/// elect anyone safely, so such a cluster must stop for good, and the liveness phase could not
/// tell that from a bug.
fn draw_state_losses(
    rng: &mut impl Rng,
    voters: usize,
    safety_ms: u64,
    corrupted: Option<usize>,
    faults: &mut Vec<PlannedFault>,
) {
    let tolerated = (voters - 1) / 2;
    let mut victims: Vec<usize> = corrupted.into_iter().collect();
    let budget = tolerated.saturating_sub(victims.len());
    let count = if budget == 0 {
        // The corrupted node itself may also lose state (it repairs either way).
        usize::from(corrupted.is_some_and(|c| c < voters) && rng.gen_bool(0.5))
    } else {
        rng.gen_range(1..=budget)
    };
    let mut losses = Vec::new();
    while losses.len() < count {
        let node = if budget == 0 {
            match corrupted {
                Some(c) => c,
                None => return,
            }
        } else {
            let n = rng.gen_range(0..voters);
            if victims.contains(&n) {
                continue;
            }
            victims.push(n);
            n
        };
        losses.push(node);
    }
    for node in losses {
        let loss = StateLoss::DRAWN[rng.gen_range(0..StateLoss::DRAWN.len())];
        let start = millis(rng, 2000, safety_ms.saturating_sub(4000).max(2001));
        let down = millis(rng, 100, 2000);
        if matches!(loss, StateLoss::LogRolledBack | StateLoss::LedgerRolledBack) {
            // Old enough that the node synced (and its log purged) much since.
            faults.push(PlannedFault {
                start: start
                    .saturating_sub(millis(rng, 300, 8000))
                    .max(Duration::from_millis(500)),
                duration: Duration::ZERO,
                fault: Fault::TakeCopy { node },
            });
        }
        // A rolled-back ledger loses nothing Raft acknowledged: no rack around it.
        let fault = if loss != StateLoss::LedgerRolledBack && rng.gen_bool(0.6) {
            Fault::RackLoss {
                node,
                loss,
                lag: millis(rng, 300, 2500),
                // Long enough for an election (the leader lease plus an election timeout)
                // before the others are back.
                others_down: down + millis(rng, 2000, 6000),
            }
        } else {
            Fault::LoseState { node, loss }
        };
        faults.push(PlannedFault {
            start,
            duration: down,
            fault,
        });
    }
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
        let mut tuning = ServerTuning {
            snapshot_every_entries: rng.gen_range(20..400),
            logs_kept_after_snapshot: RaftSection::default().logs_kept_after_snapshot,
            sync_delay: (0..servers)
                .map(|_| Duration::from_micros(rng.gen_range(0..3000)))
                .collect(),
        };
        let clients = rng.gen_range(1..4);
        // Drawn last, so that the rest of a seed's plan is what it was before state losses
        // existed.
        let corrupted = faults.iter().find_map(|f| match f.fault {
            Fault::Corrupt { node } => Some(node),
            _ => None,
        });
        if rng.gen_bool(STATE_LOSS_PROBABILITY) {
            draw_state_losses(&mut rng, voters, safety_ms, corrupted, &mut faults);
        }
        // Often few entries kept behind a snapshot: the log is purged all the time, and
        // followers that fall behind catch up by snapshot.
        let few_kept = rng.gen_bool(0.6);
        if few_kept {
            tuning.logs_kept_after_snapshot = rng.gen_range(0..100);
        }
        if draw_timed_crashes(&mut rng, voters, safety_ms, few_kept, &mut faults) {
            // Snapshots often enough that a node back from being down installs one.
            tuning.snapshot_every_entries = rng.gen_range(20..60);
        }
        faults.sort_by_key(|f| f.start);
        Plan {
            faults,
            membership,
            skews,
            tuning,
            clients,
        }
    }

    /// The plan, one line per item, for the trace.
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![format!(
            "plan: {} clients, snapshot every {} entries keeping {} behind it, sync delays {:?}, skews {:?}",
            self.clients,
            self.tuning.snapshot_every_entries,
            self.tuning.logs_kept_after_snapshot,
            self.tuning.sync_delay,
            self.skews
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
