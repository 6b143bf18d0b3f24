//! The recorder: every client operation with its invocation and completion on one logical clock.
//!
//! turmoil runs every host on one thread, so a shared counter orders all invocations and
//! completions exactly as they happened in simulated time; ties in simulated milliseconds are
//! broken by execution order, which is the real order.

use std::fmt;

/// What an operation touches; the checker splits the history by key (P-compositionality).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// A canonical username: a register with claim as compare-and-set.
    Name(String),
    /// A sale's stock: a counter with conditional decrement.
    Sale(u64),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Name(n) => write!(f, "name {n:?}"),
            Key::Sale(s) => write!(f, "sale {s}"),
        }
    }
}

/// What a client asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// reserveUsername: take the name if it is free.
    Claim,
    /// usernameAvailability at LINEARIZABLE.
    Check,
    /// purchase of `quantity` units.
    Purchase {
        /// Units asked for.
        quantity: u64,
    },
    /// sale(consistency: LINEARIZABLE) { stock sold }.
    ReadSale,
}

/// What it got. `Unknown`: no definite answer (timeout, lost connection, outcomeUnknown), so
/// the operation may or may not have taken effect, at any time after its invocation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// The claim took the name.
    Claimed,
    /// The claim failed: someone holds the name (USERNAME_TAKEN or USERNAME_RESERVED).
    Taken,
    /// The check answered AVAILABLE.
    Free,
    /// The check answered TAKEN or RESERVED.
    Held,
    /// The purchase created an order.
    Bought,
    /// The purchase answered SOLD_OUT.
    SoldOut,
    /// The sale read.
    Stock {
        /// Units left.
        stock: u64,
        /// Units sold.
        sold: u64,
    },
    /// No definite answer.
    Unknown,
}

/// One operation: invocation and completion on the logical clock (`ret == u64::MAX` while the
/// outcome is unknown), plus simulated milliseconds and a note for reports.
#[derive(Debug, Clone)]
pub struct Op {
    /// Position in the history.
    pub id: usize,
    /// The client that issued it (`ctl` is `usize::MAX`).
    pub client: usize,
    /// What it touches.
    pub key: Key,
    /// What was asked.
    pub input: Input,
    /// What came back.
    pub output: Output,
    /// Logical invocation time.
    pub call: u64,
    /// Logical completion time; `u64::MAX` when the outcome is unknown.
    pub ret: u64,
    /// Simulated milliseconds at invocation.
    pub call_ms: u64,
    /// Simulated milliseconds at completion (or when the client gave up).
    pub ret_ms: u64,
    /// Which node(s) answered, the name variant used, the order id: for humans.
    pub note: String,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let who = if self.client == usize::MAX { "ctl".to_string() } else { format!("c{}", self.client) };
        let ret = if self.ret == u64::MAX { "      ?".to_string() } else { format!("{:>7}", self.ret_ms) };
        write!(
            f,
            "  [{:>7} ms .. {ret} ms] {who:<4} {:?} -> {:?}  ({})",
            self.call_ms, self.input, self.output, self.note
        )
    }
}

/// The shared history of one simulation.
#[derive(Debug, Default)]
pub struct History {
    clock: u64,
    ops: Vec<Op>,
}

/// Simulated milliseconds since the simulation started (0 outside one).
pub fn sim_ms() -> u64 {
    turmoil::sim_elapsed().map_or(0, |d| d.as_millis() as u64)
}

impl History {
    /// Takes a logical timestamp (for an invocation or a completion).
    pub fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Records a finished (or given-up) operation and returns its id.
    #[allow(clippy::too_many_arguments)]
    pub fn record(
        &mut self,
        client: usize,
        key: Key,
        input: Input,
        output: Output,
        call: u64,
        call_ms: u64,
        note: String,
    ) -> usize {
        let ret = if output == Output::Unknown { u64::MAX } else { self.tick() };
        let id = self.ops.len();
        self.ops.push(Op { id, client, key, input, output, call, ret, call_ms, ret_ms: sim_ms(), note });
        id
    }

    /// Settles an unknown operation once a retry with the same idempotency key answered: the
    /// operation spans from its first invocation to now.
    pub fn settle(&mut self, id: usize, output: Output, note: &str) {
        let ret = self.tick();
        if let Some(op) = self.ops.get_mut(id) {
            op.output = output;
            op.ret = ret;
            op.ret_ms = sim_ms();
            op.note.push_str(note);
        }
    }

    /// All operations, in completion order.
    pub fn ops(&self) -> &[Op] {
        &self.ops
    }
}
