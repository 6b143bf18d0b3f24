//! Storing and reading the event feed (see `crate::events`).

use redb::ReadableTable;

use super::tables::{self, key, Tables};
use super::{ReadView, SmError};
use crate::events::{Event, EVENTS_RETAINED_MAX};

fn event_key(topic: &str, seq: u64) -> Vec<u8> {
    key(&[topic.as_bytes(), &[0], &seq.to_be_bytes()])
}

/// Where a topic's pruned mark lives: the highest sequence number pruned from that topic, kept
/// under sequence 0 of the topic (no event has number 0, and reads start at 1). The window is
/// judged per topic: a subscriber of a quiet chat lost nothing when other topics' events were
/// pruned, however many.
fn pruned_key(topic: &str) -> Vec<u8> {
    event_key(topic, 0)
}

/// Numbers and stores the batch's pending events, then prunes the feed to its window. Runs at
/// the end of an apply batch, inside its transaction. Returns the last sequence number in use
/// and the batch's events, for the hub to hand to their topics once the batch commits.
pub(crate) fn flush(t: &mut Tables, out: &mut Vec<Event>) -> Result<u64, SmError> {
    let pending = std::mem::take(&mut t.pending_events);
    let mut next = t.counter(tables::COUNTER_NEXT_EVENT_SEQ)?.max(1);
    if pending.is_empty() {
        return Ok(next - 1);
    }
    for (topic, at_ms, payload) in pending {
        let event = Event { seq: next, topic, at_ms, payload };
        let bytes = serde_json::to_vec(&event)?;
        t.events.insert(event_key(&event.topic, next).as_slice(), bytes.as_slice())?;
        t.event_log.insert(next.to_be_bytes().as_slice(), event.topic.as_bytes())?;
        out.push(event);
        next += 1;
    }
    t.set_counter(tables::COUNTER_NEXT_EVENT_SEQ, next)?;
    let last = next - 1;
    // Prune the oldest events beyond the window; the same on every node since it depends only
    // on the sequence.
    let keep_from = last.saturating_sub(EVENTS_RETAINED_MAX) + 1;
    // Each pruned topic's mark is written once per batch, at its highest pruned number.
    let mut marks: std::collections::BTreeMap<String, u64> = std::collections::BTreeMap::new();
    loop {
        let oldest = match t.event_log.first()? {
            Some((k, v)) => {
                let seq = u64::from_be_bytes(k.value().try_into().map_err(|_| SmError::Corrupt("event seq key"))?);
                (seq < keep_from).then(|| (seq, String::from_utf8_lossy(v.value()).into_owned()))
            }
            None => None,
        };
        let Some((seq, topic)) = oldest else { break };
        t.event_log.remove(seq.to_be_bytes().as_slice())?;
        t.events.remove(event_key(&topic, seq).as_slice())?;
        marks.insert(topic, seq);
    }
    for (topic, seq) in marks {
        t.events.insert(pruned_key(&topic).as_slice(), seq.to_be_bytes().as_slice())?;
    }
    Ok(last)
}

impl ReadView {
    /// Up to `limit` events of `topic` with a sequence number above `after`, oldest first.
    pub fn events_after(&self, topic: &str, after: u64, limit: usize) -> Result<Vec<Event>, SmError> {
        let table = self.txn.open_table(tables::EVENTS)?;
        let from = event_key(topic, after.saturating_add(1));
        let to = event_key(topic, u64::MAX);
        let mut out = Vec::new();
        for item in table.range::<&[u8]>(from.as_slice()..=to.as_slice())?.take(limit) {
            let (_, v) = item?;
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }

    /// The highest sequence number pruned from `topic` (0 when none was): a cursor at or above
    /// it has lost nothing of the topic.
    pub fn topic_pruned(&self, topic: &str) -> Result<u64, SmError> {
        let table = self.txn.open_table(tables::EVENTS)?;
        let mark = table.get(pruned_key(topic).as_slice())?;
        match mark {
            Some(v) => Ok(u64::from_be_bytes(v.value().try_into().map_err(|_| SmError::Corrupt("pruned mark"))?)),
            None => Ok(0),
        }
    }

    /// The oldest retained sequence number and the newest one in use (0 when none yet).
    pub fn event_window(&self) -> Result<(u64, u64), SmError> {
        let log = self.txn.open_table(tables::EVENT_LOG)?;
        let seq = |k: &[u8]| -> Result<u64, SmError> {
            Ok(u64::from_be_bytes(k.try_into().map_err(|_| SmError::Corrupt("event seq key"))?))
        };
        let first = match log.first()? {
            Some((k, _)) => seq(k.value())?,
            None => 0,
        };
        let last = match log.last()? {
            Some((k, _)) => seq(k.value())?,
            None => 0,
        };
        Ok((first, last))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{sale_topic, EventPayload};
    use crate::model::sales::{SaleStatus, SaleUpdate};
    use crate::state_machine::StateMachine;

    fn sale_event(t: &mut Tables, sale_id: u64) {
        let update = SaleUpdate { sale_id, stock: 1, sold: 0, status: SaleStatus::Open };
        t.emit(sale_topic(sale_id), 0, EventPayload::Sale(update));
    }

    #[test]
    fn the_window_is_judged_per_topic_so_a_quiet_topic_loses_nothing() {
        // The bug this guards against: the window used to be judged by the oldest event kept
        // across all topics, so a caught-up subscriber of a quiet chat was told it had fallen
        // behind once enough events of *other* topics had been pruned, and its stream ended.
        let dir = tempfile::tempdir().expect("temp dir");
        let sm = StateMachine::open(dir.path()).expect("open");
        let write = |f: &dyn Fn(&mut Tables)| {
            let txn = sm.db.begin_write().expect("begin");
            {
                let mut t = Tables::open(&txn).expect("tables");
                f(&mut t);
                flush(&mut t, &mut Vec::new()).expect("flush");
            }
            txn.commit().expect("commit");
        };
        // Phase 1: one event on the quiet topic (seq 1), then a full window of a busy topic's
        // events, which prunes seq 1 and the busy topic's oldest.
        write(&|t| sale_event(t, 1));
        write(&|t| {
            for _ in 0..EVENTS_RETAINED_MAX + 5 {
                sale_event(t, 2);
            }
        });
        let view = sm.read().expect("view");
        let (first, last) = view.event_window().expect("window");
        assert_eq!((first, last), (7, EVENTS_RETAINED_MAX + 6), "the global window moved on");
        // Phase 2: the quiet topic's mark is its own pruned event: a subscriber that saw seq 1
        // lost nothing (cursor 1 >= mark 1); one that had seen nothing did lose it.
        assert_eq!(view.topic_pruned(&sale_topic(1)).expect("mark"), 1);
        assert_eq!(view.topic_pruned(&sale_topic(2)).expect("mark"), 6);
        assert_eq!(view.topic_pruned(&sale_topic(3)).expect("mark"), 0, "a topic never pruned");
        // Phase 3: reads start after the mark's key: the mark is never mistaken for an event.
        assert!(view.events_after(&sale_topic(1), 0, 10).expect("read").is_empty());
        assert_eq!(view.events_after(&sale_topic(2), 0, 1).expect("read")[0].seq, 7);
    }
}
