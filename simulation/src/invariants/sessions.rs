//! Session order, per client, checked online as the answers arrive: read-your-writes and
//! monotonic reads, and that no answer is older than the `atLeastIndex` it was asked for.

use std::collections::BTreeMap;

use crate::history::Output;
use crate::outcome::Violation;
use crate::workload::Attempted;

/// A workload client's session, as the typed client keeps one: the highest log index any answer
/// carried, sent as `atLeastIndex` on every request, and the names it has seen held, with the
/// evidence. Names are never released in a run (reservations outlive it), so once a session has
/// seen a name held, by its own claim or by any read, every later answer it gets must say so,
/// from whichever node, LOCAL or not: read-your-writes and monotonic reads.
#[derive(Debug, Default, Clone)]
pub(crate) struct Session {
    /// The highest index any answer carried.
    pub(crate) mark: u64,
    /// canonical name -> how this session came to see it held (the first time).
    held: BTreeMap<String, String>,
}

impl Session {
    /// Remembers that this session saw `canonical` held; the first evidence is kept.
    pub(crate) fn saw_held(&mut self, canonical: String, seen: String) {
        self.held.entry(canonical).or_insert(seen);
    }
}

/// Checks a name's status as client `c` read it against the client's session, then remembers a
/// held name: the answer must be served at or after the index the session sent, and must not
/// call a name AVAILABLE that the session has seen held.
pub(crate) fn check_read(
    session: &mut Session,
    violations: &mut Vec<Violation>,
    c: usize,
    canonical: &str,
    output: &Output,
    at: &Attempted,
    what: &str,
) {
    let applied = at.indexes.applied.unwrap_or(0);
    if applied < at.floor {
        violations.push(Violation {
            what: "session order: an answer older than its atLeastIndex".into(),
            detail: format!(
                "client c{c}: {what} sent atLeastIndex {} and was answered from index {applied} ({})",
                at.floor, at.tried
            ),
        });
    }
    match output {
        Output::Free => {
            if let Some(seen) = session.held.get(canonical) {
                let detail = format!(
                    "client c{c}: {what} said {canonical:?} is AVAILABLE at index {applied} (atLeastIndex {}, via {}), \
                     but this session had already {seen}",
                    at.floor, at.tried
                );
                violations.push(Violation { what: "session: read-your-writes / monotonic reads".into(), detail });
            }
        }
        _ => {
            let seen = format!("seen it held by {what} at index {applied} via {}", at.tried);
            session.saw_held(canonical.to_string(), seen);
        }
    }
}
