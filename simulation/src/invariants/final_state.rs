//! The end state, on every node, after healing: every name reads the same everywhere and every
//! acknowledged claim is held; for each sale, stock + sold = the initial stock, the orders add
//! up to sold, no order appears twice, every acknowledged order is present, and all nodes agree.

use std::collections::{BTreeMap, BTreeSet};

use crate::history::{Key, Output};
use crate::outcome::Violation;
use crate::shared::Evidence;

/// Checks the final state ctl read against the history and the acknowledged orders; `initial`
/// is each sale's initial stock.
pub(crate) fn check(ev: &Evidence, initial: &BTreeMap<u64, u64>) -> Vec<Violation> {
    let mut out = Vec::new();
    let Some(fin) = &ev.final_state else {
        return vec![Violation { what: "no final state".into(), detail: "ctl never finished".into() }];
    };
    if let Some(e) = &fin.converged {
        out.push(Violation { what: "no convergence after healing".into(), detail: e.to_string() });
        return out;
    }
    let claimed: BTreeSet<String> = ev
        .history
        .ops()
        .iter()
        .filter(|o| o.output == Output::Claimed)
        .filter_map(|o| match &o.key {
            Key::Name(n) => Some(n.clone()),
            _ => None,
        })
        .collect();
    for (name, per_node) in &fin.names {
        let first = &per_node[0].1;
        if per_node.iter().any(|(_, st)| st != first) {
            out.push(Violation { what: format!("nodes disagree on name {name:?}"), detail: format!("{per_node:?}") });
        }
        if claimed.contains(name) && per_node.iter().any(|(_, st)| st != "RESERVED" && st != "TAKEN") {
            out.push(Violation {
                what: format!("an acknowledged claim of {name:?} is missing"),
                detail: format!("{per_node:?}"),
            });
        }
    }
    for (sale, per_node) in &fin.sales {
        let init = initial.get(sale).copied().unwrap_or(0);
        let acked: BTreeSet<&String> = ev.acked_orders.keys().filter(|(sl, _)| sl == sale).map(|(_, id)| id).collect();
        for (n, stock, sold, orders) in per_node {
            if stock.saturating_add(*sold) != init || sold > &init {
                out.push(Violation {
                    what: format!("sale {sale} on n{n}: stock + sold != initial stock"),
                    detail: format!("stock {stock} + sold {sold} != {init}"),
                });
            }
            let total: u64 = orders.iter().map(|(_, q)| q).sum();
            if total != *sold {
                out.push(Violation {
                    what: format!("sale {sale} on n{n}: orders do not add up to sold"),
                    detail: format!("orders total {total}, sold {sold}"),
                });
            }
            let ids: Vec<&String> = orders.iter().map(|(id, _)| id).collect();
            let unique: BTreeSet<&String> = ids.iter().copied().collect();
            if unique.len() != ids.len() {
                out.push(Violation {
                    what: format!("sale {sale} on n{n}: an order appears twice"),
                    detail: format!("{ids:?}"),
                });
            }
            let missing: Vec<&&String> = acked.iter().filter(|id| !unique.contains(**id)).collect();
            if !missing.is_empty() {
                out.push(Violation {
                    what: format!("sale {sale} on n{n}: acknowledged orders are missing"),
                    detail: format!("missing {missing:?}"),
                });
            }
        }
        let first = &per_node[0];
        if per_node.iter().any(|p| p.1 != first.1 || p.2 != first.2 || p.3 != first.3) {
            out.push(Violation { what: format!("nodes disagree on sale {sale}"), detail: format!("{per_node:?}") });
        }
    }
    out
}
