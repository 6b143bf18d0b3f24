//! No password or reservation token reaches a log line or a span: async-graphql's tracing
//! extension (there when the `graphql` target is enabled at DEBUG, as here at TRACE) records
//! each request's document (its `source` field) with the variables and literals of
//! `#[graphql(secret)]` arguments masked.

mod support;

use std::io::Write;
use std::sync::{Arc, Mutex};

use schema::SchemaConfig;
use serde_json::json;
use support::{one_node, REGISTER};

/// Collects everything the subscriber writes.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().expect("lock").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

// Spans are printed with their fields when they close, at every level: what a tracing backend
// would receive. The documents are there (so the check looks in the right place), the secrets
// are not, whether sent as variables or inline.
#[test]
fn passwords_and_tokens_never_reach_spans() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_span_events(tracing_subscriber::fmt::format::FmtSpan::CLOSE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    tracing::subscriber::with_default(subscriber, || {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let h = one_node(SchemaConfig::default()).await;
            h.ok(REGISTER, json!({"u": "carol", "p": "Variable-Secret-4711"}), None).await;
            let inline = "mutation { login(username:\"carol\", password:\"Inline-Secret-4712\"){ token } }";
            let _ = h.run(inline, json!({}), None).await;
            let q = "mutation($t:String){ register(input:{username:\"dave\",password:\"Nested-Secret-4713\",reservationToken:$t}){ token } }";
            let _ = h.run(q, json!({"t": "Token-Secret-4714"}), None).await;
        });
    });
    let text = String::from_utf8(captured.0.lock().expect("lock").clone()).expect("utf-8");
    assert!(text.contains("login(username"), "the documents are recorded: {}", &text[..text.len().min(2000)]);
    for secret in ["Variable-Secret-4711", "Inline-Secret-4712", "Nested-Secret-4713", "Token-Secret-4714"] {
        assert!(!text.contains(secret), "{secret} reached the trace");
    }
}
