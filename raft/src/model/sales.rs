//! Flash sales: products, sales and their status over time, orders, what one buyer holds, and
//! the update a sale's subscribers see.

use serde::{Deserialize, Serialize};

/// The status of a sale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SaleStatus {
    /// Not open yet (before `startsAt`, or waiting for `startSale`).
    Scheduled,
    /// Purchases are accepted.
    Open,
    /// Nothing left.
    SoldOut,
    /// Closed (after `endsAt`, or by `endSale`).
    Ended,
}

/// What a sale looks like after a change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SaleUpdate {
    /// The sale.
    pub sale_id: u64,
    /// Units left.
    pub stock: u64,
    /// Units sold.
    pub sold: u64,
    /// Status at the time of the change (state machine time).
    pub status: SaleStatus,
}

/// Something on sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Product {
    /// Id, from 1.
    pub id: u64,
    /// Name.
    pub name: String,
    /// Description.
    pub description: String,
    /// Price in cents.
    pub price_cents: u64,
    /// Creation time (state machine time).
    pub created_at_ms: i64,
}

/// A sale of a product's limited stock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sale {
    /// Id, from 1.
    pub id: u64,
    /// What is sold.
    pub product_id: u64,
    /// Units offered in all.
    pub initial_stock: u64,
    /// Units sold so far. `initial_stock - sold` are left; `sold <= initial_stock` always.
    pub sold: u64,
    /// Most units one buyer may hold, across all their orders.
    pub per_user_limit: u64,
    /// Opens by itself at this time, if set.
    pub starts_at_ms: Option<i64>,
    /// Ends by itself at this time, if set.
    pub ends_at_ms: Option<i64>,
    /// Opened by `startSale`.
    pub started: bool,
    /// Closed by `endSale`.
    pub ended: bool,
    /// Creation time.
    pub created_at_ms: i64,
}

impl Sale {
    /// Units left.
    pub fn stock(&self) -> u64 {
        // Saturating: only an injected bug (`Inject::unchecked_stock`) can oversell, and the
        // simulation must see the oversold state rather than a panic in apply.
        self.initial_stock.saturating_sub(self.sold)
    }

    /// The status at time `now`: ended wins, then sold out, then open, else scheduled.
    pub fn status_at(&self, now: i64) -> SaleStatus {
        if self.ended || self.ends_at_ms.is_some_and(|e| now >= e) {
            SaleStatus::Ended
        } else if self.sold >= self.initial_stock {
            SaleStatus::SoldOut
        } else if self.started || self.starts_at_ms.is_some_and(|s| now >= s) {
            SaleStatus::Open
        } else {
            SaleStatus::Scheduled
        }
    }

    /// What the sale looks like at `now`, as its subscribers are told.
    pub fn update(&self, now: i64) -> SaleUpdate {
        SaleUpdate { sale_id: self.id, stock: self.stock(), sold: self.sold, status: self.status_at(now) }
    }
}

/// One purchase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    /// Id, from 1.
    pub id: u64,
    /// The sale.
    pub sale_id: u64,
    /// The buyer.
    pub user_id: u64,
    /// Units bought.
    pub quantity: u64,
    /// The buyer's idempotency key.
    pub idempotency_key: String,
    /// When it was applied (state machine time).
    pub created_at_ms: i64,
}

/// What one buyer holds of one sale.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BuyerTotal {
    /// The buyer.
    pub user_id: u64,
    /// Units across all their orders.
    pub quantity: u64,
    /// Time of their first order, the leaderboard's tie-break.
    pub first_purchase_at_ms: i64,
    /// Their first order's id: orders are numbered in log order, so this breaks ties between
    /// first purchases stamped in the same millisecond (one batch shares one time) by which
    /// was committed first, rather than by user id.
    #[serde(default)]
    pub first_order_id: u64,
}
