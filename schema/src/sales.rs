//! Flash sales: products, sales, purchases that never oversell, orders, the leaderboard, and
//! live `saleUpdates` from the replicated event feed.

use async_graphql::connection::{Connection, Edge, EmptyFields};
use async_graphql::{Context, Enum, Error, InputObject, Object, Subscription, ID};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use raft::model::sales::SaleStatus as StoreSaleStatus;
use raft::model::sales::{BuyerTotal, Order, Product, Sale};
use raft::{sale_topic, EventPayload};
use raft::{Command, Consistency as StoreConsistency, Response, Role, Store};

use crate::accounts::UserObject;
use crate::auth::{admin, viewer};
use crate::error::{api_error, code, invalid, store};
use crate::feed::{self, FeedItem, Follow};
use crate::paging::{cursor, page_size, parse_id, PAGE_SIZE_MAX};
use crate::{ms_to_datetime, now_ms, ApiContext, Consistency};

/// Most units in one purchase.
pub const PURCHASE_QUANTITY_MAX: i64 = 1_000_000;
/// Longest idempotency key, in bytes.
pub const IDEMPOTENCY_KEY_BYTES_MAX: usize = 128;
/// Longest product name and description, in characters.
pub const PRODUCT_NAME_CHARS_MAX: usize = 200;
/// See [`PRODUCT_NAME_CHARS_MAX`].
pub const PRODUCT_DESCRIPTION_CHARS_MAX: usize = 5_000;
/// Most leaderboard rows returned.
pub const LEADERBOARD_LIMIT_MAX: i32 = 100;

/// A sale's status.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum SaleStatus {
    /// Not open yet.
    Scheduled,
    /// Accepting purchases.
    Open,
    /// Nothing left.
    SoldOut,
    /// Closed.
    Ended,
}

impl From<StoreSaleStatus> for SaleStatus {
    fn from(s: StoreSaleStatus) -> Self {
        match s {
            StoreSaleStatus::Scheduled => SaleStatus::Scheduled,
            StoreSaleStatus::Open => SaleStatus::Open,
            StoreSaleStatus::SoldOut => SaleStatus::SoldOut,
            StoreSaleStatus::Ended => SaleStatus::Ended,
        }
    }
}

pub(crate) async fn user_object(ctx: &Context<'_>, id: u64) -> Result<Option<UserObject>, Error> {
    let user = crate::applied::read(ctx, StoreConsistency::Local, |v| v.user(id)).await?;
    Ok(user.map(|user| UserObject { user, show_private: false }))
}

/// A product.
pub struct ProductObject(pub Product);

#[Object(name = "Product")]
impl ProductObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn name(&self) -> &str {
        &self.0.name
    }
    async fn description(&self) -> &str {
        &self.0.description
    }
    async fn price_cents(&self) -> u64 {
        self.0.price_cents
    }
    async fn created_at(&self) -> DateTime<Utc> {
        ms_to_datetime(self.0.created_at_ms)
    }
}

/// A sale; `status` is judged at the time of reading.
pub struct SaleObject(pub Sale);

#[Object(name = "Sale")]
impl SaleObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn product(&self, ctx: &Context<'_>) -> Result<Option<ProductObject>, Error> {
        let id = self.0.product_id;
        Ok(crate::applied::read(ctx, StoreConsistency::Local, |v| v.product(id)).await?.map(ProductObject))
    }
    async fn status(&self) -> SaleStatus {
        self.0.status_at(now_ms()).into()
    }
    /// Units left.
    async fn stock(&self) -> u64 {
        self.0.stock()
    }
    /// Units sold.
    async fn sold(&self) -> u64 {
        self.0.sold
    }
    /// Units offered in all (`stock + sold`).
    async fn initial_stock(&self) -> u64 {
        self.0.initial_stock
    }
    async fn per_user_limit(&self) -> u64 {
        self.0.per_user_limit
    }
    async fn starts_at(&self) -> Option<DateTime<Utc>> {
        self.0.starts_at_ms.map(ms_to_datetime)
    }
    async fn ends_at(&self) -> Option<DateTime<Utc>> {
        self.0.ends_at_ms.map(ms_to_datetime)
    }
    async fn created_at(&self) -> DateTime<Utc> {
        ms_to_datetime(self.0.created_at_ms)
    }
}

/// A purchase.
pub struct OrderObject(pub Order);

#[Object(name = "Order")]
impl OrderObject {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn sale_id(&self) -> ID {
        ID(self.0.sale_id.to_string())
    }
    async fn quantity(&self) -> u64 {
        self.0.quantity
    }
    async fn idempotency_key(&self) -> &str {
        &self.0.idempotency_key
    }
    async fn user(&self, ctx: &Context<'_>) -> Result<Option<UserObject>, Error> {
        user_object(ctx, self.0.user_id).await
    }
    async fn created_at(&self) -> DateTime<Utc> {
        ms_to_datetime(self.0.created_at_ms)
    }
}

/// One row of a sale's leaderboard.
pub struct LeaderboardEntry {
    rank: usize,
    total: BuyerTotal,
}

#[Object]
impl LeaderboardEntry {
    /// 1 for the top buyer.
    async fn rank(&self) -> usize {
        self.rank
    }
    async fn user(&self, ctx: &Context<'_>) -> Result<Option<UserObject>, Error> {
        user_object(ctx, self.total.user_id).await
    }
    /// Units held across all their orders.
    async fn quantity(&self) -> u64 {
        self.total.quantity
    }
    async fn first_purchase_at(&self) -> DateTime<Utc> {
        ms_to_datetime(self.total.first_purchase_at_ms)
    }
}

/// A change of a sale's stock or status.
#[derive(async_graphql::SimpleObject, Clone, Debug)]
pub struct SaleUpdate {
    /// Position in the replicated event feed; resume with `afterIndex` set to the last one seen.
    pub index: u64,
    /// The sale.
    pub sale_id: ID,
    /// Units left.
    pub stock: u64,
    /// Units sold.
    pub sold: u64,
    /// Status after the change.
    pub status: SaleStatus,
}

/// New products.
#[derive(InputObject)]
pub struct CreateProductInput {
    /// 1 to 200 characters.
    pub name: String,
    /// Up to 5000 characters.
    #[graphql(default)]
    pub description: String,
    /// Price in cents, >= 0.
    pub price_cents: i64,
}

/// New sales.
#[derive(InputObject)]
pub struct CreateSaleInput {
    /// The product.
    pub product_id: ID,
    /// Units offered, >= 1.
    pub stock: i64,
    /// Opens by itself then (judged by each purchase's stamped time); without it, `startSale`.
    pub starts_at: Option<DateTime<Utc>>,
    /// Ends by itself then.
    pub ends_at: Option<DateTime<Utc>>,
    /// Most units one buyer may hold, >= 1.
    pub per_user_limit: i64,
}

/// Proposes a command that answers with the sale it changed.
async fn write_sale(ctx: &Context<'_>, cmd: Command) -> Result<SaleObject, Error> {
    crate::applied::write(ctx, cmd, |r| match r {
        Response::Sale(s) => Some(SaleObject(s)),
        _ => None,
    })
    .await
}

/// Sales' queries.
#[derive(Default)]
pub struct SaleQuery;

#[Object]
impl SaleQuery {
    /// A product.
    async fn product(&self, ctx: &Context<'_>, id: ID) -> Result<Option<ProductObject>, Error> {
        let id = parse_id("id", &id)?;
        Ok(crate::applied::read(ctx, StoreConsistency::Local, |v| v.product(id)).await?.map(ProductObject))
    }

    /// A sale, read at `consistency` (default LINEARIZABLE: stock as of now, cluster-wide).
    async fn sale(
        &self,
        ctx: &Context<'_>,
        id: ID,
        consistency: Option<Consistency>,
    ) -> Result<Option<SaleObject>, Error> {
        let id = parse_id("id", &id)?;
        let c = consistency.unwrap_or(Consistency::Linearizable);
        Ok(crate::applied::read(ctx, c.into(), |v| v.sale(id)).await?.map(SaleObject))
    }

    /// Sales by id, optionally only those with `status` now.
    async fn sales(
        &self,
        ctx: &Context<'_>,
        status: Option<SaleStatus>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, SaleObject, EmptyFields, EmptyFields>, Error> {
        let (n, after) = (page_size(first)?, cursor(after)?);
        let now = now_ms();
        let keep = move |s: &Sale| status.is_none_or(|st| SaleStatus::from(s.status_at(now)) == st);
        let mut rows = crate::applied::read(ctx, StoreConsistency::Local, |v| v.sales(after, n + 1, keep)).await?;
        let has_next = rows.len() > n;
        rows.truncate(n);
        let mut conn = Connection::new(after > 0, has_next);
        conn.edges.extend(rows.into_iter().map(|s| Edge::new(s.id.to_string(), SaleObject(s))));
        Ok(conn)
    }

    /// The viewer's orders (of one sale, or all); an admin sees everyone's.
    async fn orders(
        &self,
        ctx: &Context<'_>,
        sale_id: Option<ID>,
        first: Option<i32>,
        after: Option<String>,
    ) -> Result<Connection<String, OrderObject, EmptyFields, EmptyFields>, Error> {
        let me = viewer(ctx).await?;
        let (n, mut after) = (page_size(first)?, cursor(after)?);
        let has_previous = after > 0;
        let sale = sale_id.as_ref().map(|s| parse_id("saleId", s)).transpose()?;
        let mut rows = Vec::new();
        let mut has_next = false;
        match sale {
            _ if me.role == Role::Admin => {
                rows = crate::applied::read(ctx, StoreConsistency::Local, |v| match sale {
                    Some(sale) => v.orders_of(sale, false, after, n + 1),
                    None => v.orders_after(after, n + 1),
                })
                .await?;
                has_next = rows.len() > n;
                rows.truncate(n);
            }
            _ => {
                // A buyer's orders are few; filter their index by sale, page by page.
                'pages: loop {
                    let page = crate::applied::read(ctx, StoreConsistency::Local, |v| {
                        v.orders_of(me.id, true, after, PAGE_SIZE_MAX)
                    })
                    .await?;
                    let exhausted = page.len() < PAGE_SIZE_MAX;
                    for o in page {
                        after = o.id;
                        if sale.is_none_or(|s| s == o.sale_id) {
                            if rows.len() == n {
                                has_next = true;
                                break 'pages;
                            }
                            rows.push(o);
                        }
                    }
                    if exhausted {
                        break;
                    }
                }
            }
        }
        let mut conn = Connection::new(has_previous, has_next);
        conn.edges.extend(rows.into_iter().map(|o| Edge::new(o.id.to_string(), OrderObject(o))));
        Ok(conn)
    }

    /// Top buyers of a sale by units held; ties go to the earlier first purchase.
    async fn leaderboard(
        &self,
        ctx: &Context<'_>,
        sale_id: ID,
        #[graphql(default = 10)] limit: i32,
    ) -> Result<Vec<LeaderboardEntry>, Error> {
        let id = parse_id("saleId", &sale_id)?;
        if !(1..=LEADERBOARD_LIMIT_MAX).contains(&limit) {
            return Err(invalid("limit", format!("must be 1 to {LEADERBOARD_LIMIT_MAX}, got {limit}")));
        }
        let rows = crate::applied::read(ctx, StoreConsistency::Local, |v| v.leaderboard(id, limit as usize)).await?;
        Ok(rows.into_iter().enumerate().map(|(i, total)| LeaderboardEntry { rank: i + 1, total }).collect())
    }
}

/// Sales' mutations.
#[derive(Default)]
pub struct SaleMutation;

#[Object]
impl SaleMutation {
    /// Adds a product (ADMIN).
    async fn create_product(&self, ctx: &Context<'_>, input: CreateProductInput) -> Result<ProductObject, Error> {
        let me = admin(ctx).await?;
        let name_len = input.name.trim().chars().count();
        if !(1..=PRODUCT_NAME_CHARS_MAX).contains(&name_len) {
            return Err(invalid("name", format!("must be 1 to {PRODUCT_NAME_CHARS_MAX} characters, got {name_len}")));
        }
        if input.description.chars().count() > PRODUCT_DESCRIPTION_CHARS_MAX {
            return Err(invalid("description", format!("must be at most {PRODUCT_DESCRIPTION_CHARS_MAX} characters")));
        }
        let price_cents = u64::try_from(input.price_cents)
            .map_err(|_| invalid("priceCents", format!("must be >= 0, got {}", input.price_cents)))?;
        let cmd = Command::CreateProduct {
            actor: me.id,
            name: input.name.trim().to_string(),
            description: input.description,
            price_cents,
        };
        crate::applied::write(ctx, cmd, |r| match r {
            Response::Product(p) => Some(ProductObject(p)),
            _ => None,
        })
        .await
    }

    /// Puts stock of a product on sale (ADMIN). Without `startsAt` it waits for `startSale`.
    async fn create_sale(&self, ctx: &Context<'_>, input: CreateSaleInput) -> Result<SaleObject, Error> {
        let me = admin(ctx).await?;
        let product_id = parse_id("productId", &input.product_id)?;
        let stock = u64::try_from(input.stock)
            .ok()
            .filter(|s| *s >= 1)
            .ok_or_else(|| invalid("stock", format!("must be >= 1, got {}", input.stock)))?;
        let per_user_limit = u64::try_from(input.per_user_limit)
            .ok()
            .filter(|s| *s >= 1)
            .ok_or_else(|| invalid("perUserLimit", format!("must be >= 1, got {}", input.per_user_limit)))?;
        let starts_at_ms = input.starts_at.map(|t| t.timestamp_millis());
        let ends_at_ms = input.ends_at.map(|t| t.timestamp_millis());
        if let (Some(a), Some(b)) = (starts_at_ms, ends_at_ms) {
            if b <= a {
                return Err(invalid("endsAt", "must be after startsAt"));
            }
        }
        let cmd = Command::CreateSale { actor: me.id, product_id, stock, starts_at_ms, ends_at_ms, per_user_limit };
        write_sale(ctx, cmd).await
    }

    /// Opens a sale now (ADMIN).
    async fn start_sale(&self, ctx: &Context<'_>, sale_id: ID) -> Result<SaleObject, Error> {
        let me = admin(ctx).await?;
        let sale_id = parse_id("saleId", &sale_id)?;
        write_sale(ctx, Command::StartSale { actor: me.id, sale_id }).await
    }

    /// Closes a sale now (ADMIN).
    async fn end_sale(&self, ctx: &Context<'_>, sale_id: ID) -> Result<SaleObject, Error> {
        let me = admin(ctx).await?;
        let sale_id = parse_id("saleId", &sale_id)?;
        write_sale(ctx, Command::EndSale { actor: me.id, sale_id }).await
    }

    /// Buys `quantity` units, all or nothing. The same `idempotencyKey` from the same buyer
    /// returns the first order, even when the two calls race on two nodes.
    async fn purchase(
        &self,
        ctx: &Context<'_>,
        sale_id: ID,
        quantity: i64,
        idempotency_key: String,
    ) -> Result<OrderObject, Error> {
        let me = viewer(ctx).await?;
        let sale_id = parse_id("saleId", &sale_id)?;
        if !(1..=PURCHASE_QUANTITY_MAX).contains(&quantity) {
            return Err(invalid("quantity", format!("must be 1 to {PURCHASE_QUANTITY_MAX}, got {quantity}")));
        }
        if idempotency_key.is_empty() || idempotency_key.len() > IDEMPOTENCY_KEY_BYTES_MAX {
            return Err(invalid("idempotencyKey", format!("must be 1 to {IDEMPOTENCY_KEY_BYTES_MAX} bytes")));
        }
        let cmd = Command::Purchase { user_id: me.id, sale_id, quantity: quantity as u64, idempotency_key };
        crate::applied::write(ctx, cmd, |r| match r {
            Response::Order(o) => Some(OrderObject(o)),
            _ => None,
        })
        .await
    }
}

/// Sales' subscriptions.
#[derive(Default)]
pub struct SaleSubscription;

/// The one way a sale becomes a `SaleUpdate`: the model's update (from an event, or from the
/// sale read now) at feed position `index`.
fn update_at(index: u64, u: raft::model::sales::SaleUpdate) -> SaleUpdate {
    SaleUpdate { index, sale_id: ID(u.sale_id.to_string()), stock: u.stock, sold: u.sold, status: u.status.into() }
}

#[Subscription]
impl SaleSubscription {
    /// Every change of a sale's stock and status. With `afterIndex`, first every change after
    /// that index (from any node), then live ones; without it, the current state, then live
    /// ones. Resuming from before the retained window is an error: re-read `sale` first.
    async fn sale_updates(
        &self,
        ctx: &Context<'_>,
        sale_id: ID,
        after_index: Option<u64>,
    ) -> Result<impl Stream<Item = Result<SaleUpdate, Error>>, Error> {
        let id = parse_id("saleId", &sale_id)?;
        let store: Store = ctx.data::<ApiContext>()?.store.clone();
        let watch = store.watch_topic(&sale_topic(id));
        let read = store
            .read(StoreConsistency::Linearizable, |v| {
                Ok((v.sale(id)?, (v.topic_pruned(&sale_topic(id))?, v.event_window()?.1)))
            })
            .await
            .map_err(store_err)?;
        let (sale, (pruned, last)) = read.value;
        let Some(sale) = sale else { return Err(api_error(code::NOT_FOUND, format!("no sale with id {id}"))) };
        if let Some(a) = after_index {
            feed::check_window(a, pruned, "sale")?;
        }
        let current = after_index.is_none().then(|| Ok(update_at(last, sale.update(now_ms()))));
        // A sale opening or ending by the clock (startsAt, endsAt) is applied by no command, so
        // the feed wakes at those times and the status read then is reported.
        let ticks_ms = [sale.starts_at_ms, sale.ends_at_ms].into_iter().flatten().collect();
        let follow = feed::follow(Follow {
            store: store.clone(),
            watch,
            after: after_index.unwrap_or(last),
            reread: "sale",
            guard: None,
            session: None,
            ticks_ms,
            keep: None,
        });
        let updates = follow.filter_map(move |item| {
            let store = store.clone();
            async move {
                match item {
                    Err(e) => Some(Err(e)),
                    Ok(FeedItem::Event(e)) => match e.payload {
                        EventPayload::Sale(u) => Some(Ok(update_at(e.seq, u))),
                        _ => None,
                    },
                    Ok(FeedItem::Tick { cursor }) => {
                        let now = now_ms();
                        match store.read(StoreConsistency::Local, |v| v.sale(id)).await {
                            Ok(r) => r.value.map(|s| Ok(update_at(cursor, s.update(now)))),
                            Err(e) => Some(Err(store_err(e))),
                        }
                    }
                }
            }
        });
        Ok(futures::stream::iter(current).chain(updates))
    }
}

fn store_err(e: raft::StoreError) -> Error {
    store(e)
}
