//! TLS on the node's one port: three real node processes with `--tls-cert` and `--tls-key`
//! form a cluster over HTTPS (each dials its peers over TLS and verifies them against the
//! cluster's certificate), clients reach GraphQL over HTTPS, and nothing is served in plain
//! HTTP on that port.

mod support;

use std::time::Duration;

use serde_json::json;
use support::{Cluster, AVAIL, RESERVE};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_tls_cluster_forms_serves_https_and_refuses_plain_http() {
    let c = Cluster::start_tls(3, &[]);
    // Phase 1: the cluster forms: elections and replication ran over TLS between the nodes.
    let leader = c.wait_ready(Duration::from_secs(30)).await;
    let follower = (0..3).find(|i| *i != leader).expect("a follower");

    // Phase 2: a write through a follower (forwarded to the leader over TLS) is read back
    // LINEARIZABLE on every node.
    let (d, e) = c.gql(follower, RESERVE, json!({"n": "secured"}), None).await;
    assert_eq!(e, None, "{d}");
    for i in 0..3 {
        let (d, e) = c.gql(i, AVAIL, json!({"n": "secured", "c": "LINEARIZABLE"}), None).await;
        assert_eq!(e, None);
        assert_eq!(d["usernameAvailability"]["status"], "RESERVED", "node {i}");
    }

    // Phase 3: plain HTTP to the same port gets no answer, and a client that does not trust
    // the cluster's certificate cannot connect.
    let plain = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().expect("client");
    let http_url = format!("http://{}/graphql", c.nodes[leader].addr);
    assert!(plain.post(&http_url).json(&json!({"query": "{ cluster { nodeId } }"})).send().await.is_err());
    let https_url = c.url(leader);
    assert!(plain.post(&https_url).json(&json!({"query": "{ cluster { nodeId } }"})).send().await.is_err());

    // Phase 4: the container health check speaks TLS too.
    let status = std::process::Command::new(env!("CARGO_BIN_EXE_node"))
        .args(["--health-check", "--listen", &c.nodes[leader].addr])
        .args(c.nodes[leader].tls_flags())
        .status()
        .expect("health check runs");
    assert!(status.success(), "--health-check over TLS");
}
