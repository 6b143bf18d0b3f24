//! `loadgen seed --accounts N`: fills a cluster with N accounts through `importAccounts`, the
//! way an operator brings in existing users, and reports the rate and the servers' CPU per
//! account. The fill for the scale measurements (docs/SCALING.md).
//!
//! The accounts are `{prefix}{run id}{n}` for n in 0..N, each with a real argon2id hash of
//! `--password` (one hash computed here and shared: hashing N passwords would take hours and
//! measure the hash, not the import), so any of them can `login`. Calls are packed by the client
//! library ([`client::import::Batches`]) and `--concurrency` of them are in flight, spread over
//! the nodes. A rerun with the same `--run-id` skips the accounts already there, so an
//! interrupted fill can be finished.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use argon2::{Argon2, PasswordHasher};
use clap::Args;
use client::import::{import_batch, Batches};
use client::{Client, ImportAccount};
use futures::StreamExt as _;
use serde::Serialize;

use super::accounts::sign_in_admin;
use super::NAME_PREFIX;
use crate::node_cpu::{CpuSummary, Probe};
use crate::progress::{Extent, Progress, Reading};
use crate::stats::per_sec;

/// Default password of the seeded accounts.
const SEED_PASSWORD_DEFAULT: &str = "seeded-password";
/// Most accounts one seed run creates, so a typo cannot ask for a fill that never ends.
const SEED_ACCOUNTS_MAX: u64 = 1_000_000_000;

/// The seed scenario's flags.
#[derive(Args, Debug)]
pub(crate) struct SeedArgs {
    /// Accounts to create.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=SEED_ACCOUNTS_MAX))]
    pub accounts: u64,
    /// Password every seeded account signs in with.
    #[arg(long, default_value = SEED_PASSWORD_DEFAULT)]
    pub password: String,
    /// The admin account that imports (registered if it cannot sign in; it must be the first
    /// account of the cluster).
    #[arg(long, default_value = "lgadmin")]
    pub admin_user: String,
    /// The admin's password.
    #[arg(long, default_value = "lgadmin-password")]
    pub admin_password: String,
}

/// What a seed run did.
#[derive(Debug, Serialize)]
pub(crate) struct SeedReport {
    pub scenario: &'static str,
    pub accounts: u64,
    pub imported: u64,
    pub skipped: u64,
    pub calls: u64,
    pub elapsed_s: f64,
    pub accounts_per_sec: f64,
    /// Summed over the local servers, per account sent.
    pub node_cpu: CpuSummary,
    pub first_username: String,
    pub password: String,
}

impl SeedReport {
    /// The report as a table.
    pub fn print(&self) {
        println!("scenario      seed");
        println!(
            "accounts      {} sent in {} calls: {} imported, {} skipped",
            self.accounts, self.calls, self.imported, self.skipped
        );
        println!("elapsed       {:.1} s", self.elapsed_s);
        println!("rate          {:.0} accounts/s", self.accounts_per_sec);
        self.node_cpu.print_line("account");
        println!("sign in as    {} (and the rest of the run) with password {:?}", self.first_username, self.password);
    }
}

/// The seeded accounts of a run: `{prefix}{run id}{n}` for n in 0..count.
fn accounts(run_id: &str, count: u64, password_hash: String) -> impl Iterator<Item = ImportAccount> + '_ {
    (0..count).map(move |n| ImportAccount {
        username: format!("{NAME_PREFIX}{run_id}{n}"),
        password_hash: password_hash.clone(),
        ..ImportAccount::default()
    })
}

/// Runs a fill of `args.accounts` accounts with `concurrency` calls in flight.
pub(crate) async fn run(
    client: &Client,
    nodes: &[String],
    concurrency: usize,
    run_id: &str,
    args: &SeedArgs,
) -> anyhow::Result<SeedReport> {
    let admin = sign_in_admin(client, &args.admin_user, &args.admin_password).await?;
    let client = client.clone().with_bearer(admin);
    let password_hash = Argon2::default()
        .hash_password(args.password.as_bytes())
        .map_err(|e| anyhow::anyhow!("hashing the seed password: {e}"))?
        .to_string();
    let probe = Probe::discover(nodes);
    let done = Arc::new(AtomicU64::new(0));
    let progress = {
        let done = done.clone();
        Progress::start(Extent::Count { label: "seed", total: args.accounts, unit: "accounts" }, move || Reading {
            done: done.load(Ordering::Relaxed),
            ..Reading::default()
        })
    };
    let started = probe.sample();
    let t0 = Instant::now();
    let n = nodes.len().max(1);
    let mut calls = futures::stream::iter(Batches::new(accounts(run_id, args.accounts, password_hash)).enumerate())
        .map(|(i, batch)| {
            let client = &client;
            async move { (batch.len() as u64, import_batch(client, i % n, &batch).await) }
        })
        .buffer_unordered(concurrency.max(1));
    let (mut imported, mut skipped, mut sent, mut count) = (0u64, 0u64, 0u64, 0u64);
    while let Some((len, result)) = calls.next().await {
        let r = result.with_context(|| format!("importAccounts after {sent} accounts"))?;
        imported += r.imported;
        skipped += r.skipped.len() as u64;
        if let Some(s) = r.skipped.iter().find(|s| s.code != "USERNAME_TAKEN") {
            bail!("the server skipped {:?}: {} {}", s.username, s.code, s.reason);
        }
        sent += len;
        count += 1;
        done.store(sent, Ordering::Relaxed);
    }
    let elapsed_s = t0.elapsed().as_secs_f64();
    let node_cpu = probe.summary(&started, &probe.sample(), sent);
    progress.finish();
    Ok(SeedReport {
        scenario: "seed",
        accounts: sent,
        imported,
        skipped,
        calls: count,
        elapsed_s,
        accounts_per_sec: per_sec(sent, elapsed_s),
        node_cpu,
        first_username: format!("{NAME_PREFIX}{run_id}0"),
        password: args.password.clone(),
    })
}
