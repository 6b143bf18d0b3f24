//! Real node processes for cluster tests: the `node` binary started with the flags of
//! DESIGN.md on loopback ports, each with its own data dir, killed with SIGKILL when asked (or
//! when the test ends), and a small GraphQL client to talk to them.

#![allow(dead_code)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

pub const SECRET: &str = "cluster-test-secret-0123456789";
pub const JWT: &str = "cluster-test-jwt-secret-0123456789";

/// One node: its id, address, data dir, and process while running.
pub struct NodeProc {
    pub id: u64,
    pub addr: String,
    pub data_dir: PathBuf,
    pub log: PathBuf,
    child: Option<Child>,
    extra: Vec<String>,
}

/// A set of node processes that is torn down (SIGKILL) on drop.
pub struct Cluster {
    pub nodes: Vec<NodeProc>,
    pub peers: String,
    _dir: tempfile::TempDir,
    pub http: reqwest::Client,
    /// `http`, or `https` for a cluster started with [`Cluster::start_tls`].
    pub scheme: &'static str,
}

/// Flags every test node gets unless the test sets them: the tests send bursts (registrations
/// and reservations by the hundred) from one address, which the per-client limits are there to
/// stop; the abuse suite sets the production values and tests those limits.
fn test_defaults(extra: &[String]) -> Vec<&'static str> {
    let mut flags = Vec::new();
    for flag in ["--reservations-per-client-per-hour", "--rate-limit-per-sec"] {
        if !extra.iter().any(|a| a == flag) {
            flags.extend([flag, "0"]);
        }
    }
    flags
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    l.local_addr().expect("addr").port()
}

impl NodeProc {
    /// The `--tls-*` flags this node was started with.
    pub fn tls_flags(&self) -> Vec<String> {
        let mut flags = Vec::new();
        for pair in self.extra.chunks(2) {
            if let [flag, value] = pair {
                if flag.starts_with("--tls-") {
                    flags.extend([flag.clone(), value.clone()]);
                }
            }
        }
        flags
    }
}

impl Cluster {
    /// Starts `n` nodes with the same `--peers`; they form one cluster by themselves.
    pub fn start(n: u64, extra: &[&str]) -> Cluster {
        Self::start_with(n, extra, None)
    }

    /// Starts `n` nodes serving TLS with one self-signed certificate for 127.0.0.1 (written to
    /// the cluster's directory); the test client trusts exactly that certificate.
    pub fn start_tls(n: u64, extra: &[&str]) -> Cluster {
        let cert = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("a self-signed certificate");
        Self::start_with(n, extra, Some((cert.cert.pem(), cert.key_pair.serialize_pem())))
    }

    fn start_with(n: u64, extra: &[&str], tls: Option<(String, String)>) -> Cluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let mut http = reqwest::Client::builder().timeout(Duration::from_secs(10));
        let mut scheme = "http";
        if let Some((cert, key)) = &tls {
            let (cert_path, key_path) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
            std::fs::write(&cert_path, cert).expect("write cert");
            std::fs::write(&key_path, key).expect("write key");
            for (flag, path) in [("--tls-cert", &cert_path), ("--tls-key", &key_path)] {
                extra.push(flag.to_string());
                extra.push(path.display().to_string());
            }
            let root = reqwest::Certificate::from_pem(cert.as_bytes()).expect("certificate");
            http = http.use_rustls_tls().tls_built_in_root_certs(false).add_root_certificate(root);
            scheme = "https";
        }
        let addrs: Vec<String> = (0..n).map(|_| format!("127.0.0.1:{}", free_port())).collect();
        let peers = addrs.iter().enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect::<Vec<_>>().join(",");
        let nodes = addrs
            .iter()
            .enumerate()
            .map(|(i, addr)| {
                let id = i as u64 + 1;
                NodeProc {
                    id,
                    addr: addr.clone(),
                    data_dir: dir.path().join(format!("node{id}")),
                    log: dir.path().join(format!("node{id}.log")),
                    child: None,
                    extra: extra.clone(),
                }
            })
            .collect();
        let http = http.build().expect("client");
        let mut c = Cluster { nodes, peers, _dir: dir, http, scheme };
        for i in 0..c.nodes.len() {
            c.spawn(i);
        }
        c
    }

    /// Starts (or restarts, with its data dir) node `i` (0-based).
    pub fn spawn(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&node.log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_node"))
            .args(["--id", &node.id.to_string(), "--listen", &node.addr, "--peers", &self.peers])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--cluster-secret", SECRET, "--jwt-secret", JWT])
            .args(test_defaults(&node.extra))
            .args(&node.extra)
            .env("RUST_LOG", "info,openraft=warn")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn node");
        node.child = Some(child);
    }

    /// Starts a new node that joins through `via` (0-based) with `--join`.
    pub fn spawn_joiner(&mut self, id: u64, via: usize) -> usize {
        let addr = format!("127.0.0.1:{}", free_port());
        let data_dir = self._dir.path().join(format!("node{id}"));
        let log = self._dir.path().join(format!("node{id}.log"));
        self.nodes.push(NodeProc { id, addr, data_dir, log, child: None, extra: vec![] });
        let i = self.nodes.len() - 1;
        let via = self.nodes[via].addr.clone();
        self.spawn_with_join(i, &via);
        i
    }

    /// Starts (or restarts, with its data dir) node `i` with `--join join` instead of `--peers`.
    pub fn spawn_with_join(&mut self, i: usize, join: &str) {
        let node = &mut self.nodes[i];
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&node.log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_node"))
            .args(["--id", &node.id.to_string(), "--listen", &node.addr, "--join", join])
            .arg("--data-dir")
            .arg(&node.data_dir)
            .args(["--cluster-secret", SECRET, "--jwt-secret", JWT])
            .args(test_defaults(&[]))
            .env("RUST_LOG", "info,openraft=warn")
            .stdout(Stdio::from(log.try_clone().expect("log")))
            .stderr(Stdio::from(log))
            .spawn()
            .expect("spawn joiner");
        node.child = Some(child);
    }

    /// SIGKILL: no drain, no flush beyond what was already durable.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.nodes[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait for a clean exit; returns the exit status code.
    pub fn terminate(&mut self, i: usize) -> Option<i32> {
        let mut c = self.nodes[i].child.take()?;
        let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return status.code();
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = c.kill();
        None
    }

    pub fn url(&self, i: usize) -> String {
        format!("{}://{}/graphql", self.scheme, self.nodes[i].addr)
    }

    /// A cloneable client of the current nodes, for concurrent tasks.
    pub fn client(&self) -> Gql {
        Gql { http: self.http.clone(), urls: (0..self.nodes.len()).map(|i| self.url(i)).collect() }
    }

    /// Runs a GraphQL operation on node `i`: (data, first error code if any).
    pub async fn gql(&self, i: usize, query: &str, vars: Value, token: Option<&str>) -> (Value, Option<String>) {
        self.client().gql(i, query, vars, token).await
    }

    pub async fn status(&self, i: usize) -> Option<Value> {
        let (d, e) = self
            .gql(
                i,
                "{ cluster { nodeId leaderId term state lastApplied snapshotIndex snapshotsInstalled members { id addr voter } } }",
                json!({}),
                None,
            )
            .await;
        if e.is_some() {
            return None;
        }
        Some(d["cluster"].clone())
    }

    /// Waits until every running node answers /ready, and returns the leader's index.
    pub async fn wait_ready(&self, timeout: Duration) -> usize {
        let deadline = Instant::now() + timeout;
        loop {
            let mut all = true;
            let mut leader = None;
            for (i, n) in self.nodes.iter().enumerate() {
                if n.child.is_none() {
                    continue;
                }
                let ok = matches!(self.http.get(format!("{}://{}/ready", self.scheme, n.addr)).send().await, Ok(r) if r.status().is_success());
                all &= ok;
                if let Some(s) = self.status(i).await {
                    if s["state"] == "Leader" {
                        leader = Some(i);
                    }
                }
            }
            if all {
                if let Some(l) = leader {
                    return l;
                }
            }
            if Instant::now() > deadline {
                self.dump_logs();
                panic!("cluster not ready within {timeout:?}");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Prints the tail of every node's log (for failures).
    pub fn dump_logs(&self) {
        for n in &self.nodes {
            let text = std::fs::read_to_string(&n.log).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            eprintln!("---- node {} log (last 40 lines) ----", n.id);
            for l in &lines[lines.len().saturating_sub(40)..] {
                eprintln!("{l}");
            }
        }
    }

    /// The index of the node currently leading, as the running nodes see it.
    pub async fn leader(&self) -> Option<usize> {
        for (i, n) in self.nodes.iter().enumerate() {
            if n.child.is_some() {
                if let Some(s) = self.status(i).await {
                    if s["state"] == "Leader" {
                        return Some(i);
                    }
                }
            }
        }
        None
    }
}

/// A GraphQL client of a fixed set of node URLs.
#[derive(Clone)]
pub struct Gql {
    pub http: reqwest::Client,
    pub urls: Vec<String>,
}

impl Gql {
    /// Runs a GraphQL operation on node `i`: (data, first error code if any).
    pub async fn gql(&self, i: usize, query: &str, vars: Value, token: Option<&str>) -> (Value, Option<String>) {
        let mut req = self.http.post(&self.urls[i]).json(&json!({"query": query, "variables": vars}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        match req.send().await {
            Ok(resp) => {
                let body: Value = resp.json().await.unwrap_or(Value::Null);
                let code = body["errors"][0]["extensions"]["code"].as_str().map(str::to_string);
                (body["data"].clone(), code)
            }
            Err(e) => (Value::Null, Some(format!("TRANSPORT: {e}"))),
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.dump_logs();
        }
        for i in 0..self.nodes.len() {
            self.kill(i);
        }
    }
}

pub const RESERVE: &str = "mutation($n:String!){ reserveUsername(name:$n, ttlSeconds:600){ token expiresAt } }";
pub const REGISTER: &str =
    "mutation($u:String!,$p:String!){ register(input:{username:$u,password:$p}){ token user{ id username } } }";
pub const LOGIN: &str =
    "mutation($u:String!,$p:String!){ login(username:$u,password:$p){ token user{ id username } } }";
pub const AVAIL: &str =
    "query($n:String!,$c:Consistency){ usernameAvailability(name:$n, consistency:$c){ status appliedIndex } }";

/// A graphql-transport-ws subscription: connection_init (with the bearer token in the payload,
/// as the contract says), subscribe, then `next` payloads one by one.
pub struct Subscription {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

impl Subscription {
    pub async fn open(addr: &str, query: &str, vars: Value, token: Option<&str>) -> Subscription {
        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        use tokio_tungstenite::tungstenite::Message;
        let mut req = format!("ws://{addr}/graphql").into_client_request().expect("request");
        req.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse().expect("header"));
        let (mut ws, _) = tokio_tungstenite::connect_async(req).await.expect("websocket connects");
        let payload = match token {
            Some(t) => json!({"Authorization": format!("Bearer {t}")}),
            None => json!({}),
        };
        ws.send(Message::text(json!({"type": "connection_init", "payload": payload}).to_string())).await.expect("init");
        loop {
            let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
                .await
                .expect("ack in time")
                .expect("open")
                .expect("frame");
            if let Message::Text(t) = msg {
                let v: Value = serde_json::from_str(&t).expect("json");
                if v["type"] == "connection_ack" {
                    break;
                }
            }
        }
        let sub = json!({"id": "1", "type": "subscribe", "payload": {"query": query, "variables": vars}});
        ws.send(Message::text(sub.to_string())).await.expect("subscribe");
        Subscription { ws }
    }

    /// The next `data` payload (or the error payload), within `timeout`.
    pub async fn next(&mut self, timeout: Duration) -> Option<Value> {
        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let msg = tokio::time::timeout(left, self.ws.next()).await.ok()??.ok()?;
            let Message::Text(t) = msg else { continue };
            let v: Value = serde_json::from_str(&t).ok()?;
            match v["type"].as_str() {
                Some("next") => return Some(v["payload"].clone()),
                Some("error") => return Some(json!({"errors": v["payload"]})),
                Some("ping") => {
                    let _ = self.ws.send(Message::text(json!({"type": "pong"}).to_string())).await;
                }
                Some("complete") => return None,
                _ => {}
            }
        }
    }

    /// Reads until the server's close frame and returns its code; `None` if the socket ended
    /// without one (a reset, EOF) or `timeout` passed.
    pub async fn close_code(&mut self, timeout: Duration) -> Option<u16> {
        use futures::StreamExt;
        use tokio_tungstenite::tungstenite::Message;
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.ws.next()).await.ok()??.ok()? {
                Message::Close(frame) => return frame.map(|f| u16::from(f.code)),
                _ => continue,
            }
        }
    }
}
