//! Tweets and the social graph through `schema.execute` and `schema.execute_stream` on a real
//! one-node store: follow rules and counts, tweet length in grapheme clusters, hashtags and
//! mentions extracted at apply, deletion that leaves every index, timeline pages that neither
//! skip nor repeat while tweets arrive between requests, accent- and case-insensitive search,
//! and `timelineUpdates` that replays after an index and then streams live.

mod support;

use std::time::Duration;

use async_graphql::{Request, Variables};
use futures::{Stream, StreamExt};
use schema::{BearerToken, SchemaConfig};
use serde_json::{json, Value};
use support::{one_node, Harness};

const FOLLOW: &str = "mutation($u:ID!){ follow(userId:$u){ id followerCount } }";
const UNFOLLOW: &str = "mutation($u:ID!){ unfollow(userId:$u){ id followerCount } }";
const COUNTS: &str = "query($id:ID!){ user(id:$id){ followerCount followingCount } }";
const FOLLOWERS: &str = "query($u:ID!){ followers(userId:$u){ edges{ cursor node{ username } } } }";
const FOLLOWING: &str = "query($u:ID!){ following(userId:$u){ edges{ node{ username } } } }";
const POST: &str = "mutation($b:String!,$r:ID){ postTweet(body:$b, replyTo:$r){ id body hashtags mentions{ username } author{ username } replyToId replyCount } }";
const DELETE: &str = "mutation($id:ID!){ deleteTweet(id:$id) }";
const TWEET: &str = "query($id:ID!){ tweet(id:$id){ id body replyCount replyTo{ id } author{ username } } }";
const TIMELINE: &str = "query($f:Int,$a:String){ timeline(first:$f, after:$a){ edges{ cursor node{ id body } } pageInfo{ hasNextPage endCursor } } }";
const USER_TWEETS: &str = "query($u:ID!){ userTweets(userId:$u){ edges{ node{ id } } } }";
const BY_TAG: &str = "query($t:String!){ tweetsByHashtag(tag:$t){ edges{ node{ id } } } }";
const MENTIONS: &str = "query{ mentions{ edges{ node{ id } } } }";
const SEARCH: &str = "query($q:String!,$f:Int,$a:String){ searchTweets(query:$q, first:$f, after:$a){ edges{ cursor node{ id body } } pageInfo{ hasNextPage } } }";
const SUB: &str = "subscription($a:Int){ timelineUpdates(afterIndex:$a){ index tweet{ id body author{ username } } } }";

/// A signed-in account: (id, token).
async fn account(h: &Harness, name: &str) -> (String, String) {
    let r = h.register(name).await;
    (r["user"]["id"].as_str().expect("id").to_string(), r["token"].as_str().expect("token").to_string())
}

async fn post(h: &Harness, token: &str, body: &str) -> String {
    h.ok(POST, json!({"b": body}), Some(token)).await["postTweet"]["id"].as_str().expect("id").to_string()
}

fn ids(d: &Value, field: &str) -> Vec<String> {
    d[field]["edges"]
        .as_array()
        .map(|a| a.iter().map(|e| e["node"]["id"].as_str().unwrap_or("").to_string()).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_are_idempotent_counted_and_listed() {
    let h = one_node(SchemaConfig::default()).await;
    let (alice_id, alice) = account(&h, "alice").await;
    let (bob_id, bob) = account(&h, "bob").await;

    // Phase 1: following twice is one edge; counts move on both sides.
    h.ok(FOLLOW, json!({"u": bob_id}), Some(&alice)).await;
    let d = h.ok(FOLLOW, json!({"u": bob_id}), Some(&alice)).await;
    assert_eq!(d["follow"]["followerCount"], 1);
    assert_eq!(
        h.ok(COUNTS, json!({"id": alice_id}), None).await["user"],
        json!({"followerCount": 0, "followingCount": 1})
    );

    // Phase 2: followers and following are connections of users.
    let f = h.ok(FOLLOWERS, json!({"u": bob_id}), None).await;
    assert_eq!(f["followers"]["edges"][0]["node"]["username"], "alice");
    assert_eq!(f["followers"]["edges"][0]["cursor"], alice_id.as_str());
    let f = h.ok(FOLLOWING, json!({"u": alice_id}), None).await;
    assert_eq!(f["following"]["edges"][0]["node"]["username"], "bob");

    // Phase 3: following oneself is INVALID_INPUT, an unknown user NOT_FOUND, no token
    // UNAUTHENTICATED.
    assert_eq!(h.code(FOLLOW, json!({"u": bob_id}), Some(&bob)).await, "INVALID_INPUT");
    assert_eq!(h.code(FOLLOW, json!({"u": "999"}), Some(&bob)).await, "NOT_FOUND");
    assert_eq!(h.code(FOLLOW, json!({"u": alice_id}), None).await, "UNAUTHENTICATED");

    // Phase 4: unfollowing twice is fine and the counts return to zero.
    h.ok(UNFOLLOW, json!({"u": bob_id}), Some(&alice)).await;
    let d = h.ok(UNFOLLOW, json!({"u": bob_id}), Some(&alice)).await;
    assert_eq!(d["unfollow"]["followerCount"], 0);
    assert_eq!(h.ok(COUNTS, json!({"id": alice_id}), None).await["user"]["followingCount"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tweet_length_is_counted_in_grapheme_clusters() {
    let h = one_node(SchemaConfig::default()).await;
    let (_, alice) = account(&h, "alice").await;
    let family = "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}\u{200D}\u{1F466}";
    let thumbs_up_medium = "\u{1F44D}\u{1F3FD}";
    let flag = "\u{1F1EB}\u{1F1F7}";

    // Phase 1: 280 clusters pass however many code points and bytes they take.
    for unit in [family, thumbs_up_medium, flag, "e\u{301}", "a"] {
        let body = unit.repeat(280);
        let d = h.ok(POST, json!({"b": body}), Some(&alice)).await;
        assert_eq!(d["postTweet"]["body"], body.as_str());
    }

    // Phase 2: 281 clusters, an empty body and a blank one are INVALID_INPUT.
    for body in [family.repeat(281), "a".repeat(281), String::new(), " \n ".to_string()] {
        assert_eq!(h.code(POST, json!({"b": body}), Some(&alice)).await, "INVALID_INPUT", "{body:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tags_mentions_replies_and_delete_visibility() {
    let h = one_node(SchemaConfig::default()).await;
    let (alice_id, alice) = account(&h, "alice").await;
    let (_, bob) = account(&h, "bob").await;
    h.ok(FOLLOW, json!({"u": alice_id}), Some(&bob)).await;

    // Phase 1: hashtags are lowercased once each; a mention of an account links it (any case),
    // a name without an account stays text.
    let d = h.ok(POST, json!({"b": "Hi @BOB and @nobody #Rust #rust #Raft"}), Some(&alice)).await;
    let t = &d["postTweet"];
    assert_eq!(t["hashtags"], json!(["rust", "raft"]));
    assert_eq!(t["mentions"], json!([{"username": "bob"}]));
    let id = t["id"].as_str().expect("id").to_string();
    assert_eq!(ids(&h.ok(BY_TAG, json!({"t": "#RUST"}), None).await, "tweetsByHashtag"), vec![id.clone()]);
    assert_eq!(ids(&h.ok(MENTIONS, json!({}), Some(&bob)).await, "mentions"), vec![id.clone()]);

    // Phase 2: a reply names its parent, which counts it; a reply to nothing is NOT_FOUND.
    let r = h.ok(POST, json!({"b": "agreed", "r": id}), Some(&bob)).await["postTweet"].clone();
    assert_eq!(r["replyToId"], id.as_str());
    let reply = r["id"].as_str().expect("id").to_string();
    assert_eq!(h.ok(TWEET, json!({"id": id}), None).await["tweet"]["replyCount"], 1);
    assert_eq!(h.code(POST, json!({"b": "x", "r": "999"}), Some(&bob)).await, "NOT_FOUND");

    // Phase 3: only the author deletes; someone else gets FORBIDDEN and nothing changes.
    assert_eq!(h.code(DELETE, json!({"id": id}), Some(&bob)).await, "FORBIDDEN");
    assert_eq!(h.code(DELETE, json!({"id": "999"}), Some(&bob)).await, "NOT_FOUND");

    // Phase 4: once deleted, the tweet is gone from tweet(id), timelines, userTweets,
    // hashtags, mentions and search; the reply stays, its parent now null.
    h.ok(DELETE, json!({"id": id}), Some(&alice)).await;
    assert_eq!(h.ok(TWEET, json!({"id": id}), None).await["tweet"], Value::Null);
    assert_eq!(ids(&h.ok(TIMELINE, json!({}), Some(&bob)).await, "timeline"), vec![reply.clone()]);
    assert!(ids(&h.ok(USER_TWEETS, json!({"u": alice_id}), None).await, "userTweets").is_empty());
    assert!(ids(&h.ok(BY_TAG, json!({"t": "rust"}), None).await, "tweetsByHashtag").is_empty());
    assert!(ids(&h.ok(MENTIONS, json!({}), Some(&bob)).await, "mentions").is_empty());
    assert!(ids(&h.ok(SEARCH, json!({"q": "nobody"}), None).await, "searchTweets").is_empty());
    assert_eq!(h.ok(TWEET, json!({"id": reply}), None).await["tweet"]["replyTo"], Value::Null);

    // Phase 5: deleting a reply gives its parent's count back.
    let p = post(&h, &alice, "parent").await;
    let r = h.ok(POST, json!({"b": "child", "r": p}), Some(&bob)).await["postTweet"]["id"].clone();
    h.ok(DELETE, json!({"id": r}), Some(&bob)).await;
    assert_eq!(h.ok(TWEET, json!({"id": p}), None).await["tweet"]["replyCount"], 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeline_pages_never_skip_or_repeat_while_tweets_arrive() {
    let h = one_node(SchemaConfig::default()).await;
    let (_, viewer) = account(&h, "viewer").await;
    let (_, stranger) = account(&h, "stranger").await;
    let mut authors = Vec::new();
    for name in ["ann", "ben", "cat"] {
        let (id, token) = account(&h, name).await;
        h.ok(FOLLOW, json!({"u": id}), Some(&viewer)).await;
        authors.push(token);
    }

    // Phase 1: 30 tweets interleaved across three followed authors, and some from a stranger
    // that must never appear.
    let mut posted = Vec::new();
    for i in 0..30 {
        posted.push(post(&h, &authors[i % 3], &format!("t{i}")).await);
        if i % 10 == 0 {
            post(&h, &stranger, "not followed").await;
        }
    }

    // Phase 2: page by 7; between every two page requests two more tweets are posted. The
    // pages still hold exactly the first 30, newest first, once each.
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let d = h.ok(TIMELINE, json!({"f": 7, "a": after}), Some(&viewer)).await;
        seen.extend(ids(&d, "timeline"));
        for a in &authors[..2] {
            post(&h, a, "arrived later").await;
        }
        if d["timeline"]["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = d["timeline"]["pageInfo"]["endCursor"].as_str().map(str::to_string);
    }
    posted.reverse();
    assert_eq!(seen, posted);

    // Phase 3: a fresh first page starts with the newest, the late arrivals.
    let d = h.ok(TIMELINE, json!({"f": 3}), Some(&viewer)).await;
    assert!(d["timeline"]["edges"].as_array().expect("edges").iter().all(|e| e["node"]["body"] == "arrived later"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn search_ignores_order_case_and_accents_and_honours_phrases() {
    let h = one_node(SchemaConfig::default()).await;
    let (_, alice) = account(&h, "alice").await;
    let a = post(&h, &alice, "Crème brûlée at the café").await;
    let b = post(&h, &alice, "the cafe serves creme").await;
    let c = post(&h, &alice, "Brulee, CREME and more").await;
    post(&h, &alice, "nothing sweet here").await;

    // Phase 1: every word, any order, any case or accent, newest first.
    let found = ids(&h.ok(SEARCH, json!({"q": "CRÈME"}), None).await, "searchTweets");
    assert_eq!(found, [c.clone(), b.clone(), a.clone()]);
    let found = ids(&h.ok(SEARCH, json!({"q": "brulee creme"}), None).await, "searchTweets");
    assert_eq!(found, [c.clone(), a.clone()]);
    assert_eq!(ids(&h.ok(SEARCH, json!({"q": "cafe Brûlée"}), None).await, "searchTweets"), vec![a.clone()]);

    // Phase 2: a quoted phrase needs its words together and in order.
    assert_eq!(ids(&h.ok(SEARCH, json!({"q": "\"creme brulee\""}), None).await, "searchTweets"), vec![a.clone()]);

    // Phase 3: pages by one follow the same order with the id as cursor.
    let p1 = h.ok(SEARCH, json!({"q": "creme", "f": 1}), None).await;
    assert_eq!(p1["searchTweets"]["pageInfo"]["hasNextPage"], true);
    let cursor = p1["searchTweets"]["edges"][0]["cursor"].clone();
    assert_eq!(ids(&h.ok(SEARCH, json!({"q": "creme", "f": 2, "a": cursor}), None).await, "searchTweets"), [b, a]);

    // Phase 4: a query without a word is INVALID_INPUT.
    assert_eq!(h.code(SEARCH, json!({"q": " !? "}), None).await, "INVALID_INPUT");
}

fn subscribe(h: &Harness, after: Option<u64>, token: &str) -> impl Stream<Item = async_graphql::Response> {
    let req = Request::new(SUB)
        .variables(Variables::from_json(json!({"a": after})))
        .data(BearerToken(Some(token.to_string())));
    h.schema.execute_stream(req)
}

async fn next_event(s: &mut (impl Stream<Item = async_graphql::Response> + Unpin)) -> Value {
    let item = tokio::time::timeout(Duration::from_secs(5), s.next()).await.expect("event in time").expect("item");
    assert!(item.errors.is_empty(), "{:?}", item.errors);
    item.data.into_json().expect("json")["timelineUpdates"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeline_updates_replay_after_an_index_then_stream_live() {
    let h = one_node(SchemaConfig::default()).await;
    let (_, viewer) = account(&h, "viewer").await;
    let (ann_id, ann) = account(&h, "ann").await;
    let (_, stranger) = account(&h, "stranger").await;
    h.ok(FOLLOW, json!({"u": ann_id}), Some(&viewer)).await;

    // Phase 1: from index 0, only followed authors' tweets replay, in order; a stranger's and a
    // deleted one are skipped.
    post(&h, &ann, "one").await;
    post(&h, &stranger, "noise").await;
    let gone = post(&h, &ann, "deleted").await;
    h.ok(DELETE, json!({"id": gone}), Some(&ann)).await;
    post(&h, &ann, "two").await;
    let mut s = Box::pin(subscribe(&h, Some(0), &viewer));
    let e1 = next_event(&mut s).await;
    let e2 = next_event(&mut s).await;
    assert_eq!((e1["tweet"]["body"].clone(), e2["tweet"]["body"].clone()), (json!("one"), json!("two")));
    assert_eq!(e1["tweet"]["author"]["username"], "ann");

    // Phase 2: then live: a new tweet from ann arrives, the stranger's does not.
    post(&h, &stranger, "still noise").await;
    post(&h, &ann, "three").await;
    let e3 = next_event(&mut s).await;
    assert_eq!(e3["tweet"]["body"], "three");

    // Phase 3: resuming after the second index replays exactly what came after it.
    let mut resumed = Box::pin(subscribe(&h, e2["index"].as_u64(), &viewer));
    assert_eq!(next_event(&mut resumed).await["index"], e3["index"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn timeline_and_search_read_their_page_not_the_table() {
    let h = one_node(SchemaConfig::default()).await;
    let (viewer_id, viewer) = account(&h, "viewer").await;
    let (_, ann) = account(&h, "ann").await;
    let (ben_id, ben) = account(&h, "ben").await;
    h.ok(FOLLOW, json!({"u": ben_id}), Some(&viewer)).await;
    let viewer_id: u64 = viewer_id.parse().expect("id");
    let ben_id: u64 = ben_id.parse().expect("id");

    // Phase 1: many tweets nobody searches for and an unfollowed author's tweets, plus a few
    // that match; a search for the rare word and a timeline page read about their own size
    // (the inverted index and the per-author ranges), not the 300 other tweets.
    for i in 0..300 {
        post(&h, &ann, &format!("filler words number {i}")).await;
        if i % 100 == 0 {
            post(&h, &ben, "a needle here").await;
        }
    }
    let query = raft::model::tweets::SearchQuery::parse("NEEDLE").expect("query");
    let (search, timeline) = h
        .store
        .read(raft::Consistency::Local, |v| Ok((v.search(&query, u64::MAX, 21)?, v.timeline(viewer_id, u64::MAX, 21)?)))
        .await
        .expect("read")
        .value;
    assert_eq!(search.tweets.len(), 3);
    assert!(search.rows_read <= 4, "search read {} index rows", search.rows_read);
    assert_eq!(timeline.tweets.len(), 3);
    assert!(timeline.tweets.iter().all(|t| t.author_id == ben_id));
    assert!(timeline.rows_read <= 4, "timeline read {} index rows", timeline.rows_read);
}
