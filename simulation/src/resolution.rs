//! After healing (run by ctl once every client is done): settle the purchases whose outcome
//! stayed unknown, wait for the nodes to converge, and read the final state from every node for
//! the end-state invariants.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use crate::config::{SimConfig, CONVERGE_TIMEOUT, NAMES, REQUEST_TIMEOUT};
use crate::error::SimError;
use crate::gql::{lit, node_addr, request, sleep_ms, until_data, Answer};
use crate::history::{sim_ms, Input, Key};
use crate::queries::{held_or_free, purchase_output, purchase_query, sale_query, stock_of};
use crate::shared::{EvidenceRef, Setup};

/// Attempts per unknown purchase after healing (cycling through the nodes) before it stays
/// unknown in the history.
const SETTLE_ATTEMPTS_MAX: u64 = 40;
/// The pause between those attempts.
const SETTLE_RETRY_MS: u64 = 250;
/// How often the nodes are asked for their leader and applied index while converging.
const CONVERGE_POLL_MS: u64 = 300;
/// How long each final read may take.
const FINAL_READ_TIMEOUT: Duration = Duration::from_secs(20);
/// Salt for the final reads' stream (which node serves each name's last LINEARIZABLE read).
const FINAL_READS_RNG_SALT: u64 = 0xf1a1;
/// Orders per page when reading a sale's orders.
const ORDERS_PAGE_SIZE: u64 = 100;
/// What a node's stock and sold read as when it could not be read: impossible values, so the
/// end-state check reports the node.
const UNREADABLE: (u64, u64) = (u64::MAX, u64::MAX);

/// One node's view of a sale after healing: (node, stock, sold, orders as (id, quantity)).
pub(crate) type SaleView = (u64, u64, u64, Vec<(String, u64)>);

/// What ctl found after healing, for the end-state invariants.
#[derive(Debug, Default)]
pub(crate) struct FinalState {
    /// Why there is no final state to compare: setup failed, or the nodes did not converge.
    pub(crate) converged: Option<SimError>,
    /// canonical name -> (node, status) per node.
    pub(crate) names: BTreeMap<String, Vec<(u64, String)>>,
    /// sale -> what each node shows of it.
    pub(crate) sales: BTreeMap<u64, Vec<SaleView>>,
}

/// The whole post-heal sequence: settle, converge, and (when converged) read the final state.
pub(crate) async fn resolve(cfg: &SimConfig, setup: &Setup, evidence: &EvidenceRef) -> FinalState {
    let nodes = cfg.nodes;
    resolve_unknown_purchases(evidence, setup, nodes).await;
    let converged = converge(nodes).await;
    let mut fin = FinalState { converged: converged.err(), ..Default::default() };
    if fin.converged.is_none() {
        final_reads(cfg, evidence, setup, &mut fin).await;
    }
    fin
}

/// Retries each purchase whose outcome was unknown with the same idempotency key until it
/// answers: the cluster returns the first order if there was one, or decides it now.
async fn resolve_unknown_purchases(evidence: &EvidenceRef, setup: &Setup, nodes: u64) {
    let pending = std::mem::take(&mut evidence.borrow_mut().unknown_purchases);
    for p in pending {
        let q = purchase_query(p.sale, p.quantity, &p.key);
        let token = setup.buyers[p.client].clone();
        for attempt in 0..SETTLE_ATTEMPTS_MAX {
            let node = attempt % nodes + 1;
            let answer = request(&node_addr(node), &q, Some(&token), REQUEST_TIMEOUT).await;
            if let Some((output, order)) = purchase_output(&answer) {
                let mut ev = evidence.borrow_mut();
                ev.history.settle(p.op, output, &format!("; settled via n{node} after healing"));
                if let Some(order) = order {
                    ev.acked_orders.insert((p.sale, order), p.op);
                }
                break;
            }
            sleep_ms(SETTLE_RETRY_MS).await;
        }
    }
}

/// Waits until every node answers with the same leader and the same last applied index, twice
/// in a row.
async fn converge(nodes: u64) -> Result<(), SimError> {
    let deadline = tokio::time::Instant::now() + CONVERGE_TIMEOUT;
    let mut previous = None;
    let mut last = String::new();
    while tokio::time::Instant::now() < deadline {
        let mut views = Vec::new();
        let mut errors = Vec::new();
        for n in 1..=nodes {
            match request(&node_addr(n), "{ cluster { leaderId lastApplied } }", None, REQUEST_TIMEOUT).await {
                Answer::Data(d) => {
                    views.push((d["cluster"]["leaderId"].as_u64(), d["cluster"]["lastApplied"].as_u64()))
                }
                other => {
                    views.push((None, None));
                    errors.push(format!("n{n}: {other:?}"));
                }
            }
        }
        let first = views[0];
        if first.0.is_some() && views.iter().all(|v| *v == first) {
            if previous == Some(first) {
                return Ok(());
            }
            previous = Some(first);
        } else {
            // (leader, last applied) per node, the latest round only.
            last = format!("{views:?} {}", errors.join("; "));
            previous = None;
        }
        sleep_ms(CONVERGE_POLL_MS).await;
    }
    Err(SimError::NoConvergence { within: CONVERGE_TIMEOUT, last })
}

/// One more LINEARIZABLE read per name into the history, then each name's status and each
/// sale's stock, sold and orders as every node shows them.
async fn final_reads(cfg: &SimConfig, evidence: &EvidenceRef, setup: &Setup, fin: &mut FinalState) {
    let nodes = cfg.nodes;
    let limit = FINAL_READ_TIMEOUT;
    let mut rng = StdRng::seed_from_u64(cfg.seed ^ FINAL_READS_RNG_SALT);
    for base in NAMES {
        // One more linearizable read per name, in the history: it pins down unknown claims.
        let q = format!("{{ usernameAvailability(name: {}, consistency: LINEARIZABLE) {{ status }} }}", lit(base));
        let (call, call_ms) = (evidence.borrow_mut().history.tick(), sim_ms());
        let node = rng.random_range(1..=nodes);
        if let Ok(d) = until_data(node, &q, None, limit).await {
            if let Some(out) = d["usernameAvailability"]["status"].as_str().and_then(held_or_free) {
                let key = Key::Name(raft::model::names::canonical(base));
                let note = format!("{base} via n{node}, final read");
                evidence.borrow_mut().history.record(usize::MAX, key, Input::Check, out, call, call_ms, note);
            }
        }
        let q = format!("{{ usernameAvailability(name: {}, consistency: LOCAL) {{ status }} }}", lit(base));
        let mut per_node = Vec::new();
        for n in 1..=nodes {
            let status = match until_data(n, &q, None, limit).await {
                Ok(d) => d["usernameAvailability"]["status"].as_str().unwrap_or("?").to_string(),
                Err(e) => format!("error: {e}"),
            };
            per_node.push((n, status));
        }
        fin.names.insert(raft::model::names::canonical(base), per_node);
    }
    for (sale, _) in &setup.sales {
        let mut per_node = Vec::new();
        for n in 1..=nodes {
            let (stock, sold) = match until_data(n, &sale_query(*sale, "LOCAL"), None, limit).await {
                Ok(d) => stock_of(&Answer::Data(d)).unwrap_or(UNREADABLE),
                Err(_) => UNREADABLE,
            };
            let orders = all_orders(n, *sale, &setup.admin).await.unwrap_or_default();
            per_node.push((n, stock, sold, orders));
        }
        fin.sales.insert(*sale, per_node);
    }
}

/// Every order of `sale` as node `n` sees it (ADMIN sees everyone's), all pages.
async fn all_orders(n: u64, sale: u64, admin: &str) -> Result<Vec<(String, u64)>, SimError> {
    let mut out = Vec::new();
    let mut after = String::new();
    loop {
        let q = format!(
            "{{ orders(saleId: \"{sale}\", first: {ORDERS_PAGE_SIZE}{after}) {{ edges {{ node {{ id quantity }} }} pageInfo {{ hasNextPage endCursor }} }} }}"
        );
        let d = until_data(n, &q, Some(admin), FINAL_READ_TIMEOUT).await?;
        let conn = &d["orders"];
        for e in conn["edges"].as_array().cloned().unwrap_or_default() {
            out.push((
                e["node"]["id"].as_str().unwrap_or("?").to_string(),
                e["node"]["quantity"].as_u64().unwrap_or(0),
            ));
        }
        if conn["pageInfo"]["hasNextPage"].as_bool() != Some(true) {
            return Ok(out);
        }
        after = format!(", after: {}", lit(conn["pageInfo"]["endCursor"].as_str().unwrap_or("")));
    }
}
