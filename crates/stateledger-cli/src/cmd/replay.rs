//! `stateledger replay`: re-derive the application state from the recorded mutations and compare
//! with the recorded state digests (docs/DETERMINISM.md §5).
//!
//! Reducer protocol: the reducer command is started once (through `sh -c`). For each mutation of
//! S(T), in order, it receives one JSON line on stdin:
//!
//! ```json
//! {"index": 0, "mutation": {<mutation as in the record JSON>}, "payload_base64": "...",
//!  "captures": {"<capture id>": {<nondeterminism record body>}, ...}}
//! ```
//!
//! and must answer with one JSON line on stdout: `{"state_digest": "sha256:<hex>"}` — the
//! application's state digest after applying that mutation. `stateledger example-reducer` is a
//! small reducer for the demo's order events.
//!
//! Payloads file: JSONL, one object per mutation, matched by `id` or by `source` + `sequence`,
//! with the payload as `payload` (UTF-8 text) or `payload_base64`.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::PathBuf;
use std::process::{Command, ExitCode, Stdio};

use anyhow::{bail, Context as _};
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use stateledger_core::record::pb;
use stateledger_core::state::replay::{declared_digests, digest_like, Divergence};
use stateledger_core::state::SystemState;

use super::output::OutputArgs;
use super::progress::Progress;
use crate::outln;

/// `replay --help`: the reducer protocol (docs/DETERMINISM.md §5 refers to it).
pub const LONG_ABOUT: &str = "\
Replay a state proof's mutations through a reducer and compare with the recorded state digests.

The proof is verified first. Then the reducer command is started once (with `sh -c`) and, for
each mutation of S(T) in log order, receives one JSON line on its standard input:

  {\"index\": 0, \"mutation\": {<the mutation record's JSON>}, \"payload_base64\": \"...\",
   \"captures\": {\"<capture id>\": {<the nondeterminism record's JSON>}, ...}}

`captures` holds the recorded captures the mutation names. The reducer must answer each line
with one JSON line on its standard output:

  {\"state_digest\": \"sha256:<hex>\"}

the application's state digest after applying that mutation. Where the ledger holds a state
digest record for that (source, sequence), the answers must match it exactly.

Payloads (--payloads) are JSON lines, one object per mutation, matched by \"id\" or by
\"source\" and \"sequence\", holding the payload as \"payload\" (UTF-8 text) or
\"payload_base64\". A payload whose digest differs from the recorded payload_digest stops the
replay before the reducer starts.";

pub const HELP: &str = "\
Examples:
  stateledger replay --proof proof.json --trust policy.json --payloads payloads.jsonl \\
      --reducer './my-reducer --from-stdin'
  stateledger replay --proof proof.json --trust policy.json --payloads payloads.jsonl \\
      --reducer 'stateledger example-reducer' --output json

Exit status:
  0  every mutation replayed and every recorded state digest matched
  1  the replay diverged (the first divergence is named: payload missing, payload digest,
     or state digest)
  2  it could not run: the proof does not verify, unreadable files, the reducer failed";

#[derive(clap::Args, Debug)]
pub struct ReplayArgs {
    /// A state proof (from `stateledger reconstruct --out`); it is verified first.
    #[arg(long)]
    pub proof: PathBuf,
    /// Trust policy to verify the proof against.
    #[arg(long)]
    pub trust: PathBuf,
    /// Payloads (JSON lines: id or source+sequence, and payload or payload_base64).
    #[arg(long)]
    pub payloads: PathBuf,
    /// The deterministic reducer command (run with `sh -c`; protocol above).
    #[arg(long)]
    pub reducer: String,
    #[command(flatten)]
    pub output: OutputArgs,
}

/// One line of the payloads file.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PayloadLine {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    sequence: Option<u64>,
    #[serde(default)]
    payload: Option<String>,
    #[serde(default)]
    payload_base64: Option<String>,
}

/// What the reducer receives per mutation.
#[derive(Debug, Serialize, Deserialize)]
pub struct ReplayEvent {
    pub index: usize,
    pub mutation: pb::Mutation,
    pub payload_base64: String,
    pub captures: BTreeMap<String, pb::Nondeterminism>,
}

#[derive(Debug, Deserialize)]
struct ReducerLine {
    state_digest: String,
}

/// The result of a replay (`--output json` prints it as is; docs/CLI.md).
#[derive(Clone, Debug, Serialize)]
pub struct ReplayOutcome {
    pub mutations: usize,
    pub digests_checked: usize,
    pub divergence: Option<Divergence>,
}

/// Payloads by mutation id and by (source, sequence).
#[derive(Debug, Default)]
pub struct Payloads {
    by_id: BTreeMap<String, Vec<u8>>,
    by_position: BTreeMap<(String, u64), Vec<u8>>,
}

impl Payloads {
    pub fn parse(text: &str) -> anyhow::Result<Payloads> {
        let mut p = Payloads::default();
        for (i, line) in text.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let l: PayloadLine = serde_json::from_str(line)
                .with_context(|| format!("payloads line {}: not a payload object", i + 1))?;
            let bytes = match (l.payload, l.payload_base64) {
                (Some(t), None) => t.into_bytes(),
                (None, Some(b)) => base64::engine::general_purpose::STANDARD
                    .decode(b)
                    .with_context(|| {
                        format!("payloads line {}: payload_base64 is not base64", i + 1)
                    })?,
                _ => bail!(
                    "payloads line {}: give exactly one of payload and payload_base64",
                    i + 1
                ),
            };
            match (l.id, l.source, l.sequence) {
                (Some(id), _, _) => {
                    p.by_id.insert(id, bytes);
                }
                (None, Some(s), Some(n)) => {
                    p.by_position.insert((s, n), bytes);
                }
                _ => bail!("payloads line {}: give id, or source and sequence", i + 1),
            }
        }
        Ok(p)
    }

    /// Adds the payload of mutation `sequence` of `source` (unique in S(T), unlike ids, which are
    /// unique only per source).
    pub fn insert_at(&mut self, source: &str, sequence: u64, payload: Vec<u8>) {
        self.by_position
            .insert((source.to_string(), sequence), payload);
    }

    fn get(&self, m: &pb::Mutation) -> Option<&Vec<u8>> {
        self.by_id
            .get(&m.id)
            .or_else(|| self.by_position.get(&(m.source.clone(), m.sequence)))
    }
}

/// The reducer command and where it runs.
#[derive(Clone, Debug)]
pub struct Reducer {
    /// Run with `sh -c`.
    pub command: String,
    /// Working directory (default: the caller's).
    pub cwd: Option<PathBuf>,
    /// Environment variables added to the caller's.
    pub env: Vec<(String, String)>,
}

impl Reducer {
    /// `command` in the caller's directory and environment.
    pub fn new(command: impl Into<String>) -> Reducer {
        Reducer {
            command: command.into(),
            cwd: None,
            env: Vec::new(),
        }
    }
}

/// Replays S(T)'s mutations through `reducer` and compares with the recorded digests.
pub fn replay(
    state: &SystemState,
    payloads: &Payloads,
    reducer: &Reducer,
) -> anyhow::Result<ReplayOutcome> {
    let captures: BTreeMap<&str, &pb::Nondeterminism> = state
        .nondeterminism
        .iter()
        .map(|c| (c.value.capture_id.as_str(), &c.value))
        .collect();
    let declared = declared_digests(state);
    // Payloads first: a wrong payload is reported before anything runs.
    let mut events = Vec::with_capacity(state.mutations.len());
    for (i, m) in state.mutations.iter().enumerate() {
        let diverge = |what: &str, expected: String, actual: String| Divergence {
            mutation_index: i,
            leaf_index: m.leaf_index,
            source: m.value.source.clone(),
            sequence: m.value.sequence,
            what: what.into(),
            expected,
            actual,
        };
        let Some(payload) = payloads.get(&m.value) else {
            return Ok(ReplayOutcome {
                mutations: i,
                digests_checked: 0,
                divergence: Some(diverge(
                    "payload_missing",
                    format!("a payload for {}", m.value.id),
                    "none given".into(),
                )),
            });
        };
        if !m.value.payload_digest.is_empty() {
            let actual =
                digest_like(&m.value.payload_digest, payload).map_err(anyhow::Error::msg)?;
            if actual != m.value.payload_digest {
                return Ok(ReplayOutcome {
                    mutations: i,
                    digests_checked: 0,
                    divergence: Some(diverge(
                        "payload_digest",
                        m.value.payload_digest.clone(),
                        actual,
                    )),
                });
            }
        }
        let mut caps = BTreeMap::new();
        for id in &m.value.captures {
            if let Some(c) = captures.get(id.as_str()) {
                caps.insert(id.clone(), (*c).clone());
            }
        }
        events.push(ReplayEvent {
            index: i,
            mutation: m.value.clone(),
            payload_base64: base64::engine::general_purpose::STANDARD.encode(payload),
            captures: caps,
        });
    }

    let mut command = Command::new("sh");
    command
        .arg("-c")
        .arg(&reducer.command)
        .envs(reducer.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(dir) = &reducer.cwd {
        command.current_dir(dir);
    }
    let mut child = command
        .spawn()
        .with_context(|| format!("cannot start the reducer {:?}", reducer.command))?;
    let mut stdin = child.stdin.take().context("reducer stdin")?;
    let mut stdout = BufReader::new(child.stdout.take().context("reducer stdout")?);
    let mut checked = 0;
    let mut divergence = None;
    let progress = Progress::bar(events.len() as u64, "replaying mutations");
    for (e, m) in events.iter().zip(&state.mutations) {
        progress.inc();
        writeln!(stdin, "{}", serde_json::to_string(e)?).context("the reducer stopped reading")?;
        stdin.flush().context("the reducer stopped reading")?;
        let mut line = String::new();
        if stdout
            .read_line(&mut line)
            .context("reading the reducer's answer")?
            == 0
        {
            bail!("the reducer exited before answering mutation {}", e.index);
        }
        let answer: ReducerLine = serde_json::from_str(&line).with_context(|| {
            format!("the reducer's answer {line:?} is not {{\"state_digest\": ...}}")
        })?;
        if let Some((_, expected)) = declared.get(&(m.value.source.clone(), m.value.sequence)) {
            checked += 1;
            if *expected != answer.state_digest {
                divergence = Some(Divergence {
                    mutation_index: e.index,
                    leaf_index: m.leaf_index,
                    source: m.value.source.clone(),
                    sequence: m.value.sequence,
                    what: "state_digest".into(),
                    expected: expected.clone(),
                    actual: answer.state_digest,
                });
                break;
            }
        }
    }
    drop(stdin);
    let _ = child.kill();
    let _ = child.wait();
    Ok(ReplayOutcome {
        mutations: events.len(),
        digests_checked: checked,
        divergence,
    })
}

pub fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let (_, summary) = super::verify::read_verified_state_proof(&args.proof, &args.trust)?;
    let payloads = Payloads::parse(
        &std::fs::read_to_string(&args.payloads)
            .with_context(|| format!("cannot read {} (--payloads)", args.payloads.display()))?,
    )?;
    let outcome = replay(&summary.state, &payloads, &Reducer::new(&args.reducer))?;
    if args.output.is_json() {
        super::output::json(&outcome)?;
        return Ok(exit_code(&outcome));
    }
    print_outcome(&outcome)
}

fn exit_code(outcome: &ReplayOutcome) -> ExitCode {
    match outcome.divergence {
        None => ExitCode::SUCCESS,
        Some(_) => ExitCode::from(1),
    }
}

/// Prints the outcome; the exit code is 1 on divergence.
pub fn print_outcome(outcome: &ReplayOutcome) -> anyhow::Result<ExitCode> {
    match &outcome.divergence {
        None => outln!(
            "replay OK: {} mutations replayed, {} recorded state digests match",
            outcome.mutations,
            outcome.digests_checked
        )?,
        Some(d) => outln!(
            "replay DIVERGED at mutation #{} (leaf {}, {}#{}): {} expected {}, actual {}",
            d.mutation_index,
            d.leaf_index,
            d.source,
            d.sequence,
            d.what,
            d.expected,
            d.actual
        )?,
    }
    Ok(exit_code(outcome))
}

/// The example application state: counts of order events and the discounts a seeded RNG gave.
#[derive(Debug, Default, Serialize)]
pub struct ExampleState {
    pub orders: u64,
    pub cancelled: u64,
    pub refunds: u64,
    pub discounts_percent: Vec<u64>,
    pub last_payload_bytes: u64,
}

impl ExampleState {
    /// Applies one event; returns the state digest after it.
    pub fn apply(&mut self, e: &ReplayEvent) -> String {
        match e.mutation.kind.as_str() {
            "order_created" => self.orders += 1,
            "order_cancelled" => self.cancelled += 1,
            "refund_issued" => self.refunds += 1,
            "discount_applied" => {
                // The discount comes from the captured seed: same seed, same discount.
                let seed = e.captures.values().find_map(|c| match &c.capture {
                    Some(pb::nondeterminism::Capture::Seed(s)) => Some(s.seed.clone()),
                    _ => None,
                });
                let mut input = seed.unwrap_or_default();
                input.extend_from_slice(&e.mutation.sequence.to_be_bytes());
                self.discounts_percent
                    .push(u64::from(blake3_byte(&input) % 16));
            }
            _ => {}
        }
        self.last_payload_bytes = base64::engine::general_purpose::STANDARD
            .decode(&e.payload_base64)
            .map_or(0, |b| b.len() as u64);
        use sha2::Digest as _;
        let json = serde_json::to_string(self).unwrap_or_default();
        format!(
            "sha256:{}",
            hex::encode(sha2::Sha256::digest(json.as_bytes()))
        )
    }
}

fn blake3_byte(input: &[u8]) -> u8 {
    stateledger_core::hash::Hash::of(input).0[0]
}

/// `stateledger example-reducer`: the reducer protocol over stdin/stdout with [`ExampleState`].
pub fn run_example_reducer() -> anyhow::Result<()> {
    let mut state = ExampleState::default();
    let stdin = std::io::stdin();
    let mut out = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let event: ReplayEvent = serde_json::from_str(&line).context("not a replay event")?;
        let digest = state.apply(&event);
        writeln!(out, "{}", serde_json::json!({ "state_digest": digest }))?;
        out.flush()?;
    }
    Ok(())
}
