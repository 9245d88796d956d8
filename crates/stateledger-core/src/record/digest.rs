//! Content digests as text: `<algorithm>:<lowercase hex>`.

/// Algorithms a digest may name, with their hex lengths.
const ALGORITHMS: &[(&str, usize)] = &[
    ("sha256", 64),
    ("sha512", 128),
    ("blake3", 64),
    ("hmac-sha256", 64),
];

/// Checks `text` is `<algorithm>:<hex>` with a known algorithm and the right length of lowercase
/// hex. Returns what is wrong.
pub fn check_digest(text: &str) -> Result<(), String> {
    let Some((alg, hex)) = text.split_once(':') else {
        return Err("expected \"<algorithm>:<hex>\", e.g. \"sha256:3f2a...\"".to_string());
    };
    let Some((_, len)) = ALGORITHMS.iter().find(|(name, _)| *name == alg) else {
        return Err(format!(
            "unknown digest algorithm {alg:?} (known: sha256, sha512, blake3, hmac-sha256)"
        ));
    };
    if hex.len() != *len {
        return Err(format!(
            "{alg} digest needs {len} hex digits, found {}",
            hex.len()
        ));
    }
    if !hex
        .bytes()
        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err("digest must be lowercase hex".to_string());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests() {
        assert!(check_digest(&format!("sha256:{}", "a".repeat(64))).is_ok());
        assert!(check_digest(&format!("sha256:{}", "A".repeat(64))).is_err());
        assert!(check_digest(&format!("md5:{}", "a".repeat(32))).is_err());
        assert!(check_digest("sha256").is_err());
        assert!(check_digest(&format!("blake3:{}", "0".repeat(63))).is_err());
    }
}
