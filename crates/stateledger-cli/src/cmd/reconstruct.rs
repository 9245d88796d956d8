//! `stateledger reconstruct` (S(T) with a verified state proof) and `stateledger gate` (the
//! verdict as an exit code for CI/CD).

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context as _;
use stateledger_core::state::{StateProof, StateProofSummary};
use stateledger_core::trust::TrustPolicy;

use super::profile::ProfileArgs;
use super::report;
use super::time::{format_time, parse_time};

#[derive(clap::Args, Debug)]
pub struct ReconstructArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// The system, e.g. orders-service.
    #[arg(long)]
    pub system: String,
    /// T: RFC 3339, ns since the Unix epoch, or "now".
    #[arg(long, default_value = "now")]
    pub at: String,
    /// Advisory mode: also print the confidence score and what lowered it.
    #[arg(long)]
    pub advisory: bool,
    /// Write the state proof (JSON) here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Write the forensic report as an HTML page with a timeline here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Print the state proof JSON instead of the text report.
    #[arg(long)]
    pub json: bool,
}

#[derive(clap::Args, Debug)]
pub struct GateArgs {
    #[command(flatten)]
    pub profile: ProfileArgs,
    /// The system to gate on.
    #[arg(long)]
    pub system: Option<String>,
    /// T (default now).
    #[arg(long, default_value = "now")]
    pub at: String,
    /// Gate on a state proof file offline instead of asking the cluster (needs --trust).
    #[arg(long)]
    pub proof: Option<PathBuf>,
    /// Trust policy for --proof.
    #[arg(long)]
    pub trust: Option<PathBuf>,
    /// Also fail when the advisory confidence is below this (0-100).
    #[arg(long, default_value_t = 0)]
    pub min_confidence: u32,
}

/// Fetches and verifies a state proof from the cluster.
pub fn fetch(
    profile: &ProfileArgs,
    system: &str,
    at: u64,
) -> anyhow::Result<(StateProof, StateProofSummary)> {
    let client = profile.load()?.client(Duration::from_secs(30))?;
    super::runtime()?.block_on(async move {
        let r = client
            .state_proof(system, at, Duration::from_secs(10))
            .await?;
        Ok(r)
    })
}

pub fn run_reconstruct(args: ReconstructArgs) -> anyhow::Result<()> {
    let at = parse_time(&args.at)?;
    let (proof, summary) = fetch(&args.profile, &args.system, at)?;
    if let Some(out) = &args.out {
        std::fs::write(out, format!("{}\n", serde_json::to_string_pretty(&proof)?))
            .with_context(|| format!("cannot write {}", out.display()))?;
        eprintln!(
            "wrote the state proof to {} (check it offline with `stateledger verify`)",
            out.display()
        );
    }
    if let Some(html) = &args.html {
        std::fs::write(html, report::html(&proof, &summary)?)
            .with_context(|| format!("cannot write {}", html.display()))?;
        eprintln!("wrote the forensic report to {}", html.display());
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&proof)?);
    } else {
        print!("{}", report::text(&summary, args.advisory));
    }
    Ok(())
}

pub fn run_gate(args: GateArgs) -> anyhow::Result<ExitCode> {
    let summary = match (&args.proof, &args.system) {
        (Some(path), _) => {
            let trust = args
                .trust
                .as_ref()
                .context("--proof needs --trust (the trust policy to check it against)")?;
            let policy = TrustPolicy::from_json(
                &std::fs::read(trust)
                    .with_context(|| format!("cannot read {}", trust.display()))?,
            )?;
            let proof: StateProof = serde_json::from_slice(
                &std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?,
            )
            .with_context(|| format!("{} is not a state proof", path.display()))?;
            match proof.verify(&policy) {
                Ok(s) => s,
                Err(e) => {
                    println!(
                        "GATE FAILED: the state proof does not verify ({}): {e}",
                        e.check()
                    );
                    return Ok(ExitCode::from(1));
                }
            }
        }
        (None, Some(system)) => fetch(&args.profile, system, parse_time(&args.at)?)?.1,
        (None, None) => {
            anyhow::bail!("give --system (ask the cluster) or --proof with --trust (offline)")
        }
    };
    let v = &summary.verdict;
    let when = format_time(summary.state.at);
    if !v.is_exact() {
        println!(
            "GATE FAILED: exact reconstruction of {:?} at {when} is impossible:",
            summary.state.system
        );
        for r in &v.reasons {
            println!("  - [{}] {}", r.rule(), r.describe());
        }
        return Ok(ExitCode::from(1));
    }
    if v.confidence < args.min_confidence {
        println!(
            "GATE FAILED: confidence {} is below the required {} for {:?} at {when}:",
            v.confidence, args.min_confidence, summary.state.system
        );
        for w in &v.warnings {
            println!("  - [{}] {}", w.rule(), w.describe());
        }
        return Ok(ExitCode::from(1));
    }
    println!(
        "GATE PASSED: {:?} at {when} reconstructs exactly (confidence {}, digest {})",
        summary.state.system, v.confidence, summary.state_digest
    );
    Ok(ExitCode::SUCCESS)
}
