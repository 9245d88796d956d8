//! What `materialize` reports: the ledger check, the six steps with their results, and every
//! finding with the leaf of the record it concerns and the proof that backs it. Written to
//! `RESTORE.md` and `restore.json`, and printed (`--output json` prints `restore.json`).

use serde::Serialize;
use stateledger_core::hash::{leaf_hash, Hash};
use stateledger_core::state::{Boundary, StateProof, Verdict};
use stateledger_core::trust::VerifiedCheckpoint;

use super::super::replay::ReplayOutcome;
use super::super::time::format_time;

/// `format` of `restore.json`.
pub const RESTORE_FORMAT: &str = "stateledger.restore.v1";
/// Where the verified state proof is kept in the output directory.
pub const PROOF_FILE: &str = "state_proof.json";

/// The six steps, in the order they run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Step {
    Code,
    Artifacts,
    Config,
    Environment,
    Mutations,
    Nondeterminism,
}

impl Step {
    pub const ALL: [Step; 6] = [
        Step::Code,
        Step::Artifacts,
        Step::Config,
        Step::Environment,
        Step::Mutations,
        Step::Nondeterminism,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Step::Code => "code",
            Step::Artifacts => "artifacts",
            Step::Config => "config",
            Step::Environment => "environment",
            Step::Mutations => "mutations",
            Step::Nondeterminism => "nondeterminism",
        }
    }

    fn title(self) -> &'static str {
        match self {
            Step::Code => "Code: the recorded commit, checked out",
            Step::Artifacts => "Artifacts and lockfiles, by digest",
            Step::Config => "Configuration: files and environment variables",
            Step::Environment => "Environment",
            Step::Mutations => "Mutations, payloads and replay",
            Step::Nondeterminism => "Captured nondeterminism",
        }
    }
}

/// A step's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StepResult {
    /// Everything the ledger records for this step was restored and checked.
    Restored,
    /// Something was not: its findings say what and why.
    Failed,
    /// The step could not start (the state proof did not verify).
    NotRun,
}

/// One step of the report.
#[derive(Clone, Debug, Serialize)]
pub struct StepReport {
    pub step: Step,
    pub result: StepResult,
    /// One line: what was restored and checked.
    pub summary: String,
    /// What the step wrote, relative to the output directory.
    pub files: Vec<String>,
    /// What a person should know that is not a failure (limits of what a tool restores,
    /// warnings of the determinism contract).
    pub notes: Vec<String>,
    /// How many findings the step has (listed in the report's `findings`).
    pub findings: usize,
}

/// The proof behind a finding: the record's inclusion in the log (or, for something the ledger
/// does not hold, the state proof's completeness evidence), against the verified checkpoint.
/// Both are parts of `state_proof.json`, which `stateledger verify` checks on its own.
#[derive(Clone, Debug, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Backing {
    Inclusion {
        leaf_index: u64,
        leaf_hash: Hash,
        inclusion_proof: Vec<Hash>,
        tree_size: u64,
        root: Hash,
        document: &'static str,
    },
    Completeness {
        /// How the proof shows no record of the system up to T was left out.
        boundary: String,
        tree_size: u64,
        root: Hash,
        document: &'static str,
    },
}

/// Something that was not restored or did not verify.
#[derive(Clone, Debug, Serialize)]
pub struct Finding {
    pub step: Step,
    /// A stable name (`commit_missing`, `artifact_digest_mismatch`, …; docs/CLI.md lists them).
    pub rule: String,
    pub message: String,
    /// The leaf of the record the finding is about; null when it is about a record that does
    /// not exist (a missing dimension) or about the inputs as a whole.
    pub leaf_index: Option<u64>,
    /// Null only when the state proof did not verify.
    pub proof: Option<Backing>,
}

/// The verified checkpoint, as reported.
#[derive(Clone, Debug, Serialize)]
pub struct CheckpointSummary {
    pub origin: String,
    pub tree_size: u64,
    pub root: Hash,
    pub time: u64,
    pub signers: Vec<String>,
}

/// The first check: the state proof.
#[derive(Clone, Debug, Serialize)]
pub struct LedgerReport {
    pub verified: bool,
    /// The failed check when it did not verify (docs/PROOFS.md §7).
    pub check: Option<String>,
    pub error: Option<String>,
    pub checkpoint: Option<CheckpointSummary>,
    pub records: Option<u64>,
    pub state_digest: Option<Hash>,
    pub verdict: Option<Verdict>,
    pub notes: Vec<String>,
}

/// The whole report (`restore.json`).
#[derive(Clone, Debug, Serialize)]
pub struct RestoreReport {
    pub format: &'static str,
    pub system: String,
    pub at: u64,
    pub out: String,
    /// "exact" when everything was restored and verified, "impossible" otherwise.
    pub result: &'static str,
    pub ledger: LedgerReport,
    pub steps: Vec<StepReport>,
    pub findings: Vec<Finding>,
    pub replay: Option<ReplayOutcome>,
}

impl RestoreReport {
    pub fn is_exact(&self) -> bool {
        self.result == "exact"
    }
}

/// Looks up the proof of a leaf in the verified state proof.
#[derive(Debug)]
pub struct Evidence<'a> {
    proof: &'a StateProof,
    checkpoint: &'a VerifiedCheckpoint,
}

impl<'a> Evidence<'a> {
    pub fn new(proof: &'a StateProof, checkpoint: &'a VerifiedCheckpoint) -> Evidence<'a> {
        Evidence { proof, checkpoint }
    }

    /// The backing of a finding about `leaf` (or about the state as a whole).
    pub fn backing(&self, leaf: Option<u64>) -> Backing {
        let cp = &self.checkpoint.checkpoint;
        let shown = leaf.and_then(|i| self.proof.leaves.iter().find(|l| l.leaf_index == i));
        match shown {
            Some(l) => Backing::Inclusion {
                leaf_index: l.leaf_index,
                leaf_hash: leaf_hash(&l.leaf),
                inclusion_proof: l.inclusion_proof.clone(),
                tree_size: cp.size.0,
                root: cp.root,
                document: PROOF_FILE,
            },
            None => Backing::Completeness {
                boundary: match &self.proof.boundary {
                    Boundary::Next(n) => format!(
                        "the system's records up to T form a back-linked chain of {} leaves, and its next leaf {} is after T",
                        self.proof.leaves.len(),
                        n.leaf_index
                    ),
                    Boundary::Head(_) => format!(
                        "the system's records up to T form a back-linked chain of {} leaves ending at its head in the checkpoint's head map",
                        self.proof.leaves.len()
                    ),
                },
                tree_size: cp.size.0,
                root: cp.root,
                document: PROOF_FILE,
            },
        }
    }
}

/// Collects a step's outcome while it runs.
#[derive(Debug)]
pub struct StepLog<'e> {
    step: Step,
    evidence: &'e Evidence<'e>,
    pub summary: String,
    pub files: Vec<String>,
    pub notes: Vec<String>,
    pub findings: Vec<Finding>,
}

impl<'e> StepLog<'e> {
    pub fn new(step: Step, evidence: &'e Evidence<'e>) -> StepLog<'e> {
        StepLog {
            step,
            evidence,
            summary: String::new(),
            files: Vec::new(),
            notes: Vec::new(),
            findings: Vec::new(),
        }
    }

    /// Records a finding about the record at `leaf` (or none).
    pub fn finding(&mut self, rule: &str, message: impl Into<String>, leaf: Option<u64>) {
        self.findings.push(Finding {
            step: self.step,
            rule: rule.to_string(),
            message: message.into(),
            leaf_index: leaf,
            proof: Some(self.evidence.backing(leaf)),
        });
    }

    pub fn note(&mut self, note: impl Into<String>) {
        self.notes.push(note.into());
    }

    pub fn failed(&self) -> bool {
        !self.findings.is_empty()
    }

    /// The step's report and its findings.
    pub fn finish(self) -> (StepReport, Vec<Finding>) {
        let report = StepReport {
            step: self.step,
            result: if self.findings.is_empty() {
                StepResult::Restored
            } else {
                StepResult::Failed
            },
            summary: self.summary,
            files: self.files,
            notes: self.notes,
            findings: self.findings.len(),
        };
        (report, self.findings)
    }
}

/// `n` and the noun, singular or plural: `count(1, "source")` is "1 source".
pub fn count(n: usize, noun: &str) -> String {
    match (n, noun.strip_suffix('y')) {
        (1, _) => format!("1 {noun}"),
        (_, Some(stem)) if !stem.ends_with(['a', 'e', 'o', 'u']) => format!("{n} {stem}ies"),
        _ => format!("{n} {noun}s"),
    }
}

/// `RESTORE.md`: the report for people, with enough to check every claim.
pub fn markdown(r: &RestoreReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let verdict = if r.is_exact() {
        "everything the ledger records was restored and verified"
    } else {
        "the state could not be restored exactly; the findings below say why"
    };
    let _ = writeln!(
        s,
        "# Restore of `{}` at {} ({})\n\nResult: **{}** — {verdict}.\n",
        r.system,
        format_time(r.at),
        r.at,
        r.result
    );
    let _ = writeln!(s, "## Ledger\n");
    match (&r.ledger.checkpoint, r.ledger.verified) {
        (Some(cp), true) => {
            let _ = writeln!(
                s,
                "The state proof (`{PROOF_FILE}`) verified against the trust policy: {} records of the system \
                 up to T, complete, in the log `{}` of size {} with root `{}` (checkpoint time {}), signed by {}. \
                 State digest `{}`; the ledger's verdict: **{}**. Check it again with \
                 `stateledger verify --trust POLICY {PROOF_FILE}`.\n",
                r.ledger.records.unwrap_or(0),
                cp.origin,
                cp.tree_size,
                cp.root,
                format_time(cp.time),
                cp.signers.join(", "),
                r.ledger
                    .state_digest
                    .map(|d| d.to_string())
                    .unwrap_or_default(),
                r.ledger
                    .verdict
                    .as_ref()
                    .map_or("unknown", |v| v.result.as_str())
            );
        }
        _ => {
            let _ = writeln!(
                s,
                "The state proof did **not** verify ({}): {}. Nothing was restored: without a verified proof \
                 nothing here could be checked against the ledger.\n",
                r.ledger.check.as_deref().unwrap_or("unknown check"),
                r.ledger.error.as_deref().unwrap_or("no reason given")
            );
        }
    }
    for n in &r.ledger.notes {
        let _ = writeln!(s, "- {n}");
    }
    if !r.ledger.notes.is_empty() {
        s.push('\n');
    }
    let _ = writeln!(
        s,
        "## Steps\n\n| step | result | summary |\n| --- | --- | --- |"
    );
    for st in &r.steps {
        let _ = writeln!(
            s,
            "| {} | {} | {} |",
            st.step.name(),
            result_name(st.result),
            st.summary.replace('|', "\\|")
        );
    }
    for st in &r.steps {
        let _ = writeln!(s, "\n### {}\n\n{}", st.step.title(), st.summary);
        if !st.files.is_empty() {
            let _ = writeln!(
                s,
                "\nWritten: {}",
                st.files
                    .iter()
                    .map(|f| format!("`{f}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if !st.notes.is_empty() {
            s.push('\n');
        }
        for n in &st.notes {
            let _ = writeln!(s, "- {n}");
        }
        let mine: Vec<&Finding> = r.findings.iter().filter(|f| f.step == st.step).collect();
        if !mine.is_empty() {
            let _ = writeln!(s, "\nFindings:\n");
            for f in mine {
                let _ = writeln!(
                    s,
                    "- **{}**{}: {}",
                    f.rule,
                    leaf_text(f.leaf_index),
                    f.message
                );
                if let Some(b) = &f.proof {
                    let _ = writeln!(s, "  - proof: {}", backing_text(b));
                }
            }
        }
    }
    if let Some(replay) = &r.replay {
        let _ = writeln!(
            s,
            "\n## Replay\n\n{} mutations replayed, {} recorded state digests compared{}.",
            replay.mutations,
            replay.digests_checked,
            match &replay.divergence {
                None => ", all equal".to_string(),
                Some(d) => format!(
                    "; diverged at mutation #{} (leaf {}, {}#{}): {} expected {}, actual {}",
                    d.mutation_index,
                    d.leaf_index,
                    d.source,
                    d.sequence,
                    d.what,
                    d.expected,
                    d.actual
                ),
            }
        );
    }
    s
}

fn result_name(r: StepResult) -> &'static str {
    match r {
        StepResult::Restored => "restored",
        StepResult::Failed => "FAILED",
        StepResult::NotRun => "not run",
    }
}

fn leaf_text(leaf: Option<u64>) -> String {
    leaf.map(|l| format!(" (leaf {l})")).unwrap_or_default()
}

fn backing_text(b: &Backing) -> String {
    match b {
        Backing::Inclusion {
            leaf_index,
            leaf_hash,
            inclusion_proof,
            tree_size,
            root,
            document,
        } => format!(
            "leaf {leaf_index} (leaf hash `{leaf_hash}`) is included in the log of size {tree_size} with root `{root}` \
             by a {}-hash inclusion proof (`{document}`)",
            inclusion_proof.len()
        ),
        Backing::Completeness {
            boundary,
            tree_size,
            root,
            document,
        } => format!(
            "completeness: {boundary}, in the log of size {tree_size} with root `{root}` (`{document}`)"
        ),
    }
}

/// The text printed on standard output: the result, each step, each finding.
pub fn text(r: &RestoreReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "{} {:?} at {}: {}",
        if r.is_exact() {
            "RESTORED"
        } else {
            "NOT RESTORED"
        },
        r.system,
        format_time(r.at),
        if r.is_exact() {
            "everything restored and verified".to_string()
        } else {
            format!("{} (see {}/RESTORE.md)", r.result, r.out)
        }
    );
    if !r.ledger.verified {
        let _ = writeln!(
            s,
            "  ledger: the state proof does not verify ({}): {}",
            r.ledger.check.as_deref().unwrap_or("?"),
            r.ledger.error.as_deref().unwrap_or("")
        );
    }
    for st in &r.steps {
        let _ = writeln!(
            s,
            "  {:<15} {:<9} {}",
            st.step.name(),
            result_name(st.result),
            st.summary
        );
    }
    for f in &r.findings {
        let _ = writeln!(
            s,
            "  - [{}] {}{}: {}",
            f.step.name(),
            f.rule,
            leaf_text(f.leaf_index),
            f.message
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_read_as_english() {
        assert_eq!(count(1, "source"), "1 source");
        assert_eq!(count(0, "seed"), "0 seeds");
        assert_eq!(count(3, "entry"), "3 entries");
        assert_eq!(count(2, "key"), "2 keys");
    }
}
