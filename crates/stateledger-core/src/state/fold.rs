//! The fold: a system's records in ledger order → S(T) (docs/PROOFS.md §7.3).

use crate::leaf::Leaf;
use crate::record::{pb, Body};
use crate::state::model::{record_hash, StateEntry, SystemState, WriterInEffect};

/// Folds a system's leaves (in ledger order, all with ledger time <= `at`, records already
/// verified) into S(T): the latest code, config and environment; every mutation, capture and
/// state digest; the writers in effect.
pub fn fold(system: &str, at: u64, leaves: &[(Leaf, pb::Record)]) -> SystemState {
    let mut state = SystemState {
        system: system.to_string(),
        at,
        records: leaves.len() as u64,
        code: None,
        config: None,
        environment: None,
        mutations: Vec::new(),
        nondeterminism: Vec::new(),
        state_digests: Vec::new(),
        writers: Vec::new(),
    };
    for (leaf, record) in leaves {
        match &record.body {
            Some(Body::Code(c)) => state.code = Some(entry(leaf, record, c.clone())),
            Some(Body::Config(c)) => state.config = Some(entry(leaf, record, c.clone())),
            Some(Body::Environment(e)) => state.environment = Some(entry(leaf, record, e.clone())),
            Some(Body::Mutation(m)) => state.mutations.push(entry(leaf, record, m.clone())),
            Some(Body::Nondeterminism(n)) => {
                state.nondeterminism.push(entry(leaf, record, n.clone()))
            }
            Some(Body::StateDigest(d)) => state.state_digests.push(entry(leaf, record, d.clone())),
            Some(Body::Policy(p)) => apply_policy(&mut state.writers, leaf.index.0, p),
            None => {}
        }
    }
    state
}

fn entry<T>(leaf: &Leaf, record: &pb::Record, value: T) -> StateEntry<T> {
    StateEntry {
        leaf_index: leaf.index.0,
        ledger_time: leaf.ledger_time.0,
        observed_at: record.observed_at_unix_nanos,
        scope: record.scope.clone(),
        writer: leaf.writer_key.to_string(),
        record_hash: record_hash(&leaf.record),
        value,
    }
}

fn apply_policy(writers: &mut Vec<WriterInEffect>, index: u64, policy: &pb::Policy) {
    use pb::policy::Change;
    match &policy.change {
        Some(Change::Grant(g)) => {
            let writer = hex::encode(&g.writer_key);
            writers.retain(|w| w.writer != writer);
            writers.push(WriterInEffect {
                writer,
                name: g.writer_name.clone(),
                granted_at: index,
            });
        }
        Some(Change::Revoke(g)) => {
            let writer = hex::encode(&g.writer_key);
            writers.retain(|w| w.writer != writer);
        }
        None => {}
    }
}
