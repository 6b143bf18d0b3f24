//! `cli backup --out FILE` from a real three-node cluster, then `node --restore FILE` into new
//! data dirs: a one-node cluster and a three-node one (in-process nodes, real sockets, the
//! node's own `run`). What must hold: the backup holds every write acknowledged before it
//! (taken from a follower) and none after; a restored cluster serves the same accounts,
//! passwords, sales, chats and timelines, and takes new writes after the backup's index; a
//! damaged backup restores nothing; a data dir is never overwritten; and starting again with the
//! same `--restore` starts the node.

mod support;

use std::path::{Path, PathBuf};
use std::time::Duration;

use argon2::{Argon2, PasswordHasher};
use client::{Client, Consistency, CreateProductInput, CreateSaleInput, ImportAccount, RegisterInput};
use serde_json::Value;
use support::{dead_address, TestCluster, CLUSTER_SECRET, JWT_SECRET};

/// Time for a cluster to elect a leader and become ready (debug build, loaded CI machine).
const READY_TIMEOUT: Duration = Duration::from_secs(60);
/// Imported accounts: a backup of more than one of the node's 1 MiB chunks.
const ACCOUNTS: usize = 4_000;

async fn cli(args: &[&str]) -> (bool, Value, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cli")).args(args).output().await.expect("run cli");
    let stdout: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

/// Runs a node that must fail to start, and returns why.
async fn start_fails(config: node::Config) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let result = tokio::time::timeout(READY_TIMEOUT, node::run(config, listener, std::future::pending()))
        .await
        .expect("a node that cannot start says so at once");
    format!("{:#}", result.expect_err("the node must refuse to start"))
}

/// A node configuration restoring `backup` into `dir`, as the test clusters configure nodes.
fn restoring(dir: &Path, backup: &Path) -> node::Config {
    let mut config = node::Config::defaults();
    config.listen = "127.0.0.1:0".into();
    config.data_dir = dir.to_path_buf();
    config.restore = Some(backup.to_path_buf());
    config.cluster_secret = Some(CLUSTER_SECRET.into());
    config.jwt_secret = Some(JWT_SECRET.into());
    config
}

fn has_state(dir: &Path) -> bool {
    dir.join("state").exists() || dir.join("raft-log.redb").exists()
}

/// The bodies of `client`'s home timeline, read LINEARIZABLE through `node`.
async fn timeline(client: &Client, node: usize) -> Vec<String> {
    let page = client.timeline(node, Some(50), None, Some(Consistency::Linearizable)).await.expect("timeline");
    page.edges.into_iter().map(|e| e.node.body).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_restores_into_a_new_one_node_or_three_node_cluster() {
    let work = tempfile::tempdir().expect("dir");
    let source = TestCluster::start(3);
    let leader = source.wait_ready(READY_TIMEOUT).await;
    let follower = (leader + 1) % 3;
    let anon = Client::new(source.urls()).expect("client");

    // Phase 1: state in every domain. The first account registered is the ADMIN.
    let password = |name: &str| format!("{name}'s password");
    let reg = |name: &str| RegisterInput { username: name.into(), password: password(name), ..Default::default() };
    let keeper = anon.register(0, &reg("keeper")).await.expect("admin");
    let carol = anon.register(1, &reg("carol")).await.expect("carol");
    let admin = Client::new(source.urls()).expect("client").with_bearer(keeper.token.as_str());
    let as_carol = Client::new(source.urls()).expect("client").with_bearer(carol.token.as_str());
    let shared = Argon2::default().hash_password(b"bulk password").expect("hash").to_string();
    let accounts: Vec<ImportAccount> = (0..ACCOUNTS)
        .map(|i| ImportAccount {
            username: format!("bulk{i}"),
            password_hash: shared.clone(),
            display_name: None,
            email: None,
            created_at: None,
        })
        .collect();
    for batch in accounts.chunks(1_000) {
        let done = client::import::import_batch(&admin, 0, batch).await.expect("import");
        assert_eq!(done.imported, batch.len() as u64);
    }
    let product = CreateProductInput { name: "lamp".into(), description: "a lamp".into(), price_cents: 1_999 };
    let product = admin.create_product(0, &product).await.expect("product");
    let sale = CreateSaleInput { product_id: product.id, stock: 10, starts_at: None, ends_at: None, per_user_limit: 5 };
    let sale = admin.create_sale(0, &sale).await.expect("sale");
    admin.start_sale(0, &sale.id).await.expect("start");
    as_carol.purchase(1, &sale.id, 2, "carol-order-1").await.expect("purchase");
    let chat = admin.create_chat(0, "ops", &[carol.user.id.as_str()]).await.expect("chat");
    as_carol.send_message(2, &chat.id, "the lamp shipped", "m1").await.expect("message");
    admin.follow(0, &carol.user.id).await.expect("follow");
    // The last write before the backup goes through the leader; the backup comes from a follower.
    as_carol.post_tweet(leader, "before the backup", None).await.expect("tweet");

    // Phase 2: only an ADMIN may take a backup, and a refused one leaves no file behind.
    let file = work.path().join("cluster.backup");
    let file_arg = file.display().to_string();
    let follower_url = source.url(follower);
    let dead = dead_address();
    let nodes = format!("{dead},{follower_url}");
    let (ok, out, _) =
        cli(&["--nodes", &follower_url, "--token", &carol.token, "--json", "backup", "--out", &file_arg]).await;
    assert!(!ok && out["error"]["code"] == "FORBIDDEN", "{out}");
    let (ok, out, _) = cli(&["--nodes", &follower_url, "--json", "backup", "--out", &file_arg]).await;
    assert!(!ok && out["error"]["code"] == "UNAUTHENTICATED", "{out}");
    assert!(!file.exists() && !work.path().join("cluster.backup.partial").exists());

    // Phase 3: the backup, from the first node that serves (an unreachable one is skipped).
    let (ok, out, err) =
        cli(&["--nodes", &nodes, "--token", &keeper.token, "--json", "backup", "--out", &file_arg]).await;
    assert!(ok, "{out} {err}");
    assert_eq!(out["node"], follower_url.as_str(), "{out}");
    let backup_index = out["appliedIndex"].as_u64().expect("appliedIndex");
    assert!(out["rows"].as_u64().expect("rows") > ACCOUNTS as u64, "{out}");
    assert!(out["bytes"].as_u64().expect("bytes") > 1024 * 1024, "more than one chunk: {out}");
    assert_eq!(std::fs::metadata(&file).expect("the backup file").len(), out["bytes"].as_u64().unwrap());
    // A write after the backup, which no restore of it may show.
    as_carol.post_tweet(0, "after the backup", None).await.expect("tweet");

    // Phase 4: a damaged backup restores nothing, and says why.
    let damaged = work.path().join("damaged.backup");
    let mut bytes = std::fs::read(&file).expect("read");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0x01;
    std::fs::write(&damaged, bytes).expect("write");
    let dir = work.path().join("from-damaged");
    let why = start_fails(restoring(&dir, &damaged)).await;
    assert!(why.contains("digest") || why.contains("corrupt"), "{why}");
    assert!(!has_state(&dir), "a failed restore leaves the data dir without state");

    // Phase 5: a one-node cluster from the backup: the same accounts and passwords, the sale,
    // the chat, the timeline as of the backup; the source's tokens are valid (same JWT secret).
    let one_dir = work.path().join("one");
    let one_node = |file: PathBuf| {
        let one_dir = one_dir.clone();
        move |c: &mut node::Config| {
            c.peers = String::new();
            c.data_dir = one_dir.clone();
            c.restore = Some(file.clone());
        }
    };
    let mut one = TestCluster::start_with(1, one_node(file.clone()));
    one.wait_ready(READY_TIMEOUT).await;
    let restored = Client::new(one.urls()).expect("client");
    restored.login(0, "bulk3999", "bulk password").await.expect("an imported account signs in");
    restored.login(0, "carol", &password("carol")).await.expect("carol signs in");
    let r_admin = Client::new(one.urls()).expect("client").with_bearer(keeper.token.as_str());
    let r_sale = r_admin.sale_linearizable(0, &sale.id).await.expect("sale").expect("the sale exists");
    assert_eq!((r_sale.sold, r_sale.stock, r_sale.status.as_str()), (2, 8, "OPEN"));
    let messages = r_admin.messages(0, &chat.id, Some(10), None).await.expect("messages");
    assert_eq!(messages.edges.iter().map(|e| e.node.body.as_str()).collect::<Vec<_>>(), ["the lamp shipped"]);
    assert_eq!(timeline(&r_admin, 0).await, ["before the backup"]);
    // New writes continue after the backup's index, and the restored rules still hold.
    let written = r_admin.create_chat(0, "after restore", &[carol.user.id.as_str()]).await.expect("a new write");
    assert!(r_admin.session_index() > backup_index, "{} <= {backup_index}", r_admin.session_index());
    let taken = restored.register(0, &reg("Carol")).await.expect_err("carol's name is taken");
    assert_eq!(taken.code(), "USERNAME_TAKEN");

    // Phase 6: starting again with the same --restore starts the node with its data, the write
    // after the restore included; a different backup is refused for that data dir.
    one.shutdown(0).await;
    drop(one);
    let mut one = TestCluster::start_with(1, one_node(file.clone()));
    one.wait_ready(READY_TIMEOUT).await;
    let again = Client::new(one.urls()).expect("client").with_bearer(keeper.token.as_str());
    let chats = again.messages(0, &written.id, Some(1), None).await.expect("the chat made after the restore");
    assert!(chats.edges.is_empty());
    one.shutdown(0).await;
    let second = work.path().join("second.backup");
    let (ok, out, err) = cli(&[
        "--nodes",
        &source.url(0),
        "--token",
        &keeper.token,
        "--json",
        "backup",
        "--out",
        &second.display().to_string(),
    ])
    .await;
    assert!(ok, "{out} {err}");
    let why = start_fails(restoring(&one_dir, &second)).await;
    assert!(why.contains("another backup"), "{why}");

    // Phase 7: a three-node cluster: the lowest id restores, the others start empty and receive
    // the state from it; every node serves it, and takes writes.
    let three_file = file.clone();
    let three = TestCluster::start_with(3, move |c| {
        if c.id == 1 {
            c.restore = Some(three_file.clone());
        }
    });
    three.wait_ready(READY_TIMEOUT).await;
    let t = Client::new(three.urls()).expect("client");
    for node in 0..3 {
        let a = t.username_availability(node, "bulk1234", Some(Consistency::Local)).await.expect("check");
        assert_eq!(a.status, "TAKEN", "node {node}");
    }
    t.login(2, "carol", &password("carol")).await.expect("carol signs in on a node that started empty");
    let t_carol = Client::new(three.urls()).expect("client").with_bearer(carol.token.as_str());
    t_carol.post_tweet(2, "from the restored cluster", None).await.expect("a write through a follower");
    let t_admin = Client::new(three.urls()).expect("client").with_bearer(keeper.token.as_str());
    assert_eq!(timeline(&t_admin, 1).await, ["from the restored cluster", "before the backup"]);
}
