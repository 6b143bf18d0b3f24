//! The one subscribe-and-replay loop every subscription uses (`saleUpdates`, `chatMessages`).
//!
//! A subscription holds no queue. It keeps a cursor (the last event number it delivered), reads
//! its topic's events after the cursor from redb, yields them, and sleeps on the store's watch of
//! the newest event number. Apply only bumps that watch, so a slow subscriber never slows apply
//! and never grows memory: it just reads later. If it falls so far behind that its cursor leaves
//! the retained window (`raft::EVENTS_RETAINED_MAX`), it ends with an error telling the
//! client to re-read the state and subscribe afresh. The same code replays after `afterIndex`
//! on a reconnect and follows live events, so there is no gap and no repeat between the two.

use std::time::Duration;

use async_graphql::Error;
use futures::Stream;
use raft::Event;
use raft::{Consistency, ReadView, SmError, Store};
use tokio::sync::watch;

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

/// A watch of the newest event number, marked seen. Take it *before* the subscription's initial
/// read: an event applied between the two then still wakes the loop.
pub(crate) fn watch_events(store: &Store) -> watch::Receiver<u64> {
    let mut rx = store.event_seq();
    rx.borrow_and_update();
    rx
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

/// The signed-in viewer a subscription serves: it ends with UNAUTHENTICATED when the token
/// expires or the account is deleted, as any request with that token would be refused.
pub(crate) struct Session {
    /// The viewer's account.
    pub user_id: u64,
    /// When the token expires, ms since the epoch.
    pub expires_at_ms: i64,
}

/// How to follow one topic.
pub(crate) struct Follow<G> {
    /// The store to read from.
    pub store: Store,
    /// From [`watch_events`], taken before the caller's initial read.
    pub seq_rx: watch::Receiver<u64>,
    /// The topic.
    pub topic: String,
    /// The last event number the client has; replay starts after it.
    pub after: u64,
    /// The query a client that fell behind the window should re-read.
    pub reread: &'static str,
    /// Read in the same view as every batch, before it is yielded: an error ends the stream
    /// (say, the viewer is no longer a participant of the chat).
    pub guard: G,
    /// Wall-clock times (ms since the epoch) at which to yield a [`FeedItem::Tick`]: state that
    /// changes by the clock alone, with no command and so no event (a sale opening at startsAt).
    pub ticks_ms: Vec<i64>,
    /// Drops the events this subscriber should not see; `None` keeps every event. The cursor
    /// still moves past dropped events, so they are read once.
    pub keep: Option<Keep>,
    /// The viewer, for a subscription that needs one.
    pub session: Option<Session>,
}

/// Follows a topic from `after`: replay, then live events, ending only with an error or when the
/// store shuts down.
pub(crate) fn follow<G>(f: Follow<G>) -> impl Stream<Item = Result<FeedItem, Error>> + Send
where
    G: Fn(&ReadView) -> Result<Result<(), Error>, SmError> + Send + Sync + 'static,
{
    let Follow { store, mut seq_rx, topic, after, reread, guard, mut ticks_ms, keep, session } = f;
    if let Some(s) = &session {
        // Wake at expiry: nothing else may happen on a quiet topic.
        ticks_ms.push(s.expires_at_ms);
    }
    ticks_ms.sort_unstable();
    let user_id = session.as_ref().map(|s| s.user_id);
    let expires_at_ms = session.as_ref().map(|s| s.expires_at_ms);
    async_stream::stream! {
        let mut cursor = after;
        loop {
            if expires_at_ms.is_some_and(|exp| now_ms() >= exp) {
                yield Err(api_error(code::UNAUTHENTICATED, "the token of this subscription expired; sign in again and resubscribe with afterIndex"));
                break;
            }
            // Mark the watch seen before reading, so an event applied during the read wakes us.
            seq_rx.borrow_and_update();
            let batch = store
                .read(Consistency::Local, |v| {
                    let allowed = match user_id {
                        Some(id) if v.user(id)?.is_none() => {
                            Ok(Err(api_error(code::UNAUTHENTICATED, "the account of this subscription no longer exists")))
                        }
                        _ => guard(v),
                    }?;
                    let events = v.events_after(&topic, cursor, SUBSCRIPTION_READ_BATCH_MAX)?;
                    let read = (events.len(), events.last().map(|e| e.seq));
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
                    Ok((allowed, (events, read), v.topic_pruned(&topic)?))
                })
                .await;
            let (allowed, (events, (read, last)), pruned) = match batch {
                Ok(r) => r.value,
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
                changed = seq_rx.changed() => if changed.is_err() { break },
                _ = async { match sleep { Some(d) => tokio::time::sleep(d).await, None => std::future::pending().await } } => {
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
