//! The `claims` scenario: each request reserves a fresh username (`reserveUsername`), named
//! after the run, the worker and the request number, so that no two requests of a run ask for
//! the same name and every one is a write the cluster must agree on.

use clap::Args;
use client::ops;
use serde_json::{json, Value};

use super::{Request, NAME_PREFIX};

/// Default reservation lifetime of the `claims` scenario.
const CLAIM_TTL_DEFAULT_SECS: u32 = 300;

/// Flags of the `claims` scenario.
#[derive(Args, Debug)]
pub(crate) struct ClaimsArgs {
    /// Reservation lifetime in seconds.
    #[arg(long, default_value_t = CLAIM_TTL_DEFAULT_SECS)]
    pub ttl: u32,
}

/// The scenario: reserve a never-used name per request.
pub(crate) struct Claims {
    run_id: String,
    ttl_secs: u32,
}

impl Claims {
    pub fn new(args: &ClaimsArgs, run_id: String) -> Self {
        Self { run_id, ttl_secs: args.ttl }
    }

    /// The scenario's parameters, for reports.
    pub fn params(&self) -> Value {
        json!({ "run_id": self.run_id, "ttl_secs": self.ttl_secs })
    }

    /// The reservation worker `worker` sends as its `seq`th request.
    pub fn request(&self, worker: usize, seq: u64) -> Request {
        Request {
            query: ops::RESERVE_MUTATION,
            variables: json!({ "name": claim_name(&self.run_id, worker, seq), "ttl": self.ttl_secs }),
            bearer: None,
        }
    }
}

/// The name the `claims` scenario reserves as worker `worker`'s request `seq`. Worker and
/// sequence are decimal numbers separated by a letter, so distinct pairs give distinct names.
pub(crate) fn claim_name(run_id: &str, worker: usize, seq: u64) -> String {
    format!("{NAME_PREFIX}{run_id}{worker}x{seq}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn claim_names_are_distinct_within_and_across_runs() {
        let mut seen = HashSet::new();
        for run_id in ["abcde", "abcdf"] {
            for worker in 0..120 {
                for seq in 0..300 {
                    assert!(seen.insert(claim_name(run_id, worker, seq)), "duplicate for {run_id} {worker} {seq}");
                }
            }
        }
        // Worker 1 seq 11 and worker 11 seq 1 are the classic collision of unseparated numbers.
        assert_ne!(claim_name("ab", 1, 11), claim_name("ab", 11, 1));
    }
}
