//! Tweets, follows, timelines, hashtags, mentions and search, as apply functions over redb
//! tables and reads on a [`ReadView`].
//!
//! Tweet ids come from one replicated counter, so they are global and increasing: "newest first"
//! is "descending id" everywhere, and a cursor that is a tweet id stays exact however many tweets
//! arrive between two page requests. Every secondary index is a set of keys ending in the tweet
//! id (per author, per hashtag, per mentioned user, per search word), read newest first with a
//! reverse range; the home timeline merges the per-author ranges of the accounts the viewer
//! follows (fan-out on read). Hashtags, mentions and search words are extracted here, at apply,
//! by pure functions of the body and the state, so every node builds the same indexes; deleting
//! a tweet extracts them again from the stored body and removes every entry.

use std::cmp::Reverse;
use std::collections::{BTreeSet, BinaryHeap};

use redb::{ReadableTable, ReadableTableMetadata};

use super::tables::{self, get_json, id_key, key, put_json, Tables};
use super::{ReadView, SmError};
use crate::command::Response;
use crate::events::{EventPayload, TWEETS_TOPIC};
use crate::model::names;
use crate::model::tweets::{
    check_tweet_body, has_phrase, hashtags, mention_names, words, SearchQuery, Tweet, TweetPage, FOLLOWING_MAX,
    SEARCH_ROWS_READ_MAX,
};
use crate::model::{DomainError, ErrorCode, NameRecord, User};

fn reject(code: ErrorCode, message: impl Into<String>) -> Result<Response, SmError> {
    Ok(Response::Rejected(DomainError::new(code, message)))
}

fn pair_key(a: u64, b: u64) -> Vec<u8> {
    key(&[&a.to_be_bytes(), &b.to_be_bytes()])
}

fn token_key(token: &str, tweet_id: u64) -> Vec<u8> {
    key(&[token.as_bytes(), &[0], &tweet_id.to_be_bytes()])
}

fn tail_id(k: &[u8]) -> Result<u64, SmError> {
    k.len()
        .checked_sub(8)
        .and_then(|at| k[at..].try_into().ok())
        .map(u64::from_be_bytes)
        .ok_or(SmError::Corrupt("short tweet index key"))
}

fn user_exists(t: &Tables, user_id: u64) -> Result<bool, SmError> {
    Ok(get_json::<User>(&t.users, &id_key(user_id))?.is_some())
}

/// (following, followers) of a user.
fn counts_in(table: &impl ReadableTable<&'static [u8], &'static [u8]>, user: u64) -> Result<(u64, u64), SmError> {
    Ok(match table.get(id_key(user).as_slice())? {
        Some(v) => {
            let b = v.value();
            if b.len() != 16 {
                return Err(SmError::Corrupt("follow counts are not 16 bytes"));
            }
            let half = |r: std::ops::Range<usize>| u64::from_be_bytes(b[r].try_into().unwrap_or([0; 8]));
            (half(0..8), half(8..16))
        }
        None => (0, 0),
    })
}

/// Adds `d_following` and `d_followers` to a user's counts.
fn bump_counts(t: &mut Tables, user: u64, d_following: i64, d_followers: i64) -> Result<(), SmError> {
    let (following, followers) = counts_in(&t.follow_counts, user)?;
    let following = following.checked_add_signed(d_following).ok_or(SmError::Corrupt("following count underflow"))?;
    let followers = followers.checked_add_signed(d_followers).ok_or(SmError::Corrupt("follower count underflow"))?;
    let bytes = key(&[&following.to_be_bytes(), &followers.to_be_bytes()]);
    t.follow_counts.insert(id_key(user).as_slice(), bytes.as_slice())?;
    Ok(())
}

pub(crate) fn follow(t: &mut Tables, follower: u64, followee: u64) -> Result<Response, SmError> {
    if follower == followee {
        return reject(ErrorCode::InvalidInput, "userId: you cannot follow yourself");
    }
    if !user_exists(t, followee)? {
        return reject(ErrorCode::NotFound, format!("no user with id {followee}"));
    }
    if t.follows.get(pair_key(follower, followee).as_slice())?.is_some() {
        return Ok(Response::Followed { followee });
    }
    let (following, _) = counts_in(&t.follow_counts, follower)?;
    if following >= FOLLOWING_MAX {
        return reject(
            ErrorCode::InvalidInput,
            format!("userId: a user follows at most {FOLLOWING_MAX} accounts, you follow {following}"),
        );
    }
    t.follows.insert(pair_key(follower, followee).as_slice(), [].as_slice())?;
    t.followers.insert(pair_key(followee, follower).as_slice(), [].as_slice())?;
    bump_counts(t, follower, 1, 0)?;
    bump_counts(t, followee, 0, 1)?;
    Ok(Response::Followed { followee })
}

pub(crate) fn unfollow(t: &mut Tables, follower: u64, followee: u64) -> Result<Response, SmError> {
    if t.follows.remove(pair_key(follower, followee).as_slice())?.is_some() {
        t.followers.remove(pair_key(followee, follower).as_slice())?;
        bump_counts(t, follower, -1, 0)?;
        bump_counts(t, followee, 0, -1)?;
    }
    Ok(Response::Followed { followee })
}

/// The account a mentioned name belongs to, by the same canonical form usernames are owned by.
fn mentioned_user(t: &Tables, name: &str) -> Result<Option<u64>, SmError> {
    Ok(match get_json::<NameRecord>(&t.names, names::canonical(name).as_bytes())? {
        Some(NameRecord::Owned { user_id }) => Some(user_id),
        _ => None,
    })
}

pub(crate) fn post_tweet(
    t: &mut Tables,
    now: i64,
    author: u64,
    body: String,
    reply_to: Option<u64>,
) -> Result<Response, SmError> {
    if let Err(m) = check_tweet_body(&body) {
        return reject(ErrorCode::InvalidInput, format!("body: {m}"));
    }
    if !user_exists(t, author)? {
        return reject(ErrorCode::NotFound, format!("no user with id {author}"));
    }
    let mut parent = None;
    if let Some(p) = reply_to {
        match get_json::<Tweet>(&t.tweets, &id_key(p))? {
            Some(tw) => parent = Some(tw),
            None => return reject(ErrorCode::NotFound, format!("replyTo: no tweet with id {p}")),
        }
    }
    let id = t.next_id(tables::COUNTER_NEXT_TWEET_ID)?;
    let mut mention_ids = Vec::new();
    for name in mention_names(&body) {
        if let Some(u) = mentioned_user(t, &name)? {
            if !mention_ids.contains(&u) {
                mention_ids.push(u);
            }
        }
    }
    let tweet = Tweet {
        id,
        author_id: author,
        hashtags: hashtags(&body),
        mention_ids,
        body,
        reply_to,
        created_at_ms: now,
        reply_count: 0,
    };
    put_json(&mut t.tweets, &id_key(id), &tweet)?;
    t.tweets_by_author.insert(pair_key(author, id).as_slice(), [].as_slice())?;
    for tag in &tweet.hashtags {
        t.hashtags.insert(token_key(tag, id).as_slice(), [].as_slice())?;
    }
    for u in &tweet.mention_ids {
        t.mentions.insert(pair_key(*u, id).as_slice(), [].as_slice())?;
    }
    for w in words(&tweet.body).into_iter().collect::<BTreeSet<_>>() {
        t.search.insert(token_key(&w, id).as_slice(), [].as_slice())?;
    }
    if let Some(mut p) = parent {
        p.reply_count += 1;
        put_json(&mut t.tweets, &id_key(p.id), &p)?;
    }
    t.emit(TWEETS_TOPIC.to_string(), now, EventPayload::Tweet(tweet.clone()));
    Ok(Response::Tweet(tweet))
}

pub(crate) fn delete_tweet(t: &mut Tables, actor: u64, tweet_id: u64) -> Result<Response, SmError> {
    let Some(tweet) = get_json::<Tweet>(&t.tweets, &id_key(tweet_id))? else {
        return reject(ErrorCode::NotFound, format!("no tweet with id {tweet_id}"));
    };
    if tweet.author_id != actor {
        return reject(ErrorCode::Forbidden, format!("only the author may delete tweet {tweet_id}"));
    }
    remove_tweet(t, &tweet)?;
    Ok(Response::TweetDeleted { tweet_id: tweet.id })
}

/// Removes a tweet's row and every index entry that names it (re-extracted from the stored
/// body), and takes it off its parent's reply count.
fn remove_tweet(t: &mut Tables, tweet: &Tweet) -> Result<(), SmError> {
    let id = tweet.id;
    t.tweets.remove(id_key(id).as_slice())?;
    t.tweets_by_author.remove(pair_key(tweet.author_id, id).as_slice())?;
    for tag in &tweet.hashtags {
        t.hashtags.remove(token_key(tag, id).as_slice())?;
    }
    for u in &tweet.mention_ids {
        t.mentions.remove(pair_key(*u, id).as_slice())?;
    }
    for w in words(&tweet.body).into_iter().collect::<BTreeSet<_>>() {
        t.search.remove(token_key(&w, id).as_slice())?;
    }
    if let Some(p) = tweet.reply_to {
        if let Some(mut parent) = get_json::<Tweet>(&t.tweets, &id_key(p))? {
            parent.reply_count = parent.reply_count.saturating_sub(1);
            put_json(&mut t.tweets, &id_key(p), &parent)?;
        }
    }
    Ok(())
}

/// The ids `x` of every key `(user, x)` of a pair table, in order.
fn pair_tails(table: &impl ReadableTable<&'static [u8], &'static [u8]>, user: u64) -> Result<Vec<u64>, SmError> {
    let from = pair_key(user, 0);
    let to = pair_key(user, u64::MAX);
    let mut out = Vec::new();
    for item in table.range::<&[u8]>(from.as_slice()..=to.as_slice())? {
        out.push(tail_id(item?.0.value())?);
    }
    Ok(out)
}

/// What deleting an account does to the social side, in the deleting command's apply: its
/// follows go both ways, with the other side's counts moved by one each; its tweets go with
/// every index entry (so they leave every timeline, hashtag, mention list and search, and their
/// parents' reply counts drop); the mention index rows that name it go. Other people's tweets
/// that mention it keep their text; their `mentions` no longer resolve it. The work is one range
/// read and the removals per edge and per tweet, all in the one transaction of the entry.
pub(crate) fn forget_account(t: &mut Tables, user: u64) -> Result<(), SmError> {
    for followee in pair_tails(&t.follows, user)? {
        t.follows.remove(pair_key(user, followee).as_slice())?;
        t.followers.remove(pair_key(followee, user).as_slice())?;
        bump_counts(t, followee, 0, -1)?;
    }
    for follower in pair_tails(&t.followers, user)? {
        t.followers.remove(pair_key(user, follower).as_slice())?;
        t.follows.remove(pair_key(follower, user).as_slice())?;
        bump_counts(t, follower, -1, 0)?;
    }
    t.follow_counts.remove(id_key(user).as_slice())?;
    for id in pair_tails(&t.tweets_by_author, user)? {
        match get_json::<Tweet>(&t.tweets, &id_key(id))? {
            Some(tweet) => remove_tweet(t, &tweet)?,
            None => return Err(SmError::Corrupt("tweets_by_author names a missing tweet")),
        }
    }
    for id in pair_tails(&t.mentions, user)? {
        t.mentions.remove(pair_key(user, id).as_slice())?;
    }
    Ok(())
}

type Index = redb::ReadOnlyTable<&'static [u8], &'static [u8]>;

/// Ids of keys `prefix ++ id` with `id < before`, newest first, at most `limit`.
fn ids_before(index: &Index, prefix: &[u8], before: u64, limit: usize) -> Result<Vec<u64>, SmError> {
    if before == 0 {
        return Ok(Vec::new());
    }
    let from = key(&[prefix, &0u64.to_be_bytes()]);
    let to = key(&[prefix, &(before - 1).to_be_bytes()]);
    let mut out = Vec::new();
    for item in index.range::<&[u8]>(from.as_slice()..=to.as_slice())?.rev().take(limit) {
        out.push(tail_id(item?.0.value())?);
    }
    Ok(out)
}

/// The largest id `<= at` under `prefix`, if any.
fn id_at_or_below(index: &Index, prefix: &[u8], at: u64) -> Result<Option<u64>, SmError> {
    let from = key(&[prefix, &0u64.to_be_bytes()]);
    let to = key(&[prefix, &at.to_be_bytes()]);
    match index.range::<&[u8]>(from.as_slice()..=to.as_slice())?.next_back() {
        Some(item) => Ok(Some(tail_id(item?.0.value())?)),
        None => Ok(None),
    }
}

impl ReadView {
    /// A tweet by id (None once deleted).
    pub fn tweet(&self, id: u64) -> Result<Option<Tweet>, SmError> {
        get_json(&self.txn.open_table(tables::TWEETS)?, &id_key(id))
    }

    fn tweets_of(&self, ids: Vec<u64>, rows_read: usize) -> Result<TweetPage, SmError> {
        let table = self.txn.open_table(tables::TWEETS)?;
        let mut page = TweetPage { tweets: Vec::with_capacity(ids.len()), rows_read, capped: false };
        for id in ids {
            match get_json(&table, &id_key(id))? {
                Some(t) => page.tweets.push(t),
                None => return Err(SmError::Corrupt("a tweet index names a missing tweet")),
            }
        }
        Ok(page)
    }

    fn index_page(
        &self,
        def: tables::StateTable,
        prefix: &[u8],
        before: u64,
        limit: usize,
    ) -> Result<TweetPage, SmError> {
        let ids = ids_before(&self.txn.open_table(def)?, prefix, before, limit)?;
        let n = ids.len();
        self.tweets_of(ids, n)
    }

    /// (following, followers) of a user, without counting rows.
    pub fn follow_counts(&self, user: u64) -> Result<(u64, u64), SmError> {
        counts_in(&self.txn.open_table(tables::FOLLOW_COUNTS)?, user)
    }

    /// Whether `follower` follows `followee`.
    pub fn follows(&self, follower: u64, followee: u64) -> Result<bool, SmError> {
        Ok(self.txn.open_table(tables::FOLLOWS)?.get(pair_key(follower, followee).as_slice())?.is_some())
    }

    fn pair_page(&self, def: tables::StateTable, user: u64, after: u64, limit: usize) -> Result<Vec<u64>, SmError> {
        let table = self.txn.open_table(def)?;
        let from = pair_key(user, after.saturating_add(1));
        let to = pair_key(user, u64::MAX);
        let mut out = Vec::new();
        for item in table.range::<&[u8]>(from.as_slice()..=to.as_slice())?.take(limit) {
            out.push(tail_id(item?.0.value())?);
        }
        Ok(out)
    }

    /// Ids of the accounts `user` follows above `after`, in id order, up to `limit`.
    pub fn following(&self, user: u64, after: u64, limit: usize) -> Result<Vec<u64>, SmError> {
        self.pair_page(tables::FOLLOWS, user, after, limit)
    }

    /// Ids of the followers of `user` above `after`, in id order, up to `limit`.
    pub fn followers(&self, user: u64, after: u64, limit: usize) -> Result<Vec<u64>, SmError> {
        self.pair_page(tables::FOLLOWERS, user, after, limit)
    }

    /// An author's tweets with id below `before`, newest first.
    pub fn user_tweets(&self, author: u64, before: u64, limit: usize) -> Result<TweetPage, SmError> {
        self.index_page(tables::TWEETS_BY_AUTHOR, &author.to_be_bytes(), before, limit)
    }

    /// Tweets mentioning `user` with id below `before`, newest first.
    pub fn mentions(&self, user: u64, before: u64, limit: usize) -> Result<TweetPage, SmError> {
        self.index_page(tables::MENTIONS, &user.to_be_bytes(), before, limit)
    }

    /// Tweets tagged `tag` (already normalized) with id below `before`, newest first.
    pub fn tweets_by_hashtag(&self, tag: &str, before: u64, limit: usize) -> Result<TweetPage, SmError> {
        self.index_page(tables::HASHTAGS, &key(&[tag.as_bytes(), &[0]]), before, limit)
    }

    /// The viewer's home timeline: tweets of the accounts `viewer` follows and their own, with id
    /// below `before`, newest first. A k-way merge: one reverse range per author, seeked once,
    /// and a heap of their heads, so a page costs one seek per author plus `limit` heap steps.
    pub fn timeline(&self, viewer: u64, before: u64, limit: usize) -> Result<TweetPage, SmError> {
        if before == 0 || limit == 0 {
            return Ok(TweetPage::default());
        }
        let mut authors = self.following(viewer, 0, FOLLOWING_MAX as usize)?;
        authors.push(viewer);
        let index = self.txn.open_table(tables::TWEETS_BY_AUTHOR)?;
        let mut ranges = Vec::with_capacity(authors.len());
        let mut heap = BinaryHeap::with_capacity(authors.len());
        let mut rows_read = 0;
        for a in authors {
            let from = pair_key(a, 0);
            let to = pair_key(a, before - 1);
            let mut r = index.range::<&[u8]>(from.as_slice()..=to.as_slice())?.rev();
            if let Some(item) = r.next() {
                rows_read += 1;
                heap.push((tail_id(item?.0.value())?, Reverse(ranges.len())));
                ranges.push(r);
            }
        }
        let mut ids = Vec::with_capacity(limit);
        while ids.len() < limit {
            let Some((id, Reverse(i))) = heap.pop() else { break };
            ids.push(id);
            if let Some(item) = ranges[i].next() {
                rows_read += 1;
                heap.push((tail_id(item?.0.value())?, Reverse(i)));
            }
        }
        self.tweets_of(ids, rows_read)
    }

    /// Tweets matching `query` with id below `before`, newest first: a leapfrog intersection of
    /// the words' postings in the inverted index (each step seeks one word's range to at most the
    /// current candidate), then phrases checked on the candidate's body. Stops after
    /// [`SEARCH_ROWS_READ_MAX`] index rows with what it has, marked `capped`.
    pub fn search(&self, query: &SearchQuery, before: u64, limit: usize) -> Result<TweetPage, SmError> {
        self.search_within(query, before, limit, SEARCH_ROWS_READ_MAX)
    }

    /// [`ReadView::search`] within a row budget of `rows_max` (at most [`SEARCH_ROWS_READ_MAX`]):
    /// a request's searches share one budget, whatever their number.
    pub fn search_within(
        &self,
        query: &SearchQuery,
        before: u64,
        limit: usize,
        rows_max: usize,
    ) -> Result<TweetPage, SmError> {
        let rows_max = rows_max.min(SEARCH_ROWS_READ_MAX);
        let mut page = TweetPage::default();
        if before == 0 || limit == 0 || query.words.is_empty() {
            return Ok(page);
        }
        let index = self.txn.open_table(tables::SEARCH)?;
        let tweets = self.txn.open_table(tables::TWEETS)?;
        let prefixes: Vec<Vec<u8>> = query.words.iter().map(|w| key(&[w.as_bytes(), &[0]])).collect();
        let mut at = before - 1;
        let mut ended = false;
        'outer: while page.tweets.len() < limit && page.rows_read < rows_max {
            // Every word's newest id at or below `at`; when they all agree, `at` is a hit.
            let mut agreed = 0;
            let mut i = 0;
            while agreed < prefixes.len() {
                // The budget bounds the inner walk too: two common words that never meet would
                // otherwise walk both lists to the end.
                if page.rows_read >= rows_max {
                    break 'outer;
                }
                page.rows_read += 1;
                let Some(id) = id_at_or_below(&index, &prefixes[i], at)? else {
                    ended = true;
                    break 'outer;
                };
                if id == at {
                    agreed += 1;
                } else {
                    at = id;
                    agreed = 1;
                }
                i = (i + 1) % prefixes.len();
            }
            let Some(tweet) = get_json::<Tweet>(&tweets, &id_key(at))? else {
                return Err(SmError::Corrupt("the search index names a missing tweet"));
            };
            if !query.phrases.is_empty() {
                let body_words = words(&tweet.body);
                if !query.phrases.iter().all(|p| has_phrase(&body_words, p)) {
                    if at == 0 {
                        ended = true;
                        break;
                    }
                    at -= 1;
                    continue;
                }
            }
            page.tweets.push(tweet);
            if at == 0 {
                ended = true;
                break;
            }
            at -= 1;
        }
        // Out of the loop with the page not full and the index not exhausted: the budget ran out.
        page.capped = !ended && page.tweets.len() < limit;
        Ok(page)
    }

    /// How many tweets exist, without a scan.
    pub fn tweet_count(&self) -> Result<u64, SmError> {
        Ok(self.txn.open_table(tables::TWEETS)?.len()?)
    }
}
