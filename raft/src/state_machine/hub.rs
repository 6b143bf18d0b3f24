//! Per-topic wake-ups and the recent events of each watched topic, shared by its subscribers.
//!
//! Before this, every subscription slept on one watch of the newest event number, so each event
//! of any topic woke every subscriber of every topic, and each woken one read redb alone: with
//! thousands of subscribers, a busy chat cost the subscribers of quiet ones as much as its own.
//! Now apply hands each committed event to its topic only, and only when the topic is watched:
//! the event goes into the topic's ring of recent events ([`TOPIC_RECENT_EVENTS_MAX`], one
//! shared `Arc` per event), and the topic's watch wakes its own subscribers, who take the events
//! after their cursor from the ring instead of from redb.
//!
//! The ring is exact, never a guess: `complete_after` is a sequence number such that the ring
//! holds *every* event of the topic after it, in order. It starts at the last event published
//! when the topic was first watched (anything older is in redb, committed before it was
//! published), and rises as old events fall off the bounded ring or a snapshot install replaces
//! the state. A subscriber whose cursor is below it (a replay, or one that fell far behind)
//! reads redb, as before. Publishing happens after the apply transaction commits, under the
//! hub's lock, so whatever the ring holds is committed and visible to any later read.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use crate::events::Event;

/// Recent events kept per watched topic. A subscriber more than this many of its topic's events
/// behind reads the rest from redb; memory per watched topic is bounded by it.
pub const TOPIC_RECENT_EVENTS_MAX: usize = 1_024;

/// The recent events of one watched topic.
struct Recent {
    /// Every event of the topic with a sequence number above this is in `events`.
    complete_after: u64,
    events: VecDeque<Arc<Event>>,
}

/// One watched topic: its ring and its wake-up.
struct TopicState {
    recent: Mutex<Recent>,
    /// The newest sequence number published on the topic (or reset to).
    wake: watch::Sender<u64>,
}

#[derive(Default)]
struct Topics {
    /// The last sequence number published (every event up to it is committed and in redb).
    published: u64,
    /// Each watched topic, with how many [`TopicWatch`]es hold it.
    watched: HashMap<String, (Arc<TopicState>, usize)>,
}

/// The watched topics of one state machine.
#[derive(Default)]
pub(crate) struct Hub {
    topics: Mutex<Topics>,
}

/// A subscriber's hold on one topic: wakes when the topic has new events, and hands out the
/// recent ones. The topic stays watched while any of these exist.
pub struct TopicWatch {
    hub: Arc<Hub>,
    topic: String,
    state: Arc<TopicState>,
    rx: watch::Receiver<u64>,
}

impl Hub {
    fn lock(&self) -> std::sync::MutexGuard<'_, Topics> {
        self.topics.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Watches `topic` (shared with its other watchers), marked seen: take it *before* the
    /// subscription's initial read, so an event published between the two still wakes it.
    pub(crate) fn watch(self: &Arc<Self>, topic: &str) -> TopicWatch {
        let mut topics = self.lock();
        let published = topics.published;
        let (state, watchers) = topics.watched.entry(topic.to_owned()).or_insert_with(|| {
            let state = TopicState {
                recent: Mutex::new(Recent { complete_after: published, events: VecDeque::new() }),
                wake: watch::channel(published).0,
            };
            (Arc::new(state), 0)
        });
        *watchers += 1;
        let state = state.clone();
        let mut rx = state.wake.subscribe();
        rx.borrow_and_update();
        TopicWatch { hub: self.clone(), topic: topic.to_owned(), state, rx }
    }

    /// Hands committed events (in sequence order) to their watched topics, and records `last` as
    /// published. Called once per apply batch, after its commit.
    pub(crate) fn publish(&self, events: Vec<Event>, last: u64) {
        let mut topics = self.lock();
        topics.published = topics.published.max(last);
        // Each woken topic once, with its last sequence number (by the state's address).
        let mut woken: HashMap<*const TopicState, (Arc<TopicState>, u64)> = HashMap::new();
        for e in events {
            let Some((state, _)) = topics.watched.get(&e.topic) else { continue };
            let seq = e.seq;
            {
                let mut r = state.recent.lock().unwrap_or_else(|p| p.into_inner());
                if r.events.len() == TOPIC_RECENT_EVENTS_MAX {
                    if let Some(old) = r.events.pop_front() {
                        r.complete_after = old.seq;
                    }
                }
                r.events.push_back(Arc::new(e));
            }
            woken.entry(Arc::as_ptr(state)).or_insert_with(|| (state.clone(), seq)).1 = seq;
        }
        drop(topics);
        for (state, seq) in woken.into_values() {
            state.wake.send_replace(seq);
        }
    }

    /// The state was replaced (a snapshot installed) up to event `last`: no ring can claim to be
    /// complete below it, so each is emptied and its subscribers woken to read redb.
    pub(crate) fn reset(&self, last: u64) {
        let mut topics = self.lock();
        topics.published = last;
        for (state, _) in topics.watched.values() {
            {
                let mut r = state.recent.lock().unwrap_or_else(|p| p.into_inner());
                r.events.clear();
                r.complete_after = r.complete_after.max(last);
            }
            state.wake.send_replace(last);
        }
    }

    /// Topics watched now (for tests and metrics).
    pub(crate) fn watched_topics(&self) -> usize {
        self.lock().watched.len()
    }
}

impl TopicWatch {
    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Marks the newest published event seen; an event published after this wakes
    /// [`TopicWatch::changed`].
    pub fn mark_seen(&mut self) {
        self.rx.borrow_and_update();
    }

    /// Waits for an event published on the topic after the last [`TopicWatch::mark_seen`].
    pub async fn changed(&mut self) {
        // The sender lives as long as `state`, which this holds: changed() cannot fail.
        let _ = self.rx.changed().await;
    }

    /// Up to `limit` events of the topic after `cursor`, oldest first, from the ring; `None`
    /// when the ring cannot tell (`cursor` is below what it holds completely): read redb then.
    pub fn recent_after(&self, cursor: u64, limit: usize) -> Option<Vec<Arc<Event>>> {
        let r = self.state.recent.lock().unwrap_or_else(|p| p.into_inner());
        if cursor < r.complete_after {
            return None;
        }
        // Sequence numbers rise along the ring: skip to the first after the cursor.
        let from = r.events.partition_point(|e| e.seq <= cursor);
        Some(r.events.range(from..).take(limit).cloned().collect())
    }
}

impl Drop for TopicWatch {
    fn drop(&mut self) {
        let mut topics = self.hub.lock();
        if let Some((_, watchers)) = topics.watched.get_mut(&self.topic) {
            *watchers -= 1;
            if *watchers == 0 {
                topics.watched.remove(&self.topic);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::EventPayload;

    fn ev(seq: u64, topic: &str) -> Event {
        Event { seq, topic: topic.into(), at_ms: 0, payload: EventPayload::AccountDeleted { user_id: seq } }
    }

    fn seqs(v: Option<Vec<Arc<Event>>>) -> Option<Vec<u64>> {
        v.map(|v| v.iter().map(|e| e.seq).collect())
    }

    #[tokio::test]
    async fn a_topic_wakes_only_its_own_watchers_and_hands_out_exactly_its_events() {
        let hub = Arc::new(Hub::default());
        hub.publish(vec![ev(1, "a"), ev(2, "b")], 2);
        // Phase 1: watching starts complete after what was already published: those events are
        // in redb, so a cursor below is told to read there.
        let mut a = hub.watch("a");
        let mut b = hub.watch("b");
        assert_eq!(seqs(a.recent_after(0, 10)), None);
        assert_eq!(seqs(a.recent_after(2, 10)), Some(vec![]));
        // Phase 2: an event of b wakes b, not a; a's ring stays empty.
        hub.publish(vec![ev(3, "b"), ev(4, "b")], 4);
        tokio::time::timeout(std::time::Duration::from_secs(1), b.changed()).await.expect("b woken");
        assert!(tokio::time::timeout(std::time::Duration::from_millis(20), a.changed()).await.is_err(), "a woken");
        assert_eq!(seqs(b.recent_after(2, 10)), Some(vec![3, 4]));
        assert_eq!(seqs(b.recent_after(3, 10)), Some(vec![4]));
        assert_eq!(seqs(b.recent_after(3, 0)), Some(vec![]));
        assert_eq!(seqs(a.recent_after(4, 10)), Some(vec![]));
        // Phase 3: the last watcher leaving unwatches the topic; two watchers share one state.
        let a2 = hub.watch("a");
        drop(a);
        assert_eq!(hub.watched_topics(), 2);
        drop(a2);
        assert_eq!(hub.watched_topics(), 1);
        b.mark_seen();
        drop(b);
        assert_eq!(hub.watched_topics(), 0);
    }

    #[test]
    fn the_ring_is_bounded_and_says_when_it_no_longer_holds_a_cursor() {
        let hub = Arc::new(Hub::default());
        let w = hub.watch("t");
        let n = TOPIC_RECENT_EVENTS_MAX as u64 + 10;
        hub.publish((1..=n).map(|s| ev(s, "t")).collect(), n);
        // The ten oldest fell off: cursors before event 10 must read redb, later ones are served.
        assert_eq!(seqs(w.recent_after(9, 1)), None);
        assert_eq!(seqs(w.recent_after(10, 2)), Some(vec![11, 12]));
        assert_eq!(w.recent_after(10, usize::MAX).map(|v| v.len()), Some(TOPIC_RECENT_EVENTS_MAX));
        // A snapshot install replaces the state: nothing below it is claimed any more.
        hub.reset(n + 100);
        assert_eq!(seqs(w.recent_after(n, 10)), None);
        assert_eq!(seqs(w.recent_after(n + 100, 10)), Some(vec![]));
    }
}
