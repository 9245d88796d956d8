//! Signed records: one valid record per body kind, and bad ones that must be refused with the
//! recorded `RecordError` or `SignatureError` variant.

use ed25519_dalek::{Signer as _, SigningKey};
use prost::Message as _;
use sha2::Digest as _;
use stateledger_core::record::{
    pb, sign_record, Body, CheckedRecord, Dimension, RecordError, SignatureError,
    SignedRecordError, RECORD_SIGNATURE_DOMAIN,
};

use super::keys::{admin, other_writer, writer, LEDGER_TIME_0};
use super::schema::{SignedRecordCase, SignedRecordsFile};

/// `sha256:<hex>` of a label: a well-formed digest that stands for some content.
pub fn sha256_of(label: &str) -> String {
    format!(
        "sha256:{}",
        hex::encode(sha2::Sha256::digest(label.as_bytes()))
    )
}

fn record(system: &str, offset: u64, body: Body) -> pb::Record {
    pb::Record {
        system: system.to_string(),
        scope: "prod/eu-west-1".to_string(),
        // Observed shortly before the ledger assigns its time.
        observed_at_unix_nanos: LEDGER_TIME_0 - 500_000 + offset,
        body: Some(body),
    }
}

fn config_entries() -> Vec<pb::ConfigEntry> {
    vec![
        pb::ConfigEntry {
            key: "env:DB_URL".into(),
            source: "env".into(),
            digest: format!(
                "hmac-sha256:{}",
                hex::encode(sha2::Sha256::digest(b"salted db url"))
            ),
            redacted: true,
            size: 48,
            ..Default::default()
        },
        pb::ConfigEntry {
            key: "file:/etc/orders/app.conf".into(),
            source: "file".into(),
            digest: sha256_of("max_items=50"),
            value: "max_items=50".into(),
            size: 12,
            ..Default::default()
        },
    ]
}

/// A valid record of one body kind, who signs it, and a name for it.
#[derive(Debug, Clone)]
pub struct ValidRecord {
    pub name: &'static str,
    pub record: pb::Record,
    pub key: SigningKey,
}

/// The valid records, in the order they are appended to the document log.
pub fn valid_records() -> Vec<ValidRecord> {
    use pb::nondeterminism::Capture;
    let orders = "orders-service";
    let v = |name, record, key| ValidRecord { name, record, key };
    vec![
        v(
            "policy: admin grants the orders-service writer",
            record(
                orders,
                0,
                Body::Policy(pb::Policy {
                    change: Some(pb::policy::Change::Grant(pb::WriterGrant {
                        writer_key: writer().verifying_key().to_bytes().to_vec(),
                        writer_name: "orders-collector".into(),
                    })),
                }),
            ),
            admin(),
        ),
        v(
            "code: a tagged build with artifacts and lockfiles",
            record(
                orders,
                1,
                Body::Code(pb::CodeState {
                    repo: "github.com/acme/orders-service".into(),
                    commit: "3f2a9c1d4b5e6f708192a3b4c5d6e7f8091a2b3c".into(),
                    dirty: false,
                    reference: "refs/tags/v1.4.2".into(),
                    artifacts: vec![pb::Artifact {
                        name: "orders-service".into(),
                        digest: sha256_of("orders-service binary v1.4.2"),
                    }],
                    lockfiles: vec![pb::Artifact {
                        name: "Cargo.lock".into(),
                        digest: sha256_of("Cargo.lock v1.4.2"),
                    }],
                    required_config: vec!["env:DB_URL".into(), "file:/etc/orders/app.conf".into()],
                }),
            ),
            writer(),
        ),
        v(
            "config: a complete snapshot with a redacted entry",
            record(
                orders,
                2,
                Body::Config(pb::ConfigSnapshot {
                    version: "cfg-2025-11-20".into(),
                    complete: true,
                    entries: config_entries(),
                }),
            ),
            writer(),
        ),
        v(
            "environment: os, kernel, image, runtimes, flags and time source",
            record(
                orders,
                3,
                Body::Environment(pb::EnvironmentState {
                    os: "linux".into(),
                    kernel: "6.1.0-18-amd64".into(),
                    arch: "x86_64".into(),
                    container_image: sha256_of("orders-service image v1.4.2"),
                    runtimes: vec![pb::Runtime {
                        name: "glibc".into(),
                        version: "2.36".into(),
                    }],
                    feature_flags: vec![
                        pb::FeatureFlag {
                            name: "fast-checkout".into(),
                            value: "on".into(),
                        },
                        pb::FeatureFlag {
                            name: "new-pricing".into(),
                            value: "off".into(),
                        },
                    ],
                    time_source: Some(pb::TimeSource {
                        kind: "chrony".into(),
                        synchronized: true,
                        max_error_nanos: 2_000_000,
                    }),
                    hostname: "orders-7f9c".into(),
                }),
            ),
            writer(),
        ),
        v(
            "state_digest: a baseline before the first mutation",
            record(
                orders,
                4,
                Body::StateDigest(pb::StateDigest {
                    source: "kafka:orders/3".into(),
                    sequence: 0,
                    digest: format!(
                        "blake3:{}",
                        hex::encode(blake3::hash(b"empty orders db").as_bytes())
                    ),
                    baseline: true,
                }),
            ),
            writer(),
        ),
        v(
            "nondeterminism: a random seed",
            record(
                orders,
                5,
                Body::Nondeterminism(pb::Nondeterminism {
                    capture_id: "cap-1".into(),
                    capture: Some(Capture::Seed(pb::RandomSeed {
                        name: "pricing-rng".into(),
                        seed: (0..16u8).collect(),
                    })),
                }),
            ),
            writer(),
        ),
        v(
            "mutation: a Kafka event depending on a capture",
            record(
                orders,
                6,
                Body::Mutation(pb::Mutation {
                    kind: "order_created".into(),
                    id: "evt-91823".into(),
                    source: "kafka:orders/3".into(),
                    sequence: 1,
                    origin: "checkout-api".into(),
                    payload_digest: sha256_of("order 91823 payload"),
                    external_ref: Some(pb::mutation::ExternalRef::Kafka(pb::KafkaRef {
                        topic: "orders".into(),
                        partition: 3,
                        offset: 91_823,
                    })),
                    captures: vec!["cap-1".into()],
                }),
            ),
            writer(),
        ),
        v(
            "nondeterminism: a clock reading",
            record(
                orders,
                7,
                Body::Nondeterminism(pb::Nondeterminism {
                    capture_id: "cap-2".into(),
                    capture: Some(Capture::Clock(pb::ClockReading {
                        clock: "wall".into(),
                        unix_nanos: LEDGER_TIME_0 - 250_000,
                    })),
                }),
            ),
            writer(),
        ),
        v(
            "code: another system by another writer",
            record(
                "billing-service",
                8,
                Body::Code(pb::CodeState {
                    repo: "github.com/acme/billing".into(),
                    commit: "9".repeat(64),
                    ..Default::default()
                }),
            ),
            other_writer(),
        ),
    ]
}

/// `RecordError::<Variant>` or `SignatureError::<Variant>`.
pub fn signed_record_error_name(e: &SignedRecordError) -> String {
    let name = match e {
        SignedRecordError::Record(r) => match r {
            RecordError::TooLarge { .. } => "RecordError::TooLarge",
            RecordError::Malformed { .. } => "RecordError::Malformed",
            RecordError::UnknownField { .. } => "RecordError::UnknownField",
            RecordError::NonCanonical => "RecordError::NonCanonical",
            RecordError::MissingBody => "RecordError::MissingBody",
            RecordError::MissingField { .. } => "RecordError::MissingField",
            RecordError::FieldTooLong { .. } => "RecordError::FieldTooLong",
            RecordError::TooManyItems { .. } => "RecordError::TooManyItems",
            RecordError::InvalidField { .. } => "RecordError::InvalidField",
            RecordError::PartialConfig { .. } => "RecordError::PartialConfig",
            other => return format!("unnamed record error {other:?}"),
        },
        SignedRecordError::Signature(s) => match s {
            SignatureError::KeyLength { .. } => "SignatureError::KeyLength",
            SignatureError::KeyInvalid => "SignatureError::KeyInvalid",
            SignatureError::SignatureLength { .. } => "SignatureError::SignatureLength",
            SignatureError::Invalid { .. } => "SignatureError::Invalid",
            other => return format!("unnamed signature error {other:?}"),
        },
        other => return format!("unnamed error {other:?}"),
    };
    name.to_string()
}

/// Record bytes of the code record with its fields reordered: decodes to the same record but is
/// not the canonical encoding.
pub fn non_canonical_bytes() -> Vec<u8> {
    let r = valid_records()[1].record.clone();
    let system_only = pb::Record {
        system: r.system.clone(),
        ..Default::default()
    }
    .encode_to_vec();
    let rest = pb::Record {
        system: String::new(),
        ..r
    }
    .encode_to_vec();
    [rest, system_only].concat()
}

/// Encodes and signs a record that may be invalid (bypassing `CheckedRecord::sign`'s check).
fn signed(record: &pb::Record, key: &SigningKey) -> SignedRecordCase {
    signed_bytes(record.encode_to_vec(), key)
}

fn signed_bytes(bytes: Vec<u8>, key: &SigningKey) -> SignedRecordCase {
    SignedRecordCase {
        name: String::new(),
        dimension: None,
        signature: sign_record(key, &bytes).to_vec(),
        writer_key: key.verifying_key().to_bytes().to_vec(),
        record: bytes,
        valid: false,
        error: None,
    }
}

fn bad(name: &str, error: &str, mut case: SignedRecordCase) -> SignedRecordCase {
    case.name = name.to_string();
    case.error = Some(error.to_string());
    case
}

pub fn signed_records_file() -> SignedRecordsFile {
    let mut cases = Vec::new();
    for v in valid_records() {
        let checked = CheckedRecord::sign(v.record.clone(), &v.key).expect("valid record");
        let body = v.record.body.as_ref().expect("has a body");
        cases.push(SignedRecordCase {
            name: v.name.to_string(),
            dimension: Some(Dimension::of(body).name().to_string()),
            record: checked.bytes,
            writer_key: checked.writer_key.0.to_vec(),
            signature: checked.signature.to_vec(),
            valid: true,
            error: None,
        });
    }
    let code = valid_records()[1].record.clone();
    let good = signed(&code, &writer());
    let sig_err = "SignatureError::Invalid";

    let mut c = good.clone();
    c.signature[10] ^= 0x04;
    cases.push(bad("signature with one bit flipped", sig_err, c));

    let mut c = good.clone();
    // Byte 2 is the first byte of the system name: "orders-service" becomes "nrders-service",
    // still a valid record, so only the signature can catch it.
    c.record[2] ^= 0x01;
    cases.push(bad(
        "record byte flipped after signing (system name changed)",
        sig_err,
        c,
    ));

    let mut c = good.clone();
    c.signature = writer().sign(&c.record).to_bytes().to_vec();
    cases.push(bad(
        &format!(
            "signature over the record bytes without the {:?} domain separator",
            String::from_utf8_lossy(RECORD_SIGNATURE_DOMAIN)
        ),
        sig_err,
        c,
    ));

    let mut c = good.clone();
    c.writer_key = other_writer().verifying_key().to_bytes().to_vec();
    cases.push(bad(
        "signature by the orders writer under the billing writer's key",
        sig_err,
        c,
    ));

    let mut c = good.clone();
    c.writer_key.pop();
    cases.push(bad(
        "writer key of 31 bytes",
        "SignatureError::KeyLength",
        c,
    ));

    let mut c = good.clone();
    c.writer_key.push(0);
    cases.push(bad(
        "writer key of 33 bytes",
        "SignatureError::KeyLength",
        c,
    ));

    let mut c = good.clone();
    // The compressed identity point: a small-order key under which forged signatures verify.
    c.writer_key = [[1u8].as_slice(), &[0u8; 31]].concat();
    cases.push(bad(
        "writer key is a small-order point (the identity)",
        "SignatureError::KeyInvalid",
        c,
    ));

    let mut c = good.clone();
    c.signature.pop();
    cases.push(bad(
        "signature of 63 bytes",
        "SignatureError::SignatureLength",
        c,
    ));

    cases.push(bad(
        "non-canonical record: fields out of order, signed",
        "RecordError::NonCanonical",
        signed_bytes(non_canonical_bytes(), &writer()),
    ));

    let encoded = code.encode_to_vec();
    let mut code_without_scope = code.clone();
    code_without_scope.scope.clear();
    let without_scope = code_without_scope.encode_to_vec();
    // The system field is first: tag 0x0a, one length byte, the name.
    let system_end = 2 + without_scope[1] as usize;
    // An empty scope written out explicitly (field 2, length 0): proto3 omits default values.
    let default_written = [
        &without_scope[..system_end],
        &[0x12, 0x00],
        &without_scope[system_end..],
    ]
    .concat();
    cases.push(bad(
        "non-canonical record: an empty scope written out, signed",
        "RecordError::NonCanonical",
        signed_bytes(default_written, &writer()),
    ));

    let mut with_unknown = encoded.clone();
    // Field 17, wire type 0, value 1: a body this version does not know.
    with_unknown.extend_from_slice(&[0x88, 0x01, 0x01]);
    cases.push(bad(
        "unknown body field 17, signed",
        "RecordError::UnknownField",
        signed_bytes(with_unknown, &writer()),
    ));

    cases.push(bad(
        "record bytes cut short, signed",
        "RecordError::Malformed",
        signed_bytes(encoded[..encoded.len() - 5].to_vec(), &writer()),
    ));

    let config = |complete: bool, entries: Vec<pb::ConfigEntry>| {
        record(
            "orders-service",
            2,
            Body::Config(pb::ConfigSnapshot {
                version: "cfg-2025-11-20".into(),
                complete,
                entries,
            }),
        )
    };
    cases.push(bad(
        "partial config: complete = false, signed",
        "RecordError::PartialConfig",
        signed(&config(false, config_entries()), &writer()),
    ));
    let mut unreadable = config_entries();
    unreadable[1].error = "permission denied".into();
    unreadable[1].value.clear();
    cases.push(bad(
        "partial config: an entry could not be read, signed",
        "RecordError::PartialConfig",
        signed(&config(true, unreadable), &writer()),
    ));
    cases.push(bad(
        "partial config: no entries, signed",
        "RecordError::PartialConfig",
        signed(&config(true, Vec::new()), &writer()),
    ));
    let mut unsorted = config_entries();
    unsorted.swap(0, 1);
    cases.push(bad(
        "config entries not sorted by key, signed",
        "RecordError::InvalidField",
        signed(&config(true, unsorted), &writer()),
    ));

    let mut r = code.clone();
    r.system.clear();
    cases.push(bad(
        "missing system, signed",
        "RecordError::MissingField",
        signed(&r, &writer()),
    ));

    let mut r = code.clone();
    r.system = "orders service".into();
    cases.push(bad(
        "system name with a space, signed",
        "RecordError::InvalidField",
        signed(&r, &writer()),
    ));

    let mut r = code.clone();
    r.observed_at_unix_nanos = 0;
    cases.push(bad(
        "missing observed_at_unix_nanos, signed",
        "RecordError::MissingField",
        signed(&r, &writer()),
    ));

    let mut r = code.clone();
    r.body = None;
    cases.push(bad(
        "no body, signed",
        "RecordError::MissingBody",
        signed(&r, &writer()),
    ));

    let mut r = code.clone();
    if let Some(Body::Code(c)) = &mut r.body {
        c.commit = "3f2a9c1".into();
    }
    cases.push(bad(
        "code commit is not a full commit id, signed",
        "RecordError::InvalidField",
        signed(&r, &writer()),
    ));

    let mut r = code;
    if let Some(Body::Code(c)) = &mut r.body {
        c.artifacts[0].digest = format!("SHA256:{}", "A".repeat(64));
    }
    cases.push(bad(
        "artifact digest not in <algorithm>:<lowercase hex>, signed",
        "RecordError::InvalidField",
        signed(&r, &writer()),
    ));

    let file = SignedRecordsFile {
        description: "Signed records as submitted: base64 record bytes (canonical protobuf \
                      stateledger.v1.Record), base64 32-byte ed25519 writer key, base64 64-byte \
                      signature over the bytes of signature_domain (with its NUL) || record. Valid cases cover every body \
                      kind; bad cases name the RecordError or SignatureError variant \
                      CheckedRecord::check returns (the record is checked before the signature)."
            .to_string(),
        signature_domain: String::from_utf8(RECORD_SIGNATURE_DOMAIN.to_vec())
            .expect("the domain separator is ASCII"),
        cases,
    };
    for c in &file.cases {
        assert_signed_record_case(c);
    }
    file
}

/// Checks one signed-record case as recorded.
pub fn assert_signed_record_case(c: &SignedRecordCase) {
    let got = CheckedRecord::check(&pb::SignedRecord {
        record: c.record.clone(),
        writer_key: c.writer_key.clone(),
        signature: c.signature.clone(),
    });
    match (c.valid, &c.error, got) {
        (true, None, Ok(checked)) => {
            let body = checked
                .record
                .body
                .as_ref()
                .expect("a checked record has a body");
            assert_eq!(
                Some(Dimension::of(body).name()),
                c.dimension.as_deref(),
                "{}",
                c.name
            );
        }
        (false, Some(expected), Err(e)) => {
            assert_eq!(&signed_record_error_name(&e), expected, "{}: {e}", c.name)
        }
        (valid, error, got) => panic!(
            "{}: recorded valid={valid} error={error:?}, verification gave {got:?}",
            c.name
        ),
    }
}
