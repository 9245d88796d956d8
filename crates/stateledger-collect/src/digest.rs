//! Content digests in the ledger's text form `<algorithm>:<lowercase hex>` (see
//! `stateledger_core::record::digest`). Collectors compute SHA-256; digests given by a user are
//! checked and lower-cased.

use std::io::Read as _;
use std::path::Path;

use sha2::{Digest as _, Sha256};
use stateledger_core::record::digest::check_digest;

/// `sha256:<hex>` of `bytes`.
pub fn sha256_digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// `sha256:<hex>` of a file's content and its size in bytes, read in chunks (artifacts may be
/// large). Fails with the I/O error; `max_bytes` bounds how much is read.
pub fn sha256_file(path: &Path, max_bytes: u64) -> std::io::Result<(String, u64)> {
    let file = std::fs::File::open(path)?;
    let mut reader = file.take(max_bytes.saturating_add(1));
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    let mut size = 0u64;
    loop {
        let n = reader.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        if size > max_bytes {
            return Err(std::io::Error::other(format!(
                "file is larger than the limit of {max_bytes} bytes"
            )));
        }
        hasher.update(&buf[..n]);
    }
    Ok((format!("sha256:{}", hex::encode(hasher.finalize())), size))
}

/// Checks a content digest given from outside and returns it in canonical form: surrounding
/// whitespace trimmed, hex lower-cased. Only the content-digest algorithms the ledger accepts pass
/// (`hmac-sha256` is not one: it marks redacted config values only); the error says why not.
pub fn parse_digest(text: &str) -> Result<String, String> {
    let text = text.trim();
    let canonical = match text.split_once(':') {
        Some((alg, hex)) => format!("{}:{}", alg.to_ascii_lowercase(), hex.to_ascii_lowercase()),
        None => text.to_string(),
    };
    if canonical.starts_with("hmac-sha256:") {
        return Err(
            "hmac-sha256 is only for redacted config values; use sha256, sha512 or blake3"
                .to_string(),
        );
    }
    check_digest(&canonical)?;
    Ok(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(
            sha256_digest(b"abc"),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn file_digest_matches_bytes_and_is_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.bin");
        std::fs::write(&path, b"abc").expect("write");
        assert_eq!(
            sha256_file(&path, 3).expect("reads"),
            (sha256_digest(b"abc"), 3)
        );
        assert!(sha256_file(&path, 2)
            .expect_err("too large")
            .to_string()
            .contains("limit of 2 bytes"));
    }

    #[test]
    fn parsed_digests_are_canonical() {
        let upper = format!("SHA256:{}", "AB".repeat(32));
        assert_eq!(
            parse_digest(&upper).expect("ok"),
            format!("sha256:{}", "ab".repeat(32))
        );
        assert!(parse_digest("md5:abc").is_err());
        assert!(parse_digest("sha256:xyz").is_err());
        assert!(parse_digest("deadbeef").is_err());
        assert!(parse_digest(&format!("hmac-sha256:{}", "ab".repeat(32))).is_err());
    }
}
