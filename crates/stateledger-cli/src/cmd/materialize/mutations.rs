//! Step 5, mutations: the ordered list with each mutation's external reference (Kafka topic,
//! partition and offset; database transaction; other) in `mutations/mutations.jsonl`; with
//! `--payloads DIR` each payload found by its recorded digest, verified and copied to
//! `mutations/payloads/`; with `--replay REDUCER` the payloads run through the reducer
//! (`stateledger replay`'s protocol, cmd/replay.rs) and its state digests compared with the
//! recorded ones.

use serde_json::json;
use stateledger_core::record::pb;
use stateledger_core::state::replay::declared_digests;
use stateledger_core::state::SystemState;

use super::super::replay::{replay, Payloads, Reducer, ReplayOutcome};
use super::digest_index::{copy_and_hash, Algorithm, DigestIndex};
use super::out_dir::OutDir;
use super::report::{count, StepLog};

/// The mutation's external reference, as JSON.
fn external_ref(m: &pb::Mutation) -> serde_json::Value {
    use pb::mutation::ExternalRef;
    match &m.external_ref {
        Some(ExternalRef::Kafka(k)) => {
            json!({"kafka": {"topic": k.topic, "partition": k.partition, "offset": k.offset}})
        }
        Some(ExternalRef::DbTx(d)) => json!({"db_tx": {"database": d.database, "tx_id": d.tx_id}}),
        Some(ExternalRef::OtherRef(o)) => json!({"other_ref": o}),
        None => serde_json::Value::Null,
    }
}

/// Writes the list and restores the payloads; returns them when every one was found.
pub fn restore(
    state: &SystemState,
    out: &OutDir,
    payloads: Option<&mut DigestIndex>,
    log: &mut StepLog<'_>,
) -> anyhow::Result<Option<Payloads>> {
    let mut found = Payloads::default();
    let mut all_found = true;
    let mut lines = String::new();
    let mut index = payloads;
    if index.is_none() && !state.mutations.is_empty() {
        all_found = false;
        log.finding(
            "payloads_not_given",
            format!(
                "{} mutations are recorded but their payloads were not restored: give --payloads DIR \
                 (the retained messages or rows, one file each, any names)",
                state.mutations.len()
            ),
            None,
        );
    }
    let mut restored = 0;
    for (i, m) in state.mutations.iter().enumerate() {
        let v = &m.value;
        let mut payload_file = None;
        if let Some(index) = index.as_deref_mut() {
            let rel = format!("mutations/payloads/{i:06}.bin");
            match restore_payload(i, m.leaf_index, v, index, out, &rel, log)? {
                Some(bytes) => {
                    found.insert_at(&v.source, v.sequence, bytes);
                    payload_file = Some(rel);
                    restored += 1;
                }
                None => all_found = false,
            }
        }
        let line = json!({
            "index": i,
            "leaf_index": m.leaf_index,
            "ledger_time": m.ledger_time,
            "observed_at": m.observed_at,
            "kind": v.kind,
            "id": v.id,
            "source": v.source,
            "sequence": v.sequence,
            "origin": v.origin,
            "payload_digest": v.payload_digest,
            "external_ref": external_ref(v),
            "captures": v.captures,
            "payload_file": payload_file,
        });
        lines.push_str(&line.to_string());
        lines.push('\n');
    }
    out.write("mutations/mutations.jsonl", lines.as_bytes())?;
    log.files.push("mutations/mutations.jsonl".into());
    if restored > 0 {
        log.files.push("mutations/payloads/".into());
    }
    let sources: std::collections::BTreeSet<&str> = state
        .mutations
        .iter()
        .map(|m| m.value.source.as_str())
        .collect();
    log.summary = format!(
        "{} from {} listed in order{}",
        count(state.mutations.len(), "mutation"),
        count(sources.len(), "source"),
        if index.is_some() {
            format!(", {} restored by digest", count(restored, "payload"))
        } else {
            String::new()
        }
    );
    Ok(all_found.then_some(found))
}

fn restore_payload(
    i: usize,
    leaf: u64,
    m: &pb::Mutation,
    index: &mut DigestIndex,
    out: &OutDir,
    rel: &str,
    log: &mut StepLog<'_>,
) -> anyhow::Result<Option<Vec<u8>>> {
    let who = format!(
        "mutation #{i} {:?} ({} #{}{})",
        m.id,
        m.source,
        m.sequence,
        ref_text(m)
    );
    let Some(alg) = Algorithm::of(&m.payload_digest) else {
        log.finding(
            "payload_unverifiable",
            format!("{who} has no payload digest: its payload can be neither found nor verified"),
            Some(leaf),
        );
        return Ok(None);
    };
    let Some(path) = index.find(&m.payload_digest)? else {
        log.finding(
            "payload_missing",
            format!(
                "{who}: no file under --payloads has its payload digest {} (lost from the broker, or never retained)",
                m.payload_digest
            ),
            Some(leaf),
        );
        return Ok(None);
    };
    let to = out.join(rel);
    out.create_parent(&to)?;
    let copied = copy_and_hash(&path, &to, alg)?;
    if copied != m.payload_digest {
        log.finding(
            "payload_changed",
            format!("{who}: {} changed while being copied", path.display()),
            Some(leaf),
        );
        return Ok(None);
    }
    let bytes = std::fs::read(&to)?;
    Ok(Some(bytes))
}

fn ref_text(m: &pb::Mutation) -> String {
    use pb::mutation::ExternalRef;
    match &m.external_ref {
        Some(ExternalRef::Kafka(k)) => {
            format!(", kafka {}/{} offset {}", k.topic, k.partition, k.offset)
        }
        Some(ExternalRef::DbTx(d)) => format!(", {} tx {}", d.database, d.tx_id),
        Some(ExternalRef::OtherRef(o)) => format!(", {o}"),
        None => String::new(),
    }
}

/// What the replay needs and what stands in its way.
#[derive(Debug)]
pub struct ReplayPlan<'a> {
    pub reducer: Option<&'a str>,
    pub payloads: Option<Payloads>,
    /// Steps that did not restore everything: a replay on them would not be the state at T.
    pub blockers: Vec<&'static str>,
    pub env: Vec<(String, String)>,
}

/// Runs the replay when asked and possible; a finding when recorded state digests stay unchecked.
pub fn replay_step(
    state: &SystemState,
    out: &OutDir,
    plan: ReplayPlan<'_>,
    log: &mut StepLog<'_>,
) -> Option<ReplayOutcome> {
    let declared = declared_digests(state);
    let first_digest_leaf = declared.values().map(|(leaf, _)| *leaf).min();
    let Some(reducer) = plan.reducer else {
        if !declared.is_empty() {
            log.finding(
                "replay_not_run",
                format!(
                    "{} recorded state digests were not checked: give --replay REDUCER (with --payloads)",
                    declared.len()
                ),
                first_digest_leaf,
            );
        }
        return None;
    };
    if !plan.blockers.is_empty() || plan.payloads.is_none() {
        let mut why: Vec<String> = plan
            .blockers
            .iter()
            .map(|s| format!("the {s} step failed"))
            .collect();
        if plan.payloads.is_none() {
            why.push("not every payload was restored".into());
        }
        // Not a finding of its own: what blocks it already is one.
        log.note(format!(
            "the replay did not run because the restore is incomplete ({}): its result would not be the state at T",
            why.join(", ")
        ));
        return None;
    }
    let payloads = plan.payloads.unwrap_or_default();
    let mut env = plan.env;
    env.push((
        "STATELEDGER_RESTORE_DIR".into(),
        out.root().to_string_lossy().into_owned(),
    ));
    let command = Reducer {
        command: reducer.to_string(),
        cwd: Some(out.root().to_path_buf()),
        env,
    };
    match replay(state, &payloads, &command) {
        Ok(outcome) => {
            match &outcome.divergence {
                None => {
                    log.summary.push_str(&format!(
                        "; replayed {} mutations, {} recorded state digests match",
                        outcome.mutations, outcome.digests_checked
                    ));
                    if declared.is_empty() {
                        log.note("no state digest is recorded: the replay ran, but there was nothing to compare it with");
                    }
                }
                Some(d) => {
                    let digest_leaf = declared
                        .get(&(d.source.clone(), d.sequence))
                        .map(|(leaf, _)| *leaf)
                        .unwrap_or(d.leaf_index);
                    log.finding(
                        if d.what == "state_digest" { "replay_divergence" } else { "payload_missing" },
                        format!(
                            "the replay diverged at mutation #{} ({} #{}, leaf {}): the reducer's {} is {}, the ledger records {}",
                            d.mutation_index, d.source, d.sequence, d.leaf_index, d.what.replace('_', " "), d.actual, d.expected
                        ),
                        Some(digest_leaf),
                    );
                }
            }
            Some(outcome)
        }
        Err(e) => {
            log.finding(
                "replay_failed",
                format!("the reducer {reducer:?} failed: {e:#}"),
                first_digest_leaf,
            );
            None
        }
    }
}
