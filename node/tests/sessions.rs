//! Read-your-writes and monotonic reads on three real node processes, through the followers.
//!
//! A follower forwards a write to the leader, whose answer comes back before the follower has
//! necessarily applied the entry. These are the two probes that once found stale answers there
//! (3 to 6 of 8 `follow` answers, 3 of 60 LOCAL checks right after a reservation), run hundreds
//! of times: zero stale answers allowed. Then the cross-node half of the guarantee: a write
//! through one follower, a LOCAL read through the other with the write's index as
//! `atLeastIndex`, and the limits of that extension (a bad value, an index no node has).

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{Cluster, REGISTER};

/// Follow/unfollow pairs sent through each follower.
const FOLLOW_PAIRS_PER_FOLLOWER: usize = 60;
/// Reservations through each follower, each checked at once on the same node.
const RESERVATIONS_PER_FOLLOWER: usize = 100;
/// Reservations through one follower, each checked at once on the other.
const CROSS_NODE_TRIALS: usize = 100;

const FOLLOW: &str = "mutation($u:ID!){ follow(userId:$u){ id followerCount } }";
const UNFOLLOW: &str = "mutation($u:ID!){ unfollow(userId:$u){ id followerCount } }";
const FOLLOWING: &str = "query($u:ID!){ following(userId:$u, first:10){ edges{ node{ id } } } }";
const RESERVE: &str = "mutation($n:String!){ reserveUsername(name:$n, ttlSeconds:600){ token } }";
const CHECK_LOCAL: &str = "query($n:String!){ usernameAvailability(name:$n, consistency:LOCAL){ status } }";

/// POSTs a request with optional request `extensions` and returns the whole response body.
async fn post(c: &Cluster, i: usize, query: &str, vars: Value, token: Option<&str>, extensions: Value) -> Value {
    let mut body = json!({ "query": query, "variables": vars });
    if !extensions.is_null() {
        body["extensions"] = extensions;
    }
    let mut req = c.http.post(c.url(i)).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.expect("an HTTP answer");
    resp.json().await.expect("a JSON body")
}

fn index(body: &Value, name: &str) -> u64 {
    body["extensions"][name].as_u64().unwrap_or_else(|| panic!("no extensions.{name} in {body}"))
}

/// A mutation's answer: no error, an entry index, and read at or after it on this node.
fn assert_reflects_write(body: &Value, what: &str) -> u64 {
    assert!(body["errors"].is_null(), "{what}: {body}");
    let write = index(body, "writeIndex");
    assert!(index(body, "appliedIndex") >= write, "{what}: answered from before its own entry: {body}");
    assert!(body["extensions"]["behind"].is_null(), "{what}: this node fell behind its own write: {body}");
    write
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn followers_answer_writes_and_session_reads_from_a_state_that_includes_them() {
    let cluster = Cluster::start(3, &[]);
    let leader = cluster.wait_ready(Duration::from_secs(30)).await;
    let followers: Vec<usize> = (0..3).filter(|i| *i != leader).collect();

    let register = |name: &'static str| {
        let c = &cluster;
        async move {
            let body = post(c, leader, REGISTER, json!({"u": name, "p": "session password"}), None, Value::Null).await;
            let user = &body["data"]["register"];
            (user["user"]["id"].as_str().expect("id").to_string(), user["token"].as_str().expect("token").to_string())
        }
    };
    let (fan_id, fan_token) = register("fan").await;
    let (star_id, _) = register("star").await;

    // Phase 1: follow and unfollow through each follower. Each answer's followerCount is read
    // after the write on the node that answered it, so it must say 1, then 0; and the fan's
    // `following` on that node, asked right after, must agree.
    for &f in &followers {
        for round in 0..FOLLOW_PAIRS_PER_FOLLOWER {
            let what = format!("follow round {round} through node {}", f + 1);
            let body = post(&cluster, f, FOLLOW, json!({"u": star_id}), Some(&fan_token), Value::Null).await;
            assert_reflects_write(&body, &what);
            assert_eq!(body["data"]["follow"]["followerCount"], 1, "{what}: stale answer {body}");
            let list = post(&cluster, f, FOLLOWING, json!({"u": fan_id}), None, Value::Null).await;
            let ids: Vec<&str> = list["data"]["following"]["edges"]
                .as_array()
                .expect("edges")
                .iter()
                .filter_map(|e| e["node"]["id"].as_str())
                .collect();
            assert_eq!(ids, [star_id.as_str()], "{what}: `following` right after lacks the write: {list}");

            let what = format!("unfollow round {round} through node {}", f + 1);
            let body = post(&cluster, f, UNFOLLOW, json!({"u": star_id}), Some(&fan_token), Value::Null).await;
            assert_reflects_write(&body, &what);
            assert_eq!(body["data"]["unfollow"]["followerCount"], 0, "{what}: stale answer {body}");
        }
    }

    // Phase 2: a reservation through a follower, then at once a LOCAL check on the same node,
    // with no atLeastIndex: the node applied the reservation before it answered, so LOCAL state
    // there already holds it.
    for &f in &followers {
        for n in 0..RESERVATIONS_PER_FOLLOWER {
            let name = format!("held{}x{n}", f + 1);
            let body = post(&cluster, f, RESERVE, json!({"n": name}), None, Value::Null).await;
            assert_reflects_write(&body, &format!("reserve {name}"));
            let check = post(&cluster, f, CHECK_LOCAL, json!({"n": name}), None, Value::Null).await;
            assert_eq!(
                check["data"]["usernameAvailability"]["status"],
                "RESERVED",
                "{name} on node {}: {check}",
                f + 1
            );
        }
    }

    // Phase 3: across nodes. Reserve through one follower, check LOCAL through the other with
    // the write's index as atLeastIndex: the other node waits until it has applied that far, so
    // the session sees its write wherever it reads.
    let (a, b) = (followers[0], followers[1]);
    for n in 0..CROSS_NODE_TRIALS {
        let name = format!("cross{n}");
        let (from, to) = if n % 2 == 0 { (a, b) } else { (b, a) };
        let body = post(&cluster, from, RESERVE, json!({"n": name}), None, Value::Null).await;
        let write = assert_reflects_write(&body, &format!("reserve {name}"));
        let check = post(&cluster, to, CHECK_LOCAL, json!({"n": name}), None, json!({"atLeastIndex": write})).await;
        assert_eq!(check["data"]["usernameAvailability"]["status"], "RESERVED", "{name}, written at {write}: {check}");
        assert!(index(&check, "appliedIndex") >= write, "{name}: read below atLeastIndex {write}: {check}");
    }

    // Phase 4: the extension's edges. A value that is not an index is INVALID_INPUT; an index
    // no node has reached is UNAVAILABLE with a retry hint after a bounded wait, not a hang.
    for bad in [json!("12"), json!(-1), json!(1.5)] {
        let body = post(&cluster, a, CHECK_LOCAL, json!({"n": "x"}), None, json!({"atLeastIndex": bad})).await;
        assert_eq!(body["errors"][0]["extensions"]["code"], "INVALID_INPUT", "atLeastIndex {bad}: {body}");
    }
    let body = post(&cluster, a, CHECK_LOCAL, json!({"n": "x"}), None, json!({"atLeastIndex": u64::MAX / 2})).await;
    let ext = &body["errors"][0]["extensions"];
    assert_eq!(ext["code"], "UNAVAILABLE", "an index from the future: {body}");
    assert!(ext["retryAfterMs"].as_u64().is_some(), "UNAVAILABLE carries retryAfterMs: {body}");

    // The cluster took every write above and still does.
    let body = post(&cluster, b, RESERVE, json!({"n": "afterwards"}), None, Value::Null).await;
    assert_reflects_write(&body, "a last reservation");
}
