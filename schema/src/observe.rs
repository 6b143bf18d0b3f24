//! Per-operation observation for metrics: which root fields a request ran, how long it took,
//! and whether it failed, handed to whatever the server plugs in (the node feeds Prometheus).
//!
//! Labels are root field names that exist in the schema (anything else is `invalid`), so a
//! client cannot grow the label set by sending made-up field names.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextRequest};
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType, Selection};
use async_graphql::{Response, ServerResult, Variables};

/// Called once per request with the operation label, the time it took, and whether it failed.
pub type Observer = Arc<dyn Fn(&str, Duration, bool) + Send + Sync>;

/// The extension factory: add it with the observer to report to.
pub struct Observe(pub Observer);

impl ExtensionFactory for Observe {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ObserveRequest { observer: self.0.clone(), label: Mutex::new(None) })
    }
}

struct ObserveRequest {
    observer: Observer,
    /// Set by `parse_query`, read when the request ends. A std mutex: never held across await.
    label: Mutex<Option<String>>,
}

fn label_of(ctx: &ExtensionContext<'_>, doc: &ExecutableDocument) -> String {
    let op = match &doc.operations {
        DocumentOperations::Single(op) => op,
        DocumentOperations::Multiple(ops) => match ops.values().next() {
            Some(op) => op,
            None => return "invalid".into(),
        },
    };
    let registry = &ctx.schema_env.registry;
    let root = match op.node.ty {
        OperationType::Query => Some(registry.query_type.as_str()),
        OperationType::Mutation => registry.mutation_type.as_deref(),
        OperationType::Subscription => registry.subscription_type.as_deref(),
    };
    let Some(root) = root.and_then(|r| registry.types.get(r)) else { return "invalid".into() };
    let mut names: Vec<&str> = op
        .node
        .selection_set
        .node
        .items
        .iter()
        .filter_map(|s| match &s.node {
            Selection::Field(f) => Some(f.node.name.node.as_str()),
            _ => None,
        })
        .filter(|n| !n.starts_with("__"))
        .map(|n| if root.field_by_name(n).is_some() { n } else { "invalid" })
        .collect();
    names.sort_unstable();
    names.dedup();
    if names.is_empty() {
        "introspection".into()
    } else {
        names.join("+")
    }
}

#[async_trait::async_trait]
impl Extension for ObserveRequest {
    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let label = label_of(ctx, &doc);
        *self.label.lock().unwrap_or_else(|p| p.into_inner()) = Some(label);
        Ok(doc)
    }

    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let resp = next.run(ctx).await;
        let label = self.label.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or_else(|| "invalid".into());
        (self.observer)(&label, started.elapsed(), !resp.errors.is_empty());
        resp
    }
}
