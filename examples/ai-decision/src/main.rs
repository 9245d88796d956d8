//! `ai-decision`: the credit-decision service of the AI-decision audit (README.md here).
//!
//! - `ai-decision decide` answers credit requests with the tiny model (`model.rs`) and writes,
//!   beside each decision, what StateLedger records about it: one mutation line per request (the
//!   input of `stateledger collect mutations --jsonl`: the payload, its Kafka coordinates and the
//!   capture of the sampling seed it used) and one state digest record per decision (the SHA-256
//!   of the decision's bytes, for `stateledger submit`).
//! - `ai-decision reduce` is the same model behind the reducer protocol of `stateledger replay`
//!   (`stateledger replay --help`): one event per request on standard input, the digest of the
//!   reproduced decision on standard output, and the decision itself written to `--out`.

mod model;

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use base64::Engine as _;
use clap::Parser;
use serde_json::json;
use sha2::{Digest as _, Sha256};

use model::{Model, Params, Request};

#[derive(Parser, Debug)]
#[command(
    name = "ai-decision",
    about = "A tiny deterministic credit-decision model, audited with StateLedger"
)]
enum Cli {
    /// Decide every request in --requests and write the decisions and what to record.
    Decide {
        #[command(flatten)]
        inputs: Inputs,
        /// The sampling seed, in hex (captured with `stateledger collect capture seed`).
        #[arg(long)]
        seed_hex: String,
        /// The capture id of the seed, listed in each mutation's captures.
        #[arg(long, default_value = "sampling-seed")]
        capture_id: String,
        /// The system the state digest records belong to.
        #[arg(long)]
        system: String,
        /// Directory of request files (JSON), decided in name order.
        #[arg(long)]
        requests: PathBuf,
        /// Write mutation lines (for `stateledger collect mutations --jsonl`) here.
        #[arg(long)]
        mutations: PathBuf,
        /// Write state digest records (for `stateledger submit`) here.
        #[arg(long)]
        state_digests: PathBuf,
    },
    /// The reducer protocol of `stateledger replay`, reproducing each decision.
    Reduce {
        #[command(flatten)]
        inputs: Inputs,
    },
}

/// What the model needs besides the seed and the request.
#[derive(clap::Args, Debug)]
struct Inputs {
    /// The model file.
    #[arg(long)]
    model: PathBuf,
    /// The prompt template.
    #[arg(long)]
    template: PathBuf,
    /// The sampling parameters (TOML: temperature, max_tokens).
    #[arg(long)]
    params: PathBuf,
    /// Write each decision to DIR/<request id>.json.
    #[arg(long)]
    out: PathBuf,
}

/// The mutation source (and Kafka topic) of the requests.
const SOURCE: &str = "kafka:credit-requests/0";
const TOPIC: &str = "credit-requests";

struct Loaded {
    model: Model,
    template: String,
    params: Params,
}

fn read(path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

impl Inputs {
    fn load(&self) -> Result<Loaded, String> {
        let model = Model::parse(&read(&self.model)?)?;
        let template = String::from_utf8(read(&self.template)?)
            .map_err(|_| format!("{} is not UTF-8", self.template.display()))?;
        let params_text = String::from_utf8(read(&self.params)?)
            .map_err(|_| format!("{} is not UTF-8", self.params.display()))?;
        let params: Params =
            toml::from_str(&params_text).map_err(|e| format!("{}: {e}", self.params.display()))?;
        std::fs::create_dir_all(&self.out)
            .map_err(|e| format!("cannot create {}: {e}", self.out.display()))?;
        Ok(Loaded {
            model,
            template,
            params,
        })
    }
}

fn sha256(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// A file name for a request id (ids are the service's own, but keep them to one component).
fn decision_file(out: &Path, id: &str) -> PathBuf {
    let safe: String = id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect();
    out.join(format!("{safe}.json"))
}

fn decide(
    inputs: &Inputs,
    seed_hex: &str,
    capture_id: &str,
    system: &str,
    requests: &Path,
    mutations: &Path,
    state_digests: &Path,
) -> Result<(), String> {
    let loaded = inputs.load()?;
    let seed = hex::decode(seed_hex.trim()).map_err(|e| format!("--seed-hex: {e}"))?;
    let mut files: Vec<PathBuf> = std::fs::read_dir(requests)
        .map_err(|e| format!("cannot read {}: {e}", requests.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let (mut mutation_lines, mut digest_lines) = (String::new(), String::new());
    for (i, path) in files.iter().enumerate() {
        let payload = read(path)?;
        let request: Request = serde_json::from_slice(&payload)
            .map_err(|e| format!("{} is not a request: {e}", path.display()))?;
        let output = loaded
            .model
            .decide(&loaded.template, &loaded.params, &seed, &request);
        std::fs::write(decision_file(&inputs.out, &request.id), &output)
            .map_err(|e| format!("cannot write the decision: {e}"))?;
        let sequence = i as u64 + 1;
        mutation_lines.push_str(
            &json!({
                "kind": "credit_decision_requested",
                "id": request.id,
                "source": SOURCE,
                "sequence": sequence,
                "origin": "loan-portal",
                "payload_base64": base64::engine::general_purpose::STANDARD.encode(&payload),
                "kafka": {"topic": TOPIC, "partition": 0, "offset": i},
                "captures": [capture_id],
            })
            .to_string(),
        );
        mutation_lines.push('\n');
        digest_lines.push_str(
            &json!({
                "system": system,
                "observed_at_unix_nanos": now_nanos(),
                "body": {"state_digest": {"source": SOURCE, "sequence": sequence, "digest": sha256(&output)}},
            })
            .to_string(),
        );
        digest_lines.push('\n');
    }
    std::fs::write(mutations, mutation_lines)
        .map_err(|e| format!("cannot write {}: {e}", mutations.display()))?;
    std::fs::write(state_digests, digest_lines)
        .map_err(|e| format!("cannot write {}: {e}", state_digests.display()))?;
    Ok(())
}

/// The seed among an event's captures: `{"<id>": {"capture_id", "capture": {"seed": {"seed": <base64>}}}}`.
fn seed_of(event: &serde_json::Value) -> Option<Vec<u8>> {
    event["captures"].as_object()?.values().find_map(|c| {
        let b64 = c["capture"]["seed"]["seed"].as_str()?;
        base64::engine::general_purpose::STANDARD.decode(b64).ok()
    })
}

fn reduce(inputs: &Inputs) -> Result<(), String> {
    let loaded = inputs.load()?;
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout().lock();
    for line in stdin.lock().lines() {
        let line = line.map_err(|e| format!("reading events: {e}"))?;
        if line.trim().is_empty() {
            continue;
        }
        let event: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| format!("not an event: {e}"))?;
        let payload = base64::engine::general_purpose::STANDARD
            .decode(event["payload_base64"].as_str().unwrap_or_default())
            .map_err(|e| format!("payload_base64: {e}"))?;
        let request: Request = serde_json::from_slice(&payload)
            .map_err(|e| format!("the payload is not a request: {e}"))?;
        let seed = seed_of(&event).ok_or_else(|| {
            format!(
                "request {:?} comes without its sampling seed: it cannot be reproduced",
                request.id
            )
        })?;
        let output = loaded
            .model
            .decide(&loaded.template, &loaded.params, &seed, &request);
        std::fs::write(decision_file(&inputs.out, &request.id), &output)
            .map_err(|e| format!("cannot write the decision: {e}"))?;
        writeln!(stdout, "{}", json!({"state_digest": sha256(&output)}))
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("cannot answer: {e}"))?;
    }
    Ok(())
}

fn main() -> ExitCode {
    let result = match Cli::parse() {
        Cli::Decide {
            inputs,
            seed_hex,
            capture_id,
            system,
            requests,
            mutations,
            state_digests,
        } => decide(
            &inputs,
            &seed_hex,
            &capture_id,
            &system,
            &requests,
            &mutations,
            &state_digests,
        ),
        Cli::Reduce { inputs } => reduce(&inputs),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let _ = writeln!(std::io::stderr(), "ai-decision: {e}");
            ExitCode::from(2)
        }
    }
}
