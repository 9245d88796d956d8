use super::*;
use crate::limits::MUTATION_LINE_BYTES_MAX;
use crate::{Body, RecordMeta};

fn input() -> MutationInput {
    MutationInput {
        kind: "order_created".into(),
        id: "evt-1".into(),
        source: "kafka:orders/3".into(),
        sequence: 1,
        ..Default::default()
    }
}

fn validates(m: &pb::Mutation) {
    RecordMeta::new("orders-service", "", 1)
        .record(Body::Mutation(m.clone()))
        .expect("mutation record validates");
}

#[test]
fn inline_payloads_are_hashed_never_kept() {
    let m = MutationInput {
        payload: Some("{\"order\":17}".into()),
        ..input()
    }
    .into_mutation()
    .expect("ok");
    assert_eq!(m.payload_digest, sha256_digest(b"{\"order\":17}"));
    validates(&m);

    let m = MutationInput {
        payload_base64: Some("AAEC".into()),
        ..input()
    }
    .into_mutation()
    .expect("ok");
    assert_eq!(m.payload_digest, sha256_digest(&[0, 1, 2]));

    // A digest given with the payload must match it.
    let good = sha256_digest(b"x")
        .to_uppercase()
        .replace("SHA256", "sha256");
    let m = MutationInput {
        payload: Some("x".into()),
        payload_digest: Some(good),
        ..input()
    }
    .into_mutation()
    .expect("matches");
    assert_eq!(m.payload_digest, sha256_digest(b"x"));
    assert_eq!(
        MutationInput {
            payload: Some("x".into()),
            payload_digest: Some(sha256_digest(b"y")),
            ..input()
        }
        .into_mutation(),
        Err(MutationError::PayloadMismatch {
            given: sha256_digest(b"y"),
            computed: sha256_digest(b"x")
        })
    );
    assert_eq!(
        MutationInput {
            payload: Some("x".into()),
            payload_base64: Some("eA==".into()),
            ..input()
        }
        .into_mutation(),
        Err(MutationError::Conflicting {
            fields: "payload, payload_base64"
        })
    );
}

#[test]
fn references_and_required_fields() {
    let m = MutationInput {
        kafka: Some(parse_kafka_ref("orders/eu/3/1041").expect("parses")),
        captures: vec!["seed-1".into()],
        origin: "orders-api".into(),
        ..input()
    }
    .into_mutation()
    .expect("ok");
    assert_eq!(
        m.external_ref,
        Some(pb::mutation::ExternalRef::Kafka(pb::KafkaRef {
            topic: "orders/eu".into(),
            partition: 3,
            offset: 1041
        }))
    );
    validates(&m);
    assert!(parse_kafka_ref("orders/x/1").is_err());
    assert!(parse_kafka_ref("orders").is_err());

    assert_eq!(
        MutationInput {
            kafka: Some(KafkaInput {
                topic: "t".into(),
                ..Default::default()
            }),
            other_ref: Some("s3://bucket/x".into()),
            ..input()
        }
        .into_mutation(),
        Err(MutationError::Conflicting {
            fields: "kafka, db, other_ref"
        })
    );
    assert_eq!(
        MutationInput {
            id: String::new(),
            ..input()
        }
        .into_mutation(),
        Err(MutationError::Missing { field: "id" })
    );
    assert!(matches!(
        MutationInput {
            sequence: 0,
            ..input()
        }
        .into_mutation(),
        Err(MutationError::Invalid {
            field: "sequence",
            ..
        })
    ));
}

const STREAM: &str = r#"{"kind":"order_created","id":"evt-1","source":"kafka:orders/3","sequence":1,"payload":"a","kafka":{"topic":"orders","partition":3,"offset":100}}

{"type":"order_paid","id":"evt-2","source":"kafka:orders/3","sequence":2,"hash":"sha256:2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae","db":{"database":"orders","tx_id":9001},"observed_at_unix_nanos":1700000000000000000}
not json
{"kind":"order_paid","id":"evt-3","source":"kafka:orders/3","sequence":3,"colour":"red"}
{"kind":"order_paid","source":"kafka:orders/3","sequence":3}
{"kind":"order_paid","id":"evt-1b","source":"kafka:orders/3","sequence":1}
{"kind":"refund","id":"r-1","source":"postgres:refunds","sequence":7,"other_ref":"refunds#7"}
"#;

#[test]
fn jsonl_lines_are_numbered() {
    let results: Vec<_> = MutationReader::new(STREAM.as_bytes()).collect();
    let lines: Vec<Result<usize, (usize, String)>> = results
        .iter()
        .map(|r| match r {
            Ok(m) => Ok(m.line),
            Err(e) => Err((e.line, e.error.to_string())),
        })
        .collect();
    assert_eq!(lines.len(), 7);
    assert_eq!(lines[0], Ok(1));
    assert_eq!(
        lines[1],
        Ok(3),
        "the blank line 2 is passed over but counted"
    );
    let err = |i: usize| lines[i].clone().expect_err("bad line");
    assert_eq!(err(2).0, 4);
    assert!(
        err(2).1.starts_with("not a mutation object: expected"),
        "{:?}",
        err(2)
    );
    assert_eq!(err(3).0, 5);
    assert!(err(3).1.contains("unknown field `colour`"), "{:?}", err(3));
    assert_eq!(err(4).0, 6);
    assert!(err(4).1.contains("missing field `id`"), "{:?}", err(4));
    assert_eq!(
        err(5),
        (
            7,
            "source \"kafka:orders/3\" goes from sequence 2 back to 1; within a stream each source's sequence must increase".to_string()
        )
    );
    assert_eq!(lines[6], Ok(8));

    let ok: Vec<&MutationLine> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(ok[0].mutation.payload_digest, sha256_digest(b"a"));
    assert_eq!(ok[1].mutation.kind, "order_paid");
    assert_eq!(
        ok[1].observed_at_unix_nanos,
        Some(1_700_000_000_000_000_000)
    );
    assert_eq!(
        ok[1].mutation.external_ref,
        Some(pb::mutation::ExternalRef::DbTx(pb::DatabaseTx {
            database: "orders".into(),
            tx_id: "9001".into()
        }))
    );
    for m in ok {
        validates(&m.mutation);
    }
}

#[test]
fn errors_display_with_their_line() {
    let err = MutationReader::new(
        "{\"kind\":\"k\",\"id\":\"i\",\"source\":\"s\",\"sequence\":0}\n".as_bytes(),
    )
    .next()
    .expect("one line")
    .expect_err("bad");
    assert_eq!(
        err.to_string(),
        "line 1: sequence is invalid: sequence numbers start at 1"
    );
}

#[test]
fn overlong_and_binary_lines_do_not_stop_the_stream() {
    let mut stream = Vec::new();
    stream.extend_from_slice(b"\xff\xfe\n");
    stream.extend(std::iter::repeat_n(b' ', MUTATION_LINE_BYTES_MAX + 10));
    stream.extend_from_slice(b"\r\n");
    stream.extend_from_slice(b"{\"kind\":\"k\",\"id\":\"i\",\"source\":\"s\",\"sequence\":1}\r\n");
    let results: Vec<_> = MutationReader::new(&stream[..]).collect();
    assert_eq!(results.len(), 3);
    assert_eq!(
        results[0].clone().expect_err("binary"),
        MutationLineError {
            line: 1,
            error: LineError::NotUtf8
        }
    );
    assert_eq!(
        results[1].clone().expect_err("long"),
        MutationLineError {
            line: 2,
            error: LineError::TooLong {
                max: MUTATION_LINE_BYTES_MAX
            }
        }
    );
    assert_eq!(results[2].as_ref().expect("good").line, 3);
}

/// A payload given as a file is hashed; a digest given with it must be the file's.
#[test]
fn a_payload_file_is_hashed_and_reconciled_with_a_given_digest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("payload.json");
    std::fs::write(&path, b"{\"order\":17}").expect("write");
    let digest = sha256_digest(b"{\"order\":17}");

    let m = input()
        .payload_file(&path)
        .expect("hashed")
        .into_mutation()
        .expect("valid");
    assert_eq!(m.payload_digest, digest);

    // The same digest given too, in any case: accepted, recorded in canonical form.
    let given = MutationInput {
        payload_digest: Some(digest.to_uppercase()),
        ..input()
    };
    let m = given.payload_file(&path).expect("agrees");
    assert_eq!(m.payload_digest.as_deref(), Some(digest.as_str()));

    // Another digest: refused, with both digests and the file named.
    let other = sha256_digest(b"other");
    let err = MutationInput {
        payload_digest: Some(other.clone()),
        ..input()
    }
    .payload_file(&path)
    .expect_err("disagrees");
    assert_eq!(
        err,
        MutationError::PayloadFileMismatch {
            given: other,
            path: path.clone(),
            computed: digest.clone()
        }
    );

    // A digest that is no digest.
    let err = MutationInput {
        payload_digest: Some("md5:abc".into()),
        ..input()
    }
    .payload_file(&path)
    .expect_err("not a digest");
    assert!(
        matches!(
            err,
            MutationError::Invalid {
                field: "payload_digest",
                ..
            }
        ),
        "{err:?}"
    );

    // An inline payload as well: refused before the file is read.
    let err = MutationInput {
        payload: Some("{}".into()),
        ..input()
    }
    .payload_file(&dir.path().join("missing"))
    .expect_err("two payloads");
    assert_eq!(
        err,
        MutationError::Conflicting {
            fields: "payload, payload_file"
        }
    );

    // A file that cannot be read.
    let missing = dir.path().join("missing");
    let err = input().payload_file(&missing).expect_err("missing");
    assert!(
        matches!(&err, MutationError::PayloadFileUnreadable { path, .. } if *path == missing),
        "{err:?}"
    );
}

/// A line's own observation time wins over the caller's; without one, the caller's is used.
#[test]
fn a_line_becomes_a_record_at_its_own_time_or_the_callers() {
    let stream = concat!(
        r#"{"kind":"a","id":"1","source":"s","sequence":1,"observed_at_unix_nanos":5}"#,
        "\n",
        r#"{"kind":"a","id":"2","source":"s","sequence":2}"#,
        "\n",
    );
    let meta = RecordMeta::new("orders-service", "prod", 9);
    let records: Vec<pb::Record> = MutationReader::new(stream.as_bytes())
        .map(|line| line.expect("good line").record(&meta).expect("valid"))
        .collect();
    let times: Vec<u64> = records.iter().map(|r| r.observed_at_unix_nanos).collect();
    assert_eq!(times, [5, 9]);
    assert!(records
        .iter()
        .all(|r| r.system == "orders-service" && r.scope == "prod"));
}
