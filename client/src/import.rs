//! Bringing existing accounts in: `importAccounts` calls packed to fit the server's limits, and a
//! driver that sends them a few at a time and waits out `RATE_LIMITED`.
//!
//! A call carries at most [`IMPORT_ACCOUNTS_PER_CALL_MAX`] accounts, and its body must fit the
//! server's request body limit (256 KiB), so [`Batches`] packs accounts by count and by encoded
//! bytes ([`IMPORT_BATCH_BYTES_MAX`]), whichever fills first. A call is safe to repeat (accounts
//! it already created come back as skipped with `USERNAME_TAKEN`), so it is retried like any
//! idempotent operation, and [`import_batch`] also repeats it after a `RATE_LIMITED` refusal,
//! which certainly changed nothing.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::ClientError;
use crate::ops::field;
use crate::transport::{Client, Idempotency};

/// Most accounts one `importAccounts` call may carry (the server's limit).
pub const IMPORT_ACCOUNTS_PER_CALL_MAX: usize = 1_000;
/// Most bytes of accounts (as JSON) packed into one call: under the server's 256 KiB request
/// body limit with room for the query and the envelope.
pub const IMPORT_BATCH_BYTES_MAX: usize = 240 * 1024;
/// How many times [`import_batch`] repeats a call the server refused with `RATE_LIMITED`.
pub const IMPORT_RATE_LIMITED_RETRIES_MAX: u32 = 100;
/// Longest wait [`import_batch`] takes after a `RATE_LIMITED`, whatever the server's hint.
const IMPORT_RATE_LIMITED_WAIT_MAX_MS: u64 = 5_000;

/// Mutation bringing in existing accounts (ADMIN only).
pub const IMPORT_ACCOUNTS_MUTATION: &str =
    "mutation($a:[ImportAccountInput!]!){ importAccounts(accounts:$a){ imported skipped{ username code reason } } }";

/// One account to import, as `importAccounts` takes it and as a line of `cli import`'s JSONL
/// file has it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportAccount {
    /// The username; claimed by the rules of `register`.
    pub username: String,
    /// An argon2id PHC string (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`).
    pub password_hash: String,
    /// Display name; the username when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display_name: Option<String>,
    /// E-mail address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// RFC 3339 creation time where the account comes from; the import's time when omitted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<String>,
}

/// What one `importAccounts` call did.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize, Serialize)]
pub struct ImportResult {
    /// Accounts created.
    pub imported: u64,
    /// Accounts left out, in the order given.
    pub skipped: Vec<SkippedAccount>,
}

/// An account an import left out.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize, Serialize)]
pub struct SkippedAccount {
    /// The name as given.
    pub username: String,
    /// `USERNAME_TAKEN`, `USERNAME_RESERVED`, `USERNAME_BLOCKED` or `USERNAME_INVALID`.
    pub code: String,
    /// Why, for humans.
    pub reason: String,
}

impl Client {
    /// Imports up to [`IMPORT_ACCOUNTS_PER_CALL_MAX`] accounts in one call; needs an ADMIN
    /// token. Retried like an idempotent operation: a repeat skips what the first attempt
    /// created, as `USERNAME_TAKEN`.
    pub async fn import_accounts(&self, node: usize, accounts: &[ImportAccount]) -> Result<ImportResult, ClientError> {
        let vars = json!({ "a": accounts });
        let data = self.run(node, "importAccounts", Idempotency::Idempotent, IMPORT_ACCOUNTS_MUTATION, vars).await?;
        field(data, "importAccounts")
    }
}

/// [`Client::import_accounts`], repeated after each `RATE_LIMITED` refusal (up to
/// [`IMPORT_RATE_LIMITED_RETRIES_MAX`] times) once the server's `retryAfterMs` has passed.
pub async fn import_batch(client: &Client, node: usize, batch: &[ImportAccount]) -> Result<ImportResult, ClientError> {
    let mut refusals = 0;
    loop {
        match client.import_accounts(node, batch).await {
            Err(e) if e.code() == "RATE_LIMITED" && refusals < IMPORT_RATE_LIMITED_RETRIES_MAX => {
                refusals += 1;
                let wait_ms = e.retry_after_ms().unwrap_or(100).clamp(1, IMPORT_RATE_LIMITED_WAIT_MAX_MS);
                tokio::time::sleep(Duration::from_millis(wait_ms)).await;
            }
            other => return other,
        }
    }
}

/// Packs accounts into calls of at most [`IMPORT_ACCOUNTS_PER_CALL_MAX`] accounts and
/// [`IMPORT_BATCH_BYTES_MAX`] bytes, in order. An account too large to fit a call alone still
/// goes alone: the server then says which field is too long.
pub struct Batches<I: Iterator> {
    accounts: std::iter::Peekable<I>,
}

impl<I: Iterator<Item = ImportAccount>> Batches<I> {
    /// Batches of `accounts`.
    pub fn new(accounts: I) -> Self {
        Batches { accounts: accounts.peekable() }
    }
}

/// The bytes an account takes in a call's variables (its JSON and a comma).
pub fn encoded_bytes(account: &ImportAccount) -> usize {
    serde_json::to_vec(account).map(|v| v.len() + 1).unwrap_or(usize::MAX)
}

impl<I: Iterator<Item = ImportAccount>> Iterator for Batches<I> {
    type Item = Vec<ImportAccount>;

    fn next(&mut self) -> Option<Vec<ImportAccount>> {
        let mut batch = Vec::new();
        let mut bytes = 0usize;
        while batch.len() < IMPORT_ACCOUNTS_PER_CALL_MAX {
            let Some(next) = self.accounts.peek() else { break };
            let size = encoded_bytes(next);
            if !batch.is_empty() && bytes.saturating_add(size) > IMPORT_BATCH_BYTES_MAX {
                break;
            }
            bytes = bytes.saturating_add(size);
            batch.extend(self.accounts.next());
        }
        (!batch.is_empty()).then_some(batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(i: usize, email_bytes: usize) -> ImportAccount {
        ImportAccount {
            username: format!("user{i}"),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g"
                .into(),
            email: Some(format!("{}@example.com", "e".repeat(email_bytes))),
            ..ImportAccount::default()
        }
    }

    #[test]
    fn batches_fill_by_count_then_by_bytes_and_keep_the_order() {
        // Small accounts: 2,500 make calls of 1,000, 1,000 and 500.
        let sizes: Vec<usize> = Batches::new((0..2_500).map(|i| account(i, 5))).map(|b| b.len()).collect();
        assert_eq!(sizes, vec![1_000, 1_000, 500]);
        // Large ones (about 1.2 KiB each) fill a call's bytes first.
        let batches: Vec<_> = Batches::new((0..1_000).map(|i| account(i, 1_100))).collect();
        assert!(batches.len() > 1);
        for b in &batches {
            let bytes: usize = b.iter().map(encoded_bytes).sum();
            assert!(bytes <= IMPORT_BATCH_BYTES_MAX, "{bytes} bytes in one call");
        }
        let names: Vec<_> = batches.iter().flatten().map(|a| a.username.clone()).collect();
        assert_eq!(names, (0..1_000).map(|i| format!("user{i}")).collect::<Vec<_>>());
    }

    #[test]
    fn an_account_too_large_for_a_call_goes_alone() {
        let batches: Vec<_> = Batches::new((0..3).map(|i| account(i, IMPORT_BATCH_BYTES_MAX))).collect();
        assert_eq!(batches.iter().map(Vec::len).collect::<Vec<_>>(), vec![1, 1, 1]);
    }

    #[test]
    fn a_jsonl_line_reads_with_optional_fields_and_refuses_unknown_ones() {
        let a: ImportAccount = serde_json::from_str(r#"{"username":"ann","passwordHash":"$argon2id$x"}"#).unwrap();
        assert_eq!(a.username, "ann");
        assert_eq!(a.created_at, None);
        let typo = serde_json::from_str::<ImportAccount>(r#"{"username":"ann","password_hash":"x"}"#);
        assert!(typo.is_err(), "a misspelt field must not import an account without its hash");
    }
}
