//! `stateledger reconstruct` (S(T) with a verified state proof) and `stateledger gate` (the
//! verdict as an exit code for CI/CD).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use stateledger_core::state::{StateProof, StateProofSummary};

use super::output::OutputArgs;
use super::profile::{Connected, ProfileArgs};
use super::report;
use super::time::format_time;
use crate::{errln, outln};

pub const RECONSTRUCT_HELP: &str = "\
Examples:
  stateledger reconstruct --system orders-service --at now --advisory
  stateledger reconstruct --system orders-service --at 2026-11-25T10:00:00Z \\
      --out proof.json --html report.html
  stateledger reconstruct --system orders-service --output json > proof.json

Output: a text report; with --output json the state proof document (docs/PROOFS.md §7.3).
The proof is verified before anything is printed or written.

Exit status:
  0  reconstructed (whatever the verdict: `stateledger gate` turns the verdict into a status)
  1  the ledger has no record of the system up to T (similar names are suggested)
  2  it could not run: no answer within --timeout, or what the cluster sent does not verify";

pub const GATE_HELP: &str = "\
Examples:
  stateledger gate --system orders-service                     # ask the cluster, T = now
  stateledger gate --system orders-service --min-confidence 90
  stateledger gate --proof proof.json --trust policy.json      # offline, from a saved proof
  stateledger gate --system orders-service --output json

Exit status:
  0  the state at T reconstructs exactly (and confidence >= --min-confidence)
  1  it does not: impossible (the reasons are listed), confidence too low, no record of the
     system, or the --proof does not verify
  2  it could not run: no answer within --timeout, unreadable files";

#[derive(clap::Args, Debug)]
pub struct ReconstructArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// The system, e.g. orders-service.
    #[arg(long)]
    pub system: String,
    /// T: RFC 3339 (e.g. 2026-11-25T10:00:00Z), nanoseconds since the Unix epoch, or "now".
    #[arg(long, default_value = "now", value_parser = super::time::parse_time)]
    pub at: u64,
    /// Advisory mode: also print the confidence score and what lowered it.
    #[arg(long)]
    pub advisory: bool,
    /// Write the state proof (JSON) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the forensic report as an HTML page with a timeline here.
    #[arg(long)]
    pub html: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["system", "proof"])))]
pub struct GateArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    #[command(flatten)]
    pub output: OutputArgs,
    /// The system to gate on (asks the cluster); or give --proof.
    #[arg(long)]
    pub system: Option<String>,
    /// T: RFC 3339, nanoseconds since the Unix epoch, or "now" (with --system).
    #[arg(long, default_value = "now", value_parser = super::time::parse_time)]
    pub at: u64,
    /// Gate on a saved state proof offline instead of asking the cluster (needs --trust).
    #[arg(long, requires = "trust")]
    pub proof: Option<PathBuf>,
    /// Trust policy to check --proof against.
    #[arg(long, requires = "proof")]
    pub trust: Option<PathBuf>,
    /// Also fail when the advisory confidence is below this (0-100).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=100))]
    pub min_confidence: u32,
}

/// Exit status when the ledger holds no record of the system up to T.
const EXIT_NO_RECORDS: u8 = 1;

/// Fetches and verifies a state proof from the cluster.
pub(super) async fn fetch(
    cluster: &Connected,
    system: &str,
    at: u64,
) -> anyhow::Result<(StateProof, StateProofSummary)> {
    cluster
        .wait(
            &format!("the state of {system:?} at {}", format_time(at)),
            cluster
                .client
                .state_proof(system, at, cluster.server_wait()),
        )
        .await
}

/// "no records for system X": a verified answer, with the names the user probably meant.
pub(super) async fn no_records_message(cluster: &Connected, system: &str, at: u64) -> String {
    let near = cluster
        .client
        .systems_near(system, 5)
        .await
        .unwrap_or_default();
    let hint = if near.is_empty() {
        "check the name, or record something for it first (`stateledger collect ... | stateledger submit`)".to_string()
    } else {
        format!(
            "systems with similar names: {}",
            near.iter()
                .map(|n| format!("{n:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    format!(
        "no records for system {system:?} up to {} (the ledger proves it has none); {hint}",
        format_time(at)
    )
}

/// Fetches the state proof, or the "no records" message when the system has none up to T.
fn fetch_or_explain(
    profile: &ProfileArgs,
    system: &str,
    at: u64,
) -> anyhow::Result<Result<(StateProof, StateProofSummary), String>> {
    let cluster = profile.connect()?;
    super::runtime()?.block_on(async {
        let (proof, summary) = fetch(&cluster, system, at).await?;
        if summary.state.records == 0 {
            return Ok(Err(no_records_message(&cluster, system, at).await));
        }
        Ok(Ok((proof, summary)))
    })
}

pub fn run_reconstruct(args: ReconstructArgs) -> anyhow::Result<ExitCode> {
    let (proof, summary) = match fetch_or_explain(&args.profile, &args.system, args.at)? {
        Ok(found) => found,
        Err(message) => {
            errln!("error: {message}");
            return Ok(ExitCode::from(EXIT_NO_RECORDS));
        }
    };
    if let Some(out) = &args.out {
        std::fs::write(out, format!("{}\n", serde_json::to_string_pretty(&proof)?))
            .with_context(|| format!("cannot write {}", out.display()))?;
        errln!(
            "wrote the state proof to {} (check it offline with `stateledger verify`)",
            out.display()
        );
    }
    if let Some(html) = &args.html {
        std::fs::write(html, report::html(&proof, &summary)?)
            .with_context(|| format!("cannot write {}", html.display()))?;
        errln!("wrote the forensic report to {}", html.display());
    }
    if args.output.is_json() {
        super::output::json(&proof)?;
    } else {
        super::output::text(&report::text(&summary, args.advisory))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// The gate's decision, as `--output json` prints it (docs/CLI.md).
#[derive(Debug, serde::Serialize)]
struct GateOutcome {
    passed: bool,
    /// Why it failed: "impossible", "confidence", "no_records" or "proof" (null when passed).
    failure: Option<&'static str>,
    system: String,
    at: u64,
    min_confidence: u32,
    /// Present unless the failure is "no_records" or "proof".
    verdict: Option<stateledger_core::state::Verdict>,
    state_digest: Option<String>,
    /// What failed, for "no_records" and "proof".
    error: Option<String>,
}

pub fn run_gate(args: GateArgs) -> anyhow::Result<ExitCode> {
    let fail = |failure, system: String, at, error: String| GateOutcome {
        passed: false,
        failure: Some(failure),
        system,
        at,
        min_confidence: args.min_confidence,
        verdict: None,
        state_digest: None,
        error: Some(error),
    };
    let summary = match (&args.proof, &args.system) {
        (Some(path), _) => {
            let trust = args
                .trust
                .as_ref()
                .context("--proof needs --trust (the trust policy to check it against)")?;
            let policy = super::verify::read_policy(trust)?;
            let proof: StateProof = serde_json::from_slice(
                &std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
            )
            .with_context(|| format!("{} is not a state proof", path.display()))?;
            match proof.verify(&policy) {
                Ok(s) => s,
                Err(e) => {
                    let error = format!("the state proof does not verify ({}): {e}", e.check());
                    return print_gate(&args, fail("proof", proof.system, proof.at, error));
                }
            }
        }
        (None, Some(system)) => match fetch_or_explain(&args.profile, system, args.at)? {
            Ok((_, summary)) => summary,
            Err(message) => {
                return print_gate(&args, fail("no_records", system.clone(), args.at, message))
            }
        },
        (None, None) => {
            anyhow::bail!("give --system (ask the cluster) or --proof with --trust (offline)")
        }
    };
    let v = &summary.verdict;
    let failure = if !v.is_exact() {
        Some("impossible")
    } else if v.confidence < args.min_confidence {
        Some("confidence")
    } else {
        None
    };
    print_gate(
        &args,
        GateOutcome {
            passed: failure.is_none(),
            failure,
            system: summary.state.system.clone(),
            at: summary.state.at,
            min_confidence: args.min_confidence,
            verdict: Some(summary.verdict.clone()),
            state_digest: Some(summary.state_digest.to_string()),
            error: None,
        },
    )
}

fn print_gate(args: &GateArgs, g: GateOutcome) -> anyhow::Result<ExitCode> {
    let code = if g.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    };
    if args.output.is_json() {
        super::output::json(&g)?;
        return Ok(code);
    }
    let when = format_time(g.at);
    match (g.failure, &g.verdict) {
        (None, Some(v)) => outln!(
            "GATE PASSED: {:?} at {when} reconstructs exactly (confidence {}, state digest {})",
            g.system,
            v.confidence,
            g.state_digest.as_deref().unwrap_or_default()
        )?,
        (Some("impossible"), Some(v)) => {
            outln!(
                "GATE FAILED: exact reconstruction of {:?} at {when} is impossible:",
                g.system
            )?;
            for r in &v.reasons {
                outln!("  - [{}] {}", r.rule(), r.describe())?;
            }
        }
        (Some("confidence"), Some(v)) => {
            outln!(
                "GATE FAILED: confidence {} is below the required {} for {:?} at {when}:",
                v.confidence,
                g.min_confidence,
                g.system
            )?;
            for w in &v.warnings {
                outln!("  - [{}] {}", w.rule(), w.describe())?;
            }
        }
        _ => outln!(
            "GATE FAILED: {}",
            g.error.as_deref().unwrap_or("no verdict")
        )?,
    }
    Ok(code)
}
