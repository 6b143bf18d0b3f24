//! Tweets and the social graph: follow and unfollow, tweets with replies, the home timeline
//! (fan-out on read), an author's tweets, hashtags, mentions, search, and live
//! `timelineUpdates` from the replicated event feed.
//!
//! Every list is a Relay connection whose cursor is a tweet id (or a user id for follower
//! lists). Tweet ids are global and increasing, so "newest first" is "id below the cursor": a
//! page boundary never skips or repeats a tweet however many are posted between two requests.
//! Reads are LOCAL by default; `consistency: LINEARIZABLE` reflects every acknowledged write.
//! The checks here are a fast path with clear errors; the state machine decides again.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, Error, ErrorExtensions, Object, SimpleObject, Subscription, ID};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use raft::model::tweets::{check_tweet_body, normalize_tag, SearchQuery, Tweet, TweetPage};
use raft::{Command, Consistency as StoreConsistency, ReadView, Response, SmError, Store};
use raft::{EventPayload, TWEETS_TOPIC};

use crate::accounts::UserObject;
use crate::auth::viewer;
use crate::error::{api_error, code, invalid, store};
use crate::feed::{self, FeedItem, Follow};
use crate::paging::{cursor, cursor_of, page_size, parse_id};
use crate::sales::user_object;
use crate::{ms_to_datetime, ApiContext, Consistency};

/// A tweet.
pub struct TweetObject(pub Tweet);

#[Object(name = "Tweet")]
impl TweetObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn body(&self) -> &str {
        &self.0.body
    }
    /// The author; null once their account is deleted.
    async fn author(&self, ctx: &Context<'_>) -> Result<Option<UserObject>, Error> {
        user_object(ctx, self.0.author_id).await
    }
    async fn author_id(&self) -> ID {
        ID(self.0.author_id.to_string())
    }
    /// The tweet this answers; null if it was deleted.
    async fn reply_to(&self, ctx: &Context<'_>) -> Result<Option<TweetObject>, Error> {
        let Some(id) = self.0.reply_to else { return Ok(None) };
        Ok(crate::applied::read(ctx, StoreConsistency::Local, |v| v.tweet(id)).await?.map(TweetObject))
    }
    async fn reply_to_id(&self) -> Option<ID> {
        self.0.reply_to.map(|r| ID(r.to_string()))
    }
    /// Replies that exist now.
    async fn reply_count(&self) -> u64 {
        self.0.reply_count
    }
    /// Lowercased, without '#'.
    async fn hashtags(&self) -> &[String] {
        &self.0.hashtags
    }
    /// Accounts the body mentions (names without an account stay plain text).
    async fn mentions(&self, ctx: &Context<'_>) -> Result<Vec<UserObject>, Error> {
        let ids = self.0.mention_ids.clone();
        let users = crate::applied::read(ctx, StoreConsistency::Local, move |v| {
            let mut out = Vec::new();
            for id in ids {
                out.extend(v.user(id)?);
            }
            Ok(out)
        })
        .await?;
        Ok(users.into_iter().map(|user| UserObject { user, show_private: false }).collect())
    }
    async fn created_at(&self) -> DateTime<Utc> {
        ms_to_datetime(self.0.created_at_ms)
    }
}

/// A tweet delivered by `timelineUpdates`.
#[derive(SimpleObject)]
pub struct TimelineEvent {
    /// Position in the replicated event feed; resume with `afterIndex` set to the last one seen.
    pub index: u64,
    /// The tweet.
    pub tweet: TweetObject,
}

type TweetConnection = Connection<String, TweetObject, EmptyFields, EmptyFields>;
type UserConnection = Connection<String, UserObject, EmptyFields, EmptyFields>;

/// The tweet id an `after` cursor names, as the exclusive upper bound of a newest-first page.
fn before_of(after: Option<String>) -> Result<u64, Error> {
    Ok(cursor_of("after", after)?.unwrap_or(u64::MAX))
}

/// Reads a newest-first page of `n + 1` tweets with `f` and builds the connection.
async fn tweet_page(
    ctx: &Context<'_>,
    consistency: Option<Consistency>,
    first: Option<i32>,
    after: Option<String>,
    f: impl FnOnce(&ReadView, u64, usize) -> Result<TweetPage, SmError>,
) -> Result<TweetConnection, Error> {
    let n = page_size(first)?;
    let has_after = after.is_some();
    let before = before_of(after)?;
    let consistency = consistency.unwrap_or(Consistency::Local).into();
    let page = crate::applied::read(ctx, consistency, |v| f(v, before, n + 1)).await?;
    tweet_connection(page, n, has_after)
}

/// The connection of a page read for `n` tweets (and one more, to know whether more follow).
fn tweet_connection(page: TweetPage, n: usize, has_after: bool) -> Result<TweetConnection, Error> {
    let mut rows = page.tweets;
    if page.capped && rows.is_empty() {
        return Err(api_error(
            code::INVALID_INPUT,
            format!(
                "no match in the {} index rows this request may read below this cursor; the search is too broad, add or change words",
                raft::model::tweets::SEARCH_ROWS_READ_MAX.min(crate::limits::ROWS_PER_REQUEST_MAX)
            ),
        ));
    }
    // A capped page is short, but older matches may follow: the client goes on from its end.
    let has_next = rows.len() > n || page.capped;
    rows.truncate(n);
    let mut conn = Connection::new(has_after, has_next);
    conn.edges.extend(rows.into_iter().map(|t| Edge::new(t.id.to_string(), TweetObject(t))));
    Ok(conn)
}

/// A search: on a blocking thread, in one of the node's heavy-read slots, within what is left
/// of the request's row budget (shared by every search of the request, aliases included).
async fn search_page(
    ctx: &Context<'_>,
    query: SearchQuery,
    consistency: Option<Consistency>,
    first: Option<i32>,
    after: Option<String>,
) -> Result<TweetConnection, Error> {
    let n = page_size(first)?;
    let has_after = after.is_some();
    let before = before_of(after)?;
    let api = ctx.data::<ApiContext>()?;
    let budget = ctx.data_opt::<crate::limits::RowBudget>();
    let rows_max = budget.map_or(crate::limits::ROWS_PER_REQUEST_MAX, |b| b.left());
    if rows_max == 0 {
        return Err(api_error(
            code::INVALID_INPUT,
            format!(
                "this request's searches have read their {} index rows; send the rest in another request",
                crate::limits::ROWS_PER_REQUEST_MAX
            ),
        ));
    }
    let wait = std::time::Duration::from_millis(crate::HEAVY_READ_WAIT_MS);
    let _slot = match tokio::time::timeout(wait, api.heavy_reads.clone().acquire_owned()).await {
        Ok(Ok(permit)) => permit,
        Ok(Err(_)) => return Err(api_error(code::UNAVAILABLE, "shutting down")),
        Err(_) => {
            return Err(api_error(code::UNAVAILABLE, "every search slot of this node stayed busy; retry later")
                .extend_with(|_, e| e.set("retryAfterMs", crate::RETRY_AFTER_BUSY_MS)))
        }
    };
    let consistency = consistency.unwrap_or(Consistency::Local).into();
    let page =
        crate::applied::read_blocking(ctx, consistency, move |v| v.search_within(&query, before, n + 1, rows_max))
            .await?;
    if let Some(b) = budget {
        b.spend(page.rows_read);
    }
    tweet_connection(page, n, has_after)
}

/// Reads a page of user ids in id order with `f` and builds the connection.
async fn user_page(
    ctx: &Context<'_>,
    first: Option<i32>,
    after: Option<String>,
    f: impl FnOnce(&ReadView, u64, usize) -> Result<Vec<u64>, SmError>,
) -> Result<UserConnection, Error> {
    let (n, after) = (page_size(first)?, cursor(after)?);
    let mut users = crate::applied::read(ctx, StoreConsistency::Local, |v| {
        let ids = f(v, after, n + 1)?;
        let mut out = Vec::with_capacity(ids.len());
        for id in ids {
            // A deleted account keeps its edges; show the others and keep the cursor exact.
            if let Some(u) = v.user(id)? {
                out.push(u);
            }
        }
        Ok(out)
    })
    .await?;
    let has_next = users.len() > n;
    users.truncate(n);
    let mut conn = Connection::new(after > 0, has_next);
    conn.edges
        .extend(users.into_iter().map(|user| Edge::new(user.id.to_string(), UserObject { user, show_private: false })));
    Ok(conn)
}

/// Tweet queries.
#[derive(Default)]
pub struct TweetQuery;

#[Object]
impl TweetQuery {
    /// A tweet by id; null if there is none (or it was deleted).
    async fn tweet(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(desc = "Default LOCAL.")] consistency: Option<Consistency>,
    ) -> Result<Option<TweetObject>, Error> {
        let id = parse_id("id", &id)?;
        let c = consistency.unwrap_or(Consistency::Local).into();
        Ok(crate::applied::read(ctx, c, |v| v.tweet(id)).await?.map(TweetObject))
    }

    /// The viewer's home timeline: their own tweets and those of the accounts they follow,
    /// newest first, merged at read time from each author's index.
    async fn timeline(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        #[graphql(desc = "Default LOCAL.")] consistency: Option<Consistency>,
    ) -> Result<TweetConnection, Error> {
        let me = viewer(ctx).await?;
        tweet_page(ctx, consistency, first, after, |v, before, n| v.timeline(me.id, before, n)).await
    }

    /// A user's tweets, newest first.
    async fn user_tweets(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        first: Option<i32>,
        after: Option<String>,
        #[graphql(desc = "Default LOCAL.")] consistency: Option<Consistency>,
    ) -> Result<TweetConnection, Error> {
        let user = parse_id("userId", &user_id)?;
        tweet_page(ctx, consistency, first, after, |v, before, n| v.user_tweets(user, before, n)).await
    }

    /// Tweets with a hashtag (with or without '#', any case), newest first.
    async fn tweets_by_hashtag(
        &self,
        ctx: &Context<'_>,
        tag: String,
        first: Option<i32>,
        after: Option<String>,
        #[graphql(desc = "Default LOCAL.")] consistency: Option<Consistency>,
    ) -> Result<TweetConnection, Error> {
        let tag = normalize_tag(&tag);
        if tag.is_empty() {
            return Err(invalid("tag", "must not be empty"));
        }
        tweet_page(ctx, consistency, first, after, |v, before, n| v.tweets_by_hashtag(&tag, before, n)).await
    }

    /// Tweets that mention the viewer, newest first.
    async fn mentions(
        &self,
        ctx: &Context<'_>,
        first: Option<i32>,
        after: Option<String>,
        #[graphql(desc = "Default LOCAL.")] consistency: Option<Consistency>,
    ) -> Result<TweetConnection, Error> {
        let me = viewer(ctx).await?;
        tweet_page(ctx, consistency, first, after, |v, before, n| v.mentions(me.id, before, n)).await
    }

    /// Tweets containing every word of `query` in any order, ignoring case and accents;
    /// `"quoted words"` must appear together in that order. Newest first, from an inverted
    /// index (no scan of all tweets).
    async fn search_tweets(
        &self,
        ctx: &Context<'_>,
        query: String,
        first: Option<i32>,
        after: Option<String>,
        #[graphql(desc = "Default LOCAL.")] consistency: Option<Consistency>,
    ) -> Result<TweetConnection, Error> {
        let q = SearchQuery::parse(&query).map_err(|m| invalid("query", m))?;
        search_page(ctx, q, consistency, first, after).await
    }

    /// Who follows a user, in user id order.
    async fn followers(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<UserConnection, Error> {
        let user = parse_id("userId", &user_id)?;
        user_page(ctx, first, after, |v, after, n| v.followers(user, after, n)).await
    }

    /// Whom a user follows, in user id order.
    async fn following(
        &self,
        ctx: &Context<'_>,
        user_id: ID,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<UserConnection, Error> {
        let user = parse_id("userId", &user_id)?;
        user_page(ctx, first, after, |v, after, n| v.following(user, after, n)).await
    }
}

/// Tweet mutations.
#[derive(Default)]
pub struct TweetMutation;

async fn propose_follow(ctx: &Context<'_>, cmd: Command) -> Result<Option<UserObject>, Error> {
    let followee = crate::applied::write(ctx, cmd, |r| match r {
        Response::Followed { followee } => Some(followee),
        _ => None,
    })
    .await?;
    user_object(ctx, followee).await
}

#[Object]
impl TweetMutation {
    /// The viewer follows a user (idempotent; following oneself is INVALID_INPUT). Returns the
    /// followed user.
    async fn follow(&self, ctx: &Context<'_>, user_id: ID) -> Result<Option<UserObject>, Error> {
        let me = viewer(ctx).await?;
        let followee = parse_id("userId", &user_id)?;
        if followee == me.id {
            return Err(invalid("userId", "you cannot follow yourself"));
        }
        propose_follow(ctx, Command::Follow { follower: me.id, followee }).await
    }

    /// The viewer stops following a user (idempotent). Returns the user.
    async fn unfollow(&self, ctx: &Context<'_>, user_id: ID) -> Result<Option<UserObject>, Error> {
        let me = viewer(ctx).await?;
        let followee = parse_id("userId", &user_id)?;
        propose_follow(ctx, Command::Unfollow { follower: me.id, followee }).await
    }

    /// Posts a tweet of 1 to 280 characters (grapheme clusters: an emoji with modifiers is
    /// one), optionally as a reply. Hashtags and @mentions are extracted when it is applied.
    async fn post_tweet(&self, ctx: &Context<'_>, body: String, reply_to: Option<ID>) -> Result<TweetObject, Error> {
        let me = viewer(ctx).await?;
        check_tweet_body(&body).map_err(|m| invalid("body", m))?;
        let reply_to = reply_to.map(|r| parse_id("replyTo", &r)).transpose()?;
        crate::applied::write(ctx, Command::PostTweet { author: me.id, body, reply_to }, |r| match r {
            Response::Tweet(t) => Some(TweetObject(t)),
            _ => None,
        })
        .await
    }

    /// Deletes one of the viewer's tweets: it leaves timelines, hashtags, mentions and search.
    async fn delete_tweet(&self, ctx: &Context<'_>, id: ID) -> Result<bool, Error> {
        let me = viewer(ctx).await?;
        let tweet_id = parse_id("id", &id)?;
        crate::applied::write(ctx, Command::DeleteTweet { actor: me.id, tweet_id }, |r| match r {
            Response::TweetDeleted { .. } => Some(true),
            _ => None,
        })
        .await
    }
}

/// Tweet subscriptions.
#[derive(Default)]
pub struct TweetSubscription;

#[Subscription]
impl TweetSubscription {
    /// New tweets from accounts the viewer follows (and their own), live. With `afterIndex` (the
    /// last `index` seen, from any node), first every such tweet after it, then live ones: no
    /// gap, no repeat. Who counts as followed is read with each batch, so a follow takes effect
    /// from the next batch; a tweet deleted before it is delivered is skipped. Resuming from
    /// before the retained window is an error: re-read with `timeline` first.
    async fn timeline_updates(
        &self,
        ctx: &Context<'_>,
        after_index: Option<u64>,
    ) -> Result<impl Stream<Item = Result<TimelineEvent, Error>>, Error> {
        let (me, expires_at_ms) = crate::auth::viewer_session(ctx).await?;
        let handle: Store = ctx.data::<ApiContext>()?.store.clone();
        let watch = handle.watch_topic(TWEETS_TOPIC);
        let (pruned, last) = handle
            .read(StoreConsistency::Linearizable, |v| Ok((v.topic_pruned(TWEETS_TOPIC)?, v.event_window()?.1)))
            .await
            .map_err(store)?
            .value;
        if let Some(a) = after_index {
            feed::check_window(a, pruned, "timeline")?;
        }
        let viewer_id = me.id;
        let follow = feed::follow(Follow {
            store: handle,
            watch,
            after: after_index.unwrap_or(last),
            reread: "timeline",
            guard: None,
            ticks_ms: Vec::new(),
            keep: Some(Box::new(move |v: &ReadView, e: &raft::Event| match &e.payload {
                EventPayload::Tweet(t) => {
                    Ok((t.author_id == viewer_id || v.follows(viewer_id, t.author_id)?) && v.tweet(t.id)?.is_some())
                }
                _ => Ok(false),
            })),
            session: Some(feed::Session { user_id: viewer_id, expires_at_ms }),
        });
        Ok(follow.filter_map(|item| async move {
            match item {
                Err(e) => Some(Err(e)),
                Ok(FeedItem::Event(e)) => match e.payload {
                    EventPayload::Tweet(t) => Some(Ok(TimelineEvent { index: e.seq, tweet: TweetObject(t) })),
                    _ => None,
                },
                Ok(FeedItem::Tick { .. }) => None,
            }
        }))
    }
}
