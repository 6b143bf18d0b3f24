//! Per-operation observation for metrics: which root fields a request ran, how long it took,
//! and whether it failed, handed to whatever the server plugs in (the node feeds Prometheus);
//! and how long each request spends in parsing, validation and execution ([`RequestStages`]).
//!
//! A label is the one root field name a request ran, if it exists in the schema; `multiple` for
//! a request of several distinct root fields, `invalid` for a name the schema does not have. So
//! the label set is bounded by the schema's fields: a client cannot grow it, neither with
//! made-up names nor with combinations of real ones.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_graphql::extensions::{
    Extension, ExtensionContext, ExtensionFactory, NextExecute, NextParseQuery, NextRequest, NextValidation,
};
use async_graphql::parser::types::{DocumentOperations, ExecutableDocument, OperationType, Selection};
use async_graphql::{Response, ServerError, ServerResult, ValidationResult, Variables};
use raft::Histogram;

/// Called once per request with the operation label, the time it took, and whether it failed.
pub type Observer = Arc<dyn Fn(&str, Duration, bool) + Send + Sync>;

/// A request's stages on the serving node, before and after the store's own
/// ([`raft::Stages`]). `decode` and `encode` are the HTTP body's JSON, timed by the server.
#[derive(Debug, Default)]
pub struct RequestStages {
    /// The HTTP body parsed as JSON into a GraphQL request.
    pub decode: Histogram,
    /// The query text parsed into a document.
    pub parse: Histogram,
    /// The document validated against the schema (depth, complexity, types).
    pub validate: Histogram,
    /// The operation executed: resolvers, with every read and proposal they make.
    pub execute: Histogram,
    /// The response serialized to JSON.
    pub encode: Histogram,
}

impl RequestStages {
    /// Every stage with its name, in the order a request meets them.
    pub fn all(&self) -> [(&'static str, &Histogram); 5] {
        [
            ("http_decode", &self.decode),
            ("graphql_parse", &self.parse),
            ("graphql_validate", &self.validate),
            ("graphql_execute", &self.execute),
            ("http_encode", &self.encode),
        ]
    }
}

/// The extension factory: the observer to report each request to, and the stages to time.
pub struct Observe {
    /// Told of every request, if set.
    pub observer: Option<Observer>,
    /// Filled with every request's parse, validation and execution times.
    pub stages: Arc<RequestStages>,
}

impl ExtensionFactory for Observe {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(ObserveRequest {
            observer: self.observer.clone(),
            stages: self.stages.clone(),
            label: Mutex::new(None),
        })
    }
}

struct ObserveRequest {
    observer: Option<Observer>,
    stages: Arc<RequestStages>,
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
    match names.as_slice() {
        [] => "introspection".into(),
        [one] => (*one).to_string(),
        _ => "multiple".into(),
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
        let started = Instant::now();
        let doc = next.run(ctx, query, variables).await;
        self.stages.parse.since(started);
        let doc = doc?;
        let label = label_of(ctx, &doc);
        *self.label.lock().unwrap_or_else(|p| p.into_inner()) = Some(label);
        Ok(doc)
    }

    async fn validation(
        &self,
        ctx: &ExtensionContext<'_>,
        next: NextValidation<'_>,
    ) -> Result<ValidationResult, Vec<ServerError>> {
        let started = Instant::now();
        let result = next.run(ctx).await;
        self.stages.validate.since(started);
        result
    }

    async fn execute(
        &self,
        ctx: &ExtensionContext<'_>,
        operation_name: Option<&str>,
        next: NextExecute<'_>,
    ) -> Response {
        let started = Instant::now();
        let resp = next.run(ctx, operation_name).await;
        self.stages.execute.since(started);
        resp
    }

    async fn request(&self, ctx: &ExtensionContext<'_>, next: NextRequest<'_>) -> Response {
        let started = Instant::now();
        let resp = next.run(ctx).await;
        if let Some(observer) = &self.observer {
            let label = self.label.lock().unwrap_or_else(|p| p.into_inner()).take().unwrap_or_else(|| "invalid".into());
            observer(&label, started.elapsed(), !resp.errors.is_empty());
        }
        resp
    }
}
