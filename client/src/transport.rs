//! The [`Client`]: one GraphQL POST to a chosen node, and the retrying path that moves on to the
//! next node when one cannot serve.
//!
//! # Retry policy
//!
//! A failed attempt is classified by [`ClientError::failure`]:
//! - [`Failure::NotApplied`]: the connection was refused before anything was sent, or the server
//!   said `UNAVAILABLE` with `outcomeUnknown: false`. Retried for every operation.
//! - [`Failure::MaybeApplied`]: a timeout or dropped connection after the request was sent,
//!   `UNAVAILABLE` with `outcomeUnknown: true`, or HTTP 502–504 from a proxy. Retried only for
//!   [`Idempotency::Idempotent`] operations; a non-idempotent one stops at once with
//!   [`ClientError::OutcomeUnknown`], telling the caller to re-check before trying again.
//! - [`Failure::Final`]: any other error (a business rule, bad input, no permission, a broken
//!   response). Never retried.
//!
//! Each retry goes to the next node of the list and waits first: a jittered exponential backoff
//! (between half and all of [`RetryPolicy::base_ms`] doubled per retry, capped at
//! [`RetryPolicy::max_ms`]), but never less than the server's `retryAfterMs` hint (itself capped
//! at [`RETRY_AFTER_CAP_MS`]). The policy gives up after [`RetryPolicy::max_attempts`] attempts
//! or when the next wait would end past [`RetryPolicy::max_elapsed_ms`], returning the last
//! error; it never hangs beyond that plus one request timeout.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rand::Rng;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE};
use serde_json::{json, Value};

use crate::error::{parse_response_indexed, ClientError, Failure};

/// Whole-request timeout used by [`Client::new`]; generous because a linearizable operation may
/// wait out a leader election.
pub const REQUEST_TIMEOUT_MS: u64 = 10_000;

/// Connect timeout used by [`Client::new`]; short because a node that does not accept a TCP
/// connection quickly is down, and the retrying path should move on.
pub const CONNECT_TIMEOUT_MS: u64 = 2_000;

/// Default of [`RetryPolicy::max_attempts`], counting the first; with the backoff below and the
/// server's 500 ms hint this spans a few seconds, a leader election or two.
pub const RETRY_MAX_ATTEMPTS: u32 = 6;

/// Default of [`RetryPolicy::base_ms`]: the backoff ceiling before the first retry; it doubles
/// on each further retry.
pub const RETRY_BACKOFF_BASE_MS: u64 = 50;

/// Default of [`RetryPolicy::max_ms`]: the cap on the backoff ceiling, so a long outage does not
/// stretch single waits without bound.
pub const RETRY_BACKOFF_MAX_MS: u64 = 1_000;

/// Default of [`RetryPolicy::max_elapsed_ms`]: no retry starts a wait that would end later than
/// this after the first attempt began.
pub const RETRY_MAX_ELAPSED_MS: u64 = 15_000;

/// Largest `retryAfterMs` hint honored, so a wrong hint cannot park a client for long.
pub const RETRY_AFTER_CAP_MS: u64 = 5_000;

/// Path of the GraphQL endpoint under each node's base URL.
const GRAPHQL_PATH: &str = "/graphql";

/// Whether sending an operation twice has the same effect as sending it once, which decides
/// whether it may be retried after a failure that leaves its outcome unknown.
///
/// The typed helpers of [`crate::ops`] declare theirs: reads (`usernameAvailability`, `sale`,
/// `timeline`, `messages`, `cluster`) and `login` are idempotent, and so are `purchase` (its
/// idempotency key returns the first order), `follow` (following twice is following),
/// `sendMessage` (its `clientMessageId` returns the first message) and `startSale` (starting an
/// open sale keeps it open). `reserveUsername`, `register`, `postTweet`, `createProduct`,
/// `createSale` and `createChat` are not: a retry after an unknown outcome could reserve,
/// register or create twice, or fail with `USERNAME_TAKEN` for the caller's own first attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Idempotency {
    /// Safe to repeat whatever happened to an earlier attempt.
    Idempotent,
    /// Repeated only when an earlier attempt certainly took no effect.
    NonIdempotent,
}

/// How the retrying path retries; see the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Most attempts, counting the first; 1 means no retry.
    pub max_attempts: u32,
    /// Backoff ceiling before the first retry, in milliseconds.
    pub base_ms: u64,
    /// Cap on the backoff ceiling, in milliseconds.
    pub max_ms: u64,
    /// No wait is started that would end later than this after the first attempt, in ms.
    pub max_elapsed_ms: u64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: RETRY_MAX_ATTEMPTS,
            base_ms: RETRY_BACKOFF_BASE_MS,
            max_ms: RETRY_BACKOFF_MAX_MS,
            max_elapsed_ms: RETRY_MAX_ELAPSED_MS,
        }
    }
}

impl RetryPolicy {
    /// Upper bound of the wait before retry number `attempt + 1`: the base doubled per attempt,
    /// capped at `max_ms`.
    pub fn ceiling_ms(&self, attempt: u32) -> u64 {
        self.base_ms.saturating_mul(1u64.checked_shl(attempt).unwrap_or(u64::MAX)).min(self.max_ms)
    }

    /// The wait before retry number `attempt + 1` after `error`: jittered backoff, raised to the
    /// server's `retryAfterMs` hint (capped at [`RETRY_AFTER_CAP_MS`]) when it sent one.
    pub fn delay(&self, attempt: u32, error: &ClientError) -> Duration {
        let floor = Duration::from_millis(error.retry_after_ms().unwrap_or(0).min(RETRY_AFTER_CAP_MS));
        jittered(self.ceiling_ms(attempt)).max(floor)
    }
}

/// A GraphQL client for a fixed set of nodes. Cloning is cheap and shares the connection pool.
#[derive(Clone, Debug)]
pub struct Client {
    http: reqwest::Client,
    /// Base URL of each node, in the order given, without a trailing slash.
    bases: Arc<[String]>,
    /// Full GraphQL endpoint URL of each node, in the order given.
    endpoints: Arc<[String]>,
    /// Bearer token the typed helpers send, if any.
    bearer: Option<Arc<str>>,
    /// Whether the typed helpers retry per [`RetryPolicy`] instead of making a single attempt.
    retry: bool,
    /// How the retrying paths retry.
    policy: RetryPolicy,
    /// The session's high-water log index (see the module documentation); `None` when off.
    session: Option<Arc<AtomicU64>>,
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
        let bases = nodes.into_iter().map(|node| base_url(node.as_ref())).collect::<Result<Vec<_>, _>>()?;
        if bases.is_empty() {
            return Err(ClientError::Config("no nodes given".to_owned()));
        }
        let endpoints: Vec<String> = bases.iter().map(|b| format!("{b}{GRAPHQL_PATH}")).collect();
        Ok(Self {
            http,
            bases: bases.into(),
            endpoints: endpoints.into(),
            bearer: None,
            retry: true,
            policy: RetryPolicy::default(),
            session: Some(Arc::new(AtomicU64::new(0))),
        })
    }

    /// Returns a client that keeps a session (the default: see the module documentation) when
    /// `on`, or sends no `atLeastIndex` and serves every read from wherever it lands when off.
    pub fn with_session(mut self, on: bool) -> Self {
        match (on, self.session.is_some()) {
            (true, false) => self.session = Some(Arc::new(AtomicU64::new(0))),
            (false, _) => self.session = None,
            (true, true) => {}
        }
        self
    }

    /// A clone with its own session, starting from this one's index: what it sees no longer
    /// moves this client's index, nor the other way round (one per independent user, say).
    pub fn new_session(&self) -> Self {
        let mut other = self.clone();
        if other.session.is_some() {
            other.session = Some(Arc::new(AtomicU64::new(self.session_index())));
        }
        other
    }

    /// The session's high-water index: the newest state this client has seen or written
    /// (0 before any answer, or with the session off).
    pub fn session_index(&self) -> u64 {
        self.session.as_ref().map_or(0, |s| s.load(Ordering::Relaxed))
    }

    /// Raises the session's index to `index` (say, one saved by an earlier process, or seen by
    /// another client the caller wants to read after). It never goes down.
    pub fn observe_index(&self, index: u64) {
        if let Some(s) = &self.session {
            s.fetch_max(index, Ordering::Relaxed);
        }
    }

    /// Returns a client whose typed helpers send `Authorization: Bearer <token>`.
    pub fn with_bearer(mut self, token: impl Into<Arc<str>>) -> Self {
        self.bearer = Some(token.into());
        self
    }

    /// Returns a client whose typed helpers retry per its [`RetryPolicy`] when `on` (the
    /// default), or make exactly one attempt when off (say, to measure single attempts).
    /// Either way a non-idempotent helper is never repeated after an unknown outcome.
    pub fn with_retries(mut self, on: bool) -> Self {
        self.retry = on;
        self
    }

    /// Returns a client that retries per `policy` (typed helpers, [`Client::execute_retrying`]
    /// and [`Client::execute_with`]).
    pub fn with_retry_policy(mut self, policy: RetryPolicy) -> Self {
        self.policy = policy;
        self
    }

    /// The retry policy in force.
    pub fn retry_policy(&self) -> RetryPolicy {
        self.policy
    }

    /// Number of nodes this client knows.
    pub fn node_count(&self) -> usize {
        self.endpoints.len()
    }

    /// The nodes' base URLs, as given (without a trailing slash).
    pub fn nodes(&self) -> &[String] {
        &self.bases
    }

    /// The bearer token the typed helpers send, if any.
    pub fn bearer(&self) -> Option<&str> {
        self.bearer.as_deref()
    }

    /// Sends one GraphQL request to node `node` and returns the response's `data`.
    ///
    /// `node` wraps around the node list, so callers can pass a round-robin counter directly.
    /// Any GraphQL error becomes a [`ClientError`] carrying the first error's code.
    pub async fn execute(
        &self,
        node: usize,
        query: &str,
        variables: Value,
        bearer: Option<&str>,
    ) -> Result<Value, ClientError> {
        self.send(node, query, &variables, bearer).await
    }

    /// Like [`Client::execute`], but retries per the client's [`RetryPolicy`] *treating the
    /// request as idempotent*: it is repeated even after a failure that leaves its outcome
    /// unknown. Use it for reads and for writes that are safe to repeat (a purchase with an
    /// idempotency key); for anything else use [`Client::execute_with`].
    pub async fn execute_retrying(
        &self,
        node: usize,
        query: &str,
        variables: Value,
        bearer: Option<&str>,
    ) -> Result<Value, ClientError> {
        self.execute_with(node, query, variables, bearer, "request", Idempotency::Idempotent).await
    }

    /// Runs a request under the client's [`RetryPolicy`], starting at node `node` and moving to
    /// the next node on each retry. `operation` names it in a [`ClientError::OutcomeUnknown`],
    /// which a [`Idempotency::NonIdempotent`] request returns instead of being repeated after a
    /// failure that may have applied it.
    pub async fn execute_with(
        &self,
        node: usize,
        query: &str,
        variables: Value,
        bearer: Option<&str>,
        operation: &str,
        idempotency: Idempotency,
    ) -> Result<Value, ClientError> {
        let started = Instant::now();
        let max_elapsed = Duration::from_millis(self.policy.max_elapsed_ms);
        let mut attempt = 0u32;
        // Bounded: every pass returns or counts an attempt, up to `max_attempts`.
        loop {
            let target = node.wrapping_add(attempt as usize);
            let error = match self.send(target, query, &variables, bearer).await {
                Ok(data) => return Ok(data),
                Err(e) => e,
            };
            match (error.failure(), idempotency) {
                (Failure::Final, _) => return Err(error),
                (Failure::MaybeApplied, Idempotency::NonIdempotent) => {
                    return Err(ClientError::OutcomeUnknown { operation: operation.to_owned(), cause: Box::new(error) })
                }
                (Failure::NotApplied, _) | (Failure::MaybeApplied, Idempotency::Idempotent) => {}
            }
            if attempt + 1 >= self.policy.max_attempts {
                return Err(error);
            }
            let wait = self.policy.delay(attempt, &error);
            if started.elapsed() + wait > max_elapsed {
                return Err(error);
            }
            tokio::time::sleep(wait).await;
            attempt += 1;
        }
    }

    /// Runs a typed helper's request with the configured bearer token: through
    /// [`Client::execute_with`] when retries are on, once otherwise.
    pub(crate) async fn run(
        &self,
        node: usize,
        operation: &str,
        idempotency: Idempotency,
        query: &str,
        variables: Value,
    ) -> Result<Value, ClientError> {
        let bearer = self.bearer.as_deref();
        if self.retry {
            self.execute_with(node, query, variables, bearer, operation, idempotency).await
        } else {
            self.execute(node, query, variables, bearer).await
        }
    }

    /// The schema in SDL, as node `node` serves it at `/schema.graphql` (for codegen tools).
    pub async fn schema_sdl(&self, node: usize) -> Result<String, ClientError> {
        let url = format!("{}/schema.graphql", self.bases[node % self.bases.len()]);
        let response = self.http.get(url).send().await?;
        let status = response.status().as_u16();
        let text = response.text().await?;
        if !(200..300).contains(&status) {
            return Err(ClientError::Http { status, body: text.chars().take(200).collect() });
        }
        Ok(text)
    }

    /// Posts one request to one node, with the session's index as `atLeastIndex`, and raises
    /// the session's index to what the answer reflects.
    async fn send(
        &self,
        node: usize,
        query: &str,
        variables: &Value,
        bearer: Option<&str>,
    ) -> Result<Value, ClientError> {
        let body = request_body(query, variables, self.session_index())?;
        let url = &self.endpoints[node % self.endpoints.len()];
        let mut request = self.http.post(url).header(CONTENT_TYPE, "application/json").body(body);
        if let Some(token) = bearer {
            request = request.header(AUTHORIZATION, format!("Bearer {token}"));
        }
        let response = request.send().await?;
        let status = response.status().as_u16();
        let bytes = response.bytes().await?;
        let (result, index) = parse_response_indexed(status, &bytes);
        if let Some(index) = index {
            self.observe_index(index);
        }
        result
    }
}

/// Serializes the `{"query", "variables", "extensions"}` request object, with `atLeastIndex`
/// when the session has seen any state (a retry resends it with the index as it is then).
fn request_body(query: &str, variables: &Value, at_least_index: u64) -> Result<Vec<u8>, ClientError> {
    let body = if at_least_index > 0 {
        json!({ "query": query, "variables": variables, "extensions": { "atLeastIndex": at_least_index } })
    } else {
        json!({ "query": query, "variables": variables })
    };
    serde_json::to_vec(&body).map_err(|e| ClientError::Decode(format!("cannot serialize request: {e}")))
}

/// Validates a node base URL and strips a trailing slash.
fn base_url(base: &str) -> Result<String, ClientError> {
    let base = base.trim().trim_end_matches('/');
    let url = reqwest::Url::parse(base).map_err(|e| ClientError::Config(format!("bad node URL {base:?}: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ClientError::Config(format!("node URL {base:?} is not http(s)")));
    }
    Ok(base.to_owned())
}

/// Upper bound of the wait before retry number `attempt + 1` under the default policy.
#[cfg(test)]
fn backoff_ceiling_ms(attempt: u32) -> u64 {
    RetryPolicy::default().ceiling_ms(attempt)
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
    fn retry_after_is_a_floor_and_is_capped() {
        let policy = RetryPolicy::default();
        let hinted =
            |ms| ClientError::Unavailable { message: String::new(), retry_after_ms: Some(ms), outcome_unknown: false };
        for _ in 0..20 {
            assert!(policy.delay(0, &hinted(500)) >= Duration::from_millis(500));
            assert!(policy.delay(0, &hinted(u64::MAX)) <= Duration::from_millis(RETRY_AFTER_CAP_MS));
            let plain = ClientError::Decode(String::new());
            assert!(policy.delay(0, &plain) <= Duration::from_millis(RETRY_BACKOFF_BASE_MS));
            // A late retry's backoff already exceeds a small hint: the larger wins.
            assert!(policy.delay(10, &hinted(1)) >= Duration::from_millis(RETRY_BACKOFF_MAX_MS / 2));
        }
    }

    #[test]
    fn endpoints_are_validated_and_normalized() {
        let client = Client::new(["http://127.0.0.1:8080/"]).unwrap();
        assert_eq!(client.endpoints[0], "http://127.0.0.1:8080/graphql");
        assert_eq!(client.nodes(), ["http://127.0.0.1:8080"]);
        assert!(base_url("127.0.0.1:8080").is_err());
        assert!(base_url("ftp://host").is_err());
        assert!(matches!(Client::new(Vec::<String>::new()), Err(ClientError::Config(_))));
    }

    #[test]
    fn node_index_wraps() {
        let client = Client::new(["http://a:1", "http://b:2"]).unwrap();
        assert_eq!(client.node_count(), 2);
        assert_eq!(client.endpoints[5 % client.node_count()], "http://b:2/graphql");
    }
}
