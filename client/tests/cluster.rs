//! The typed client against real nodes, run in-process (see `support`): typed operations round
//! trip on one node, retries skip a dead node and stop on an unavailable cluster, and a
//! `saleUpdates` subscription resumes on another node, without gap or duplicate, when its node
//! shuts down.

mod support;

use std::time::Duration;

use client::ops::{field, SaleUpdate};
use client::{
    Client, ClientError, Consistency, CreateProductInput, CreateSaleInput, Failure, RegisterInput, RetryPolicy,
    SubscribeOptions, Subscription,
};
use support::{dead_address, TestCluster};

/// Time for a fresh cluster to elect a leader and become ready (debug build, loaded CI machine).
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound on one client call in these tests; they never assert how fast anything is.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// Upper bound on waiting for one subscription event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(20);

fn register_input(name: &str) -> RegisterInput {
    RegisterInput { username: name.into(), password: format!("{name} password 123"), ..Default::default() }
}

/// Creates a product and an open sale of `stock` units as the admin behind `admin`.
async fn open_sale(admin: &Client, stock: u32) -> String {
    let product = admin
        .create_product(0, &CreateProductInput { name: "Sneaker".into(), price_cents: 12_000, ..Default::default() })
        .await
        .expect("createProduct");
    let sale = admin
        .create_sale(0, &CreateSaleInput { product_id: product.id, stock, per_user_limit: stock, ..Default::default() })
        .await
        .expect("createSale");
    let started = admin.start_sale(0, &sale.id).await.expect("startSale");
    assert_eq!(started.status, "OPEN");
    sale.id
}

/// The next `saleUpdates` event, decoded; panics on an error, a closed channel or a timeout.
async fn next_update(sub: &mut Subscription) -> SaleUpdate {
    let item = tokio::time::timeout(EVENT_TIMEOUT, sub.recv())
        .await
        .expect("a sale update in time")
        .expect("subscription still open")
        .expect("no subscription error");
    field(item, "saleUpdates").expect("a saleUpdates event")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_ops_round_trip_on_one_node() {
    let cluster = TestCluster::start(1);
    cluster.wait_ready(READY_TIMEOUT).await;
    let anon = Client::new(cluster.urls()).expect("client");

    // Phase 1: usernames. A free name is AVAILABLE; reserved, others see RESERVED; registered
    // with the reservation token, TAKEN. Checks the query/mutation text, the variables and the
    // decoding of each result type against the real schema.
    let free = anon.username_availability(0, "alice", Some(Consistency::Linearizable)).await.expect("check");
    assert_eq!((free.canonical.as_str(), free.status.as_str()), ("alice", "AVAILABLE"));
    let hold = anon.reserve_username(0, "alice", Some(60)).await.expect("reserve");
    assert!(!hold.token.is_empty() && !hold.expires_at.is_empty());
    let held = anon.username_availability(0, "Alice", None).await.expect("check");
    assert_eq!(held.status, "RESERVED");
    let alice = anon
        .register(0, &RegisterInput { reservation_token: Some(hold.token), ..register_input("alice") })
        .await
        .expect("register");
    // The first account of a cluster is its admin.
    assert_eq!((alice.user.username.as_str(), alice.user.role.as_deref()), ("alice", Some("ADMIN")));
    let taken = anon.username_availability(0, "alice", Some(Consistency::Linearizable)).await.expect("check");
    assert_eq!(taken.status, "TAKEN");
    let again = anon.login(0, "alice", "alice password 123").await.expect("login");
    assert_eq!(again.user.id, alice.user.id);
    // A business error comes back with its code and is not retried (it is Final).
    let dup = anon.register(0, &register_input("alice")).await.expect_err("a second alice");
    assert_eq!((dup.code().as_str(), dup.failure()), ("USERNAME_TAKEN", Failure::Final));

    // Phase 2: sales. Product, sale, purchase; the same idempotency key twice returns the same
    // order and buys once, which is why purchase may be retried after an unknown outcome.
    let admin = anon.clone().with_bearer(alice.token.as_str());
    let sale_id = open_sale(&admin, 5).await;
    let bob = anon.register(0, &register_input("bob")).await.expect("register bob");
    let buyer = anon.clone().with_bearer(bob.token.as_str());
    let first = buyer.purchase(0, &sale_id, 2, "round-trip-1").await.expect("purchase");
    let repeat = buyer.purchase(0, &sale_id, 2, "round-trip-1").await.expect("purchase again");
    assert_eq!((first.quantity, &repeat.id), (2, &first.id));
    let sale = buyer.sale_linearizable(0, &sale_id).await.expect("sale").expect("the sale exists");
    assert_eq!((sale.sold, sale.stock, sale.status.as_str()), (2, 3, "OPEN"));
    assert_eq!(buyer.sale(0, "999999", Consistency::Local).await.expect("sale"), None);

    // Phase 3: the social graph. bob follows alice, alice posts, and bob's linearizable
    // timeline shows the tweet with its author and hashtag.
    let followed = buyer.follow(0, &alice.user.id).await.expect("follow").expect("alice exists");
    assert_eq!((followed.username.as_str(), followed.follower_count), ("alice", 1));
    let tweet = admin.post_tweet(0, "hello #Rust", None).await.expect("post");
    assert_eq!(tweet.hashtags, ["rust"]);
    let page = buyer.timeline(0, Some(10), None, Some(Consistency::Linearizable)).await.expect("timeline");
    let ids: Vec<&str> = page.nodes().map(|t| t.id.as_str()).collect();
    assert_eq!(ids, [tweet.id.as_str()]);
    assert_eq!(page.edges[0].node.author.as_ref().map(|a| a.username.as_str()), Some("alice"));

    // Phase 4: chats. A message sent twice with one client message id is one message.
    let chat = admin.create_chat(0, "plans", &[bob.user.id.as_str()]).await.expect("createChat");
    assert_eq!(chat.participant_count, 2);
    let m1 = buyer.send_message(0, &chat.id, "hi", "msg-1").await.expect("send");
    let m2 = buyer.send_message(0, &chat.id, "hi", "msg-1").await.expect("send again");
    assert_eq!(m1.id, m2.id);
    let messages = admin.messages(0, &chat.id, Some(10), None).await.expect("messages");
    assert_eq!(messages.nodes().map(|m| m.body.as_str()).collect::<Vec<_>>(), ["hi"]);

    // Phase 5: the command-line tool with --json. `buy` without --key reports the key it made
    // up (so a script can repeat the purchase safely); a failure is a JSON error on stdout with
    // a nonzero exit.
    let cli = |args: Vec<String>| async move {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_cli")).args(args).output().await.expect("run cli")
    };
    let base = vec!["--nodes".to_owned(), cluster.url(0), "--json".to_owned(), "--token".to_owned(), bob.token.clone()];
    let out = cli([base.clone(), vec!["buy".into(), sale_id.clone()]].concat()).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let bought: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(bought["purchase"]["quantity"], 1);
    let key = bought["idempotencyKey"].as_str().expect("the generated key is reported");
    // Repeating with that key returns the same order.
    let out = cli([base.clone(), vec!["buy".into(), sale_id.clone(), "--key".into(), key.into()]].concat()).await;
    let again: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON output");
    assert_eq!(again["purchase"]["id"], bought["purchase"]["id"]);
    let out = cli([base, vec!["buy".into(), "999999".into()]].concat()).await;
    assert!(!out.status.success());
    let failed: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON error");
    assert_eq!(failed["error"]["code"], "NOT_FOUND", "{failed}");
    assert!(failed["error"]["message"].is_string() && failed["error"]["idempotencyKey"].is_string());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retries_skip_a_dead_node_and_give_up_on_an_unavailable_cluster() {
    let mut cluster = TestCluster::start(3);
    cluster.wait_ready(READY_TIMEOUT).await;

    // Phase 1: a client whose first node is dead. A refused connection certainly sent nothing,
    // so even a non-idempotent mutation (register) moves on to the live node and succeeds,
    // and so does a read.
    let dead = dead_address();
    let client = Client::new([dead.clone(), cluster.url(0)]).expect("client");
    let carol = tokio::time::timeout(CALL_TIMEOUT, client.register(0, &register_input("carol")))
        .await
        .expect("bounded")
        .expect("register through the live node");
    assert_eq!(carol.user.username, "carol");
    let seen = client.username_availability(0, "carol", Some(Consistency::Linearizable)).await.expect("check");
    assert_eq!(seen.status, "TAKEN");
    // Without retries the same request fails at the dead node, classified as never sent.
    let once = client.clone().with_retries(false).username_availability(0, "carol", None).await.expect_err("dead");
    assert_eq!((once.code().as_str(), once.failure()), ("CONNECT", Failure::NotApplied));

    // Phase 2: two of three nodes gone, so the survivor has no quorum and answers UNAVAILABLE.
    // Both a write and a linearizable read must come back UNAVAILABLE after the bounded
    // retries, not hang: the timeout here only turns a hang into a failure.
    cluster.shutdown(1).await;
    cluster.shutdown(2).await;
    let policy = RetryPolicy { max_attempts: 3, ..RetryPolicy::default() };
    let survivor = Client::new([cluster.url(0)]).expect("client").with_retry_policy(policy);
    let write = tokio::time::timeout(CALL_TIMEOUT, survivor.reserve_username(0, "dave", Some(60)))
        .await
        .expect("the write gives up in bounded time")
        .expect_err("no quorum");
    assert_eq!(write.code(), "UNAVAILABLE", "{write}");
    // reserveUsername is not idempotent: if the survivor could not tell whether the write
    // reached a log, the error says so instead of repeating it.
    if write.outcome_unknown() {
        assert!(matches!(write, ClientError::OutcomeUnknown { .. }), "{write:?}");
        assert!(write.to_string().contains("outcome is unknown"), "{write}");
    } else {
        assert!(matches!(write, ClientError::Unavailable { outcome_unknown: false, .. }), "{write:?}");
    }
    let read =
        tokio::time::timeout(CALL_TIMEOUT, survivor.username_availability(0, "dave", Some(Consistency::Linearizable)))
            .await
            .expect("the read gives up in bounded time")
            .expect_err("no quorum to confirm the read");
    assert_eq!(read.code(), "UNAVAILABLE", "{read}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sale_updates_resume_on_another_node_without_gap_or_duplicate() {
    let mut cluster = TestCluster::start(3);
    let leader = cluster.wait_ready(READY_TIMEOUT).await;
    let anon = Client::new(cluster.urls()).expect("client");
    let admin_auth = anon.register(0, &register_input("sally")).await.expect("register admin");
    let admin = anon.clone().with_bearer(admin_auth.token.as_str());
    let buyer_auth = anon.register(0, &register_input("barry")).await.expect("register buyer");
    const STOCK: u32 = 100;
    const BEFORE: i64 = 5;
    const AFTER: i64 = 5;
    let sale_id = open_sale(&admin, STOCK).await;

    // Phase 1: subscribe on a follower (so the writes below keep their leader throughout) and
    // take the current state, then the updates of purchases made through the other nodes.
    let sub_node = (0..3).find(|&i| i != leader).expect("a follower");
    let others: Vec<String> = (0..3).filter(|&i| i != sub_node).map(|i| cluster.url(i)).collect();
    let buyer = Client::new(others).expect("client").with_bearer(buyer_auth.token.as_str());
    let options = SubscribeOptions { start_node: Some(sub_node), ..SubscribeOptions::default() };
    let mut sub = anon.sale_updates(&sale_id, None, options).expect("subscribe");
    let mut updates = vec![next_update(&mut sub).await];
    assert_eq!(updates[0].sold, 0, "the current state comes first");
    for i in 0..BEFORE {
        buyer.purchase(i as usize, &sale_id, 1, &format!("before-{i}")).await.expect("purchase");
    }
    while updates.last().expect("one").sold < BEFORE {
        updates.push(next_update(&mut sub).await);
    }

    // Phase 2: shut the subscription's node down, and buy more through the others while the
    // subscription reconnects, so that some updates reach it as a replay after its last index
    // and some live. Every update after the shutdown necessarily came from another node.
    cluster.shutdown(sub_node).await;
    for i in 0..AFTER {
        buyer.purchase(i as usize, &sale_id, 1, &format!("after-{i}")).await.expect("purchase");
    }
    while updates.last().expect("one").sold < BEFORE + AFTER {
        updates.push(next_update(&mut sub).await);
    }

    // Phase 3: exactly one update per purchase, in order: sold counts 0, 1, ..., 10 with
    // strictly increasing feed indexes, and the stock matching. A gap or a duplicate at the
    // resume point would break the sequence.
    let sold: Vec<i64> = updates.iter().map(|u| u.sold).collect();
    assert_eq!(sold, (0..=BEFORE + AFTER).collect::<Vec<_>>());
    assert!(updates.windows(2).all(|w| w[0].index < w[1].index), "indexes increase: {updates:?}");
    assert!(updates.iter().all(|u| u.stock + u.sold == i64::from(STOCK) && u.sale_id == sale_id));
    // Nothing further is pending: a duplicate would show up right behind the last update.
    let extra = tokio::time::timeout(Duration::from_millis(300), sub.recv()).await;
    assert!(extra.is_err(), "no update beyond the purchases: {extra:?}");
}

/// Reservations through each node in turn, LOCAL checks through the next.
const SESSION_TRIALS: usize = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_reads_its_own_writes_and_never_goes_back_on_any_node() {
    let cluster = TestCluster::start(3);
    cluster.wait_ready(READY_TIMEOUT).await;
    let client = Client::new(cluster.urls()).expect("client");

    // Phase 1: the typed client sends its session's index as atLeastIndex, so a LOCAL check
    // through another node than the one that took the reservation still sees it, every time;
    // and the index it keeps only grows.
    let mut last = client.session_index();
    for n in 0..SESSION_TRIALS {
        let name = format!("sess{n}");
        let writer = n % 3;
        tokio::time::timeout(CALL_TIMEOUT, client.reserve_username(writer, &name, Some(600)))
            .await
            .expect("bounded")
            .expect("reserve");
        let after_write = client.session_index();
        assert!(after_write > last, "the write's index raises the session's: {last} -> {after_write}");
        let seen = client.username_availability(writer + 1, &name, Some(Consistency::Local)).await.expect("check");
        assert_eq!(seen.status, "RESERVED", "{name}, reserved through node {writer}, read LOCAL through the next");
        assert!(client.session_index() >= after_write, "reads never lower the session's index");
        last = client.session_index();
    }

    // Phase 2: clones share the session; `new_session` starts where this one is and then goes
    // its own way; with the session off nothing is sent or kept.
    let clone = client.clone();
    clone.observe_index(last + 1);
    assert_eq!(client.session_index(), last + 1, "a clone shares the session");
    let other = client.new_session();
    assert_eq!(other.session_index(), last + 1);
    other.observe_index(last + 1_000_000);
    assert_eq!(client.session_index(), last + 1, "a new session moves on its own");
    let off = Client::new(cluster.urls()).expect("client").with_session(false);
    off.username_availability(0, "sess0", Some(Consistency::Local)).await.expect("check without a session");
    assert_eq!(off.session_index(), 0);

    // Phase 3: a session whose index no node has reached is refused with UNAVAILABLE on every
    // node (after the bounded wait, then the bounded retries), not served from the past.
    let ahead = other.with_retry_policy(RetryPolicy { max_attempts: 3, ..RetryPolicy::default() });
    let refused = tokio::time::timeout(CALL_TIMEOUT, ahead.username_availability(0, "sess0", Some(Consistency::Local)))
        .await
        .expect("bounded")
        .expect_err("no node has that index");
    assert_eq!(refused.code(), "UNAVAILABLE", "{refused}");

    // Phase 4: the cli carries the session across runs in a file: a reservation through one
    // node, then a LOCAL check through another, each a separate process.
    let dir = tempfile::tempdir().expect("temp dir");
    let session = dir.path().join("session");
    let cli = |node: usize, args: &[&str]| {
        let mut all = vec!["--nodes".to_owned(), cluster.url(node), "--json".to_owned(), "--session".to_owned()];
        all.push(session.display().to_string());
        all.extend(args.iter().map(|a| a.to_string()));
        async move { tokio::process::Command::new(env!("CARGO_BIN_EXE_cli")).args(all).output().await.expect("cli") }
    };
    for n in 0..10 {
        let name = format!("clisess{n}");
        let out = cli(n % 3, &["reserve", &name]).await;
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stdout));
        let saved: u64 = std::fs::read_to_string(&session).expect("session file").trim().parse().expect("an index");
        assert!(saved > 0);
        let out = cli((n + 1) % 3, &["check", &name, "--local"]).await;
        let seen: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
        assert_eq!(seen["usernameAvailability"]["status"], "RESERVED", "{name}: {seen}");
    }

    // Phase 5: `cli schema` prints the SDL codegen tools take.
    let out = cli(1, &["schema"]).await;
    let sdl: serde_json::Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert!(sdl["schema"].as_str().is_some_and(|s| s.contains("type Query")), "{sdl}");
}
