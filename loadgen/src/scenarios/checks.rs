//! The `checks` scenario: each request checks the availability of a name drawn at random from a
//! pool (`usernameAvailability`) at the read consistency asked for. Setup (not measured) may
//! reserve part of the pool first, so that some answers are RESERVED rather than AVAILABLE.

use std::collections::BTreeMap;

use anyhow::bail;
use clap::Args;
use client::{ops, Client, Consistency};
use futures::stream::{self, StreamExt};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

use super::{ConsistencyArg, Request, NAME_PREFIX};
use crate::stats::format_errors;

/// Default number of distinct names the `checks` scenario draws from.
pub(crate) const CHECK_NAMES_DEFAULT_COUNT: usize = 10_000;

/// Extra lifetime given to the `checks` scenario's pre-reservations beyond the run itself, so
/// they are still held when the last measured check arrives.
const PRE_RESERVE_TTL_MARGIN_SECS: u64 = 60;

/// Flags of the `checks` scenario.
#[derive(Args, Debug)]
pub(crate) struct ChecksArgs {
    /// Read consistency requested from the server.
    #[arg(long, value_enum)]
    pub consistency: ConsistencyArg,
    /// How many distinct names the checks draw from.
    #[arg(long, default_value_t = CHECK_NAMES_DEFAULT_COUNT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub names: usize,
    /// How many of those names to reserve before the run, so that some answers are RESERVED.
    #[arg(long, default_value_t = 0)]
    pub pool: usize,
}

/// The scenario: check names drawn uniformly from `names`, the first `reserved` of which were
/// reserved. With `session`, each worker keeps its own session (see [`ConsistencyArg::Session`]).
pub(crate) struct Checks {
    names: Vec<String>,
    reserved: usize,
    consistency: Consistency,
    session: bool,
}

impl Checks {
    /// Whether each worker reads in a session of its own.
    pub fn session(&self) -> bool {
        self.session
    }

    /// The scenario's parameters, for reports.
    pub fn params(&self) -> Value {
        json!({
            "consistency": self.consistency.as_graphql(),
            "session": self.session,
            "names": self.names.len(),
            "reserved": self.reserved,
        })
    }

    /// A check of a name drawn at random.
    pub fn request(&self, rng: &mut StdRng) -> Request {
        Request {
            query: ops::AVAILABILITY_QUERY,
            variables: json!({
                "name": self.names[rng.random_range(0..self.names.len())],
                "c": self.consistency.as_graphql(),
            }),
            bearer: None,
        }
    }
}

/// Name number `index` of the `checks` scenario's pool; the `p` keeps these apart from claim
/// names of the same run.
pub(crate) fn pool_name(run_id: &str, index: usize) -> String {
    format!("{NAME_PREFIX}{run_id}p{index}")
}

/// Runs the setup: the pool's names, and the reservation of its first `--pool` for as long as
/// the run (`run_secs`, warmup included) and a margin, `concurrency` at a time.
pub(crate) async fn setup(
    client: &Client,
    args: &ChecksArgs,
    run_secs: u64,
    concurrency: usize,
    run_id: &str,
) -> anyhow::Result<Checks> {
    let ChecksArgs { consistency, names, pool } = *args;
    if pool > names {
        bail!("--pool {pool} exceeds --names {names}");
    }
    let names: Vec<String> = (0..names).map(|i| pool_name(run_id, i)).collect();
    let ttl_secs = u32::try_from(run_secs + PRE_RESERVE_TTL_MARGIN_SECS).unwrap_or(u32::MAX);
    pre_reserve(client, &names[..pool], ttl_secs, concurrency).await;
    let session = matches!(consistency, ConsistencyArg::Session);
    Ok(Checks { names, reserved: pool, consistency: consistency.into(), session })
}

/// Reserves `names` with at most `concurrency` requests in flight, retrying unavailable nodes,
/// and reports how many succeeded. Failures are reported, not fatal: the checks still run, with
/// fewer RESERVED answers.
async fn pre_reserve(client: &Client, names: &[String], ttl_secs: u32, concurrency: usize) {
    if names.is_empty() {
        return;
    }
    let client = client.clone().with_retries(true);
    let results: Vec<_> = stream::iter(names.iter().enumerate())
        .map(|(i, name)| {
            let client = &client;
            async move { client.reserve_username(i, name, Some(ttl_secs)).await }
        })
        .buffer_unordered(concurrency)
        .collect()
        .await;
    let mut errors = BTreeMap::<String, u64>::new();
    for e in results.iter().filter_map(|r| r.as_ref().err()) {
        *errors.entry(e.code()).or_default() += 1;
    }
    let failed: u64 = errors.values().sum();
    eprintln!(
        "pre-reserved {} of {} names{}",
        names.len() as u64 - failed,
        names.len(),
        if failed == 0 { String::new() } else { format!(" (failures: {})", format_errors(&errors)) }
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::claims::claim_name;
    use std::collections::HashSet;

    #[test]
    fn pool_names_do_not_collide_with_claim_names() {
        let claims: HashSet<_> = (0..50).flat_map(|w| (0..50).map(move |s| claim_name("abcde", w, s))).collect();
        let pool: HashSet<_> = (0..2_500).map(|i| pool_name("abcde", i)).collect();
        assert_eq!(pool.len(), 2_500);
        assert!(claims.is_disjoint(&pool));
    }
}
