//! Where the node meets tools it did not write, on three real node processes: the embedded
//! GraphiQL and its assets, the standard introspection query on every node over HTTP and both
//! WebSocket protocols, `/schema.graphql`, both WebSocket protocols message by message (as
//! their specifications have them, whatever order a client offers them in), CORS, automatic
//! persisted queries over POST and GET, read-only GET, and the GraphQL-over-HTTP media types.
//!
//! Third-party client libraries and a real browser drive the same surface in `tests/interop/`.

mod support;

use std::time::Duration;

use futures::{SinkExt as _, StreamExt as _};
use serde_json::{json, Value};
use support::Cluster;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::Message;

const INTROSPECTION_FULL: &str = include_str!("fixtures/introspection-full.graphql");
const INTROSPECTION_PLAIN: &str = include_str!("fixtures/introspection-plain.graphql");
/// Upper bound on waiting for one WebSocket message; the tests never assert speed.
const WS_TIMEOUT: Duration = Duration::from_secs(10);

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Opens `/graphql` offering `protocols` (in that order); returns the socket and the protocol
/// the handshake answered.
async fn ws(addr: &str, protocols: &str) -> (Ws, String) {
    let mut request = format!("ws://{addr}/graphql").into_client_request().expect("request");
    request.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_str(protocols).expect("header"));
    let (socket, response) = tokio_tungstenite::connect_async(request).await.expect("upgrade");
    let chosen = response.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).unwrap_or("").into();
    (socket, chosen)
}

async fn send(socket: &mut Ws, message: Value) {
    socket.send(Message::Text(message.to_string().into())).await.expect("send");
}

/// The next JSON message; panics on a close or a timeout.
async fn recv(socket: &mut Ws) -> Value {
    loop {
        match tokio::time::timeout(WS_TIMEOUT, socket.next()).await.expect("a message in time") {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(&t).expect("JSON"),
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a message, got {other:?}"),
        }
    }
}

/// The next message of a type other than the legacy keep-alive.
async fn recv_skipping_ka(socket: &mut Ws) -> Value {
    loop {
        let m = recv(socket).await;
        if m["type"] != "ka" {
            return m;
        }
    }
}

/// The close code the server ends the socket with.
async fn close_code(socket: &mut Ws) -> u16 {
    loop {
        match tokio::time::timeout(WS_TIMEOUT, socket.next()).await.expect("a close in time") {
            Some(Ok(Message::Close(Some(frame)))) => return frame.code.into(),
            Some(Ok(Message::Close(None))) | None | Some(Err(_)) => return 1005,
            Some(Ok(_)) => continue,
        }
    }
}

async fn post(c: &Cluster, i: usize, body: Value, accept: Option<&str>) -> (u16, String, Value) {
    let mut req = c.http.post(c.url(i)).json(&body);
    if let Some(a) = accept {
        req = req.header("accept", a);
    }
    let resp = req.send().await.expect("an answer");
    let status = resp.status().as_u16();
    let ct = resp.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("").to_string();
    (status, ct, resp.json().await.unwrap_or(Value::Null))
}

async fn get(c: &Cluster, i: usize, params: &[(&str, String)]) -> (u16, Option<String>, Value) {
    let resp = c.http.get(c.url(i)).query(params).send().await.expect("an answer");
    let status = resp.status().as_u16();
    let allow = resp.headers().get("allow").and_then(|v| v.to_str().ok()).map(str::to_string);
    (status, allow, resp.json().await.unwrap_or(Value::Null))
}

fn sha256_hex(text: &str) -> String {
    use sha2::{Digest, Sha256};
    Sha256::digest(text.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

/// The names of the types an introspection answer lists.
fn type_names(data: &Value) -> Vec<String> {
    data["__schema"]["types"]
        .as_array()
        .map(|ts| ts.iter().filter_map(|t| t["name"].as_str().map(String::from)).collect())
        .unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tools_people_already_use_work_against_every_node() {
    let cluster = Cluster::start(3, &["--cors-origins", "http://app.example"]);
    cluster.wait_ready(Duration::from_secs(30)).await;
    let addr = |i: usize| cluster.nodes[i].addr.clone();
    // A sale to subscribe to (the first account is the admin who may create one).
    let (d, e) = cluster.gql(0, support::REGISTER, json!({ "u": "boss", "p": "boss password 1" }), None).await;
    assert_eq!(e, None, "register");
    let admin = d["register"]["token"].as_str().expect("token").to_string();
    let (d, e) = cluster
        .gql(
            0,
            "mutation { createProduct(input: { name: \"Sneaker\", priceCents: 100 }) { id } }",
            json!({}),
            Some(&admin),
        )
        .await;
    assert_eq!(e, None, "createProduct");
    let product = d["createProduct"]["id"].as_str().expect("id").to_string();
    let create = "mutation($p: ID!) { createSale(input: { productId: $p, stock: 5, perUserLimit: 1 }) { id } }";
    let (d, e) = cluster.gql(0, create, json!({ "p": product }), Some(&admin)).await;
    assert_eq!(e, None, "createSale");
    let sale = d["createSale"]["id"].as_str().expect("id").to_string();
    let sub = format!("subscription {{ saleUpdates(saleId: \"{sale}\") {{ index stock }} }}");

    // Phase 1: GraphiQL. The page and every asset it names come from the node, with their
    // content types; nothing it references is on another host.
    let page = cluster.http.get(format!("http://{}/", addr(0))).send().await.expect("page");
    assert_eq!(page.headers()["content-type"], "text/html; charset=utf-8");
    let html = page.text().await.expect("html");
    assert!(html.contains("GraphiQL.createFetcher"), "the page mounts GraphiQL");
    let assets: Vec<&str> = html.split('"').filter(|s| s.starts_with("/assets/graphiql/")).collect();
    assert_eq!(assets.len(), 4, "four assets: {assets:?}");
    for path in assets {
        let resp = cluster.http.get(format!("http://{}{path}", addr(1))).send().await.expect("asset");
        assert_eq!(resp.status(), 200, "{path}");
        let ct = resp.headers()["content-type"].to_str().expect("ct").to_string();
        assert!(ct.starts_with(if path.ends_with(".css") { "text/css" } else { "text/javascript" }), "{path}: {ct}");
        assert!(resp.bytes().await.expect("bytes").len() > 1_000, "{path} is the real file");
    }
    let missing = cluster.http.get(format!("http://{}/assets/graphiql/nope.js", addr(0))).send().await.expect("404");
    assert_eq!(missing.status(), 404);

    // Phase 2: standard introspection, as graphql-js writes it, on every node: it passes the
    // limits (depth 14 with the `ofType` chain), while an ordinary query as deep is refused,
    // and introspection has its own bound.
    for i in 0..3 {
        for doc in [INTROSPECTION_FULL, INTROSPECTION_PLAIN] {
            let (status, _, body) = post(&cluster, i, json!({ "query": doc }), None).await;
            assert_eq!(status, 200);
            assert!(body["errors"].is_null(), "introspection on node {}: {body}", i + 1);
            let names = type_names(&body["data"]);
            assert!(names.iter().any(|n| n == "Query") && names.iter().any(|n| n == "Mutation"), "{names:?}");
        }
    }
    let nested = "{ sale(id: \"1\") { product { id } } }".to_string();
    let (_, _, body) = post(&cluster, 0, json!({ "query": nested }), None).await;
    assert!(body["errors"].is_null(), "an ordinary shallow query still runs: {body}");
    let deep = format!("{{ __schema {{ types {{ {}name{} }} }} }}", "ofType { ".repeat(25), " }".repeat(25));
    let (_, _, body) = post(&cluster, 0, json!({ "query": deep }), None).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "INVALID_INPUT", "introspection past its own depth: {body}");
    let mixed = format!("{{ usernameAvailability(name: \"x\") {{ status }} {} }}", &deep[1..deep.len() - 1]);
    let (_, _, body) = post(&cluster, 0, json!({ "query": mixed }), None).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "INVALID_INPUT", "a mixed request keeps the normal limits");

    // Phase 3: the SDL, for codegen, the same on every node.
    let sdl0 = cluster.http.get(format!("http://{}/schema.graphql", addr(0))).send().await.expect("sdl");
    assert!(sdl0.headers()["content-type"].to_str().expect("ct").starts_with("text/plain"));
    let sdl0 = sdl0.text().await.expect("text");
    assert!(sdl0.contains("type Query") && sdl0.contains("usernameAvailability"), "an SDL");
    let sdl2 = cluster.http.get(format!("http://{}/schema.graphql", addr(2))).send().await.expect("sdl");
    assert_eq!(sdl2.text().await.expect("text"), sdl0);

    // Phase 4: graphql-transport-ws, whichever order the protocols are offered in.
    for offered in ["graphql-transport-ws", "graphql-transport-ws, graphql-ws"] {
        let (mut s, chosen) = ws(&addr(1), offered).await;
        assert_eq!(chosen, "graphql-transport-ws", "offered {offered}");
        send(&mut s, json!({ "type": "ping", "payload": { "n": 1 } })).await;
        assert_eq!(recv(&mut s).await, json!({ "type": "pong", "payload": { "n": 1 } }), "ping before init");
        send(&mut s, json!({ "type": "connection_init", "payload": {} })).await;
        assert_eq!(recv(&mut s).await["type"], "connection_ack");
        // A query: one `next`, then `complete`.
        send(&mut s, json!({ "id": "q", "type": "subscribe", "payload": { "query": INTROSPECTION_FULL } })).await;
        let next = recv(&mut s).await;
        assert_eq!((next["type"].as_str(), next["id"].as_str()), (Some("next"), Some("q")), "{next}");
        assert!(!type_names(&next["payload"]["data"]).is_empty(), "introspection over WebSocket");
        assert_eq!(recv(&mut s).await, json!({ "type": "complete", "id": "q" }));
        // A validation error: `error` with the HTTP code, and nothing after it for that id.
        send(&mut s, json!({ "id": "bad", "type": "subscribe", "payload": { "query": "{ nope }" } })).await;
        let error = recv(&mut s).await;
        assert_eq!((error["type"].as_str(), error["id"].as_str()), (Some("error"), Some("bad")), "{error}");
        assert_eq!(error["payload"][0]["extensions"]["code"], "INVALID_INPUT", "{error}");
        // A live subscription (its first `next` is the sale as it is), stopped by the client:
        // nothing more comes for it, not even `complete`.
        send(&mut s, json!({ "id": "s", "type": "subscribe", "payload": { "query": sub } })).await;
        let first = recv(&mut s).await;
        assert_eq!(
            (first["type"].as_str(), first["payload"]["data"]["saleUpdates"]["stock"].as_u64()),
            (Some("next"), Some(5))
        );
        send(&mut s, json!({ "id": "s", "type": "complete" })).await;
        send(&mut s, json!({ "type": "ping" })).await;
        assert_eq!(recv(&mut s).await, json!({ "type": "pong" }), "nothing for the stopped subscription came first");
        // The same id twice while running: 4409.
        send(&mut s, json!({ "id": "d", "type": "subscribe", "payload": { "query": sub } })).await;
        send(&mut s, json!({ "id": "d", "type": "subscribe", "payload": { "query": sub } })).await;
        assert_eq!(close_code(&mut s).await, 4409);
    }
    // Subscribe before connection_ack: 4401.
    let (mut s, _) = ws(&addr(0), "graphql-transport-ws").await;
    send(&mut s, json!({ "id": "1", "type": "subscribe", "payload": { "query": "{ __typename }" } })).await;
    assert_eq!(close_code(&mut s).await, 4401);
    // No connection_init within the deadline: 4408.
    let (mut s, _) = ws(&addr(0), "graphql-transport-ws").await;
    assert_eq!(close_code(&mut s).await, 4408);
    // A second connection_init: 4429. A message that is not the protocol's: 4400.
    let (mut s, _) = ws(&addr(0), "graphql-transport-ws").await;
    send(&mut s, json!({ "type": "connection_init" })).await;
    assert_eq!(recv(&mut s).await["type"], "connection_ack");
    send(&mut s, json!({ "type": "connection_init" })).await;
    assert_eq!(close_code(&mut s).await, 4429);
    let (mut s, _) = ws(&addr(0), "graphql-transport-ws").await;
    send(&mut s, json!({ "type": "start", "id": "1" })).await;
    assert_eq!(close_code(&mut s).await, 4400);

    // Phase 5: the legacy graphql-ws protocol, offered first: the handshake and the frames are
    // that protocol's (`data`, `ka`, `complete` in answer to `stop`).
    let (mut s, chosen) = ws(&addr(2), "graphql-ws, graphql-transport-ws").await;
    assert_eq!(chosen, "graphql-ws");
    send(&mut s, json!({ "type": "connection_init", "payload": {} })).await;
    assert_eq!(recv(&mut s).await["type"], "connection_ack");
    assert_eq!(recv(&mut s).await["type"], "ka", "a keep-alive follows the ack");
    send(&mut s, json!({ "id": "1", "type": "start", "payload": { "query": "{ __typename }" } })).await;
    let data = recv_skipping_ka(&mut s).await;
    assert_eq!(data, json!({ "type": "data", "id": "1", "payload": { "data": { "__typename": "Query" } } }));
    assert_eq!(recv_skipping_ka(&mut s).await, json!({ "type": "complete", "id": "1" }));
    send(&mut s, json!({ "id": "2", "type": "start", "payload": { "query": "{ nope }" } })).await;
    let error = recv_skipping_ka(&mut s).await;
    assert_eq!((error["type"].as_str(), error["id"].as_str()), (Some("error"), Some("2")), "{error}");
    assert_eq!(error["payload"]["extensions"]["code"], "INVALID_INPUT", "{error}");
    // In this protocol an `error` is followed by `complete`, as its clients expect.
    assert_eq!(recv_skipping_ka(&mut s).await, json!({ "type": "complete", "id": "2" }));
    send(&mut s, json!({ "id": "3", "type": "start", "payload": { "query": sub } })).await;
    let first = recv_skipping_ka(&mut s).await;
    assert_eq!(
        (first["type"].as_str(), first["payload"]["data"]["saleUpdates"]["stock"].as_u64()),
        (Some("data"), Some(5))
    );
    send(&mut s, json!({ "id": "3", "type": "stop" })).await;
    assert_eq!(recv_skipping_ka(&mut s).await, json!({ "type": "complete", "id": "3" }), "stop is answered");
    // A socket offering neither protocol is refused before the upgrade.
    let mut request = format!("ws://{}/graphql", addr(0)).into_client_request().expect("request");
    request.headers_mut().insert("sec-websocket-protocol", HeaderValue::from_static("mqtt"));
    assert!(tokio_tungstenite::connect_async(request).await.is_err(), "no common protocol, no upgrade");

    // Phase 6: CORS. The listed origin gets its preflight and responses; another origin, and a
    // node started without --cors-origins, get no CORS headers (the browser then refuses).
    let preflight = |origin: &'static str| {
        cluster
            .http
            .request(reqwest::Method::OPTIONS, cluster.url(0))
            .header("origin", origin)
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "content-type,authorization")
            .send()
    };
    let ok = preflight("http://app.example").await.expect("preflight");
    assert_eq!(ok.status(), 200);
    assert_eq!(ok.headers()["access-control-allow-origin"], "http://app.example");
    let methods = ok.headers()["access-control-allow-methods"].to_str().expect("methods").to_string();
    assert!(methods.contains("POST") && methods.contains("GET"), "{methods}");
    let allowed = ok.headers()["access-control-allow-headers"].to_str().expect("headers").to_ascii_lowercase();
    assert!(allowed.contains("authorization") && allowed.contains("content-type"), "{allowed}");
    let other = preflight("http://evil.example").await.expect("preflight");
    assert!(other.headers().get("access-control-allow-origin").is_none(), "an unlisted origin is not allowed");
    let simple = cluster
        .http
        .post(cluster.url(1))
        .header("origin", "http://app.example")
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .expect("post");
    assert_eq!(simple.headers()["access-control-allow-origin"], "http://app.example");

    // Phase 7: automatic persisted queries, POST then GET: an unknown hash, the registration,
    // then the hash alone, on another node only after it learned the query there.
    let query = "query Avail($n: String!) { usernameAvailability(name: $n, consistency: LOCAL) { status } }";
    let hash = sha256_hex(query);
    let apq = json!({ "persistedQuery": { "version": 1, "sha256Hash": hash } });
    let (_, _, body) = post(&cluster, 0, json!({ "extensions": apq, "variables": { "n": "apq" } }), None).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND", "{body}");
    assert_eq!(body["errors"][0]["message"], "PersistedQueryNotFound");
    let (_, _, body) =
        post(&cluster, 0, json!({ "query": query, "extensions": apq, "variables": { "n": "apq" } }), None).await;
    assert_eq!(body["data"]["usernameAvailability"]["status"], "AVAILABLE", "{body}");
    let (_, _, body) = post(&cluster, 0, json!({ "extensions": apq, "variables": { "n": "apq" } }), None).await;
    assert_eq!(body["data"]["usernameAvailability"]["status"], "AVAILABLE", "the hash alone: {body}");
    let by_get = [("extensions", apq.to_string()), ("variables", json!({ "n": "apq" }).to_string())];
    let (status, _, body) = get(&cluster, 0, &by_get).await;
    assert_eq!((status, &body["data"]["usernameAvailability"]["status"]), (200, &json!("AVAILABLE")), "{body}");
    let (_, _, body) = get(&cluster, 2, &by_get).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "PERSISTED_QUERY_NOT_FOUND", "each node learns on its own");
    let wrong = json!({ "persistedQuery": { "version": 1, "sha256Hash": "0".repeat(64) } });
    let (_, _, body) = post(&cluster, 0, json!({ "query": query, "extensions": wrong }), None).await;
    assert_eq!(body["errors"][0]["extensions"]["code"], "INVALID_INPUT", "a hash that does not match");

    // Phase 8: read-only GET. A query in the URL runs; a mutation is refused with 405 and
    // `Allow: POST`, and nothing was reserved.
    let (status, _, body) = get(&cluster, 1, &[("query", "{ cluster { nodeId } }".into())]).await;
    assert_eq!((status, &body["data"]["cluster"]["nodeId"]), (200, &json!(2)), "{body}");
    let reserve = "mutation { reserveUsername(name: \"viaget\", ttlSeconds: 60) { token } }";
    let (status, allow, body) = get(&cluster, 1, &[("query", reserve.into())]).await;
    assert_eq!((status, allow.as_deref()), (405, Some("POST")), "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "INVALID_INPUT");
    let check = "{ usernameAvailability(name: \"viaget\", consistency: LINEARIZABLE) { status } }";
    let (_, _, body) = post(&cluster, 0, json!({ "query": check }), None).await;
    assert_eq!(body["data"]["usernameAvailability"]["status"], "AVAILABLE", "the GET mutation changed nothing");

    // Phase 9: media types. application/json by default, always 200; the GraphQL response
    // media type when asked for, with 400 for a request error.
    let (status, ct, _) = post(&cluster, 0, json!({ "query": "{ nope }" }), None).await;
    assert_eq!((status, ct.as_str()), (200, "application/json"));
    let accept = Some("application/graphql-response+json, application/json;q=0.9");
    let (status, ct, body) = post(&cluster, 0, json!({ "query": "{ nope }" }), accept).await;
    assert_eq!((status, ct.as_str()), (400, "application/graphql-response+json; charset=utf-8"), "{body}");
    assert_eq!(body["errors"][0]["extensions"]["code"], "INVALID_INPUT");
    let (status, ct, body) = post(&cluster, 0, json!({ "query": "{ __typename }" }), accept).await;
    assert_eq!((status, ct.as_str()), (200, "application/graphql-response+json; charset=utf-8"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_without_cors_origins_allows_no_other_origin() {
    // Why: the default must be same-origin only; a page elsewhere must not be able to call a
    // node that did not opt in.
    let cluster = Cluster::start(1, &[]);
    cluster.wait_ready(Duration::from_secs(30)).await;
    let resp = cluster
        .http
        .request(reqwest::Method::OPTIONS, cluster.url(0))
        .header("origin", "http://app.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .expect("preflight");
    assert!(resp.headers().get("access-control-allow-origin").is_none(), "{:?}", resp.headers());
    let resp = cluster
        .http
        .post(cluster.url(0))
        .header("origin", "http://app.example")
        .json(&json!({ "query": "{ __typename }" }))
        .send()
        .await
        .expect("post");
    assert!(resp.headers().get("access-control-allow-origin").is_none());
}
