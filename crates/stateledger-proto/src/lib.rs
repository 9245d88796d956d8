//! Rust types generated from the protobuf files in `proto/`.
//!
//! The messages are always present; the gRPC stubs only with the `grpc` feature, so the pure
//! `stateledger-core` can use the record model without pulling in tonic.

/// Serde helper: bytes as standard padded base64 in JSON.
pub mod base64_bytes {
    use base64::Engine as _;

    pub fn serialize<S: serde::Serializer>(bytes: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let text = <String as serde::Deserialize>::deserialize(d)?;
        base64::engine::general_purpose::STANDARD
            .decode(text.as_bytes())
            .map_err(|e| serde::de::Error::custom(format!("invalid base64: {e}")))
    }
}

#[cfg(all(feature = "grpc", not(madsim)))]
pub mod server_codec;

/// gRPC metadata keys the node sets on its answers and the client reads: defined here only, so
/// that both ends (and the tests that look at the wire) name the same key.
pub mod metadata {
    /// The leader's public address, on a FAILED_PRECONDITION redirect of a write.
    pub const LEADER: &str = "x-stateledger-leader";
    /// The leader's cluster address, on a redirect of an admin call (membership changes).
    pub const LEADER_CLUSTER: &str = "x-stateledger-leader-cluster";
    /// Other members' public addresses, comma-separated, when a node cannot serve a write and
    /// knows no leader to redirect to (it lost its quorum).
    pub const TRY: &str = "x-stateledger-try";
    /// The leaf indexes of records already in the log, comma-separated, on ALREADY_EXISTS.
    pub const EXISTING: &str = "x-stateledger-existing";
    /// Why a request was refused, when the status code alone does not say what to do:
    /// [`REASON_DISK_SPACE`].
    pub const REASON: &str = "x-stateledger-reason";
    /// RESOURCE_EXHAUSTED because a voter's disk is short: retrying soon does not help, freeing
    /// space does.
    pub const REASON_DISK_SPACE: &str = "disk-space";
}

/// `package stateledger.v1`. Record messages (record.proto) also have a JSON form through serde:
/// field names as in the proto, bytes as base64, a body as `{"code": {...}}`, missing fields
/// default, unknown fields rejected.
// Generated code. `clippy::all` leaves out restriction lints such as `unwrap_used`, which
// madsim-tonic's generated services (the simulation build) use.
#[allow(
    clippy::all,
    clippy::unwrap_used,
    missing_debug_implementations,
    missing_docs
)]
pub mod v1 {
    #[cfg(all(feature = "grpc", madsim))]
    include!(concat!(env!("OUT_DIR"), "/sim/stateledger.v1.rs"));
    #[cfg(not(all(feature = "grpc", madsim)))]
    include!(concat!(env!("OUT_DIR"), "/stateledger.v1.rs"));
}

/// The subset of etcd's v3 KV API used by `stateledger bench --etcd`.
#[allow(
    clippy::all,
    clippy::unwrap_used,
    missing_debug_implementations,
    missing_docs
)]
pub mod etcdserverpb {
    #[cfg(all(feature = "grpc", madsim))]
    include!(concat!(env!("OUT_DIR"), "/sim/etcdserverpb.rs"));
    #[cfg(not(all(feature = "grpc", madsim)))]
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
}
