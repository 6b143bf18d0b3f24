//! Chats: participants, messages as a Relay connection, and live `chatMessages` from the
//! replicated event feed.
//!
//! Only participants may read a chat or its messages (others get FORBIDDEN). The checks here are
//! a fast path with clear errors; the state machine decides again on the committed order.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, Error, Object, SimpleObject, Subscription, ID};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use raft::model::chats::{
    check_body, check_chat_name, check_client_message_id, Chat, Message, MessageRange, CHAT_PARTICIPANTS_MAX,
};
use raft::{chat_topic, EventPayload};
use raft::{Command, Consistency as StoreConsistency, ReadView, Response, Role, SmError, Store, User};

use crate::accounts::UserObject;
use crate::auth::viewer;
use crate::error::{api_error, code, invalid, store};
use crate::feed::{self, FeedItem, Follow};
use crate::paging::{cursor, cursor_of, page_size, page_size_of, parse_id};
use crate::sales::user_object;
use crate::{ms_to_datetime, ApiContext};

/// A chat, as its participants see it.
pub struct ChatObject(pub Chat);

#[Object(name = "Chat")]
impl ChatObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Removes others; passes to the lowest remaining user id when the owner leaves.
    async fn owner(&self, ctx: &Context<'_>) -> Result<Option<UserObject>, Error> {
        user_object(ctx, self.0.owner_id).await
    }
    /// Every participant, in user id order (at most 1000).
    async fn participants(&self, ctx: &Context<'_>) -> Result<Vec<UserObject>, Error> {
        let id = self.0.id;
        let users = crate::applied::read(ctx, StoreConsistency::Local, |v| {
            let mut out = Vec::new();
            for u in v.chat_members(id, 0, CHAT_PARTICIPANTS_MAX)? {
                out.extend(v.user(u)?);
            }
            Ok(out)
        })
        .await?;
        Ok(users.into_iter().map(|user| UserObject { user, show_private: false }).collect())
    }
    async fn participant_count(&self) -> u64 {
        self.0.participant_count
    }
    async fn message_count(&self) -> u64 {
        self.0.message_count
    }
    async fn created_at(&self) -> DateTime<Utc> {
        ms_to_datetime(self.0.created_at_ms)
    }
}

/// One message.
pub struct MessageObject(pub Message);

#[Object(name = "Message")]
impl MessageObject {
    /// `chatId:seq`, stable on every node.
    async fn id(&self) -> ID {
        ID(self.0.id())
    }
    async fn chat_id(&self) -> ID {
        ID(self.0.chat_id.to_string())
    }
    /// Position within the chat, from 1 (also the message's cursor in `messages`).
    async fn seq(&self) -> u64 {
        self.0.seq
    }
    async fn body(&self) -> &str {
        &self.0.body
    }
    /// The sender; null once their account is deleted.
    async fn sender(&self, ctx: &Context<'_>) -> Result<Option<UserObject>, Error> {
        user_object(ctx, self.0.sender_id).await
    }
    async fn sender_id(&self) -> ID {
        ID(self.0.sender_id.to_string())
    }
    async fn client_message_id(&self) -> &str {
        &self.0.client_message_id
    }
    async fn created_at(&self) -> DateTime<Utc> {
        ms_to_datetime(self.0.created_at_ms)
    }
}

/// A message delivered by `chatMessages`.
#[derive(SimpleObject)]
pub struct ChatEvent {
    /// Position in the replicated event feed; resume with `afterIndex` set to the last one seen.
    pub index: u64,
    /// The message.
    pub message: MessageObject,
}

fn forbidden(chat_id: u64) -> Error {
    api_error(code::FORBIDDEN, format!("only participants of chat {chat_id} may read it"))
}

fn ids(field: &str, ids: &[ID]) -> Result<Vec<u64>, Error> {
    if ids.len() > CHAT_PARTICIPANTS_MAX {
        return Err(invalid(field, format!("at most {CHAT_PARTICIPANTS_MAX} users, got {}", ids.len())));
    }
    ids.iter().map(|id| parse_id(field, id)).collect()
}

/// Proposes a command that answers with the chat it changed.
async fn write_chat(ctx: &Context<'_>, cmd: Command) -> Result<ChatObject, Error> {
    crate::applied::write(ctx, cmd, |r| match r {
        Response::Chat(c) => Some(ChatObject(c)),
        _ => None,
    })
    .await
}

/// The chat if `user` participates in it: NOT_FOUND without a chat, FORBIDDEN without a seat.
fn chat_for(v: &ReadView, chat_id: u64, user: u64) -> Result<Result<Chat, Error>, SmError> {
    let Some(chat) = v.chat(chat_id)? else {
        return Ok(Err(api_error(code::NOT_FOUND, format!("no chat with id {chat_id}"))));
    };
    if !v.is_chat_member(chat_id, user)? {
        return Ok(Err(forbidden(chat_id)));
    }
    Ok(Ok(chat))
}

/// Chat queries.
#[derive(Default)]
pub struct ChatQuery;

#[Object]
impl ChatQuery {
    /// A chat the viewer participates in (FORBIDDEN for others; null when there is none).
    async fn chat(&self, ctx: &Context<'_>, id: ID) -> Result<Option<ChatObject>, Error> {
        let me = viewer(ctx).await?;
        let id = parse_id("id", &id)?;
        let read =
            crate::applied::read(ctx, StoreConsistency::Local, |v| Ok((v.chat(id)?, v.is_chat_member(id, me.id)?)))
                .await?;
        match read {
            (None, _) => Ok(None),
            (Some(_), false) => Err(forbidden(id)),
            (Some(c), true) => Ok(Some(ChatObject(c))),
        }
    }

    /// The chats a user participates in, oldest first, read from the `chats_by_user` index (no
    /// scan of all chats). A user's chats are theirs to list: others get FORBIDDEN, admins may.
    async fn chats_of(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, ChatObject, EmptyFields, EmptyFields>, Error> {
        let me = viewer(ctx).await?;
        let user = parse_id("userId", &user_id)?;
        if user != me.id && me.role != Role::Admin {
            return Err(api_error(code::FORBIDDEN, "only the user themself may list their chats"));
        }
        let (n, after) = (page_size(first)?, cursor(after)?);
        let mut rows =
            crate::applied::read(ctx, StoreConsistency::Local, |v| v.chats_of(user, after, n + 1)).await?.items;
        let has_next = rows.len() > n;
        rows.truncate(n);
        let mut conn = Connection::new(after > 0, has_next);
        conn.edges.extend(rows.into_iter().map(|c| Edge::new(c.id.to_string(), ChatObject(c))));
        Ok(conn)
    }

    /// A chat's messages, newest last; cursors are positions in the chat and never change.
    /// `first`/`after` page forward from the oldest, `last`/`before` back from the newest.
    #[allow(clippy::too_many_arguments)]
    async fn messages(
        &self,
        ctx: &Context<'_>,
        chat_id: ID,
        first: Option<i32>,
        after: Option<String>,
        last: Option<i32>,
        before: Option<String>,
    ) -> Result<Connection<String, MessageObject, EmptyFields, EmptyFields>, Error> {
        let me = viewer(ctx).await?;
        let chat_id = parse_id("chatId", &chat_id)?;
        if first.is_some() && last.is_some() {
            return Err(invalid("last", "give first or last, not both"));
        }
        let from_end = last.is_some();
        let n = if from_end { page_size_of("last", last)? } else { page_size(first)? };
        let after = cursor_of("after", after)?;
        let before = cursor_of("before", before)?;
        let range = MessageRange { after: after.unwrap_or(0), before, limit: n + 1, from_end };
        let rows = crate::applied::read(ctx, StoreConsistency::Local, |v| match chat_for(v, chat_id, me.id)? {
            Ok(_) => Ok(Ok(v.messages(chat_id, range)?)),
            Err(e) => Ok(Err(e)),
        })
        .await?;
        let mut rows = rows?;
        let more = rows.len() > n;
        let (has_previous, has_next) = if from_end {
            if more {
                rows.remove(0);
            }
            (more, before.is_some())
        } else {
            rows.truncate(n);
            (after.is_some_and(|a| a > 0), more)
        };
        let mut conn = Connection::new(has_previous, has_next);
        conn.edges.extend(rows.into_iter().map(|m| Edge::new(m.seq.to_string(), MessageObject(m))));
        Ok(conn)
    }
}

/// Chat mutations.
#[derive(Default)]
pub struct ChatMutation;

async fn propose_chat(ctx: &Context<'_>, cmd: Command) -> Result<ChatObject, Error> {
    write_chat(ctx, cmd).await
}

#[Object]
impl ChatMutation {
    /// Creates a chat; the viewer is its owner and a participant.
    async fn create_chat(
        &self,
        ctx: &Context<'_>,
        name: String,
        #[graphql(default)] participant_ids: Vec<ID>,
    ) -> Result<ChatObject, Error> {
        let me = viewer(ctx).await?;
        check_chat_name(&name).map_err(|m| invalid("name", m))?;
        let participant_ids = ids("participantIds", &participant_ids)?;
        propose_chat(ctx, Command::CreateChat { actor: me.id, name, participant_ids }).await
    }

    /// Adds users to a chat; any participant may.
    async fn add_participants(&self, ctx: &Context<'_>, chat_id: ID, user_ids: Vec<ID>) -> Result<ChatObject, Error> {
        let me = viewer(ctx).await?;
        let chat_id = parse_id("chatId", &chat_id)?;
        let user_ids = ids("userIds", &user_ids)?;
        propose_chat(ctx, Command::AddParticipants { actor: me.id, chat_id, user_ids }).await
    }

    /// Removes a participant: the owner may remove anyone, anyone may remove themself.
    async fn remove_participant(&self, ctx: &Context<'_>, chat_id: ID, user_id: ID) -> Result<ChatObject, Error> {
        let me = viewer(ctx).await?;
        let chat_id = parse_id("chatId", &chat_id)?;
        let user_id = parse_id("userId", &user_id)?;
        propose_chat(ctx, Command::RemoveParticipant { actor: me.id, chat_id, user_id }).await
    }

    /// The viewer leaves a chat. True when they were in it.
    async fn leave_chat(&self, ctx: &Context<'_>, chat_id: ID) -> Result<bool, Error> {
        let me = viewer(ctx).await?;
        let chat_id = parse_id("chatId", &chat_id)?;
        propose_chat(ctx, Command::RemoveParticipant { actor: me.id, chat_id, user_id: me.id }).await.map(|_| true)
    }

    /// Sends a message (1 to 4000 characters). The same `clientMessageId` from the same sender
    /// returns the first message, even when the two sends race on two nodes.
    async fn send_message(
        &self,
        ctx: &Context<'_>,
        chat_id: ID,
        body: String,
        client_message_id: String,
    ) -> Result<MessageObject, Error> {
        let me = viewer(ctx).await?;
        let chat_id = parse_id("chatId", &chat_id)?;
        check_body(&body).map_err(|m| invalid("body", m))?;
        check_client_message_id(&client_message_id).map_err(|m| invalid("clientMessageId", m))?;
        let cmd = Command::SendMessage { sender_id: me.id, chat_id, body, client_message_id };
        crate::applied::write(ctx, cmd, |r| match r {
            Response::Message(m) => Some(MessageObject(m)),
            _ => None,
        })
        .await
    }
}

/// Chat subscriptions.
#[derive(Default)]
pub struct ChatSubscription;

#[Subscription]
impl ChatSubscription {
    /// New messages of a chat the viewer participates in. With `afterIndex` (the last `index`
    /// seen, from any node), first every message after it, then live ones: no gap, no repeat.
    /// Without it, only live ones. Resuming from before the retained window
    /// (`EVENTS_RETAINED_MAX` events) is an error: re-read with `messages` first. The stream
    /// ends with FORBIDDEN if the viewer leaves or is removed.
    async fn chat_messages(
        &self,
        ctx: &Context<'_>,
        chat_id: ID,
        after_index: Option<u64>,
    ) -> Result<impl Stream<Item = Result<ChatEvent, Error>>, Error> {
        let (me, expires_at_ms): (User, i64) = crate::auth::viewer_session(ctx).await?;
        let chat_id = parse_id("chatId", &chat_id)?;
        let handle: Store = ctx.data::<ApiContext>()?.store.clone();
        let watch = handle.watch_topic(&chat_topic(chat_id));
        let read = handle
            .read(StoreConsistency::Linearizable, |v| {
                Ok((chat_for(v, chat_id, me.id)?, (v.topic_pruned(&chat_topic(chat_id))?, v.event_window()?.1)))
            })
            .await
            .map_err(store)?;
        let (chat, (pruned, last)) = read.value;
        chat?;
        if let Some(a) = after_index {
            feed::check_window(a, pruned, "messages")?;
        }
        let viewer_id = me.id;
        let follow = feed::follow(Follow {
            store: handle,
            watch,
            after: after_index.unwrap_or(last),
            reread: "messages",
            guard: Some(Box::new(move |v: &ReadView| Ok(chat_for(v, chat_id, viewer_id)?.map(|_| ())))),
            ticks_ms: Vec::new(),
            keep: None,
            session: Some(feed::Session { user_id: viewer_id, expires_at_ms }),
        });
        Ok(follow.filter_map(|item| async move {
            match item {
                Err(e) => Some(Err(e)),
                Ok(FeedItem::Event(e)) => match e.payload {
                    EventPayload::ChatMessage(m) => Some(Ok(ChatEvent { index: e.seq, message: MessageObject(m) })),
                    _ => None,
                },
                Ok(FeedItem::Tick { .. }) => None,
            }
        }))
    }
}
