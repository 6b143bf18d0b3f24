//! Every query that reads state says which state it read: `extensions.appliedIndex`. Resolvers
//! reach the store only through the schema's read and write helpers, which record it; this test
//! runs one request per root query field, and fails when a field is added without one here.

mod support;

use std::collections::BTreeSet;

use schema::SchemaConfig;
use serde_json::{json, Value};
use support::one_node;

/// Root fields that read no replicated state: `cluster` reports Raft's own metrics.
const READS_NO_STATE: &[&str] = &["cluster"];

#[tokio::test]
async fn every_root_query_field_reports_the_index_it_read_at() {
    let h = one_node(SchemaConfig::default()).await;
    // Phase 1: some state of every kind, by the first account (an admin).
    let admin = h.register("ada").await;
    let (token, me) = (admin["token"].as_str().expect("token").to_string(), admin["user"]["id"].clone());
    let t = Some(token.as_str());
    let product = h
        .ok("mutation{ createProduct(input:{name:\"p\", description:\"d\", priceCents:1}){ id } }", json!({}), t)
        .await["createProduct"]["id"]
        .clone();
    let sale = h
        .ok(
            "mutation($p:ID!){ createSale(input:{productId:$p, stock:5, perUserLimit:2}){ id } }",
            json!({"p": product}),
            t,
        )
        .await["createSale"]["id"]
        .clone();
    let chat = h.ok("mutation{ createChat(name:\"c\", participantIds:[]){ id } }", json!({}), t).await["createChat"]
        ["id"]
        .clone();
    let tweet =
        h.ok("mutation{ postTweet(body:\"hello #rust @ada\"){ id } }", json!({}), t).await["postTweet"]["id"].clone();

    // Phase 2: one request per root field; each answer carries the index its state was read at.
    let cases: Vec<(&str, String)> = vec![
        ("usernameAvailability", "{ usernameAvailability(name:\"ada\"){ status } }".into()),
        ("viewer", "{ viewer{ id } }".into()),
        ("user", "{ user(username:\"ada\"){ id } }".into()),
        ("product", format!("{{ product(id:{product}){{ id }} }}")),
        ("sale", format!("{{ sale(id:{sale}){{ id product{{ id }} }} }}")),
        ("sales", "{ sales{ edges{ node{ id } } } }".into()),
        ("orders", "{ orders{ edges{ node{ id } } } }".into()),
        ("leaderboard", format!("{{ leaderboard(saleId:{sale}){{ rank }} }}")),
        ("chat", format!("{{ chat(id:{chat}){{ id participants{{ id }} }} }}")),
        ("chatsOf", format!("{{ chatsOf(userId:{me}){{ edges{{ node{{ id }} }} }} }}")),
        ("messages", format!("{{ messages(chatId:{chat}){{ edges{{ node{{ id }} }} }} }}")),
        ("tweet", format!("{{ tweet(id:{tweet}){{ id mentions{{ id }} }} }}")),
        ("timeline", "{ timeline{ edges{ node{ id } } } }".into()),
        ("userTweets", format!("{{ userTweets(userId:{me}){{ edges{{ node{{ id }} }} }} }}")),
        ("tweetsByHashtag", "{ tweetsByHashtag(tag:\"rust\"){ edges{ node{ id } } } }".into()),
        ("mentions", "{ mentions{ edges{ node{ id } } } }".into()),
        ("searchTweets", "{ searchTweets(query:\"hello\"){ edges{ node{ id } } } }".into()),
        ("followers", format!("{{ followers(userId:{me}){{ edges{{ node{{ id }} }} }} }}")),
        ("following", format!("{{ following(userId:{me}){{ edges{{ node{{ id }} }} }} }}")),
    ];
    let applied = h.store.cluster_status().last_applied;
    for (field, query) in &cases {
        let req = async_graphql::Request::new(query.as_str()).data(schema::BearerToken(Some(token.clone())));
        let resp: Value = serde_json::to_value(h.schema.execute(req).await).expect("json");
        assert!(resp.get("errors").is_none(), "{field}: {resp}");
        let index = resp["extensions"]["appliedIndex"].as_u64();
        assert!(index.is_some_and(|i| i >= applied), "{field} answered without its applied index: {resp}");
    }

    // Phase 3: the cases cover every root query field of the schema, so a new field without
    // its index cannot slip in.
    let root = h.ok("{ __type(name:\"Query\"){ fields{ name } } }", json!({}), None).await;
    let fields: BTreeSet<String> = root["__type"]["fields"]
        .as_array()
        .expect("fields")
        .iter()
        .map(|f| f["name"].as_str().expect("name").to_string())
        .filter(|f| !READS_NO_STATE.contains(&f.as_str()))
        .collect();
    let covered: BTreeSet<String> = cases.iter().map(|(f, _)| f.to_string()).collect();
    assert_eq!(fields, covered, "root query fields without a case here");
}
