//! Step 6, captured nondeterminism: `nondeterminism/captures.json`, one member per capture id —
//! seeds (hex and base64), clock readings (nanoseconds and RFC 3339), external calls with their
//! response in `nondeterminism/responses/` — where a replay harness reads them instead of asking
//! the RNG, the clock or the service again. A response recorded by digest only is looked for
//! under `--payloads` and `--artifacts`.

use std::collections::BTreeMap;

use base64::Engine as _;
use serde_json::json;
use stateledger_core::record::pb;
use stateledger_core::state::SystemState;

use super::super::time::format_time;
use super::digest_index::{bytes_digest_like, DigestIndex};
use super::out_dir::OutDir;
use super::report::{count, StepLog};

/// Where captures go, inside the output directory.
pub const CAPTURES_FILE: &str = "nondeterminism/captures.json";

pub fn restore(
    state: &SystemState,
    out: &OutDir,
    indexes: &mut [&mut DigestIndex],
    log: &mut StepLog<'_>,
) -> anyhow::Result<()> {
    use pb::nondeterminism::Capture;
    let mut captures: BTreeMap<String, serde_json::Value> = BTreeMap::new();
    let (mut seeds, mut clocks, mut calls) = (0, 0, 0);
    for (i, c) in state.nondeterminism.iter().enumerate() {
        let v = &c.value;
        if captures.contains_key(&v.capture_id) {
            // Recorded again: the same value (or a conflicting_capture finding from the ledger).
            continue;
        }
        let leaf = Some(c.leaf_index);
        let entry = match &v.capture {
            Some(Capture::Seed(s)) => {
                seeds += 1;
                json!({
                    "kind": "seed",
                    "leaf_index": c.leaf_index,
                    "name": s.name,
                    "seed_hex": hex::encode(&s.seed),
                    "seed_base64": base64::engine::general_purpose::STANDARD.encode(&s.seed),
                })
            }
            Some(Capture::Clock(k)) => {
                clocks += 1;
                json!({
                    "kind": "clock",
                    "leaf_index": c.leaf_index,
                    "clock": k.clock,
                    "unix_nanos": k.unix_nanos,
                    "rfc3339": format_time(k.unix_nanos),
                })
            }
            Some(Capture::ExternalCall(call)) => {
                calls += 1;
                let rel = format!("nondeterminism/responses/{i:06}.bin");
                let file = restore_response(v, call, out, &rel, indexes, leaf, log)?;
                json!({
                    "kind": "external_call",
                    "leaf_index": c.leaf_index,
                    "target": call.target,
                    "request_digest": call.request_digest,
                    "response_digest": call.response_digest,
                    "response_file": file,
                })
            }
            None => json!({"kind": "unknown", "leaf_index": c.leaf_index}),
        };
        captures.insert(v.capture_id.clone(), entry);
    }
    let mut bytes = serde_json::to_vec_pretty(&captures)?;
    bytes.push(b'\n');
    out.write(CAPTURES_FILE, &bytes)?;
    log.files.push(CAPTURES_FILE.into());
    if calls > 0 {
        log.files.push("nondeterminism/responses/".into());
    }
    log.summary = format!(
        "{} written to {CAPTURES_FILE}: {}, {}, {}",
        count(captures.len(), "capture"),
        count(seeds, "seed"),
        count(clocks, "clock reading"),
        count(calls, "external call")
    );
    Ok(())
}

/// Writes an external call's response, from the record or found by its digest; returns the file.
fn restore_response(
    v: &pb::Nondeterminism,
    call: &pb::ExternalCall,
    out: &OutDir,
    rel: &str,
    indexes: &mut [&mut DigestIndex],
    leaf: Option<u64>,
    log: &mut StepLog<'_>,
) -> anyhow::Result<Option<String>> {
    let what = format!(
        "the response of external call {:?} to {}",
        v.capture_id, call.target
    );
    let bytes = if !call.response.is_empty() {
        call.response.clone()
    } else {
        let mut found = None;
        if !call.response_digest.is_empty() {
            for index in indexes.iter_mut() {
                if let Some(p) = index.find(&call.response_digest)? {
                    found = Some(std::fs::read(&p)?);
                    break;
                }
            }
        }
        match found {
            Some(b) => b,
            None => {
                log.finding(
                    "external_response_missing",
                    format!(
                        "{what} is recorded by digest only ({}): give it under --payloads or --artifacts",
                        if call.response_digest.is_empty() { "no digest" } else { &call.response_digest }
                    ),
                    leaf,
                );
                return Ok(None);
            }
        }
    };
    if !call.response_digest.is_empty()
        && bytes_digest_like(&call.response_digest, &bytes).as_deref()
            != Some(call.response_digest.as_str())
    {
        log.finding(
            "external_response_mismatch",
            format!(
                "{what} does not match its recorded digest {}",
                call.response_digest
            ),
            leaf,
        );
        return Ok(None);
    }
    out.write(rel, &bytes)?;
    Ok(Some(rel.to_string()))
}
