//! Opening the Raft log file: finding its generation, recovering its records, telling a torn
//! tail (cut off) from lost synced data (damage, reported), accepting that damage once the node
//! records that it repairs, and reading the whole file back to check it (scrub). The rules are in
//! the module comment of `store/wal/mod.rs`.

use std::sync::{Arc, Mutex, RwLock};

use super::frame::{self, FILE_MAGIC};
use super::generation::new_file;
use super::io::WalIo;
use super::marker::{self, Mark, MARKER_FILE};
use super::{
    file_name, kv_err, mem, Inner, MarkerState, WalDamage, WalKv, WalOpen, WalOptions,
    EVIDENCE_SUFFIX,
};
use crate::store::StoreError;

impl WalKv {
    /// Opens the log in `data_dir/raft-log`, creating it (mode 0700) if missing.
    #[cfg(not(madsim))]
    pub fn open_dir(data_dir: &std::path::Path) -> Result<WalOpen, StoreError> {
        WalKv::open_dir_with(data_dir, WalOptions::default())
    }

    /// [`WalKv::open_dir`] with other sizes.
    #[cfg(not(madsim))]
    pub fn open_dir_with(
        data_dir: &std::path::Path,
        options: WalOptions,
    ) -> Result<WalOpen, StoreError> {
        // Full paths, not imports: this is their only use, and it is not compiled in the
        // simulation, where the imports would be unused.
        let dir = data_dir.join(super::WAL_DIR);
        let io = super::io::OsDir::new(&dir).map_err(|e| {
            crate::store::kv::KvError::new("create log dir", format!("{}: {e}", dir.display()))
        })?;
        WalKv::open_with(Arc::new(io), options)
    }

    /// Opens (or creates) the log in `io`. A torn tail is cut off; lost or damaged synced data
    /// is reported in [`WalOpen::damage`]. Errors are I/O failures only.
    pub fn open(io: Arc<dyn WalIo>) -> Result<WalOpen, StoreError> {
        WalKv::open_with(io, WalOptions::default())
    }

    /// [`WalKv::open`] with other sizes.
    pub fn open_with(io: Arc<dyn WalIo>, options: WalOptions) -> Result<WalOpen, StoreError> {
        let mut generations = Vec::new();
        for name in io.list().map_err(|e| kv_err("list log dir", &*io, e))? {
            if name.ends_with(".tmp") {
                // An unfinished compaction: the previous generation is still complete.
                io.remove(&name).map_err(|e| kv_err("remove", &*io, e))?;
            } else if let Some(g) = name
                .strip_suffix(".wal")
                .and_then(|h| u64::from_str_radix(h, 16).ok())
            {
                generations.push(g);
            }
        }
        generations.sort_unstable();
        let marker_bytes = io
            .read(MARKER_FILE)
            .map_err(|e| kv_err("read sync marker", &*io, e))?;
        let mark = marker_bytes.as_deref().and_then(marker::read);
        // KNOWN-BAD (simulation only) when set: the marker is read but never consulted.
        let consult_marker = !known_bad!(options.known_bad, SyncMarkerIgnored);
        let marker_file = match marker_bytes {
            Some(_) => Some(
                io.open(MARKER_FILE)
                    .map_err(|e| kv_err("open sync marker", &*io, e))?,
            ),
            None => None,
        };
        let marker_state = MarkerState {
            file: marker_file,
            last: mark,
        };
        let Some(&generation) = generations.last() else {
            let Some(m) = mark.filter(|_| consult_marker) else {
                let kv = WalKv::fresh(io, 1, marker_state, options)?;
                return Ok(WalOpen {
                    kv,
                    fresh: true,
                    damage: None,
                });
            };
            // A marker without a log: the log was deleted. Nothing is written until the damage
            // is accepted, so the next open finds the same.
            let damage = WalDamage::Missing {
                generation: m.mark.generation,
                synced: m.mark.synced,
            };
            let end = FILE_MAGIC.len() as u64;
            let kv = WalKv {
                inner: Arc::new(RwLock::new(Inner {
                    file: Arc::new(mem::MemFile::default()),
                    generation: m.mark.generation,
                    end,
                    synced: end,
                    maps: Default::default(),
                    live: 0,
                    allocated: end,
                    failed: None,
                    damage: Some(damage.clone()),
                })),
                marker: Arc::new(Mutex::new(marker_state)),
                io,
                options,
            };
            return Ok(WalOpen {
                kv,
                fresh: false,
                damage: Some(damage),
            });
        };
        // A finished compaction renamed its file into place before removing the old one.
        for old in &generations[..generations.len() - 1] {
            io.remove(&file_name(*old))
                .map_err(|e| kv_err("remove", &*io, e))?;
        }
        let name = file_name(generation);
        let bytes = io
            .read(&name)
            .map_err(|e| kv_err("read", &*io, e))?
            .unwrap_or_default();
        let recovered = frame::recover(&bytes);
        let valid_end = recovered.valid_end as u64;
        let has_records = recovered.valid_end > FILE_MAGIC.len();
        let damage = if let Some(d) = &recovered.damage {
            Some(WalDamage::Corrupt {
                generation,
                offset: d.offset as u64,
                reason: d.reason.clone(),
            })
        } else {
            match mark {
                _ if !consult_marker => None,
                Some(m) if m.mark.generation > generation => Some(WalDamage::Missing {
                    generation: m.mark.generation,
                    synced: m.mark.synced,
                }),
                Some(m) if m.mark.generation == generation && valid_end < m.mark.synced => {
                    Some(WalDamage::LostSyncedWrites {
                        generation,
                        valid_end,
                        synced: m.mark.synced,
                    })
                }
                None if has_records => Some(WalDamage::MarkerMissing { generation }),
                _ => None,
            }
        };
        let file = io.open(&name).map_err(|e| kv_err("open", &*io, e))?;
        let tail = &bytes[recovered.valid_end..];
        let allocated = if damage.is_some() {
            // Nothing is cut or written until the damage is accepted.
            bytes.len() as u64
        } else if tail.iter().all(|b| *b == 0) {
            // Zeros after the last record are preallocated space, kept. After a process crash
            // without a power loss, what was read here may still be only in the page cache;
            // everything read counts as durable from now on (Raft acts on it at once), so make
            // it so.
            file.sync_data()
                .map_err(|e| kv_err("fsync at open", &*io, e))?;
            bytes.len() as u64
        } else {
            // Anything else is a torn write, cut off so that no stale bytes can ever follow a
            // new record.
            tracing::warn!(
                log = %io.describe(),
                offset = valid_end,
                bytes = tail.len(),
                "cutting off the torn end of the Raft log (unsynced writes lost in a crash)"
            );
            file.set_len(valid_end)
                .and_then(|()| file.sync_data())
                .map_err(|e| kv_err("truncate torn tail", &*io, e))?;
            valid_end
        };
        let kv = WalKv {
            inner: Arc::new(RwLock::new(Inner {
                file,
                generation,
                end: valid_end,
                synced: valid_end,
                maps: recovered.maps,
                live: recovered.live,
                allocated,
                failed: None,
                damage: damage.clone(),
            })),
            marker: Arc::new(Mutex::new(marker_state)),
            io,
            options,
        };
        if damage.is_none() {
            // What is on disk now is durable: say so (also after a compaction whose marker
            // update a crash cut off).
            kv.mark(Mark {
                generation,
                synced: valid_end,
            })?;
            kv.keep_headroom();
        }
        Ok(WalOpen {
            kv,
            fresh: false,
            damage,
        })
    }

    /// A new, empty generation `generation` with its marker.
    fn fresh(
        io: Arc<dyn WalIo>,
        generation: u64,
        marker: MarkerState,
        options: WalOptions,
    ) -> Result<WalKv, StoreError> {
        let file = new_file(&*io, generation, &[])?;
        let end = FILE_MAGIC.len() as u64;
        let kv = WalKv {
            inner: Arc::new(RwLock::new(Inner {
                file,
                generation,
                end,
                synced: end,
                maps: Default::default(),
                live: 0,
                allocated: end,
                failed: None,
                damage: None,
            })),
            marker: Arc::new(Mutex::new(marker)),
            io,
            options,
        };
        kv.mark(Mark {
            generation,
            synced: end,
        })?;
        kv.keep_headroom();
        Ok(kv)
    }

    /// Continues from the valid records before the damage found at open: the damaged file is
    /// kept beside the log as `<generation>.damaged`, the valid records are copied to the next
    /// generation, and writes are accepted again. Call it only once the node has recorded that
    /// it is repairing (the damage is then no longer visible in the log itself).
    pub fn accept_damage(&self) -> Result<(), StoreError> {
        let mut inner = self.write_lock();
        let Some(damage) = inner.damage.clone() else {
            return Ok(());
        };
        let old = inner.generation;
        self.rewrite(&mut inner)?;
        match damage {
            WalDamage::Missing { .. } => {}
            WalDamage::MarkerMissing { .. } => self.remove_generation(old),
            WalDamage::LostSyncedWrites { .. } | WalDamage::Corrupt { .. } => {
                let evidence = format!("{old:016x}{EVIDENCE_SUFFIX}");
                self.io
                    .rename(&file_name(old), &evidence)
                    .and_then(|()| self.io.sync_dir())
                    .map_err(|e| kv_err("keep the damaged log", &*self.io, e))?;
                tracing::warn!(log = %self.io.describe(), file = %evidence, "kept the damaged Raft log file as evidence");
            }
        }
        inner.damage = None;
        Ok(())
    }

    /// Reads the whole file back from storage and checks every record written so far (bit rot,
    /// or the file changed behind the node's back). Returns the bytes checked.
    pub fn scrub(&self) -> Result<u64, WalDamage> {
        let (file, generation, end) = {
            let inner = self.read();
            if inner.damage.is_some() {
                return Ok(0);
            }
            (inner.file.clone(), inner.generation, inner.end)
        };
        let mut bytes = vec![0u8; end as usize];
        if let Err(e) = file.read_at(&mut bytes, 0) {
            return Err(WalDamage::Corrupt {
                generation,
                offset: 0,
                reason: format!("cannot read the file back: {e}"),
            });
        }
        let recovered = frame::recover(&bytes);
        match recovered.damage {
            Some(d) => Err(WalDamage::Corrupt {
                generation,
                offset: d.offset as u64,
                reason: d.reason,
            }),
            None if (recovered.valid_end as u64) < end => Err(WalDamage::Corrupt {
                generation,
                offset: recovered.valid_end as u64,
                reason: format!(
                    "a record written before byte {end} no longer reads back: {}",
                    frame::parse_at(&bytes, recovered.valid_end)
                        .err()
                        .map(|e| e.to_string())
                        .unwrap_or_default()
                ),
            }),
            None => Ok(end),
        }
    }
}
