//! Records: the protobuf model (re-exported from `stateledger-proto`), validation at the boundary,
//! and ed25519 signatures over the exact submitted bytes.

pub mod cofactored;
pub mod digest;
pub mod signed;
pub mod validate;

pub use signed::{
    parse_writer_key, record_signing_message, sign_record, verify_record_signature,
    verify_record_signatures, CheckedRecord, SignatureError, SignedRecordError, WriterKey,
    RECORD_SIGNATURE_DOMAIN,
};
pub use stateledger_proto::v1::{self as pb, record::Body};
pub use validate::{decode_record, Dimension, RecordError};
