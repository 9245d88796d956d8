//! Captured nondeterminism: values a deterministic replay must reuse — random seeds, clock
//! readings and the results of external calls. Each capture has an id that mutations name in
//! their `captures`.

use stateledger_core::limits::{EXTERNAL_RESPONSE_BYTES_MAX, SEED_BYTES_MAX, TEXT_BYTES_MAX};
use stateledger_core::record::pb;
use stateledger_proto::v1::nondeterminism::Capture;

use crate::digest::{parse_digest, sha256_digest};

/// Why a capture is refused. Variants name the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CaptureError {
    #[error("{field} is required")]
    Missing { field: &'static str },
    #[error("{field} is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("the seed is {len} bytes, more than the limit of {max}")]
    SeedTooLong { len: usize, max: usize },
}

fn text(field: &'static str, value: &str, required: bool) -> Result<(), CaptureError> {
    if value.is_empty() {
        return if required {
            Err(CaptureError::Missing { field })
        } else {
            Ok(())
        };
    }
    if value.len() > TEXT_BYTES_MAX || value.chars().any(char::is_control) {
        return Err(CaptureError::Invalid {
            field,
            reason: format!("at most {TEXT_BYTES_MAX} bytes and no control characters"),
        });
    }
    Ok(())
}

fn capture(capture_id: &str, capture: Capture) -> Result<pb::Nondeterminism, CaptureError> {
    text("capture_id", capture_id, true)?;
    Ok(pb::Nondeterminism {
        capture_id: capture_id.to_string(),
        capture: Some(capture),
    })
}

/// A random seed (1 to 64 bytes) and what it feeds (e.g. `pricing-rng`).
pub fn seed(capture_id: &str, name: &str, seed: &[u8]) -> Result<pb::Nondeterminism, CaptureError> {
    text("seed.name", name, false)?;
    if seed.is_empty() {
        return Err(CaptureError::Missing { field: "seed" });
    }
    if seed.len() > SEED_BYTES_MAX {
        return Err(CaptureError::SeedTooLong {
            len: seed.len(),
            max: SEED_BYTES_MAX,
        });
    }
    capture(
        capture_id,
        Capture::Seed(pb::RandomSeed {
            name: name.to_string(),
            seed: seed.to_vec(),
        }),
    )
}

/// A seed as written on a command line or in a file.
#[derive(Debug, Clone, Copy)]
pub enum SeedText<'a> {
    Hex(&'a str),
    Base64(&'a str),
    /// An integer seed, recorded as its 8 bytes big-endian.
    U64(u64),
}

/// The seed bytes a [`SeedText`] stands for.
pub fn decode_seed(text: SeedText<'_>) -> Result<Vec<u8>, CaptureError> {
    use base64::Engine as _;
    let invalid = |reason: String| CaptureError::Invalid {
        field: "seed",
        reason,
    };
    match text {
        SeedText::Hex(h) => hex::decode(h.trim()).map_err(|e| invalid(format!("not hex: {e}"))),
        SeedText::Base64(b) => base64::engine::general_purpose::STANDARD
            .decode(b.trim())
            .map_err(|e| invalid(format!("not base64: {e}"))),
        SeedText::U64(n) => Ok(n.to_be_bytes().to_vec()),
    }
}

/// A fresh 32-byte seed from the operating system's random source.
pub fn random_seed() -> [u8; 32] {
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    bytes
}

/// A clock reading (e.g. clock `wall`), in nanoseconds since the Unix epoch.
pub fn clock(
    capture_id: &str,
    clock: &str,
    unix_nanos: u64,
) -> Result<pb::Nondeterminism, CaptureError> {
    text("clock.clock", clock, true)?;
    if unix_nanos == 0 {
        return Err(CaptureError::Missing {
            field: "clock.unix_nanos",
        });
    }
    capture(
        capture_id,
        Capture::Clock(pb::ClockReading {
            clock: clock.to_string(),
            unix_nanos,
        }),
    )
}

/// A request or response of an external call: the bytes themselves, or only their digest.
#[derive(Debug, Clone, Copy)]
pub enum CallData<'a> {
    Bytes(&'a [u8]),
    Digest(&'a str),
}

impl CallData<'_> {
    fn digest(&self, field: &'static str) -> Result<String, CaptureError> {
        match self {
            CallData::Bytes(b) => Ok(sha256_digest(b)),
            CallData::Digest(d) => {
                parse_digest(d).map_err(|reason| CaptureError::Invalid { field, reason })
            }
        }
    }
}

/// A recorded external call: its target (e.g. `https://fx.example/rates`), the request (optional)
/// and the response. Both are recorded by `sha256:` digest; the response itself is kept too when
/// it is given as bytes, `keep_response` is set and it is at most 4 KiB — it then sits in the
/// ledger in clear, so leave it out for responses that carry secrets or personal data.
pub fn external_call(
    capture_id: &str,
    target: &str,
    request: Option<CallData<'_>>,
    response: CallData<'_>,
    keep_response: bool,
) -> Result<pb::Nondeterminism, CaptureError> {
    text("external_call.target", target, true)?;
    let request_digest = match request {
        Some(r) => r.digest("external_call.request_digest")?,
        None => String::new(),
    };
    let response_digest = response.digest("external_call.response_digest")?;
    let kept = match response {
        CallData::Bytes(b) if keep_response && b.len() <= EXTERNAL_RESPONSE_BYTES_MAX => b.to_vec(),
        _ => Vec::new(),
    };
    capture(
        capture_id,
        Capture::ExternalCall(pb::ExternalCall {
            target: target.to_string(),
            request_digest,
            response_digest,
            response: kept,
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Body, RecordMeta};

    fn validates(n: pb::Nondeterminism) -> pb::Nondeterminism {
        RecordMeta::new("orders-service", "", 1)
            .record(Body::Nondeterminism(n.clone()))
            .expect("capture record validates");
        n
    }

    #[test]
    fn seeds() {
        let n = validates(seed("seed-7", "pricing-rng", &[1, 2, 3]).expect("ok"));
        assert_eq!(
            n.capture,
            Some(Capture::Seed(pb::RandomSeed {
                name: "pricing-rng".into(),
                seed: vec![1, 2, 3]
            }))
        );
        assert_eq!(
            seed("s", "x", &[0; 65]),
            Err(CaptureError::SeedTooLong { len: 65, max: 64 })
        );
        assert_eq!(
            seed("s", "x", &[]),
            Err(CaptureError::Missing { field: "seed" })
        );
        assert_eq!(
            seed("", "x", &[1]),
            Err(CaptureError::Missing {
                field: "capture_id"
            })
        );
    }

    #[test]
    fn seed_texts() {
        assert_eq!(decode_seed(SeedText::Hex("0a0B")), Ok(vec![10, 11]));
        assert_eq!(decode_seed(SeedText::Base64("AQID")), Ok(vec![1, 2, 3]));
        assert_eq!(
            decode_seed(SeedText::U64(258)),
            Ok(vec![0, 0, 0, 0, 0, 0, 1, 2])
        );
        assert!(matches!(
            decode_seed(SeedText::Hex("xyz")),
            Err(CaptureError::Invalid { field: "seed", .. })
        ));
        assert_ne!(random_seed(), random_seed());
    }

    #[test]
    fn clocks() {
        validates(clock("clock-1", "wall", 1_700_000_000_000_000_000).expect("ok"));
        assert_eq!(
            clock("c", "wall", 0),
            Err(CaptureError::Missing {
                field: "clock.unix_nanos"
            })
        );
    }

    #[test]
    fn external_calls_keep_small_responses() {
        let small = br#"{"eur_usd":1.08}"#;
        let n = validates(
            external_call(
                "fx-1",
                "https://fx.example/rates",
                Some(CallData::Bytes(b"GET /rates")),
                CallData::Bytes(small),
                true,
            )
            .expect("ok"),
        );
        let Some(Capture::ExternalCall(x)) = n.capture else {
            panic!("an external call")
        };
        assert_eq!(x.request_digest, sha256_digest(b"GET /rates"));
        assert_eq!(x.response_digest, sha256_digest(small));
        assert_eq!(x.response, small);

        let big = vec![b'x'; EXTERNAL_RESPONSE_BYTES_MAX + 1];
        let n =
            validates(external_call("fx-2", "fx", None, CallData::Bytes(&big), true).expect("ok"));
        let Some(Capture::ExternalCall(x)) = n.capture else {
            panic!("an external call")
        };
        assert!(x.response.is_empty(), "only the digest of a large response");
        assert_eq!(x.response_digest, sha256_digest(&big));
        assert!(x.request_digest.is_empty());

        let n = external_call("fx-3", "fx", None, CallData::Bytes(small), false).expect("ok");
        let Some(Capture::ExternalCall(x)) = n.capture else {
            panic!("an external call")
        };
        assert!(x.response.is_empty(), "not kept when asked not to");

        assert!(matches!(
            external_call("fx-4", "fx", None, CallData::Digest("sha256:12"), true),
            Err(CaptureError::Invalid {
                field: "external_call.response_digest",
                ..
            })
        ));
    }
}
