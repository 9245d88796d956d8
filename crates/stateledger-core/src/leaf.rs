//! The leaf: a signed record wrapped with the fields the ledger assigns, in a fixed, versioned
//! binary layout (docs/PROOFS.md §2).
//!
//! ```text
//! offset size field
//! 0      1    version = 0x01
//! 1      8    index            u64 big-endian
//! 9      8    ledger_time      u64 big-endian, ns since the Unix epoch
//! 17     1    has_prev         0x00 or 0x01
//! 18     8    prev_index       u64 big-endian; 0 when has_prev = 0; < index otherwise
//! 26     32   writer_key       ed25519 public key
//! 58     64   signature        ed25519 over "stateledger:record:v1\0" || record
//! 122    4    record_len       u32 big-endian, <= 65536
//! 126    n    record           the record bytes exactly as submitted
//! ```
//! Nothing may follow the record.

use crate::hash::{leaf_hash, Hash};
use crate::ledger_time::LedgerTime;
use crate::limits::RECORD_BYTES_MAX;
use crate::merkle::LeafIndex;
use crate::record::{
    decode_record, pb, verify_record_signature, RecordError, SignatureError, WriterKey,
};

/// The only leaf layout version so far.
pub const LEAF_VERSION: u8 = 1;
/// Bytes before the record.
pub const LEAF_HEADER_LEN: usize = 126;

/// A leaf of the ledger.
#[derive(Clone, PartialEq, Eq)]
pub struct Leaf {
    pub index: LeafIndex,
    pub ledger_time: LedgerTime,
    /// The previous leaf of the same system, if any.
    pub prev: Option<LeafIndex>,
    pub writer_key: WriterKey,
    pub signature: [u8; 64],
    pub record: Vec<u8>,
}

impl std::fmt::Debug for Leaf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leaf")
            .field("index", &self.index)
            .field("ledger_time", &self.ledger_time)
            .field("prev", &self.prev)
            .field("writer_key", &self.writer_key)
            .field("record_len", &self.record.len())
            .finish()
    }
}

/// Why leaf bytes are refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum LeafError {
    #[error("leaf is {len} bytes, shorter than the {LEAF_HEADER_LEN}-byte header")]
    Truncated { len: usize },
    #[error("leaf version {found} is not supported (expected {LEAF_VERSION})")]
    Version { found: u8 },
    #[error("leaf has_prev byte is {found}, must be 0 or 1")]
    PrevFlag { found: u8 },
    #[error("leaf has no previous leaf but prev_index is {found}, must be 0")]
    PrevWithoutFlag { found: u64 },
    #[error("leaf {index} links back to leaf {prev}, which is not earlier")]
    PrevNotEarlier { index: u64, prev: u64 },
    #[error("leaf record_len is {declared} but {available} record bytes follow")]
    RecordLength { declared: usize, available: usize },
    #[error("leaf record is {len} bytes, more than the limit of {max}")]
    RecordTooLarge { len: usize, max: usize },
    #[error("leaf record is invalid: {0}")]
    Record(#[from] RecordError),
    #[error("leaf writer signature: {0}")]
    Signature(#[from] SignatureError),
}

impl Leaf {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(LEAF_HEADER_LEN + self.record.len());
        out.push(LEAF_VERSION);
        out.extend_from_slice(&self.index.0.to_be_bytes());
        out.extend_from_slice(&self.ledger_time.0.to_be_bytes());
        out.push(u8::from(self.prev.is_some()));
        out.extend_from_slice(&self.prev.map_or(0, |p| p.0).to_be_bytes());
        out.extend_from_slice(&self.writer_key.0);
        out.extend_from_slice(&self.signature);
        // Records are at most RECORD_BYTES_MAX (checked before a leaf is built), so this fits.
        out.extend_from_slice(&(self.record.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.record);
        out
    }

    /// Parses leaf bytes strictly: every field in range, nothing left over. Does not check the
    /// signature or the record; see [`Leaf::verify`].
    pub fn decode(bytes: &[u8]) -> Result<Leaf, LeafError> {
        if bytes.len() < LEAF_HEADER_LEN {
            return Err(LeafError::Truncated { len: bytes.len() });
        }
        let u64_at = |at: usize| {
            let mut b = [0u8; 8];
            b.copy_from_slice(&bytes[at..at + 8]);
            u64::from_be_bytes(b)
        };
        if bytes[0] != LEAF_VERSION {
            return Err(LeafError::Version { found: bytes[0] });
        }
        let index = u64_at(1);
        let ledger_time = u64_at(9);
        let prev = match (bytes[17], u64_at(18)) {
            (0, 0) => None,
            (0, found) => return Err(LeafError::PrevWithoutFlag { found }),
            (1, p) if p < index => Some(LeafIndex(p)),
            (1, p) => return Err(LeafError::PrevNotEarlier { index, prev: p }),
            (found, _) => return Err(LeafError::PrevFlag { found }),
        };
        let mut writer_key = [0u8; 32];
        writer_key.copy_from_slice(&bytes[26..58]);
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&bytes[58..122]);
        let mut len_bytes = [0u8; 4];
        len_bytes.copy_from_slice(&bytes[122..126]);
        let declared = u32::from_be_bytes(len_bytes) as usize;
        if declared > RECORD_BYTES_MAX {
            return Err(LeafError::RecordTooLarge {
                len: declared,
                max: RECORD_BYTES_MAX,
            });
        }
        let available = bytes.len() - LEAF_HEADER_LEN;
        if declared != available {
            return Err(LeafError::RecordLength {
                declared,
                available,
            });
        }
        Ok(Leaf {
            index: LeafIndex(index),
            ledger_time: LedgerTime(ledger_time),
            prev,
            writer_key: WriterKey(writer_key),
            signature,
            record: bytes[LEAF_HEADER_LEN..].to_vec(),
        })
    }

    /// Checks the writer signature and the record, returning the decoded record.
    pub fn verify(&self) -> Result<pb::Record, LeafError> {
        let record = decode_record(&self.record)?;
        verify_record_signature(&self.writer_key.0, &self.signature, &self.record)?;
        Ok(record)
    }

    /// `H(0x00 || encode())`.
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.encode())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn leaf() -> Leaf {
        Leaf {
            index: LeafIndex(9),
            ledger_time: LedgerTime(1_700_000_000_000_000_000),
            prev: Some(LeafIndex(3)),
            writer_key: WriterKey([1; 32]),
            signature: [2; 64],
            record: vec![0x0a, 0x01, b's'],
        }
    }

    #[test]
    fn round_trip_and_layout() {
        let bytes = leaf().encode();
        assert_eq!(bytes.len(), LEAF_HEADER_LEN + 3);
        assert_eq!(bytes[0], 1);
        assert_eq!(&bytes[1..9], &9u64.to_be_bytes());
        assert_eq!(bytes[17], 1);
        assert_eq!(Leaf::decode(&bytes), Ok(leaf()));
    }

    #[test]
    fn strict_decoding() {
        let good = leaf().encode();
        assert_eq!(
            Leaf::decode(&good[..100]),
            Err(LeafError::Truncated { len: 100 })
        );
        let mut b = good.clone();
        b.push(0);
        assert_eq!(
            Leaf::decode(&b),
            Err(LeafError::RecordLength {
                declared: 3,
                available: 4
            })
        );
        let mut b = good.clone();
        b[0] = 2;
        assert_eq!(Leaf::decode(&b), Err(LeafError::Version { found: 2 }));
        let mut b = good.clone();
        b[17] = 0;
        assert_eq!(
            Leaf::decode(&b),
            Err(LeafError::PrevWithoutFlag { found: 3 })
        );
        let mut b = good.clone();
        b[17] = 7;
        assert_eq!(Leaf::decode(&b), Err(LeafError::PrevFlag { found: 7 }));
        let mut b = good;
        b[25] = 9;
        assert_eq!(
            Leaf::decode(&b),
            Err(LeafError::PrevNotEarlier { index: 9, prev: 9 })
        );
    }
}
