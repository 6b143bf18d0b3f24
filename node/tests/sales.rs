//! Flash sales on three real node processes: exact stock under 300 concurrent buyers spread
//! over the nodes, the per-user limit under one buyer's concurrent purchases, a live
//! `saleUpdates` subscriber on a node that takes no purchases, and a leader killed mid-sale
//! with no acknowledged order lost or doubled.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::{Cluster, Gql, Subscription, LOGIN, REGISTER};

const BUY: &str =
    "mutation($s:ID!,$q:Int!,$k:String!){ purchase(saleId:$s, quantity:$q, idempotencyKey:$k){ id quantity } }";
const SALE: &str = "query($id:ID!){ sale(id:$id){ status stock sold initialStock } }";
const ORDERS: &str = "query($s:ID!,$a:String){ orders(saleId:$s, first:100, after:$a){ edges{ cursor node{ id quantity idempotencyKey user{ id } } } pageInfo{ hasNextPage } } }";

async fn register_all(c: &Gql, prefix: &str, n: usize, nodes: &[usize]) -> Vec<String> {
    // Bounded parallelism: argon2id is deliberately slow, and the node caps hashes in flight.
    let sem = Arc::new(tokio::sync::Semaphore::new(16));
    let mut tasks = Vec::new();
    for i in 0..n {
        let (c, sem, node) = (c.clone(), sem.clone(), nodes[i % nodes.len()]);
        let name = format!("{prefix}{i}");
        tasks.push(tokio::spawn(async move {
            let _p = sem.acquire().await.expect("sem");
            let vars = json!({"u": name, "p": "buyer password"});
            // As a real client: an overloaded node sheds a write with UNAVAILABLE; retry, and if
            // an earlier attempt did commit, the name is ours and logging in finds it.
            for attempt in 0..5 {
                match c.gql(node, REGISTER, vars.clone(), None).await {
                    (d, None) => return d["register"]["token"].as_str().expect("token").to_string(),
                    (_, Some(code)) if code == "UNAVAILABLE" && attempt < 4 => {
                        tokio::time::sleep(Duration::from_millis(200)).await
                    }
                    (_, Some(code)) if code == "USERNAME_TAKEN" && attempt > 0 => {
                        let (d, e) = c.gql(node, LOGIN, vars.clone(), None).await;
                        assert_eq!(e, None, "login {name}");
                        return d["login"]["token"].as_str().expect("token").to_string();
                    }
                    (_, e) => panic!("register {name}: {e:?}"),
                }
            }
            unreachable!("the loop returns or panics")
        }));
    }
    let mut tokens = Vec::new();
    for t in tasks {
        tokens.push(t.await.expect("task"));
    }
    tokens
}

async fn create_sale(c: &Gql, admin: &str, stock: u64, limit: u64) -> String {
    let p = c
        .gql(0, "mutation{ createProduct(input:{name:\"Sneaker\", priceCents:12000}){ id } }", json!({}), Some(admin))
        .await;
    let product = p.0["createProduct"]["id"].as_str().expect("product").to_string();
    let q = "mutation($p:ID!,$s:Int!,$l:Int!){ createSale(input:{productId:$p, stock:$s, perUserLimit:$l}){ id } }";
    let s = c.gql(0, q, json!({"p": product, "s": stock, "l": limit}), Some(admin)).await;
    let sale = s.0["createSale"]["id"].as_str().expect("sale").to_string();
    let (_, e) = c.gql(0, "mutation($s:ID!){ startSale(saleId:$s){ status } }", json!({"s": sale}), Some(admin)).await;
    assert_eq!(e, None);
    sale
}

/// Every order of a sale as node `i` sees it (admin view, all pages).
async fn all_orders(c: &Gql, i: usize, admin: &str, sale: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut after: Option<String> = None;
    for _ in 0..1000 {
        let (d, e) = c.gql(i, ORDERS, json!({"s": sale, "a": after}), Some(admin)).await;
        assert_eq!(e, None, "orders on node {i}");
        let edges = d["orders"]["edges"].as_array().expect("edges").clone();
        after = edges.last().and_then(|e| e["cursor"].as_str()).map(str::to_string);
        out.extend(edges.into_iter().map(|e| e["node"].clone()));
        if d["orders"]["pageInfo"]["hasNextPage"] != true {
            return out;
        }
    }
    panic!("orders did not end");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sales_never_oversell_across_nodes_and_survive_a_leader_crash() {
    let mut cluster = Cluster::start(3, &[]);
    cluster.wait_ready(Duration::from_secs(30)).await;
    let c = cluster.client();
    let (d, e) = c.gql(0, REGISTER, json!({"u": "shopadmin", "p": "admin password"}), None).await;
    assert_eq!(e, None, "the first account is the admin");
    let admin = d["register"]["token"].as_str().expect("token").to_string();

    // Phase 1: a sale of 100 units, 2 per buyer, and, on a second sale of 20, a subscriber on
    // node 3, which will take none of that sale's purchases: it must see its stock fall to 0
    // and SOLD_OUT live.
    let sale = create_sale(&c, &admin, 100, 2).await;
    let watched = create_sale(&c, &admin, 20, 2).await;
    let sub_q = "subscription($s:ID!){ saleUpdates(saleId:$s){ index stock sold status } }";
    let mut sub = Subscription::open(&cluster.nodes[2].addr, sub_q, json!({"s": watched}), None).await;
    let first = sub.next(Duration::from_secs(10)).await.expect("current state");
    assert_eq!(first["data"]["saleUpdates"]["stock"], 20, "{first}");

    // Phase 2: 300 buyers fire one purchase each at once, spread over the three nodes: exactly
    // 100 succeed, the rest are SOLD_OUT.
    let buyers = register_all(&c, "buyer", 300, &[0, 1, 2]).await;
    let mut tasks = Vec::new();
    for (i, token) in buyers.iter().enumerate() {
        let (c, token, sale) = (c.clone(), token.clone(), sale.clone());
        tasks.push(tokio::spawn(async move {
            c.gql(i % 3, BUY, json!({"s": sale, "q": 1, "k": "once"}), Some(&token)).await.1
        }));
    }
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for t in tasks {
        *outcomes.entry(t.await.expect("task").unwrap_or_else(|| "OK".into())).or_default() += 1;
    }
    assert_eq!(outcomes, BTreeMap::from([("OK".to_string(), 100), ("SOLD_OUT".to_string(), 200)]));
    for i in 0..3 {
        let (d, e) = c.gql(i, SALE, json!({"id": sale}), None).await;
        assert_eq!(e, None);
        let s = &d["sale"];
        assert_eq!(
            (s["stock"].as_u64(), s["sold"].as_u64(), s["status"].as_str()),
            (Some(0), Some(100), Some("SOLD_OUT")),
            "node {i}"
        );
    }
    let orders = all_orders(&c, 2, &admin, &sale).await;
    assert_eq!(orders.iter().map(|o| o["quantity"].as_u64().unwrap_or(0)).sum::<u64>(), 100, "orders add up");
    let mut per_buyer: BTreeMap<String, u64> = BTreeMap::new();
    for o in &orders {
        *per_buyer.entry(o["user"]["id"].to_string()).or_default() += o["quantity"].as_u64().unwrap_or(0);
    }
    assert!(per_buyer.values().all(|q| *q <= 2), "no buyer holds more than 2");

    // Phase 2b: 30 buyers take the watched sale through nodes 1 and 2 only; the subscriber on
    // node 3 sees it live, down to 0 and SOLD_OUT.
    let mut tasks = Vec::new();
    for (i, token) in buyers.iter().take(30).enumerate() {
        let (c, token, watched) = (c.clone(), token.clone(), watched.clone());
        tasks.push(tokio::spawn(async move {
            c.gql(i % 2, BUY, json!({"s": watched, "q": 1, "k": "watched"}), Some(&token)).await.1
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.expect("task") {
            None => ok += 1,
            Some(code) => assert_eq!(code, "SOLD_OUT"),
        }
    }
    assert_eq!(ok, 20, "exactly the stock");
    let mut last = first;
    while last["data"]["saleUpdates"]["status"] != "SOLD_OUT" {
        last = sub.next(Duration::from_secs(10)).await.expect("live updates until sold out");
    }
    assert_eq!(last["data"]["saleUpdates"]["stock"], 0);

    // Phase 3: one buyer firing 10 concurrent purchases (distinct keys) gets exactly 2.
    let sale2 = create_sale(&c, &admin, 100, 2).await;
    let mut tasks = Vec::new();
    for k in 0..10 {
        let (c, token, sale2) = (c.clone(), buyers[0].clone(), sale2.clone());
        tasks.push(tokio::spawn(async move {
            c.gql(k % 3, BUY, json!({"s": sale2, "q": 1, "k": format!("k{k}")}), Some(&token)).await.1
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.expect("task") {
            None => ok += 1,
            Some(code) => assert_eq!(code, "LIMIT_EXCEEDED"),
        }
    }
    assert_eq!(ok, 2, "exactly the per-user limit");

    // Phase 3b: the same idempotency key fired at once through all three nodes by one buyer:
    // apply decides on the committed order, so every call returns the one first order.
    let mut tasks = Vec::new();
    for k in 0..9 {
        let (c, token, sale2) = (c.clone(), buyers[1].clone(), sale2.clone());
        tasks.push(tokio::spawn(async move {
            c.gql(k % 3, BUY, json!({"s": sale2, "q": 1, "k": "same-key"}), Some(&token)).await
        }));
    }
    let mut ids = std::collections::BTreeSet::new();
    for t in tasks {
        let (d, e) = t.await.expect("task");
        assert_eq!(e, None, "a repeated key returns the first order: {d}");
        ids.insert(d["purchase"]["id"].to_string());
    }
    assert_eq!(ids.len(), 1, "one order for one key, whichever node took each call: {ids:?}");

    // Phase 4: the leader is killed in the middle of a sale. Buyers retry UNAVAILABLE with the
    // same idempotency key, as a real client would. No acknowledged order may be lost or
    // doubled, and stock + sold stays equal to the initial stock.
    let sale3 = create_sale(&c, &admin, 150, 10).await;
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::new(Mutex::new(Vec::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut tasks = Vec::new();
    for (b, token) in buyers.iter().take(40).enumerate() {
        let (c, token, sale3, acked, stop) = (c.clone(), token.clone(), sale3.clone(), acked.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let deadline = Instant::now() + Duration::from_secs(40);
            for n in 0..10 {
                let key = format!("b{b}n{n}");
                for attempt in 0.. {
                    if stop.load(std::sync::atomic::Ordering::Relaxed) || Instant::now() > deadline {
                        return;
                    }
                    let node = (b + n + attempt) % 3;
                    let (d, e) = c.gql(node, BUY, json!({"s": sale3, "q": 1, "k": key}), Some(&token)).await;
                    match e.as_deref() {
                        None => {
                            acked
                                .lock()
                                .expect("lock")
                                .push((d["purchase"]["id"].as_str().unwrap_or("").to_string(), key));
                            break;
                        }
                        Some("SOLD_OUT") => return,
                        // The leader is gone or the node is down: retry the same key elsewhere.
                        Some(_) => tokio::time::sleep(Duration::from_millis(50)).await,
                    }
                }
            }
        }));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while acked.lock().expect("lock").len() < 40 {
        assert!(Instant::now() < deadline, "purchases did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let leader = cluster.leader().await.expect("a leader");
    cluster.kill(leader);
    for t in tasks {
        t.await.expect("buyer task");
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    cluster.spawn(leader);
    cluster.wait_ready(Duration::from_secs(30)).await;
    let acked = acked.lock().expect("lock").clone();
    assert!(acked.len() > 40, "purchases continued after the crash: {}", acked.len());
    let target = cluster.status((leader + 1) % 3).await.expect("status")["lastApplied"].as_u64().expect("applied");
    for i in 0..3 {
        // Every node, including the restarted one, holds every acknowledged order exactly once.
        let deadline = Instant::now() + Duration::from_secs(20);
        while cluster.status(i).await.and_then(|s| s["lastApplied"].as_u64()).unwrap_or(0) < target {
            assert!(Instant::now() < deadline, "node {i} did not catch up");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let orders = all_orders(&c, i, &admin, &sale3).await;
        let ids: BTreeSet<String> = orders.iter().map(|o| o["id"].as_str().unwrap_or("").to_string()).collect();
        assert_eq!(ids.len(), orders.len(), "node {i}: no order listed twice");
        let keys: BTreeSet<(String, String)> = orders
            .iter()
            .map(|o| (o["user"]["id"].to_string(), o["idempotencyKey"].as_str().unwrap_or("").to_string()))
            .collect();
        assert_eq!(keys.len(), orders.len(), "node {i}: a retried key never bought twice");
        for (id, key) in &acked {
            assert!(ids.contains(id), "node {i}: acknowledged order {id} ({key}) is missing");
        }
        let (d, _) = c.gql(i, SALE, json!({"id": sale3}), None).await;
        let s = &d["sale"];
        let sold = s["sold"].as_u64().expect("sold");
        assert_eq!(sold + s["stock"].as_u64().expect("stock"), 150, "node {i}: stock + sold = initial");
        assert_eq!(
            sold,
            orders.iter().map(|o| o["quantity"].as_u64().unwrap_or(0)).sum::<u64>(),
            "node {i}: sold matches orders"
        );
    }
}
