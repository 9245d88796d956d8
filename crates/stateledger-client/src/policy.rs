//! Policy records: an admin grants (or revokes) a writer the right to append records for a
//! system. Sign them with an admin key of the cluster (`cluster.admin_keys` in the node
//! configs; `keys/admin.key` of `stateledger dev`) and submit them like any record.

use stateledger_core::note::NoteVerifier;
use stateledger_core::record::{pb, Body};

/// The record granting `writer` the right to append records for `system`, observed at
/// `observed_at_unix_nanos`.
pub fn grant(system: &str, writer: &NoteVerifier, observed_at_unix_nanos: u64) -> pb::Record {
    record(
        system,
        pb::policy::Change::Grant(writer_grant(writer)),
        observed_at_unix_nanos,
    )
}

/// The record withdrawing a grant.
pub fn revoke(system: &str, writer: &NoteVerifier, observed_at_unix_nanos: u64) -> pb::Record {
    record(
        system,
        pb::policy::Change::Revoke(writer_grant(writer)),
        observed_at_unix_nanos,
    )
}

fn writer_grant(writer: &NoteVerifier) -> pb::WriterGrant {
    pb::WriterGrant {
        writer_key: writer.key.to_bytes().to_vec(),
        writer_name: writer.name.clone(),
    }
}

fn record(system: &str, change: pb::policy::Change, observed_at_unix_nanos: u64) -> pb::Record {
    pb::Record {
        system: system.to_string(),
        scope: String::new(),
        observed_at_unix_nanos,
        body: Some(Body::Policy(pb::Policy {
            change: Some(change),
        })),
    }
}

#[cfg(test)]
mod tests {
    use stateledger_core::note::NoteSigner;
    use stateledger_core::record::decode_record;

    use super::*;

    #[test]
    fn grants_and_revocations_are_valid_records() {
        use prost::Message as _;
        let writer = NoteSigner::from_seed("orders-collector", &[5; 32])
            .expect("a valid name")
            .verifier();
        for r in [
            grant("orders-service", &writer, 1),
            revoke("orders-service", &writer, 2),
        ] {
            decode_record(&r.encode_to_vec()).expect("the ledger accepts it");
        }
    }
}
