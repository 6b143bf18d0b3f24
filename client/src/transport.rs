//! The [`Client`]: one GraphQL POST to a chosen node, and a retrying variant that moves on to the
//! next node when one cannot serve.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::{json, Value};

use crate::error::{parse_response, ClientError};

/// Whole-request timeout used by [`Client::new`]; generous because a linearizable operation may
/// wait out a leader election.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;

/// Connect timeout used by [`Client::new`]; short because a node that does not accept a TCP
/// connection quickly is down, and the retrying path should move on.
pub const CONNECT_TIMEOUT_MS: u64 = 2_000;

/// Most attempts [`Client::execute_retrying`] makes, counting the first; with the backoff below
/// this spans roughly one to two seconds, about one leader election.
pub const RETRY_MAX_ATTEMPTS: u32 = 6;

/// Backoff ceiling before the first retry; it doubles on each further retry.
pub const RETRY_BACKOFF_BASE_MS: u64 = 50;

/// Cap on the backoff ceiling, so a long outage does not stretch single waits without bound.
pub const RETRY_BACKOFF_MAX_MS: u64 = 1_000;

/// Path of the GraphQL endpoint under each node's base URL.
const GRAPHQL_PATH: &str = "/graphql";

/// A GraphQL client for a fixed set of nodes. Cloning is cheap and shares the connection pool.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    /// Full GraphQL endpoint URL of each node, in the order given.
    endpoints: Arc<[String]>,
    /// Bearer token the typed helpers send, if any.
    bearer: Option<Arc<str>>,
    /// Whether the typed helpers use [`Client::execute_retrying`] instead of a single attempt.
    retry: bool,
}

impl Client {
    /// Builds a client for the given node base URLs (e.g. `http://127.0.0.1:8080`) with the
    /// default timeouts [`REQUEST_TIMEOUT_MS`] and [`CONNECT_TIMEOUT_MS`].
    pub fn new<I, S>(nodes: I) -> Result<Self, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_millis(REQUEST_TIMEOUT_MS))
            .connect_timeout(Duration::from_millis(CONNECT_TIMEOUT_MS))
            .build()?;
        Self::with_http_client(http, nodes)
    }

    /// Builds a client around a caller-configured `reqwest::Client`, for custom timeouts or
    /// pool sizes. Fails if `nodes` is empty or a URL does not parse as http(s).
    pub fn with_http_client<I, S>(http: reqwest::Client, nodes: I) -> Result<Self, ClientError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let endpoints = nodes.into_iter().map(|node| endpoint_url(node.as_ref())).collect::<Result<Vec<_>, _>>()?;
        if endpoints.is_empty() {
            return Err(ClientError::Config("no nodes given".to_owned()));
        }
        Ok(Self { http, endpoints: endpoints.into(), bearer: None, retry: false })
    }

    /// Returns a client whose typed helpers send `Authorization: Bearer <token>`.
    pub fn with_bearer(mut self, token: impl Into<Arc<str>>) -> Self {
        self.bearer = Some(token.into());
        self
    }

    /// Returns a client whose typed helpers retry like [`Client::execute_retrying`] when `on`.
    /// Off by default because a retried mutation whose first attempt timed out after reaching
    /// the server may have been applied twice.
    pub fn with_retries(mut self, on: bool) -> Self {
        self.retry = on;
        self
    }

    /// Number of nodes this client knows.
    pub fn node_count(&self) -> usize {
        self.endpoints.len()
    }

    /// Sends one GraphQL request to node `node` and returns the response's `data`.
    ///
    /// `node` wraps around the node list, so callers can pass a round-robin counter directly.
    /// Any GraphQL error becomes [`ClientError::Graphql`] carrying the first error's code.
    pub async fn execute(
        &self,
        node: usize,
        query: &str,
        variables: Value,
        bearer: Option<&str>,
    ) -> Result<Value, ClientError> {
        let body = request_body(query, variables)?;
        self.send(node, body, bearer).await
    }

    /// Like [`Client::execute`], but retries errors for which [`ClientError::is_retryable`]
    /// holds, each time on the next node, sleeping a capped, jittered exponential backoff in
    /// between. Gives up after [`RETRY_MAX_ATTEMPTS`] attempts and returns the last error.
    pub async fn execute_retrying(
        &self,
        node: usize,
        query: &str,
        variables: Value,
        bearer: Option<&str>,
    ) -> Result<Value, ClientError> {
        let body = request_body(query, variables)?;
        let mut attempt = 0;
        loop {
            let target = node.wrapping_add(attempt as usize);
            match self.send(target, body.clone(), bearer).await {
                Err(e) if e.is_retryable() && attempt + 1 < RETRY_MAX_ATTEMPTS => {
                    tokio::time::sleep(jittered(backoff_ceiling_ms(attempt))).await;
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    /// Runs `query` through the single or retrying path as configured by
    /// [`Client::with_retries`], with the configured bearer token; used by the typed helpers.
    pub(crate) async fn run(&self, node: usize, query: &str, variables: Value) -> Result<Value, ClientError> {
        let bearer = self.bearer.as_deref();
        if self.retry {
            self.execute_retrying(node, query, variables, bearer).await
        } else {
            self.execute(node, query, variables, bearer).await
        }
    }

    /// Posts an already serialized request body to one node.
    async fn send(&self, node: usize, body: Vec<u8>, bearer: Option<&str>) -> Result<Value, ClientError> {
        let url = &self.endpoints[node % self.endpoints.len()];
        let mut request = self.http.post(url).header(CONTENT_TYPE, "application/json").body(body);
        if let Some(token) = bearer {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        parse_response(status, &bytes)
    }
}

/// Serializes the `{"query", "variables"}` request object once, so that retries resend the same
/// bytes instead of re-serializing the variables.
fn request_body(query: &str, variables: Value) -> Result<Vec<u8>, ClientError> {
    serde_json::to_vec(&json!({ "query": query, "variables": variables }))
        .map_err(|e| ClientError::Decode(format!("cannot serialize request: {e}")))
}

/// Validates a node base URL and appends the GraphQL path.
fn endpoint_url(base: &str) -> Result<String, ClientError> {
    let base = base.trim().trim_end_matches('/');
    let url = reqwest::Url::parse(base).map_err(|e| ClientError::Config(format!("bad node URL {base:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ClientError::Config(format!("node URL {base:?} is not http(s)")));
    }
    Ok(format!("{base}{GRAPHQL_PATH}"))
}

/// Upper bound of the wait before retry number `attempt + 1`: the base doubled per attempt,
/// capped at [`RETRY_BACKOFF_MAX_MS`].
pub(crate) fn backoff_ceiling_ms(attempt: u32) -> u64 {
    RETRY_BACKOFF_BASE_MS.saturating_mul(1u64.checked_shl(attempt).unwrap_or(u64::MAX)).min(RETRY_BACKOFF_MAX_MS)
}

/// Picks a wait between half the ceiling and the ceiling, so that clients that failed together
/// (say, at a leader crash) do not all retry in the same instant.
fn jittered(ceiling_ms: u64) -> Duration {
    let half = ceiling_ms / 2;
    Duration::from_millis(half + rand::rng().random_range(0..=ceiling_ms - half))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_then_caps() {
        assert_eq!(backoff_ceiling_ms(0), RETRY_BACKOFF_BASE_MS);
        assert_eq!(backoff_ceiling_ms(1), RETRY_BACKOFF_BASE_MS * 2);
        assert_eq!(backoff_ceiling_ms(2), RETRY_BACKOFF_BASE_MS * 4);
        assert_eq!(backoff_ceiling_ms(30), RETRY_BACKOFF_MAX_MS);
        assert_eq!(backoff_ceiling_ms(200), RETRY_BACKOFF_MAX_MS);
    }

    #[test]
    fn jitter_stays_within_half_to_full_ceiling() {
        for _ in 0..100 {
            let d = jittered(400).as_millis();
            assert!((200..=400).contains(&d), "{d}");
        }
        assert_eq!(jittered(0), Duration::ZERO);
    }

    #[test]
    fn endpoints_are_validated_and_normalized() {
        assert_eq!(endpoint_url("http://127.0.0.1:8080/").unwrap(), "http://127.0.0.1:8080/graphql");
        assert!(endpoint_url("127.0.0.1:8080").is_err());
        assert!(endpoint_url("ftp://host").is_err());
        assert!(matches!(Client::new(Vec::<String>::new()), Err(ClientError::Config(_))));
    }

    #[test]
    fn node_index_wraps() {
        let client = Client::new(["http://a:1", "http://b:2"]).unwrap();
        assert_eq!(client.node_count(), 2);
        assert_eq!(client.endpoints[5 % client.node_count()], "http://b:2/graphql");
    }
}
