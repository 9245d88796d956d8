//! The data-mutation dimension: the truth of a mutation's occurrence — type, id, source, position
//! in the source's order, origin, payload digest and where the data lives (Kafka, a database
//! transaction, anything else). The data itself stays where it is.
//!
//! One mutation is described by a [`MutationInput`], given directly or as one line of a JSONL
//! stream read by [`MutationReader`]:
//!
//! ```json
//! {"kind": "order_created", "id": "evt-91823", "source": "kafka:orders/3", "sequence": 42,
//!  "origin": "orders-api", "payload": "{\"order\":17}",
//!  "kafka": {"topic": "orders", "partition": 3, "offset": 1041}, "captures": ["seed-7"]}
//! ```
//!
//! Fields: `kind` (alias `type`), `id`, `source`, `sequence` (from 1) are required. `origin`
//! optional. Payload: at most one of `payload` (UTF-8 text, hashed as its bytes) or
//! `payload_base64` (bytes), and/or `payload_digest` (alias `hash`, `<alg>:<hex>`); an inline
//! payload is hashed to `sha256:` and only the digest is recorded; if a digest is given too it
//! must match. External reference: at most one of `kafka` `{topic, partition, offset}`, `db`
//! `{database, tx_id}` (`tx_id` a string or a number) or `other_ref` (a string). `captures`: ids
//! of the nondeterminism captures the mutation depends on. `observed_at_unix_nanos`: when the
//! mutation was observed, if the stream knows (the caller's time otherwise). Unknown fields are
//! errors, so a typo is not silently dropped.

mod jsonl;

use std::path::{Path, PathBuf};

use base64::Engine as _;
use sha2::Digest as _;
use stateledger_core::limits::{LIST_ITEMS_MAX, TEXT_BYTES_MAX};
use stateledger_core::record::pb;

pub use jsonl::{LineError, MutationLine, MutationLineError, MutationReader};

use crate::digest::{parse_digest, sha256_digest};

/// Why a mutation description is refused. Variants name the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum MutationError {
    #[error("{field} is required")]
    Missing { field: &'static str },
    #[error("{field} is invalid: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("give at most one of {fields}")]
    Conflicting { fields: &'static str },
    #[error("payload_digest {given} does not match the payload, whose digest is {computed}")]
    PayloadMismatch { given: String, computed: String },
    #[error("cannot read {}: {reason}", path.display())]
    PayloadFileUnreadable { path: PathBuf, reason: String },
    #[error("payload_digest {given} does not match {}, whose digest is {computed}", path.display())]
    PayloadFileMismatch {
        given: String,
        path: PathBuf,
        computed: String,
    },
    #[error("{field} has {count} items, more than the limit of {max}")]
    TooManyItems {
        field: &'static str,
        count: usize,
        max: usize,
    },
}

/// A Kafka record's coordinates.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaInput {
    pub topic: String,
    #[serde(default)]
    pub partition: u32,
    #[serde(default)]
    pub offset: u64,
}

/// A database transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DbInput {
    pub database: String,
    pub tx_id: TextOrNumber,
}

/// A JSON string or unsigned number, kept as text (transaction ids are either).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(untagged)]
pub enum TextOrNumber {
    Text(String),
    Number(u64),
}

impl Default for TextOrNumber {
    fn default() -> Self {
        TextOrNumber::Text(String::new())
    }
}

impl std::fmt::Display for TextOrNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TextOrNumber::Text(t) => f.write_str(t),
            TextOrNumber::Number(n) => write!(f, "{n}"),
        }
    }
}

/// One mutation as given by a person, a script or a stream (see the module docs for the fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MutationInput {
    #[serde(alias = "type")]
    pub kind: String,
    pub id: String,
    pub source: String,
    pub sequence: u64,
    #[serde(default)]
    pub origin: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    #[serde(default, alias = "hash", skip_serializing_if = "Option::is_none")]
    pub payload_digest: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kafka: Option<KafkaInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub db: Option<DbInput>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub other_ref: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub captures: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_at_unix_nanos: Option<u64>,
}

fn text(field: &'static str, value: &str, required: bool) -> Result<(), MutationError> {
    if value.is_empty() {
        return if required {
            Err(MutationError::Missing { field })
        } else {
            Ok(())
        };
    }
    if value.len() > TEXT_BYTES_MAX {
        return Err(MutationError::Invalid {
            field,
            reason: format!(
                "{} bytes, more than the limit of {TEXT_BYTES_MAX}",
                value.len()
            ),
        });
    }
    if value.chars().any(char::is_control) {
        return Err(MutationError::Invalid {
            field,
            reason: "contains control characters".to_string(),
        });
    }
    Ok(())
}

/// The digest of `payload` in the algorithm of `like` (sha256 or sha512), to compare with a
/// given digest.
fn digest_like(like: &str, payload: &[u8]) -> Option<String> {
    match like.split_once(':')?.0 {
        "sha256" => Some(sha256_digest(payload)),
        "sha512" => Some(format!(
            "sha512:{}",
            hex::encode(sha2::Sha512::digest(payload))
        )),
        _ => None,
    }
}

impl MutationInput {
    /// Takes the payload's digest from a file, hashed in chunks (a payload may be large, up to
    /// [`PAYLOAD_FILE_BYTES_MAX`](crate::limits::PAYLOAD_FILE_BYTES_MAX)); only the digest is
    /// recorded. A digest given already must be the file's, so the two never disagree silently;
    /// an inline payload cannot be given as well.
    pub fn payload_file(mut self, path: &Path) -> Result<Self, MutationError> {
        if self.payload.is_some() || self.payload_base64.is_some() {
            return Err(MutationError::Conflicting {
                fields: "payload, payload_file",
            });
        }
        let (computed, _) = crate::digest::sha256_file(path, crate::limits::PAYLOAD_FILE_BYTES_MAX)
            .map_err(|e| MutationError::PayloadFileUnreadable {
                path: path.to_path_buf(),
                reason: e.to_string(),
            })?;
        if let Some(given) = &self.payload_digest {
            let given = parse_digest(given).map_err(|reason| MutationError::Invalid {
                field: "payload_digest",
                reason,
            })?;
            if given != computed {
                return Err(MutationError::PayloadFileMismatch {
                    given,
                    path: path.to_path_buf(),
                    computed,
                });
            }
        }
        self.payload_digest = Some(computed);
        Ok(self)
    }

    /// Checks the description and turns it into the record body.
    pub fn into_mutation(self) -> Result<pb::Mutation, MutationError> {
        text("kind", &self.kind, true)?;
        text("id", &self.id, true)?;
        text("source", &self.source, true)?;
        text("origin", &self.origin, false)?;
        if self.sequence == 0 {
            return Err(MutationError::Invalid {
                field: "sequence",
                reason: "sequence numbers start at 1".to_string(),
            });
        }

        let payload = match (&self.payload, &self.payload_base64) {
            (Some(_), Some(_)) => {
                return Err(MutationError::Conflicting {
                    fields: "payload, payload_base64",
                })
            }
            (Some(text), None) => Some(text.as_bytes().to_vec()),
            (None, Some(b64)) => Some(
                base64::engine::general_purpose::STANDARD
                    .decode(b64.trim())
                    .map_err(|e| MutationError::Invalid {
                        field: "payload_base64",
                        reason: e.to_string(),
                    })?,
            ),
            (None, None) => None,
        };
        let given = match &self.payload_digest {
            Some(d) => Some(parse_digest(d).map_err(|reason| MutationError::Invalid {
                field: "payload_digest",
                reason,
            })?),
            None => None,
        };
        let payload_digest = match (payload, given) {
            (Some(p), Some(given)) => {
                let computed = digest_like(&given, &p).ok_or_else(|| MutationError::Invalid {
                    field: "payload_digest",
                    reason:
                        "with an inline payload the digest must be sha256 or sha512, to check it"
                            .to_string(),
                })?;
                if computed != given {
                    return Err(MutationError::PayloadMismatch { given, computed });
                }
                given
            }
            (Some(p), None) => sha256_digest(&p),
            (None, Some(given)) => given,
            (None, None) => String::new(),
        };

        let refs = [
            self.kafka.is_some(),
            self.db.is_some(),
            self.other_ref.is_some(),
        ];
        if refs.iter().filter(|r| **r).count() > 1 {
            return Err(MutationError::Conflicting {
                fields: "kafka, db, other_ref",
            });
        }
        let external_ref = if let Some(k) = self.kafka {
            text("kafka.topic", &k.topic, true)?;
            Some(pb::mutation::ExternalRef::Kafka(pb::KafkaRef {
                topic: k.topic,
                partition: k.partition,
                offset: k.offset,
            }))
        } else if let Some(d) = self.db {
            let tx_id = d.tx_id.to_string();
            text("db.database", &d.database, true)?;
            text("db.tx_id", &tx_id, true)?;
            Some(pb::mutation::ExternalRef::DbTx(pb::DatabaseTx {
                database: d.database,
                tx_id,
            }))
        } else if let Some(o) = self.other_ref {
            text("other_ref", &o, true)?;
            Some(pb::mutation::ExternalRef::OtherRef(o))
        } else {
            None
        };

        if self.captures.len() > LIST_ITEMS_MAX {
            return Err(MutationError::TooManyItems {
                field: "captures",
                count: self.captures.len(),
                max: LIST_ITEMS_MAX,
            });
        }
        for c in &self.captures {
            text("captures[]", c, true)?;
        }

        Ok(pb::Mutation {
            kind: self.kind,
            id: self.id,
            source: self.source,
            sequence: self.sequence,
            origin: self.origin,
            payload_digest,
            external_ref,
            captures: self.captures,
        })
    }
}

/// Parses a Kafka reference written `topic/partition/offset` (e.g. `orders/3/1041`; the topic may
/// itself contain `/`).
pub fn parse_kafka_ref(text: &str) -> Result<KafkaInput, MutationError> {
    let invalid = |reason: &str| MutationError::Invalid {
        field: "kafka",
        reason: format!("{reason}; expected topic/partition/offset, e.g. orders/3/1041"),
    };
    let (rest, offset) = text.rsplit_once('/').ok_or_else(|| invalid("no offset"))?;
    let (topic, partition) = rest
        .rsplit_once('/')
        .ok_or_else(|| invalid("no partition"))?;
    Ok(KafkaInput {
        topic: topic.to_string(),
        partition: partition
            .parse()
            .map_err(|_| invalid("the partition is not a number"))?,
        offset: offset
            .parse()
            .map_err(|_| invalid("the offset is not a number"))?,
    })
}

#[cfg(test)]
mod tests;
