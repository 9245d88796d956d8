//! Rust types generated from the protobuf files in `proto/`.
//!
//! The messages are always present; the gRPC stubs only with the `grpc` feature, so the pure
//! `stateledger-core` can use the record model without pulling in tonic.

/// `package stateledger.v1`.
#[allow(clippy::all, missing_debug_implementations, missing_docs)]
pub mod v1 {
    #[cfg(all(feature = "grpc", madsim))]
    include!(concat!(env!("OUT_DIR"), "/sim/stateledger.v1.rs"));
    #[cfg(not(all(feature = "grpc", madsim)))]
    include!(concat!(env!("OUT_DIR"), "/stateledger.v1.rs"));
}
