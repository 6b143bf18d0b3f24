//! A small GraphQL-over-HTTP client for simulated client hosts, and the retry-until-data loop
//! setup and the final reads use.

use std::time::Duration;

use serde_json::Value;

use crate::config::REQUEST_TIMEOUT;
use crate::error::SimError;
use crate::net::{post, NetError, PORT};

/// How one GraphQL request ended.
#[derive(Debug, Clone)]
pub enum Answer {
    /// `data`, with no errors.
    Data(Value),
    /// The first error: its `extensions.code`, and whether the server said the write may still
    /// take effect (`extensions.outcomeUnknown`).
    Error {
        /// The stable error code.
        code: String,
        /// True when a write reached a leader's log and may commit later.
        outcome_unknown: bool,
        /// The message, for reports.
        message: String,
    },
    /// No GraphQL answer at all.
    Net(NetError),
}

impl Answer {
    /// True when the request certainly had no effect on the cluster.
    pub fn certainly_not_applied(&self) -> bool {
        match self {
            Answer::Data(_) => false,
            Answer::Error { code, outcome_unknown, .. } => !(code == "UNAVAILABLE" && *outcome_unknown),
            Answer::Net(NetError::Unreachable(_)) => true,
            Answer::Net(NetError::NoAnswer(_)) => false,
        }
    }

    /// True when another node may well succeed (the cluster, not the request, was the problem).
    pub fn worth_retrying(&self) -> bool {
        match self {
            Answer::Data(_) => false,
            Answer::Error { code, .. } => code == "UNAVAILABLE" || code == "RATE_LIMITED",
            Answer::Net(_) => true,
        }
    }

    /// The error code, if this is a GraphQL error.
    pub fn code(&self) -> Option<&str> {
        match self {
            Answer::Error { code, .. } => Some(code),
            _ => None,
        }
    }
}

/// The address of simulated node `id`.
pub fn node_addr(id: u64) -> String {
    format!("n{id}:{PORT}")
}

/// The log indexes an answer carried in its `extensions`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Indexes {
    /// `appliedIndex`: the state the answer was read from.
    pub applied: Option<u64>,
    /// `writeIndex`: the entry the mutation committed in.
    pub write: Option<u64>,
}

impl Indexes {
    /// The highest index the answer reflects (what a session keeps).
    pub fn high(&self) -> Option<u64> {
        self.applied.max(self.write)
    }
}

/// POSTs `query` to `/graphql` on `addr`, with a bearer `token` if given.
pub async fn request(addr: &str, query: &str, token: Option<&str>, timeout: Duration) -> Answer {
    request_at(addr, query, token, 0, timeout).await.0
}

/// [`request`] with `extensions.atLeastIndex` (when not 0), returning the indexes the answer
/// carried too.
pub async fn request_at(
    addr: &str,
    query: &str,
    token: Option<&str>,
    at_least: u64,
    timeout: Duration,
) -> (Answer, Indexes) {
    let body = if at_least > 0 {
        serde_json::json!({ "query": query, "extensions": { "atLeastIndex": at_least } })
    } else {
        serde_json::json!({ "query": query })
    };
    let body = serde_json::to_vec(&body).unwrap_or_default();
    let mut headers = Vec::new();
    if let Some(t) = token {
        headers.push(("authorization", format!("Bearer {t}")));
    }
    let (status, bytes) = match post(addr, "/graphql", &headers, body, timeout).await {
        Ok(x) => x,
        Err(e) => return (Answer::Net(e), Indexes::default()),
    };
    let Ok(value) = serde_json::from_slice::<Value>(&bytes) else {
        let answer = Answer::Error {
            code: format!("HTTP_{status}"),
            outcome_unknown: false,
            message: String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned(),
        };
        return (answer, Indexes::default());
    };
    let ext = value.get("extensions");
    let indexes = Indexes {
        applied: ext.and_then(|x| x.get("appliedIndex")).and_then(Value::as_u64),
        write: ext.and_then(|x| x.get("writeIndex")).and_then(Value::as_u64),
    };
    if let Some(err) = value.get("errors").and_then(|e| e.get(0)) {
        let ext = err.get("extensions");
        let answer = Answer::Error {
            code: ext.and_then(|x| x.get("code")).and_then(Value::as_str).unwrap_or("NO_CODE").to_string(),
            outcome_unknown: ext.and_then(|x| x.get("outcomeUnknown")).and_then(Value::as_bool).unwrap_or(false),
            message: err.get("message").and_then(Value::as_str).unwrap_or_default().to_string(),
        };
        return (answer, indexes);
    }
    (Answer::Data(value.get("data").cloned().unwrap_or(Value::Null)), indexes)
}

/// Quotes `s` as a GraphQL string literal (JSON string syntax is valid GraphQL).
pub fn lit(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// How long [`until_data`] waits before asking again.
const UNTIL_DATA_RETRY_MS: u64 = 200;

/// Sleeps `ms` simulated milliseconds (inside a host, tokio's clock is turmoil's).
pub(crate) async fn sleep_ms(ms: u64) {
    tokio::time::sleep(Duration::from_millis(ms)).await;
}

/// Sends `query` to `node` until it answers with data (setup and final reads: no faults are
/// running then, but the cluster may still be electing or catching up).
pub(crate) async fn until_data(
    node: u64,
    query: &str,
    token: Option<&str>,
    limit: Duration,
) -> Result<Value, SimError> {
    let deadline = tokio::time::Instant::now() + limit;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        match request(&node_addr(node), query, token, REQUEST_TIMEOUT).await {
            Answer::Data(d) => return Ok(d),
            other => last = format!("{other:?}"),
        }
        sleep_ms(UNTIL_DATA_RETRY_MS).await;
    }
    Err(SimError::NoData { node, query: query.to_string(), limit, last })
}
