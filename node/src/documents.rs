//! A bounded cache of parsed GraphQL documents, keyed by the query text: a repeated operation
//! (what every client library sends, over and over) skips async-graphql's parser, which was
//! about a tenth of a LOCAL check's node CPU (docs/BENCHMARKS.md).
//!
//! Only parsing is skipped. The cached document is handed to the request as already parsed,
//! and everything after parsing runs for every request as before: the recursion-depth and
//! directive checks async-graphql applies to a parsed document, this project's cost and alias
//! limits (`schema::limits`, which walk the document in the parse hook), and validation against
//! the schema with the request's own variables. A query that does not parse is never cached (it
//! is parsed again by the executor, which reports the error as usual).
//!
//! Bounded in entries, in bytes of query text, and in the size of a query it will keep; oldest
//! out first. A client sending a new query text on every request only evicts, never grows the
//! node, and costs itself what it cost before: one parse.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::ExecutableDocument;

/// Most documents kept.
pub const DOCUMENT_CACHE_ENTRIES_MAX: usize = 1_024;
/// Most bytes of query text those may hold in all.
pub const DOCUMENT_CACHE_BYTES_MAX: usize = 4 * 1024 * 1024;
/// A query longer than this is parsed every time and not kept: an `importAccounts` call with
/// its accounts inline, or any one-off, would only push out the operations that repeat.
pub const DOCUMENT_CACHE_QUERY_BYTES_MAX: usize = 16 * 1024;

/// Parsed documents by query text.
#[derive(Default)]
pub struct Documents {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    by_query: HashMap<Arc<str>, Arc<ExecutableDocument>>,
    /// Queries oldest first, for eviction.
    order: VecDeque<Arc<str>>,
    bytes: usize,
}

impl Documents {
    /// Gives `request` its parsed document: a copy of the cached one, or else parsed now (and
    /// kept, if it parses and is small enough). A query that does not parse is left unparsed.
    pub fn prepare(&self, request: &mut async_graphql::Request) {
        let query = request.query.as_str();
        if query.len() > DOCUMENT_CACHE_QUERY_BYTES_MAX {
            return;
        }
        let cached = self.inner.lock().unwrap_or_else(|p| p.into_inner()).by_query.get(query).cloned();
        if let Some(doc) = cached {
            request.set_parsed_query(ExecutableDocument::clone(&doc));
            return;
        }
        let Ok(doc) = request.parsed_query() else { return };
        let doc = Arc::new(doc.clone());
        self.insert(request.query.as_str(), doc);
    }

    fn insert(&self, query: &str, doc: Arc<ExecutableDocument>) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.by_query.contains_key(query) {
            return;
        }
        let key: Arc<str> = query.into();
        inner.bytes += key.len();
        inner.by_query.insert(key.clone(), doc);
        inner.order.push_back(key);
        while inner.by_query.len() > DOCUMENT_CACHE_ENTRIES_MAX || inner.bytes > DOCUMENT_CACHE_BYTES_MAX {
            let Some(old) = inner.order.pop_front() else { break };
            inner.by_query.remove(&old);
            inner.bytes -= old.len();
        }
    }

    /// Documents kept now.
    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).by_query.len()
    }

    /// True when none is kept.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_repeated_query_is_parsed_once_and_the_cache_stays_bounded() {
        let docs = Documents::default();
        // Phase 1: the first request parses and keeps; the second gets the same document.
        let q = "query($u:String!){ usernameAvailability(username:$u){ available } }";
        let mut a = async_graphql::Request::new(q);
        docs.prepare(&mut a);
        assert_eq!(docs.len(), 1);
        let mut b = async_graphql::Request::new(q);
        docs.prepare(&mut b);
        assert_eq!(docs.len(), 1);
        let (da, db) = (a.parsed_query().expect("parsed").clone(), b.parsed_query().expect("parsed").clone());
        assert_eq!(format!("{da:?}"), format!("{db:?}"));
        // Phase 2: a query that does not parse is not kept, nor is one past the size bound.
        docs.prepare(&mut async_graphql::Request::new("query { nope("));
        let big = format!("query {{ {} }}", "__typename ".repeat(DOCUMENT_CACHE_QUERY_BYTES_MAX / 10));
        docs.prepare(&mut async_graphql::Request::new(big));
        assert_eq!(docs.len(), 1);
        // Phase 3: many distinct queries evict the oldest; the count never passes the bound.
        for i in 0..DOCUMENT_CACHE_ENTRIES_MAX + 10 {
            docs.prepare(&mut async_graphql::Request::new(format!("query {{ a{i}: __typename }}")));
        }
        assert_eq!(docs.len(), DOCUMENT_CACHE_ENTRIES_MAX);
        assert!(!docs.inner.lock().unwrap().by_query.contains_key(q), "the oldest went first");
    }
}
