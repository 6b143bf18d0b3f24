//! Real nodes for the client's integration tests, run in-process: each node is `node::run` (the
//! binary's own code) on a `127.0.0.1:0` listener with its own temp data dir, on its own thread
//! and Tokio runtime. Shutting a node down resolves its shutdown future (the graceful drain that
//! SIGTERM triggers in the binary) and then drops its runtime, which closes every socket it still
//! holds, as the process exiting would. No part of the server is mocked.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use client::Client;
use tokio::sync::oneshot;

/// Shared secrets of every test cluster (a multi-node cluster requires them).
pub const CLUSTER_SECRET: &str = "client-test-cluster-secret-0123456789";
pub const JWT_SECRET: &str = "client-test-jwt-secret-0123456789";

/// How long a node's runtime may take to finish its blocking tasks once the node has drained.
const RUNTIME_SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a graceful shutdown may take in all before the test fails.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(20);

/// One in-process node.
pub struct TestNode {
    pub id: u64,
    pub addr: SocketAddr,
    /// Resolves the node's shutdown future when sent to (or dropped).
    stop: Option<oneshot::Sender<()>>,
    /// Fires once the node has returned and its runtime is gone.
    done: Option<oneshot::Receiver<()>>,
}

impl TestNode {
    pub fn running(&self) -> bool {
        self.stop.is_some()
    }
}

/// A set of nodes started with the same `--peers`, forming one cluster by themselves.
pub struct TestCluster {
    pub nodes: Vec<TestNode>,
    _dir: tempfile::TempDir,
}

impl TestCluster {
    /// Starts `n` nodes. Listeners are bound before any node starts, so every peer address is
    /// known and no port can be taken in between.
    pub fn start(n: u64) -> TestCluster {
        Self::start_with(n, |_| {})
    }

    /// [`TestCluster::start`], with each node's configuration changed by `customize` last (to
    /// give a node `--restore`, or a data dir of the test's own).
    pub fn start_with(n: u64, customize: impl Fn(&mut node::Config)) -> TestCluster {
        let dir = tempfile::tempdir().expect("temp dir");
        let listeners: Vec<std::net::TcpListener> =
            (0..n).map(|_| std::net::TcpListener::bind("127.0.0.1:0").expect("bind")).collect();
        let addrs: Vec<SocketAddr> = listeners.iter().map(|l| l.local_addr().expect("addr")).collect();
        let peers = addrs.iter().enumerate().map(|(i, a)| format!("{}={a}", i + 1)).collect::<Vec<_>>().join(",");
        let nodes = listeners
            .into_iter()
            .zip(&addrs)
            .enumerate()
            .map(|(i, (listener, addr))| {
                let id = i as u64 + 1;
                let mut config = node::Config::defaults();
                config.id = id;
                config.listen = addr.to_string();
                config.advertise = None;
                config.data_dir = dir.path().join(format!("node{id}"));
                config.peers = peers.clone();
                config.join = None;
                config.cluster_secret = Some(CLUSTER_SECRET.to_owned());
                config.jwt_secret = Some(JWT_SECRET.to_owned());
                // The tests send bursts from one address; the limiter is not under test.
                config.rate_limit_per_sec = 0;
                config.ws_sockets_per_client = 0;
                config.reservations_per_client_per_hour = 0;
                customize(&mut config);
                spawn_node(id, *addr, config, listener)
            })
            .collect();
        TestCluster { nodes, _dir: dir }
    }

    /// Base URL of node `i` (0-based).
    pub fn url(&self, i: usize) -> String {
        format!("http://{}", self.nodes[i].addr)
    }

    /// Base URLs of every node, running or not.
    pub fn urls(&self) -> Vec<String> {
        (0..self.nodes.len()).map(|i| self.url(i)).collect()
    }

    /// Waits until every running node answers `/ready` (it knows a leader and has applied the
    /// log up to it), and returns the index of the node that leads.
    pub async fn wait_ready(&self, timeout: Duration) -> usize {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().expect("http");
        let deadline = Instant::now() + timeout;
        // Bounded by the deadline.
        loop {
            let mut all = true;
            for i in (0..self.nodes.len()).filter(|&i| self.nodes[i].running()) {
                let ready = http.get(format!("{}/ready", self.url(i))).send().await;
                all &= matches!(ready, Ok(r) if r.status().is_success());
            }
            if all {
                if let Some(leader) = self.leader().await {
                    return leader;
                }
            }
            assert!(Instant::now() < deadline, "cluster not ready within {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The index of the node the running nodes agree leads, if they name one that runs.
    pub async fn leader(&self) -> Option<usize> {
        let client = Client::new(self.urls()).expect("client").with_retries(false);
        for i in (0..self.nodes.len()).filter(|&i| self.nodes[i].running()) {
            if let Ok(info) = client.cluster(i).await {
                if let Some(id) = info.leader_id {
                    let idx = self.nodes.iter().position(|n| n.id == id)?;
                    return self.nodes[idx].running().then_some(idx);
                }
            }
        }
        None
    }

    /// Shuts node `i` down the way SIGTERM does (drain, stop Raft), then lets its runtime go as
    /// the process exit would, and waits until it is gone.
    pub async fn shutdown(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(stop) = node.stop.take() {
            let _ = stop.send(());
        }
        if let Some(done) = node.done.take() {
            tokio::time::timeout(SHUTDOWN_TIMEOUT, done)
                .await
                .unwrap_or_else(|_| panic!("node {} did not shut down within {SHUTDOWN_TIMEOUT:?}", node.id))
                .expect("node thread ended");
        }
    }
}

impl Drop for TestCluster {
    fn drop(&mut self) {
        // Dropping each stop sender shuts the node down; its thread ends on its own (no join:
        // blocking here would hold up the test's runtime).
        for n in &mut self.nodes {
            n.stop.take();
        }
    }
}

/// Runs one node on its own thread and current-thread runtime.
fn spawn_node(id: u64, addr: SocketAddr, config: node::Config, listener: std::net::TcpListener) -> TestNode {
    let (stop_tx, stop_rx) = oneshot::channel::<()>();
    let (done_tx, done_rx) = oneshot::channel::<()>();
    listener.set_nonblocking(true).expect("nonblocking listener");
    std::thread::Builder::new()
        .name(format!("node{id}"))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("node runtime");
            let result = runtime.block_on(async move {
                let listener = tokio::net::TcpListener::from_std(listener)?;
                node::run(config, listener, async move {
                    let _ = stop_rx.await;
                })
                .await
            });
            // Like the process exiting: every task left (open WebSockets) is dropped, closing
            // its socket.
            runtime.shutdown_timeout(RUNTIME_SHUTDOWN_TIMEOUT);
            if let Err(e) = result {
                eprintln!("node {id} failed: {e:#}");
            }
            let _ = done_tx.send(());
        })
        .expect("spawn node thread");
    TestNode { id, addr, stop: Some(stop_tx), done: Some(done_rx) }
}

/// An address nothing listens on: a port bound and released, so connecting is refused.
pub fn dead_address() -> String {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = l.local_addr().expect("addr");
    drop(l);
    format!("http://{addr}")
}
