//! One run: build the cluster, run the safety phase (faults + workload + continuous checks),
//! heal, run the liveness phase, do the final checks, and report — or fail with the seed, the
//! evidence, the trace tail and the command that replays the run.

use std::collections::BTreeMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use madsim::runtime::{Handle, Runtime};
use stateledger_core::trust::TrustPolicy;
use tokio::sync::mpsc;

use crate::cluster::{client_ip, Cluster, ORIGIN};
use crate::faults::FaultRunner;
use crate::history::{SharedHistory, Violation};
use crate::invariants::{Checker, Ctx};
use crate::liveness::{self, EndCheckError, Milestones};
use crate::options::SimOptions;
use crate::plan::Plan;
use crate::trace::Trace;
use crate::workload::{self, NewMember, Shared};
use crate::world;

/// How often the checker runs.
const CHECK_EVERY: Duration = Duration::from_millis(200);
/// How often the harness wakes to apply faults.
const STEP: Duration = Duration::from_millis(50);
/// ... and how often while a crash waits for a node's vote or append (`Fault::CrashOn`).
const FINE_STEP: Duration = Duration::from_millis(1);
/// How often the trace records every server's state.
const SUMMARY_EVERY: Duration = Duration::from_secs(1);
/// Margin past both phases after which madsim itself stops a stuck run.
const TIME_LIMIT_MARGIN: Duration = Duration::from_secs(120);

/// What a passing run did.
#[derive(Clone, Debug)]
pub struct Report {
    pub trace_digest: String,
    pub trace_lines: usize,
    pub sim_time: Duration,
    pub acknowledged: usize,
    pub leaves_checked: u64,
    pub checkpoints_seen: usize,
    pub final_size: u64,
    pub milestones: Milestones,
    pub counters: BTreeMap<String, u64>,
}

/// Why a run failed.
#[derive(Clone, Debug)]
pub enum Failure {
    /// Every violation the failing check found (at least one).
    Violations(Vec<Violation>),
    Liveness(String),
    /// The node code (or the harness) panicked.
    Panic(String),
}

impl Failure {
    /// `violation`, `liveness` or `panic`.
    pub fn kind(&self) -> &'static str {
        match self {
            Failure::Violations(_) => "violation",
            Failure::Liveness(_) => "liveness",
            Failure::Panic(_) => "panic",
        }
    }

    /// The invariants violated (empty for other failures).
    pub fn invariants(&self) -> Vec<&'static str> {
        match self {
            Failure::Violations(vs) => {
                let mut names: Vec<&'static str> = vs.iter().map(|v| v.invariant).collect();
                names.dedup();
                names
            }
            _ => Vec::new(),
        }
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Violations(vs) => {
                write!(f, "invariant violated")?;
                for v in vs.iter().take(VIOLATIONS_SHOWN) {
                    write!(f, "\n  {v}")?;
                }
                if vs.len() > VIOLATIONS_SHOWN {
                    write!(f, "\n  ... and {} more", vs.len() - VIOLATIONS_SHOWN)?;
                }
                Ok(())
            }
            Failure::Liveness(m) => write!(f, "liveness: {m}"),
            Failure::Panic(m) => write!(f, "panic: {m}"),
        }
    }
}

/// A finished run.
#[derive(Debug)]
pub struct Outcome {
    pub options: SimOptions,
    pub result: Result<Report, Failure>,
    pub trace: Vec<String>,
    /// Real time the run took.
    pub real_time: Duration,
}

/// Violations a failure shows (one check can find hundreds, all saying the same).
const VIOLATIONS_SHOWN: usize = 12;
/// Trace lines a failure report shows.
const TRACE_TAIL: usize = 80;

impl Outcome {
    pub fn passed(&self) -> bool {
        self.result.is_ok()
    }

    /// One line for a passing run.
    pub fn summary(&self) -> String {
        match &self.result {
            Ok(r) => format!(
                "seed {} ({} nodes): ok in {:.2}s real, {:.1}s simulated: {} acknowledged, size {}, {} leaves checked, {} checkpoints seen, converged {:.2}s after healing, trace {}",
                self.options.seed,
                self.options.nodes,
                self.real_time.as_secs_f64(),
                r.sim_time.as_secs_f64(),
                r.acknowledged,
                r.final_size,
                r.leaves_checked,
                r.checkpoints_seen,
                r.milestones.converged.unwrap_or_default().as_secs_f64(),
                &r.trace_digest[..16]
            ),
            Err(f) => format!(
                "seed {} ({} nodes): FAILED: {f}",
                self.options.seed, self.options.nodes
            ),
        }
    }

    /// The failure report: seed, what broke, the trace tail and the replay command.
    pub fn failure_report(&self) -> Option<String> {
        let Err(failure) = &self.result else {
            return None;
        };
        let tail = self.trace.len().saturating_sub(TRACE_TAIL);
        Some(format!(
            "simulation FAILED for seed {} ({} nodes): {failure}\n--- last {} trace lines ---\n{}\n--- replay with ---\n{}\n",
            self.options.seed,
            self.options.nodes,
            self.trace.len() - tail,
            self.trace[tail..].join("\n"),
            self.options.replay_command()
        ))
    }
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "non-string panic payload".to_string()
    }
}

/// Stack of the thread a run executes on (openraft's futures are large).
const RUN_STACK_BYTES: usize = 32 * 1024 * 1024;

/// Runs one seed to the end in a fresh madsim runtime on a fresh thread of this process.
///
/// Deterministic only as the first run of its process: tokio seeds the per-thread generator
/// behind `select!` and `watch` from a process-wide counter, and std seeds `HashMap` keys once
/// per thread (madsim can fix them only on a thread that never made one); docs/SIMULATION.md,
/// "Determinism".
/// So every seed of a batch runs in a child process ([`crate::batch::run_isolated`]); this is
/// what that child (`stateledger-sim --child`) calls.
pub fn run_seed(options: &SimOptions) -> Outcome {
    let options = options.clone();
    std::thread::Builder::new()
        .name(format!("sim-seed-{}-{}", options.seed, options.nodes))
        .stack_size(RUN_STACK_BYTES)
        .spawn(move || run_seed_on_this_thread(&options))
        .expect("a thread for the run")
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
}

fn run_seed_on_this_thread(options: &SimOptions) -> Outcome {
    let started = std::time::Instant::now();
    let mut rt = Runtime::with_seed_and_config(options.seed, madsim::Config::default());
    rt.set_time_limit(options.safety + options.liveness_bound + TIME_LIMIT_MARGIN);
    let trace_out: Arc<Mutex<Option<Trace>>> = Arc::default();
    let result = catch_unwind(AssertUnwindSafe(|| {
        rt.block_on(simulate(options.clone(), trace_out.clone()))
    }));
    // Dropping a runtime after a panic may panic again; the run already failed.
    let _ = catch_unwind(AssertUnwindSafe(move || drop(rt)));
    let result = match result {
        Ok(r) => r,
        Err(payload) => Err(Failure::Panic(panic_text(payload.as_ref()))),
    };
    let trace = trace_out
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .map(Trace::lines)
        .unwrap_or_default();
    Outcome {
        options: options.clone(),
        result,
        trace,
        real_time: started.elapsed(),
    }
}

fn trust_policy(cluster: &Cluster) -> TrustPolicy {
    let keys = cluster
        .servers
        .iter()
        .map(|s| s.signer.verifier())
        .collect();
    TrustPolicy::new(ORIGIN, cluster.voters / 2 + 1, keys).expect("a valid policy")
}

/// Runs the checker once; the first violation fails the run.
fn check(
    checker: &mut Checker,
    cluster: &Cluster,
    history: &SharedHistory,
    policy: &TrustPolicy,
    trace: &Trace,
) -> Result<(), Failure> {
    let views = world::views(cluster);
    let h = history.lock();
    let ctx = Ctx {
        history: &h,
        policy,
        cluster,
        at: trace.elapsed(),
    };
    let violations = checker.check(&ctx, &views);
    if !violations.is_empty() {
        trace.log(format!("state at the failing check: {}", cluster.summary()));
    }
    if violations.is_empty() {
        Ok(())
    } else {
        Err(Failure::Violations(violations))
    }
}

async fn simulate(
    options: SimOptions,
    trace_out: Arc<Mutex<Option<Trace>>>,
) -> Result<Report, Failure> {
    let trace = Trace::new(options.echo_trace);
    *trace_out.lock().unwrap_or_else(|p| p.into_inner()) = Some(trace.clone());
    trace.log(format!(
        "seed {}: {} voters and a spare, safety {:.1}s, liveness bound {:.1}s, known-bad {:?}",
        options.seed,
        options.nodes,
        options.safety.as_secs_f64(),
        options.liveness_bound.as_secs_f64(),
        options.known_bad
    ));
    let plan = Plan::draw(options.nodes, options.safety);
    for line in plan.describe() {
        trace.log(line);
    }

    let mut cluster = Cluster::start(
        options.nodes,
        &plan.tuning,
        options.known_bad,
        trace.clone(),
    );
    for (s, skew) in cluster.servers.iter().zip(&plan.skews) {
        s.clock.adjust(*skew);
    }
    let policy = trust_policy(&cluster);
    let history = SharedHistory::default();
    let shared = Shared {
        history: history.clone(),
        trace: trace.clone(),
        policy: policy.clone(),
        public_addrs: cluster
            .servers
            .iter()
            .map(|s| s.public_addr.clone())
            .collect(),
        stop: Arc::new(AtomicBool::new(false)),
        granted: Arc::new(AtomicBool::new(false)),
        forge_signatures: options
            .known_bad
            .is_on(stateledger_node::known_bad::Switch::UnsignedRecordAccepted),
    };
    let clients = Handle::current()
        .create_node()
        .name("clients")
        .ip(client_ip())
        .build();
    let mut workers = vec![clients.spawn(workload::grant_writers(shared.clone()))];
    for c in 0..plan.clients {
        workers.push(clients.spawn(workload::client(shared.clone(), c)));
    }

    let (removed_tx, mut removed_rx) = mpsc::unbounded_channel::<u64>();
    let give_up = Arc::new(AtomicBool::new(false));
    let mut operator = None;
    let mut membership = plan.membership.clone();
    let mut checker = Checker::new();
    let mut faults = FaultRunner::new(plan.faults.clone());
    let mut next_check = Duration::ZERO;
    let mut next_summary = Duration::ZERO;

    let decommission = |cluster: &mut Cluster, removed_rx: &mut mpsc::UnboundedReceiver<u64>| {
        while let Ok(id) = removed_rx.try_recv() {
            if let Some(i) = cluster.index_of(id) {
                cluster.decommission(i);
            }
        }
    };

    // ---- safety phase: faults, load, continuous checks ----
    loop {
        let now = trace.elapsed();
        if now >= options.safety {
            break;
        }
        faults.step(now, &mut cluster, &trace);
        if membership.as_ref().is_some_and(|m| m.at <= now) {
            if let Some(m) = membership.take() {
                let spare = &cluster.servers[cluster.voters];
                let member = NewMember {
                    id: spare.id,
                    name: spare.name.clone(),
                    raft_addr: spare.cluster_addr.clone(),
                    public_addr: spare.public_addr.clone(),
                    checkpoint_key: spare.signer.verifier().to_text(),
                };
                let addrs = cluster
                    .servers
                    .iter()
                    .map(|s| s.cluster_addr.clone())
                    .collect();
                trace.log(format!(
                    "operator: membership change starts, removing node-{}",
                    m.remove
                ));
                operator = Some(clients.spawn(workload::change_membership(
                    trace.clone(),
                    addrs,
                    member,
                    m.remove,
                    give_up.clone(),
                    removed_tx.clone(),
                )));
            }
        }
        decommission(&mut cluster, &mut removed_rx);
        if now >= next_check {
            check(&mut checker, &cluster, &history, &policy, &trace)?;
            next_check = now + CHECK_EVERY;
        }
        if now >= next_summary {
            trace.log(format!("state: {}", cluster.summary()));
            next_summary = now + SUMMARY_EVERY;
        }
        let step = if faults.wants_fine_steps() {
            FINE_STEP
        } else {
            STEP
        };
        madsim::time::sleep(step).await;
    }

    // ---- heal ----
    trace.log("heal: every fault ends, crashed servers restart, paused ones resume");
    faults.end_all(&mut cluster, &trace);
    cluster.heal_network();
    cluster.heal_processes();
    shared.stop.store(true, Ordering::Relaxed);
    let healed_at = trace.elapsed();
    let deadline = healed_at + options.liveness_bound;

    // ---- liveness phase ----
    let probe = clients.spawn(workload::probe(shared.clone()));
    let mut probe = Some(probe);
    let mut probed: Option<(u64, [u8; 32])> = None;
    let mut end_check = None;
    let mut reconstructing = false;
    let mut milestones = Milestones::default();
    let mut waiting_for = String::from("nothing checked yet");
    let mut membership_done = operator.is_none();
    loop {
        let now = trace.elapsed();
        decommission(&mut cluster, &mut removed_rx);
        check(&mut checker, &cluster, &history, &policy, &trace)?;
        if now >= next_summary {
            trace.log(format!("state: {}", cluster.summary()));
            next_summary = now + SUMMARY_EVERY;
        }
        if probe.as_ref().is_some_and(|p| p.is_finished()) {
            if let Some(p) = probe.take() {
                probed = p.await.ok().flatten();
                milestones.write_acknowledged = Some(now - healed_at);
                trace.log(format!("liveness: probe write acknowledged at {probed:?}"));
            }
        }
        if !membership_done && operator.as_ref().is_some_and(|o| o.is_finished()) {
            membership_done = true;
            milestones.membership_done = Some(now - healed_at);
            decommission(&mut cluster, &mut removed_rx);
        }
        let status = (|| -> Result<Vec<usize>, String> {
            let (index, _) = probed.ok_or("the probe write is not acknowledged yet")?;
            if !membership_done {
                return Err("the membership change is not done yet".into());
            }
            let required = liveness::required_members(&cluster)?;
            let acked_end = history
                .lock()
                .acked
                .keys()
                .next_back()
                .map_or(0, |i| i + 1)
                .max(index + 1);
            liveness::converged(&cluster, &required, acked_end)?;
            Ok(required)
        })();
        match status {
            Ok(required) => {
                let (index, record) = probed.expect("converged implies the probe is acknowledged");
                if milestones.converged.is_none() {
                    milestones.converged = Some(now - healed_at);
                    trace.log(format!(
                        "liveness: members {:?} converged",
                        required
                            .iter()
                            .map(|i| cluster.servers[*i].id)
                            .collect::<Vec<_>>()
                    ));
                }
                let addrs: Vec<String> = required
                    .iter()
                    .map(|i| cluster.servers[*i].public_addr.clone())
                    .collect();
                match &end_check {
                    None if !reconstructing => {
                        end_check = Some(liveness::spawn_receipts(
                            &clients, &shared, addrs, index, record,
                        ));
                    }
                    None => {
                        let queries = liveness::reconstruction_queries(&cluster, &required);
                        end_check = Some(liveness::spawn_reconstruction(
                            &clients, &shared, addrs, queries,
                        ));
                    }
                    Some(task) if task.is_finished() => {
                        let result = end_check.take().expect("present").await;
                        match result {
                            Ok(Ok(lines)) => {
                                for line in lines {
                                    trace.log(line);
                                }
                                if reconstructing {
                                    let report = finish(
                                        &mut checker,
                                        &cluster,
                                        &history,
                                        &policy,
                                        &trace,
                                        &required,
                                        milestones.clone(),
                                    )?;
                                    give_up.store(true, Ordering::Relaxed);
                                    for w in workers.drain(..) {
                                        w.abort();
                                    }
                                    return Ok(report);
                                }
                                reconstructing = true;
                            }
                            Ok(Err(EndCheckError::NoAnswer(why))) => {
                                waiting_for = why;
                                trace.log(format!("liveness: {waiting_for}"));
                            }
                            Ok(Err(EndCheckError::Violation { invariant, message })) => {
                                return Err(Failure::Violations(vec![Violation {
                                    invariant,
                                    message,
                                    at: trace.elapsed(),
                                }]));
                            }
                            Err(e) => waiting_for = format!("end check task: {e}"),
                        }
                    }
                    Some(_) => {}
                }
            }
            Err(why) => {
                if why != waiting_for {
                    trace.log(format!("liveness: waiting: {why}"));
                }
                waiting_for = why;
            }
        }
        if now >= deadline {
            return Err(Failure::Liveness(format!(
                "not converged {:.1}s after healing: {waiting_for}; servers: {}",
                options.liveness_bound.as_secs_f64(),
                cluster.summary()
            )));
        }
        madsim::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The final check over every leaf of every node, then the report.
fn finish(
    checker: &mut Checker,
    cluster: &Cluster,
    history: &SharedHistory,
    policy: &TrustPolicy,
    trace: &Trace,
    required: &[usize],
    milestones: Milestones,
) -> Result<Report, Failure> {
    let views = world::views(cluster);
    let converged: Vec<_> = world::views(cluster)
        .into_iter()
        .filter(|v| required.contains(&v.index))
        .collect();
    let h = history.lock();
    let ctx = Ctx {
        history: &h,
        policy,
        cluster,
        at: trace.elapsed(),
    };
    let violations = checker.finish(&ctx, &views, &converged);
    if !violations.is_empty() {
        return Err(Failure::Violations(violations));
    }
    trace.log(format!("done: {:?}", h.counters));
    Ok(Report {
        trace_digest: trace.digest(),
        trace_lines: trace.lines().len(),
        sim_time: trace.elapsed(),
        acknowledged: h.acked.len(),
        leaves_checked: checker.leaves_checked,
        checkpoints_seen: h.checkpoints.len(),
        final_size: converged.first().map_or(0, |v| v.size),
        milestones,
        counters: h.counters.clone(),
    })
}
