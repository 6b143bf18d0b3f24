//! The redb tables of the state machine, and small helpers to read and write JSON values in them.
//!
//! Every state table maps bytes to bytes, so snapshots can copy them without knowing their
//! types, and each domain module owns its key encoding (big-endian ids sort numerically).

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::SmError;

/// A state table: bytes to bytes.
pub(crate) type StateTable = TableDefinition<'static, &'static [u8], &'static [u8]>;

/// Accounts by id (big-endian u64) -> `User`.
pub(crate) const USERS: StateTable = TableDefinition::new("users");
/// Password hashes by user id, kept apart so reading a profile never touches them.
pub(crate) const CREDENTIALS: StateTable = TableDefinition::new("credentials");
/// Canonical username -> `NameRecord` (owned, reserved, cooling down).
pub(crate) const NAMES: StateTable = TableDefinition::new("names");
/// Replicated counters and the state machine clock, by name.
pub(crate) const COUNTERS: StateTable = TableDefinition::new("counters");

/// Products by id -> `Product`.
pub(crate) const PRODUCTS: StateTable = TableDefinition::new("products");
/// Sales by id -> `Sale` (with its live `sold` count).
pub(crate) const SALES: StateTable = TableDefinition::new("sales");
/// Orders by id -> `Order`.
pub(crate) const ORDERS: StateTable = TableDefinition::new("orders");
/// (sale id, order id) -> empty: a sale's orders in order, without a scan.
pub(crate) const ORDERS_BY_SALE: StateTable = TableDefinition::new("orders_by_sale");
/// (user id, order id) -> empty: a user's orders in order, without a scan.
pub(crate) const ORDERS_BY_USER: StateTable = TableDefinition::new("orders_by_user");
/// (sale id, user id) -> `BuyerTotal`: what a buyer holds of a sale, for the per-user limit.
pub(crate) const SALE_BUYERS: StateTable = TableDefinition::new("sale_buyers");
/// (sale id, u64::MAX - quantity, first purchase ms, first order id, user id) -> empty: the leaderboard, read
/// in key order (most units first, then the earlier first purchase).
pub(crate) const LEADERBOARD: StateTable = TableDefinition::new("leaderboard");
/// (user id, idempotency key) -> order id: a repeated purchase returns the first order.
pub(crate) const IDEMPOTENCY: StateTable = TableDefinition::new("idempotency");
/// Chats by id -> `Chat` (with its message count, the newest message's sequence number).
pub(crate) const CHATS: StateTable = TableDefinition::new("chats");
/// (chat id, user id) -> empty: a chat's participants, and the membership check.
pub(crate) const CHAT_MEMBERS: StateTable = TableDefinition::new("chat_members");
/// (user id, chat id) -> empty: a user's chats in order, without a scan (`chatsOf`).
pub(crate) const CHATS_BY_USER: StateTable = TableDefinition::new("chats_by_user");
/// (chat id, message seq within the chat) -> `Message`: a chat's messages in order.
pub(crate) const MESSAGES: StateTable = TableDefinition::new("messages");
/// (chat id, sender id, client message id) -> message seq: a repeated send returns the first.
pub(crate) const MESSAGE_DEDUPE: StateTable = TableDefinition::new("message_dedupe");
/// Tweets by id -> `Tweet` (a deleted tweet's row is removed with every index entry).
pub(crate) const TWEETS: StateTable = TableDefinition::new("tweets");
/// (author id, tweet id) -> empty: an author's tweets, read newest first by a reverse range.
pub(crate) const TWEETS_BY_AUTHOR: StateTable = TableDefinition::new("tweets_by_author");
/// (follower id, followee id) -> empty: whom a user follows (the timeline's merge inputs).
pub(crate) const FOLLOWS: StateTable = TableDefinition::new("follows");
/// (followee id, follower id) -> empty: a user's followers.
pub(crate) const FOLLOWERS: StateTable = TableDefinition::new("followers");
/// User id -> (following, followers) as two big-endian u64: counts without a range count.
pub(crate) const FOLLOW_COUNTS: StateTable = TableDefinition::new("follow_counts");
/// (lowercased tag, 0, tweet id) -> empty: tweets by hashtag.
pub(crate) const HASHTAGS: StateTable = TableDefinition::new("hashtags");
/// (mentioned user id, tweet id) -> empty: tweets that mention an account.
pub(crate) const MENTIONS: StateTable = TableDefinition::new("mentions");
/// (folded word, 0, tweet id) -> empty: the inverted index `searchTweets` reads.
pub(crate) const SEARCH: StateTable = TableDefinition::new("search");
/// (topic, 0, seq) -> `Event`: the event feed, read by topic from a sequence number.
pub(crate) const EVENTS: StateTable = TableDefinition::new("events");
/// seq -> topic: the feed in global order, so pruning the oldest events needs no scan.
pub(crate) const EVENT_LOG: StateTable = TableDefinition::new("event_log");

/// (expiry ms as big-endian u64, canonical name) -> empty: reservations and cooldowns by when
/// they end, so apply collects the expired ones without a scan.
pub(crate) const NAME_EXPIRY: StateTable = TableDefinition::new("name_expiry");

/// Every table that is part of the replicated state, in snapshot order. A table missing here
/// would silently diverge on a node that catches up from a snapshot.
pub(crate) const STATE_TABLES: &[StateTable] = &[
    USERS,
    CREDENTIALS,
    NAMES,
    COUNTERS,
    PRODUCTS,
    SALES,
    ORDERS,
    ORDERS_BY_SALE,
    ORDERS_BY_USER,
    SALE_BUYERS,
    LEADERBOARD,
    IDEMPOTENCY,
    CHATS,
    CHAT_MEMBERS,
    CHATS_BY_USER,
    MESSAGES,
    MESSAGE_DEDUPE,
    TWEETS,
    TWEETS_BY_AUTHOR,
    FOLLOWS,
    FOLLOWERS,
    FOLLOW_COUNTS,
    HASHTAGS,
    MENTIONS,
    SEARCH,
    EVENTS,
    EVENT_LOG,
    NAME_EXPIRY,
];

/// Bookkeeping that is not state: the last applied log id and the membership. Written in the
/// same transaction as the state it describes.
pub(crate) const SM_META: TableDefinition<&str, &[u8]> = TableDefinition::new("sm_meta");

pub(crate) const META_LAST_APPLIED: &str = "last_applied";
pub(crate) const META_MEMBERSHIP: &str = "membership";

pub(crate) const COUNTER_CLOCK: &[u8] = b"clock_ms";
pub(crate) const COUNTER_NEXT_USER_ID: &[u8] = b"next_user_id";
pub(crate) const COUNTER_NEXT_PRODUCT_ID: &[u8] = b"next_product_id";
pub(crate) const COUNTER_NEXT_SALE_ID: &[u8] = b"next_sale_id";
pub(crate) const COUNTER_NEXT_ORDER_ID: &[u8] = b"next_order_id";
pub(crate) const COUNTER_NEXT_CHAT_ID: &[u8] = b"next_chat_id";
pub(crate) const COUNTER_NEXT_TWEET_ID: &[u8] = b"next_tweet_id";
pub(crate) const COUNTER_NEXT_EVENT_SEQ: &[u8] = b"next_event_seq";

/// Encodes an id as a key that sorts numerically.
pub(crate) fn id_key(id: u64) -> [u8; 8] {
    id.to_be_bytes()
}

/// Reads a JSON value at `key`.
pub(crate) fn get_json<T: DeserializeOwned>(
    table: &impl ReadableTable<&'static [u8], &'static [u8]>,
    key: &[u8],
) -> Result<Option<T>, SmError> {
    match table.get(key)? {
        Some(v) => Ok(Some(serde_json::from_slice(v.value())?)),
        None => Ok(None),
    }
}

/// Writes a JSON value at `key`.
pub(crate) fn put_json<T: Serialize>(
    table: &mut Table<&'static [u8], &'static [u8]>,
    key: &[u8],
    value: &T,
) -> Result<(), SmError> {
    let bytes = serde_json::to_vec(value)?;
    table.insert(key, bytes.as_slice())?;
    Ok(())
}

/// Concatenates key parts (ids big-endian, strings as bytes) into one key.
pub(crate) fn key(parts: &[&[u8]]) -> Vec<u8> {
    let mut k = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
    for p in parts {
        k.extend_from_slice(p);
    }
    k
}

type BytesTable<'txn> = Table<'txn, &'static [u8], &'static [u8]>;

/// The state tables opened once for a whole batch of entries, and the events the batch emits.
pub(crate) struct Tables<'txn> {
    pub users: BytesTable<'txn>,
    pub credentials: BytesTable<'txn>,
    pub names: BytesTable<'txn>,
    pub counters: BytesTable<'txn>,
    pub products: BytesTable<'txn>,
    pub sales: BytesTable<'txn>,
    pub orders: BytesTable<'txn>,
    pub orders_by_sale: BytesTable<'txn>,
    pub orders_by_user: BytesTable<'txn>,
    pub sale_buyers: BytesTable<'txn>,
    pub leaderboard: BytesTable<'txn>,
    pub idempotency: BytesTable<'txn>,
    pub chats: BytesTable<'txn>,
    pub chat_members: BytesTable<'txn>,
    pub chats_by_user: BytesTable<'txn>,
    pub messages: BytesTable<'txn>,
    pub message_dedupe: BytesTable<'txn>,
    pub tweets: BytesTable<'txn>,
    pub tweets_by_author: BytesTable<'txn>,
    pub follows: BytesTable<'txn>,
    pub followers: BytesTable<'txn>,
    pub follow_counts: BytesTable<'txn>,
    pub hashtags: BytesTable<'txn>,
    pub mentions: BytesTable<'txn>,
    pub search: BytesTable<'txn>,
    pub events: BytesTable<'txn>,
    pub event_log: BytesTable<'txn>,
    pub name_expiry: BytesTable<'txn>,
    /// Events emitted by the commands applied so far in this batch, numbered at the end.
    pub pending_events: Vec<(String, i64, crate::events::EventPayload)>,
}

impl<'txn> Tables<'txn> {
    pub(crate) fn open(txn: &'txn WriteTransaction) -> Result<Self, SmError> {
        Ok(Tables {
            users: txn.open_table(USERS)?,
            credentials: txn.open_table(CREDENTIALS)?,
            names: txn.open_table(NAMES)?,
            counters: txn.open_table(COUNTERS)?,
            products: txn.open_table(PRODUCTS)?,
            sales: txn.open_table(SALES)?,
            orders: txn.open_table(ORDERS)?,
            orders_by_sale: txn.open_table(ORDERS_BY_SALE)?,
            orders_by_user: txn.open_table(ORDERS_BY_USER)?,
            sale_buyers: txn.open_table(SALE_BUYERS)?,
            leaderboard: txn.open_table(LEADERBOARD)?,
            idempotency: txn.open_table(IDEMPOTENCY)?,
            chats: txn.open_table(CHATS)?,
            chat_members: txn.open_table(CHAT_MEMBERS)?,
            chats_by_user: txn.open_table(CHATS_BY_USER)?,
            messages: txn.open_table(MESSAGES)?,
            message_dedupe: txn.open_table(MESSAGE_DEDUPE)?,
            tweets: txn.open_table(TWEETS)?,
            tweets_by_author: txn.open_table(TWEETS_BY_AUTHOR)?,
            follows: txn.open_table(FOLLOWS)?,
            followers: txn.open_table(FOLLOWERS)?,
            follow_counts: txn.open_table(FOLLOW_COUNTS)?,
            hashtags: txn.open_table(HASHTAGS)?,
            mentions: txn.open_table(MENTIONS)?,
            search: txn.open_table(SEARCH)?,
            events: txn.open_table(EVENTS)?,
            event_log: txn.open_table(EVENT_LOG)?,
            name_expiry: txn.open_table(NAME_EXPIRY)?,
            pending_events: Vec::new(),
        })
    }

    /// Takes the next value of a u64 counter that starts at 1.
    pub(crate) fn next_id(&mut self, name: &[u8]) -> Result<u64, SmError> {
        let id = self.counter(name)?.max(1);
        self.set_counter(name, id + 1)?;
        Ok(id)
    }

    /// Emits an event on `topic`; it is numbered and stored when the batch ends.
    pub(crate) fn emit(&mut self, topic: String, at_ms: i64, payload: crate::events::EventPayload) {
        self.pending_events.push((topic, at_ms, payload));
    }

    /// Reads a u64 counter (0 when never set).
    pub(crate) fn counter(&self, name: &[u8]) -> Result<u64, SmError> {
        Ok(match self.counters.get(name)? {
            Some(v) => {
                u64::from_be_bytes(v.value().try_into().map_err(|_| SmError::Corrupt("counter is not 8 bytes"))?)
            }
            None => 0,
        })
    }

    /// Writes a u64 counter.
    pub(crate) fn set_counter(&mut self, name: &[u8], value: u64) -> Result<(), SmError> {
        self.counters.insert(name, value.to_be_bytes().as_slice())?;
        Ok(())
    }
}
