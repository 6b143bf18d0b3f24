//! Schema tests on a real one-node store (openraft over redb in a temp dir), through
//! `schema.execute`: usernames, accounts, auth, limits and error codes.

mod support;

use std::time::Duration;

use schema::SchemaConfig;
use serde_json::{json, Value};
use support::{one_node, REGISTER};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usernames_and_accounts_follow_the_rules() {
    let h = one_node(SchemaConfig { username_cooldown_secs: 2, ..Default::default() }).await;

    // Phase 1: a fresh name is AVAILABLE; the first account is the cluster's ADMIN.
    assert_eq!(h.availability("alice").await["status"], "AVAILABLE");
    let alice = h.register("alice").await;
    assert_eq!(alice["user"]["role"], "ADMIN");
    assert_eq!(h.register("bob").await["user"]["role"], "USER");

    // Phase 2: case and confusable spellings are the same name: TAKEN, with real suggestions.
    for spelling in ["ALICE", "Alice", "\u{0430}lice", "alice"] {
        let a = h.availability(spelling).await;
        assert_eq!(a["status"], "TAKEN", "{spelling}: {a}");
        let suggestions = a["suggestions"].as_array().expect("suggestions");
        assert!(suggestions.len() >= 3, "{spelling}: want at least 3 suggestions, got {a}");
        for s in suggestions {
            let s = s.as_str().expect("string");
            assert_eq!(h.availability(s).await["status"], "AVAILABLE", "suggestion {s} must be available");
        }
    }
    assert_eq!(h.code(REGISTER, json!({"u": "ALICE", "p": "another pass"}), None).await, "USERNAME_TAKEN");

    // Phase 3: policy violations answer with the right status and code, and change nothing.
    for (name, status, code) in [
        ("al", "INVALID", "USERNAME_INVALID"),
        ("a!ice", "INVALID", "USERNAME_INVALID"),
        ("\u{0430}lic\u{0435}x", "INVALID", "USERNAME_INVALID"), // mixed Cyrillic and Latin
        ("Admin", "BLOCKED", "USERNAME_BLOCKED"),
        ("root", "BLOCKED", "USERNAME_BLOCKED"),
    ] {
        assert_eq!(h.availability(name).await["status"], status, "{name}");
        assert_eq!(h.code(REGISTER, json!({"u": name, "p": "correct horse"}), None).await, code, "{name}");
    }
    let (_, errs) = h.run(REGISTER, json!({"u": "carol", "p": "short"}), None).await;
    assert_eq!(errs[0].0, "INVALID_INPUT");
    assert!(errs[0].1.contains("password"), "the message names the field: {}", errs[0].1);
    assert_eq!(
        h.code(REGISTER, json!({"u": "carol", "p": "correct horse", "e": "not-an-email"}), None).await,
        "INVALID_INPUT"
    );
    // None of the rejected registrations consumed an id: the next account is number 3.
    assert_eq!(h.register("carol").await["user"]["id"], "3");

    // Phase 4: login; an unknown user and a wrong password get the same answer.
    let ok = h
        .ok(
            "mutation{ login(username:\"ALICE\", password:\"correct horse\"){ token user{ username } } }",
            json!({}),
            None,
        )
        .await;
    assert_eq!(ok["login"]["user"]["username"], "alice");
    let (_, wrong) =
        h.run("mutation{ login(username:\"alice\", password:\"wrong horse\"){ token } }", json!({}), None).await;
    let (_, unknown) =
        h.run("mutation{ login(username:\"nobody\", password:\"wrong horse\"){ token } }", json!({}), None).await;
    assert_eq!(wrong, unknown);
    assert_eq!(wrong[0].0, "UNAUTHENTICATED");

    // Phase 5: the viewer needs a valid token; admin-only operations answer FORBIDDEN to users.
    let alice_token = alice["token"].as_str().expect("token").to_string();
    let bob_token = h
        .ok("mutation{ login(username:\"bob\", password:\"correct horse\"){ token } }", json!({}), None)
        .await["login"]["token"]
        .as_str()
        .expect("token")
        .to_string();
    assert_eq!(h.ok("{ viewer { username } }", json!({}), Some(&alice_token)).await["viewer"]["username"], "alice");
    assert_eq!(h.code("{ viewer { username } }", json!({}), None).await, "UNAUTHENTICATED");
    assert_eq!(h.code("{ viewer { username } }", json!({}), Some("garbage")).await, "UNAUTHENTICATED");
    assert_eq!(h.code("mutation{ triggerSnapshot }", json!({}), Some(&bob_token)).await, "FORBIDDEN");
    assert_eq!(h.ok("mutation{ triggerSnapshot }", json!({}), Some(&alice_token)).await["triggerSnapshot"], true);
    // Email is private: visible to its owner, hidden from others.
    let q = "query($n:String!){ user(username:$n){ username email } }";
    assert_eq!(h.ok(q, json!({"n": "bob"}), Some(&bob_token)).await["user"]["username"], "bob");
    assert_eq!(h.ok(q, json!({"n": "nobody"}), None).await["user"], Value::Null);

    // Phase 6: renaming releases the old name into a cooldown (BLOCKED with a date), then it is free.
    let renamed = h.ok("mutation{ changeUsername(newName:\"bobby\"){ username } }", json!({}), Some(&bob_token)).await;
    assert_eq!(renamed["changeUsername"]["username"], "bobby");
    let old = h.availability("bob").await;
    assert_eq!(old["status"], "BLOCKED", "{old}");
    assert!(old["reason"].as_str().unwrap_or_default().contains("blocked until"), "{old}");
    assert_eq!(h.code(REGISTER, json!({"u": "bob", "p": "correct horse"}), None).await, "USERNAME_BLOCKED");
    tokio::time::sleep(Duration::from_millis(2_100)).await;
    assert_eq!(h.availability("bob").await["status"], "AVAILABLE");

    // Phase 7: deleting an account blocks its name and invalidates its tokens.
    assert_eq!(h.ok("mutation{ deleteAccount }", json!({}), Some(&bob_token)).await["deleteAccount"], true);
    assert_eq!(h.availability("bobby").await["status"], "BLOCKED");
    assert_eq!(h.code("{ viewer { username } }", json!({}), Some(&bob_token)).await, "UNAUTHENTICATED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reservations_hold_a_name_for_their_token_only() {
    let h = one_node(SchemaConfig::default()).await;
    let reserve = "mutation($n:String!,$t:Int){ reserveUsername(name:$n, ttlSeconds:$t){ name token expiresAt } }";

    // Phase 1: a reservation makes the name RESERVED to everyone else.
    let r = h.ok(reserve, json!({"n": "dave", "t": 1}), None).await["reserveUsername"].clone();
    let token = r["token"].as_str().expect("token").to_string();
    assert_eq!(h.availability("DAVE").await["status"], "RESERVED");
    assert_eq!(h.code(reserve, json!({"n": "dave", "t": 60}), None).await, "USERNAME_RESERVED");
    assert_eq!(h.code(REGISTER, json!({"u": "dave", "p": "correct horse"}), None).await, "USERNAME_RESERVED");
    assert_eq!(
        h.code(REGISTER, json!({"u": "dave", "p": "correct horse", "t": "wrong"}), None).await,
        "USERNAME_RESERVED"
    );

    // Phase 2: the holder's token takes it.
    let u = h.ok(REGISTER, json!({"u": "dave", "p": "correct horse", "t": token}), None).await;
    assert_eq!(u["register"]["user"]["username"], "dave");

    // Phase 3: a reservation expires by itself (judged by time stamped into commands).
    h.ok(reserve, json!({"n": "erin", "t": 1}), None).await;
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(h.availability("erin").await["status"], "AVAILABLE");
    h.register("erin").await;

    // Phase 4: bad TTLs and names are INVALID_INPUT / USERNAME_INVALID.
    assert_eq!(h.code(reserve, json!({"n": "frank", "t": 0}), None).await, "INVALID_INPUT");
    assert_eq!(h.code(reserve, json!({"n": "frank", "t": 100000}), None).await, "INVALID_INPUT");
    assert_eq!(h.code(reserve, json!({"n": "x", "t": 10}), None).await, "USERNAME_INVALID");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limits_and_consistency_levels() {
    let h = one_node(SchemaConfig { query_depth_max: 3, ..Default::default() }).await;

    // Phase 1: malformed or over-limit queries get INVALID_INPUT, never a code-less error.
    assert_eq!(h.code("{ nope }", json!({}), None).await, "INVALID_INPUT");
    assert_eq!(h.code("{ cluster { members { id } ", json!({}), None).await, "INVALID_INPUT");
    let deep = "{ a: cluster { members { id } } b: __schema { types { fields { type { name } } } } }";
    assert_eq!(h.code(deep, json!({}), None).await, "INVALID_INPUT");

    // Phase 2: LOCAL and LINEARIZABLE both answer, with the applied index they read at.
    h.register("grace").await;
    let applied = h.store.cluster_status().last_applied;
    for c in ["LOCAL", "LINEARIZABLE"] {
        let q = format!("{{ usernameAvailability(name:\"grace\", consistency:{c}){{ status appliedIndex }} }}");
        let a = h.ok(&q, json!({}), None).await["usernameAvailability"].clone();
        assert_eq!(a["status"], "TAKEN");
        assert!(a["appliedIndex"].as_u64().expect("index") >= applied, "{c}: {a}");
    }

    // Phase 2b: any read's response says, in `extensions.appliedIndex`, which log index the
    // state it read reflects; a LOCAL read of a user included. A request that reads no state
    // carries none.
    let req = async_graphql::Request::new("{ user(username:\"grace\", consistency:LOCAL){ id } }");
    let resp = serde_json::to_value(h.schema.execute(req).await).expect("json");
    assert!(resp["extensions"]["appliedIndex"].as_u64().expect("an index") >= applied, "{resp}");
    let resp = serde_json::to_value(h.schema.execute("{ __typename }").await).expect("json");
    assert!(resp.get("extensions").is_none_or(|e| e.get("appliedIndex").is_none()), "{resp}");

    // Phase 3: the cluster query describes the one-node cluster.
    let c =
        h.ok("{ cluster { nodeId leaderId term state lastApplied members { id addr voter } } }", json!({}), None).await;
    assert_eq!(c["cluster"]["leaderId"], 1);
    assert_eq!(c["cluster"]["members"].as_array().expect("members").len(), 1);
}

// Expired reservations and cooldowns are removed by apply, deterministically from the entry's
// time: the names table does not keep every reservation ever made, and a live hold is kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_collects_expired_reservations_and_cooldowns() {
    use raft::model::accounts::NameRecord;
    use raft::model::names;
    use raft::Proposal;
    use raft::{Command, Consistency};
    let h = one_node(SchemaConfig::default()).await;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let reserve = |name: &str, at_ms: i64, ttl_ms: i64| Proposal {
        at_ms,
        command: Command::ReserveUsername {
            name: name.into(),
            canonical: names::canonical(name),
            token: format!("token-{name}"),
            ttl_ms,
        },
    };
    // Phase 1: a short hold and a long one, both live.
    h.store.propose_at(reserve("brief", now, 1_000)).await.expect("brief");
    h.store.propose_at(reserve("lasting", now, 3_600_000)).await.expect("lasting");
    let record = |name: &'static str| {
        let store = h.store.clone();
        async move {
            store.read(Consistency::Local, move |v| v.name_record(&names::canonical(name))).await.expect("read").value
        }
    };
    assert!(matches!(record("brief").await, Some(NameRecord::Reserved { .. })));
    // Phase 2: an entry stamped after the short hold ended removes it, and only it.
    h.store.propose_at(reserve("later", now + 5_000, 60_000)).await.expect("later");
    assert_eq!(record("brief").await, None, "the expired hold was collected");
    assert!(matches!(record("lasting").await, Some(NameRecord::Reserved { .. })), "a live hold stays");
    assert!(matches!(record("later").await, Some(NameRecord::Reserved { .. })));
}

// A subscription ends with UNAUTHENTICATED when its token expires, as any request with that
// token would be refused from then on; it does not outlive the sign-in that started it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscription_ends_when_its_token_expires() {
    use futures::StreamExt as _;
    let h = one_node(SchemaConfig { token_ttl_secs: 1, ..Default::default() }).await;
    let token = h.register("brieftoken").await["token"].as_str().expect("token").to_string();
    let request = async_graphql::Request::new("subscription { timelineUpdates { index } }")
        .data(schema::BearerToken(Some(token)));
    let mut stream = h.schema.execute_stream(request);
    let first = tokio::time::timeout(Duration::from_secs(15), stream.next())
        .await
        .expect("the stream ends in time")
        .expect("an item");
    let code = first.errors.first().and_then(|e| e.extensions.as_ref()).and_then(|x| x.get("code")).cloned();
    assert_eq!(code, Some(async_graphql::Value::from("UNAUTHENTICATED")), "{:?}", first.errors);
    assert!(first.errors[0].message.contains("expired"), "{:?}", first.errors);
}
