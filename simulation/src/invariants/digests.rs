//! Identical state: after the run, each node's state database is reopened and fingerprinted
//! (`StateMachine::digest`, FNV-1a over every state table's snapshot encoding); all must be
//! equal, applied index included.

use std::path::PathBuf;

use crate::outcome::Violation;

/// Opens each of the `nodes` nodes' state databases (under `node_dir(id)`) after the run and
/// compares fingerprints of every table.
pub(crate) fn check(nodes: u64, node_dir: &dyn Fn(u64) -> PathBuf) -> Vec<Violation> {
    let mut digests = Vec::new();
    for id in 1..=nodes {
        match raft::StateMachine::open(&node_dir(id).join("state")).and_then(|sm| sm.digest()) {
            Ok(d) => digests.push((id, d)),
            Err(e) => {
                return vec![Violation {
                    what: format!("n{id}: state unreadable after the run"),
                    detail: e.to_string(),
                }]
            }
        }
    }
    let first = digests[0].1;
    if digests.iter().all(|(_, d)| *d == first) {
        Vec::new()
    } else {
        vec![Violation {
            what: "nodes' state tables differ after healing".into(),
            detail: digests
                .iter()
                .map(|(id, d)| format!("  n{id}: applied {} rows {} hash {:016x}", d.applied_index, d.rows, d.hash))
                .collect::<Vec<_>>()
                .join("\n"),
        }]
    }
}
