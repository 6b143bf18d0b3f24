//! The workloads, one module each, and what a request/response scenario tells the driver.
//!
//! - [`claims`]: each request reserves a fresh username.
//! - [`checks`]: each request checks a name drawn from a pool, at a chosen read consistency.
//! - [`purchase`]: a flash sale bought out by one buyer per worker, its counts checked after.
//! - [`timeline`]: first-page timeline reads by viewers who follow many authors.
//! - [`peers`]: the claim, check or purchase against etcd, PostgreSQL or Redis (`bench/compare`).
//! - [`subscribers`]: fan-out of live updates to many subscriptions; it has no workers and
//!   paces its own sends.
//! - [`seed`]: fills a cluster with accounts through `importAccounts`; no workers either.
//! - [`accounts`]: signing up and signing in the accounts the scenarios act as.
//!
//! The driver runs the request/response scenarios through [`Scenario`]: for each worker and
//! request number it asks for a [`Request`] and judges the answer into a [`Verdict`]. The
//! `peer` scenario answers with the same [`Verdict`] from its own connections.

pub(crate) mod accounts;
pub(crate) mod checks;
pub(crate) mod claims;
pub(crate) mod peers;
pub(crate) mod purchase;
pub(crate) mod seed;
pub(crate) mod subscribers;
pub(crate) mod timeline;

use std::sync::Arc;
use std::time::Instant;

use clap::ValueEnum;
use client::{ClientError, Consistency};
use rand::rngs::StdRng;
use serde_json::Value;

/// Prefix of every generated name, so load-test names are easy to recognize on the server.
pub(crate) const NAME_PREFIX: &str = "lg";

/// The `--consistency` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub(crate) enum ConsistencyArg {
    /// LOCAL reads, no session: whatever the answering node has applied.
    Local,
    /// LOCAL reads in a session per worker: each request carries the highest index the worker
    /// has seen as `atLeastIndex` (read-your-writes and monotonic reads across nodes).
    Session,
    /// LINEARIZABLE reads: a read-index round with the leader first.
    Linearizable,
}

impl From<ConsistencyArg> for Consistency {
    fn from(arg: ConsistencyArg) -> Self {
        match arg {
            ConsistencyArg::Local | ConsistencyArg::Session => Consistency::Local,
            ConsistencyArg::Linearizable => Consistency::Linearizable,
        }
    }
}

/// One request a scenario wants sent.
pub(crate) struct Request {
    pub query: &'static str,
    pub variables: Value,
    /// Token to authenticate with; scenarios acting as a user (such as purchases) set it.
    pub bearer: Option<Arc<str>>,
}

/// How a worker goes on after an answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Next {
    /// Send the next request.
    Advance,
    /// Send the same request again (for purchases, with the same idempotency key), because the
    /// answer left its outcome unknown.
    Repeat,
    /// The answer means it is too early: before the measured window, wait for it and then send
    /// the next request; within it, just send the next request.
    AwaitWindow,
    /// Stop the worker, because every further request would be refused the same way.
    Stop,
}

/// What one answer means to the worker that got it.
#[derive(Debug)]
pub(crate) struct Verdict {
    /// `None` on success, else the error's code.
    pub error_code: Option<String>,
    /// Units the answer says were bought; zero for scenarios that buy nothing.
    pub units: u64,
    pub next: Next,
}

/// A GraphQL workload: decides what worker `w` sends as its `n`th request.
///
/// Adding one means a module of its own, a variant here, an arm in each method, and a
/// subcommand in [`crate::cli::ScenarioCommand`] whose setup (such as registering users and
/// keeping their tokens in the variant) runs in [`crate::driver`] before the clock starts.
pub(crate) enum Scenario {
    /// Reserve a never-used name per request.
    Claims(claims::Claims),
    /// Check names drawn from a pool, some of them reserved.
    Checks(checks::Checks),
    /// Buy from a flash sale as one buyer per worker; boxed because it is much larger than the
    /// other variants.
    PurchaseBurst(Box<purchase::Burst>),
    /// Read the first timeline page of a random viewer.
    Timeline(Box<timeline::Timeline>),
}

impl Scenario {
    /// Short name for reports.
    pub fn label(&self) -> &'static str {
        match self {
            Self::Claims(_) => "claims",
            Self::Checks(_) => "checks",
            Self::PurchaseBurst(_) => "purchase-burst",
            Self::Timeline(_) => "timeline",
        }
    }

    /// When measuring starts, if the scenario rather than `--warmup` decides it.
    pub fn measure_from(&self) -> Option<Instant> {
        match self {
            Self::PurchaseBurst(burst) => Some(burst.opens_at()),
            Self::Claims(_) | Self::Checks(_) | Self::Timeline(_) => None,
        }
    }

    /// Whether each worker is a session of its own (see [`ConsistencyArg::Session`]).
    pub fn session_per_worker(&self) -> bool {
        matches!(self, Self::Checks(checks) if checks.session())
    }

    /// The scenario's parameters, for reports.
    pub fn params(&self) -> Value {
        match self {
            Self::Claims(claims) => claims.params(),
            Self::Checks(checks) => checks.params(),
            Self::PurchaseBurst(burst) => burst.params(),
            Self::Timeline(timeline) => timeline.params(),
        }
    }

    /// The request worker `worker` sends as its `seq`th.
    pub fn request(&self, worker: usize, seq: u64, rng: &mut StdRng) -> Request {
        match self {
            Self::Claims(claims) => claims.request(worker, seq),
            Self::Checks(checks) => checks.request(rng),
            Self::PurchaseBurst(burst) => burst.request(worker, seq),
            Self::Timeline(timeline) => timeline.request(rng),
        }
    }

    /// What an answer means: its error code, the units it bought and how the worker goes on.
    pub fn judge(&self, result: Result<Value, ClientError>) -> Verdict {
        match self {
            Self::Claims(_) | Self::Checks(_) => {
                Verdict { error_code: result.err().map(|e| e.code()), units: 0, next: Next::Advance }
            }
            Self::PurchaseBurst(_) => purchase::judge(result),
            Self::Timeline(timeline) => timeline.judge(result),
        }
    }
}
