//! The event feed's public types: what applying commands emits for subscribers.
//!
//! Events are numbered by a replicated sequence assigned at apply time, so every node gives an
//! event the same number and a subscriber can resume on any node after the last number it saw.
//! (One log entry carries a batch of commands and can emit many events; numbering by log index
//! alone would give them one number and make "resume after N" ambiguous.)

use serde::{Deserialize, Serialize};

use crate::model::chats::Message;
use crate::model::sales::SaleUpdate;
use crate::model::tweets::Tweet;

/// Events kept in the feed, across all topics. Older ones are pruned at apply time, identically
/// on every node; a subscriber asking to resume before the window is told to re-read state.
pub const EVENTS_RETAINED_MAX: u64 = 100_000;

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventPayload {
    /// A sale's stock or status changed.
    Sale(SaleUpdate),
    /// A message was sent to a chat.
    ChatMessage(Message),
    /// A tweet was posted (on [`TWEETS_TOPIC`]).
    Tweet(Tweet),
    /// An account was deleted (on [`ACCOUNTS_TOPIC`]). Nobody subscribes to it: it is there to
    /// wake every subscription, so that those of the deleted account end at once.
    AccountDeleted {
        /// The account.
        user_id: u64,
    },
}

/// One event of the feed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    /// Position in the replicated event sequence (from 1), the same on every node.
    pub seq: u64,
    /// What it is about, e.g. `sale/7`.
    pub topic: String,
    /// State machine time of the command that emitted it.
    pub at_ms: i64,
    /// What happened.
    pub payload: EventPayload,
}

/// The topic of a sale's events.
pub fn sale_topic(sale_id: u64) -> String {
    format!("sale/{sale_id}")
}

/// The topic of a chat's events (its messages).
pub fn chat_topic(chat_id: u64) -> String {
    format!("chat/{chat_id}")
}

/// The topic of account deletions.
pub const ACCOUNTS_TOPIC: &str = "accounts";

/// The one topic every new tweet is emitted on. `timelineUpdates` follows it and keeps the
/// tweets of authors the viewer follows, read from the `follows` table in the same view: one
/// cursor and one range read per wake-up, however many accounts the viewer follows.
pub const TWEETS_TOPIC: &str = "tweets";
