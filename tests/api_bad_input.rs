//! Bad input at the public API gets the right gRPC status with a message that names the problem,
//! appends nothing (the tree size does not move), and leaves the node serving:
//! bad signature → UNAUTHENTICATED; invalid field → INVALID_ARGUMENT naming the field; oversize
//! record → INVALID_ARGUMENT naming the limit; too many records → INVALID_ARGUMENT naming the
//! limit; a message bigger than the node's request limit → OUT_OF_RANGE from tonic; malformed
//! protobuf bytes → INVALID_ARGUMENT (the caller's fault, not the server's: the node's server
//! codec, stateledger-proto's server_codec.rs); duplicate → ALREADY_EXISTS naming the
//! existing leaf; a request mixing valid and invalid records → refused whole.

use std::time::Duration;

use stateledger_core::limits::RECORD_BYTES_MAX;
use stateledger_core::record::Body;
use stateledger_proto::v1 as pb;
use stateledger_tests::cluster::TestCluster;
use stateledger_tests::records::{self, writer_key};
use stateledger_tests::rpc;

const SYSTEM: &str = "inventory";
/// The nodes of this test accept messages up to 1 MiB on the public port...
const REQUEST_BYTES_MAX: usize = 1024 * 1024;
/// ... and at most this many records per request.
const REQUEST_RECORDS_MAX: usize = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_gets_the_right_status_and_appends_nothing() {
    let mut cluster = TestCluster::new(3);
    for id in 1..=3 {
        cluster.edit_config(id, |c| {
            c.limits.request_bytes_max = REQUEST_BYTES_MAX;
            c.limits.request_records_max = REQUEST_RECORDS_MAX;
        });
    }
    cluster.start_all();
    let leader = cluster
        .wait_leader(&[1, 2, 3], Duration::from_secs(30))
        .await;
    let writer = writer_key("inventory-writer");
    cluster.grant(SYSTEM, &writer).await;
    let mut api = cluster.ledger(leader);
    let accepted = api
        .submit(pb::SubmitRequest {
            records: vec![
                records::signed(records::mutation(SYSTEM, "item-1", 1), &writer).to_proto(),
            ],
        })
        .await
        .expect("a valid record is appended")
        .into_inner()
        .results[0]
        .leaf_index;
    let size_before = cluster.status(leader).await.expect("status").tree_size;

    let submit = |records: Vec<pb::SignedRecord>| {
        let mut api = api.clone();
        async move {
            api.submit(pb::SubmitRequest { records })
                .await
                .expect_err("the request is refused")
        }
    };
    let expect = |err: &tonic::Status, code: tonic::Code, words: &[&str]| {
        assert_eq!(err.code(), code, "{err:?}");
        for w in words {
            assert!(
                err.message().contains(w),
                "the message should name {w:?}: {}",
                err.message()
            );
        }
    };

    // Bad signature: one flipped bit.
    let mut bad_sig = records::signed(records::mutation(SYSTEM, "item-2", 2), &writer).to_proto();
    bad_sig.signature[10] ^= 0x01;
    let err = submit(vec![bad_sig.clone()]).await;
    expect(
        &err,
        tonic::Code::Unauthenticated,
        &["record 0", "nothing was appended"],
    );

    // Invalid record, field level: a required field empty, a field with control characters.
    let mut record = records::mutation(SYSTEM, "item-3", 3);
    if let Some(Body::Mutation(m)) = &mut record.body {
        m.kind.clear();
    }
    let err = submit(vec![records::signed_unchecked(&record, &writer)]).await;
    expect(
        &err,
        tonic::Code::InvalidArgument,
        &["mutation.kind", "required"],
    );
    let mut record = records::mutation(SYSTEM, "item-4", 4);
    record.scope = "line\nbreak".into();
    let err = submit(vec![records::signed_unchecked(&record, &writer)]).await;
    expect(
        &err,
        tonic::Code::InvalidArgument,
        &["scope", "control characters"],
    );
    let mut record = records::mutation(SYSTEM, "item-5", 5);
    record.system = "no spaces allowed".into();
    let err = submit(vec![records::signed_unchecked(&record, &writer)]).await;
    expect(&err, tonic::Code::InvalidArgument, &["system"]);

    // Oversize record: over RECORD_BYTES_MAX, though every field is within its own limit.
    let mut record = records::mutation(SYSTEM, "item-6", 6);
    if let Some(Body::Mutation(m)) = &mut record.body {
        m.captures = (0..700).map(|i| format!("{i:0>100}")).collect();
    }
    let big = records::signed_unchecked(&record, &writer);
    assert!(big.record.len() > RECORD_BYTES_MAX);
    let err = submit(vec![big]).await;
    expect(
        &err,
        tonic::Code::InvalidArgument,
        &[
            "record 0",
            &RECORD_BYTES_MAX.to_string(),
            "nothing was appended",
        ],
    );

    // Too many records in one request.
    let many: Vec<_> = (0..=REQUEST_RECORDS_MAX as u64)
        .map(|n| {
            records::signed(
                records::mutation(SYSTEM, &format!("bulk-{n}"), n + 1),
                &writer,
            )
            .to_proto()
        })
        .collect();
    let err = submit(many).await;
    expect(
        &err,
        tonic::Code::InvalidArgument,
        &[&REQUEST_RECORDS_MAX.to_string()],
    );

    // Wrong-length writer key.
    let mut short_key = records::signed(records::mutation(SYSTEM, "item-7", 7), &writer).to_proto();
    short_key.writer_key.truncate(31);
    let err = submit(vec![short_key]).await;
    expect(
        &err,
        tonic::Code::InvalidArgument,
        &["writer_key", "32 bytes"],
    );

    // No records at all.
    let err = submit(Vec::new()).await;
    expect(&err, tonic::Code::InvalidArgument, &["no records"]);

    // Duplicate: the record accepted above, again.
    let first = cluster
        .entry(leader, accepted)
        .await
        .expect("the accepted leaf");
    let again = pb::SignedRecord {
        record: first.record.clone(),
        writer_key: first.writer_key.0.to_vec(),
        signature: first.signature.to_vec(),
    };
    let err = submit(vec![again.clone()]).await;
    expect(&err, tonic::Code::AlreadyExists, &[&format!("{accepted}")]);
    assert_eq!(
        err.metadata()
            .get(stateledger_proto::metadata::EXISTING)
            .and_then(|v| v.to_str().ok()),
        Some(accepted.to_string().as_str()),
        "the existing leaf index travels in x-stateledger-existing"
    );

    // A request mixing valid and invalid records appends nothing, whichever comes first.
    let valid_a = records::signed(records::mutation(SYSTEM, "mix-a", 1), &writer).to_proto();
    let valid_b = records::signed(records::mutation(SYSTEM, "mix-b", 2), &writer).to_proto();
    let err = submit(vec![valid_a.clone(), bad_sig.clone(), valid_b.clone()]).await;
    expect(&err, tonic::Code::Unauthenticated, &["record 1"]);
    let mut invalid = records::mutation(SYSTEM, "mix-c", 3);
    if let Some(Body::Mutation(m)) = &mut invalid.body {
        m.sequence = 0;
    }
    let err = submit(vec![
        valid_a.clone(),
        records::signed_unchecked(&invalid, &writer),
    ])
    .await;
    expect(
        &err,
        tonic::Code::InvalidArgument,
        &["record 1", "mutation.sequence"],
    );
    let err = submit(vec![valid_a.clone(), again, valid_b.clone()]).await;
    expect(&err, tonic::Code::AlreadyExists, &["record 1"]);
    let err = submit(vec![valid_a.clone(), valid_a.clone()]).await;
    expect(&err, tonic::Code::InvalidArgument, &["twice"]);

    // A message over the node's request limit: tonic refuses it before the service runs.
    let oversize = pb::SignedRecord {
        record: vec![0x20; REQUEST_BYTES_MAX + 1024],
        writer_key: writer.verifier().key.to_bytes().to_vec(),
        signature: vec![0; 64],
    };
    let err = submit(vec![oversize]).await;
    eprintln!("oversize request: {:?}: {}", err.code(), err.message());
    expect(
        &err,
        tonic::Code::OutOfRange,
        &["too large", &REQUEST_BYTES_MAX.to_string()],
    );

    // Malformed protobuf: field 1 (records) claims 127 bytes, 3 follow.
    let channel = rpc::public_channel(cluster.ca_pem(), &cluster.public_addr(leader));
    let err = rpc::raw_unary(
        channel.clone(),
        "/stateledger.v1.Ledger/Submit",
        vec![0x0a, 0x7f, 0x01, 0x02, 0x03],
    )
    .await
    .expect_err("malformed protobuf is refused");
    eprintln!("malformed protobuf: {:?}: {}", err.code(), err.message());
    expect(
        &err,
        tonic::Code::InvalidArgument,
        &["not a valid protobuf message", "decode"],
    );
    // Also a Submit body of random bytes, and a truncated valid request.
    let valid_bytes = prost::Message::encode_to_vec(&pb::SubmitRequest {
        records: vec![valid_a.clone()],
    });
    for body in [
        (0..64)
            .map(|i| (i * 37 + 11) as u8 | 0x80)
            .collect::<Vec<u8>>(),
        valid_bytes[..valid_bytes.len() - 5].to_vec(),
    ] {
        let err = rpc::raw_unary(channel.clone(), "/stateledger.v1.Ledger/Submit", body)
            .await
            .expect_err("malformed protobuf is refused");
        assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");
    }

    // The cluster port's server stubs use the same codec (here with a node certificate, which
    // may call AppendEntries).
    let err = rpc::raw_unary_cluster(
        cluster.ca_pem(),
        &cluster.cluster_addr(leader),
        &cluster.node_cert(leader % 3 + 1),
        "/stateledger.v1.Cluster/AppendEntries",
        vec![0x0a, 0x7f, 0x01],
    )
    .await
    .expect_err("malformed protobuf is refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument, "{err:?}");

    // Nothing above was appended, and the node still serves reads and writes.
    let status = cluster
        .status(leader)
        .await
        .expect("the node still answers");
    assert_eq!(
        status.tree_size, size_before,
        "refused requests appended nothing"
    );
    assert!(status.corruption.is_empty());
    let ok = api
        .submit(pb::SubmitRequest {
            records: vec![valid_a, valid_b],
        })
        .await
        .expect("the node keeps accepting valid requests (the mixed ones were not appended)")
        .into_inner();
    assert_eq!(ok.results.len(), 2);
    assert_eq!(ok.results[0].leaf_index, size_before);
    cluster
        .wait_converged(&[1, 2, 3], Duration::from_secs(10))
        .await;
}
