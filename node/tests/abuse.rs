//! The abuse suite: real node processes attacked as docs/SECURITY.md says an attacker would,
//! each attack answered with a stable code, and the cluster still writable afterwards with no
//! election and nothing acknowledged lost.
//!
//! Speed is not asserted here (bench/abuse.sh measures legitimate writes' p99 during the
//! attacks); waits are generous upper bounds that only catch a hang.

mod support;

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use support::{Cluster, LOGIN, REGISTER, RESERVE, SECRET};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(15);
/// The production defaults of the limits the test support otherwise turns off.
const PRODUCTION: [&str; 4] = ["--rate-limit-per-sec", "2000", "--reservations-per-client-per-hour", "100"];

async fn ws(addr: &str) -> Result<Ws, tokio_tungstenite::tungstenite::Error> {
    let mut request = format!("ws://{addr}/graphql").into_client_request().expect("request");
    request.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static("graphql-transport-ws"));
    tokio_tungstenite::connect_async(request).await.map(|(socket, _)| socket)
}

async fn send(socket: &mut Ws, message: Value) {
    socket.send(Message::Text(message.to_string().into())).await.expect("send");
}

/// The next JSON message, or None when the socket ends (a close, an error, or a reset).
async fn recv(socket: &mut Ws) -> Option<Value> {
    loop {
        match tokio::time::timeout(WAIT, socket.next()).await.expect("a message or an end in time") {
            Some(Ok(Message::Text(t))) => return Some(serde_json::from_str(&t).expect("JSON")),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            _ => return None,
        }
    }
}

/// An acknowledged graphql-transport-ws socket, signed in with `token` if given.
async fn ws_ready(addr: &str, token: Option<&str>) -> Ws {
    let mut socket = ws(addr).await.expect("upgrade");
    let payload = token.map_or(json!({}), |t| json!({ "Authorization": format!("Bearer {t}") }));
    send(&mut socket, json!({ "type": "connection_init", "payload": payload })).await;
    assert_eq!(recv(&mut socket).await.expect("ack")["type"], "connection_ack");
    socket
}

fn code(v: &Value) -> &str {
    v["errors"][0]["extensions"]["code"].as_str().unwrap_or("")
}

async fn post(c: &Cluster, i: usize, body: Value, token: Option<&str>) -> Value {
    let mut req = c.http.post(c.url(i)).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    req.send().await.expect("an answer").json().await.expect("JSON")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64
}

/// (term, leader index) as node `i` sees it.
async fn term(c: &Cluster, i: usize) -> u64 {
    c.status(i).await.expect("status")["term"].as_u64().expect("term")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_anonymous_attacker_neither_stops_the_cluster_nor_gets_oversized_input_in() {
    let c = Cluster::start(3, &PRODUCTION);
    let leader = c.wait_ready(Duration::from_secs(30)).await;
    let follower = (0..3).find(|i| *i != leader).expect("a follower");
    let term_before = term(&c, leader).await;
    let (d, e) = c.gql(follower, REGISTER, json!({"u": "victim", "p": "correct horse battery"}), None).await;
    assert_eq!(e, None, "{d}");

    // Phase 1: a 30 MiB WebSocket message (the attack that used to stop the cluster) is cut
    // off by the socket's limit, the same as an HTTP body's; nothing is proposed.
    let mut socket = ws_ready(&c.nodes[follower].addr, None).await;
    let huge = "x".repeat(30 * 1024 * 1024);
    let subscribe = json!({ "type": "subscribe", "id": "1", "payload": {
        "query": REGISTER.replace("username:$u", "username:$u, reservationToken:$t").replace("$p:String!)", "$p:String!,$t:String)"),
        "variables": { "u": "squatter", "p": "password123", "t": huge } } });
    let _ = socket.send(Message::Text(subscribe.to_string().into())).await;
    assert_eq!(recv(&mut socket).await, None, "the socket ends without running the operation");
    drop(socket);

    // Phase 2: under the body limit, a string argument over its byte limit is refused before
    // anything is hashed or proposed, as a variable and as a literal.
    let token = "t".repeat(64 * 1024);
    let q = "mutation($t:String){ register(input:{username:\"squatter\",password:\"password123\",reservationToken:$t}){ token } }";
    let v = post(&c, follower, json!({ "query": q, "variables": { "t": token } }), None).await;
    assert_eq!(code(&v), "INVALID_INPUT", "{v}");
    assert!(v["errors"][0]["message"].as_str().unwrap_or("").contains("bytes"), "{v}");
    let literal = format!("{{ usernameAvailability(name:\"{}\"){{ status }} }}", "n".repeat(40 * 1024));
    let v = post(&c, follower, json!({ "query": literal }), None).await;
    assert_eq!(code(&v), "INVALID_INPUT", "{v}");

    // Phase 3: one grapheme carrying thousands of combining marks is one "character" but not a
    // short tweet.
    let (d, _) = c.gql(follower, REGISTER, json!({"u": "mallory", "p": "mallory-password"}), None).await;
    let mallory = d["register"]["token"].as_str().expect("token").to_string();
    let zalgo = format!("e{}", "\u{301}".repeat(10_000));
    let v = post(
        &c,
        follower,
        json!({ "query": "mutation($b:String!){ postTweet(body:$b){ id } }", "variables": { "b": zalgo } }),
        Some(&mallory),
    )
    .await;
    assert_eq!(code(&v), "INVALID_INPUT", "{v}");

    // Phase 4: 500 aliased logins in one request are refused whole: not one password is tried.
    let aliases: String =
        (0..500).map(|i| format!("a{i}: login(username:\"victim\", password:\"guess{i:04}\"){{ token }} ")).collect();
    let v = post(&c, follower, json!({ "query": format!("mutation {{ {aliases} }}") }), None).await;
    assert_eq!(code(&v), "INVALID_INPUT", "{v}");
    assert!(v["data"].is_null(), "{v}");

    // Phase 5: guessing one account's password: a few wrong answers, then RATE_LIMITED with a
    // retry hint, even for the right password (which must not be told apart while refused).
    for i in 0..5 {
        let (_, e) = c.gql(follower, LOGIN, json!({"u": "victim", "p": format!("wrong-{i}-password")}), None).await;
        assert_eq!(e.as_deref(), Some("UNAUTHENTICATED"), "guess {i}");
    }
    let v =
        post(&c, follower, json!({ "query": LOGIN, "variables": {"u": "victim", "p": "correct horse battery"} }), None)
            .await;
    assert_eq!(code(&v), "RATE_LIMITED", "{v}");
    assert!(v["errors"][0]["extensions"]["retryAfterMs"].as_u64().unwrap_or(0) > 0, "{v}");
    // Another node has its own count: the owner signs in there (docs/SECURITY.md says why this
    // is per node).
    let (_, e) = c.gql(leader, LOGIN, json!({"u": "victim", "p": "correct horse battery"}), None).await;
    assert_eq!(e, None);

    // Phase 6: /raft/ answers an unsigned request from its headers alone: the 50 MiB body it
    // announces is never sent, and the 401 comes anyway.
    let mut raw = tokio::net::TcpStream::connect(&c.nodes[follower].addr).await.expect("connect");
    let head = format!(
        "POST /raft/append HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        c.nodes[follower].addr,
        50 * 1024 * 1024
    );
    raw.write_all(head.as_bytes()).await.expect("headers");
    let mut answer = vec![0u8; 64];
    let n = tokio::time::timeout(WAIT, raw.read(&mut answer)).await.expect("an answer before any body").expect("read");
    let answer = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");

    // Phase 7: a forwarded proposal stamped ten hours ahead (a peer with a broken clock) is
    // clamped to the leader's clock: its reservation does not end ten hours late.
    let at = now_ms() + 10 * 3600 * 1000;
    let batch = raft::Batch(vec![raft::Proposal {
        at_ms: at,
        command: raft::Command::ReserveUsername {
            name: "skewed".into(),
            canonical: raft::model::names::canonical("skewed"),
            token: "t0k3n".into(),
            ttl_ms: 60_000,
        },
    }]);
    let body = serde_json::to_vec(&batch).expect("encode");
    let leader_id = c.nodes[leader].id;
    let signature = raft::PeerAuth::new(SECRET.as_bytes(), 0).sign("forward", leader_id, &body, now_ms());
    let url = format!("http://{}/raft/forward", c.nodes[leader].addr);
    let resp = c.http.post(&url).header("x-raft-signature", signature).body(body).send().await.expect("forward");
    assert_eq!(resp.status(), 200);
    let answer: Value = resp.json().await.expect("JSON");
    let expires = answer["Ok"]["responses"][0]["Reserved"]["expires_at_ms"].as_i64().expect("reserved");
    assert!(expires <= now_ms() + 60_000 + raft::FORWARDED_CLOCK_SKEW_MAX_MS + 5_000, "{answer}");

    // After it all: the same leader and term (no election), every node takes writes, and the
    // accounts acknowledged before the attacks are there.
    assert_eq!(term(&c, leader).await, term_before, "no election during the attacks");
    for i in 0..3 {
        let (_, e) = c.gql(i, RESERVE, json!({"n": format!("after{i}")}), None).await;
        assert_eq!(e, None, "node {i} takes writes");
    }
    for name in ["victim", "mallory"] {
        let (d, _) = c
            .gql(
                leader,
                "query($n:String!){ user(username:$n, consistency:LINEARIZABLE){ id } }",
                json!({"n": name}),
                None,
            )
            .await;
        assert!(d["user"]["id"].is_string(), "{name} is still there: {d}");
    }
    let (d, _) = c.gql(leader, "{ usernameAvailability(name:\"squatter\"){ status } }", json!({}), None).await;
    assert_eq!(d["usernameAvailability"]["status"], "AVAILABLE", "no oversized register got through");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn limits_hold_the_same_over_websocket_as_over_http() {
    let limits =
        ["--rate-limit-per-sec", "100", "--ws-sockets-per-client", "3", "--reservations-per-client-per-hour", "3"];
    let c = Cluster::start(1, &limits);
    c.wait_ready(Duration::from_secs(30)).await;
    let addr = c.nodes[0].addr.clone();
    let cheap = json!({ "query": "{ cluster { nodeId } }" });

    // Phase 0: an anonymous client reserves a few names, not every name it likes.
    for i in 0..3 {
        let (_, e) = c.gql(0, RESERVE, json!({"n": format!("held{i}")}), None).await;
        assert_eq!(e, None, "reservation {i}");
    }
    let v = post(&c, 0, json!({ "query": RESERVE, "variables": {"n": "held3"} }), None).await;
    assert_eq!(code(&v), "RATE_LIMITED", "{v}");
    tokio::time::sleep(Duration::from_secs(2)).await;

    // Phase 1: over HTTP, a burst past the budget (200 units) is refused with a retry hint.
    let mut refused = None;
    for _ in 0..400 {
        let v = post(&c, 0, cheap.clone(), None).await;
        if code(&v) == "RATE_LIMITED" {
            refused = Some(v);
            break;
        }
    }
    let refused = refused.expect("a burst past the budget is refused");
    assert!(refused["errors"][0]["extensions"]["retryAfterMs"].as_u64().unwrap_or(0) > 0, "{refused}");

    // The bucket refills (an upgrade costs a subscription's 10 units too).
    tokio::time::sleep(Duration::from_secs(2)).await;
    // Phase 2: the same client over a WebSocket shares that budget: queries sent as
    // `subscribe` are refused too, each with an `error` of the same code.
    let mut socket = ws_ready(&addr, None).await;
    let mut codes = Vec::new();
    for i in 0..400 {
        send(&mut socket, json!({ "type": "subscribe", "id": i.to_string(), "payload": cheap })).await;
    }
    while codes.len() < 400 {
        let m = recv(&mut socket).await.expect("a message per operation");
        match m["type"].as_str() {
            Some("next") => codes.push(code(&m["payload"]).to_string()),
            Some("error") => codes.push(m["payload"][0]["extensions"]["code"].as_str().unwrap_or("").to_string()),
            _ => {}
        }
    }
    assert!(codes.iter().any(|c| c == "RATE_LIMITED"), "some of 400 queries over one socket are refused");
    assert!(codes.iter().all(|c| c.is_empty() || c == "RATE_LIMITED"), "{codes:?}");

    // Phase 2b: a body that trickles in a byte at a time is cut off with a coded error once
    // its time is up, rather than hold the connection for as long as the client likes; and so
    // are headers that trickle in (slowloris), which get no answer at all.
    let slow_headers = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let (mut slow_reader, mut slow_writer) = slow_headers.into_split();
    let header_trickle = tokio::spawn(async move {
        for b in b"POST /graphql HTTP/1.1\r\nhost: x\r\nx-slow: ".iter().chain(std::iter::repeat(&b'a')) {
            if slow_writer.write_all(&[*b]).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let raw = tokio::net::TcpStream::connect(&addr).await.expect("connect");
    let (mut reader, mut writer) = raw.into_split();
    let head = format!(
        "POST /graphql HTTP/1.1\r\nhost: {addr}\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n"
    );
    writer.write_all(head.as_bytes()).await.expect("headers");
    let trickle = tokio::spawn(async move {
        while writer.write_all(b" ").await.is_ok() {
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(Duration::from_secs(30), reader.read(&mut answer))
        .await
        .expect("an answer before the trickle ends")
        .expect("read");
    trickle.abort();
    let answer = String::from_utf8_lossy(&answer[..n]).to_string();
    assert!(answer.contains("INVALID_INPUT") && answer.contains("did not arrive"), "{answer}");
    let mut rest = vec![0u8; 1024];
    let closed = tokio::time::timeout(Duration::from_secs(30), slow_reader.read(&mut rest)).await;
    header_trickle.abort();
    let served = closed.expect("the slow headers' connection is closed in time");
    assert!(!matches!(served, Ok(n) if n > 0 && rest.starts_with(b"HTTP/1.1 200")), "slow headers were served");

    // Phase 3: three sockets per client; a fourth is refused before the upgrade, for the cap
    // and not for the rate (the bucket has refilled meanwhile).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let _second = ws(&addr).await.expect("second socket");
    let _third = ws(&addr).await.expect("third socket");
    match ws(&addr).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 429);
            let body = String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).to_string();
            assert!(body.contains("WebSockets open"), "{body}");
        }
        other => panic!("a fourth socket must be refused with 429, got {:?}", other.map(|_| ())),
    }
    drop(socket);
    // A closed socket gives its place back.
    let deadline = std::time::Instant::now() + WAIT;
    while ws(&addr).await.is_err() {
        assert!(std::time::Instant::now() < deadline, "a closed socket's place comes back");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscriptions_are_capped_per_socket_and_end_when_the_account_goes() {
    let c = Cluster::start(1, &PRODUCTION);
    c.wait_ready(Duration::from_secs(30)).await;
    let addr = c.nodes[0].addr.clone();
    let (d, e) = c.gql(0, REGISTER, json!({"u": "subscriber", "p": "subscriber-password"}), None).await;
    assert_eq!(e, None, "{d}");
    let token = d["register"]["token"].as_str().expect("token").to_string();

    // Phase 1: one socket runs at most 100 operations; the 101st is refused with RATE_LIMITED,
    // and the 100 keep running.
    let mut socket = ws_ready(&addr, Some(&token)).await;
    let timeline = json!({ "query": "subscription { timelineUpdates { index tweet { body } } }" });
    for i in 0..101 {
        send(&mut socket, json!({ "type": "subscribe", "id": format!("t{i}"), "payload": timeline })).await;
    }
    let m = recv(&mut socket).await.expect("an answer");
    assert_eq!((m["type"].as_str(), m["id"].as_str()), (Some("error"), Some("t100")), "{m}");
    assert_eq!(m["payload"][0]["extensions"]["code"], "RATE_LIMITED", "{m}");
    for i in 0..101 {
        send(&mut socket, json!({ "type": "complete", "id": format!("t{i}") })).await;
    }

    // Phase 2: a chat subscription ends with UNAUTHENTICATED when its account is deleted.
    let (d, e) = c.gql(0, "mutation { createChat(name:\"mine\"){ id } }", json!({}), Some(&token)).await;
    assert_eq!(e, None, "{d}");
    let chat = d["createChat"]["id"].as_str().expect("chat id").to_string();
    let q = json!({ "query": "subscription($c:ID!){ chatMessages(chatId:$c){ index } }", "variables": { "c": chat } });
    send(&mut socket, json!({ "type": "subscribe", "id": "chat", "payload": q })).await;
    // The subscription is live once a message of ours arrives on it (one sent before it
    // started is not live news: send until one comes through).
    let send_message = "mutation($c:ID!,$m:String!){ sendMessage(chatId:$c, body:\"hi\", clientMessageId:$m){ id } }";
    'live: for attempt in 0..50 {
        let (_, e) = c.gql(0, send_message, json!({"c": chat, "m": format!("m{attempt}")}), Some(&token)).await;
        assert_eq!(e, None);
        while let Ok(m) = tokio::time::timeout(Duration::from_millis(300), recv(&mut socket)).await {
            let m = m.expect("the socket stays open");
            if m["id"] == "chat" && m["type"] == "next" {
                break 'live;
            }
        }
        assert!(attempt < 49, "the chat subscription never delivered");
    }
    let (_, e) = c.gql(0, "mutation { deleteAccount }", json!({}), Some(&token)).await;
    assert_eq!(e, None);
    loop {
        let m = recv(&mut socket).await.expect("the subscription's end");
        if m["id"] == "chat" {
            assert_eq!(m["type"], "error", "{m}");
            assert_eq!(m["payload"][0]["extensions"]["code"], "UNAUTHENTICATED", "{m}");
            break;
        }
    }
}
