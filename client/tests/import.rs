//! `cli import FILE.jsonl` against a real three-node cluster (in-process nodes, real sockets):
//! accounts from a file, packed into calls and spread over the nodes, sign in afterwards with
//! their old passwords on any node; a name that cannot be claimed is skipped and listed; running
//! the same file again creates nobody twice; a malformed line stops the run naming its number.

mod support;

use std::io::Write as _;
use std::time::Duration;

use argon2::{Algorithm, Argon2, Params, PasswordHasher, Version};
use client::{Client, RegisterInput};
use serde_json::{json, Value};
use support::TestCluster;

/// Time for a fresh cluster to elect a leader and become ready (debug build, loaded CI machine).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Accounts in the file: more than two full calls, so packing, parallel calls and the spread
/// over nodes all take part.
const ACCOUNTS: usize = 2_345;

async fn cli(args: Vec<String>) -> (bool, Value, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_cli")).args(args).output().await.expect("run cli");
    let stdout: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Null);
    (out.status.success(), stdout, String::from_utf8_lossy(&out.stderr).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_import_brings_accounts_in_that_sign_in_on_every_node() {
    let cluster = TestCluster::start(3);
    cluster.wait_ready(READY_TIMEOUT).await;
    let client = Client::new(cluster.urls()).expect("client");
    let admin =
        RegisterInput { username: "importer".into(), password: "importer password".into(), ..Default::default() };
    let admin = client.register(0, &admin).await.expect("admin").token;
    let taken = RegisterInput { username: "already".into(), password: "already password".into(), ..Default::default() };
    client.register(0, &taken).await.expect("taken");

    // Phase 1: the file: one hash shared by the bulk (as seeded test data would), one account
    // with its own stronger hash and every optional field, a taken name and an invalid one.
    let shared = Argon2::default().hash_password(b"bulk password").expect("hash").to_string();
    let strong = Argon2::new(Algorithm::Argon2id, Version::V0x13, Params::new(65_536, 3, 4, None).expect("params"))
        .hash_password(b"vera's password")
        .expect("hash")
        .to_string();
    let dir = tempfile::tempdir().expect("dir");
    let file = dir.path().join("accounts.jsonl");
    let mut f = std::fs::File::create(&file).expect("file");
    writeln!(
        f,
        "{}",
        json!({"username": "Vera", "passwordHash": strong, "displayName": "Vera V.",
        "email": "vera@example.com", "createdAt": "2018-03-04T05:06:07Z"})
    )
    .unwrap();
    writeln!(f, "{}", json!({"username": "already", "passwordHash": shared})).unwrap();
    writeln!(f).unwrap(); // blank lines are ignored
    writeln!(f, "{}", json!({"username": "no spaces allowed", "passwordHash": shared})).unwrap();
    for i in 0..ACCOUNTS {
        writeln!(f, "{}", json!({"username": format!("bulk{i}"), "passwordHash": shared})).unwrap();
    }
    drop(f);

    // Phase 2: the import through all three nodes, skipped accounts listed in a file.
    let skipped_file = dir.path().join("skipped.jsonl");
    let base = vec!["--nodes".to_string(), cluster.urls().join(","), "--token".into(), admin.clone(), "--json".into()];
    let args = |extra: &[&str]| [base.clone(), extra.iter().map(|s| s.to_string()).collect()].concat();
    let file_arg = file.display().to_string();
    let skipped_arg = skipped_file.display().to_string();
    let (ok, out, err) = cli(args(&["import", &file_arg, "--skipped", &skipped_arg])).await;
    assert!(ok, "{out} {err}");
    assert_eq!(out["imported"], ACCOUNTS + 1, "{out}");
    assert_eq!(out["skipped"], 2);
    assert_eq!(out["skippedByCode"], json!({"USERNAME_TAKEN": 1, "USERNAME_INVALID": 1}));
    let listed: Vec<Value> = std::fs::read_to_string(&skipped_file)
        .expect("skipped file")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(listed.len(), 2);
    assert_eq!((listed[0]["username"].as_str(), listed[0]["code"].as_str()), (Some("already"), Some("USERNAME_TAKEN")));

    // Phase 3: they sign in with their old passwords, through each node.
    let vera = client.login(1, "vera", "vera's password").await.expect("vera signs in");
    assert_eq!(vera.user.username, "Vera");
    for node in 0..3 {
        let name = format!("bulk{}", node * 1_000 + 7);
        client.login(node, &name, "bulk password").await.unwrap_or_else(|e| panic!("{name} on node {node}: {e}"));
    }
    assert!(client.login(2, "bulk1", "wrong password").await.is_err());

    // Phase 4: the same file again (as after an interrupted run) creates nobody twice.
    let (ok, out, err) = cli(args(&["import", &file_arg])).await;
    assert!(ok, "{out} {err}");
    assert_eq!(out["imported"], 0, "{out}");
    assert_eq!(out["skippedByCode"]["USERNAME_TAKEN"], ACCOUNTS + 2);

    // Phase 5: a malformed line stops the run with its number and a nonzero exit; the accounts
    // before it are in.
    let bad = dir.path().join("bad.jsonl");
    let hash = shared.as_str();
    std::fs::write(
        &bad,
        format!(
            "{}\n{{\"username\": \"late\", \"passwd\": \"x\"}}\n{}\n",
            json!({"username": "early", "passwordHash": hash}),
            json!({"username": "never", "passwordHash": hash})
        ),
    )
    .unwrap();
    let (ok, out, _) = cli(args(&["import", &bad.display().to_string()])).await;
    assert!(!ok, "a bad line must fail the run: {out}");
    let message = out["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("line 2"), "{out}");
    client.login(0, "early", "bulk password").await.expect("the account before the bad line is in");
    assert!(client.login(0, "never", "bulk password").await.is_err(), "nothing after the bad line was sent");
}
