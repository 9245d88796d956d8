//! The per-snapshot salt that keys the digests of redacted values, and the proof that a value
//! matches a redacted digest.
//!
//! A redacted entry's digest is `hmac-sha256:<hex>` = HMAC-SHA256(key = salt, message = value
//! bytes): standard HMAC, so anyone can check it with common tools, e.g.
//! `printf %s "$VALUE" | openssl dgst -sha256 -mac HMAC -macopt hexkey:$(cat salt)`.
//! The salt never enters the ledger. Without it a redacted digest reveals nothing about the value,
//! not even to someone who guesses it (a plain hash of a short password could be brute-forced);
//! with it, whoever holds the value can prove it matches. Keep the salt as you would keep an
//! audit key: it does not reveal the secret, but it lets anyone holding it test guesses.

use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac as _};
use rand::RngCore as _;
use sha2::Sha256;

/// Salt length in bytes (the HMAC-SHA256 block is 64; 32 random bytes is the usual key size).
pub const SALT_BYTES: usize = 32;

/// Prefix of a redacted entry's digest.
pub const REDACTED_DIGEST_PREFIX: &str = "hmac-sha256:";

/// A per-snapshot HMAC key. Its `Debug` form does not show it.
#[derive(Clone, PartialEq, Eq)]
pub struct Salt([u8; SALT_BYTES]);

impl std::fmt::Debug for Salt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Salt(..)")
    }
}

/// Why a salt could not be saved or loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SaltError {
    #[error("salt file {} already exists; choose a new path (a salt belongs to one snapshot)", path.display())]
    Exists { path: PathBuf },
    #[error("cannot {action} salt file {}: {reason}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("salt is not {} hex digits: {reason}", SALT_BYTES * 2)]
    Malformed { reason: String },
}

/// Why a value does not prove a redacted digest.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RedactedMismatch {
    #[error("digest is not \"hmac-sha256:<64 hex digits>\": {reason}")]
    MalformedDigest { reason: String },
    #[error("the value does not match the redacted digest with this salt")]
    Mismatch,
}

impl Salt {
    /// 32 bytes from the operating system's random source.
    pub fn generate() -> Salt {
        let mut bytes = [0u8; SALT_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut bytes);
        Salt(bytes)
    }

    pub fn from_bytes(bytes: [u8; SALT_BYTES]) -> Salt {
        Salt(bytes)
    }

    pub fn as_bytes(&self) -> &[u8; SALT_BYTES] {
        &self.0
    }

    /// Lowercase hex, the salt file's content.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }

    /// Parses the hex form (surrounding whitespace ignored).
    pub fn from_hex(text: &str) -> Result<Salt, SaltError> {
        let bytes = hex::decode(text.trim()).map_err(|e| SaltError::Malformed {
            reason: e.to_string(),
        })?;
        let bytes: [u8; SALT_BYTES] =
            bytes
                .try_into()
                .map_err(|b: Vec<u8>| SaltError::Malformed {
                    reason: format!("found {} bytes", b.len()),
                })?;
        Ok(Salt(bytes))
    }

    /// Writes the salt as one line of hex to a new file readable by its owner only; refuses to
    /// overwrite an existing file (that salt may be the only key to an earlier snapshot).
    pub fn save(&self, path: &Path) -> Result<(), SaltError> {
        use std::io::Write as _;
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt as _;
            options.mode(0o600);
        }
        let io = |e: std::io::Error| SaltError::Io {
            action: "write",
            path: path.to_path_buf(),
            reason: e.to_string(),
        };
        let mut file = options.open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                SaltError::Exists {
                    path: path.to_path_buf(),
                }
            } else {
                io(e)
            }
        })?;
        file.write_all(format!("{}\n", self.to_hex()).as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io)
    }

    /// Reads a salt file written by [`save`](Self::save).
    pub fn load(path: &Path) -> Result<Salt, SaltError> {
        let text = std::fs::read_to_string(path).map_err(|e| SaltError::Io {
            action: "read",
            path: path.to_path_buf(),
            reason: e.to_string(),
        })?;
        Salt::from_hex(&text)
    }

    /// The redacted digest of `value`: `hmac-sha256:<hex>`.
    pub fn redact(&self, value: &[u8]) -> String {
        format!(
            "{REDACTED_DIGEST_PREFIX}{}",
            hex::encode(self.mac(value).finalize().into_bytes())
        )
    }

    fn mac(&self, value: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC accepts a key of any length");
        mac.update(value);
        mac
    }
}

/// Proves that `value` is the value behind a redacted digest made with `salt`. The comparison is
/// constant-time.
pub fn verify_redacted(value: &[u8], salt: &Salt, digest: &str) -> Result<(), RedactedMismatch> {
    let malformed = |reason: String| RedactedMismatch::MalformedDigest { reason };
    let hex_text = digest
        .trim()
        .strip_prefix(REDACTED_DIGEST_PREFIX)
        .ok_or_else(|| malformed(format!("it does not start with {REDACTED_DIGEST_PREFIX:?}")))?;
    let expected = hex::decode(hex_text).map_err(|e| malformed(e.to_string()))?;
    if expected.len() != 32 {
        return Err(malformed(format!("found {} bytes", expected.len())));
    }
    salt.mac(value)
        .verify_slice(&expected)
        .map_err(|_| RedactedMismatch::Mismatch)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redacted_digest_is_standard_hmac_sha256() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?" — with the key
        // zero-padded to 32 bytes, which HMAC treats identically (keys are padded to the block).
        let mut key = [0u8; SALT_BYTES];
        key[..4].copy_from_slice(b"Jefe");
        let salt = Salt::from_bytes(key);
        assert_eq!(
            salt.redact(b"what do ya want for nothing?"),
            "hmac-sha256:5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_holder_of_the_value_can_prove_it() {
        let salt = Salt::generate();
        let digest = salt.redact(b"hunter2");
        assert_eq!(verify_redacted(b"hunter2", &salt, &digest), Ok(()));
        assert_eq!(
            verify_redacted(b"hunter3", &salt, &digest),
            Err(RedactedMismatch::Mismatch)
        );
        assert_eq!(
            verify_redacted(b"hunter2", &Salt::generate(), &digest),
            Err(RedactedMismatch::Mismatch)
        );
        assert!(matches!(
            verify_redacted(b"hunter2", &salt, &digest.replace("hmac-sha256", "sha256")),
            Err(RedactedMismatch::MalformedDigest { .. })
        ));
        assert!(matches!(
            verify_redacted(b"hunter2", &salt, "hmac-sha256:abcd"),
            Err(RedactedMismatch::MalformedDigest { .. })
        ));
    }

    #[test]
    fn salts_are_fresh_persisted_and_never_printed() {
        assert_ne!(Salt::generate(), Salt::generate());
        let salt = Salt::generate();
        assert_eq!(format!("{salt:?}"), "Salt(..)");

        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("snapshot.salt");
        salt.save(&path).expect("saved");
        assert_eq!(Salt::load(&path).expect("loaded"), salt);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(&path).expect("meta").permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        assert_eq!(
            Salt::generate().save(&path),
            Err(SaltError::Exists { path: path.clone() })
        );
        assert_eq!(Salt::load(&path).expect("unchanged"), salt);

        std::fs::write(dir.path().join("short"), "abcd\n").expect("write");
        assert!(matches!(
            Salt::load(&dir.path().join("short")),
            Err(SaltError::Malformed { .. })
        ));
    }
}
