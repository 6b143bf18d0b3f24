//! Deliberate bugs, for the fault simulation only.
//!
//! A checker that never fails proves nothing. The simulation (`simulation --inject BUG`) switches
//! one of these on in every node of a simulated cluster and must then report a violation; its
//! tests assert that it does. The node's command line has no flag for them, so a real node
//! always runs with none.

use std::fmt;
use std::str::FromStr;

/// Which deliberate bugs are on. The default is none.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Inject {
    /// LINEARIZABLE reads are served from local state without a read index (as LOCAL ones).
    pub stale_read: bool,
    /// A purchase skips the stock rule at apply: sold-out sales keep selling.
    pub unchecked_stock: bool,
    /// Session guarantees are dropped: a request's `atLeastIndex` is ignored and a write is
    /// answered without waiting for this node to apply it.
    pub stale_session: bool,
}

impl Inject {
    /// The names `FromStr` accepts.
    pub const NAMES: [&'static str; 3] = ["stale-read", "unchecked-stock", "stale-session"];

    /// True when any bug is on.
    pub fn any(&self) -> bool {
        self.stale_read || self.unchecked_stock || self.stale_session
    }
}

impl FromStr for Inject {
    type Err = String;

    /// Parses a comma-separated list of bug names (`stale-read,unchecked-stock`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut inject = Inject::default();
        for name in s.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match name {
                "stale-read" => inject.stale_read = true,
                "unchecked-stock" => inject.unchecked_stock = true,
                "stale-session" => inject.stale_session = true,
                other => return Err(format!("unknown bug {other:?}; known: {}", Inject::NAMES.join(", "))),
            }
        }
        Ok(inject)
    }
}

impl fmt::Display for Inject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names = Vec::new();
        if self.stale_read {
            names.push("stale-read");
        }
        if self.unchecked_stock {
            names.push("unchecked-stock");
        }
        if self.stale_session {
            names.push("stale-session");
        }
        f.write_str(&names.join(","))
    }
}
