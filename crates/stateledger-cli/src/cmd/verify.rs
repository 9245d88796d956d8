//! `stateledger verify`: offline verification of proof documents against a trust policy.
//!
//! Exit status: 0 verified; 1 the document does not verify (the reason names the check);
//! 2 the command could not run (unreadable file, invalid trust policy).

use std::io::Read as _;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use stateledger_core::documents::{Document, Verified};
use stateledger_core::limits::DOCUMENT_BYTES_MAX;
use stateledger_core::record::Dimension;
use stateledger_core::state::{StateProof, StateProofSummary};
use stateledger_core::trust::TrustPolicy;

use super::output::OutputArgs;
use crate::outln;

pub const HELP: &str = "\
Examples:
  stateledger verify --trust policy.json receipt.json
  stateledger verify --trust policy.json --output json proof.json
  stateledger verify --trust policy.json --system orders-service --at 2026-11-25T10:00:00Z proof.json
  stateledger checkpoint | stateledger verify --trust policy.json -

Output: `OK <kind>: <summary>` or `FAILED <check>: <reason>`; with --output json
{\"ok\": true, \"kind\", \"summary\"} or {\"ok\": false, \"check\", \"error\"}. The checks are
listed in docs/PROOFS.md §7.

Exit status:
  0  the document verifies (and is about --system at --at, when given)
  1  it does not: the failed check is named
  2  the command could not run: unreadable file, invalid trust policy, bad --at, or
     --system/--at given for a document that is not a state proof";

#[derive(clap::Args, Debug)]
pub struct Args {
    /// Trust policy JSON: origin, trusted node keys and threshold.
    #[arg(long)]
    trust: PathBuf,
    #[command(flatten)]
    output: OutputArgs,
    /// State proofs: the system the proof must be about (a valid proof about another system
    /// fails the `expectation` check).
    #[arg(long)]
    system: Option<String>,
    /// State proofs: the time T the proof must be for (RFC 3339 or Unix nanoseconds); a valid
    /// proof for another T fails the `expectation` check.
    #[arg(long, value_parser = super::time::parse_time)]
    at: Option<u64>,
    /// The document: a receipt, consistency proof or state proof (JSON), or a checkpoint note.
    /// "-" reads standard input.
    file: PathBuf,
}

/// Reads a file, or standard input for "-", up to one byte past the document limit: enough for
/// the parser to refuse an oversize document by name without holding an unbounded input.
fn read_input(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    let limit = DOCUMENT_BYTES_MAX as u64 + 1;
    let mut buf = Vec::new();
    if path.as_os_str() == "-" {
        std::io::stdin()
            .take(limit)
            .read_to_end(&mut buf)
            .context("cannot read standard input")?;
    } else {
        std::fs::File::open(path)
            .and_then(|f| f.take(limit).read_to_end(&mut buf))
            .with_context(|| format!("cannot read {}", path.display()))?;
    }
    Ok(buf)
}

/// Reads and checks a trust policy file (`--trust`).
pub fn read_policy(path: &PathBuf) -> anyhow::Result<TrustPolicy> {
    let bytes = read_input(path)?;
    TrustPolicy::from_json(&bytes)
        .with_context(|| format!("invalid trust policy {} (--trust)", path.display()))
}

/// Reads a state proof file and verifies it against the trust policy file (`--trust`): what
/// `report` and `replay` start from.
pub fn read_verified_state_proof(
    proof: &PathBuf,
    trust: &PathBuf,
) -> anyhow::Result<(StateProof, StateProofSummary)> {
    let policy = read_policy(trust)?;
    let bytes = read_input(proof)?;
    let parsed: StateProof = serde_json::from_slice(&bytes)
        .with_context(|| format!("{} is not a state proof", proof.display()))?;
    let summary = parsed.verify(&policy).map_err(|e| {
        anyhow::anyhow!(
            "{} does not verify against {} ({}): {e}",
            proof.display(),
            trust.display(),
            e.check()
        )
    })?;
    Ok((parsed, summary))
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let policy = read_policy(&args.trust)?;
    let at = args.at;
    let bytes = read_input(&args.file)?;
    let outcome = Document::parse(&bytes).and_then(|d| d.verify(&policy));
    let unmet = match &outcome {
        Ok(verified) => unmet_expectation(verified, args.system.as_deref(), at)?,
        Err(_) => None,
    };
    if let Some(reason) = unmet {
        if args.output.is_json() {
            outln!(
                "{}",
                serde_json::json!({"ok": false, "check": "expectation", "error": reason})
            )?;
        } else {
            outln!("FAILED expectation: {reason}")?;
        }
        return Ok(ExitCode::from(1));
    }
    match outcome {
        Ok(verified) => {
            let (kind, summary) = describe(&verified, &policy);
            if args.output.is_json() {
                outln!(
                    "{}",
                    serde_json::json!({"ok": true, "kind": kind, "summary": summary})
                )?;
            } else {
                outln!("OK {kind}: {summary}")?;
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(e) => {
            if args.output.is_json() {
                outln!(
                    "{}",
                    serde_json::json!({"ok": false, "check": e.check(), "error": e.to_string()})
                )?;
            } else {
                outln!("FAILED {}: {e}", e.check())?;
            }
            Ok(ExitCode::from(1))
        }
    }
}

/// What the caller asked the document to be about, against what it is about. `--system` and
/// `--at` only apply to state proofs (exit 2 for other documents: the question is wrong).
fn unmet_expectation(
    verified: &Verified,
    system: Option<&str>,
    at: Option<u64>,
) -> anyhow::Result<Option<String>> {
    if system.is_none() && at.is_none() {
        return Ok(None);
    }
    let Verified::StateProof(s) = verified else {
        anyhow::bail!("--system and --at apply only to state proofs");
    };
    if let Some(system) = system {
        if s.state.system != system {
            return Ok(Some(format!(
                "the proof is about system {:?}, not the expected {system:?}",
                s.state.system
            )));
        }
    }
    if let Some(at) = at {
        if s.state.at != at {
            return Ok(Some(format!(
                "the proof is for T = {} ({}), not the expected T = {} ({})",
                s.state.at,
                super::time::format_time(s.state.at),
                at,
                super::time::format_time(at)
            )));
        }
    }
    Ok(None)
}

fn signed_by(signers: &[String], policy: &TrustPolicy) -> String {
    format!(
        "signed by {} ({} of {} trusted keys, threshold {})",
        signers.join(", "),
        signers.len(),
        policy.verifiers.len(),
        policy.threshold
    )
}

fn describe(v: &Verified, policy: &TrustPolicy) -> (&'static str, String) {
    match v {
        Verified::Receipt(r) => {
            let body = r.record.body.as_ref().map_or("none", |b| Dimension::of(b).name());
            let cp = &r.checkpoint.checkpoint;
            (
                "receipt",
                format!(
                    "leaf {} ({} record of system {:?}, ledger time {}) is in the log of size {} with root {}, {}",
                    r.leaf.index,
                    body,
                    r.record.system,
                    r.leaf.ledger_time,
                    cp.size,
                    cp.root,
                    signed_by(&r.checkpoint.signers, policy)
                ),
            )
        }
        Verified::Consistency(c) => (
            "consistency_proof",
            format!(
                "the log of size {} (root {}) is a prefix of the log of size {} (root {}); both checkpoints met the threshold",
                c.old.checkpoint.size, c.old.checkpoint.root, c.new.checkpoint.size, c.new.checkpoint.root
            ),
        ),
        Verified::StateProof(s) => (
            "state_proof",
            format!(
                "S(T) of {:?} at {} ({} records, digest {}) is complete and proven against the log of size {}, {}; verdict {}{}",
                s.state.system,
                s.state.at,
                s.state.records,
                s.state_digest,
                s.checkpoint.checkpoint.size,
                signed_by(&s.checkpoint.signers, policy),
                s.verdict.result,
                if s.verdict.is_exact() {
                    String::new()
                } else {
                    format!(
                        " ({})",
                        s.verdict.reasons.iter().map(|r| r.describe()).collect::<Vec<_>>().join("; ")
                    )
                }
            ),
        ),
        Verified::Checkpoint(c) => (
            "checkpoint",
            format!(
                "{} size {} root {} time {}, {}",
                c.checkpoint.origin,
                c.checkpoint.size,
                c.checkpoint.root,
                c.checkpoint.time,
                signed_by(&c.signers, policy)
            ),
        ),
    }
}
