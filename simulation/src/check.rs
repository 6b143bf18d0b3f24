//! The linearizability checker, in the style of Wing & Gong with Lowe's memoization (as
//! Porcupine does it), applied per key (P-compositionality: a history is linearizable iff each
//! key's sub-history is).
//!
//! The search builds a linearization one operation at a time. An operation may come next when no
//! other pending operation completed before it was invoked; the model says whether its output is
//! possible in the current state and what the state becomes. (linearized set, state) pairs
//! already explored are cached, which is what keeps the search polynomial in practice.
//! Operations whose outcome is unknown complete "at infinity": they may be linearized anywhere
//! after their invocation, with whatever effect the model allows, or never (which is the same as
//! last, since nothing observes the state after the last operation).

use std::collections::HashSet;
use std::fmt::Debug;
use std::hash::Hash;

use crate::history::{Input, Op, Output};

/// A sequential specification.
pub trait Model {
    /// The state between operations.
    type State: Clone + Eq + Hash + Debug;
    /// The state before any operation.
    fn init(&self) -> Self::State;
    /// The state after `op`, or `None` if `op`'s output is impossible in `state`.
    fn step(&self, state: &Self::State, op: &Op) -> Option<Self::State>;
}

/// A username: free or held. A claim is a compare-and-set from free to held; a check reads.
pub struct NameModel;

impl Model for NameModel {
    type State = bool;

    fn init(&self) -> bool {
        false
    }

    fn step(&self, held: &bool, op: &Op) -> Option<bool> {
        match (&op.input, &op.output) {
            (Input::Claim, Output::Claimed) => (!held).then_some(true),
            (Input::Claim, Output::Taken) => held.then_some(true),
            // Took it, or found it taken: held either way.
            (Input::Claim, Output::Unknown) => Some(true),
            (Input::Check, Output::Free) => (!held).then_some(false),
            (Input::Check, Output::Held) => held.then_some(true),
            _ => None,
        }
    }
}

/// A sale's stock: a purchase of q succeeds iff at least q are left (nothing sold partially);
/// a read sees the stock and `initial - stock` sold.
pub struct SaleModel {
    /// The sale's initial stock.
    pub initial: u64,
}

impl Model for SaleModel {
    type State = u64;

    fn init(&self) -> u64 {
        self.initial
    }

    fn step(&self, stock: &u64, op: &Op) -> Option<u64> {
        match (&op.input, &op.output) {
            (Input::Purchase { quantity }, Output::Bought) => (*stock >= *quantity).then(|| stock - quantity),
            (Input::Purchase { quantity }, Output::SoldOut) => (*stock < *quantity).then_some(*stock),
            (Input::Purchase { quantity }, Output::Unknown) => {
                Some(if *stock >= *quantity { stock - quantity } else { *stock })
            }
            (Input::ReadSale, Output::Stock { stock: s, sold }) => {
                (*s == *stock && *sold == self.initial - stock).then_some(*stock)
            }
            _ => None,
        }
    }
}

/// What the checker concluded about one key's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// A linearization exists.
    Linearizable,
    /// None exists.
    Violation,
    /// The search gave up after this many states (never seen in practice; reported, not hidden).
    Inconclusive(usize),
}

/// States explored before the checker gives up on one key.
pub const STATES_MAX: usize = 2_000_000;

/// Checks one key's operations against `model`.
pub fn check<M: Model>(model: &M, ops: &[Op]) -> Verdict {
    let mut ops: Vec<&Op> = ops.iter().collect();
    ops.sort_by_key(|o| o.call);
    let n = ops.len();
    let words = n.div_ceil(64).max(1);
    let mut required = vec![0u64; words];
    for (i, op) in ops.iter().enumerate() {
        if op.ret != u64::MAX {
            required[i / 64] |= 1 << (i % 64);
        }
    }
    let mut search = Search { model, ops: &ops, required, seen: HashSet::new(), budget_hit: false };
    let done = vec![0u64; words];
    if search.dfs(&model.init(), done) {
        Verdict::Linearizable
    } else if search.budget_hit {
        Verdict::Inconclusive(search.seen.len())
    } else {
        Verdict::Violation
    }
}

struct Search<'a, M: Model> {
    model: &'a M,
    ops: &'a [&'a Op],
    required: Vec<u64>,
    seen: HashSet<(Vec<u64>, M::State)>,
    budget_hit: bool,
}

impl<M: Model> Search<'_, M> {
    fn dfs(&mut self, state: &M::State, done: Vec<u64>) -> bool {
        if self.required.iter().zip(&done).all(|(r, d)| r & !d == 0) {
            return true;
        }
        let is_done = |i: usize| done[i / 64] & (1 << (i % 64)) != 0;
        // The earliest completion among pending operations bounds which may go next.
        let min_ret = (0..self.ops.len()).filter(|&i| !is_done(i)).map(|i| self.ops[i].ret).min().unwrap_or(u64::MAX);
        for i in 0..self.ops.len() {
            if is_done(i) {
                continue;
            }
            if self.ops[i].call > min_ret {
                // Sorted by invocation: every later one was invoked after that completion too.
                break;
            }
            let Some(next) = self.model.step(state, self.ops[i]) else { continue };
            let mut d = done.clone();
            d[i / 64] |= 1 << (i % 64);
            if self.seen.len() >= STATES_MAX {
                self.budget_hit = true;
                return false;
            }
            if self.seen.insert((d.clone(), next.clone())) && self.dfs(&next, d) {
                return true;
            }
        }
        false
    }
}

/// Where a violating history first goes wrong: the earliest-completing operation such that the
/// history of everything completed up to it (plus the unknown operations invoked by then) has no
/// linearization, and the operations on the key that completed before it was invoked. A
/// 1-minimal history can be degenerate (a read of stock 2 from 12 is impossible on its own, so
/// shrinking drops the purchases that made it stale); this is the context a reader needs.
pub fn first_failure<M: Model>(model: &M, ops: &[Op]) -> Option<(Op, Vec<Op>)> {
    let mut done: Vec<&Op> = ops.iter().filter(|o| o.ret != u64::MAX).collect();
    done.sort_by_key(|o| o.ret);
    for culprit in &done {
        let prefix: Vec<Op> = ops
            .iter()
            .filter(|o| o.ret <= culprit.ret || (o.ret == u64::MAX && o.call < culprit.ret))
            .cloned()
            .collect();
        if check(model, &prefix) == Verdict::Violation {
            let before = ops.iter().filter(|o| o.ret < culprit.call).cloned().collect();
            return Some(((*culprit).clone(), before));
        }
    }
    None
}

/// Shrinks a violating history to a 1-minimal one: removing any single remaining operation
/// would make it linearizable. Passes repeat until one removes nothing, since removing a later
/// operation can make an earlier one removable.
pub fn shrink<M: Model>(model: &M, ops: &[Op]) -> Vec<Op> {
    let mut kept: Vec<Op> = ops.to_vec();
    loop {
        let before = kept.len();
        let mut i = kept.len();
        while i > 0 {
            i -= 1;
            let mut without = kept.clone();
            without.remove(i);
            if check(model, &without) == Verdict::Violation {
                kept = without;
            }
        }
        if kept.len() == before {
            return kept;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::Key;

    fn op(id: usize, input: Input, output: Output, call: u64, ret: u64) -> Op {
        Op {
            id,
            client: id,
            key: Key::Name("x".into()),
            input,
            output,
            call,
            ret,
            call_ms: call,
            ret_ms: ret,
            note: String::new(),
        }
    }

    #[test]
    fn two_concurrent_claims_may_not_both_win() {
        // Why: the whole point of a username is one owner; overlapping claims that both
        // succeed have no linearization.
        let h = [op(0, Input::Claim, Output::Claimed, 1, 4), op(1, Input::Claim, Output::Claimed, 2, 3)];
        assert_eq!(check(&NameModel, &h), Verdict::Violation);
        let h = [op(0, Input::Claim, Output::Claimed, 1, 4), op(1, Input::Claim, Output::Taken, 2, 3)];
        assert_eq!(check(&NameModel, &h), Verdict::Linearizable);
    }

    #[test]
    fn a_read_after_a_completed_claim_must_see_it() {
        // Why: this is exactly the stale read a LOCAL read may do and a LINEARIZABLE one must not.
        let h = [op(0, Input::Claim, Output::Claimed, 1, 2), op(1, Input::Check, Output::Free, 3, 4)];
        assert_eq!(check(&NameModel, &h), Verdict::Violation);
        // Overlapping, the read may come first.
        let h = [op(0, Input::Claim, Output::Claimed, 1, 3), op(1, Input::Check, Output::Free, 2, 4)];
        assert_eq!(check(&NameModel, &h), Verdict::Linearizable);
    }

    #[test]
    fn an_unknown_claim_may_take_effect_late_or_never() {
        // Why: a timed-out claim is not a failed one; both "it never happened" and "it happened
        // after later reads" must be accepted, and "a later read saw it" too.
        let u = op(0, Input::Claim, Output::Unknown, 1, u64::MAX);
        let free = op(1, Input::Check, Output::Free, 2, 3);
        let held = op(2, Input::Check, Output::Held, 4, 5);
        assert_eq!(check(&NameModel, &[u.clone(), free.clone(), held.clone()]), Verdict::Linearizable);
        assert_eq!(check(&NameModel, &[u.clone(), free.clone()]), Verdict::Linearizable);
        // But once seen held, never free again.
        let free_again = op(3, Input::Check, Output::Free, 6, 7);
        assert_eq!(check(&NameModel, &[u, free, held, free_again]), Verdict::Violation);
    }

    #[test]
    fn stock_never_oversells_and_reads_add_up() {
        // Why: stock is a counter with conditional decrement; three buys of 1 from 2 units,
        // all acknowledged, oversell.
        let m = SaleModel { initial: 2 };
        let buy =
            |id, call, ret, out| Op { key: Key::Sale(1), ..op(id, Input::Purchase { quantity: 1 }, out, call, ret) };
        let h = [buy(0, 1, 2, Output::Bought), buy(1, 3, 4, Output::Bought), buy(2, 5, 6, Output::Bought)];
        assert_eq!(check(&m, &h), Verdict::Violation);
        let h = [buy(0, 1, 2, Output::Bought), buy(1, 3, 4, Output::Bought), buy(2, 5, 6, Output::SoldOut)];
        assert_eq!(check(&m, &h), Verdict::Linearizable);
        // A sold-out answer while units are certainly left is a violation too.
        let h = [buy(0, 1, 2, Output::SoldOut)];
        assert_eq!(check(&m, &h), Verdict::Violation);
        let read = |id, call, ret, stock, sold| Op {
            key: Key::Sale(1),
            ..op(id, Input::ReadSale, Output::Stock { stock, sold }, call, ret)
        };
        let h = [buy(0, 1, 2, Output::Bought), read(1, 3, 4, 1, 1)];
        assert_eq!(check(&m, &h), Verdict::Linearizable);
        let h = [buy(0, 1, 2, Output::Bought), read(1, 3, 4, 2, 0)];
        assert_eq!(check(&m, &h), Verdict::Violation);
    }

    #[test]
    fn shrinking_keeps_only_what_the_violation_needs() {
        // Why: the report should show the few operations that matter, not the whole run.
        let mut h = vec![op(0, Input::Claim, Output::Claimed, 1, 2)];
        for i in 1..20 {
            h.push(op(i, Input::Check, Output::Held, 2 * i as u64 + 1, 2 * i as u64 + 2));
        }
        h.push(op(20, Input::Check, Output::Free, 50, 51));
        let min = shrink(&NameModel, &h);
        assert_eq!(min.len(), 2, "{min:?}");
        assert_eq!(check(&NameModel, &min), Verdict::Violation);
        // An operation that only becomes removable once a later one is gone still goes: a read
        // that is impossible on its own needs none of the operations before it.
        let m = SaleModel { initial: 12 };
        let buy = |id, call, ret| Op {
            key: Key::Sale(1),
            ..op(id, Input::Purchase { quantity: 1 }, Output::Bought, call, ret)
        };
        let read = Op { key: Key::Sale(1), ..op(9, Input::ReadSale, Output::Stock { stock: 2, sold: 10 }, 20, 21) };
        let h = vec![buy(0, 1, 2), buy(1, 3, 4), buy(2, 5, 6), read];
        let min = shrink(&m, &h);
        assert_eq!(min.len(), 1, "{min:?}");
        // The first failure names that read, with the three purchases acknowledged before it.
        let (culprit, before) = first_failure(&m, &h).expect("a violation");
        assert_eq!((culprit.id, before.len()), (9, 3), "{culprit:?} {before:?}");
    }
}
