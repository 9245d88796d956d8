//! `stateledger report`: forensic reports of a verified state proof — text for terminals (here)
//! and the HTML page with its timeline (`report_html.rs`).

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Context as _;
use stateledger_core::state::StateProofSummary;

use super::output::OutputArgs;
use crate::errln;

use super::time::format_time;

pub const HELP: &str = "\
Examples:
  stateledger report --trust stateledger-dev/trust_policy.json proof.json --advisory
  stateledger report --trust policy.json proof.json --html report.html
  stateledger report --trust policy.json proof.json --output json

The proof (from `stateledger reconstruct --out`) is verified before anything is reported.
The HTML page shows every record of the system up to T on a timeline, one lane per
dimension, with gaps and undeclared nondeterminism marked where they happen.

Exit status:
  0  reported
  2  the proof does not verify, or a file cannot be read or written";

#[derive(clap::Args, Debug)]
pub struct ReportArgs {
    /// A state proof (JSON) from `stateledger reconstruct --out`.
    pub proof: PathBuf,
    /// Trust policy to verify it against first.
    #[arg(long)]
    pub trust: PathBuf,
    /// Also write the HTML page here.
    #[arg(long)]
    pub html: Option<PathBuf>,
    /// Include the advisory confidence and what lowered it.
    #[arg(long)]
    pub advisory: bool,
    #[command(flatten)]
    pub output: OutputArgs,
}

pub fn run(args: ReportArgs) -> anyhow::Result<()> {
    let (proof, summary) = super::verify::read_verified_state_proof(&args.proof, &args.trust)?;
    if let Some(path) = &args.html {
        std::fs::write(path, html(&proof, &summary)?)
            .with_context(|| format!("cannot write {}", path.display()))?;
        errln!("wrote {}", path.display());
    }
    if args.output.is_json() {
        super::output::json(&summary_json(&summary))
    } else {
        super::output::text(&text(&summary, args.advisory))
    }
}

/// A verified state proof's summary as `report --output json` prints it (docs/CLI.md).
pub fn summary_json(s: &StateProofSummary) -> serde_json::Value {
    serde_json::json!({
        "verified": true,
        "system": s.state.system,
        "at": s.state.at,
        "checkpoint": super::proofs::checkpoint_json(&s.checkpoint),
        "records": s.state.records,
        "state_digest": s.state_digest.to_string(),
        "verdict": s.verdict,
        "state": s.state,
    })
}

/// The text report.
pub fn text(s: &StateProofSummary, advisory: bool) -> String {
    let st = &s.state;
    let mut out = String::new();
    let cp = &s.checkpoint.checkpoint;
    let _ = writeln!(
        out,
        "S(T) of {:?} at {} ({} ns)",
        st.system,
        format_time(st.at),
        st.at
    );
    let _ = writeln!(
        out,
        "  proven against checkpoint {} size {} (root {}), signed by {}",
        cp.origin,
        cp.size,
        cp.root,
        s.checkpoint.signers.join(", ")
    );
    let _ = writeln!(
        out,
        "  {} records of the system up to T; state digest {}",
        st.records, s.state_digest
    );
    match &st.code {
        Some(c) => {
            let _ = writeln!(
                out,
                "  code:        {} @ {}{} ({} artifacts, {} lockfiles) — leaf {}, {}",
                c.value.repo,
                c.value.commit,
                if c.value.dirty { " (dirty)" } else { "" },
                c.value.artifacts.len(),
                c.value.lockfiles.len(),
                c.leaf_index,
                format_time(c.ledger_time)
            );
        }
        None => {
            let _ = writeln!(out, "  code:        MISSING");
        }
    }
    match &st.config {
        Some(c) => {
            let redacted = c.value.entries.iter().filter(|e| e.redacted).count();
            let _ = writeln!(
                out,
                "  config:      version {:?}, {} entries ({} redacted) — leaf {}, {}",
                c.value.version,
                c.value.entries.len(),
                redacted,
                c.leaf_index,
                format_time(c.ledger_time)
            );
        }
        None => {
            let _ = writeln!(out, "  config:      MISSING");
        }
    }
    match &st.environment {
        Some(e) => {
            let v = &e.value;
            let _ = writeln!(
                out,
                "  environment: {} {} {}{}, {} runtimes, {} flags, clock {} — leaf {}, {}",
                v.os,
                v.kernel,
                v.arch,
                if v.container_image.is_empty() {
                    String::new()
                } else {
                    format!(", image {}", v.container_image)
                },
                v.runtimes.len(),
                v.feature_flags.len(),
                v.time_source
                    .as_ref()
                    .map_or("unknown".to_string(), |t| format!(
                        "{} {}",
                        t.kind,
                        if t.synchronized {
                            "synchronised"
                        } else {
                            "NOT synchronised"
                        }
                    )),
                e.leaf_index,
                format_time(e.ledger_time)
            );
        }
        None => {
            let _ = writeln!(out, "  environment: MISSING");
        }
    }
    let mut sources: Vec<(&str, u64, u64)> = Vec::new();
    for m in &st.mutations {
        match sources.iter_mut().find(|(s, _, _)| *s == m.value.source) {
            Some(e) => e.2 = m.value.sequence,
            None => sources.push((m.value.source.as_str(), m.value.sequence, m.value.sequence)),
        }
    }
    let _ = writeln!(
        out,
        "  mutations:   {} ({})",
        st.mutations.len(),
        sources
            .iter()
            .map(|(s, a, b)| format!("{s} #{a}..#{b}"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let _ = writeln!(
        out,
        "  captures:    {} nondeterminism captures, {} state digests",
        st.nondeterminism.len(),
        st.state_digests.len()
    );
    let _ = writeln!(
        out,
        "  writers:     {}",
        st.writers
            .iter()
            .map(|w| w.name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    );
    if s.verdict.is_exact() {
        let _ = writeln!(
            out,
            "verdict: EXACT — every dimension present, the determinism contract holds"
        );
    } else {
        let _ = writeln!(
            out,
            "verdict: IMPOSSIBLE — exact reconstruction cannot be guaranteed:"
        );
        for r in &s.verdict.reasons {
            let _ = writeln!(out, "  - [{}] {}", r.rule(), r.describe());
        }
    }
    if advisory {
        let _ = writeln!(out, "advisory confidence: {}/100", s.verdict.confidence);
        for (title, list) in [
            ("blocking reasons", &s.verdict.reasons),
            ("warnings", &s.verdict.warnings),
        ] {
            if list.is_empty() {
                continue;
            }
            let _ = writeln!(out, "  {title}:");
            for f in list {
                let _ = writeln!(
                    out,
                    "    -{:>3} [{}] {}",
                    f.weight(),
                    f.rule(),
                    f.describe()
                );
            }
        }
    }
    out
}

pub use super::report_html::html;
