//! Apollo's automatic persisted queries: a client sends `extensions.persistedQuery.sha256Hash`
//! instead of the query text; a node that does not know the hash answers
//! `PERSISTED_QUERY_NOT_FOUND` (message `PersistedQueryNotFound`, as Apollo's clients expect),
//! and the client sends the text once with its hash, which the node checks and keeps.
//!
//! The cache is per node and bounded both in entries and in bytes, oldest first out: a client
//! that registers queries faster than they are used only evicts, never grows the node. A node
//! that forgot a query (evicted, or restarted) costs one extra round trip, nothing else.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_graphql::{Request, ServerError, Value};
use sha2::{Digest, Sha256};

use crate::config::{PERSISTED_QUERIES_BYTES_MAX, PERSISTED_QUERIES_MAX};
use crate::http::PERSISTED_QUERY_NOT_FOUND;

/// The request extension Apollo's clients use.
const EXTENSION: &str = "persistedQuery";

/// Known queries by the hex SHA-256 of their text.
#[derive(Default)]
pub struct PersistedQueries {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_hash: HashMap<String, Arc<str>>,
    /// Hashes oldest first, for eviction.
    order: VecDeque<String>,
    bytes: usize,
}

fn error(code: &'static str, message: &str) -> ServerError {
    let mut e = ServerError::new(message, None);
    let mut ext = async_graphql::ErrorExtensionValues::default();
    ext.set("code", code);
    e.extensions = Some(ext);
    e
}

impl PersistedQueries {
    /// Fills in `request.query` from its `persistedQuery` extension, or registers the query it
    /// carries. Requests without the extension are left alone.
    pub fn resolve(&self, request: &mut Request) -> Result<(), ServerError> {
        let Some(ext) = request.extensions.remove(EXTENSION) else { return Ok(()) };
        let invalid = |m: &str| error(schema::error::code::INVALID_INPUT, m);
        let Value::Object(ext) = ext else { return Err(invalid("extensions.persistedQuery must be an object")) };
        match ext.get("version") {
            Some(Value::Number(n)) if n.as_u64() == Some(1) => {}
            _ => return Err(invalid("extensions.persistedQuery.version must be 1")),
        }
        let hash = match ext.get("sha256Hash") {
            Some(Value::String(h)) if h.len() == 64 && h.bytes().all(|b| b.is_ascii_hexdigit()) => {
                h.to_ascii_lowercase()
            }
            _ => return Err(invalid("extensions.persistedQuery.sha256Hash must be 64 hex digits")),
        };
        if request.query.is_empty() {
            let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
            return match inner.by_hash.get(&hash) {
                Some(query) => {
                    request.query = query.to_string();
                    Ok(())
                }
                None => Err(error(PERSISTED_QUERY_NOT_FOUND, "PersistedQueryNotFound")),
            };
        }
        let actual = hex(&Sha256::digest(request.query.as_bytes()));
        if actual != hash {
            return Err(invalid("provided sha does not match query"));
        }
        self.insert(hash, &request.query);
        Ok(())
    }

    fn insert(&self, hash: String, query: &str) {
        if query.len() > PERSISTED_QUERIES_BYTES_MAX {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.by_hash.contains_key(&hash) {
            return;
        }
        while inner.order.len() >= PERSISTED_QUERIES_MAX || inner.bytes + query.len() > PERSISTED_QUERIES_BYTES_MAX {
            let Some(old) = inner.order.pop_front() else { break };
            if let Some(q) = inner.by_hash.remove(&old) {
                inner.bytes -= q.len();
            }
        }
        inner.bytes += query.len();
        inner.order.push_back(hash.clone());
        inner.by_hash.insert(hash, query.into());
    }

    /// How many queries are known.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).by_hash.len()
    }

    /// True when none is.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_hash(query: &str, hash: &str) -> Request {
        let mut r = Request::new(query);
        let ext = serde_json::json!({ "version": 1, "sha256Hash": hash });
        r.extensions.insert(EXTENSION.into(), Value::from_json(ext).expect("a value"));
        r
    }

    fn code(e: &ServerError) -> String {
        match e.extensions.as_ref().and_then(|x| x.get("code")) {
            Some(Value::String(s)) => s.clone(),
            other => panic!("no code: {other:?}"),
        }
    }

    // The protocol round trip: unknown hash, registration with the text, then hash only.
    #[test]
    fn unknown_then_registered_then_found() {
        let cache = PersistedQueries::default();
        let query = "{ cluster { nodeId } }";
        let hash = hex(&Sha256::digest(query.as_bytes()));
        let e = cache.resolve(&mut with_hash("", &hash)).expect_err("unknown");
        assert_eq!((code(&e).as_str(), e.message.as_str()), (PERSISTED_QUERY_NOT_FOUND, "PersistedQueryNotFound"));
        cache.resolve(&mut with_hash(query, &hash)).expect("registered");
        let mut found = with_hash("", &hash);
        cache.resolve(&mut found).expect("found");
        assert_eq!(found.query, query);
        assert!(!found.extensions.contains_key(EXTENSION), "the extension is consumed");
    }

    // A hash that does not match its text is refused and nothing is stored.
    #[test]
    fn a_wrong_hash_is_refused() {
        let cache = PersistedQueries::default();
        let e = cache.resolve(&mut with_hash("{ a }", &"0".repeat(64))).expect_err("mismatch");
        assert_eq!(code(&e), schema::error::code::INVALID_INPUT);
        assert!(cache.is_empty());
        let e = cache.resolve(&mut with_hash("{ a }", "xyz")).expect_err("not hex");
        assert_eq!(code(&e), schema::error::code::INVALID_INPUT);
    }

    // The cache never holds more than its bound, whatever a client registers.
    #[test]
    fn the_cache_is_bounded() {
        let cache = PersistedQueries::default();
        for i in 0..PERSISTED_QUERIES_MAX + 50 {
            let query = format!("{{ q{i}: __typename }}");
            let hash = hex(&Sha256::digest(query.as_bytes()));
            cache.resolve(&mut with_hash(&query, &hash)).expect("registered");
        }
        assert_eq!(cache.len(), PERSISTED_QUERIES_MAX);
        let first = hex(&Sha256::digest("{ q0: __typename }".as_bytes()));
        assert!(cache.resolve(&mut with_hash("", &first)).is_err(), "the oldest went first");
    }
}
