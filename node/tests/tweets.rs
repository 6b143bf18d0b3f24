//! Tweets on three real node processes: users registered and following each other through
//! different nodes post through every node; every user's LINEARIZABLE home timeline on every
//! node holds exactly the tweets of the accounts they follow (and their own), newest first, and
//! a `timelineUpdates` subscriber on another node receives each of them live, once.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{Cluster, Gql, Subscription, REGISTER};

const FOLLOW: &str = "mutation($u:ID!){ follow(userId:$u){ id } }";
const POST: &str = "mutation($b:String!){ postTweet(body:$b){ id } }";
const TIMELINE: &str = "query($a:String){ timeline(first:100, after:$a, consistency:LINEARIZABLE){ edges{ node{ id body } } pageInfo{ hasNextPage endCursor } } }";
const SUB: &str = "subscription($a:Int){ timelineUpdates(afterIndex:$a){ index tweet{ id body } } }";

/// Users, one registered through each node.
const USERS: usize = 3;
/// Tweets each user posts through each node.
const TWEETS_PER_NODE: usize = 4;

async fn register(c: &Gql, node: usize, name: &str) -> (String, String) {
    let (d, e) = c.gql(node, REGISTER, json!({"u": name, "p": "tweet password"}), None).await;
    assert_eq!(e, None, "register {name}");
    (
        d["register"]["user"]["id"].as_str().expect("id").to_string(),
        d["register"]["token"].as_str().expect("t").to_string(),
    )
}

/// Every tweet id of a user's home timeline as node `i` pages through it, newest first.
async fn timeline(c: &Gql, i: usize, token: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let (d, e) = c.gql(i, TIMELINE, json!({"a": after}), Some(token)).await;
        assert_eq!(e, None);
        let edges: Vec<Value> = d["timeline"]["edges"].as_array().expect("edges").clone();
        out.extend(edges.iter().map(|e| e["node"]["id"].as_str().unwrap_or("").to_string()));
        if d["timeline"]["pageInfo"]["hasNextPage"] != true {
            return out;
        }
        after = d["timeline"]["pageInfo"]["endCursor"].as_str().map(str::to_string);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tweets_posted_through_every_node_reach_followers_everywhere_and_live() {
    let cluster = Cluster::start(3, &[]);
    cluster.wait_ready(Duration::from_secs(30)).await;
    let c = cluster.client();

    // Phase 1: user i registers through node i and follows the two others through node i+1,
    // so the graph is written through every node.
    let mut users = Vec::new();
    for i in 0..USERS {
        users.push(register(&c, i, &format!("poster{i}")).await);
    }
    let (_, loner) = register(&c, 0, "loner").await;
    for (i, (_, token)) in users.iter().enumerate() {
        for (j, (id, _)) in users.iter().enumerate() {
            if i != j {
                let (_, e) = c.gql((i + 1) % 3, FOLLOW, json!({"u": id}), Some(token)).await;
                assert_eq!(e, None, "follow {i} -> {j}");
            }
        }
    }

    // Phase 2: user 0 subscribes on node 3 from index 0 (the fresh cluster's whole feed), so
    // nothing posted after this point can be missed whatever the socket's start-up time.
    let mut sub = Subscription::open(&cluster.nodes[2].addr, SUB, json!({"a": 0}), Some(&users[0].1)).await;

    // Phase 3: every user posts through every node; the loner (followed by nobody) too.
    let mut posted = Vec::new();
    for round in 0..TWEETS_PER_NODE {
        for node in 0..3 {
            for (u, (_, token)) in users.iter().enumerate() {
                let (d, e) = c.gql(node, POST, json!({"b": format!("u{u} n{node} r{round}")}), Some(token)).await;
                assert_eq!(e, None);
                posted.push(d["postTweet"]["id"].as_str().expect("id").to_string());
            }
        }
        let (_, e) = c.gql(round % 3, POST, json!({"b": "nobody follows me"}), Some(&loner)).await;
        assert_eq!(e, None);
    }
    posted.reverse();

    // Phase 4: LINEARIZABLE timelines on every node, read right after the last write, hold
    // exactly the three users' tweets, newest first, for each of them.
    for node in 0..3 {
        for (u, (_, token)) in users.iter().enumerate() {
            assert_eq!(timeline(&c, node, token).await, posted, "user {u} on node {}", node + 1);
        }
    }

    // Phase 5: the subscriber received every one of them, once, in feed order, and none of
    // the loner's.
    let mut live = Vec::new();
    while live.len() < posted.len() {
        let payload = sub.next(Duration::from_secs(20)).await.unwrap_or_else(|| panic!("event {} in time", live.len()));
        assert!(payload.get("errors").is_none() || payload["errors"].is_null(), "{payload}");
        let e = &payload["data"]["timelineUpdates"];
        assert_ne!(e["tweet"]["body"], "nobody follows me");
        live.push(e["tweet"]["id"].as_str().expect("id").to_string());
    }
    live.reverse();
    assert_eq!(live, posted);
    assert!(sub.next(Duration::from_millis(500)).await.is_none(), "nothing more");
}
