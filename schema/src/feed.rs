//! The one subscribe-and-replay loop every subscription uses (`saleUpdates`, `chatMessages`,
//! `timelineUpdates`).
//!
//! A subscription holds no queue. It keeps a cursor (the last event number it delivered), takes
//! its topic's events after the cursor, yields them, and sleeps on its topic's watch
//! (`raft::TopicWatch`): only an event of its own topic wakes it. The events come from the
//! topic's ring of recent events, shared by all of the topic's subscribers on this node, or from
//! redb when the cursor is older than the ring (a replay after `afterIndex`, or a subscriber that
//! fell behind). A subscription with nothing to check in the state (`saleUpdates`) then touches
//! no database at all per event. Apply only publishes to the watched topics, so a slow
//! subscriber never slows apply and never grows memory: it just reads later. If it falls so far behind that its cursor leaves
//! the retained window (`raft::EVENTS_RETAINED_MAX`), it ends with an error telling the
//! client to re-read the state and subscribe afresh. The same code replays after `afterIndex`
//! on a reconnect and follows live events, so there is no gap and no repeat between the two.

use std::time::Duration;

use async_graphql::Error;
use futures::Stream;
use raft::Event;
use raft::{Consistency, ReadView, SmError, Store, TopicWatch, ACCOUNTS_TOPIC};

use crate::error::{api_error, code, store as store_err};
use crate::now_ms;

/// Events a subscription reads from the feed per wake-up; it keeps reading until caught up.
pub const SUBSCRIPTION_READ_BATCH_MAX: usize = 256;

/// What a followed feed yields.
pub(crate) enum FeedItem {
    /// An event of the topic, in feed order.
    Event(Event),
    /// One of the wall-clock times the subscription asked to be woken at has passed; `cursor`
    /// is the last event number delivered so far.
    Tick { cursor: u64 },
}

/// A topic's events after `after` are all still retained only if none of that topic's events
/// after it was pruned (`pruned`: the highest number pruned from the topic, from
/// `ReadView::topic_pruned`). `reread` names the query that gives the client the current state
/// again.
pub(crate) fn check_window(after: u64, pruned: u64, reread: &str) -> Result<(), Error> {
    if pruned > after {
        return Err(api_error(
            code::INVALID_INPUT,
            format!(
                "events after index {after} are no longer retained (pruned up to {pruned}); re-read with `{reread}` first, then subscribe without afterIndex"
            ),
        ));
    }
    Ok(())
}

/// Decides, in the same view as the batch, whether an event of the topic is for this subscriber
/// (`timelineUpdates` keeps the tweets of accounts the viewer follows).
pub(crate) type Keep = Box<dyn Fn(&ReadView, &Event) -> Result<bool, SmError> + Send + Sync>;

/// Read in the same view as every batch, before it is yielded: an error ends the stream (say,
/// the viewer is no longer a participant of the chat).
pub(crate) type Guard = Box<dyn Fn(&ReadView) -> Result<Result<(), Error>, SmError> + Send + Sync>;

/// The signed-in viewer a subscription serves: it ends with UNAUTHENTICATED when the token
/// expires or the account is deleted, as any request with that token would be refused.
pub(crate) struct Session {
    /// The viewer's account.
    pub user_id: u64,
    /// When the token expires, ms since the epoch.
    pub expires_at_ms: i64,
}

/// How to follow one topic.
pub(crate) struct Follow {
    /// The store to read from.
    pub store: Store,
    /// From `Store::watch_topic`, taken *before* the caller's initial read (an event applied
    /// between the two then still wakes the loop, and is in the topic's ring); it names the topic.
    pub watch: TopicWatch,
    /// The last event number the client has; replay starts after it.
    pub after: u64,
    /// The query a client that fell behind the window should re-read.
    pub reread: &'static str,
    /// Checked with every batch; `None` when there is nothing to check.
    pub guard: Option<Guard>,
    /// Wall-clock times (ms since the epoch) at which to yield a [`FeedItem::Tick`]: state that
    /// changes by the clock alone, with no command and so no event (a sale opening at startsAt).
    pub ticks_ms: Vec<i64>,
    /// Drops the events this subscriber should not see; `None` keeps every event. The cursor
    /// still moves past dropped events, so they are read once.
    pub keep: Option<Keep>,
    /// The viewer, for a subscription that needs one.
    pub session: Option<Session>,
}

/// Follows a topic from `after`: replay, then live events, ending only with an error (or when
/// the caller drops it: its socket closed, or the node drains).
pub(crate) fn follow(f: Follow) -> impl Stream<Item = Result<FeedItem, Error>> + Send {
    let Follow { store, mut watch, after, reread, guard, mut ticks_ms, keep, session } = f;
    if let Some(s) = &session {
        // Wake at expiry: nothing else may happen on a quiet topic.
        ticks_ms.push(s.expires_at_ms);
    }
    ticks_ms.sort_unstable();
    let user_id = session.as_ref().map(|s| s.user_id);
    let expires_at_ms = session.as_ref().map(|s| s.expires_at_ms);
    // A signed-in subscription also wakes on account deletions, to end at once if its viewer's
    // account is the one deleted. Taken before the first read, which checks the account.
    let mut deletions = session.as_ref().map(|_| store.watch_topic(ACCOUNTS_TOPIC));
    // Whether a batch from the ring needs a view of the state at all.
    let checks_state = guard.is_some() || keep.is_some() || user_id.is_some();
    async_stream::stream! {
        let mut cursor = after;
        loop {
            if expires_at_ms.is_some_and(|exp| now_ms() >= exp) {
                yield Err(api_error(code::UNAUTHENTICATED, "the token of this subscription expired; sign in again and resubscribe with afterIndex"));
                break;
            }
            // Mark the watches seen before reading, so an event applied during the read wakes us.
            watch.mark_seen();
            if let Some(d) = deletions.as_mut() {
                d.mark_seen();
            }
            let recent = watch.recent_after(cursor, SUBSCRIPTION_READ_BATCH_MAX);
            let batch = if let (Some(recent), false) = (&recent, checks_state) {
                // Nothing to check and the ring has it all: no read at all.
                let events: Vec<Event> = recent.iter().map(|e| Event::clone(e)).collect();
                let read = (events.len(), events.last().map(|e| e.seq));
                Ok((Ok(()), (events, read), 0))
            } else {
                store
                    .read(Consistency::Local, |v| {
                        let allowed = match user_id {
                            Some(id) if v.user(id)?.is_none() => {
                                Ok(Err(api_error(code::UNAUTHENTICATED, "the account of this subscription no longer exists")))
                            }
                            _ => match &guard {
                                Some(guard) => guard(v),
                                None => Ok(Ok(())),
                            },
                        }?;
                        // The ring holds every event of the topic after the cursor: its window
                        // cannot have been pruned (0). Otherwise the feed in redb, and its mark.
                        let (events, pruned) = match &recent {
                            Some(recent) => (recent.iter().map(|e| Event::clone(e)).collect(), 0),
                            None => (v.events_after(watch.topic(), cursor, SUBSCRIPTION_READ_BATCH_MAX)?, v.topic_pruned(watch.topic())?),
                        };
                        let read: (usize, Option<u64>) = (events.len(), events.last().map(|e: &Event| e.seq));
                        let events = match &keep {
                            None => events,
                            Some(keep) => {
                                let mut kept = Vec::with_capacity(events.len());
                                for e in events {
                                    if keep(v, &e)? {
                                        kept.push(e);
                                    }
                                }
                                kept
                            }
                        };
                        Ok((allowed, (events, read), pruned))
                    })
                    .await
                    .map(|r| r.value)
            };
            let (allowed, (events, (read, last)), pruned) = match batch {
                Ok(r) => r,
                Err(e) => { yield Err(store_err(e)); break; }
            };
            if let Err(e) = allowed.and_then(|()| check_window(cursor, pruned, reread)) {
                yield Err(e);
                break;
            }
            // Whether the read was full is judged before filtering, and the cursor moves to the
            // last event read, kept or not.
            let full = read == SUBSCRIPTION_READ_BATCH_MAX;
            for e in events {
                cursor = e.seq;
                yield Ok(FeedItem::Event(e));
            }
            if let Some(l) = last {
                cursor = cursor.max(l);
            }
            if full {
                continue;
            }
            let now = now_ms();
            ticks_ms.retain(|t| *t > now);
            let sleep = ticks_ms.first().map(|t| Duration::from_millis((t - now) as u64 + 1));
            tokio::select! {
                () = watch.changed() => {}
                () = async { match deletions.as_mut() { Some(d) => d.changed().await, None => std::future::pending().await } } => {}
                () = async { match sleep { Some(d) => tokio::time::sleep(d).await, None => std::future::pending().await } } => {
                    yield Ok(FeedItem::Tick { cursor });
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cursor_behind_the_window_is_told_to_re_read() {
        // Phase 1: a cursor at the topic's pruned mark loses nothing; a topic never pruned
        // (mark 0) accepts any cursor.
        assert!(check_window(99, 99, "messages").is_ok());
        assert!(check_window(5, 0, "messages").is_ok());
        // Phase 2: one further back, an event of the topic was pruned: the error says what to
        // re-read.
        let e = check_window(98, 99, "messages").expect_err("behind the window");
        assert!(e.message.contains("re-read with `messages`"), "{}", e.message);
        assert!(e.message.contains("pruned up to 99"), "{}", e.message);
    }
}
