//! A snapshot becomes a record only with its salt kept: the salt is the one key that proves a
//! redacted value later, and it is never in the record. So a snapshot with redacted entries is
//! refused unless its salt is written to a new file or was given by the caller (who holds it);
//! and the record is checked before the salt file is written, so no salt is left behind for a
//! record that was never made.

use std::path::Path;

use stateledger_core::record::{pb, Body, RecordError};

use super::collector::ConfigCollection;
use super::salt::SaltError;
use crate::RecordMeta;

/// Where a snapshot's salt goes when it becomes a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaltKeeping<'a> {
    /// Write it to this new file ([`super::Salt::save`]: never over an existing one).
    SaveTo(&'a Path),
    /// Nowhere: allowed when nothing is redacted, or when the caller gave the salt
    /// ([`super::ConfigCollector::salt`]) and so holds it already.
    Nowhere,
}

/// Why a snapshot did not become a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigRecordError {
    #[error("the collected record is not one the ledger accepts: {0}")]
    Record(RecordError),
    #[error("cannot keep the snapshot's salt: {0}")]
    SaltNotKept(SaltError),
    /// Redacted entries, a fresh salt and [`SaltKeeping::Nowhere`]: nobody could ever prove
    /// their values.
    #[error("{redacted} entries are redacted, and their salt would be lost")]
    SaltWouldBeLost { redacted: usize },
}

impl ConfigCollection {
    /// The snapshot as a record, checked like every record ([`RecordMeta::record`]), with its
    /// salt kept as `keeping` says. Nothing is written unless the record is valid and the salt
    /// is kept.
    pub fn into_record(
        self,
        meta: &RecordMeta,
        keeping: SaltKeeping<'_>,
    ) -> Result<pb::Record, ConfigRecordError> {
        let redacted = self.redactions.len();
        let record = meta
            .record(Body::Config(self.snapshot))
            .map_err(ConfigRecordError::Record)?;
        match keeping {
            SaltKeeping::SaveTo(path) => self
                .salt
                .save(path)
                .map_err(ConfigRecordError::SaltNotKept)?,
            SaltKeeping::Nowhere if redacted > 0 && !self.salt_reused => {
                return Err(ConfigRecordError::SaltWouldBeLost { redacted })
            }
            SaltKeeping::Nowhere => {}
        }
        Ok(record)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{verify_redacted, ConfigCollector, Salt};

    fn meta() -> RecordMeta {
        RecordMeta::new("orders-service", "prod", 1)
    }

    /// A snapshot of one clear variable and, with `secret`, one redacted one.
    fn collector(secret: bool) -> ConfigCollector {
        let mut c = ConfigCollector::new().var("region", "eu");
        if secret {
            c = c.var("db_password", "hunter2").secret("var:db_password");
        }
        c
    }

    #[test]
    fn without_redactions_the_salt_needs_no_keeping() {
        let collection = collector(false).collect().expect("complete");
        assert!(collection.redactions.is_empty());
        let record = collection
            .into_record(&meta(), SaltKeeping::Nowhere)
            .expect("nothing to prove later");
        assert!(matches!(record.body, Some(Body::Config(_))));
    }

    #[test]
    fn a_fresh_salt_of_redacted_values_must_be_kept() {
        let collection = collector(true).collect().expect("complete");
        assert_eq!(collection.redactions.len(), 1);
        assert!(!collection.salt_reused);
        assert_eq!(
            collection.into_record(&meta(), SaltKeeping::Nowhere),
            Err(ConfigRecordError::SaltWouldBeLost { redacted: 1 })
        );
    }

    #[test]
    fn a_kept_salt_proves_the_redacted_value_and_is_never_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("snapshot.salt");
        let record = collector(true)
            .collect()
            .expect("complete")
            .into_record(&meta(), SaltKeeping::SaveTo(&path))
            .expect("kept");
        let Some(Body::Config(snapshot)) = &record.body else {
            panic!("a config record")
        };
        let entry = snapshot
            .entries
            .iter()
            .find(|e| e.redacted)
            .expect("redacted");
        let salt = Salt::load(&path).expect("salt written");
        assert_eq!(verify_redacted(b"hunter2", &salt, &entry.digest), Ok(()));

        let err = collector(true)
            .collect()
            .expect("complete")
            .into_record(&meta(), SaltKeeping::SaveTo(&path))
            .expect_err("the file exists");
        assert!(
            matches!(
                err,
                ConfigRecordError::SaltNotKept(SaltError::Exists { .. })
            ),
            "{err:?}"
        );
        assert_eq!(Salt::load(&path).expect("unchanged"), salt);
    }

    #[test]
    fn a_salt_the_caller_gave_is_held_already() {
        let collection = collector(true)
            .salt(Salt::generate())
            .collect()
            .expect("complete");
        assert!(collection.salt_reused);
        collection
            .into_record(&meta(), SaltKeeping::Nowhere)
            .expect("the caller holds the salt");
    }

    /// A record the ledger refuses (here: a bad system name) writes no salt file.
    #[test]
    fn no_salt_file_is_left_for_a_record_never_made() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("snapshot.salt");
        let err = collector(true)
            .collect()
            .expect("complete")
            .into_record(
                &RecordMeta::new("orders service", "", 1),
                SaltKeeping::SaveTo(&path),
            )
            .expect_err("bad system name");
        assert!(matches!(err, ConfigRecordError::Record(_)), "{err:?}");
        assert!(!path.exists());
    }
}
