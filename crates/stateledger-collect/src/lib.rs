//! StateLedger collectors: non-intrusive, language-agnostic observers that turn a system's declared
//! state into valid [`pb::Record`] bodies.
//!
//! | dimension | collector | body |
//! | --- | --- | --- |
//! | code | [`code::CodeCollector`] (git as a subprocess, artifacts, lockfiles) | `code` |
//! | configuration | [`config::ConfigCollector`] (files, directories, env vars; partial config is rejected, secrets redacted) | `config` |
//! | environment | [`environment::EnvironmentCollector`] (OS, kernel, arch, container, runtimes, flags, time source) | `environment` |
//! | data mutations | [`mutation::MutationInput`], [`mutation::MutationReader`] (JSONL) | `mutation` |
//! | nondeterminism | [`capture`] (seeds, clock readings, external calls) | `nondeterminism` |
//!
//! A collector returns a body; the caller says which system it belongs to, where and when it was
//! observed ([`RecordMeta`]) and [`RecordMeta::record`] assembles the record and checks it with the
//! same rules the ledger applies at submission (`stateledger_core::record::decode_record`), so a
//! record that leaves this crate is one the ledger accepts.
//!
//! The rules a front end would otherwise make up for itself are here too, so that one (the CLI's
//! `stateledger collect`) only parses its input and prints: a payload file's digest held to a
//! digest given with it ([`mutation::MutationInput::payload_file`]), a redacted snapshot's salt
//! kept before its record is made ([`config::ConfigCollection::into_record`]), and payload files
//! read whole only up to a limit ([`payload_file`]).
//!
//! **Architecture invariant:** no network and no async. The only outside world a collector touches
//! is the local file system, its own environment and short-lived local subprocesses (`git`,
//! `--version` probes, `chronyc`, `timedatectl`), each bounded by a timeout and an output cap, and
//! never run in a way that writes (git runs with `GIT_OPTIONAL_LOCKS=0`).

#![forbid(unsafe_code)]

pub mod capture;
pub mod code;
mod command;
pub mod config;
pub mod digest;
pub mod environment;
pub mod limits;
pub mod mutation;
pub mod payload_file;
mod record_meta;

pub use record_meta::{now_unix_nanos, RecordMeta};
pub use stateledger_core::record::{pb, Body, RecordError};
