//! Flash sales: products, sales that open and close, purchases that never oversell, and the
//! leaderboard, as apply functions over redb tables.
//!
//! A purchase is one command whose rules (is the sale open at the command's stamped time, is
//! stock left, is the buyer within the limit, was this idempotency key used) are decided here on
//! the committed order, so stock is exact on every node and survives any crash.

use redb::ReadableTable;

use super::tables::{self, get_json, id_key, key, put_json, Tables};
use super::{ReadView, SmError};
use crate::command::Response;
use crate::events::{sale_topic, EventPayload};
use crate::model::sales::{BuyerTotal, Order, Product, Sale, SaleStatus};
use crate::model::{DomainError, ErrorCode, User};

fn reject(code: ErrorCode, message: impl Into<String>) -> Result<Response, SmError> {
    Ok(Response::Rejected(DomainError::new(code, message)))
}

fn leaderboard_key(sale_id: u64, b: &BuyerTotal) -> Vec<u8> {
    key(&[
        &sale_id.to_be_bytes(),
        &(u64::MAX - b.quantity).to_be_bytes(),
        &b.first_purchase_at_ms.to_be_bytes(),
        &b.first_order_id.to_be_bytes(),
        &b.user_id.to_be_bytes(),
    ])
}

fn emit_sale(t: &mut Tables, now: i64, sale: &Sale) {
    t.emit(sale_topic(sale.id), now, EventPayload::Sale(sale.update(now)));
}

pub(crate) fn create_product(
    t: &mut Tables,
    now: i64,
    actor: u64,
    name: String,
    description: String,
    price_cents: u64,
) -> Result<Response, SmError> {
    if !super::accounts::is_admin(t, actor)? {
        return reject(ErrorCode::Forbidden, "creating products needs the ADMIN role");
    }
    let id = t.next_id(tables::COUNTER_NEXT_PRODUCT_ID)?;
    let product = Product { id, name, description, price_cents, created_at_ms: now };
    put_json(&mut t.products, &id_key(id), &product)?;
    Ok(Response::Product(product))
}

/// The fields of `Command::CreateSale`.
pub(crate) struct NewSale {
    pub product_id: u64,
    pub stock: u64,
    pub starts_at_ms: Option<i64>,
    pub ends_at_ms: Option<i64>,
    pub per_user_limit: u64,
}

pub(crate) fn create_sale(t: &mut Tables, now: i64, actor: u64, s: NewSale) -> Result<Response, SmError> {
    if !super::accounts::is_admin(t, actor)? {
        return reject(ErrorCode::Forbidden, "creating sales needs the ADMIN role");
    }
    if get_json::<Product>(&t.products, &id_key(s.product_id))?.is_none() {
        return reject(ErrorCode::NotFound, format!("no product with id {}", s.product_id));
    }
    if s.stock == 0 || s.per_user_limit == 0 {
        return reject(ErrorCode::InvalidInput, "stock and perUserLimit must be at least 1");
    }
    if let (Some(a), Some(b)) = (s.starts_at_ms, s.ends_at_ms) {
        if b <= a {
            return reject(ErrorCode::InvalidInput, "endsAt must be after startsAt");
        }
    }
    let id = t.next_id(tables::COUNTER_NEXT_SALE_ID)?;
    let sale = Sale {
        id,
        product_id: s.product_id,
        initial_stock: s.stock,
        sold: 0,
        per_user_limit: s.per_user_limit,
        starts_at_ms: s.starts_at_ms,
        ends_at_ms: s.ends_at_ms,
        started: false,
        ended: false,
        created_at_ms: now,
    };
    put_json(&mut t.sales, &id_key(id), &sale)?;
    emit_sale(t, now, &sale);
    Ok(Response::Sale(sale))
}

pub(crate) fn set_sale_open(
    t: &mut Tables,
    now: i64,
    actor: u64,
    sale_id: u64,
    open: bool,
) -> Result<Response, SmError> {
    if !super::accounts::is_admin(t, actor)? {
        return reject(ErrorCode::Forbidden, "starting and ending sales needs the ADMIN role");
    }
    let Some(mut sale) = get_json::<Sale>(&t.sales, &id_key(sale_id))? else {
        return reject(ErrorCode::NotFound, format!("no sale with id {sale_id}"));
    };
    if open {
        if sale.status_at(now) == SaleStatus::Ended {
            return reject(ErrorCode::SaleNotOpen, format!("sale {sale_id} has ended and cannot be started again"));
        }
        sale.started = true;
    } else {
        sale.ended = true;
    }
    put_json(&mut t.sales, &id_key(sale_id), &sale)?;
    emit_sale(t, now, &sale);
    Ok(Response::Sale(sale))
}

pub(crate) fn purchase(
    t: &mut Tables,
    now: i64,
    user_id: u64,
    sale_id: u64,
    quantity: u64,
    idempotency_key: String,
    unchecked_stock: bool,
) -> Result<Response, SmError> {
    // A repeated key returns the first order, whatever happened since (even sold out).
    let idem_key = key(&[&user_id.to_be_bytes(), idempotency_key.as_bytes()]);
    let first = t.idempotency.get(idem_key.as_slice())?.map(|v| v.value().to_vec());
    if let Some(order_id) = first {
        let order_id = u64::from_be_bytes(order_id.try_into().map_err(|_| SmError::Corrupt("idempotency value"))?);
        return match get_json::<Order>(&t.orders, &id_key(order_id))? {
            Some(order) => Ok(Response::Order(order)),
            None => Err(SmError::Corrupt("idempotency key names a missing order")),
        };
    }
    if quantity == 0 {
        return reject(ErrorCode::InvalidInput, "quantity must be at least 1");
    }
    if get_json::<User>(&t.users, &id_key(user_id))?.is_none() {
        return reject(ErrorCode::NotFound, format!("no user with id {user_id}"));
    }
    let Some(mut sale) = get_json::<Sale>(&t.sales, &id_key(sale_id))? else {
        return reject(ErrorCode::NotFound, format!("no sale with id {sale_id}"));
    };
    match sale.status_at(now) {
        SaleStatus::Open => {}
        SaleStatus::SoldOut if unchecked_stock => {}
        SaleStatus::SoldOut => return reject(ErrorCode::SoldOut, format!("sale {sale_id} is sold out")),
        SaleStatus::Scheduled => return reject(ErrorCode::SaleNotOpen, format!("sale {sale_id} has not opened yet")),
        SaleStatus::Ended => return reject(ErrorCode::SaleNotOpen, format!("sale {sale_id} has ended")),
    }
    if quantity > sale.stock() && !unchecked_stock {
        // Nothing is sold partially.
        return reject(
            ErrorCode::SoldOut,
            format!("only {} left of sale {sale_id}, asked for {quantity}", sale.stock()),
        );
    }
    let buyer_key = key(&[&sale_id.to_be_bytes(), &user_id.to_be_bytes()]);
    let previous: Option<BuyerTotal> = get_json(&t.sale_buyers, &buyer_key)?;
    let held = previous.as_ref().map_or(0, |b| b.quantity);
    if held + quantity > sale.per_user_limit {
        return reject(
            ErrorCode::LimitExceeded,
            format!("limit is {} per buyer; you hold {held} and asked for {quantity}", sale.per_user_limit),
        );
    }
    let order_id = t.next_id(tables::COUNTER_NEXT_ORDER_ID)?;
    let order = Order { id: order_id, sale_id, user_id, quantity, idempotency_key, created_at_ms: now };
    put_json(&mut t.orders, &id_key(order_id), &order)?;
    t.orders_by_sale.insert(key(&[&sale_id.to_be_bytes(), &order_id.to_be_bytes()]).as_slice(), [].as_slice())?;
    t.orders_by_user.insert(key(&[&user_id.to_be_bytes(), &order_id.to_be_bytes()]).as_slice(), [].as_slice())?;
    t.idempotency.insert(idem_key.as_slice(), order_id.to_be_bytes().as_slice())?;
    let total = BuyerTotal {
        user_id,
        quantity: held + quantity,
        first_purchase_at_ms: previous.as_ref().map_or(now, |b| b.first_purchase_at_ms),
        first_order_id: previous.as_ref().map_or(order_id, |b| b.first_order_id),
    };
    if let Some(prev) = &previous {
        t.leaderboard.remove(leaderboard_key(sale_id, prev).as_slice())?;
    }
    t.leaderboard.insert(leaderboard_key(sale_id, &total).as_slice(), [].as_slice())?;
    put_json(&mut t.sale_buyers, &buyer_key, &total)?;
    sale.sold += quantity;
    // Checked on both sides of the write: an oversell must be impossible, not merely unlikely.
    // Only the simulation's injected bug may oversell, and it must see the result, not a panic.
    assert!(
        unchecked_stock || sale.sold <= sale.initial_stock,
        "oversold sale {sale_id}: {} > {}",
        sale.sold,
        sale.initial_stock
    );
    put_json(&mut t.sales, &id_key(sale_id), &sale)?;
    emit_sale(t, now, &sale);
    Ok(Response::Order(order))
}

fn id_from(k: &[u8], at: usize) -> Result<u64, SmError> {
    k.get(at..at + 8).and_then(|b| b.try_into().ok()).map(u64::from_be_bytes).ok_or(SmError::Corrupt("short index key"))
}

impl ReadView {
    /// A product.
    pub fn product(&self, id: u64) -> Result<Option<Product>, SmError> {
        get_json(&self.txn.open_table(tables::PRODUCTS)?, &id_key(id))
    }

    /// A sale.
    pub fn sale(&self, id: u64) -> Result<Option<Sale>, SmError> {
        get_json(&self.txn.open_table(tables::SALES)?, &id_key(id))
    }

    /// Sales with id above `after`, in id order, that `keep` accepts, up to `limit`.
    pub fn sales(&self, after: u64, limit: usize, keep: impl Fn(&Sale) -> bool) -> Result<Vec<Sale>, SmError> {
        let table = self.txn.open_table(tables::SALES)?;
        let mut out = Vec::new();
        for item in table.range::<&[u8]>(id_key(after.saturating_add(1)).as_slice()..)? {
            let (_, v) = item?;
            let sale: Sale = serde_json::from_slice(v.value())?;
            if keep(&sale) {
                out.push(sale);
                if out.len() == limit {
                    break;
                }
            }
        }
        Ok(out)
    }

    /// An order.
    pub fn order(&self, id: u64) -> Result<Option<Order>, SmError> {
        get_json(&self.txn.open_table(tables::ORDERS)?, &id_key(id))
    }

    /// Every order with id above `after`, oldest first (the admin's view across all sales).
    pub fn orders_after(&self, after: u64, limit: usize) -> Result<Vec<Order>, SmError> {
        let orders = self.txn.open_table(tables::ORDERS)?;
        let from = id_key(after.saturating_add(1));
        let mut out = Vec::new();
        for item in orders.range::<&[u8]>(from.as_slice()..)?.take(limit) {
            let (_, v) = item?;
            out.push(serde_json::from_slice(v.value())?);
        }
        Ok(out)
    }

    /// Orders of a sale (`by_user: false`) or of a user (`true`), with order id above `after`,
    /// oldest first, read from the secondary index.
    pub fn orders_of(&self, owner: u64, by_user: bool, after: u64, limit: usize) -> Result<Vec<Order>, SmError> {
        let index = self.txn.open_table(if by_user { tables::ORDERS_BY_USER } else { tables::ORDERS_BY_SALE })?;
        let orders = self.txn.open_table(tables::ORDERS)?;
        let from = key(&[&owner.to_be_bytes(), &after.saturating_add(1).to_be_bytes()]);
        let to = key(&[&owner.to_be_bytes(), &u64::MAX.to_be_bytes()]);
        let mut out = Vec::new();
        for item in index.range::<&[u8]>(from.as_slice()..=to.as_slice())?.take(limit) {
            let (k, _) = item?;
            let id = id_from(k.value(), 8)?;
            if let Some(o) = get_json(&orders, &id_key(id))? {
                out.push(o);
            }
        }
        Ok(out)
    }

    /// The top `limit` buyers of a sale: most units first, ties to the earlier first purchase.
    pub fn leaderboard(&self, sale_id: u64, limit: usize) -> Result<Vec<BuyerTotal>, SmError> {
        let index = self.txn.open_table(tables::LEADERBOARD)?;
        let buyers = self.txn.open_table(tables::SALE_BUYERS)?;
        let from = key(&[&sale_id.to_be_bytes()]);
        let to = key(&[&sale_id.to_be_bytes(), &[0xff; 32]]);
        let mut out = Vec::new();
        for item in index.range::<&[u8]>(from.as_slice()..=to.as_slice())?.take(limit) {
            let (k, _) = item?;
            let user_id = id_from(k.value(), 32)?;
            let bk = key(&[&sale_id.to_be_bytes(), &user_id.to_be_bytes()]);
            if let Some(b) = get_json(&buyers, &bk)? {
                out.push(b);
            }
        }
        Ok(out)
    }

    /// What one buyer holds of a sale.
    pub fn buyer_total(&self, sale_id: u64, user_id: u64) -> Result<Option<BuyerTotal>, SmError> {
        let table = self.txn.open_table(tables::SALE_BUYERS)?;
        get_json(&table, &key(&[&sale_id.to_be_bytes(), &user_id.to_be_bytes()]))
    }
}
