//! The Raft log file's byte format, with no I/O: encoding a record, parsing one, and reading a
//! whole file back (what survives, where the valid records end, and whether damage reached data
//! that had been synced). Pure so that unit tests and a fuzzer can drive it with any bytes.
//!
//! ```text
//! file   = FILE_MAGIC | record*  | zeros (preallocated)
//! record = magic "SLw1" | body length u32 | synced-before u64 | checksum 8 bytes | body
//! body   = slot u8 | op count u32 | op*
//! op     = 1 | key len u32 | key | value len u32 | value      (a put)
//!        | 0 | key len u32 | key                              (a removal)
//! ```
//!
//! All integers are big-endian; the checksum is the first 8 bytes of a BLAKE3 hash of the body
//! length, synced-before and body. `synced-before` is the offset up to which the file had been
//! made durable when the record was written: a later valid record that says an earlier offset
//! was synced proves that damage there is not a torn write.

use std::collections::BTreeMap;

/// First bytes of every log file.
pub const FILE_MAGIC: &[u8; 16] = b"stateledger-wal1";
/// First bytes of every record.
pub const RECORD_MAGIC: &[u8; 4] = b"SLw1";
/// Bytes of a record header.
pub const HEADER_LEN: usize = 4 + 4 + 8 + 8;
/// Largest record body; a batch bigger than this is refused. A Raft entry is at most
/// `limits.batch_records_max` records of at most `RECORD_BYTES_MAX` each, far below it.
pub const RECORD_BODY_BYTES_MAX: usize = 1 << 30;
/// Number of key spaces ("slots") a file holds; each is one [`crate::store::Tree`].
pub const SLOTS: usize = 3;
const OP_PUT: u8 = 1;
const OP_REMOVE: u8 = 0;

/// Where a value is in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Loc {
    pub offset: u64,
    pub len: u32,
}

/// Every live key of each slot, with where its value is.
pub type Maps = [BTreeMap<Vec<u8>, Loc>; SLOTS];

/// Why a batch cannot be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncodeError {
    #[error("a batch of {len} bytes is over the limit of {max}")]
    TooLarge { len: usize, max: usize },
    #[error("slot {0} does not exist")]
    NoSuchSlot(u8),
}

fn checksum(body_len: u32, synced_before: u64, body: &[u8]) -> [u8; 8] {
    let mut h = blake3::Hasher::new();
    h.update(b"stateledger:wal:v1\0");
    h.update(&body_len.to_be_bytes());
    h.update(&synced_before.to_be_bytes());
    h.update(body);
    let mut out = [0u8; 8];
    out.copy_from_slice(&h.finalize().as_bytes()[..8]);
    out
}

/// One record, encoded, with where each put's value lands relative to the record's start.
pub fn encode_record(
    slot: u8,
    ops: &[(&[u8], Option<&[u8]>)],
    synced_before: u64,
) -> Result<(Vec<u8>, Vec<Option<Loc>>), EncodeError> {
    if usize::from(slot) >= SLOTS {
        return Err(EncodeError::NoSuchSlot(slot));
    }
    let body_len: usize = 5 + ops
        .iter()
        .map(|(k, v)| 1 + 4 + k.len() + v.map_or(0, |v| 4 + v.len()))
        .sum::<usize>();
    if body_len > RECORD_BODY_BYTES_MAX {
        return Err(EncodeError::TooLarge {
            len: body_len,
            max: RECORD_BODY_BYTES_MAX,
        });
    }
    // Every key and value is shorter than the whole body, which fits in a u32.
    let len32 = |n: usize| n as u32;
    let mut out = Vec::with_capacity(HEADER_LEN + body_len);
    out.extend_from_slice(RECORD_MAGIC);
    out.extend_from_slice(&len32(body_len).to_be_bytes());
    out.extend_from_slice(&synced_before.to_be_bytes());
    out.extend_from_slice(&[0u8; 8]); // checksum, filled in below
    out.push(slot);
    out.extend_from_slice(&len32(ops.len()).to_be_bytes());
    let mut locs = Vec::with_capacity(ops.len());
    for (k, v) in ops {
        match v {
            Some(v) => {
                out.push(OP_PUT);
                out.extend_from_slice(&len32(k.len()).to_be_bytes());
                out.extend_from_slice(k);
                out.extend_from_slice(&len32(v.len()).to_be_bytes());
                locs.push(Some(Loc {
                    offset: out.len() as u64,
                    len: len32(v.len()),
                }));
                out.extend_from_slice(v);
            }
            None => {
                out.push(OP_REMOVE);
                out.extend_from_slice(&len32(k.len()).to_be_bytes());
                out.extend_from_slice(k);
                locs.push(None);
            }
        }
    }
    let sum = checksum(len32(body_len), synced_before, &out[HEADER_LEN..]);
    out[16..24].copy_from_slice(&sum);
    Ok((out, locs))
}

/// Why there is no valid record at an offset: a torn write or damage (which of the two is for
/// [`recover`] to tell), never the caller's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    #[error("{len} bytes where a record header needs {HEADER_LEN}")]
    ShortHeader { len: usize },
    #[error("no record marker")]
    NoMarker,
    #[error("the record claims {claimed} body bytes but {remaining} remain")]
    BodyPastEnd { claimed: u32, remaining: usize },
    #[error("checksum mismatch")]
    Checksum,
    #[error("unknown slot {slot}")]
    UnknownSlot { slot: usize },
    #[error("unknown operation {op}")]
    UnknownOperation { op: u8 },
    #[error("an operation runs past the record's end")]
    OperationPastEnd,
    #[error("{trailing} bytes after the last operation")]
    TrailingBytes { trailing: usize },
}

/// A record read back: its ops with value locations (absolute), and where it ends.
#[derive(Debug)]
pub struct Parsed<'a> {
    pub slot: usize,
    pub ops: Vec<(&'a [u8], Option<Loc>)>,
    pub synced_before: u64,
    pub end: usize,
}

/// Parses the record at `at`, or says why there is none.
pub fn parse_at(bytes: &[u8], at: usize) -> Result<Parsed<'_>, FrameError> {
    let rest = bytes.get(at..).unwrap_or_default();
    if rest.len() < HEADER_LEN {
        return Err(FrameError::ShortHeader { len: rest.len() });
    }
    if &rest[..4] != RECORD_MAGIC {
        return Err(FrameError::NoMarker);
    }
    let body_len = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]);
    let mut synced = [0u8; 8];
    synced.copy_from_slice(&rest[8..16]);
    let synced_before = u64::from_be_bytes(synced);
    let body_end = HEADER_LEN + body_len as usize;
    if body_len as usize > RECORD_BODY_BYTES_MAX || body_end > rest.len() {
        return Err(FrameError::BodyPastEnd {
            claimed: body_len,
            remaining: rest.len() - HEADER_LEN,
        });
    }
    let body = &rest[HEADER_LEN..body_end];
    if rest[16..24] != checksum(body_len, synced_before, body) {
        return Err(FrameError::Checksum);
    }
    // The checksum held, so a malformed body is damage the checksum missed or a bug: refuse it
    // like any other bad record.
    let mut r = Reader { bytes: body, at: 0 };
    let slot = r.u8()? as usize;
    if slot >= SLOTS {
        return Err(FrameError::UnknownSlot { slot });
    }
    let count = r.u32()?;
    let mut ops = Vec::new();
    for _ in 0..count {
        let kind = r.u8()?;
        let klen = r.u32()? as usize;
        let key = r.take(klen)?;
        match kind {
            OP_PUT => {
                let vlen = r.u32()?;
                let offset = (at + HEADER_LEN + r.at) as u64;
                r.take(vlen as usize)?;
                ops.push((key, Some(Loc { offset, len: vlen })));
            }
            OP_REMOVE => ops.push((key, None)),
            op => return Err(FrameError::UnknownOperation { op }),
        }
    }
    if r.at != body.len() {
        return Err(FrameError::TrailingBytes {
            trailing: body.len() - r.at,
        });
    }
    Ok(Parsed {
        slot,
        ops,
        synced_before,
        end: at + body_end,
    })
}

struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], FrameError> {
        let end = self
            .at
            .checked_add(n)
            .filter(|e| *e <= self.bytes.len())
            .ok_or(FrameError::OperationPastEnd)?;
        let out = &self.bytes[self.at..end];
        self.at = end;
        Ok(out)
    }
    fn u8(&mut self) -> Result<u8, FrameError> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> Result<u32, FrameError> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

/// Bytes a live key and its value count for (drives compaction).
pub fn weight(key: &[u8], loc: &Loc) -> u64 {
    (key.len() + loc.len as usize + 9) as u64
}

/// Applies one operation to the maps, keeping `live` in step.
pub fn apply(maps: &mut Maps, live: &mut u64, slot: usize, key: &[u8], loc: Option<Loc>) {
    let old = match loc {
        Some(loc) => {
            *live += weight(key, &loc);
            maps[slot].insert(key.to_vec(), loc)
        }
        None => maps[slot].remove(key),
    };
    if let Some(old) = old {
        *live = live.saturating_sub(weight(key, &old));
    }
}

/// Damage to bytes that had been made durable: a record that fails its checks although a later
/// valid record says its offset had been synced, or a file that is not a log file at all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncedDamage {
    pub offset: usize,
    pub reason: String,
}

/// What a file's bytes hold.
#[derive(Debug)]
pub struct Recovered {
    /// The state after every valid record before `valid_end`.
    pub maps: Maps,
    pub live: u64,
    /// Where the valid records end: a torn tail, or the damage, starts here.
    pub valid_end: usize,
    /// The highest `synced-before` any valid record carries: the file was durable at least up to
    /// there when that record was written.
    pub synced_at_least: u64,
    /// Set when the first bad record is not a torn tail (see [`SyncedDamage`]).
    pub damage: Option<SyncedDamage>,
}

/// Reads every record of a file's bytes. A record that fails its checks ends the log: what
/// follows is a torn tail — unless a later valid record shows that its offset had been synced,
/// which is [`Recovered::damage`]. Damage to the last synced group of records, with nothing valid
/// written after it, cannot be told from a torn write here; the caller compares with its sync
/// marker.
pub fn recover(bytes: &[u8]) -> Recovered {
    let mut out = Recovered {
        maps: Default::default(),
        live: 0,
        valid_end: 0,
        synced_at_least: 0,
        damage: None,
    };
    if bytes.len() < FILE_MAGIC.len() || &bytes[..FILE_MAGIC.len()] != FILE_MAGIC {
        out.damage = Some(SyncedDamage {
            offset: 0,
            reason: "the file does not start with the log file marker".into(),
        });
        return out;
    }
    let mut at = FILE_MAGIC.len();
    while at < bytes.len() {
        match parse_at(bytes, at) {
            Ok(rec) => {
                for (key, loc) in &rec.ops {
                    apply(&mut out.maps, &mut out.live, rec.slot, key, *loc);
                }
                out.synced_at_least = out.synced_at_least.max(rec.synced_before);
                at = rec.end;
            }
            Err(why) => {
                // Torn tail, or damage to synced data? Look for a later valid record that says
                // this offset had been synced.
                let mut from = at + 1;
                while let Some(found) = find(bytes, from, RECORD_MAGIC) {
                    if let Ok(later) = parse_at(bytes, found) {
                        if later.synced_before > at as u64 {
                            out.damage = Some(SyncedDamage {
                                offset: at,
                                reason: format!(
                                    "{why}, but the record at offset {found} shows the log had \
                                     been synced up to offset {}",
                                    later.synced_before
                                ),
                            });
                            break;
                        }
                    }
                    from = found + 1;
                }
                break;
            }
        }
    }
    out.valid_end = at.min(bytes.len());
    out
}

/// The first occurrence of `needle` at or after `from`.
pub fn find(bytes: &[u8], from: usize, needle: &[u8]) -> Option<usize> {
    bytes
        .get(from..)?
        .windows(needle.len())
        .position(|w| w == needle)
        .map(|p| p + from)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(records: &[Vec<u8>]) -> Vec<u8> {
        let mut out = FILE_MAGIC.to_vec();
        for r in records {
            out.extend_from_slice(r);
        }
        out
    }

    #[test]
    fn a_record_round_trips_with_its_value_locations() {
        let ops: Vec<(&[u8], Option<&[u8]>)> =
            vec![(b"k1", Some(b"value one")), (b"k2", None), (b"", Some(b""))];
        let (rec, locs) = encode_record(1, &ops, 77).expect("encodes");
        let bytes = file(&[rec]);
        let parsed = parse_at(&bytes, FILE_MAGIC.len()).expect("parses");
        assert_eq!(parsed.slot, 1);
        assert_eq!(parsed.synced_before, 77);
        assert_eq!(parsed.end, bytes.len());
        assert_eq!(parsed.ops.len(), 3);
        let loc = parsed.ops[0].1.expect("a put");
        let at = loc.offset as usize;
        assert_eq!(&bytes[at..at + loc.len as usize], b"value one");
        assert_eq!(
            locs[0].map(|l| l.offset + FILE_MAGIC.len() as u64),
            Some(loc.offset)
        );
        assert_eq!(parsed.ops[1], (&b"k2"[..], None));
    }

    #[test]
    fn slots_and_sizes_are_checked_when_encoding() {
        assert_eq!(
            encode_record(SLOTS as u8, &[], 0).expect_err("no such slot"),
            EncodeError::NoSuchSlot(SLOTS as u8)
        );
    }

    #[test]
    fn every_flipped_bit_of_a_record_is_caught() {
        let (rec, _) = encode_record(0, &[(b"vote", Some(b"v1"))], 0).expect("encodes");
        let good = file(&[rec]);
        for byte in FILE_MAGIC.len()..good.len() {
            for bit in 0..8 {
                let mut bad = good.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    parse_at(&bad, FILE_MAGIC.len()).is_err(),
                    "byte {byte} bit {bit} went unnoticed"
                );
            }
        }
    }

    #[test]
    fn a_torn_tail_ends_the_log_without_damage() {
        let (a, _) = encode_record(1, &[(b"a", Some(b"1"))], 16).expect("encodes");
        let (b, _) = encode_record(1, &[(b"b", Some(b"2"))], 16).expect("encodes");
        let full = file(&[a.clone(), b]);
        let first_end = FILE_MAGIC.len() + a.len();
        for cut in first_end..full.len() {
            let r = recover(&full[..cut]);
            assert_eq!(r.valid_end, first_end, "cut at {cut}");
            assert!(r.damage.is_none(), "cut at {cut}: {:?}", r.damage);
            assert!(r.maps[1].contains_key(&b"a"[..]));
            assert!(!r.maps[1].contains_key(&b"b"[..]));
        }
    }

    #[test]
    fn damage_that_a_later_record_proves_synced_is_reported() {
        let (a, _) = encode_record(1, &[(b"a", Some(b"first"))], 16).expect("encodes");
        let synced = (FILE_MAGIC.len() + a.len()) as u64;
        let (b, _) = encode_record(1, &[(b"b", Some(b"second"))], synced).expect("encodes");
        let mut bytes = file(&[a, b]);
        let at = find(&bytes, 0, b"first").expect("value");
        bytes[at] ^= 0x40;
        let r = recover(&bytes);
        let damage = r.damage.expect("damage reported");
        assert_eq!(damage.offset, FILE_MAGIC.len());
        assert!(damage.reason.contains("had been synced"), "{damage:?}");
        assert_eq!(r.valid_end, FILE_MAGIC.len());
        assert!(r.maps[1].is_empty());
    }

    #[test]
    fn a_file_without_the_marker_is_damage_at_offset_zero() {
        let r = recover(b"not a log file at all");
        assert_eq!(r.damage.map(|d| d.offset), Some(0));
    }
}
