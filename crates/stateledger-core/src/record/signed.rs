//! Writer signatures: ed25519 over `"stateledger:record:v1\0" || record_bytes`, the bytes exactly
//! as submitted.

use ed25519_dalek::{Signer as _, SigningKey, VerifyingKey};
use stateledger_proto::v1 as pb;

use crate::record::cofactored;
use crate::record::validate::{decode_record, RecordError};

/// Domain separator prefixed to the record bytes before signing.
pub const RECORD_SIGNATURE_DOMAIN: &[u8] = b"stateledger:record:v1\0";

/// A writer's ed25519 public key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WriterKey(pub [u8; 32]);

impl std::fmt::Debug for WriterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "WriterKey({})", hex::encode(self.0))
    }
}

impl std::fmt::Display for WriterKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// Why a writer signature is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignatureError {
    #[error("writer_key must be a 32-byte ed25519 public key, found {len} bytes")]
    KeyLength { len: usize },
    #[error("writer_key is not a valid ed25519 public key")]
    KeyInvalid,
    #[error("signature must be 64 bytes, found {len}")]
    SignatureLength { len: usize },
    #[error("signature does not verify for writer key {writer_key} over these record bytes")]
    Invalid { writer_key: WriterKey },
}

/// The message a writer signs.
pub fn record_signing_message(record_bytes: &[u8]) -> Vec<u8> {
    let mut m = Vec::with_capacity(RECORD_SIGNATURE_DOMAIN.len() + record_bytes.len());
    m.extend_from_slice(RECORD_SIGNATURE_DOMAIN);
    m.extend_from_slice(record_bytes);
    m
}

/// Signs record bytes.
pub fn sign_record(key: &SigningKey, record_bytes: &[u8]) -> [u8; 64] {
    key.sign(&record_signing_message(record_bytes)).to_bytes()
}

/// Parses a writer key, rejecting wrong lengths and invalid or weak points.
pub fn parse_writer_key(bytes: &[u8]) -> Result<VerifyingKey, SignatureError> {
    let raw: [u8; 32] = bytes
        .try_into()
        .map_err(|_| SignatureError::KeyLength { len: bytes.len() })?;
    let key = VerifyingKey::from_bytes(&raw).map_err(|_| SignatureError::KeyInvalid)?;
    if key.is_weak() {
        return Err(SignatureError::KeyInvalid);
    }
    Ok(key)
}

/// Verifies a writer signature with the cofactored equation `[8]([S]B − R − [k]A) = 0`
/// (ZIP 215 semantics; see [`super::cofactored`]), rejecting non-canonical `S`, invalid point
/// encodings and weak (small-order) writer keys.
///
/// Cofactored verification is what a correct batch verifier computes, so a leader that verifies
/// a batch of records at once accepts exactly the records this function accepts — the ledger's and
/// an auditor's verdict on a signature can never differ.
pub fn verify_record_signature(
    writer_key: &[u8],
    signature: &[u8],
    record_bytes: &[u8],
) -> Result<(), SignatureError> {
    let key = parse_writer_key(writer_key)?;
    let sig: [u8; 64] = signature
        .try_into()
        .map_err(|_| SignatureError::SignatureLength {
            len: signature.len(),
        })?;
    let invalid = || SignatureError::Invalid {
        writer_key: WriterKey(key.to_bytes()),
    };
    match cofactored::verify(key.as_bytes(), &record_signing_message(record_bytes), &sig) {
        Ok(true) => Ok(()),
        Ok(false) | Err(_) => Err(invalid()),
    }
}

/// Verifies many writer signatures at once with the same semantics as
/// [`verify_record_signature`]; `Ok` iff every one verifies. On failure, call
/// [`verify_record_signature`] per record to find which.
pub fn verify_record_signatures(items: &[(&[u8], &[u8], &[u8])]) -> Result<(), SignatureError> {
    let mut keys = Vec::with_capacity(items.len());
    let mut sigs = Vec::with_capacity(items.len());
    let mut messages = Vec::with_capacity(items.len());
    for (key, sig, record) in items {
        // The key's point is decoded and checked (valid, not small-order) once, by the batch
        // check below, rather than also here: point decompression is a large share of the cost.
        keys.push(
            <[u8; 32]>::try_from(*key).map_err(|_| SignatureError::KeyLength { len: key.len() })?,
        );
        sigs.push(
            <[u8; 64]>::try_from(*sig)
                .map_err(|_| SignatureError::SignatureLength { len: sig.len() })?,
        );
        messages.push(record_signing_message(record));
    }
    let batch: Vec<(&[u8; 32], &[u8], &[u8; 64])> = keys
        .iter()
        .zip(&messages)
        .zip(&sigs)
        .map(|((k, m), s)| (k, m.as_slice(), s))
        .collect();
    match cofactored::verify_batch(&batch) {
        Ok(true) => Ok(()),
        Ok(false) => Err(SignatureError::Invalid {
            writer_key: WriterKey(keys.first().copied().unwrap_or([0; 32])),
        }),
        Err((_, cofactored::Malformed::Key | cofactored::Malformed::WeakKey)) => {
            Err(SignatureError::KeyInvalid)
        }
        Err((i, _)) => Err(SignatureError::Invalid {
            writer_key: WriterKey(keys[i]),
        }),
    }
}

/// A signed record whose signature verified and whose record is valid.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedRecord {
    pub record: pb::Record,
    pub bytes: Vec<u8>,
    pub writer_key: WriterKey,
    pub signature: [u8; 64],
}

/// Why a submitted signed record is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignedRecordError {
    #[error(transparent)]
    Record(#[from] RecordError),
    #[error(transparent)]
    Signature(#[from] SignatureError),
}

impl CheckedRecord {
    /// Checks a submitted signed record: record validity first (so oversize input is refused
    /// before any signature work), then the signature.
    pub fn check(signed: &pb::SignedRecord) -> Result<CheckedRecord, SignedRecordError> {
        let record = decode_record(&signed.record)?;
        verify_record_signature(&signed.writer_key, &signed.signature, &signed.record)?;
        let mut signature = [0u8; 64];
        signature.copy_from_slice(&signed.signature);
        let mut key = [0u8; 32];
        key.copy_from_slice(&signed.writer_key);
        Ok(CheckedRecord {
            record,
            bytes: signed.record.clone(),
            writer_key: WriterKey(key),
            signature,
        })
    }

    /// Makes a signed record from a record and a key (collectors, tests).
    pub fn sign(record: pb::Record, key: &SigningKey) -> Result<CheckedRecord, RecordError> {
        let bytes = prost::Message::encode_to_vec(&record);
        decode_record(&bytes)?;
        let signature = sign_record(key, &bytes);
        Ok(CheckedRecord {
            record,
            bytes,
            writer_key: WriterKey(key.verifying_key().to_bytes()),
            signature,
        })
    }

    pub fn to_proto(&self) -> pb::SignedRecord {
        pb::SignedRecord {
            record: self.bytes.clone(),
            writer_key: self.writer_key.0.to_vec(),
            signature: self.signature.to_vec(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stateledger_proto::v1::record::Body;

    fn record() -> pb::Record {
        pb::Record {
            system: "s".into(),
            scope: String::new(),
            observed_at_unix_nanos: 1,
            body: Some(Body::StateDigest(pb::StateDigest {
                source: "db".into(),
                sequence: 0,
                digest: format!("blake3:{}", "0".repeat(64)),
                baseline: true,
            })),
        }
    }

    /// The batch path decodes each key only in the batch check; it must still refuse bad keys
    /// with the same errors as the single path.
    #[test]
    fn batch_verification_refuses_bad_keys_like_the_single_check() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let good = CheckedRecord::sign(record(), &key).expect("valid");
        let wk = good.writer_key.0;
        let item = |k: &[u8]| (k.to_vec(), good.signature.to_vec(), good.bytes.clone());
        let check = |items: &[(Vec<u8>, Vec<u8>, Vec<u8>)]| {
            let refs: Vec<(&[u8], &[u8], &[u8])> = items
                .iter()
                .map(|(k, s, r)| (k.as_slice(), s.as_slice(), r.as_slice()))
                .collect();
            verify_record_signatures(&refs)
        };
        assert_eq!(check(&[item(&wk), item(&wk)]), Ok(()));
        let identity = [[1u8].as_slice(), &[0u8; 31]].concat();
        // The first y for which no curve point exists: not a key at all.
        let not_a_point = (2u8..)
            .map(|y| [[y].as_slice(), &[0u8; 31]].concat())
            .find(|k| VerifyingKey::from_bytes(&k.clone().try_into().unwrap_or([0; 32])).is_err())
            .expect("some y is off the curve");
        for bad in [identity.as_slice(), not_a_point.as_slice()] {
            assert_eq!(
                verify_record_signature(bad, &good.signature, &good.bytes),
                Err(SignatureError::KeyInvalid)
            );
            assert_eq!(
                check(&[item(&wk), item(bad)]),
                Err(SignatureError::KeyInvalid)
            );
        }
        assert_eq!(
            check(&[item(&wk), item(&wk[..31])]),
            Err(SignatureError::KeyLength { len: 31 })
        );
        let other = SigningKey::from_bytes(&[8u8; 32])
            .verifying_key()
            .to_bytes();
        assert!(matches!(
            check(&[item(&wk), item(&other)]),
            Err(SignatureError::Invalid { .. })
        ));
    }

    #[test]
    fn sign_and_check() {
        let key = SigningKey::from_bytes(&[7u8; 32]);
        let signed = CheckedRecord::sign(record(), &key)
            .expect("valid")
            .to_proto();
        let checked = CheckedRecord::check(&signed).expect("verifies");
        assert_eq!(checked.record, record());

        let mut bad = signed.clone();
        bad.signature[0] ^= 1;
        assert!(matches!(
            CheckedRecord::check(&bad),
            Err(SignedRecordError::Signature(SignatureError::Invalid { .. }))
        ));
        let mut short = signed.clone();
        short.writer_key.pop();
        assert_eq!(
            CheckedRecord::check(&short),
            Err(SignedRecordError::Signature(SignatureError::KeyLength {
                len: 31
            }))
        );
        // A signature over the bytes without the domain separator is not accepted.
        let plain = key.sign(&signed.record).to_bytes().to_vec();
        let undomained = pb::SignedRecord {
            signature: plain,
            ..signed
        };
        assert!(CheckedRecord::check(&undomained).is_err());
    }
}
