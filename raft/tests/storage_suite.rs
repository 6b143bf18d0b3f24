//! openraft's own storage conformance suite, run against the redb log store and state machine.
//!
//! It checks the contract openraft relies on (log state after append, truncate and purge; vote
//! persistence; applied state and membership; snapshot build, install and read back) on real
//! redb files in a fresh temporary directory per case.

use openraft::testing::{StoreBuilder, Suite};
use raft::{LogStore, StateMachine, StorageError, TypeConfig};

struct RedbBuilder;

impl StoreBuilder<TypeConfig, LogStore, StateMachine, tempfile::TempDir> for RedbBuilder {
    async fn build(&self) -> Result<(tempfile::TempDir, LogStore, StateMachine), StorageError> {
        let dir = tempfile::tempdir().expect("temp dir");
        let log = LogStore::open(&dir.path().join("log.redb")).expect("open log");
        let sm = StateMachine::open(&dir.path().join("state")).expect("open state machine");
        Ok((dir, log, sm))
    }
}

// The suite starts its own tokio runtime, so this is a plain test, not a tokio one.
#[test]
fn redb_store_passes_openraft_conformance_suite() {
    Suite::test_all(RedbBuilder).expect("openraft storage suite");
}
