//! `stateledger materialize`: S(T) restored into a directory and checked piece by piece against
//! the ledger — the six steps of reconstruction after the state proof is verified:
//!
//! 1. code (`code.rs`): the recorded commit as a detached git worktree;
//! 2. artifacts and lockfiles (`artifacts.rs`): found by digest, copied, hashed again;
//! 3. configuration (`config.rs`): every file and variable exactly as recorded, secrets only
//!    when supplied and matching their keyed digest;
//! 4. environment (`environment.rs`): a description and a runner, and what cannot be restored;
//! 5. mutations (`mutations.rs`): the ordered list, payloads by digest, the replay;
//! 6. nondeterminism (`nondeterminism.rs`): captures where a replay harness reads them.
//!
//! The report (`report.rs`) names every finding with its record's leaf and the proof behind it.
//! `out_dir.rs` keeps recorded names inside the output directory; `digest_index.rs` finds files
//! by content. Exit 0 only when everything was restored and verified; 1 with the report
//! otherwise; 2 when it cannot run.

mod artifacts;
mod code;
mod config;
mod digest_index;
mod environment;
mod mutations;
mod nondeterminism;
mod out_dir;
mod report;

use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context as _;
use stateledger_core::limits::DOCUMENT_BYTES_MAX;
use stateledger_core::state::{Finding as RuleFinding, StateProof, StateProofSummary};

use self::digest_index::DigestIndex;
use self::out_dir::OutDir;
use self::report::{
    CheckpointSummary, Evidence, LedgerReport, RestoreReport, Step, StepLog, StepReport,
    StepResult, PROOF_FILE, RESTORE_FORMAT,
};
use super::output::OutputArgs;
use super::profile::ProfileArgs;
use super::time::format_time;
use crate::errln;

pub const HELP: &str = "\
Examples:
  stateledger materialize --system orders-service --at 2026-11-25T10:00:00Z --out restore/ \\
      --repo ~/src/orders --artifacts dist/ --secrets secrets.json --salt-file orders.salt \\
      --payloads kafka-export/ --replay './reducer'
  stateledger materialize --proof proof.json --trust policy.json --out restore/ --repo .
  stateledger materialize --system orders-service --out restore/ --output json

The state proof is verified first (fetched from the cluster, or --proof checked offline against
--trust); then six steps restore into --out and check against the ledger: code (the recorded
commit as a detached `git worktree` of --repo), artifacts (found under --artifacts by digest,
never by name) and lockfiles (compared with the checkout), configuration (every file and
environment variable exactly as recorded; secrets only from --secrets, each checked against
its keyed digest with --salt-file, else a placeholder), environment (environment.json and
run.sh, and with --image-repo a Dockerfile pinned to the recorded image digest; the kernel
and the clock cannot be restored by a tool), mutations (the ordered list
with Kafka offsets and transaction ids; payloads found under --payloads by digest; --replay runs
the reducer of `stateledger replay` in --out and compares the recorded state digests) and
nondeterminism (seeds, clock readings and call results in nondeterminism/captures.json).

Output: --out/RESTORE.md and --out/restore.json (each step's result, every finding with its
record's leaf and the proof behind it; the proof is --out/state_proof.json); a summary on
standard output, or with --output json restore.json (docs/CLI.md).

Exit status:
  0  everything the ledger records was restored and verified
  1  something was not (the report names each finding: commit_missing, artifact_digest_mismatch,
     secret_mismatch, payload_missing, replay_divergence, ...), the ledger's verdict is
     impossible, or the state proof does not verify
  2  it could not run: --out is not empty, unreadable inputs, --repo is not a git repository,
     no answer within --timeout";

#[derive(clap::Args, Debug)]
#[command(group(
    clap::ArgGroup::new("source")
        .required(true)
        .multiple(true)
        .args(["system", "proof"])
))]
pub struct MaterializeArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// The system (asks the cluster); with --proof, the system the proof must be about.
    #[arg(long)]
    pub system: Option<String>,
    /// T: RFC 3339, nanoseconds since the Unix epoch, or "now" (the default, with --system);
    /// with --proof, the T the proof must be for.
    #[arg(long, value_parser = super::time::parse_time)]
    pub at: Option<u64>,
    /// Restore from a saved state proof offline instead of asking the cluster (needs --trust).
    #[arg(long, value_name = "FILE", requires = "trust")]
    pub proof: Option<PathBuf>,
    /// Trust policy to check --proof against.
    #[arg(long, value_name = "FILE", requires = "proof")]
    pub trust: Option<PathBuf>,
    /// Directory to restore into: new, or empty.
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// A git repository holding the recorded commit; it is checked out as a detached worktree.
    #[arg(long, value_name = "PATH")]
    pub repo: Option<PathBuf>,
    /// Directories searched for artifacts (and for config values recorded by digest only),
    /// matched by content digest. Repeatable; takes several directories.
    #[arg(long, value_name = "DIR", num_args = 1..)]
    pub artifacts: Vec<PathBuf>,
    /// Values of secret config entries: a JSON object from entry key to value (see
    /// docs/CLI.md); each is checked against its keyed digest with --salt-file.
    #[arg(long, value_name = "FILE", requires = "salt_file")]
    pub secrets: Option<PathBuf>,
    /// The configuration snapshot's salt (from `collect config --salt-out`), for --secrets.
    #[arg(long, value_name = "FILE", requires = "secrets")]
    pub salt_file: Option<PathBuf>,
    /// A directory holding the mutations' payloads (and external call responses), one file
    /// each under any name, matched by digest.
    #[arg(long, value_name = "DIR")]
    pub payloads: Option<PathBuf>,
    /// Replay the payloads through this reducer (`stateledger replay --help` has the protocol),
    /// run with `sh -c` in --out with the restored configuration's environment variables.
    #[arg(long, value_name = "REDUCER", requires = "payloads")]
    pub replay: Option<String>,
    /// Where the recorded container image can be pulled from, e.g. registry.example/orders.
    /// The ledger records the image's digest only; with this, environment/Dockerfile starts
    /// FROM NAME@<recorded digest>, the image pinned.
    #[arg(long, value_name = "NAME", value_parser = environment::parse_image_repo)]
    pub image_repo: Option<String>,
}

/// What was given besides the proof, checked before anything is written.
struct Inputs {
    artifacts: DigestIndex,
    payloads: Option<DigestIndex>,
    secrets: Option<config::Secrets>,
}

impl Inputs {
    fn load(args: &MaterializeArgs) -> anyhow::Result<Inputs> {
        OutDir::check_usable(&args.out)?;
        if let Some(repo) = &args.repo {
            code::check_repo(repo)?;
        }
        let artifacts = DigestIndex::new("--artifacts", &args.artifacts)?;
        let payloads = match &args.payloads {
            Some(dir) => Some(DigestIndex::new("--payloads", std::slice::from_ref(dir))?),
            None => None,
        };
        let secrets = match (&args.secrets, &args.salt_file) {
            (Some(s), Some(salt)) => Some(config::Secrets::load(s, salt)?),
            _ => None,
        };
        Ok(Inputs {
            artifacts,
            payloads,
            secrets,
        })
    }
}

/// The state proof, verified — or why not.
enum Obtained {
    Verified {
        proof: Box<StateProof>,
        summary: Box<StateProofSummary>,
        notes: Vec<String>,
    },
    Refused {
        system: String,
        at: u64,
        check: String,
        error: String,
    },
}

fn read_bounded(path: &Path) -> anyhow::Result<Vec<u8>> {
    let mut buf = Vec::new();
    std::fs::File::open(path)
        .and_then(|f| f.take(DOCUMENT_BYTES_MAX as u64 + 1).read_to_end(&mut buf))
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(buf)
}

fn obtain(args: &MaterializeArgs) -> anyhow::Result<Obtained> {
    if let (Some(path), Some(trust)) = (&args.proof, &args.trust) {
        let policy = super::verify::read_policy(trust)?;
        let proof: StateProof = serde_json::from_slice(&read_bounded(path)?)
            .with_context(|| format!("{} is not a state proof (--proof)", path.display()))?;
        let refuse = |check: &str, error: String| Obtained::Refused {
            system: proof.system.clone(),
            at: proof.at,
            check: check.to_string(),
            error,
        };
        let summary = match proof.verify(&policy) {
            Ok(s) => s,
            Err(e) => return Ok(refuse(e.check(), e.to_string())),
        };
        if let Some(system) = args.system.as_deref().filter(|s| *s != proof.system) {
            return Ok(refuse(
                "expectation",
                format!(
                    "the proof is about system {:?}, not {system:?} (--system)",
                    proof.system
                ),
            ));
        }
        if let Some(at) = args.at.filter(|at| *at != proof.at) {
            return Ok(refuse(
                "expectation",
                format!(
                    "the proof is for T = {}, not {} (--at)",
                    format_time(proof.at),
                    format_time(at)
                ),
            ));
        }
        return Ok(Obtained::Verified {
            proof: Box::new(proof),
            summary: Box::new(summary),
            notes: Vec::new(),
        });
    }
    let system = args
        .system
        .as_deref()
        .context("give --system (ask the cluster) or --proof with --trust (offline)")?;
    let at = match args.at {
        Some(at) => at,
        None => super::time::parse_time("now").map_err(anyhow::Error::msg)?,
    };
    let cluster = args.profile.connect()?;
    super::runtime()?.block_on(async {
        let (proof, summary) = super::reconstruct::fetch(&cluster, system, at).await?;
        let mut notes = Vec::new();
        if summary.state.records == 0 {
            notes.push(super::reconstruct::no_records_message(&cluster, system, at).await);
        }
        Ok(Obtained::Verified {
            proof: Box::new(proof),
            summary: Box::new(summary),
            notes,
        })
    })
}

pub fn run(args: MaterializeArgs) -> anyhow::Result<ExitCode> {
    let mut inputs = Inputs::load(&args)?;
    let obtained = obtain(&args)?;
    let out = OutDir::create(&args.out)?;
    let report = match obtained {
        Obtained::Refused {
            system,
            at,
            check,
            error,
        } => refused(&out, system, at, check, error),
        Obtained::Verified {
            proof,
            summary,
            notes,
        } => restore(&args, &mut inputs, &out, &proof, &summary, notes)?,
    };
    let mut json = serde_json::to_vec_pretty(&report)?;
    json.push(b'\n');
    out.write("restore.json", &json)?;
    out.write("RESTORE.md", report::markdown(&report).as_bytes())?;
    if args.output.is_json() {
        super::output::json(&report)?;
    } else {
        super::output::text(&report::text(&report))?;
        errln!(
            "wrote {} and {}",
            out.join("RESTORE.md").display(),
            out.join("restore.json").display()
        );
    }
    Ok(if report.is_exact() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// The report when the state proof does not verify: nothing is restored.
fn refused(out: &OutDir, system: String, at: u64, check: String, error: String) -> RestoreReport {
    RestoreReport {
        format: RESTORE_FORMAT,
        system,
        at,
        out: out.root().display().to_string(),
        result: "impossible",
        ledger: LedgerReport {
            verified: false,
            check: Some(check),
            error: Some(error),
            checkpoint: None,
            records: None,
            state_digest: None,
            verdict: None,
            notes: Vec::new(),
        },
        steps: Step::ALL
            .iter()
            .map(|&step| StepReport {
                step,
                result: StepResult::NotRun,
                summary: "not run: the state proof did not verify".into(),
                files: Vec::new(),
                notes: Vec::new(),
                findings: 0,
            })
            .collect(),
        findings: Vec::new(),
        replay: None,
    }
}

/// Which step a rule of the determinism contract concerns, and the leaf it names.
fn rule_place(f: &RuleFinding) -> (Step, Option<u64>) {
    match f {
        RuleFinding::MissingDimension { dimension } => (
            match dimension.as_str() {
                "code" => Step::Code,
                "config" => Step::Config,
                _ => Step::Environment,
            },
            None,
        ),
        RuleFinding::MutationGap { leaf_index, .. }
        | RuleFinding::MutationOrder { leaf_index, .. }
        | RuleFinding::StateDigestAhead { leaf_index, .. } => (Step::Mutations, Some(*leaf_index)),
        RuleFinding::UndeclaredNondeterminism { leaf_index, .. } => {
            (Step::Nondeterminism, Some(*leaf_index))
        }
        RuleFinding::ConflictingCapture { leaf_indexes, .. } => {
            (Step::Nondeterminism, leaf_indexes.first().copied())
        }
        RuleFinding::PartialConfig {
            code_leaf,
            config_leaf,
            ..
        } => (Step::Config, config_leaf.or(Some(*code_leaf))),
        RuleFinding::DirtyCode { leaf_index } => (Step::Code, Some(*leaf_index)),
        RuleFinding::ClockUnsynchronized { leaf_index, .. } => {
            (Step::Environment, Some(*leaf_index))
        }
        RuleFinding::MutationsWithoutPayloadDigest { first_leaf, .. } => {
            (Step::Mutations, Some(*first_leaf))
        }
        RuleFinding::ObservedTimeRegression {
            dimension,
            leaf_index,
        } => (
            if dimension.contains("nondeterminism") || dimension.contains("capture") {
                Step::Nondeterminism
            } else {
                Step::Mutations
            },
            Some(*leaf_index),
        ),
    }
}

fn restore(
    args: &MaterializeArgs,
    inputs: &mut Inputs,
    out: &OutDir,
    proof: &StateProof,
    summary: &StateProofSummary,
    ledger_notes: Vec<String>,
) -> anyhow::Result<RestoreReport> {
    let mut proof_json = serde_json::to_vec_pretty(proof)?;
    proof_json.push(b'\n');
    out.write(PROOF_FILE, &proof_json)?;
    let state = &summary.state;
    let evidence = Evidence::new(proof, &summary.checkpoint);
    let mut logs: Vec<StepLog<'_>> = Step::ALL
        .iter()
        .map(|&s| StepLog::new(s, &evidence))
        .collect();
    let log_of = |step: Step| Step::ALL.iter().position(|s| *s == step).unwrap_or(0);
    // The determinism contract first: an impossible verdict is a finding of the step it
    // concerns; a warning is a note there.
    for f in &summary.verdict.reasons {
        let (step, leaf) = rule_place(f);
        logs[log_of(step)].finding(f.rule(), f.describe(), leaf);
    }
    for f in &summary.verdict.warnings {
        let (step, _) = rule_place(f);
        if matches!(f, RuleFinding::DirtyCode { .. }) {
            continue; // the code step reports it as dirty_tree
        }
        logs[log_of(step)].note(format!("ledger warning [{}]: {}", f.rule(), f.describe()));
    }

    let [code_log, artifacts_log, config_log, environment_log, mutations_log, nondeterminism_log] =
        &mut logs[..]
    else {
        unreachable!("one log per step");
    };
    let checkout = code::restore(state, out, args.repo.as_deref(), code_log)?;
    artifacts::restore(
        state,
        out,
        &mut inputs.artifacts,
        checkout.as_deref(),
        artifacts_log,
    )?;
    let restored_config = config::restore(
        state,
        out,
        inputs.secrets.as_ref(),
        &mut inputs.artifacts,
        config_log,
    )?;
    environment::restore(state, out, args.image_repo.as_deref(), environment_log)?;
    let payloads = mutations::restore(state, out, inputs.payloads.as_mut(), mutations_log)?;
    {
        let mut indexes: Vec<&mut DigestIndex> = Vec::new();
        if let Some(p) = inputs.payloads.as_mut() {
            indexes.push(p);
        }
        indexes.push(&mut inputs.artifacts);
        nondeterminism::restore(state, out, &mut indexes, nondeterminism_log)?;
    }
    let blockers: Vec<&'static str> = [
        (Step::Code, code_log.failed()),
        (Step::Artifacts, artifacts_log.failed()),
        (Step::Config, config_log.failed()),
        (Step::Environment, environment_log.failed()),
        (Step::Nondeterminism, nondeterminism_log.failed()),
    ]
    .into_iter()
    .filter(|(_, failed)| *failed)
    .map(|(s, _)| s.name())
    .collect();
    let payloads = if mutations_log.failed() {
        None
    } else {
        payloads
    };
    let replay = mutations::replay_step(
        state,
        out,
        mutations::ReplayPlan {
            reducer: args.replay.as_deref(),
            payloads,
            blockers,
            env: restored_config.env,
        },
        mutations_log,
    );

    let mut steps = Vec::new();
    let mut findings = Vec::new();
    for log in logs {
        let (step, mut f) = log.finish();
        steps.push(step);
        findings.append(&mut f);
    }
    let cp = &summary.checkpoint;
    Ok(RestoreReport {
        format: RESTORE_FORMAT,
        system: state.system.clone(),
        at: state.at,
        out: out.root().display().to_string(),
        result: if findings.is_empty() {
            "exact"
        } else {
            "impossible"
        },
        ledger: LedgerReport {
            verified: true,
            check: None,
            error: None,
            checkpoint: Some(CheckpointSummary {
                origin: cp.checkpoint.origin.clone(),
                tree_size: cp.checkpoint.size.0,
                root: cp.checkpoint.root,
                time: cp.checkpoint.time.0,
                signers: cp.signers.clone(),
            }),
            records: Some(state.records),
            state_digest: Some(summary.state_digest),
            verdict: Some(summary.verdict.clone()),
            notes: ledger_notes,
        },
        steps,
        findings,
        replay,
    })
}
