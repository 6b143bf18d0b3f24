//! The simulation, run as tests: a bounded set of seeds must pass, and each deliberate bug must
//! be caught within a bounded number of seeds (a checker that never fails proves nothing).
//!
//! A failing seed prints its replay command and report. Long runs: docs/SIMULATION.md.

use raft::Inject;
use simulation::{run, SimConfig};

/// Seeds every CI run checks, besides the regression seeds below: enough to cover both cluster
/// sizes and every fault kind (see `faults::tests`), few enough for a debug build in CI.
const CI_SEEDS: std::ops::RangeInclusive<u64> = 1..=12;

/// Seeds that once failed, kept so what they found stays fixed. Each names what it found.
const REGRESSION_SEEDS: [(u64, &str); 2] = [
    (
        29,
        "a membership change whose answer was lost (the leader crashed after committing it) was \
         retried on the removed node, which still believed it led; the wipe was skipped and the \
         removed node never converged",
    ),
    (
        5256,
        "a wiped node rejoining with --join was crashed mid-join; after its restart it held a vote, \
         so it never asked again, and the entry adding it was lost with a leader change: it stayed \
         at applied index 0 (5 nodes; failed 3 of 3 replays before cluster::ensure_joined)",
    ),
];

/// Seeds each injected bug is given to show up in. Measured (release, `--keep-going`):
/// unchecked-stock 30 of seeds 1..=30; stale-session 25 of 30; stale-read 15 of seeds 1..=60 (a
/// stale read needs a LINEARIZABLE read to land on a lagging node, and since writes are answered
/// only once the answering node has applied them, nodes lag less often right where clients
/// read). Runs are not bit-exact (docs/SIMULATION.md), so the bound is set where missing
/// stale-read by chance is about one in 100,000 (0.75^40); the search stops at the first seed
/// that catches it, usually within the first few.
const INJECT_SEEDS_MAX: u64 = 40;

fn run_seed(cfg: SimConfig) -> simulation::Outcome {
    let cmd = cfg.replay_command();
    match run(cfg) {
        Ok(o) => o,
        Err(e) => panic!("the simulation could not run ({e:#}); replay with: {cmd}"),
    }
}

fn assert_passes(seeds: impl IntoIterator<Item = u64>) {
    let mut failed = Vec::new();
    for seed in seeds {
        let outcome = run_seed(SimConfig::for_seed(seed));
        if !outcome.passed() {
            eprintln!("{}", outcome.report());
            failed.push(outcome.config.replay_command());
        }
    }
    assert!(failed.is_empty(), "seeds failed; replay each with:\n  {}", failed.join("\n  "));
}

#[test]
fn a_bounded_set_of_seeds_passes_every_check() {
    // Why: under partitions, delays, loss, crashes, restarts and a wipe with a membership
    // change, every key's history must linearize and the healed nodes must agree exactly.
    assert_passes(CI_SEEDS);
}

#[test]
fn seeds_that_once_failed_still_pass() {
    // Why: each of these found a bug once (see REGRESSION_SEEDS); a replay is not always
    // bit-exact (docs/SIMULATION.md), so they run beside the range rather than instead of it.
    for (seed, found) in REGRESSION_SEEDS {
        eprintln!("regression seed {seed}: {found}");
    }
    assert_passes(REGRESSION_SEEDS.map(|(seed, _)| seed));
}

/// The first seed whose run reports a violation with the bug switched on, and what it found.
fn caught_within(inject: &str) -> Option<(u64, Vec<String>)> {
    let inject: Inject = inject.parse().expect("a known bug");
    (1..=INJECT_SEEDS_MAX).find_map(|seed| {
        let mut cfg = SimConfig::for_seed(seed);
        cfg.inject = inject;
        let outcome = run_seed(cfg);
        (!outcome.passed()).then(|| (seed, outcome.violations.iter().map(|v| v.what.clone()).collect()))
    })
}

#[test]
fn a_stale_linearizable_read_is_caught() {
    // Why: LINEARIZABLE served from local state without a read index is the bug a Raft read
    // path most easily has; the history checker must see it, not only the end-state checks.
    let (seed, found) = caught_within("stale-read").expect("stale-read went unnoticed for INJECT_SEEDS_MAX seeds");
    // The end state of a run with stale reads is fine; only the history shows them.
    assert!(
        found.iter().any(|w| w.contains("not linearizable")),
        "seed {seed} failed, but not on linearizability: {found:?}"
    );
}

#[test]
fn a_purchase_that_skips_the_stock_rule_is_caught() {
    // Why: overselling is the one thing a flash sale must never do; with the rule skipped at
    // apply, the checker must report it.
    let (seed, found) =
        caught_within("unchecked-stock").expect("unchecked-stock went unnoticed for INJECT_SEEDS_MAX seeds");
    assert!(
        found.iter().any(|w| w.contains("not linearizable") || w.contains("stock + sold")),
        "seed {seed} failed, but not on the stock rule: {found:?}"
    );
}

#[test]
fn a_session_read_behind_its_own_writes_is_caught() {
    // Why: a node that answers a forwarded write before applying it, or serves a request below
    // its atLeastIndex, breaks read-your-writes; LOCAL reads are not checked for
    // linearizability, so only the session checks can see it.
    let (seed, found) =
        caught_within("stale-session").expect("stale-session went unnoticed for INJECT_SEEDS_MAX seeds");
    assert!(found.iter().any(|w| w.contains("session")), "seed {seed} failed, but not on a session check: {found:?}");
}
