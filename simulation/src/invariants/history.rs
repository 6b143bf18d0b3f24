//! Linearizability of the recorded history, key by key (P-compositionality), with
//! [`crate::check`]'s search and models; a violation is explained by a 1-minimal failing history
//! and the first operation that has no linearization.

use std::collections::BTreeMap;

use crate::check::{self, NameModel, SaleModel, Verdict};
use crate::config::FAILURE_CONTEXT_OPS_MAX;
use crate::history::{History, Key, Op};
use crate::outcome::Violation;

/// Checks every key's sub-history of `history`; `initial` is each sale's initial stock.
pub(crate) fn check(history: &History, initial: &BTreeMap<u64, u64>) -> Vec<Violation> {
    let mut by_key: BTreeMap<Key, Vec<Op>> = BTreeMap::new();
    for op in history.ops() {
        by_key.entry(op.key.clone()).or_default().push(op.clone());
    }
    let mut out = Vec::new();
    for (key, ops) in by_key {
        let (verdict, detail) = match &key {
            Key::Name(_) => explain(&NameModel, &ops),
            Key::Sale(id) => explain(&SaleModel { initial: initial.get(id).copied().unwrap_or(0) }, &ops),
        };
        match verdict {
            Verdict::Linearizable => {}
            Verdict::Violation => out.push(Violation {
                what: format!("{key}: the history is not linearizable ({} operations)", ops.len()),
                detail,
            }),
            Verdict::Inconclusive(states) => out.push(Violation {
                what: format!("{key}: the checker gave up after {states} states"),
                detail: "the history is too concurrent to check exhaustively; lower --clients".into(),
            }),
        }
    }
    out
}

/// The verdict on one key's `ops`, and for a violation the evidence a reader needs.
fn explain<M: check::Model>(m: &M, ops: &[Op]) -> (Verdict, String) {
    let v = check::check(m, ops);
    if v != Verdict::Violation {
        return (v, String::new());
    }
    let minimal = check::shrink(m, ops);
    let mut text = format!(
        "minimal failing history ({} operations; removing any one makes it linearizable):\n{}",
        minimal.len(),
        minimal.iter().map(|o| o.to_string()).collect::<Vec<_>>().join("\n")
    );
    if let Some((culprit, before)) = check::first_failure(m, ops) {
        let shown = &before[before.len().saturating_sub(FAILURE_CONTEXT_OPS_MAX)..];
        text += &format!(
            "\nthe first operation with no linearization:\n{culprit}\nafter these, completed before it was invoked (last {} of {}):\n{}",
            shown.len(),
            before.len(),
            shown.iter().map(|o| o.to_string()).collect::<Vec<_>>().join("\n")
        );
    }
    (v, text)
}
