//! openraft's storage conformance suite against the log store and ledger state machine, on both
//! storage configurations: everything in memory, and production's (sled for the ledger, the
//! Raft log in its own file).
#![cfg(not(madsim))]

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use stateledger_node::ledger::{Ledger, LedgerStateMachine};
use stateledger_node::raft::{StorageError, TypeConfig};
use stateledger_node::store::log_store::LogStore;
use stateledger_node::store::sled_kv::SledKv;
use stateledger_node::store::wal_kv::WalKv;
use stateledger_node::store::{MemKv, Store};

struct MemBuilder;

impl StoreBuilder<TypeConfig, LogStore, LedgerStateMachine, ()> for MemBuilder {
    async fn build(&self) -> Result<((), LogStore, LedgerStateMachine), StorageError> {
        let store = Store::new(Arc::new(MemKv::new()));
        let ledger = Ledger::open(store.clone(), true).expect("empty store opens");
        // The suite's entries are led by node 0. As node 0 here they are this node's own (the
        // syncer task syncs them); as node 1 below they are another leader's (synced in place),
        // so the suite checks both paths.
        Ok(((), LogStore::new(store, 0), LedgerStateMachine::new(ledger)))
    }
}

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, LedgerStateMachine, tempfile::TempDir> for SledBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, LedgerStateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let kv = SledKv::open(dir.path()).expect("sled opens");
        let log = WalKv::open(dir.path()).expect("log file opens");
        let store = Store::with_log(Arc::new(kv), Arc::new(log));
        let ledger = Ledger::open(store.clone(), true).expect("empty store opens");
        Ok((
            dir,
            LogStore::new(store, 1),
            LedgerStateMachine::new(ledger),
        ))
    }
}

#[test]
fn memory_store_passes_openraft_suite() -> Result<(), StorageError> {
    Suite::test_all(MemBuilder)
}

#[test]
fn sled_and_log_file_store_passes_openraft_suite() -> Result<(), StorageError> {
    Suite::test_all(SledBuilder)
}
