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
