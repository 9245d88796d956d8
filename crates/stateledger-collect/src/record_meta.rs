//! The part of a record the caller supplies — which system, where, when — and the assembly of a
//! collector's body into a record the ledger accepts.

use prost::Message as _;
use stateledger_core::record::{decode_record, pb, Body, RecordError};

/// Which system a record is about, where and when it was observed. Collectors produce bodies; the
/// caller knows the rest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordMeta {
    /// e.g. `orders-service`.
    pub system: String,
    /// e.g. `prod/eu-west-1`; may be empty.
    pub scope: String,
    /// The collector's clock when it observed the state.
    pub observed_at_unix_nanos: u64,
}

impl RecordMeta {
    pub fn new(system: impl Into<String>, scope: impl Into<String>, observed_at: u64) -> Self {
        RecordMeta {
            system: system.into(),
            scope: scope.into(),
            observed_at_unix_nanos: observed_at,
        }
    }

    /// Observed now, by this machine's wall clock.
    pub fn now(system: impl Into<String>, scope: impl Into<String>) -> Self {
        RecordMeta::new(system, scope, now_unix_nanos())
    }

    /// Assembles a record and checks it exactly as the ledger will at submission: encoded, decoded
    /// again, canonical, within `RECORD_BYTES_MAX`, every field valid.
    pub fn record(&self, body: Body) -> Result<pb::Record, RecordError> {
        let record = pb::Record {
            system: self.system.clone(),
            scope: self.scope.clone(),
            observed_at_unix_nanos: self.observed_at_unix_nanos,
            body: Some(body),
        };
        decode_record(&record.encode_to_vec())
    }
}

/// This machine's wall clock in nanoseconds since the Unix epoch (0 if the clock is set before
/// 1970, which a record then refuses as a missing `observed_at_unix_nanos`).
pub fn now_unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn record_is_checked_like_the_ledger_checks_it() {
        let meta = RecordMeta::new("orders-service", "prod", 1);
        let body = Body::StateDigest(pb::StateDigest {
            source: "kafka:orders/0".into(),
            digest: crate::digest::sha256_digest(b"state"),
            ..Default::default()
        });
        let record = meta.record(body.clone()).expect("valid");
        assert_eq!(record.system, "orders-service");

        let err = RecordMeta::new("orders service", "", 1)
            .record(body.clone())
            .expect_err("bad system name");
        assert!(err.to_string().contains("field system is invalid"), "{err}");
        let err = RecordMeta::new("orders", "", 0)
            .record(body)
            .expect_err("no time");
        assert_eq!(err.to_string(), "field observed_at_unix_nanos is required");
    }

    #[test]
    fn now_is_after_2020() {
        assert!(now_unix_nanos() > 1_577_836_800_000_000_000);
    }
}
