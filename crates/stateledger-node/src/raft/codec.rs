//! Encoding of openraft's own types (entries, votes, snapshot headers, RPC messages) for the log
//! and the cluster wire: postcard over serde. Records inside entries stay the submitted bytes.

use serde::de::DeserializeOwned;
use serde::Serialize;

/// Why bytes could not be decoded (or a value encoded).
#[derive(Debug, Clone, thiserror::Error, PartialEq, Eq)]
#[error("cannot {op} {what}: {reason}")]
pub struct CodecError {
    pub op: &'static str,
    pub what: &'static str,
    pub reason: String,
}

pub fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, CodecError> {
    postcard::to_stdvec(value).map_err(|e| CodecError {
        op: "encode",
        what,
        reason: e.to_string(),
    })
}

pub fn decode<T: DeserializeOwned>(what: &'static str, bytes: &[u8]) -> Result<T, CodecError> {
    postcard::from_bytes(bytes).map_err(|e| CodecError {
        op: "decode",
        what,
        reason: e.to_string(),
    })
}
