//! Storing and reading the event feed (see `crate::events`).

use redb::ReadableTable;

use super::tables::{self, key, Tables};
use super::{ReadView, SmError};
use crate::events::{Event, EVENTS_RETAINED_MAX};

fn event_key(topic: &str, seq: u64) -> Vec<u8> {
    key(&[topic.as_bytes(), &[0], &seq.to_be_bytes()])
}

/// Numbers and stores the batch's pending events, then prunes the feed to its window. Runs at
/// the end of an apply batch, inside its transaction. Returns the last sequence number in use.
pub(crate) fn flush(t: &mut Tables) -> Result<u64, SmError> {
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
        next += 1;
    }
    t.set_counter(tables::COUNTER_NEXT_EVENT_SEQ, next)?;
    let last = next - 1;
    // Prune the oldest events beyond the window; the same on every node since it depends only
    // on the sequence.
    let keep_from = last.saturating_sub(EVENTS_RETAINED_MAX) + 1;
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
