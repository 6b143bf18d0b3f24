//! etcd, through its v3 HTTP/JSON gateway (`POST /v3/kv/txn`, `/v3/kv/range`, `/v3/kv/put`),
//! which takes keys and values in base64.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use client::{transport, ClientError};
use serde_json::{json, Value};

use super::{Failure, SOLD_OUT_CODE, TAKEN_CODE};

impl From<reqwest::Error> for Failure {
    fn from(e: reqwest::Error) -> Self {
        Self::broken(ClientError::from(e).code())
    }
}

/// The etcd key of a claimed name.
pub(super) fn etcd_name_key(name: &str) -> String {
    format!("names/{name}")
}

/// An etcd member's JSON gateway, through an HTTP client of its own.
pub(super) struct EtcdConn {
    http: reqwest::Client,
    /// `{member}/v3/kv/`.
    base: String,
    /// Purchases: the stock and its `mod_revision` as last seen by this worker, so that the next
    /// compare-and-swap starts without a read.
    last_seen: Option<(u64, i64)>,
}

impl EtcdConn {
    pub(super) fn new(endpoint: &str, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_millis(transport::CONNECT_TIMEOUT_MS))
            .pool_max_idle_per_host(1)
            .build()
            .context("building the HTTP client")?;
        Ok(Self { http, base: format!("{}/v3/kv/", endpoint.trim_end_matches('/')), last_seen: None })
    }

    async fn post(&self, path: &str, body: &Value) -> Result<Value, Failure> {
        let response = self.http.post(format!("{}{path}", self.base)).json(body).send().await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        if !status.is_success() {
            return Err(Failure::refused(format!("ETCD_HTTP_{}", status.as_u16())));
        }
        serde_json::from_slice(&bytes).map_err(|_| Failure::refused("DECODE"))
    }

    /// A claim: put `key` only if it has never been created.
    pub(super) async fn create_if_absent(&self, key: &str) -> Result<u64, Failure> {
        let key = BASE64.encode(key);
        let txn = json!({
            "compare": [{ "key": key, "result": "EQUAL", "target": "CREATE", "create_revision": "0" }],
            "success": [{ "request_put": { "key": key, "value": BASE64.encode("1") } }],
        });
        if succeeded(&self.post("txn", &txn).await?) {
            Ok(0)
        } else {
            Err(Failure::refused(TAKEN_CODE))
        }
    }

    /// A check: a range get of one key.
    pub(super) async fn get(&self, key: &str, serializable: bool) -> Result<u64, Failure> {
        self.range(key, serializable).await.map(|_| 0)
    }

    /// The key's value as a number and its `mod_revision`, if it exists.
    pub(super) async fn range(&self, key: &str, serializable: bool) -> Result<Option<(u64, i64)>, Failure> {
        let answer = self.post("range", &json!({ "key": BASE64.encode(key), "serializable": serializable })).await?;
        first_kv(&answer)
    }

    /// A setup write.
    pub(super) async fn put(&self, key: String, value: String) -> Result<(), Failure> {
        self.post("put", &json!({ "key": BASE64.encode(key), "value": BASE64.encode(value) })).await.map(|_| ())
    }

    /// A purchase: compare-and-swap on the stock until it succeeds or too little is left.
    pub(super) async fn buy(&mut self, key: &str, quantity: u64, attempts: &AtomicU64) -> Result<u64, Failure> {
        let (mut stock, mut revision) = match self.last_seen {
            Some(seen) => seen,
            None => self.range(key, false).await?.ok_or_else(|| Failure::refused("NO_STOCK_KEY"))?,
        };
        let key64 = BASE64.encode(key);
        loop {
            if stock < quantity {
                self.last_seen = Some((stock, revision));
                return Err(Failure::refused(SOLD_OUT_CODE));
            }
            attempts.fetch_add(1, Ordering::Relaxed);
            let left = stock - quantity;
            let txn = json!({
                "compare": [{ "key": key64, "result": "EQUAL", "target": "MOD", "mod_revision": revision.to_string() }],
                "success": [{ "request_put": { "key": key64, "value": BASE64.encode(left.to_string()) } }],
                "failure": [{ "request_range": { "key": key64 } }],
            });
            let answer = self.post("txn", &txn).await?;
            if succeeded(&answer) {
                // The put's revision is the store's revision after the transaction.
                let revision =
                    answer.pointer("/header/revision").and_then(int).ok_or_else(|| Failure::refused("DECODE"))?;
                self.last_seen = Some((left, revision));
                return Ok(quantity);
            }
            let current = answer.pointer("/responses/0/response_range").ok_or_else(|| Failure::refused("DECODE"))?;
            (stock, revision) = first_kv(current)?.ok_or_else(|| Failure::refused("NO_STOCK_KEY"))?;
        }
    }
}

/// Whether a transaction's comparisons held; the gateway leaves `false` out.
fn succeeded(answer: &Value) -> bool {
    answer.get("succeeded").and_then(Value::as_bool).unwrap_or(false)
}

/// The first key-value of a range answer: its value parsed as a number (0 if it is not one) and
/// its `mod_revision`.
fn first_kv(range: &Value) -> Result<Option<(u64, i64)>, Failure> {
    let Some(kv) = range.get("kvs").and_then(|kvs| kvs.get(0)) else {
        return Ok(None);
    };
    let value = kv.get("value").and_then(Value::as_str).unwrap_or("");
    let value = BASE64.decode(value).map_err(|_| Failure::refused("DECODE"))?;
    let number = std::str::from_utf8(&value).ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let revision = kv.get("mod_revision").and_then(int).ok_or_else(|| Failure::refused("DECODE"))?;
    Ok(Some((number, revision)))
}

/// A JSON int64, which the gateway writes as a string.
fn int(v: &Value) -> Option<i64> {
    v.as_str().and_then(|s| s.parse().ok()).or_else(|| v.as_i64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn range_answers_decode() {
        let answer =
            json!({ "kvs": [{ "key": BASE64.encode("k"), "value": BASE64.encode("42"), "mod_revision": "7" }] });
        assert_eq!(first_kv(&answer).unwrap(), Some((42, 7)));
        assert_eq!(first_kv(&json!({ "header": {} })).unwrap(), None);
        assert!(succeeded(&json!({ "succeeded": true })));
        assert!(!succeeded(&json!({ "header": {} })));
    }
}
