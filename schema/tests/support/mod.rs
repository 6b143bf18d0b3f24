//! A real one-node store (openraft over redb in a temp dir) with the schema on top, for
//! tests that call `schema.execute` directly.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_graphql::{Request, Variables};
use raft::HttpTransport;
use raft::{Store, StoreConfig};
use schema::{AppSchema, BearerToken, SchemaConfig};
use serde_json::{json, Value};

pub struct Harness {
    pub schema: AppSchema,
    pub store: Store,
    _dir: tempfile::TempDir,
}

pub async fn one_node(config: SchemaConfig) -> Harness {
    let dir = tempfile::tempdir().expect("temp dir");
    // A one-node cluster never sends an RPC, so the transport's address is never dialled.
    let store = Store::open(StoreConfig::new(1, "127.0.0.1:1", dir.path()), Arc::new(HttpTransport::new("s".into())))
        .await
        .expect("open store");
    store.bootstrap(&BTreeMap::from([(1, "127.0.0.1:1".to_string())])).await.expect("bootstrap");
    store.raft().wait(Some(Duration::from_secs(10))).current_leader(1, "leader").await.expect("leader");
    let schema = schema::build(store.clone(), b"0123456789abcdef-test-secret", config).expect("schema");
    Harness { schema, store, _dir: dir }
}

impl Harness {
    pub async fn run(&self, query: &str, vars: Value, token: Option<&str>) -> (Value, Vec<(String, String)>) {
        let req =
            Request::new(query).variables(Variables::from_json(vars)).data(BearerToken(token.map(str::to_string)));
        let resp = self.schema.execute(req).await;
        let errors = resp
            .errors
            .iter()
            .map(|e| {
                let code = e
                    .extensions
                    .as_ref()
                    .and_then(|x| x.get("code"))
                    .map(|c| c.to_string().trim_matches('"').to_string())
                    .unwrap_or_default();
                (code, e.message.clone())
            })
            .collect();
        (resp.data.into_json().expect("json"), errors)
    }

    pub async fn ok(&self, query: &str, vars: Value, token: Option<&str>) -> Value {
        let (data, errors) = self.run(query, vars, token).await;
        assert!(errors.is_empty(), "unexpected errors for {query}: {errors:?}");
        data
    }

    pub async fn code(&self, query: &str, vars: Value, token: Option<&str>) -> String {
        let (_, errors) = self.run(query, vars, token).await;
        assert_eq!(errors.len(), 1, "expected one error for {query} {errors:?}");
        errors[0].0.clone()
    }

    pub async fn register(&self, name: &str) -> Value {
        self.ok(REGISTER, json!({"u": name, "p": "correct horse"}), None).await["register"].clone()
    }

    pub async fn availability(&self, name: &str) -> Value {
        self.ok(AVAIL, json!({"n": name}), None).await["usernameAvailability"].clone()
    }
}

pub const REGISTER: &str = "mutation($u:String!,$p:String!,$t:String,$e:String){ register(input:{username:$u,password:$p,reservationToken:$t,email:$e}){ token user{ id username role email } } }";
pub const AVAIL: &str =
    "query($n:String!){ usernameAvailability(name:$n){ name canonical status reason suggestions appliedIndex } }";
