//! Chats: chats with participants, and messages, as apply functions over redb tables.
//!
//! Who may read or write a chat is decided here, on the committed order, as is a message's
//! position in its chat: a message's sequence number within its chat is assigned at apply, so it
//! is the same on every node and a cursor built from it is stable. Every table is keyed by the
//! chat first (or by the user, for the index of a user's chats), so a chat's keys stay together
//! and the domain could later be sharded by chat id.

use redb::ReadableTable;

use super::tables::{self, get_json, id_key, key, put_json, Tables};
use super::{ReadView, SmError};
use crate::command::Response;
use crate::events::{chat_topic, EventPayload};
use crate::model::chats::{
    check_body, check_chat_name, check_client_message_id, Chat, IndexPage, Message, MessageRange, CHAT_PARTICIPANTS_MAX,
};
use crate::model::{DomainError, ErrorCode, User};

fn reject(code: ErrorCode, message: impl Into<String>) -> Result<Response, SmError> {
    Ok(Response::Rejected(DomainError::new(code, message)))
}

fn member_key(chat_id: u64, user_id: u64) -> Vec<u8> {
    key(&[&chat_id.to_be_bytes(), &user_id.to_be_bytes()])
}

fn by_user_key(user_id: u64, chat_id: u64) -> Vec<u8> {
    key(&[&user_id.to_be_bytes(), &chat_id.to_be_bytes()])
}

fn message_key(chat_id: u64, seq: u64) -> Vec<u8> {
    key(&[&chat_id.to_be_bytes(), &seq.to_be_bytes()])
}

fn dedupe_key(chat_id: u64, sender_id: u64, client_message_id: &str) -> Vec<u8> {
    key(&[&chat_id.to_be_bytes(), &sender_id.to_be_bytes(), client_message_id.as_bytes()])
}

fn is_member(t: &Tables, chat_id: u64, user_id: u64) -> Result<bool, SmError> {
    Ok(t.chat_members.get(member_key(chat_id, user_id).as_slice())?.is_some())
}

fn user_exists(t: &Tables, user_id: u64) -> Result<bool, SmError> {
    Ok(get_json::<User>(&t.users, &id_key(user_id))?.is_some())
}

fn id_from(k: &[u8], at: usize) -> Result<u64, SmError> {
    k.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).ok_or(SmError::Corrupt("short chat key"))
}

/// Adds the users not yet in the chat; returns how many were added. The caller has checked that
/// they exist and that the chat stays within [`CHAT_PARTICIPANTS_MAX`].
fn add_members(t: &mut Tables, chat: &mut Chat, user_ids: &[u64]) -> Result<u64, SmError> {
    let mut added = 0;
    for &u in user_ids {
        if is_member(t, chat.id, u)? {
            continue;
        }
        t.chat_members.insert(member_key(chat.id, u).as_slice(), [].as_slice())?;
        t.chats_by_user.insert(by_user_key(u, chat.id).as_slice(), [].as_slice())?;
        added += 1;
    }
    chat.participant_count += added;
    Ok(added)
}

/// Users of `ids` not yet in the chat, deduplicated, or the first one that does not exist.
fn newcomers(t: &Tables, chat_id: Option<u64>, ids: &[u64]) -> Result<Result<Vec<u64>, u64>, SmError> {
    let mut out: Vec<u64> = Vec::new();
    for &u in ids {
        if out.contains(&u) {
            continue;
        }
        if !user_exists(t, u)? {
            return Ok(Err(u));
        }
        if let Some(c) = chat_id {
            if is_member(t, c, u)? {
                continue;
            }
        }
        out.push(u);
    }
    Ok(Ok(out))
}

pub(crate) fn create_chat(
    t: &mut Tables,
    now: i64,
    actor: u64,
    name: String,
    participant_ids: Vec<u64>,
) -> Result<Response, SmError> {
    if let Err(m) = check_chat_name(&name) {
        return reject(ErrorCode::InvalidInput, format!("name: {m}"));
    }
    if !user_exists(t, actor)? {
        return reject(ErrorCode::NotFound, format!("no user with id {actor}"));
    }
    let mut ids = vec![actor];
    ids.extend(participant_ids);
    let ids = match newcomers(t, None, &ids)? {
        Ok(ids) => ids,
        Err(missing) => return reject(ErrorCode::NotFound, format!("participantIds: no user with id {missing}")),
    };
    if ids.len() > CHAT_PARTICIPANTS_MAX {
        return reject(
            ErrorCode::InvalidInput,
            format!("participantIds: a chat has at most {CHAT_PARTICIPANTS_MAX} participants, asked for {}", ids.len()),
        );
    }
    let id = t.next_id(tables::COUNTER_NEXT_CHAT_ID)?;
    let mut chat = Chat { id, name, owner_id: actor, created_at_ms: now, message_count: 0, participant_count: 0 };
    add_members(t, &mut chat, &ids)?;
    put_json(&mut t.chats, &id_key(id), &chat)?;
    Ok(Response::Chat(chat))
}

pub(crate) fn add_participants(
    t: &mut Tables,
    actor: u64,
    chat_id: u64,
    user_ids: Vec<u64>,
) -> Result<Response, SmError> {
    let Some(mut chat) = get_json::<Chat>(&t.chats, &id_key(chat_id))? else {
        return reject(ErrorCode::NotFound, format!("no chat with id {chat_id}"));
    };
    // Any participant may invite; outsiders learn nothing beyond FORBIDDEN.
    if !is_member(t, chat_id, actor)? {
        return reject(ErrorCode::Forbidden, format!("only participants of chat {chat_id} may add participants"));
    }
    let ids = match newcomers(t, Some(chat_id), &user_ids)? {
        Ok(ids) => ids,
        Err(missing) => return reject(ErrorCode::NotFound, format!("userIds: no user with id {missing}")),
    };
    if chat.participant_count as usize + ids.len() > CHAT_PARTICIPANTS_MAX {
        return reject(
            ErrorCode::InvalidInput,
            format!(
                "userIds: a chat has at most {CHAT_PARTICIPANTS_MAX} participants; it has {} and {} would join",
                chat.participant_count,
                ids.len()
            ),
        );
    }
    add_members(t, &mut chat, &ids)?;
    put_json(&mut t.chats, &id_key(chat_id), &chat)?;
    Ok(Response::Chat(chat))
}

pub(crate) fn remove_participant(t: &mut Tables, actor: u64, chat_id: u64, user_id: u64) -> Result<Response, SmError> {
    let Some(mut chat) = get_json::<Chat>(&t.chats, &id_key(chat_id))? else {
        return reject(ErrorCode::NotFound, format!("no chat with id {chat_id}"));
    };
    if !is_member(t, chat_id, actor)? {
        return reject(ErrorCode::Forbidden, format!("you are not a participant of chat {chat_id}"));
    }
    if actor != user_id && actor != chat.owner_id {
        return reject(ErrorCode::Forbidden, "only the chat's owner may remove others; anyone may remove themself");
    }
    if !is_member(t, chat_id, user_id)? {
        return reject(ErrorCode::NotFound, format!("user {user_id} is not a participant of chat {chat_id}"));
    }
    leave(t, &mut chat, user_id)?;
    put_json(&mut t.chats, &id_key(chat_id), &chat)?;
    Ok(Response::Chat(chat))
}

/// Takes a participant out of `chat` (the caller stores the chat): its membership rows go and,
/// when it owned the chat, ownership passes on. The chat keeps an owner while it has
/// participants: the lowest remaining user id, a choice every node makes identically and that
/// needs one range read.
fn leave(t: &mut Tables, chat: &mut Chat, user_id: u64) -> Result<(), SmError> {
    t.chat_members.remove(member_key(chat.id, user_id).as_slice())?;
    t.chats_by_user.remove(by_user_key(user_id, chat.id).as_slice())?;
    chat.participant_count = chat.participant_count.saturating_sub(1);
    if user_id == chat.owner_id {
        let from = member_key(chat.id, 0);
        let to = member_key(chat.id, u64::MAX);
        let next = match t.chat_members.range::<&[u8]>(from.as_slice()..=to.as_slice())?.next() {
            Some(item) => Some(id_from(item?.0.value(), 8)?),
            None => None,
        };
        chat.owner_id = next.unwrap_or(0);
    }
    Ok(())
}

/// What deleting an account does to chats, in the deleting command's apply: it leaves every chat
/// it participates in, as `removeParticipant` of itself would (ownership passes on). Its messages
/// stay, as the history the other participants saw; their sender resolves to null.
pub(crate) fn leave_all(t: &mut Tables, user_id: u64) -> Result<(), SmError> {
    let from = by_user_key(user_id, 0);
    let to = by_user_key(user_id, u64::MAX);
    let mut chat_ids = Vec::new();
    for item in t.chats_by_user.range::<&[u8]>(from.as_slice()..=to.as_slice())? {
        chat_ids.push(id_from(item?.0.value(), 8)?);
    }
    for chat_id in chat_ids {
        let Some(mut chat) = get_json::<Chat>(&t.chats, &id_key(chat_id))? else {
            return Err(SmError::Corrupt("chats_by_user names a missing chat"));
        };
        leave(t, &mut chat, user_id)?;
        put_json(&mut t.chats, &id_key(chat_id), &chat)?;
    }
    Ok(())
}

pub(crate) fn send_message(
    t: &mut Tables,
    now: i64,
    sender_id: u64,
    chat_id: u64,
    body: String,
    client_message_id: String,
) -> Result<Response, SmError> {
    // A repeated key returns the first message, even when the two sends raced on two nodes.
    let dk = dedupe_key(chat_id, sender_id, &client_message_id);
    let first = t.message_dedupe.get(dk.as_slice())?.map(|v| v.value().to_vec());
    if let Some(seq) = first {
        let seq = u64::from_be_bytes(seq.try_into().map_err(|_| SmError::Corrupt("message dedupe value"))?);
        return match get_json::<Message>(&t.messages, &message_key(chat_id, seq))? {
            Some(m) => Ok(Response::Message(m)),
            None => Err(SmError::Corrupt("message dedupe key names a missing message")),
        };
    }
    if let Err(m) = check_body(&body) {
        return reject(ErrorCode::InvalidInput, format!("body: {m}"));
    }
    if let Err(m) = check_client_message_id(&client_message_id) {
        return reject(ErrorCode::InvalidInput, format!("clientMessageId: {m}"));
    }
    let Some(mut chat) = get_json::<Chat>(&t.chats, &id_key(chat_id))? else {
        return reject(ErrorCode::NotFound, format!("no chat with id {chat_id}"));
    };
    if !is_member(t, chat_id, sender_id)? {
        return reject(ErrorCode::Forbidden, format!("only participants of chat {chat_id} may send to it"));
    }
    chat.message_count += 1;
    let message = Message { chat_id, seq: chat.message_count, sender_id, body, client_message_id, created_at_ms: now };
    put_json(&mut t.messages, &message_key(chat_id, message.seq), &message)?;
    t.message_dedupe.insert(dk.as_slice(), message.seq.to_be_bytes().as_slice())?;
    put_json(&mut t.chats, &id_key(chat_id), &chat)?;
    t.emit(chat_topic(chat_id), now, EventPayload::ChatMessage(message.clone()));
    Ok(Response::Message(message))
}

impl ReadView {
    /// A chat.
    pub fn chat(&self, id: u64) -> Result<Option<Chat>, SmError> {
        get_json(&self.txn.open_table(tables::CHATS)?, &id_key(id))
    }

    /// Whether `user_id` participates in chat `chat_id`.
    pub fn is_chat_member(&self, chat_id: u64, user_id: u64) -> Result<bool, SmError> {
        Ok(self.txn.open_table(tables::CHAT_MEMBERS)?.get(member_key(chat_id, user_id).as_slice())?.is_some())
    }

    /// Participants of a chat with user id above `after`, in id order, up to `limit`.
    pub fn chat_members(&self, chat_id: u64, after: u64, limit: usize) -> Result<Vec<u64>, SmError> {
        let table = self.txn.open_table(tables::CHAT_MEMBERS)?;
        let from = member_key(chat_id, after.saturating_add(1));
        let to = member_key(chat_id, u64::MAX);
        let mut out = Vec::new();
        for item in table.range::<&[u8]>(from.as_slice()..=to.as_slice())?.take(limit) {
            out.push(id_from(item?.0.value(), 8)?);
        }
        Ok(out)
    }

    /// Chats of a user with chat id above `after`, oldest first, up to `limit`: a range of the
    /// `chats_by_user` index, never a scan of all chats.
    pub fn chats_of(&self, user_id: u64, after: u64, limit: usize) -> Result<IndexPage<Chat>, SmError> {
        let index = self.txn.open_table(tables::CHATS_BY_USER)?;
        let chats = self.txn.open_table(tables::CHATS)?;
        let from = by_user_key(user_id, after.saturating_add(1));
        let to = by_user_key(user_id, u64::MAX);
        let mut page = IndexPage { items: Vec::new(), rows_read: 0 };
        for item in index.range::<&[u8]>(from.as_slice()..=to.as_slice())?.take(limit) {
            page.rows_read += 1;
            let chat_id = id_from(item?.0.value(), 8)?;
            match get_json(&chats, &id_key(chat_id))? {
                Some(c) => page.items.push(c),
                None => return Err(SmError::Corrupt("chats_by_user names a missing chat")),
            }
        }
        Ok(page)
    }

    /// Messages of a chat within `range`, oldest first.
    pub fn messages(&self, chat_id: u64, range: MessageRange) -> Result<Vec<Message>, SmError> {
        let table = self.txn.open_table(tables::MESSAGES)?;
        let from = message_key(chat_id, range.after.saturating_add(1));
        let to = message_key(chat_id, range.before.map_or(u64::MAX, |b| b.saturating_sub(1)));
        if range.before.is_some_and(|b| b <= range.after.saturating_add(1)) {
            return Ok(Vec::new());
        }
        let rows = table.range::<&[u8]>(from.as_slice()..=to.as_slice())?;
        let mut out = Vec::new();
        if range.from_end {
            for item in rows.rev().take(range.limit) {
                out.push(serde_json::from_slice(item?.1.value())?);
            }
            out.reverse();
        } else {
            for item in rows.take(range.limit) {
                out.push(serde_json::from_slice(item?.1.value())?);
            }
        }
        Ok(out)
    }

    /// One message by its position.
    pub fn message(&self, chat_id: u64, seq: u64) -> Result<Option<Message>, SmError> {
        get_json(&self.txn.open_table(tables::MESSAGES)?, &message_key(chat_id, seq))
    }
}
