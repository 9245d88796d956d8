//! openraft's storage conformance suite against the log store and ledger state machine, on both
//! storage configurations: everything in memory, and production's (sled for the ledger, the
//! Raft log in its own file).
#![cfg(not(madsim))]

use std::sync::Arc;

use openraft::testing::{StoreBuilder, Suite};
use stateledger_node::ledger::{Ledger, LedgerStateMachine};
use stateledger_node::raft::{StorageError, TypeConfig};
use stateledger_node::store::log_store::LogStore;
use stateledger_node::store::node_state::{NodeState, NodeStateHandle};
use stateledger_node::store::sled_kv::SledKv;
use stateledger_node::store::wal::WalKv;
use stateledger_node::store::{Kv, MemKv, Store};

fn node_state(log: Arc<dyn Kv>, ledger: Arc<dyn Kv>) -> Arc<NodeStateHandle> {
    Arc::new(NodeStateHandle::new(log, ledger, NodeState::new(1, "test")))
}

struct MemBuilder;

impl StoreBuilder<TypeConfig, LogStore, LedgerStateMachine, ()> for MemBuilder {
    async fn build(&self) -> Result<((), LogStore, LedgerStateMachine), StorageError> {
        let kv: Arc<dyn Kv> = Arc::new(MemKv::new());
        let store = Store::new(kv.clone());
        let ledger = Ledger::open(store.clone(), true).expect("empty store opens");
        // The suite's entries are led by node 0. As node 0 here they are this node's own (the
        // syncer task syncs them); as node 1 below they are another leader's (synced in place),
        // so the suite checks both paths.
        let log_store = LogStore::new(store, 0, node_state(kv.clone(), kv));
        Ok(((), log_store, LedgerStateMachine::new(ledger)))
    }
}

struct SledBuilder;

impl StoreBuilder<TypeConfig, LogStore, LedgerStateMachine, tempfile::TempDir> for SledBuilder {
    async fn build(
        &self,
    ) -> Result<(tempfile::TempDir, LogStore, LedgerStateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let kv: Arc<dyn Kv> = Arc::new(SledKv::open(dir.path()).expect("sled opens").kv);
        let log: Arc<dyn Kv> = Arc::new(WalKv::open_dir(dir.path()).expect("log file opens").kv);
        let store = Store::with_log(kv.clone(), log.clone());
        let ledger = Ledger::open(store.clone(), true).expect("empty store opens");
        Ok((
            dir,
            LogStore::new(store, 1, node_state(log, kv)),
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
