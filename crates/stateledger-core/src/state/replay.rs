//! The pure part of replay (docs/DETERMINISM.md §5): checking payloads against their recorded
//! digests and comparing the reducer's state digests with the declared ones.

use std::collections::BTreeMap;

use sha2::Digest as _;

use crate::state::model::SystemState;

/// Where a replay first diverged from the record.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Divergence {
    /// Position of the mutation in S(T)'s mutation list.
    pub mutation_index: usize,
    pub leaf_index: u64,
    pub source: String,
    pub sequence: u64,
    /// "payload_digest", "payload_missing" or "state_digest".
    pub what: String,
    pub expected: String,
    pub actual: String,
}

/// Digest of `payload` with the algorithm `digest_text` names (`sha256:`, `sha512:`, `blake3:`),
/// in the same text form.
pub fn digest_like(digest_text: &str, payload: &[u8]) -> Result<String, String> {
    let (alg, _) = digest_text
        .split_once(':')
        .ok_or_else(|| format!("digest {digest_text:?} has no algorithm"))?;
    let hex = match alg {
        "sha256" => hex::encode(sha2::Sha256::digest(payload)),
        "sha512" => hex::encode(sha2::Sha512::digest(payload)),
        "blake3" => blake3::hash(payload).to_hex().to_string(),
        other => return Err(format!("cannot recompute a {other} digest of a payload")),
    };
    Ok(format!("{alg}:{hex}"))
}

/// The declared (non-baseline) state digests of S(T) by (source, sequence).
pub fn declared_digests(state: &SystemState) -> BTreeMap<(String, u64), (u64, String)> {
    state
        .state_digests
        .iter()
        .filter(|d| !d.value.baseline)
        .map(|d| {
            (
                (d.value.source.clone(), d.value.sequence),
                (d.leaf_index, d.value.digest.clone()),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_recomputed_in_the_named_algorithm() {
        let d = digest_like("sha256:00", b"abc").expect("known algorithm");
        assert_eq!(
            d,
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert!(digest_like("blake3:00", b"abc")
            .expect("known")
            .starts_with("blake3:6437b3ac"));
        assert!(digest_like("md5:00", b"abc").is_err());
    }
}
