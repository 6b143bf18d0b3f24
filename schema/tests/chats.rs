//! Profiles, chats and messages through `schema.execute` and `schema.execute_stream` on a real
//! one-node store: who may read and change what (FORBIDDEN paths included), input rules that
//! name their field, deduplicated sends, stable message cursors, `chatsOf` read from its index
//! without a scan, and `chatMessages` that streams live and resumes after an index.

mod support;

use std::time::Duration;

use async_graphql::{Request, Variables};
use futures::{Stream, StreamExt};
use raft::model::chats::MESSAGE_BODY_CHARS_MAX;
use raft::{Command, Consistency, Response};
use schema::BearerToken;
use schema::SchemaConfig;
use serde_json::{json, Value};
use support::{one_node, Harness};

const PROFILE: &str = "mutation($d:String,$b:String,$a:String){ updateProfile(input:{displayName:$d, bio:$b, avatarUrl:$a}){ id displayName bio avatarUrl } }";
const USER_BY_ID: &str = "query($id:ID!){ user(id:$id){ username displayName bio avatarUrl } }";
const USER_BY_NAME: &str = "query($n:String!){ user(username:$n){ id displayName bio avatarUrl } }";
const CREATE: &str = "mutation($n:String!,$p:[ID!]!){ createChat(name:$n, participantIds:$p){ id name owner{ id } participantCount participants{ id username } } }";
const CHAT: &str =
    "query($id:ID!){ chat(id:$id){ id name owner{ id } participantCount messageCount participants{ id } } }";
const SEND: &str = "mutation($c:ID!,$b:String!,$k:String!){ sendMessage(chatId:$c, body:$b, clientMessageId:$k){ id seq body sender{ id } } }";
const MESSAGES: &str = "query($c:ID!,$f:Int,$a:String,$l:Int,$b:String){ messages(chatId:$c, first:$f, after:$a, last:$l, before:$b){ edges{ cursor node{ id seq body } } pageInfo{ hasNextPage hasPreviousPage startCursor endCursor } } }";
const CHATS_OF: &str = "query($u:ID!,$f:Int,$a:String){ chatsOf(userId:$u, first:$f, after:$a){ edges{ cursor node{ id name } } pageInfo{ hasNextPage } } }";
const ADD: &str = "mutation($c:ID!,$u:[ID!]!){ addParticipants(chatId:$c, userIds:$u){ participantCount } }";
const REMOVE: &str =
    "mutation($c:ID!,$u:ID!){ removeParticipant(chatId:$c, userId:$u){ participantCount owner{ id } } }";
const LEAVE: &str = "mutation($c:ID!){ leaveChat(chatId:$c) }";
const SUB: &str =
    "subscription($c:ID!,$a:Int){ chatMessages(chatId:$c, afterIndex:$a){ index message{ id body sender{ id } } } }";

/// A signed-in account: (id, token).
async fn account(h: &Harness, name: &str) -> (String, String) {
    let r = h.register(name).await;
    (r["user"]["id"].as_str().expect("id").to_string(), r["token"].as_str().expect("token").to_string())
}

fn error_field(h: &async_graphql::Response) -> Option<String> {
    let ext = h.errors.first()?.extensions.as_ref()?;
    ext.get("field").map(|f| f.to_string().trim_matches('"').to_string())
}

async fn field_of(h: &Harness, query: &str, vars: Value, token: &str) -> (String, Option<String>) {
    let req = Request::new(query).variables(Variables::from_json(vars)).data(BearerToken(Some(token.to_string())));
    let resp = h.schema.execute(req).await;
    let code =
        resp.errors.first().and_then(|e| e.extensions.as_ref()).and_then(|x| x.get("code")).map(|c| c.to_string());
    (code.unwrap_or_default().trim_matches('"').to_string(), error_field(&resp))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn profiles_are_edited_by_their_owner_and_validated_per_field() {
    let h = one_node(SchemaConfig::default()).await;
    let (alice_id, alice) = account(&h, "alice").await;

    // Phase 1: the owner changes their profile; user(id) and user(username) both show it.
    let v = json!({"d": "Alice A.", "b": "Hello there", "a": "https://img.example.com/a.png"});
    let p = h.ok(PROFILE, v, Some(&alice)).await;
    assert_eq!(p["updateProfile"]["displayName"], "Alice A.");
    let by_id = h.ok(USER_BY_ID, json!({"id": alice_id}), None).await;
    assert_eq!(by_id["user"]["bio"], "Hello there");
    assert_eq!(by_id["user"]["avatarUrl"], "https://img.example.com/a.png");
    let by_name = h.ok(USER_BY_NAME, json!({"n": "ALICE"}), None).await;
    assert_eq!(by_name["user"]["displayName"], "Alice A.");

    // Phase 2: omitted fields stay; an empty avatarUrl removes the picture.
    let p = h.ok(PROFILE, json!({"a": ""}), Some(&alice)).await;
    assert_eq!(
        (p["updateProfile"]["avatarUrl"].clone(), p["updateProfile"]["bio"].clone()),
        (Value::Null, json!("Hello there"))
    );

    // Phase 3: each broken rule is INVALID_INPUT naming its field, and changes nothing.
    let long_bio = "b".repeat(501);
    for (vars, field) in [
        (json!({"d": "x".repeat(51)}), "displayName"),
        (json!({"b": long_bio}), "bio"),
        (json!({"a": "not a url"}), "avatarUrl"),
        (json!({"a": "ftp://example.com/a.png"}), "avatarUrl"),
        (json!({"a": "https:///nohost"}), "avatarUrl"),
    ] {
        assert_eq!(
            field_of(&h, PROFILE, vars.clone(), &alice).await,
            ("INVALID_INPUT".into(), Some(field.into())),
            "{vars}"
        );
    }
    assert_eq!(h.ok(USER_BY_ID, json!({"id": alice_id}), None).await["user"]["bio"], "Hello there");

    // Phase 4: a profile is only changed by its signed-in owner.
    assert_eq!(h.code(PROFILE, json!({"b": "x"}), None).await, "UNAUTHENTICATED");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chats_admit_only_participants() {
    let h = one_node(SchemaConfig::default()).await;
    let (alice_id, alice) = account(&h, "alice").await;
    let (bob_id, bob) = account(&h, "bob").await;
    let (carol_id, carol) = account(&h, "carol").await;
    let (dave_id, dave) = account(&h, "dave").await;

    // Phase 1: the creator is owner and participant; participants are listed.
    let c = h.ok(CREATE, json!({"n": "Lunch", "p": [bob_id, bob_id]}), Some(&alice)).await;
    let chat = c["createChat"]["id"].as_str().expect("id").to_string();
    assert_eq!(c["createChat"]["owner"]["id"], alice_id.as_str());
    assert_eq!(c["createChat"]["participantCount"], 2, "repeats are ignored");
    let r = h.ok(CHAT, json!({"id": chat}), Some(&bob)).await;
    let ids: Vec<&str> =
        r["chat"]["participants"].as_array().expect("p").iter().map(|p| p["id"].as_str().unwrap_or("")).collect();
    assert_eq!(ids, [alice_id.as_str(), bob_id.as_str()]);

    // Phase 2: outsiders can read nothing and send nothing: FORBIDDEN.
    assert_eq!(h.code(CHAT, json!({"id": chat}), Some(&carol)).await, "FORBIDDEN");
    assert_eq!(h.code(MESSAGES, json!({"c": chat}), Some(&carol)).await, "FORBIDDEN");
    assert_eq!(h.code(SEND, json!({"c": chat, "b": "hi", "k": "1"}), Some(&carol)).await, "FORBIDDEN");
    assert_eq!(h.code(ADD, json!({"c": chat, "u": [carol_id]}), Some(&carol)).await, "FORBIDDEN");
    assert_eq!(h.code(CHAT, json!({"id": chat}), None).await, "UNAUTHENTICATED");
    let req =
        Request::new(SUB).variables(Variables::from_json(json!({"c": chat}))).data(BearerToken(Some(carol.clone())));
    let resp = h.schema.execute_stream(req).next().await.expect("one response");
    assert_eq!(
        resp.errors[0].extensions.as_ref().and_then(|e| e.get("code")).map(|c| c.to_string()),
        Some("\"FORBIDDEN\"".into())
    );
    assert_eq!(h.ok(CHAT, json!({"id": "999"}), Some(&alice)).await["chat"], Value::Null, "no such chat");

    // Phase 3: any participant adds; only the owner removes others; anyone removes themself.
    assert_eq!(
        h.ok(ADD, json!({"c": chat, "u": [carol_id, dave_id]}), Some(&bob)).await["addParticipants"]
            ["participantCount"],
        4
    );
    assert_eq!(h.code(REMOVE, json!({"c": chat, "u": dave_id}), Some(&bob)).await, "FORBIDDEN");
    assert_eq!(
        h.ok(REMOVE, json!({"c": chat, "u": dave_id}), Some(&alice)).await["removeParticipant"]["participantCount"],
        3
    );
    assert_eq!(h.code(CHAT, json!({"id": chat}), Some(&dave)).await, "FORBIDDEN", "removed");
    assert_eq!(
        h.ok(REMOVE, json!({"c": chat, "u": carol_id}), Some(&carol)).await["removeParticipant"]["participantCount"],
        2
    );
    assert_eq!(h.code(ADD, json!({"c": chat, "u": ["424242"]}), Some(&alice)).await, "NOT_FOUND");

    // Phase 4: the owner leaves: ownership passes to the lowest remaining user id (bob).
    assert_eq!(h.ok(LEAVE, json!({"c": chat}), Some(&alice)).await["leaveChat"], true);
    let r = h.ok(CHAT, json!({"id": chat}), Some(&bob)).await;
    assert_eq!(r["chat"]["owner"]["id"], bob_id.as_str());
    assert_eq!(h.code(CHAT, json!({"id": chat}), Some(&alice)).await, "FORBIDDEN");
    assert_eq!(h.code(LEAVE, json!({"c": chat}), Some(&alice)).await, "FORBIDDEN", "not in it any more");

    // Phase 5: a user's chats are theirs to list.
    assert_eq!(h.code(CHATS_OF, json!({"u": bob_id}), Some(&carol)).await, "FORBIDDEN");
    let mine = h.ok(CHATS_OF, json!({"u": bob_id}), Some(&bob)).await;
    assert_eq!(mine["chatsOf"]["edges"][0]["node"]["name"], "Lunch");
    let _ = carol_id;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_are_bounded_deduplicated_and_paged_with_stable_cursors() {
    let h = one_node(SchemaConfig::default()).await;
    let (_, alice) = account(&h, "alice").await;
    let (bob_id, bob) = account(&h, "bob").await;
    let chat = h.ok(CREATE, json!({"n": "c", "p": [bob_id]}), Some(&alice)).await["createChat"]["id"]
        .as_str()
        .expect("id")
        .to_string();

    // Phase 1: bodies of 1 to 4000 characters; outside that, INVALID_INPUT naming `body`.
    assert_eq!(
        field_of(&h, SEND, json!({"c": chat, "b": "", "k": "e"}), &alice).await,
        ("INVALID_INPUT".into(), Some("body".into()))
    );
    let too_long = "é".repeat(MESSAGE_BODY_CHARS_MAX + 1);
    assert_eq!(
        field_of(&h, SEND, json!({"c": chat, "b": too_long, "k": "e"}), &alice).await,
        ("INVALID_INPUT".into(), Some("body".into()))
    );
    let longest = "é".repeat(MESSAGE_BODY_CHARS_MAX);
    let m = h.ok(SEND, json!({"c": chat, "b": longest, "k": "long"}), Some(&alice)).await;
    assert_eq!(m["sendMessage"]["seq"], 1, "4000 characters (8000 bytes) is allowed");

    // Phase 2: a repeated clientMessageId from the same sender returns the first message; the
    // same key from another sender is another message.
    let first = h.ok(SEND, json!({"c": chat, "b": "hello", "k": "k1"}), Some(&alice)).await;
    let again = h.ok(SEND, json!({"c": chat, "b": "hello (retry)", "k": "k1"}), Some(&alice)).await;
    assert_eq!(first["sendMessage"], again["sendMessage"], "the first message, not a duplicate");
    let other = h.ok(SEND, json!({"c": chat, "b": "hi", "k": "k1"}), Some(&bob)).await;
    assert_ne!(other["sendMessage"]["id"], first["sendMessage"]["id"]);
    for i in 4..=10 {
        h.ok(SEND, json!({"c": chat, "b": format!("m{i}"), "k": format!("k{i}")}), Some(&bob)).await;
    }
    let count = h.ok(CHAT, json!({"id": chat}), Some(&alice)).await["chat"]["messageCount"].clone();
    assert_eq!(count, 10, "the retry added nothing");

    // Phase 3: `first`/`after` page forward, newest last; the cursors walk all ten once.
    let mut seqs = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let d = h.ok(MESSAGES, json!({"c": chat, "f": 3, "a": after}), Some(&bob)).await;
        let conn = &d["messages"];
        seqs.extend(conn["edges"].as_array().expect("edges").iter().map(|e| e["node"]["seq"].as_u64().expect("seq")));
        after = conn["pageInfo"]["endCursor"].as_str().map(str::to_string);
        if conn["pageInfo"]["hasNextPage"] != true {
            break;
        }
    }
    assert_eq!(seqs, (1..=10).collect::<Vec<u64>>());

    // Phase 4: `last`/`before` page back from the newest; a cursor still names the same
    // message after more are sent.
    let d = h.ok(MESSAGES, json!({"c": chat, "l": 3}), Some(&bob)).await;
    let tail: Vec<u64> =
        d["messages"]["edges"].as_array().expect("e").iter().map(|e| e["node"]["seq"].as_u64().expect("s")).collect();
    assert_eq!(tail, [8, 9, 10]);
    assert_eq!(d["messages"]["pageInfo"]["hasPreviousPage"], true);
    let before = d["messages"]["pageInfo"]["startCursor"].as_str().expect("cursor").to_string();
    h.ok(SEND, json!({"c": chat, "b": "later", "k": "k11"}), Some(&alice)).await;
    let d = h.ok(MESSAGES, json!({"c": chat, "l": 2, "b": before}), Some(&bob)).await;
    let prev: Vec<u64> =
        d["messages"]["edges"].as_array().expect("e").iter().map(|e| e["node"]["seq"].as_u64().expect("s")).collect();
    assert_eq!(prev, [6, 7]);
    assert_eq!(h.code(MESSAGES, json!({"c": chat, "f": 2, "l": 2}), Some(&bob)).await, "INVALID_INPUT");
    assert_eq!(h.code(MESSAGES, json!({"c": chat, "a": "nope"}), Some(&bob)).await, "INVALID_INPUT");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chats_of_reads_its_page_from_the_index_without_a_scan() {
    let h = one_node(SchemaConfig::default()).await;
    let (alice_id, alice) = account(&h, "alice").await;
    let (bob_id, _) = account(&h, "bob").await;
    let alice_n: u64 = alice_id.parse().expect("id");
    let bob_n: u64 = bob_id.parse().expect("id");

    // Phase 1: alice is in 12 chats; bob alone creates many more that alice is not in, in
    // between hers, so her index rows are interleaved with others' chat ids.
    let mut rows_read = Vec::new();
    for round in 0..3 {
        let mut sends = Vec::new();
        for i in 0..4 {
            sends.push(h.store.propose(Command::CreateChat {
                actor: alice_n,
                name: format!("a{round}{i}"),
                participant_ids: vec![],
            }));
        }
        for r in futures::future::join_all(sends).await {
            assert!(matches!(r, Ok(Response::Chat(_))), "{r:?}");
        }
        let mut others = Vec::new();
        for i in 0..(100 * (round + 1)) {
            others.push(h.store.propose(Command::CreateChat {
                actor: bob_n,
                name: format!("b{round}{i}"),
                participant_ids: vec![],
            }));
        }
        for r in futures::future::join_all(others).await {
            assert!(matches!(r, Ok(Response::Chat(_))), "{r:?}");
        }

        // Phase 2: a page of 3 (asked as 3 + 1, to know whether there is a next page) reads
        // exactly 4 index rows, whether 100 or 600 other chats exist.
        let page = h.store.read(Consistency::Local, |v| v.chats_of(alice_n, 0, 4)).await.expect("read").value;
        assert_eq!(page.items.len(), 4);
        assert!(page.items.iter().all(|c| c.owner_id == alice_n));
        rows_read.push(page.rows_read);
    }
    assert_eq!(rows_read, [4, 4, 4], "the cost of a page is its size, not the number of chats");

    // Phase 3: through GraphQL, the pages walk alice's 12 chats once, in order.
    let mut names = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let d = h.ok(CHATS_OF, json!({"u": alice_id, "f": 5, "a": after}), Some(&alice)).await;
        let edges = d["chatsOf"]["edges"].as_array().expect("edges").clone();
        after = edges.last().and_then(|e| e["cursor"].as_str()).map(str::to_string);
        names.extend(edges.iter().map(|e| e["node"]["name"].as_str().unwrap_or("").to_string()));
        if d["chatsOf"]["pageInfo"]["hasNextPage"] != true {
            break;
        }
    }
    assert_eq!(names.len(), 12, "{names:?}");
    assert!(names.iter().all(|n| n.starts_with('a')));
}

fn subscribe(h: &Harness, chat: &str, after: Option<u64>, token: &str) -> impl Stream<Item = async_graphql::Response> {
    let req = Request::new(SUB)
        .variables(Variables::from_json(json!({"c": chat, "a": after})))
        .data(BearerToken(Some(token.to_string())));
    h.schema.execute_stream(req)
}

async fn next_event(s: &mut (impl Stream<Item = async_graphql::Response> + Unpin)) -> Value {
    let item = tokio::time::timeout(Duration::from_secs(5), s.next()).await.expect("event in time").expect("item");
    assert!(item.errors.is_empty(), "{:?}", item.errors);
    item.data.into_json().expect("json")["chatMessages"].clone()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_messages_stream_live_resume_after_an_index_and_stop_on_removal() {
    let h = one_node(SchemaConfig::default()).await;
    let (alice_id, alice) = account(&h, "alice").await;
    let (bob_id, bob) = account(&h, "bob").await;
    let chat = h.ok(CREATE, json!({"n": "c", "p": [bob_id]}), Some(&alice)).await["createChat"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    let other = h.ok(CREATE, json!({"n": "other", "p": []}), Some(&alice)).await["createChat"]["id"]
        .as_str()
        .expect("id")
        .to_string();

    // Phase 1: without afterIndex, live messages only, in order, with sender and index; another
    // chat's messages never appear. A stream starts when first polled, so it runs in a task
    // and a warm-up message is repeated until it arrives: from then on it is certainly live.
    let (tx, mut live) = tokio::sync::mpsc::channel(64);
    let stream = subscribe(&h, &chat, None, &bob);
    tokio::spawn(async move {
        let mut stream = Box::pin(stream);
        while let Some(item) = stream.next().await {
            if tx.send(item).await.is_err() {
                break;
            }
        }
    });
    let mut warmups = 0;
    loop {
        h.ok(SEND, json!({"c": chat, "b": "warm-up", "k": format!("w{warmups}")}), Some(&alice)).await;
        warmups += 1;
        if let Ok(Some(first)) = tokio::time::timeout(Duration::from_millis(200), live.recv()).await {
            assert!(first.errors.is_empty(), "{:?}", first.errors);
            break;
        }
    }
    // The warm-ups sent while the first was in flight may still arrive: skip them.
    let mut live = futures::stream::poll_fn(move |cx| live.poll_recv(cx))
        .filter(|r| {
            let warm = r.data.clone().into_json().map(|d| d["chatMessages"]["message"]["body"] == "warm-up");
            futures::future::ready(!warm.unwrap_or(false))
        })
        .boxed();
    for i in 0..5 {
        h.ok(SEND, json!({"c": other, "b": "elsewhere", "k": format!("o{i}")}), Some(&alice)).await;
        h.ok(SEND, json!({"c": chat, "b": format!("m{i}"), "k": format!("k{i}")}), Some(&alice)).await;
    }
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(next_event(&mut live).await);
    }
    let bodies: Vec<&str> = seen.iter().map(|e| e["message"]["body"].as_str().unwrap_or("")).collect();
    assert_eq!(bodies, ["m0", "m1", "m2", "m3", "m4"]);
    assert!(seen.iter().all(|e| e["message"]["sender"]["id"] == alice_id.as_str()));
    let indexes: Vec<u64> = seen.iter().map(|e| e["index"].as_u64().expect("index")).collect();
    assert!(indexes.windows(2).all(|w| w[0] < w[1]), "{indexes:?}");

    // Phase 2: resuming after an index replays exactly the messages after it, then live ones.
    let mut resumed = Box::pin(subscribe(&h, &chat, Some(indexes[1]), &bob));
    let replay: Vec<u64> =
        [next_event(&mut resumed).await, next_event(&mut resumed).await, next_event(&mut resumed).await]
            .iter()
            .map(|e| e["index"].as_u64().expect("i"))
            .collect();
    assert_eq!(replay, indexes[2..]);
    h.ok(SEND, json!({"c": chat, "b": "after resume", "k": "k5"}), Some(&alice)).await;
    assert_eq!(next_event(&mut resumed).await["message"]["body"], "after resume");
    assert_eq!(next_event(&mut live).await["message"]["body"], "after resume");

    // Phase 3: a participant who is removed stops receiving: the stream ends with FORBIDDEN.
    h.ok(REMOVE, json!({"c": chat, "u": bob_id}), Some(&alice)).await;
    h.ok(SEND, json!({"c": chat, "b": "secret", "k": "k6"}), Some(&alice)).await;
    let item = tokio::time::timeout(Duration::from_secs(5), live.next()).await.expect("in time").expect("item");
    assert_eq!(
        item.errors.first().and_then(|e| e.extensions.as_ref()).and_then(|e| e.get("code")).map(|c| c.to_string()),
        Some("\"FORBIDDEN\"".into()),
        "{item:?}"
    );
}
