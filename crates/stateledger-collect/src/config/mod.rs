//! The configuration dimension: a complete snapshot of files, directories and environment
//! variables, or a rejection naming every reason it would be partial. Secrets are redacted with a
//! keyed digest whose salt stays with the caller.

mod collector;
mod error;
pub mod placeholder;
mod salt;
mod salt_keeping;
pub mod secret;
pub mod structured;

pub use collector::{ConfigCollection, ConfigCollector, Redaction};
pub use error::{ConfigError, ConfigRejection};
pub use salt::{
    verify_redacted, RedactedMismatch, Salt, SaltError, REDACTED_DIGEST_PREFIX, SALT_BYTES,
};
pub use salt_keeping::{ConfigRecordError, SaltKeeping};

#[cfg(test)]
mod tests;
