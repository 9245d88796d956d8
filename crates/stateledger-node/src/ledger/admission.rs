//! Admission: the rules that decide whether a group of records may be appended — each record
//! valid, new, and signed by a writer allowed to write it. Pure: it reads the ledger only
//! through the grants, the admin keys and a duplicate lookup it is given, and so the leader's
//! early check (`Ledger::precheck`) and every node's apply run the very same rules.

use std::collections::{HashMap, HashSet};

use serde::{Deserialize, Serialize};
use stateledger_core::heads::SystemKey;
use stateledger_core::record::{decode_record, pb, Body};

use crate::store::StoreError;

/// Which writer may write which system: (system, writer key) → granted (false: revoked).
pub(crate) type Grants = HashMap<(SystemKey, [u8; 32]), bool>;

/// Why a group was refused: what is wrong with the record at its position. The submitter is at
/// fault, except for [`Refusal::BadSignature`], which only a faulty leader proposes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Refusal {
    /// The same record bytes are already in the ledger at `index` (None: repeated within the
    /// request itself).
    #[error("duplicate record (already at leaf {index:?})")]
    Duplicate { index: Option<u64> },
    /// The writer may not write this record.
    #[error(transparent)]
    Unauthorized(Unauthorized),
    /// The record is invalid (not expected: the leader checks before proposing).
    #[error(transparent)]
    Invalid(InvalidRecord),
    /// A record's signature does not verify: the leader proposed it without checking it (never
    /// expected; every node refuses it at apply and keeps the entry as evidence).
    #[error("{reason}")]
    BadSignature { reason: String },
}

/// Why a writer may not write a record.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum Unauthorized {
    #[error("the ledger has no genesis yet")]
    NoGenesis,
    #[error("writer {} is not an admin key: policy records must be signed by an admin key of the cluster", hex::encode(writer))]
    NotAdmin { writer: [u8; 32] },
    #[error("writer {} holds no grant for system {system:?}: an admin must grant it with a policy record", hex::encode(writer))]
    NoGrant { writer: [u8; 32], system: String },
}

/// Why a record is invalid.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[non_exhaustive]
pub enum InvalidRecord {
    /// The record does not decode or breaks a field rule (the core's reason).
    #[error("{reason}")]
    Record { reason: String },
    #[error("signature is not 64 bytes")]
    SignatureLength { len: usize },
}

/// A record as submitted, seen by the rules.
pub(crate) struct Submitted<'a> {
    pub record: &'a [u8],
    pub signature: &'a [u8],
    pub writer_key: &'a [u8; 32],
}

/// A record of a group that passed the checks.
pub(crate) struct Admitted {
    pub record: pb::Record,
    pub key: SystemKey,
    pub short_hash: [u8; 16],
    pub signature: [u8; 64],
}

/// Why the rules do not admit a group: nothing of it may be appended.
pub(crate) enum Rejected {
    /// Every record was already in the ledger (a retried request): their indexes.
    AllDuplicates(Vec<u64>),
    Refused {
        position: usize,
        refusal: Refusal,
    },
}

/// The record-hash of `record_bytes`: BLAKE3 in full, and its first 16 bytes (the index key).
pub(crate) fn record_key(record_bytes: &[u8]) -> ([u8; 32], [u8; 16]) {
    let full = *blake3::hash(record_bytes).as_bytes();
    let mut short = [0u8; 16];
    short.copy_from_slice(&full[..16]);
    (full, short)
}

/// Checks a group: every record valid, new and authorized (grants earlier in the group count
/// for later records). `admin_keys`: the genesis' (None: no genesis yet). `find` says where
/// record bytes already are in the ledger; its storage errors are returned as they are.
/// Admitted, the records in order.
pub(crate) fn check_group(
    admin_keys: Option<&[[u8; 32]]>,
    grants: &Grants,
    group: &[Submitted<'_>],
    mut find: impl FnMut(&[u8]) -> Result<Option<u64>, StoreError>,
) -> Result<Result<Vec<Admitted>, Rejected>, StoreError> {
    let refuse =
        |position: usize, refusal: Refusal| Ok(Err(Rejected::Refused { position, refusal }));
    let mut overlay = Grants::new();
    let mut seen: HashSet<[u8; 32]> = HashSet::new();
    let mut existing: Vec<(usize, u64)> = Vec::new();
    let mut admitted = Vec::with_capacity(group.len());
    for (position, r) in group.iter().enumerate() {
        let record = match decode_record(r.record) {
            Ok(record) => record,
            Err(e) => {
                let reason = e.to_string();
                return refuse(position, Refusal::Invalid(InvalidRecord::Record { reason }));
            }
        };
        let Ok(signature) = <[u8; 64]>::try_from(r.signature) else {
            let len = r.signature.len();
            return refuse(
                position,
                Refusal::Invalid(InvalidRecord::SignatureLength { len }),
            );
        };
        let (full, short) = record_key(r.record);
        if !seen.insert(full) {
            return refuse(position, Refusal::Duplicate { index: None });
        }
        if let Some(index) = find(r.record)? {
            existing.push((position, index));
            continue;
        }
        let key = SystemKey::of(&record.system);
        if let Err(e) = authorize(admin_keys, grants, &overlay, &key, &record, r.writer_key) {
            return refuse(position, Refusal::Unauthorized(e));
        }
        if let Some(Body::Policy(p)) = &record.body {
            if let Some((writer, granted)) = grant_change(p) {
                overlay.insert((key, writer), granted);
            }
        }
        admitted.push(Admitted {
            record,
            key,
            short_hash: short,
            signature,
        });
    }
    if let Some((position, index)) = existing.first().copied() {
        if existing.len() == group.len() {
            return Ok(Err(Rejected::AllDuplicates(
                existing.iter().map(|(_, i)| *i).collect(),
            )));
        }
        return refuse(position, Refusal::Duplicate { index: Some(index) });
    }
    Ok(Ok(admitted))
}

/// The grant or revocation a policy record makes: (writer key, granted).
pub(crate) fn grant_change(policy: &pb::Policy) -> Option<([u8; 32], bool)> {
    use pb::policy::Change;
    let (grant, granted) = match &policy.change {
        Some(Change::Grant(g)) => (g, true),
        Some(Change::Revoke(g)) => (g, false),
        None => return None,
    };
    let writer = <[u8; 32]>::try_from(grant.writer_key.as_slice()).ok()?;
    Some((writer, granted))
}

/// Whether `writer` may append `record` for the system with key `key` (`overlay`: grants made
/// earlier in the same request).
fn authorize(
    admin_keys: Option<&[[u8; 32]]>,
    grants: &Grants,
    overlay: &Grants,
    key: &SystemKey,
    record: &pb::Record,
    writer: &[u8; 32],
) -> Result<(), Unauthorized> {
    let Some(admin_keys) = admin_keys else {
        return Err(Unauthorized::NoGenesis);
    };
    if let Some(Body::Policy(_)) = &record.body {
        if admin_keys.contains(writer) {
            return Ok(());
        }
        return Err(Unauthorized::NotAdmin { writer: *writer });
    }
    let granted = overlay
        .get(&(*key, *writer))
        .or_else(|| grants.get(&(*key, *writer)))
        .copied()
        .unwrap_or(false);
    if granted {
        Ok(())
    } else {
        Err(Unauthorized::NoGrant {
            writer: *writer,
            system: record.system.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use stateledger_core::note::NoteSigner;
    use stateledger_core::record::CheckedRecord;

    use super::*;

    fn signed(system: &str, body: Body, key: &NoteSigner) -> (Vec<u8>, Vec<u8>, [u8; 32]) {
        let record = pb::Record {
            system: system.into(),
            scope: "test".into(),
            observed_at_unix_nanos: 1_700_000_000_000_000_000,
            body: Some(body),
        };
        let s = CheckedRecord::sign(record, key.signing_key()).expect("valid record");
        (s.bytes, s.signature.to_vec(), s.writer_key.0)
    }

    fn mutation(id: &str) -> Body {
        Body::Mutation(pb::Mutation {
            kind: "order_created".into(),
            id: id.into(),
            source: "kafka:orders/0".into(),
            sequence: 1,
            ..Default::default()
        })
    }

    fn grant(writer: &NoteSigner) -> Body {
        Body::Policy(pb::Policy {
            change: Some(pb::policy::Change::Grant(pb::WriterGrant {
                writer_key: writer.verifier().key.to_bytes().to_vec(),
                writer_name: "writer".into(),
            })),
        })
    }

    fn check(
        admin: Option<&[[u8; 32]]>,
        grants: &Grants,
        records: &[(Vec<u8>, Vec<u8>, [u8; 32])],
        existing: Option<u64>,
    ) -> Result<usize, (usize, Refusal)> {
        let group: Vec<Submitted<'_>> = records
            .iter()
            .map(|(record, signature, writer_key)| Submitted {
                record,
                signature,
                writer_key,
            })
            .collect();
        match check_group(admin, grants, &group, |_| Ok(existing)).expect("no storage") {
            Ok(admitted) => Ok(admitted.len()),
            Err(Rejected::Refused { position, refusal }) => Err((position, refusal)),
            Err(Rejected::AllDuplicates(i)) => Ok(1000 + i.len()),
        }
    }

    #[test]
    fn a_grant_earlier_in_the_group_admits_a_later_record() {
        let admin = NoteSigner::from_seed("admin", &[2; 32]).expect("key");
        let writer = NoteSigner::from_seed("writer", &[3; 32]).expect("key");
        let admins = [admin.verifier().key.to_bytes()];
        let group = [
            signed("orders", grant(&writer), &admin),
            signed("orders", mutation("a"), &writer),
        ];
        assert_eq!(check(Some(&admins), &Grants::new(), &group, None), Ok(2));
        // Alone, the writer holds no grant; and no one may write before genesis.
        let alone = [group[1].clone()];
        let no_grant = Refusal::Unauthorized(Unauthorized::NoGrant {
            writer: group[1].2,
            system: "orders".into(),
        });
        assert_eq!(
            check(Some(&admins), &Grants::new(), &alone, None),
            Err((0, no_grant))
        );
        assert_eq!(
            check(None, &Grants::new(), &alone, None),
            Err((0, Refusal::Unauthorized(Unauthorized::NoGenesis)))
        );
        // A policy record signed by the writer: not an admin.
        let policy = [signed("orders", grant(&writer), &writer)];
        assert_eq!(
            check(Some(&admins), &Grants::new(), &policy, None),
            Err((
                0,
                Refusal::Unauthorized(Unauthorized::NotAdmin {
                    writer: policy[0].2
                })
            ))
        );
    }

    #[test]
    fn duplicates_and_bad_shapes_are_refused_with_their_position() {
        let writer = NoteSigner::from_seed("writer", &[3; 32]).expect("key");
        let mut grants = Grants::new();
        grants.insert(
            (SystemKey::of("orders"), writer.verifier().key.to_bytes()),
            true,
        );
        let a = signed("orders", mutation("a"), &writer);
        let b = signed("orders", mutation("b"), &writer);
        let admins: [[u8; 32]; 0] = [];
        let admin = Some(&admins[..]);
        assert_eq!(
            check(admin, &grants, &[a.clone(), a.clone()], None),
            Err((1, Refusal::Duplicate { index: None }))
        );
        // Every record already in the ledger: a retried request.
        assert_eq!(
            check(admin, &grants, &[a.clone(), b.clone()], Some(7)),
            Ok(1002)
        );
        let short = (b.0.clone(), vec![0; 10], b.2);
        assert_eq!(
            check(admin, &grants, &[a.clone(), short], None),
            Err((
                1,
                Refusal::Invalid(InvalidRecord::SignatureLength { len: 10 })
            ))
        );
        let garbage = (vec![0xff; 3], a.1.clone(), a.2);
        assert!(matches!(
            check(admin, &grants, &[garbage], None),
            Err((0, Refusal::Invalid(InvalidRecord::Record { .. })))
        ));
    }
}
