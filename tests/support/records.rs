//! Records, writer keys and signatures.

use prost::Message as _;
use stateledger_core::note::NoteSigner;
use stateledger_core::record::{pb, sign_record, Body, CheckedRecord};

/// A writer key with a fresh random seed.
pub fn writer_key(name: &str) -> NoteSigner {
    NoteSigner::from_seed(name, &rand::random::<[u8; 32]>()).expect("valid key name")
}

fn now_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .expect("the clock is after 1970")
}

/// A valid mutation record of `system` whose id is `id` (ids make records unique).
pub fn mutation(system: &str, id: &str, sequence: u64) -> pb::Record {
    pb::Record {
        system: system.to_string(),
        scope: "e2e".to_string(),
        observed_at_unix_nanos: now_nanos(),
        body: Some(Body::Mutation(pb::Mutation {
            kind: "order_created".to_string(),
            id: id.to_string(),
            source: "kafka:orders/0".to_string(),
            sequence: sequence.max(1),
            ..Default::default()
        })),
    }
}

/// A policy record granting `writer` the right to append for `system` (to be signed by the
/// admin key).
pub fn grant(system: &str, writer: &NoteSigner) -> pb::Record {
    pb::Record {
        system: system.to_string(),
        scope: String::new(),
        observed_at_unix_nanos: now_nanos(),
        body: Some(Body::Policy(pb::Policy {
            change: Some(pb::policy::Change::Grant(pb::WriterGrant {
                writer_key: writer.verifier().key.to_bytes().to_vec(),
                writer_name: writer.name.clone(),
            })),
        })),
    }
}

/// A validated, signed record.
pub fn signed(record: pb::Record, key: &NoteSigner) -> CheckedRecord {
    CheckedRecord::sign(record, key.signing_key()).expect("the test record is valid")
}

/// Signs the canonical encoding of `record` without validating it: for records the node must
/// refuse.
pub fn signed_unchecked(record: &pb::Record, key: &NoteSigner) -> pb::SignedRecord {
    let bytes = record.encode_to_vec();
    let signature = sign_record(key.signing_key(), &bytes);
    pb::SignedRecord {
        record: bytes,
        writer_key: key.verifier().key.to_bytes().to_vec(),
        signature: signature.to_vec(),
    }
}

/// A `blake3:<hex>` digest of `text`, in the record format.
pub fn digest(text: &str) -> String {
    format!("blake3:{}", blake3::hash(text.as_bytes()).to_hex())
}

fn record(system: &str, body: Body) -> pb::Record {
    pb::Record {
        system: system.to_string(),
        scope: "e2e".to_string(),
        observed_at_unix_nanos: now_nanos(),
        body: Some(body),
    }
}

/// A code record: commit `commit` (one hex character repeated), requiring `required_config`.
pub fn code(system: &str, commit: char, required_config: &[&str]) -> pb::Record {
    record(
        system,
        Body::Code(pb::CodeState {
            repo: format!("github.com/acme/{system}"),
            commit: commit.to_string().repeat(40),
            reference: "refs/heads/main".to_string(),
            artifacts: vec![pb::Artifact {
                name: format!("{system}.bin"),
                digest: digest(&format!("{system} {commit}")),
            }],
            required_config: {
                let mut keys: Vec<String> = required_config.iter().map(|k| k.to_string()).collect();
                keys.sort_unstable();
                keys
            },
            ..Default::default()
        }),
    )
}

/// A complete configuration snapshot holding `keys`, each with a value derived from `version`.
pub fn config(system: &str, version: &str, keys: &[&str]) -> pb::Record {
    let mut keys = keys.to_vec();
    keys.sort_unstable();
    let entries = keys
        .iter()
        .map(|key| {
            let value = format!("{key}={version}");
            pb::ConfigEntry {
                key: key.to_string(),
                source: "file".to_string(),
                digest: digest(&value),
                size: value.len() as u64,
                ..Default::default()
            }
        })
        .collect();
    record(
        system,
        Body::Config(pb::ConfigSnapshot {
            version: version.to_string(),
            complete: true,
            entries,
        }),
    )
}

/// An environment record on kernel `kernel`.
pub fn environment(system: &str, kernel: &str) -> pb::Record {
    record(
        system,
        Body::Environment(pb::EnvironmentState {
            os: "linux".to_string(),
            kernel: kernel.to_string(),
            arch: "x86_64".to_string(),
            time_source: Some(pb::TimeSource {
                kind: "chrony".to_string(),
                synchronized: true,
                max_error_nanos: 1_000_000,
            }),
            ..Default::default()
        }),
    )
}

/// Mutation `sequence` of source `source`, depending on the captures `captures`.
pub fn mutation_of(system: &str, source: &str, sequence: u64, captures: &[&str]) -> pb::Record {
    record(
        system,
        Body::Mutation(pb::Mutation {
            kind: "order_created".to_string(),
            id: format!("{source}#{sequence}"),
            source: source.to_string(),
            sequence,
            origin: "checkout-api".to_string(),
            payload_digest: digest(&format!("payload {sequence}")),
            captures: captures.iter().map(|c| c.to_string()).collect(),
            ..Default::default()
        }),
    )
}

/// A captured random seed with id `capture_id`.
pub fn seed(system: &str, capture_id: &str) -> pb::Record {
    record(
        system,
        Body::Nondeterminism(pb::Nondeterminism {
            capture_id: capture_id.to_string(),
            capture: Some(pb::nondeterminism::Capture::Seed(pb::RandomSeed {
                name: "discount-lottery".to_string(),
                seed: capture_id.as_bytes().to_vec(),
            })),
        }),
    )
}
