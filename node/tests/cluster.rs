//! Three real node processes on loopback: formation, one owner per username under concurrent
//! claims through every node, leader crash and recovery, loss of quorum, snapshot catch-up,
//! the cluster secret, join, and graceful shutdown.

mod support;

use std::time::{Duration, Instant};

use serde_json::json;
use support::{Cluster, AVAIL, REGISTER, RESERVE, SECRET};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_agree_survive_a_leader_crash_and_refuse_writes_without_quorum() {
    let mut c = Cluster::start(3, &[]);

    // Phase 1: started with the same --peers, the nodes form one cluster by themselves, and
    // every node answers `cluster` with the same leader and members.
    let leader = c.wait_ready(Duration::from_secs(30)).await;
    let mut leaders = Vec::new();
    for i in 0..3 {
        let s = c.status(i).await.expect("status");
        assert_eq!(s["members"].as_array().expect("members").len(), 3, "node {i}: {s}");
        leaders.push(s["leaderId"].clone());
    }
    assert!(leaders.iter().all(|l| *l == leaders[0]), "all nodes follow one leader: {leaders:?}");
    assert_eq!(leaders[0], c.nodes[leader].id);
    // /metrics speaks Prometheus text: requests by operation, and the node's Raft position.
    let text = c.http.get(format!("http://{}/metrics", c.nodes[leader].addr)).send().await.expect("metrics");
    let text = text.text().await.expect("body");
    for needle in [
        "graphql_requests_total{operation=\"cluster\",outcome=\"ok\"}",
        "graphql_request_duration_seconds_bucket{operation=\"cluster\"",
        "raft_term ",
        "raft_committed_index ",
        "raft_applied_index ",
        "raft_is_leader 1",
    ] {
        assert!(text.contains(needle), "metrics lack {needle}:\n{text}");
    }

    // Phase 2: fifty concurrent registrations of one name, spread over the three nodes, give
    // exactly one account; the 49 others fail with USERNAME_TAKEN. Apply decides, on the
    // committed order, so it holds whichever node each request reached.
    let mut tasks = Vec::new();
    for k in 0..50 {
        let c = c.client();
        tasks.push(tokio::spawn(async move {
            c.gql(k % 3, REGISTER, json!({"u": "alice", "p": format!("password-{k}")}), None).await
        }));
    }
    let mut ok = 0;
    let mut taken = 0;
    for t in tasks {
        match t.await.expect("task") {
            (d, None) => {
                assert_eq!(d["register"]["user"]["username"], "alice");
                ok += 1;
            }
            (_, Some(code)) if code == "USERNAME_TAKEN" => taken += 1,
            (_, Some(code)) => panic!("unexpected error code {code}"),
        }
    }
    assert_eq!((ok, taken), (1, 49), "exactly one owner");
    // ... and /metrics says where those writes spent their time, stage by stage: the leader
    // wrote batches through Raft, every node appended and applied them, and a follower
    // forwarded its own. A stage that is never recorded would make the profile in
    // docs/BENCHMARKS.md silently wrong.
    for i in 0..3 {
        let text = c.http.get(format!("http://{}/metrics", c.nodes[i].addr)).send().await.expect("metrics");
        let text = text.text().await.expect("body");
        let count = |stage: &str| -> u64 {
            let prefix = format!("stage_duration_seconds_count{{stage=\"{stage}\"}} ");
            let line = text.lines().find(|l| l.starts_with(&prefix)).unwrap_or_else(|| panic!("no {prefix}:\n{text}"));
            line[prefix.len()..].parse().expect("a count")
        };
        let mut recorded = vec!["http_decode", "graphql_parse", "graphql_validate", "graphql_execute", "http_encode"];
        recorded.extend(["propose", "propose_queue", "log_append", "log_fsync", "apply", "apply_commit"]);
        recorded.push(if i == leader { "raft_write" } else { "forward" });
        if i == leader {
            recorded.push("replicate_rpc");
        }
        for stage in recorded {
            assert!(count(stage) > 0, "node {i} (leader {leader}) recorded no {stage}");
        }
    }
    // ... and every node sees the name taken, in any case and as its Cyrillic look-alike.
    for i in 0..3 {
        for name in ["ALICE", "\u{0430}lice"] {
            let (d, e) = c.gql(i, AVAIL, json!({"n": name}), None).await;
            assert_eq!(e, None);
            assert_eq!(d["usernameAvailability"]["status"], "TAKEN", "node {i}, {name}");
        }
    }

    // Phase 3: kill -9 the leader. A write through either survivor succeeds within a few
    // seconds (a new election plus forwarding), with no client-side knowledge of the leader.
    let old_leader = c.wait_ready(Duration::from_secs(10)).await;
    c.kill(old_leader);
    let survivors: Vec<usize> = (0..3).filter(|i| *i != old_leader).collect();
    for (n, &i) in survivors.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (d, e) = c.gql(i, RESERVE, json!({"n": format!("after_crash_{n}")}), None).await;
            if e.is_none() {
                assert!(d["reserveUsername"]["token"].is_string());
                break;
            }
            assert_eq!(e.as_deref(), Some("UNAVAILABLE"), "only UNAVAILABLE while electing");
            assert!(Instant::now() < deadline, "no write succeeded through node {i} after the leader died");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    // Phase 4: the killed node restarts with its data dir and catches up; it rejoins as a
    // follower of the same cluster (it must not initialize a new one).
    c.spawn(old_leader);
    c.wait_ready(Duration::from_secs(30)).await;
    let target = c.status(survivors[0]).await.expect("status")["lastApplied"].as_u64().expect("index");
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let s = c.status(old_leader).await;
        if let Some(s) = &s {
            if s["lastApplied"].as_u64().unwrap_or(0) >= target {
                assert_eq!(s["members"].as_array().expect("members").len(), 3);
                break;
            }
        }
        assert!(Instant::now() < deadline, "restarted node did not catch up: {s:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (d, _) = c.gql(old_leader, AVAIL, json!({"n": "after_crash_1", "c": "LOCAL"}), None).await;
    assert_eq!(d["usernameAvailability"]["status"], "RESERVED", "writes made while it was down are there");

    // Phase 5: with two of three nodes down, a write fails fast with UNAVAILABLE and a retry
    // hint, on the survivor whether it was leader or follower; it never hangs.
    let keep = c.wait_ready(Duration::from_secs(10)).await;
    for i in (0..3).filter(|i| *i != keep) {
        c.kill(i);
    }
    for attempt in 0..3 {
        let started = Instant::now();
        let resp: serde_json::Value = c
            .http
            .post(c.url(keep))
            .json(&json!({"query": RESERVE, "variables": {"n": format!("no_quorum_{attempt}")}}))
            .send()
            .await
            .expect("the node answers")
            .json()
            .await
            .expect("json");
        let elapsed = started.elapsed();
        let ext = &resp["errors"][0]["extensions"];
        assert_eq!(ext["code"], "UNAVAILABLE", "attempt {attempt}: {resp}");
        assert!(ext["retryAfterMs"].as_u64().is_some(), "a retry hint: {resp}");
        assert!(elapsed < Duration::from_secs(2), "attempt {attempt} took {elapsed:?}; must fail within 2 s");
    }
    // And under concurrency: more writes at once than the proposer has pipeline slots, so
    // some wait in its queue; each answers UNAVAILABLE within 2 s of being sent, since time in
    // the queue counts against the same deadline.
    let mut tasks = Vec::new();
    for k in 0..24 {
        let (http, url) = (c.http.clone(), c.url(keep));
        tasks.push(tokio::spawn(async move {
            let started = Instant::now();
            let body = json!({"query": RESERVE, "variables": {"n": format!("no_quorum_many_{k}")}});
            let resp = http.post(url).json(&body).send().await.expect("the node answers");
            let v: serde_json::Value = resp.json().await.expect("json");
            (v, started.elapsed())
        }));
    }
    for t in tasks {
        let (v, elapsed) = t.await.expect("task");
        assert_eq!(v["errors"][0]["extensions"]["code"], "UNAVAILABLE", "{v}");
        assert!(elapsed < Duration::from_secs(2), "a queued write took {elapsed:?}; must fail within 2 s");
    }
    // Reads that need the leader's confirmation fail the same way; LOCAL reads still answer.
    let (_, e) = c.gql(keep, AVAIL, json!({"n": "alice", "c": "LINEARIZABLE"}), None).await;
    assert_eq!(e.as_deref(), Some("UNAVAILABLE"));
    let (d, e) = c.gql(keep, AVAIL, json!({"n": "alice", "c": "LOCAL"}), None).await;
    assert_eq!(e, None);
    assert_eq!(d["usernameAvailability"]["status"], "TAKEN");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_node_behind_the_purge_point_catches_up_from_a_snapshot_and_peers_need_the_secret() {
    // Small snapshot and log-retention settings so a short outage puts a node behind the purge
    // point, where only a snapshot can bring it back.
    let mut c = Cluster::start(3, &["--snapshot-logs", "20", "--logs-kept-after-snapshot", "5"]);
    let leader = c.wait_ready(Duration::from_secs(30)).await;

    // Phase 1: a peer without the cluster secret gets 401, and nothing changes: no signature,
    // one made with another secret, a replay of a valid one, and the bare secret in a header
    // (the secret never travels, so knowing the header name buys nothing).
    let before = c.status(leader).await.expect("status");
    let url = format!("http://{}/raft/append", c.nodes[leader].addr);
    let leader_id = leader as u64 + 1;
    let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_millis() as i64;
    let forged = raft::PeerAuth::new(b"wrong-secret-wrong-secret", 0).sign("append", leader_id, b"{}", now_ms);
    let signer = raft::PeerAuth::new(SECRET.as_bytes(), 0);
    let valid = signer.sign("status", leader_id, b"null", now_ms);
    let status_url = format!("http://{}/raft/status", c.nodes[leader].addr);
    let first = c.http.post(&status_url).header("x-raft-signature", &valid).body("null").send().await;
    assert_eq!(first.expect("send").status(), 200, "a request signed with the secret is served");
    let replay = c.http.post(&status_url).header("x-raft-signature", &valid).body("null").send().await;
    assert_eq!(replay.expect("send").status(), 401, "the same signed request again is a replay");
    let other_body = signer.sign("append", leader_id, b"{}", now_ms);
    let swapped = c.http.post(&url).header("x-raft-signature", &other_body).body("{\"x\":1}").send().await;
    assert_eq!(swapped.expect("send").status(), 401, "a body other than the signed one");
    for header in [None, Some(("x-raft-signature", forged)), Some(("x-cluster-secret", SECRET.to_string()))] {
        let mut req = c.http.post(&url).body("{}");
        if let Some((name, value)) = header {
            req = req.header(name, value);
        }
        assert_eq!(req.send().await.expect("send").status(), 401);
    }
    let after = c.status(leader).await.expect("status");
    assert_eq!(
        (before["term"].clone(), before["lastApplied"].clone()),
        (after["term"].clone(), after["lastApplied"].clone())
    );

    // Phase 1b: a GraphQL body past the size limit, and one that is not a GraphQL request, get a
    // GraphQL error with a code rather than being read whole or answered with a bare status.
    let gql_url = format!("http://{}/graphql", c.nodes[leader].addr);
    let huge = format!("{{\"query\": \"{{ cluster {{ nodeId }} }}\", \"x\": \"{}\"}}", "a".repeat(300 * 1024));
    for (body, needle) in [(huge, "exceeds"), ("not json".to_string(), "must be a JSON GraphQL request")] {
        let resp = c.http.post(&gql_url).header("content-type", "application/json").body(body).send().await;
        let v: serde_json::Value = resp.expect("send").json().await.expect("a JSON answer");
        assert_eq!(v["errors"][0]["extensions"]["code"], "INVALID_INPUT", "{v}");
        assert!(v["errors"][0]["message"].as_str().unwrap_or("").contains(needle), "{v}");
    }

    // Phase 2: one follower is down while 100 writes land, far past the purge point.
    let down = (0..3).find(|i| *i != leader).expect("a follower");
    c.kill(down);
    for k in 0..100 {
        let (_, e) = c.gql(leader, RESERVE, json!({"n": format!("snap{k}")}), None).await;
        assert_eq!(e, None, "write {k}");
    }
    let s = c.status(leader).await.expect("status");
    assert!(s["snapshotIndex"].as_u64().unwrap_or(0) > 20, "the leader built snapshots: {s}");

    // Phase 3: restarted, it installs a snapshot and then follows the log: it sees every write.
    c.spawn(down);
    let target = c.status(leader).await.expect("status")["lastApplied"].as_u64().expect("index");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(s) = c.status(down).await {
            if s["lastApplied"].as_u64().unwrap_or(0) >= target {
                // Installed from the leader, not merely built from a replayed log.
                assert!(s["snapshotsInstalled"].as_u64().unwrap_or(0) >= 1, "it caught up through a snapshot: {s}");
                break;
            }
        }
        assert!(Instant::now() < deadline, "node behind the purge point did not catch up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for k in [0, 57, 99] {
        let (d, _) = c.gql(down, AVAIL, json!({"n": format!("snap{k}"), "c": "LOCAL"}), None).await;
        assert_eq!(d["usernameAvailability"]["status"], "RESERVED", "snap{k} on the restarted node");
    }

    // Phase 4: a fourth node joins a running cluster with --join (learner, then voter). Its
    // /ready is honest all the way: 503 with a phase until it is a member that reaches the leader
    // and has applied the log; once 200, its own cluster view names it a member and says READY.
    // (A joiner used to answer 200 within a second, before it knew any member.)
    let j = c.spawn_joiner(4, leader);
    let ready_url = format!("http://{}/ready", c.nodes[j].addr);
    let view = "{ cluster { phase entriesBehind lastApplied members { id voter } } }";
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut phases = std::collections::BTreeSet::new();
    loop {
        let probe = match c.http.get(&ready_url).send().await {
            Ok(r) => Some((r.status().as_u16(), r.text().await.unwrap_or_default())),
            Err(_) => None,
        };
        if let Some((code, body)) = probe {
            let phase = body.split(':').next().unwrap_or("").to_string();
            assert!(
                ["READY", "NOT_MEMBER", "NO_LEADER", "CATCHING_UP"].contains(&phase.as_str()),
                "/ready names its phase: {code} {body}"
            );
            assert_eq!(code == 200, phase == "READY", "{code} {body}");
            phases.insert(phase);
            if code == 200 {
                let (d, e) = c.gql(j, view, json!({}), None).await;
                assert_eq!(e, None);
                let s = &d["cluster"];
                let members = s["members"].as_array().cloned().unwrap_or_default();
                assert!(members.iter().any(|m| m["id"] == 4), "ready, so a member: {s}");
                assert!(s["entriesBehind"].as_u64().is_some_and(|b| b <= raft::READY_APPLY_LAG_MAX), "{s}");
                let voters = members.iter().filter(|m| m["voter"] == true).count();
                if voters == 4 && s["lastApplied"].as_u64().unwrap_or(0) >= target {
                    break;
                }
            }
        }
        assert!(Instant::now() < deadline, "joiner did not become a ready voter (phases seen: {phases:?})");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Phase 4b: the joined voter restarts with a --join address where nothing answers. Its own
    // state names it a voter, so it asks nobody, serves, and becomes ready again (a node that
    // asked would fail to join and stop).
    c.kill(j);
    c.spawn_with_join(j, "127.0.0.1:1");
    c.wait_ready(Duration::from_secs(30)).await;
    let log = std::fs::read_to_string(&c.nodes[j].log).unwrap_or_default();
    assert!(log.contains("a voter already: not joining again"), "the restarted voter did not ask to join");

    // Phase 5: SIGTERM drains and exits 0; the others keep serving writes.
    let victim = c.wait_ready(Duration::from_secs(10)).await;
    assert_eq!(c.terminate(victim), Some(0), "graceful shutdown exits 0");
    let other = (0..4).find(|i| *i != victim).expect("another node");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let (_, e) = c.gql(other, RESERVE, json!({"n": "after_sigterm"}), None).await;
        if e.is_none() {
            break;
        }
        assert!(Instant::now() < deadline, "cluster did not recover after a graceful leader exit: {e:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
