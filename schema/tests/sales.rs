//! Flash-sale rules through `schema.execute` on a real one-node store: admin guards, time
//! windows (stamped time, not the node's clock), all-or-nothing stock, per-user limits,
//! idempotency, orders, the leaderboard, and resumable `saleUpdates`.

mod support;

use std::time::Duration;

use async_graphql::{Request, Variables};
use chrono::Utc;
use futures::StreamExt;
use raft::Proposal;
use raft::{Command, Response};
use schema::{BearerToken, SchemaConfig};
use serde_json::{json, Value};
use support::{one_node, Harness};

const PRODUCT: &str =
    "mutation($n:String!){ createProduct(input:{name:$n, description:\"d\", priceCents:999}){ id name priceCents } }";
const SALE: &str = "mutation($p:ID!,$s:Int!,$l:Int!,$a:DateTime,$b:DateTime){ createSale(input:{productId:$p, stock:$s, perUserLimit:$l, startsAt:$a, endsAt:$b}){ id status stock sold perUserLimit } }";
const BUY: &str = "mutation($s:ID!,$q:Int!,$k:String!){ purchase(saleId:$s, quantity:$q, idempotencyKey:$k){ id saleId quantity user{ username } } }";
const READ: &str = "query($id:ID!){ sale(id:$id){ id status stock sold initialStock product{ name } } }";

struct Shop {
    h: Harness,
    admin: String,
    product: String,
}

async fn shop() -> Shop {
    let h = one_node(SchemaConfig::default()).await;
    let admin = h.register("admin_user").await["token"].as_str().expect("token").to_string();
    let p = h.ok(PRODUCT, json!({"n": "Widget"}), Some(&admin)).await;
    let product = p["createProduct"]["id"].as_str().expect("id").to_string();
    Shop { h, admin, product }
}

impl Shop {
    async fn sale(&self, stock: i64, limit: i64, starts: Option<String>, ends: Option<String>) -> String {
        let v = json!({"p": self.product, "s": stock, "l": limit, "a": starts, "b": ends});
        self.h.ok(SALE, v, Some(&self.admin)).await["createSale"]["id"].as_str().expect("id").to_string()
    }
    async fn buyer(&self, name: &str) -> String {
        self.h.register(name).await["token"].as_str().expect("token").to_string()
    }
    async fn buy(&self, token: &str, sale: &str, q: i64, key: &str) -> (Value, Option<String>) {
        let (d, e) = self.h.run(BUY, json!({"s": sale, "q": q, "k": key}), Some(token)).await;
        (d, e.first().map(|e| e.0.clone()))
    }
    async fn read(&self, sale: &str) -> Value {
        self.h.ok(READ, json!({"id": sale}), None).await["sale"].clone()
    }
}

fn at(offset_secs: i64) -> String {
    (Utc::now() + chrono::Duration::seconds(offset_secs)).to_rfc3339()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sales_follow_the_rules() {
    let s = shop().await;
    let bob = s.buyer("bob").await;

    // Phase 1: only admins create products and sales; bad input is INVALID_INPUT.
    assert_eq!(s.h.code(PRODUCT, json!({"n": "x"}), Some(&bob)).await, "FORBIDDEN");
    assert_eq!(s.h.code(PRODUCT, json!({"n": "x"}), None).await, "UNAUTHENTICATED");
    let bad = json!({"p": s.product, "s": 0, "l": 1});
    assert_eq!(s.h.code(SALE, bad, Some(&s.admin)).await, "INVALID_INPUT");
    let bad = json!({"p": "999", "s": 5, "l": 1});
    assert_eq!(s.h.code(SALE, bad, Some(&s.admin)).await, "NOT_FOUND");

    // Phase 2: a sale without startsAt is SCHEDULED until startSale; purchases wait.
    let manual = s.sale(10, 3, None, None).await;
    assert_eq!(s.read(&manual).await["status"], "SCHEDULED");
    assert_eq!(s.buy(&bob, &manual, 1, "k0").await.1.as_deref(), Some("SALE_NOT_OPEN"));
    let start = "mutation($s:ID!){ startSale(saleId:$s){ status } }";
    assert_eq!(s.h.code(start, json!({"s": manual}), Some(&bob)).await, "FORBIDDEN");
    assert_eq!(s.h.ok(start, json!({"s": manual}), Some(&s.admin)).await["startSale"]["status"], "OPEN");

    // Phase 3: the per-user limit counts a buyer's total across orders.
    let (d, e) = s.buy(&bob, &manual, 2, "k1").await;
    assert_eq!(e, None, "{d}");
    assert_eq!(d["purchase"]["user"]["username"], "bob");
    let carol = s.buyer("carol").await;
    let dave = s.buyer("dave").await;
    let erin = s.buyer("erin").await;
    assert_eq!(s.buy(&carol, &manual, 3, "k1").await.1, None);
    assert_eq!(s.buy(&dave, &manual, 3, "k1").await.1, None);
    assert_eq!(s.buy(&dave, &manual, 1, "k2").await.1.as_deref(), Some("LIMIT_EXCEEDED"));

    // Phase 4: all or nothing: asking for more than is left sells nothing.
    assert_eq!(s.buy(&erin, &manual, 3, "e1").await.1.as_deref(), Some("SOLD_OUT"));
    let r = s.read(&manual).await;
    assert_eq!((r["stock"].as_u64(), r["sold"].as_u64()), (Some(2), Some(8)), "nothing sold partially: {r}");

    // Phase 5: a repeated idempotency key returns the first order, even once sold out (and
    // even though bob is now at his limit).
    let (first, e) = s.buy(&bob, &manual, 1, "same-key").await;
    assert_eq!(e, None);
    assert_eq!(s.buy(&erin, &manual, 1, "e2").await.1, None);
    let (again, e) = s.buy(&bob, &manual, 1, "same-key").await;
    assert_eq!(e, None);
    assert_eq!(first["purchase"]["id"], again["purchase"]["id"], "same order");
    let r = s.read(&manual).await;
    assert_eq!((r["status"].as_str(), r["stock"].as_u64(), r["sold"].as_u64()), (Some("SOLD_OUT"), Some(0), Some(10)));

    // Phase 6: bad purchases are INVALID_INPUT or NOT_FOUND and change nothing.
    assert_eq!(s.buy(&bob, &manual, 0, "z").await.1.as_deref(), Some("INVALID_INPUT"));
    assert_eq!(s.buy(&bob, "12345", 1, "z").await.1.as_deref(), Some("NOT_FOUND"));
    assert_eq!(s.buy(&bob, &manual, 1, "").await.1.as_deref(), Some("INVALID_INPUT"));

    // Phase 7: time windows: before startsAt and after endsAt are SALE_NOT_OPEN; ended is final.
    let later = s.sale(5, 5, Some(at(3600)), None).await;
    assert_eq!(s.read(&later).await["status"], "SCHEDULED");
    assert_eq!(s.buy(&bob, &later, 1, "t1").await.1.as_deref(), Some("SALE_NOT_OPEN"));
    let past = s.sale(5, 5, Some(at(-7200)), Some(at(-3600))).await;
    assert_eq!(s.read(&past).await["status"], "ENDED");
    assert_eq!(s.buy(&bob, &past, 1, "t2").await.1.as_deref(), Some("SALE_NOT_OPEN"));
    assert_eq!(s.h.code(start, json!({"s": past}), Some(&s.admin)).await, "SALE_NOT_OPEN");
    let open = s.sale(5, 5, Some(at(-10)), None).await;
    assert_eq!(s.buy(&bob, &open, 1, "t3").await.1, None, "opened by itself at startsAt");
    let end = "mutation($s:ID!){ endSale(saleId:$s){ status } }";
    assert_eq!(s.h.ok(end, json!({"s": open}), Some(&s.admin)).await["endSale"]["status"], "ENDED");
    assert_eq!(s.buy(&bob, &open, 1, "t4").await.1.as_deref(), Some("SALE_NOT_OPEN"));

    // Phase 8: orders: a buyer sees their own; an admin sees everyone's for a sale.
    let q = "query($s:ID){ orders(saleId:$s, first:10){ edges{ node{ quantity user{ username } } } pageInfo{ hasNextPage } } }";
    let mine = s.h.ok(q, json!({"s": manual}), Some(&bob)).await;
    let mine = mine["orders"]["edges"].as_array().expect("edges").clone();
    assert_eq!(mine.len(), 2, "bob's two orders of this sale: {mine:?}");
    assert!(mine.iter().all(|e| e["node"]["user"]["username"] == "bob"));
    let all = s.h.ok(q, json!({"s": manual}), Some(&s.admin)).await;
    let total: u64 = all["orders"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| e["node"]["quantity"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(total, 10, "orders add up to what was sold");
    // Without a sale, an admin pages through every order of every sale, oldest first, with no
    // repeat across pages; a buyer still sees only their own.
    let q = "query($a:String){ orders(first:3, after:$a){ edges{ cursor node{ id user{ username } } } pageInfo{ hasNextPage endCursor } } }";
    let (mut ids, mut after, mut users) =
        (Vec::<u64>::new(), serde_json::Value::Null, std::collections::BTreeSet::new());
    loop {
        let page = s.h.ok(q, json!({"a": after}), Some(&s.admin)).await;
        for e in page["orders"]["edges"].as_array().expect("edges") {
            ids.push(e["node"]["id"].as_str().and_then(|i| i.parse().ok()).expect("id"));
            users.insert(e["node"]["user"]["username"].as_str().unwrap_or("").to_string());
        }
        if page["orders"]["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["orders"]["pageInfo"]["endCursor"].clone();
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "oldest first, no repeats: {ids:?}");
    let of_manual = all["orders"]["edges"].as_array().expect("edges").len();
    assert!(ids.len() > of_manual && users.len() > 1, "every buyer's orders across sales: {ids:?} {users:?}");
    let mine = s.h.ok(q, json!({"a": null}), Some(&bob)).await;
    assert!(mine["orders"]["edges"].as_array().expect("edges").iter().all(|e| e["node"]["user"]["username"] == "bob"));

    // Phase 9: the leaderboard ranks by units, ties to the earlier first purchase.
    let lb =
        s.h.ok(
            "query($s:ID!){ leaderboard(saleId:$s, limit:5){ rank quantity user{ username } } }",
            json!({"s": manual}),
            None,
        )
        .await;
    let names: Vec<&str> = lb["leaderboard"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| r["user"]["username"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names, ["bob", "carol", "dave", "erin"], "three with 3 units by first purchase, then erin: {lb}");
    assert_eq!(lb["leaderboard"][0]["quantity"], 3);
    assert_eq!(lb["leaderboard"][3]["quantity"], 1);

    // Phase 10: `sales` pages by id with stable cursors, and `status` keeps only the sales in
    // that status now: the ended ones here, page by page, none repeated.
    let q = "query($st:SaleStatus,$a:String){ sales(status:$st, first:1, after:$a){ edges{ cursor node{ id status } } pageInfo{ hasNextPage endCursor } } }";
    let mut seen = Vec::new();
    let mut after = serde_json::Value::Null;
    loop {
        let page = s.h.ok(q, json!({"st": "ENDED", "a": after}), None).await;
        let edges = page["sales"]["edges"].as_array().expect("edges").clone();
        assert!(edges.len() <= 1, "first: 1 gives at most one: {page}");
        for e in &edges {
            assert_eq!(e["node"]["status"], "ENDED", "{page}");
            seen.push(e["node"]["id"].as_str().expect("id").to_string());
        }
        if page["sales"]["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["sales"]["pageInfo"]["endCursor"].clone();
    }
    assert!(seen.contains(&past) && seen.contains(&open), "both ended sales: {seen:?}");
    assert!(!seen.contains(&later), "a scheduled sale is not ENDED: {seen:?}");
    let mut unique = seen.clone();
    unique.dedup();
    assert_eq!(unique, seen, "no sale on two pages");
    let all = s.h.ok(q.replace("first:1", "first:100").as_str(), json!({"st": null, "a": null}), None).await;
    assert!(all["sales"]["edges"].as_array().expect("edges").len() > seen.len(), "no filter, every sale: {all}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stamped_time_decides_not_the_clock_at_apply() {
    let s = shop().await;
    let bob = s.buyer("bob").await;
    let bob_id: u64 = s.h.ok("{ viewer { id } }", json!({}), Some(&bob)).await["viewer"]["id"]
        .as_str()
        .expect("id")
        .parse()
        .expect("num");
    let sale: u64 = s.sale(5, 5, Some(at(3600)), Some(at(7200))).await.parse().expect("id");
    let purchase = |at_ms: i64, key: &str| Proposal {
        at_ms,
        command: Command::Purchase { user_id: bob_id, sale_id: sale, quantity: 1, idempotency_key: key.into() },
    };
    let now = Utc::now().timestamp_millis();

    // Phase 1: stamped inside the window, it buys, though every clock here says it is too early.
    match s.h.store.propose_at(purchase(now + 5_400_000, "inside")).await.expect("propose") {
        Response::Order(o) => assert_eq!(o.quantity, 1),
        other => panic!("expected an order, got {other:?}"),
    }
    // Phase 2: stamped after endsAt, it is refused.
    match s.h.store.propose_at(purchase(now + 7_300_000, "after")).await.expect("propose") {
        Response::Rejected(e) => assert_eq!(e.code.as_str(), "SALE_NOT_OPEN"),
        other => panic!("expected SALE_NOT_OPEN, got {other:?}"),
    }
    // Phase 3: time never goes back: a command stamped earlier than the state machine clock is
    // judged at the clock (after endsAt), so it cannot sneak back into the window.
    match s.h.store.propose_at(purchase(now + 5_000_000, "late-but-stamped-early")).await.expect("propose") {
        Response::Rejected(e) => assert_eq!(e.code.as_str(), "SALE_NOT_OPEN"),
        other => panic!("expected SALE_NOT_OPEN, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sale_updates_stream_live_and_resume_after_an_index() {
    let s = shop().await;
    let sale = s.sale(3, 3, None, None).await;
    let sub = "subscription($s:ID!,$a:Int){ saleUpdates(saleId:$s, afterIndex:$a){ index saleId stock sold status } }";
    let subscribe = |after: Option<u64>| {
        let req =
            Request::new(sub).variables(Variables::from_json(json!({"s": sale, "a": after}))).data(BearerToken(None));
        s.h.schema.execute_stream(req)
    };

    // Phase 1: without afterIndex, the current state first, then every change, live.
    let mut live = subscribe(None);
    let first = live.next().await.expect("current state").into_result().expect("ok").data.into_json().expect("json");
    assert_eq!(first["saleUpdates"]["status"], "SCHEDULED");
    let start_index = first["saleUpdates"]["index"].as_u64().expect("index");
    s.h.ok("mutation($s:ID!){ startSale(saleId:$s){ status } }", json!({"s": sale}), Some(&s.admin)).await;
    let bob = s.buyer("bob").await;
    for k in 0..3 {
        assert_eq!(s.buy(&bob, &sale, 1, &format!("k{k}")).await.1, None);
    }
    let mut seen = Vec::new();
    while seen.len() < 4 {
        let item = tokio::time::timeout(Duration::from_secs(5), live.next())
            .await
            .expect("live update in time")
            .expect("item");
        seen.push(item.into_result().expect("ok").data.into_json().expect("json")["saleUpdates"].clone());
    }
    assert_eq!(seen[0]["status"], "OPEN");
    assert_eq!(seen.iter().map(|u| u["stock"].as_u64().unwrap_or(99)).collect::<Vec<_>>(), [3, 2, 1, 0]);
    assert_eq!(seen[3]["status"], "SOLD_OUT");
    let indexes: Vec<u64> = seen.iter().map(|u| u["index"].as_u64().expect("index")).collect();
    assert!(indexes.windows(2).all(|w| w[0] < w[1]) && indexes[0] > start_index, "increasing: {indexes:?}");

    // Phase 2: resuming after an index replays exactly what came after it: no gap, no repeat.
    let mut resumed = subscribe(Some(indexes[1]));
    let mut replay = Vec::new();
    while replay.len() < 2 {
        let item =
            tokio::time::timeout(Duration::from_secs(5), resumed.next()).await.expect("replay in time").expect("item");
        replay.push(
            item.into_result().expect("ok").data.into_json().expect("json")["saleUpdates"]["index"]
                .as_u64()
                .expect("i"),
        );
    }
    assert_eq!(replay, indexes[2..]);

    // Phase 3: an unknown sale is NOT_FOUND.
    let req = Request::new(sub).variables(Variables::from_json(json!({"s": "999"})));
    let resp = s.h.schema.execute_stream(req).next().await.expect("one response");
    assert_eq!(
        resp.errors[0].extensions.as_ref().and_then(|e| e.get("code")).map(|c| c.to_string()),
        Some("\"NOT_FOUND\"".into())
    );
}
