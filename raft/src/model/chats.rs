//! Chats: chats and their participants' limits, messages, and the ranges and pages reads
//! return.

use serde::{Deserialize, Serialize};

/// Longest chat name, in characters.
pub const CHAT_NAME_CHARS_MAX: usize = 100;
/// Most participants one chat may have. Bounds the participant list a `chat` query returns and
/// the work of one `addParticipants`.
pub const CHAT_PARTICIPANTS_MAX: usize = 1_000;
/// Longest message body, in characters.
pub const MESSAGE_BODY_CHARS_MAX: usize = 4_000;
/// Longest client message id (the sender's deduplication key), in bytes.
pub const CLIENT_MESSAGE_ID_BYTES_MAX: usize = 128;

/// A chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Chat {
    /// Id, from 1.
    pub id: u64,
    /// Name shown to participants.
    pub name: String,
    /// The participant who may remove others. When the owner leaves, ownership passes to the
    /// lowest user id among the remaining participants (0 once nobody is left).
    pub owner_id: u64,
    /// Creation time (state machine time).
    pub created_at_ms: i64,
    /// Messages sent so far; the newest message's sequence number within the chat.
    pub message_count: u64,
    /// Participants now.
    pub participant_count: u64,
}

/// One message of a chat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Message {
    /// The chat.
    pub chat_id: u64,
    /// Position within the chat, from 1; the message's cursor.
    pub seq: u64,
    /// Who sent it.
    pub sender_id: u64,
    /// The text, 1 to [`MESSAGE_BODY_CHARS_MAX`] characters.
    pub body: String,
    /// The sender's key: a repeat returns this message instead of sending another.
    pub client_message_id: String,
    /// When it was applied (state machine time).
    pub created_at_ms: i64,
}

impl Message {
    /// The message's id, `chatId:seq`: unique, and stable on every node.
    pub fn id(&self) -> String {
        format!("{}:{}", self.chat_id, self.seq)
    }
}

/// Checks a chat name; the schema calls it as a fast path, apply as the rule.
pub fn check_chat_name(name: &str) -> Result<(), String> {
    let n = name.chars().count();
    if n == 0 || n > CHAT_NAME_CHARS_MAX || name.trim().is_empty() {
        return Err(format!("must be 1 to {CHAT_NAME_CHARS_MAX} characters and not blank, got {n}"));
    }
    if name.chars().any(char::is_control) {
        return Err("must not contain control characters".into());
    }
    Ok(())
}

/// Checks a message body; the schema calls it as a fast path, apply as the rule.
pub fn check_body(body: &str) -> Result<(), String> {
    let n = body.chars().count();
    if n == 0 || n > MESSAGE_BODY_CHARS_MAX {
        return Err(format!("must be 1 to {MESSAGE_BODY_CHARS_MAX} characters, got {n}"));
    }
    Ok(())
}

/// Checks a client message id.
pub fn check_client_message_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > CLIENT_MESSAGE_ID_BYTES_MAX {
        return Err(format!("must be 1 to {CLIENT_MESSAGE_ID_BYTES_MAX} bytes, got {}", id.len()));
    }
    Ok(())
}

/// A page read from a secondary index, with the number of index rows visited to produce it, so
/// tests can check that a page costs its own size and not the size of the table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexPage<T> {
    /// The rows, in index order.
    pub items: Vec<T>,
    /// Index rows read.
    pub rows_read: usize,
}

/// Which part of a chat's messages to read, by sequence number (both bounds exclusive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MessageRange {
    /// Only messages after this sequence number (0: from the first).
    pub after: u64,
    /// Only messages before this sequence number (`None`: up to the newest).
    pub before: Option<u64>,
    /// At most this many.
    pub limit: usize,
    /// Take them from the newest end of the range (`last`) rather than the oldest (`first`).
    pub from_end: bool,
}
