//! Record validation at the boundary: decode, insist on the canonical encoding, and check every
//! field against its rule and limit. Errors name the field.

use prost::Message as _;
use stateledger_proto::v1 as pb;
use stateledger_proto::v1::record::Body;

use crate::limits::*;
use crate::record::digest::check_digest;

/// The kind of body a record carries: one of the four state dimensions, a capture, a state
/// digest, or a policy change.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum Dimension {
    Code,
    Config,
    Environment,
    Mutation,
    Nondeterminism,
    StateDigest,
    Policy,
}

impl Dimension {
    pub fn of(body: &Body) -> Dimension {
        match body {
            Body::Code(_) => Dimension::Code,
            Body::Config(_) => Dimension::Config,
            Body::Environment(_) => Dimension::Environment,
            Body::Mutation(_) => Dimension::Mutation,
            Body::Nondeterminism(_) => Dimension::Nondeterminism,
            Body::StateDigest(_) => Dimension::StateDigest,
            Body::Policy(_) => Dimension::Policy,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Dimension::Code => "code",
            Dimension::Config => "config",
            Dimension::Environment => "environment",
            Dimension::Mutation => "mutation",
            Dimension::Nondeterminism => "nondeterminism",
            Dimension::StateDigest => "state_digest",
            Dimension::Policy => "policy",
        }
    }
}

impl std::fmt::Display for Dimension {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Why a record is refused. Every variant names the field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RecordError {
    #[error("record is {len} bytes, more than the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("record bytes are not a valid protobuf Record: {reason}")]
    Malformed { reason: String },
    #[error("record has unknown field number {number} (an unknown body or a newer format); this ledger knows fields 1-3 and bodies 10-16")]
    UnknownField { number: u64 },
    #[error("record bytes are not in canonical protobuf encoding (fields out of order, repeated, default values written, or unknown nested fields); encode with a conforming encoder and sign those bytes")]
    NonCanonical,
    #[error("record has no body: set exactly one of code, config, environment, mutation, nondeterminism, state_digest, policy")]
    MissingBody,
    #[error("field {field} is required")]
    MissingField { field: String },
    #[error("field {field} is {len} bytes, more than the limit of {max}")]
    FieldTooLong {
        field: String,
        len: usize,
        max: usize,
    },
    #[error("field {field} has {count} items, more than the limit of {max}")]
    TooManyItems {
        field: String,
        count: usize,
        max: usize,
    },
    #[error("field {field} is invalid: {reason}")]
    InvalidField { field: String, reason: String },
    #[error("partial config is rejected: {reason}")]
    PartialConfig { reason: String },
}

/// Decodes and validates record bytes exactly as submitted.
pub fn decode_record(bytes: &[u8]) -> Result<pb::Record, RecordError> {
    if bytes.len() > RECORD_BYTES_MAX {
        return Err(RecordError::TooLarge {
            len: bytes.len(),
            max: RECORD_BYTES_MAX,
        });
    }
    check_top_level_fields(bytes)?;
    let record = pb::Record::decode(bytes).map_err(|e| RecordError::Malformed {
        reason: e.to_string(),
    })?;
    if record.encode_to_vec() != bytes {
        return Err(RecordError::NonCanonical);
    }
    validate(&record)?;
    Ok(record)
}

/// Walks the top-level wire format to name an unknown field before prost silently drops it.
fn check_top_level_fields(mut bytes: &[u8]) -> Result<(), RecordError> {
    const KNOWN: &[u64] = &[1, 2, 3, 10, 11, 12, 13, 14, 15, 16];
    let malformed = |reason: &str| RecordError::Malformed {
        reason: reason.to_string(),
    };
    while !bytes.is_empty() {
        let key = read_varint(&mut bytes).ok_or_else(|| malformed("truncated field key"))?;
        let number = key >> 3;
        match key & 7 {
            0 => {
                read_varint(&mut bytes).ok_or_else(|| malformed("truncated varint"))?;
            }
            1 => {
                bytes = bytes
                    .get(8..)
                    .ok_or_else(|| malformed("truncated fixed64"))?
            }
            2 => {
                let len = read_varint(&mut bytes).ok_or_else(|| malformed("truncated length"))?;
                let len = usize::try_from(len).map_err(|_| malformed("length overflows"))?;
                bytes = bytes
                    .get(len..)
                    .ok_or_else(|| malformed("length-delimited field runs past the end"))?;
            }
            5 => {
                bytes = bytes
                    .get(4..)
                    .ok_or_else(|| malformed("truncated fixed32"))?
            }
            _ => return Err(malformed("unsupported wire type")),
        }
        if !KNOWN.contains(&number) {
            return Err(RecordError::UnknownField { number });
        }
    }
    Ok(())
}

fn read_varint(bytes: &mut &[u8]) -> Option<u64> {
    let mut value = 0u64;
    for i in 0..10 {
        let (&b, rest) = bytes.split_first()?;
        *bytes = rest;
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return Some(value);
        }
    }
    None
}

fn text(field: &str, value: &str, required: bool, max: usize) -> Result<(), RecordError> {
    if required && value.is_empty() {
        return Err(RecordError::MissingField {
            field: field.to_string(),
        });
    }
    if value.len() > max {
        return Err(RecordError::FieldTooLong {
            field: field.to_string(),
            len: value.len(),
            max,
        });
    }
    if value.chars().any(char::is_control) {
        return Err(RecordError::InvalidField {
            field: field.to_string(),
            reason: "contains control characters".to_string(),
        });
    }
    Ok(())
}

/// Like [`text`], but newlines and tabs are allowed: a clear configuration value may be a
/// multi-line file. Every other control character (CR included) is still refused.
fn multiline_text(field: &str, value: &str, required: bool, max: usize) -> Result<(), RecordError> {
    let without_line_breaks = value.replace(['\n', '\t'], " ");
    text(field, &without_line_breaks, required, max).map_err(|e| match e {
        RecordError::InvalidField { field, .. } => RecordError::InvalidField {
            field,
            reason: "contains control characters other than newline and tab".to_string(),
        },
        other => other,
    })
}

/// The digest algorithm reserved for redacted configuration values (a keyed hash of a secret).
const REDACTED_DIGEST_PREFIX: &str = "hmac-sha256:";

/// A content digest anywhere but a configuration entry: `hmac-sha256` is refused, it is reserved
/// for redacted configuration values.
fn digest(field: &str, value: &str, required: bool) -> Result<(), RecordError> {
    if value.starts_with(REDACTED_DIGEST_PREFIX) {
        return Err(invalid(
            field,
            "hmac-sha256 is only for redacted config entry values; use sha256, sha512 or blake3",
        ));
    }
    any_digest(field, value, required)
}

/// A digest of any known algorithm, `hmac-sha256` included (configuration entries, which then
/// check it against `redacted`).
fn any_digest(field: &str, value: &str, required: bool) -> Result<(), RecordError> {
    if value.is_empty() {
        return if required {
            Err(RecordError::MissingField {
                field: field.to_string(),
            })
        } else {
            Ok(())
        };
    }
    check_digest(value).map_err(|reason| RecordError::InvalidField {
        field: field.to_string(),
        reason,
    })
}

fn items(field: &str, count: usize, max: usize) -> Result<(), RecordError> {
    if count > max {
        return Err(RecordError::TooManyItems {
            field: field.to_string(),
            count,
            max,
        });
    }
    Ok(())
}

fn bytes_max(field: &str, len: usize, max: usize) -> Result<(), RecordError> {
    if len > max {
        return Err(RecordError::FieldTooLong {
            field: field.to_string(),
            len,
            max,
        });
    }
    Ok(())
}

fn invalid(field: &str, reason: impl Into<String>) -> RecordError {
    RecordError::InvalidField {
        field: field.to_string(),
        reason: reason.into(),
    }
}

/// Checks a system name: 1 to 128 bytes of `[A-Za-z0-9._:/@-]`.
pub fn check_system_name(system: &str) -> Result<(), RecordError> {
    text("system", system, true, SYSTEM_BYTES_MAX)?;
    if !system
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._:/@-".contains(&b))
    {
        return Err(invalid(
            "system",
            "only letters, digits and . _ : / @ - are allowed",
        ));
    }
    Ok(())
}

/// Validates a decoded record's fields (the encoding rules are checked by [`decode_record`]).
pub fn validate(r: &pb::Record) -> Result<(), RecordError> {
    check_system_name(&r.system)?;
    text("scope", &r.scope, false, SCOPE_BYTES_MAX)?;
    if r.observed_at_unix_nanos == 0 {
        return Err(RecordError::MissingField {
            field: "observed_at_unix_nanos".to_string(),
        });
    }
    match r.body.as_ref().ok_or(RecordError::MissingBody)? {
        Body::Code(c) => validate_code(c),
        Body::Config(c) => validate_config(c),
        Body::Environment(e) => validate_environment(e),
        Body::Mutation(m) => validate_mutation(m),
        Body::Nondeterminism(n) => validate_nondeterminism(n),
        Body::StateDigest(s) => validate_state_digest(s),
        Body::Policy(p) => validate_policy(p),
    }
}

fn validate_artifacts(field: &str, list: &[pb::Artifact]) -> Result<(), RecordError> {
    items(field, list.len(), LIST_ITEMS_MAX)?;
    for (i, a) in list.iter().enumerate() {
        text(&format!("{field}[{i}].name"), &a.name, true, TEXT_BYTES_MAX)?;
        digest(&format!("{field}[{i}].digest"), &a.digest, true)?;
    }
    Ok(())
}

fn validate_code(c: &pb::CodeState) -> Result<(), RecordError> {
    text("code.repo", &c.repo, true, TEXT_BYTES_MAX)?;
    text("code.commit", &c.commit, true, 64)?;
    if !(c.commit.len() == 40 || c.commit.len() == 64)
        || !c
            .commit
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    {
        return Err(invalid(
            "code.commit",
            "a full commit id of 40 or 64 lowercase hex digits is required",
        ));
    }
    text("code.reference", &c.reference, false, TEXT_BYTES_MAX)?;
    validate_artifacts("code.artifacts", &c.artifacts)?;
    validate_artifacts("code.lockfiles", &c.lockfiles)?;
    items(
        "code.required_config",
        c.required_config.len(),
        LIST_ITEMS_MAX,
    )?;
    for (i, k) in c.required_config.iter().enumerate() {
        text(
            &format!("code.required_config[{i}]"),
            k,
            true,
            TEXT_BYTES_MAX,
        )?;
    }
    Ok(())
}

fn validate_config(c: &pb::ConfigSnapshot) -> Result<(), RecordError> {
    text("config.version", &c.version, true, TEXT_BYTES_MAX)?;
    if !c.complete {
        return Err(RecordError::PartialConfig {
            reason: "the snapshot is not marked complete (config.complete = false)".to_string(),
        });
    }
    if c.entries.is_empty() {
        return Err(RecordError::PartialConfig {
            reason: "the snapshot has no entries".to_string(),
        });
    }
    items("config.entries", c.entries.len(), CONFIG_ENTRIES_MAX)?;
    for (i, e) in c.entries.iter().enumerate() {
        let f = |name: &str| format!("config.entries[{i}].{name}");
        text(&f("key"), &e.key, true, TEXT_BYTES_MAX)?;
        if !e.error.is_empty() {
            return Err(RecordError::PartialConfig {
                reason: format!("entry {:?} could not be collected: {}", e.key, e.error),
            });
        }
        text(&f("source"), &e.source, true, 64)?;
        any_digest(&f("digest"), &e.digest, true)?;
        multiline_text(&f("value"), &e.value, false, CONFIG_VALUE_BYTES_MAX)?;
        if e.redacted {
            if !e.value.is_empty() {
                return Err(invalid(
                    &f("value"),
                    "a redacted entry must not carry its value",
                ));
            }
            if !e.digest.starts_with(REDACTED_DIGEST_PREFIX) {
                return Err(invalid(
                    &f("digest"),
                    "a redacted entry needs an hmac-sha256 digest",
                ));
            }
        } else if e.digest.starts_with(REDACTED_DIGEST_PREFIX) {
            return Err(invalid(
                &f("redacted"),
                "an hmac-sha256 digest marks a redacted entry; set redacted",
            ));
        }
        if i > 0 && c.entries[i - 1].key >= e.key {
            return Err(invalid(
                &f("key"),
                "entries must be sorted by key with no duplicates",
            ));
        }
    }
    Ok(())
}

fn validate_environment(e: &pb::EnvironmentState) -> Result<(), RecordError> {
    text("environment.os", &e.os, true, TEXT_BYTES_MAX)?;
    text("environment.kernel", &e.kernel, false, TEXT_BYTES_MAX)?;
    text("environment.arch", &e.arch, true, TEXT_BYTES_MAX)?;
    digest("environment.container_image", &e.container_image, false)?;
    text("environment.hostname", &e.hostname, false, TEXT_BYTES_MAX)?;
    items("environment.runtimes", e.runtimes.len(), LIST_ITEMS_MAX)?;
    for (i, r) in e.runtimes.iter().enumerate() {
        text(
            &format!("environment.runtimes[{i}].name"),
            &r.name,
            true,
            TEXT_BYTES_MAX,
        )?;
        text(
            &format!("environment.runtimes[{i}].version"),
            &r.version,
            false,
            TEXT_BYTES_MAX,
        )?;
    }
    items(
        "environment.feature_flags",
        e.feature_flags.len(),
        LIST_ITEMS_MAX,
    )?;
    for (i, f) in e.feature_flags.iter().enumerate() {
        let field = format!("environment.feature_flags[{i}].name");
        text(&field, &f.name, true, TEXT_BYTES_MAX)?;
        text(
            &format!("environment.feature_flags[{i}].value"),
            &f.value,
            false,
            TEXT_BYTES_MAX,
        )?;
        if i > 0 && e.feature_flags[i - 1].name >= f.name {
            return Err(invalid(
                &field,
                "flags must be sorted by name with no duplicates",
            ));
        }
    }
    if let Some(t) = &e.time_source {
        text(
            "environment.time_source.kind",
            &t.kind,
            true,
            TEXT_BYTES_MAX,
        )?;
    }
    Ok(())
}

fn validate_mutation(m: &pb::Mutation) -> Result<(), RecordError> {
    text("mutation.kind", &m.kind, true, TEXT_BYTES_MAX)?;
    text("mutation.id", &m.id, true, TEXT_BYTES_MAX)?;
    text("mutation.source", &m.source, true, TEXT_BYTES_MAX)?;
    if m.sequence == 0 {
        return Err(RecordError::MissingField {
            field: "mutation.sequence".to_string(),
        });
    }
    check_sequence("mutation.sequence", m.sequence)?;
    text("mutation.origin", &m.origin, false, TEXT_BYTES_MAX)?;
    digest("mutation.payload_digest", &m.payload_digest, false)?;
    match &m.external_ref {
        Some(pb::mutation::ExternalRef::Kafka(k)) => {
            text("mutation.kafka.topic", &k.topic, true, TEXT_BYTES_MAX)?
        }
        Some(pb::mutation::ExternalRef::DbTx(d)) => {
            text("mutation.db_tx.database", &d.database, true, TEXT_BYTES_MAX)?;
            text("mutation.db_tx.tx_id", &d.tx_id, true, TEXT_BYTES_MAX)?;
        }
        Some(pb::mutation::ExternalRef::OtherRef(o)) => {
            text("mutation.other_ref", o, true, TEXT_BYTES_MAX)?
        }
        None => {}
    }
    items("mutation.captures", m.captures.len(), LIST_ITEMS_MAX)?;
    for (i, c) in m.captures.iter().enumerate() {
        text(&format!("mutation.captures[{i}]"), c, true, TEXT_BYTES_MAX)?;
    }
    Ok(())
}

fn validate_nondeterminism(n: &pb::Nondeterminism) -> Result<(), RecordError> {
    use pb::nondeterminism::Capture;
    text(
        "nondeterminism.capture_id",
        &n.capture_id,
        true,
        TEXT_BYTES_MAX,
    )?;
    match &n.capture {
        None => Err(RecordError::MissingField {
            field: "nondeterminism.capture (seed, clock or external_call)".to_string(),
        }),
        Some(Capture::Seed(s)) => {
            text("nondeterminism.seed.name", &s.name, false, TEXT_BYTES_MAX)?;
            if s.seed.is_empty() {
                return Err(RecordError::MissingField {
                    field: "nondeterminism.seed.seed".to_string(),
                });
            }
            bytes_max("nondeterminism.seed.seed", s.seed.len(), SEED_BYTES_MAX)
        }
        Some(Capture::Clock(c)) => {
            text("nondeterminism.clock.clock", &c.clock, true, TEXT_BYTES_MAX)?;
            if c.unix_nanos == 0 {
                return Err(RecordError::MissingField {
                    field: "nondeterminism.clock.unix_nanos".to_string(),
                });
            }
            Ok(())
        }
        Some(Capture::ExternalCall(x)) => {
            text(
                "nondeterminism.external_call.target",
                &x.target,
                true,
                TEXT_BYTES_MAX,
            )?;
            digest(
                "nondeterminism.external_call.request_digest",
                &x.request_digest,
                false,
            )?;
            digest(
                "nondeterminism.external_call.response_digest",
                &x.response_digest,
                true,
            )?;
            bytes_max(
                "nondeterminism.external_call.response",
                x.response.len(),
                EXTERNAL_RESPONSE_BYTES_MAX,
            )
        }
    }
}

/// The largest sequence number a record may carry. The determinism rules compute "the next
/// sequence" as `sequence + 1`; 2^64 - 1 would have no successor.
pub const SEQUENCE_MAX: u64 = u64::MAX - 1;

fn check_sequence(field: &str, sequence: u64) -> Result<(), RecordError> {
    if sequence > SEQUENCE_MAX {
        return Err(invalid(
            field,
            "2^64 - 1 is not a usable sequence number: it has no successor",
        ));
    }
    Ok(())
}

fn validate_state_digest(s: &pb::StateDigest) -> Result<(), RecordError> {
    text("state_digest.source", &s.source, true, TEXT_BYTES_MAX)?;
    check_sequence("state_digest.sequence", s.sequence)?;
    digest("state_digest.digest", &s.digest, true)
}

fn validate_policy(p: &pb::Policy) -> Result<(), RecordError> {
    use pb::policy::Change;
    let (name, g) = match &p.change {
        Some(Change::Grant(g)) => ("policy.grant", g),
        Some(Change::Revoke(g)) => ("policy.revoke", g),
        None => {
            return Err(RecordError::MissingField {
                field: "policy.change (grant or revoke)".to_string(),
            })
        }
    };
    if g.writer_key.len() != 32 {
        return Err(invalid(
            &format!("{name}.writer_key"),
            format!(
                "an ed25519 public key is 32 bytes, found {}",
                g.writer_key.len()
            ),
        ));
    }
    text(
        &format!("{name}.writer_name"),
        &g.writer_name,
        false,
        TEXT_BYTES_MAX,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base(body: Body) -> pb::Record {
        pb::Record {
            system: "orders-service".into(),
            scope: "prod/eu-west-1".into(),
            observed_at_unix_nanos: 1_700_000_000_000_000_000,
            body: Some(body),
        }
    }

    fn sha(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    fn code() -> pb::Record {
        base(Body::Code(pb::CodeState {
            repo: "github.com/acme/orders".into(),
            commit: "a".repeat(40),
            artifacts: vec![pb::Artifact {
                name: "orders".into(),
                digest: sha('b'),
            }],
            ..Default::default()
        }))
    }

    fn err_of(r: &pb::Record) -> RecordError {
        decode_record(&r.encode_to_vec()).expect_err("must be rejected")
    }

    #[test]
    fn valid_code_record_round_trips() {
        let r = code();
        assert_eq!(decode_record(&r.encode_to_vec()), Ok(r));
    }

    #[test]
    fn errors_name_the_field() {
        let mut r = code();
        r.system.clear();
        assert_eq!(err_of(&r).to_string(), "field system is required");

        let mut r = code();
        r.system = "orders service".into();
        assert!(err_of(&r)
            .to_string()
            .starts_with("field system is invalid"));

        let mut r = code();
        r.body = None;
        assert_eq!(err_of(&r), RecordError::MissingBody);

        let mut r = code();
        if let Some(Body::Code(c)) = &mut r.body {
            c.artifacts[0].digest = "sha256:xyz".into();
        }
        assert!(err_of(&r)
            .to_string()
            .starts_with("field code.artifacts[0].digest is invalid"));

        let mut r = code();
        r.scope = "x".repeat(SCOPE_BYTES_MAX + 1);
        assert_eq!(
            err_of(&r),
            RecordError::FieldTooLong {
                field: "scope".into(),
                len: SCOPE_BYTES_MAX + 1,
                max: SCOPE_BYTES_MAX
            }
        );
    }

    #[test]
    fn partial_config_is_rejected() {
        let entry = |key: &str, error: &str| pb::ConfigEntry {
            key: key.into(),
            source: "file".into(),
            digest: sha('c'),
            error: error.into(),
            ..Default::default()
        };
        let good = pb::ConfigSnapshot {
            version: "v1".into(),
            complete: true,
            entries: vec![entry("file:/a", ""), entry("file:/b", "")],
        };
        assert!(decode_record(&base(Body::Config(good.clone())).encode_to_vec()).is_ok());

        let mut incomplete = good.clone();
        incomplete.complete = false;
        assert!(matches!(
            err_of(&base(Body::Config(incomplete))),
            RecordError::PartialConfig { .. }
        ));

        let mut unreadable = good.clone();
        unreadable.entries[1] = entry("file:/b", "permission denied");
        assert_eq!(
            err_of(&base(Body::Config(unreadable))).to_string(),
            "partial config is rejected: entry \"file:/b\" could not be collected: permission denied"
        );

        let mut unsorted = good;
        unsorted.entries.swap(0, 1);
        assert!(err_of(&base(Body::Config(unsorted)))
            .to_string()
            .contains("sorted"));
    }

    #[test]
    fn commit_ids_are_lowercase_hex() {
        let with_commit = |commit: String| {
            let mut r = code();
            if let Some(Body::Code(c)) = &mut r.body {
                c.commit = commit;
            }
            r
        };
        let lower = "0123456789abcdef".repeat(4);
        assert!(decode_record(&with_commit(lower[..40].to_string()).encode_to_vec()).is_ok());
        assert!(decode_record(&with_commit(lower.clone()).encode_to_vec()).is_ok());
        let err = err_of(&with_commit(lower[..40].to_uppercase()));
        assert_eq!(
            err.to_string(),
            "field code.commit is invalid: a full commit id of 40 or 64 lowercase hex digits is required"
        );
        assert!(matches!(
            err_of(&with_commit(format!("{}A", &lower[..39]))),
            RecordError::InvalidField { .. }
        ));
    }

    fn config_with(entry: pb::ConfigEntry) -> pb::Record {
        base(Body::Config(pb::ConfigSnapshot {
            version: "v1".into(),
            complete: true,
            entries: vec![entry],
        }))
    }

    fn clear_entry(value: &str) -> pb::ConfigEntry {
        pb::ConfigEntry {
            key: "file:/etc/orders/app.yaml".into(),
            source: "file".into(),
            digest: sha('c'),
            value: value.into(),
            ..Default::default()
        }
    }

    #[test]
    fn clear_config_values_may_span_lines() {
        let yaml = "server:\n\tport: 8080\n\thost: \"0.0.0.0\"\n";
        let r = config_with(clear_entry(yaml));
        assert_eq!(decode_record(&r.encode_to_vec()), Ok(r));
        for bad in ["a\r\nb", "a\u{0}b", "a\u{1b}[0m", "a\u{7f}", "a\u{85}b"] {
            let err = err_of(&config_with(clear_entry(bad)));
            assert_eq!(
                err,
                RecordError::InvalidField {
                    field: "config.entries[0].value".into(),
                    reason: "contains control characters other than newline and tab".into()
                },
                "{bad:?}"
            );
        }
        // Still bounded.
        let long = "a\n".repeat(CONFIG_VALUE_BYTES_MAX / 2 + 1);
        assert!(matches!(
            err_of(&config_with(clear_entry(&long))),
            RecordError::FieldTooLong { .. }
        ));
        // Other text fields keep refusing newlines, the config key among them.
        let mut entry = clear_entry("x");
        entry.key = "file:/a\nb".into();
        assert!(matches!(
            err_of(&config_with(entry)),
            RecordError::InvalidField { .. }
        ));
        let mut r = code();
        if let Some(Body::Code(c)) = &mut r.body {
            c.reference = "v1\nv2".into();
        }
        assert!(matches!(err_of(&r), RecordError::InvalidField { .. }));
    }

    #[test]
    fn hmac_digests_only_in_redacted_config_entries() {
        let hmac = format!("hmac-sha256:{}", "d".repeat(64));
        let redacted = pb::ConfigEntry {
            digest: hmac.clone(),
            redacted: true,
            value: String::new(),
            ..clear_entry("")
        };
        assert!(decode_record(&config_with(redacted).encode_to_vec()).is_ok());

        let hmac_field = |field: &str, r: pb::Record| {
            assert_eq!(
                err_of(&r),
                RecordError::InvalidField {
                    field: field.into(),
                    reason: "hmac-sha256 is only for redacted config entry values; use sha256, sha512 or blake3".into()
                }
            );
        };
        let mut r = code();
        if let Some(Body::Code(c)) = &mut r.body {
            c.artifacts[0].digest = hmac.clone();
        }
        hmac_field("code.artifacts[0].digest", r);
        hmac_field(
            "mutation.payload_digest",
            base(Body::Mutation(pb::Mutation {
                kind: "order_created".into(),
                id: "evt-1".into(),
                source: "kafka:orders/3".into(),
                sequence: 1,
                payload_digest: hmac.clone(),
                ..Default::default()
            })),
        );
        hmac_field(
            "state_digest.digest",
            base(Body::StateDigest(pb::StateDigest {
                source: "db".into(),
                digest: hmac.clone(),
                ..Default::default()
            })),
        );
        hmac_field(
            "environment.container_image",
            base(Body::Environment(pb::EnvironmentState {
                os: "linux".into(),
                arch: "x86_64".into(),
                container_image: hmac.clone(),
                ..Default::default()
            })),
        );
        hmac_field(
            "nondeterminism.external_call.response_digest",
            base(Body::Nondeterminism(pb::Nondeterminism {
                capture_id: "fx-1".into(),
                capture: Some(pb::nondeterminism::Capture::ExternalCall(
                    pb::ExternalCall {
                        target: "https://fx.example/rates".into(),
                        response_digest: hmac.clone(),
                        ..Default::default()
                    },
                )),
            })),
        );
        // A clear config entry with an hmac digest is refused as before (it must be redacted).
        assert!(matches!(
            err_of(&config_with(pb::ConfigEntry {
                digest: hmac,
                ..clear_entry("x")
            })),
            RecordError::InvalidField { field, .. } if field == "config.entries[0].redacted"
        ));
    }

    #[test]
    fn sequences_have_a_successor() {
        let mutation = |sequence: u64| {
            base(Body::Mutation(pb::Mutation {
                kind: "order_created".into(),
                id: "evt-1".into(),
                source: "kafka:orders/3".into(),
                sequence,
                ..Default::default()
            }))
        };
        let digest = |sequence: u64| {
            base(Body::StateDigest(pb::StateDigest {
                source: "kafka:orders/3".into(),
                sequence,
                digest: sha('a'),
                baseline: true,
            }))
        };
        assert!(decode_record(&mutation(SEQUENCE_MAX).encode_to_vec()).is_ok());
        assert!(decode_record(&digest(SEQUENCE_MAX).encode_to_vec()).is_ok());
        assert!(decode_record(&digest(0).encode_to_vec()).is_ok());
        for (field, r) in [
            ("mutation.sequence", mutation(u64::MAX)),
            ("state_digest.sequence", digest(u64::MAX)),
        ] {
            assert!(
                matches!(err_of(&r), RecordError::InvalidField { field: f, .. } if f == field),
                "{field}"
            );
        }
    }

    #[test]
    fn unknown_body_and_non_canonical_bytes_are_rejected() {
        let mut bytes = code().encode_to_vec();
        // Field 17, wire type 0, value 1: a body from the future.
        bytes.extend_from_slice(&[0x88, 0x01, 0x01]);
        assert_eq!(
            decode_record(&bytes),
            Err(RecordError::UnknownField { number: 17 })
        );

        // The same fields in a different order decode to the same record but are not canonical.
        let r = code();
        let mut reordered = pb::Record {
            system: r.system.clone(),
            ..Default::default()
        }
        .encode_to_vec();
        let rest = pb::Record {
            system: String::new(),
            ..r
        }
        .encode_to_vec();
        reordered = [rest, reordered].concat();
        assert_eq!(decode_record(&reordered), Err(RecordError::NonCanonical));

        assert!(matches!(
            decode_record(&[0x0a, 0x05, b'a']),
            Err(RecordError::Malformed { .. })
        ));
        assert!(matches!(
            decode_record(&vec![0u8; RECORD_BYTES_MAX + 1]),
            Err(RecordError::TooLarge { .. })
        ));
    }
}

#[cfg(test)]
mod json_tests {
    use super::*;

    #[test]
    fn records_have_a_json_form() {
        let json = r#"{
            "system": "orders-service",
            "observed_at_unix_nanos": 1700000000000000000,
            "body": {"nondeterminism": {"capture_id": "seed-1", "capture": {"seed": {"name": "pricing", "seed": "AQID"}}}}
        }"#;
        let record: pb::Record = serde_json::from_str(json).expect("parses");
        validate(&record).expect("valid");
        let Some(Body::Nondeterminism(n)) = &record.body else {
            panic!("wrong body")
        };
        assert_eq!(
            n.capture,
            Some(pb::nondeterminism::Capture::Seed(pb::RandomSeed {
                name: "pricing".into(),
                seed: vec![1, 2, 3]
            }))
        );
        let back: pb::Record =
            serde_json::from_str(&serde_json::to_string(&record).expect("serializes"))
                .expect("parses");
        assert_eq!(back, record);
        assert!(serde_json::from_str::<pb::Record>(r#"{"system": "x", "bogus": 1}"#).is_err());
    }
}
