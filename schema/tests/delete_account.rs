//! Deleting an account, through `schema.execute` on a real one-node store: the policy applied in
//! the deleting command (raft/src/state_machine/accounts.rs, `delete_account`). Follows go both
//! ways with the counts on the other side moved; tweets leave every timeline, hashtag, mention
//! list and search; chats lose the participant and pass ownership on while its messages stay with
//! a null sender; orders stay for accounting with a null user.

mod support;

use schema::SchemaConfig;
use serde_json::{json, Value};
use support::{one_node, Harness};

const FOLLOW: &str = "mutation($u:ID!){ follow(userId:$u){ id } }";
const COUNTS: &str = "query($id:ID!){ user(id:$id){ followerCount followingCount } }";
const FOLLOWERS: &str = "query($u:ID!){ followers(userId:$u){ edges{ node{ username } } } }";
const POST: &str = "mutation($b:String!,$r:ID){ postTweet(body:$b, replyTo:$r){ id } }";
const TWEET: &str = "query($id:ID!){ tweet(id:$id){ id replyCount replyTo{ id } } }";
const TIMELINE: &str = "query{ timeline{ edges{ node{ id } } } }";
const BY_TAG: &str = "query($t:String!){ tweetsByHashtag(tag:$t){ edges{ node{ id } } } }";
const SEARCH: &str = "query($q:String!){ searchTweets(query:$q){ edges{ node{ id } } } }";
const MENTIONS: &str = "query{ mentions{ edges{ node{ id } } } }";
const CREATE_CHAT: &str = "mutation($n:String!,$p:[ID!]!){ createChat(name:$n, participantIds:$p){ id } }";
const CHAT: &str = "query($id:ID!){ chat(id:$id){ owner{ id } participantCount participants{ id } } }";
const SEND: &str =
    "mutation($c:ID!,$b:String!,$k:String!){ sendMessage(chatId:$c, body:$b, clientMessageId:$k){ seq } }";
const MESSAGES: &str = "query($c:ID!){ messages(chatId:$c){ edges{ node{ seq body senderId sender{ id } } } } }";
const CHATS_OF: &str = "query($u:ID!){ chatsOf(userId:$u){ edges{ node{ id } } } }";
const PRODUCT: &str = "mutation{ createProduct(input:{name:\"W\", description:\"d\", priceCents:5}){ id } }";
const SALE: &str = "mutation($p:ID!){ createSale(input:{productId:$p, stock:10, perUserLimit:5, startsAt:\"2020-01-01T00:00:00Z\"}){ id } }";
const BUY: &str = "mutation($s:ID!){ purchase(saleId:$s, quantity:2, idempotencyKey:\"k1\"){ id } }";
const SALE_READ: &str = "query($s:ID!){ sale(id:$s){ stock sold } leaderboard(saleId:$s){ quantity user{ id } } }";
const ORDERS: &str = "query($s:ID!){ orders(saleId:$s){ edges{ node{ id quantity user{ id } } } } }";

/// A signed-in account: (id, token).
async fn account(h: &Harness, name: &str) -> (String, String) {
    let r = h.register(name).await;
    (r["user"]["id"].as_str().expect("id").to_string(), r["token"].as_str().expect("token").to_string())
}

fn ids(d: &Value, field: &str) -> Vec<String> {
    d[field]["edges"]
        .as_array()
        .map(|a| a.iter().map(|e| e["node"]["id"].as_str().unwrap_or("").to_string()).collect())
        .unwrap_or_default()
}

async fn str_at(h: &Harness, q: &str, vars: Value, token: &str, path: &[&str]) -> String {
    let mut v = h.ok(q, vars, Some(token)).await;
    for p in path {
        v = v[*p].take();
    }
    v.as_str().expect("string").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_an_account_removes_its_traces_and_keeps_its_orders() {
    let h = one_node(SchemaConfig::default()).await;
    let (alice_id, alice) = account(&h, "alice").await; // ADMIN: the first account
    let (bob_id, bob) = account(&h, "bob").await;
    let (carol_id, carol) = account(&h, "carol").await;

    // Phase 1: bob is woven into everything: follows both ways, tweets (a reply to alice, a
    // hashtag, a search word), a mention of him, a chat he owns with a message, and an order.
    h.ok(FOLLOW, json!({"u": bob_id}), Some(&alice)).await;
    h.ok(FOLLOW, json!({"u": bob_id}), Some(&carol)).await;
    h.ok(FOLLOW, json!({"u": alice_id}), Some(&bob)).await;
    h.ok(FOLLOW, json!({"u": carol_id}), Some(&alice)).await;
    let alice_tweet = str_at(&h, POST, json!({"b": "hello from alice"}), &alice, &["postTweet", "id"]).await;
    let bob_reply =
        str_at(&h, POST, json!({"b": "#bobtag zebrafish reply", "r": alice_tweet}), &bob, &["postTweet", "id"]).await;
    let bob_own = str_at(&h, POST, json!({"b": "zebrafish again"}), &bob, &["postTweet", "id"]).await;
    let carol_reply =
        str_at(&h, POST, json!({"b": "@bob nice zebrafish", "r": bob_own}), &carol, &["postTweet", "id"]).await;
    assert_eq!(h.ok(TWEET, json!({"id": alice_tweet}), None).await["tweet"]["replyCount"], 1);
    assert_eq!(ids(&h.ok(MENTIONS, json!({}), Some(&bob)).await, "mentions"), vec![carol_reply.clone()]);
    let chat =
        str_at(&h, CREATE_CHAT, json!({"n": "trio", "p": [alice_id, carol_id]}), &bob, &["createChat", "id"]).await;
    h.ok(SEND, json!({"c": chat, "b": "bob was here", "k": "m1"}), Some(&bob)).await;
    let product = str_at(&h, PRODUCT, json!({}), &alice, &["createProduct", "id"]).await;
    let sale = str_at(&h, SALE, json!({"p": product}), &alice, &["createSale", "id"]).await;
    let order = str_at(&h, BUY, json!({"s": sale}), &bob, &["purchase", "id"]).await;
    assert_eq!(ids(&h.ok(TIMELINE, json!({}), Some(&alice)).await, "timeline").len(), 4);

    // Phase 2: bob deletes his account, in one command.
    assert_eq!(h.ok("mutation{ deleteAccount }", json!({}), Some(&bob)).await["deleteAccount"], true);

    // Phase 3: follows are gone both ways, and the counts of the others moved with them.
    let counts = |id: &str| json!({"id": id});
    assert_eq!(
        h.ok(COUNTS, counts(&alice_id), None).await["user"],
        json!({"followerCount": 0, "followingCount": 1}),
        "alice lost bob as a follower and as a followee; she still follows carol"
    );
    assert_eq!(h.ok(COUNTS, counts(&carol_id), None).await["user"], json!({"followerCount": 1, "followingCount": 0}));
    assert_eq!(h.ok(FOLLOWERS, json!({"u": alice_id}), None).await["followers"]["edges"], json!([]));
    assert_eq!(h.ok(COUNTS, counts(&bob_id), None).await["user"], Value::Null);

    // Phase 4: his tweets left every timeline, hashtag and search; what replied to them stays
    // (with no parent), the tweet he replied to counts one reply fewer; mentions of him in
    // others' tweets keep their text.
    assert_eq!(
        ids(&h.ok(TIMELINE, json!({}), Some(&alice)).await, "timeline"),
        vec![carol_reply.clone(), alice_tweet.clone()]
    );
    for gone in [&bob_reply, &bob_own] {
        assert_eq!(h.ok(TWEET, json!({"id": gone}), None).await["tweet"], Value::Null, "tweet {gone}");
    }
    assert_eq!(ids(&h.ok(BY_TAG, json!({"t": "bobtag"}), None).await, "tweetsByHashtag"), Vec::<String>::new());
    assert_eq!(ids(&h.ok(SEARCH, json!({"q": "zebrafish"}), None).await, "searchTweets"), vec![carol_reply.clone()]);
    assert_eq!(h.ok(TWEET, json!({"id": alice_tweet}), None).await["tweet"]["replyCount"], 0);
    let reply = h.ok(TWEET, json!({"id": carol_reply}), None).await;
    assert_eq!(reply["tweet"]["replyTo"], Value::Null, "{reply}");

    // Phase 5: he left the chat; ownership passed to the lowest remaining id (alice); his message
    // stays as the others saw it, with a null sender.
    let c = h.ok(CHAT, json!({"id": chat}), Some(&carol)).await;
    assert_eq!(c["chat"]["owner"]["id"], alice_id.as_str(), "{c}");
    assert_eq!(c["chat"]["participantCount"], 2, "{c}");
    assert_eq!(c["chat"]["participants"], json!([{"id": alice_id}, {"id": carol_id}]));
    let m = h.ok(MESSAGES, json!({"c": chat}), Some(&alice)).await;
    let first = &m["messages"]["edges"][0]["node"];
    assert_eq!((first["body"].as_str(), first["senderId"].as_str()), (Some("bob was here"), Some(bob_id.as_str())));
    assert_eq!(first["sender"], Value::Null);
    assert_eq!(ids(&h.ok(CHATS_OF, json!({"u": bob_id}), Some(&alice)).await, "chatsOf"), Vec::<String>::new());

    // Phase 6: his order stays for accounting: stock + sold still add up, the admin sees it.
    let s = h.ok(SALE_READ, json!({"s": sale}), None).await;
    assert_eq!((s["sale"]["stock"].as_u64(), s["sale"]["sold"].as_u64()), (Some(8), Some(2)), "{s}");
    assert_eq!(s["leaderboard"][0], json!({"quantity": 2, "user": null}), "{s}");
    let o = h.ok(ORDERS, json!({"s": sale}), Some(&alice)).await;
    assert_eq!(o["orders"]["edges"], json!([{"node": {"id": order, "quantity": 2, "user": null}}]), "{o}");
}
