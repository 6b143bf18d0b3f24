//! `loadgen`: a load generator for the GraphQL backend.
//!
//! Closed loop (the default): N workers each send a request, await the answer and send the next,
//! spread round-robin over the given nodes, for a warmup period (not measured) and then a
//! measured period. Open loop (`--rate R`, for claims, checks, timeline and peer): requests are
//! due on a fixed schedule of R per second, taken by whichever of the N workers is free, and
//! each latency is measured from when its request was due (see [`pacing`]). Latencies go into
//! per-worker HDR histograms merged at the end; errors are counted by their GraphQL
//! `extensions.code` rather than ending the run. A progress line runs on stderr. The process
//! exits with status 1 when no measured request succeeded, or when `purchase-burst` finds the
//! sale's counts disagreeing with the purchases acknowledged to the buyers.
//!
//! The `peer` scenario sends the same operations (a claim, a check, a purchase) to etcd,
//! PostgreSQL or Redis instead, through the same driver and report, for `bench/compare`.
//!
//! It is a crate of its own rather than a binary of `client`, so that the client library carries
//! none of what only load needs (histograms, PostgreSQL, etcd's base64 keys). Like the library,
//! it depends on no server crate of this workspace: it speaks only the GraphQL contract.
//!
//! Modules:
//! - [`cli`]: the command line: one subcommand per scenario, the flags every scenario takes, run ids.
//! - [`driver`]: one run from its command line: setup, the workers over the warmup and the measured
//!   window (closed or open loop), the report and the exit status.
//! - [`node_cpu`]: the CPU the servers spent in the measured window, when they run on this machine.
//! - [`pacing`]: the open-loop schedule of due times, and when a send counts as late.
//! - [`progress`]: the progress line on stderr, redrawn on a terminal and logged elsewhere.
//! - [`stats`]: what the workers measure (latency histograms, outcome counts), merged and summarized.
//! - [`report`]: the report of a request/response run, as a table or one JSON object.
//! - [`scenarios`]: the workloads, one module each, and what a scenario tells the driver.

mod cli;
mod driver;
mod node_cpu;
mod pacing;
mod progress;
mod report;
mod scenarios;
mod stats;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = cli::Cli::parse();
    // Setup errors are printed as one line, without the backtrace `anyhow` would attach when
    // returned from `main`, since they are usage problems rather than bugs.
    match driver::run(cli).await {
        Ok(code) => code,
        Err(e) => {
            if std::io::stderr().is_terminal() {
                // Start on a fresh line, in case a progress line was being drawn.
                eprintln!();
            }
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
