//! Fuzz targets for everything StateLedger parses from outside, and a small driver that runs them
//! without libFuzzer (docs/SECURITY.md, "Fuzzing").
//!
//! Each target takes arbitrary bytes and must neither panic, hang nor allocate without bound,
//! whatever they are. The same functions run under cargo-fuzz (`fuzz/fuzz_targets/`, nightly,
//! coverage-guided) and under [`drive`] (stable: the corpus, then random mutations of it for a
//! while), which `tests/fuzz_smoke.rs` runs in the workspace's tests and `fuzz/src/bin/drive.rs`
//! runs from the command line. The corpus is seeded from `docs/test-vectors/` ([`seeds`]) and
//! kept in `fuzz/corpus/<target>/`.
//!
//! A library of the main workspace, so that the workspace's tests and the `fuzz/` crate (its own
//! workspace, built by cargo-fuzz with nightly and sanitizer flags) share one copy of the targets.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// The targets, by name.
pub mod targets {
    use std::sync::OnceLock;

    use prost::Message as _;
    use stateledger_core::checkpoint::Checkpoint;
    use stateledger_core::documents::Document;
    use stateledger_core::leaf::Leaf;
    use stateledger_core::note::{Note, NoteSigner, NoteVerifier};
    use stateledger_core::record::{decode_record, pb, CheckedRecord};
    use stateledger_core::trust::TrustPolicy;
    use stateledger_node::election::PreVoteRequest;
    use stateledger_node::ledger::blocks::split_leaves;
    use stateledger_node::raft::codec;
    use stateledger_node::raft::network::{SnapshotBegin, SnapshotFinish};
    use stateledger_node::raft::TypeConfig;
    use stateledger_node::store::wal::frame;

    /// The trust policy of docs/test-vectors (documents are verified against it).
    pub fn vector_policy() -> &'static TrustPolicy {
        static POLICY: OnceLock<TrustPolicy> = OnceLock::new();
        POLICY.get_or_init(|| {
            TrustPolicy::from_json(include_bytes!(
                "../../../docs/test-vectors/trust_policy.json"
            ))
            .expect("the vectors' trust policy parses")
        })
    }

    fn text(data: &[u8]) -> String {
        String::from_utf8_lossy(data).into_owned()
    }

    /// Valid binary inputs the test vectors do not hold (log file images, Raft payloads,
    /// snapshot chunks), made here so that they follow the code.
    pub fn generated(target: &str) -> Vec<Vec<u8>> {
        use openraft::raft::{AppendEntriesRequest, VoteRequest};
        use openraft::Vote;
        let mut out = Vec::new();
        match target {
            "wal_frame" => {
                let mut file = frame::FILE_MAGIC.to_vec();
                let mut at = 0;
                for (slot, ops) in [
                    (0u8, vec![(&b"vote"[..], Some(&b"term 3"[..]))]),
                    (
                        1,
                        vec![
                            (&b"log/1"[..], Some(&b"entry one"[..])),
                            (&b"log/0"[..], None),
                        ],
                    ),
                    (2, vec![(&b"meta"[..], Some(&[0u8; 40][..]))]),
                ] {
                    if let Ok((record, _)) = frame::encode_record(slot, &ops, at) {
                        at += record.len() as u64;
                        out.push(record.clone());
                        file.extend_from_slice(&record);
                    }
                }
                out.push(file);
            }
            "snapshot_stream" => {
                let mut chunk = Vec::new();
                for leaf in [&b"leaf zero"[..], b"", &[7u8; 100]] {
                    stateledger_node::ledger::blocks::push_leaf(&mut chunk, leaf);
                }
                out.push(chunk);
            }
            "grpc_messages" => {
                let heartbeat: AppendEntriesRequest<TypeConfig> = AppendEntriesRequest {
                    vote: Vote::new_committed(3, 1),
                    prev_log_id: None,
                    entries: Vec::new(),
                    leader_commit: None,
                };
                let vote = VoteRequest::<u64> {
                    vote: Vote::new(4, 2),
                    last_log_id: None,
                };
                let pre_vote = PreVoteRequest {
                    candidate: 2,
                    term: 4,
                    last_log_id: None,
                };
                for data in [
                    codec::encode("append", &heartbeat),
                    codec::encode("vote", &vote),
                    codec::encode("pre-vote", &pre_vote),
                ]
                .into_iter()
                .flatten()
                {
                    out.push(pb::RaftPayload { data: data.clone() }.encode_to_vec());
                    out.push(data);
                }
                out.push(pb::MemberRequest { node_id: 3 }.encode_to_vec());
                out.push(
                    pb::AddLearnerRequest {
                        node_id: 4,
                        name: "node-4".into(),
                        raft_addr: "127.0.0.1:7104".into(),
                        public_addr: "127.0.0.1:7004".into(),
                        checkpoint_key: "node-4+1234abcd+AAAA".into(),
                    }
                    .encode_to_vec(),
                );
            }
            _ => {}
        }
        out
    }

    /// Record bytes (validation), leaves (decoding and their record and signature), signed
    /// records as submitted.
    pub fn record(data: &[u8]) {
        let _ = decode_record(data);
        if let Ok(leaf) = Leaf::decode(data) {
            let _ = leaf.verify();
            let _ = Leaf::decode(&leaf.encode());
        }
        if let Ok(signed) = pb::SignedRecord::decode(data) {
            let _ = CheckedRecord::check(&signed);
        }
    }

    /// Signed notes and the checkpoint bodies they carry.
    pub fn note(data: &[u8]) {
        if let Ok(note) = Note::parse(data) {
            let _ = vector_policy().verify_checkpoint(&text(data));
            let _ = Checkpoint::parse(&note.text);
        }
        let _ = Checkpoint::parse(&text(data));
    }

    /// Key texts (verifier and signer) and trust policy files.
    pub fn keys_and_policy(data: &[u8]) {
        let t = text(data);
        let _ = NoteVerifier::parse(&t);
        let _ = NoteSigner::parse(&t);
        if let Ok(policy) = TrustPolicy::from_json(data) {
            let _ = policy.to_file();
        }
    }

    /// The JSON documents: receipts, consistency proofs, state proofs (parsed and verified).
    pub fn documents(data: &[u8]) {
        if let Ok(document) = Document::parse(data) {
            let _ = document.verify(vector_policy());
        }
    }

    /// The Raft log file's frames (a whole file image, and records at every offset).
    pub fn wal_frame(data: &[u8]) {
        let _ = frame::recover(data);
        let mut file = frame::FILE_MAGIC.to_vec();
        file.extend_from_slice(data);
        let _ = frame::recover(&file);
        for at in 0..data.len().min(64) {
            let _ = frame::parse_at(data, at);
        }
    }

    /// The snapshot stream: chunk leaves and their leaves, begin and finish messages.
    pub fn snapshot_stream(data: &[u8]) {
        if let Ok(leaves) = split_leaves(data) {
            for leaf in leaves {
                let _ = Leaf::decode(leaf);
            }
        }
        let _ = codec::decode::<SnapshotBegin>("snapshot begin", data);
        let _ = codec::decode::<SnapshotFinish>("snapshot finish", data);
    }

    /// Every request message the node accepts (protobuf), and the Raft payloads inside the
    /// cluster port's `RaftPayload` (postcard).
    pub fn grpc_messages(data: &[u8]) {
        if let Ok(submit) = pb::SubmitRequest::decode(data) {
            for signed in &submit.records {
                let _ = CheckedRecord::check(signed);
            }
        }
        let _ = pb::GetEntryRequest::decode(data);
        let _ = pb::GetReceiptRequest::decode(data);
        let _ = pb::GetCheckpointRequest::decode(data);
        let _ = pb::GetConsistencyProofRequest::decode(data);
        let _ = pb::ListSystemEntriesRequest::decode(data);
        let _ = pb::ListSystemsNearRequest::decode(data);
        let _ = pb::GetSystemHistoryRequest::decode(data);
        let _ = pb::StatusRequest::decode(data);
        let _ = pb::SnapshotChunkRequest::decode(data);
        if let Ok(c) = pb::CosignRequest::decode(data) {
            let _ = Checkpoint::parse(&c.checkpoint);
        }
        let _ = pb::HealthRequest::decode(data);
        let _ = pb::AddLearnerRequest::decode(data);
        let _ = pb::MemberRequest::decode(data);
        let payload = pb::RaftPayload::decode(data).map_or_else(|_| data.to_vec(), |p| p.data);
        let _ =
            codec::decode::<openraft::raft::AppendEntriesRequest<TypeConfig>>("append", &payload);
        let _ = codec::decode::<openraft::raft::VoteRequest<u64>>("vote", &payload);
        let _ = codec::decode::<PreVoteRequest>("pre-vote", &payload);
    }
}

/// `SubmitRequest`s (one per vector case) from signed_records.json.
fn signed_record_requests(json: &[u8]) -> Vec<Vec<u8>> {
    use prost::Message as _;
    use stateledger_core::record::pb;
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(json) else {
        return Vec::new();
    };
    let field = |c: &serde_json::Value, k: &str| {
        c.get(k)
            .and_then(|x| x.as_str())
            .and_then(base64_decode)
            .unwrap_or_default()
    };
    v.get("cases")
        .and_then(|c| c.as_array())
        .map(|cases| {
            cases
                .iter()
                .map(|c| {
                    pb::SubmitRequest {
                        records: vec![pb::SignedRecord {
                            record: field(c, "record"),
                            writer_key: field(c, "writer_key"),
                            signature: field(c, "signature"),
                        }],
                    }
                    .encode_to_vec()
                })
                .collect()
        })
        .unwrap_or_default()
}

/// One target: its name and body.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    pub name: &'static str,
    pub run: fn(&[u8]),
}

/// Every target.
pub const TARGETS: &[Target] = &[
    Target {
        name: "record",
        run: targets::record,
    },
    Target {
        name: "note",
        run: targets::note,
    },
    Target {
        name: "keys_and_policy",
        run: targets::keys_and_policy,
    },
    Target {
        name: "documents",
        run: targets::documents,
    },
    Target {
        name: "wal_frame",
        run: targets::wal_frame,
    },
    Target {
        name: "snapshot_stream",
        run: targets::snapshot_stream,
    },
    Target {
        name: "grpc_messages",
        run: targets::grpc_messages,
    },
];

/// A case that took longer than this is reported as a hang.
pub const CASE_TIME_MAX: Duration = Duration::from_secs(2);
/// Largest input the driver makes.
pub const INPUT_BYTES_MAX: usize = 64 * 1024;

/// Every string value of a JSON document, recursively.
fn json_strings(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::String(s) => out.push(s.clone()),
        serde_json::Value::Array(a) => a.iter().for_each(|x| json_strings(x, out)),
        serde_json::Value::Object(o) => o.values().for_each(|x| json_strings(x, out)),
        _ => {}
    }
}

fn base64_decode(s: &str) -> Option<Vec<u8>> {
    // A tiny standard-alphabet decoder, so the driver needs no base64 crate.
    let mut out = Vec::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for c in s.bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            b'=' => break,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// Seeds for `target` from the test vectors under `root` (the repository): whole documents,
/// the strings inside them, and the bytes their base64 strings hold. Plus `fuzz/corpus/<target>/`.
pub fn seeds(root: &Path, target: &str) -> Vec<Vec<u8>> {
    let vectors = root.join("docs/test-vectors");
    let files: &[&str] = match target {
        "record" | "grpc_messages" | "snapshot_stream" => &["signed_records.json", "receipts.json"],
        "note" => &["checkpoints.json", "receipts.json"],
        "keys_and_policy" => &["trust_policy.json", "checkpoints.json"],
        "documents" => &[
            "receipts.json",
            "consistency_documents.json",
            "state_proofs.json",
        ],
        _ => &[],
    };
    let mut out: Vec<Vec<u8>> = Vec::new();
    for f in files {
        let Ok(bytes) = std::fs::read(vectors.join(f)) else {
            continue;
        };
        if target == "keys_and_policy" && *f == "trust_policy.json" {
            out.push(bytes.clone());
        }
        let Ok(json) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
            continue;
        };
        let mut strings = Vec::new();
        json_strings(&json, &mut strings);
        for s in strings.into_iter().take(400) {
            if let Some(b) = base64_decode(&s).filter(|b| b.len() >= 8) {
                out.push(b);
            }
            out.push(s.into_bytes());
        }
    }
    if target == "grpc_messages" || target == "record" {
        // Submit requests holding the vectors' signed records.
        if let Ok(bytes) = std::fs::read(vectors.join("signed_records.json")) {
            out.extend(signed_record_requests(&bytes));
        }
    }
    out.extend(targets::generated(target));
    let corpus = root.join("fuzz/corpus").join(target);
    if let Ok(dir) = std::fs::read_dir(&corpus) {
        let mut paths: Vec<PathBuf> = dir.filter_map(|e| e.ok().map(|e| e.path())).collect();
        paths.sort();
        out.extend(paths.iter().filter_map(|p| std::fs::read(p).ok()));
    }
    if out.is_empty() {
        out.push(Vec::new());
    }
    out.retain(|s| s.len() <= INPUT_BYTES_MAX);
    out
}

/// A small deterministic generator (xorshift64*): the driver's runs replay from their seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next_u64() % n as u64) as usize
        }
    }
}

/// One random change to `input` (bit flip, byte set, insert, delete, truncate, duplicate a
/// slice, splice from another seed, or an interesting integer).
pub fn mutate(rng: &mut Rng, input: &mut Vec<u8>, other: &[u8]) {
    const INTERESTING: &[u8] = &[0, 1, 0x7f, 0x80, 0xff, 0x0a, 0x22, 0x5c];
    let len = input.len();
    match rng.below(9) {
        0 if len > 0 => {
            let i = rng.below(len);
            input[i] ^= 1 << rng.below(8);
        }
        1 if len > 0 => {
            let i = rng.below(len);
            input[i] = INTERESTING[rng.below(INTERESTING.len())];
        }
        2 => {
            let i = rng.below(len + 1);
            input.insert(i, rng.next_u64() as u8);
        }
        3 if len > 0 => {
            let i = rng.below(len);
            let n = rng.below(len - i).min(16) + 1;
            input.drain(i..(i + n).min(len));
        }
        4 => input.truncate(rng.below(len + 1)),
        5 if len > 0 => {
            let i = rng.below(len);
            let n = rng.below(len - i) + 1;
            let slice = input[i..i + n].to_vec();
            let at = rng.below(len + 1);
            input.splice(at..at, slice);
        }
        6 if !other.is_empty() => {
            let i = rng.below(other.len());
            let n = rng.below(other.len() - i) + 1;
            let at = rng.below(len + 1);
            input.splice(at..at, other[i..i + n].iter().copied());
        }
        7 if len >= 4 => {
            // A length-like field: four bytes set to a large value.
            let i = rng.below(len - 3);
            input[i..i + 4].copy_from_slice(&[0xff, 0xff, 0xff, 0x7f]);
        }
        _ => {
            let i = rng.below(len + 1);
            input.insert(i, INTERESTING[rng.below(INTERESTING.len())]);
        }
    }
    input.truncate(INPUT_BYTES_MAX);
}

/// What a drive did.
#[derive(Debug, Clone, Default)]
pub struct Report {
    pub cases: u64,
    pub seeds: usize,
}

/// Why a drive failed: the input that crashed or hung the target.
#[derive(Debug, Clone)]
pub struct Failure {
    pub target: &'static str,
    pub input: Vec<u8>,
    pub what: String,
}

/// Runs `target` on its seeds, then on random mutations of them until `duration` has passed.
/// The same `rng_seed` gives the same inputs. Panics are caught and returned with the input.
pub fn drive(
    root: &Path,
    target: &Target,
    duration: Duration,
    rng_seed: u64,
) -> Result<Report, Failure> {
    let seeds = seeds(root, target.name);
    let run_one = |input: &[u8]| -> Result<(), Failure> {
        let started = Instant::now();
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (target.run)(input)));
        let took = started.elapsed();
        match outcome {
            Err(panic) => {
                let what = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "a panic".into());
                Err(Failure {
                    target: target.name,
                    input: input.to_vec(),
                    what: format!("panicked: {what}"),
                })
            }
            Ok(()) if took > CASE_TIME_MAX => Err(Failure {
                target: target.name,
                input: input.to_vec(),
                what: format!("took {took:?} (more than {CASE_TIME_MAX:?})"),
            }),
            Ok(()) => Ok(()),
        }
    };
    let mut report = Report {
        cases: 0,
        seeds: seeds.len(),
    };
    for s in &seeds {
        run_one(s)?;
        report.cases += 1;
    }
    let mut rng = Rng::new(rng_seed);
    let deadline = Instant::now() + duration;
    while Instant::now() < deadline {
        let mut input = seeds[rng.below(seeds.len())].clone();
        let other = &seeds[rng.below(seeds.len())];
        for _ in 0..=rng.below(8) {
            mutate(&mut rng, &mut input, other);
        }
        run_one(&input)?;
        report.cases += 1;
    }
    Ok(report)
}

/// Runs every target for `per_target`, with the panic message hook silenced while it runs.
/// Returns each target's report, or the first failure.
pub fn drive_all(
    root: &Path,
    per_target: Duration,
    rng_seed: u64,
) -> Result<Vec<(&'static str, Report)>, Failure> {
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let mut out = Vec::new();
    let mut result = Ok(());
    for t in TARGETS {
        match drive(root, t, per_target, rng_seed) {
            Ok(r) => out.push((t.name, r)),
            Err(f) => {
                result = Err(f);
                break;
            }
        }
    }
    std::panic::set_hook(hook);
    result.map(|()| out)
}

/// Writes a failing input to `fuzz/artifacts/<target>/` and returns its path.
pub fn save_failure(root: &Path, failure: &Failure) -> std::io::Result<PathBuf> {
    let dir = root.join("fuzz/artifacts").join(failure.target);
    std::fs::create_dir_all(&dir)?;
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in &failure.input {
        h = (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3);
    }
    let path = dir.join(format!("crash-{h:016x}"));
    std::fs::write(&path, &failure.input)?;
    Ok(path)
}
