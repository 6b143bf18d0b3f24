//! The `sale` topic (`--topic sale`, the default): `saleUpdates` on a sale one buyer buys from.
//!
//! Setup (not measured): the admin (`--admin-user`, or an admin the scenario registers on a
//! cluster with no account yet) creates a product and an open sale with a large stock; one buyer
//! is registered; N sockets subscribe to `saleUpdates` on the sale, socket `i` on node
//! `i % nodes`, without `afterIndex`, so each first receives the sale's current state, which
//! shows it is live. Then the sender buys one unit per slot of a fixed schedule, each purchase
//! with its own idempotency key, on node `slot % nodes`.
//!
//! Attributing updates to sends: purchase number k to commit makes `sold` = k, and each update
//! carries `sold`, so a socket records when it first saw each `sold` value. Which send was the
//! k-th to commit is known from the order ids, which the state machine numbers in commit order:
//! after the run the acknowledged orders are sorted by id, and the k-th was the send that made
//! `sold` = k. The delay of each delivery is its arrival minus that send's departure. That holds
//! however purchases in flight together overtake each other, and whether an update reaches a
//! socket before or after the purchase's own answer. Purchases whose answer was lost are re-sent
//! with the same key after the run (the server returns the first order, or buys now); their
//! updates are delivered and checked, but give no delay, since their send time is uncertain.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use client::{ops, Client, ClientError, CreateProductInput, CreateSaleInput, Order};
use futures::stream::{self, StreamExt};
use futures::Future;
use serde_json::{json, Value};
use tokio::sync::watch;

use super::fanout::{Clock, Deliveries, RunSpec, SubscribersArgs, Subscription, Tally, Topic};
use super::sends::Sends;
use super::sockets::{await_live, read_frames, Ws, DRAIN_TIMEOUT_SECS, LIVE_TIMEOUT_SECS};
use crate::scenarios::accounts::{register_or_login, sign_in_admin};
use crate::scenarios::purchase::{check_sale_on_every_node, PRODUCT_PRICE_CENTS, REFUSAL_CODES};
use crate::scenarios::NAME_PREFIX;
use crate::stats::histogram_us;

const SALE_SUBSCRIPTION: &str = "subscription($s:ID!){ saleUpdates(saleId:$s){ index sold stock status } }";

/// Most (socket, update) arrival times one run keeps, 4 bytes each, so that a run cannot exhaust
/// memory: 50,000,000 is 200 MB.
const DELIVERY_RECORDS_MAX: u64 = 50_000_000;

/// Arrival times are kept as microseconds since the run's base instant in a `u32`, which
/// covers about 71 minutes; runs are refused beyond this.
const RUN_MAX_SECS: u64 = 3_600;

/// Purchases of unknown outcome re-sent at once after the run.
const SETTLE_PARALLELISM_REQUESTS: usize = 16;

/// The topic, set up: the sale the buyer buys from and every socket watches.
pub(super) struct SaleTopic {
    run_id: String,
    product_id: String,
    sale_id: String,
    /// Units the sale started with.
    stock: u32,
    buyer_token: Arc<str>,
}

impl SaleTopic {
    /// The idempotency key of the purchase of schedule slot `slot`.
    fn key(&self, slot: u64) -> String {
        format!("{}-{}-s{slot}", self.run_id, self.sale_id)
    }
}

/// What settling the purchases found out.
pub(super) struct SaleSettled {
    /// How many purchases had an unknown outcome after the run.
    unknown: usize,
    /// Each of those re-sent with its key: its slot and the answer.
    settled: Vec<(u64, Result<Order, ClientError>)>,
    /// The sale read back after the run.
    after: client::Sale,
    /// What that read shows wrong.
    problems: Vec<String>,
}

/// What one socket saw.
pub(super) struct SaleSocket {
    /// Entry `k - 1`: microseconds after the base instant when `sold` = k first arrived; 0 for
    /// never.
    arrived_us: Vec<u32>,
    /// `sold` in the first update (the state when subscribing); later values are deliveries.
    baseline: Option<u64>,
    out_of_order: u64,
    failure: Option<String>,
}

impl Topic for SaleTopic {
    const LABEL: &'static str = "sale";
    type Socket = SaleSocket;
    type Sent = Order;
    type Settled = SaleSettled;

    async fn setup(client: &Client, args: &SubscribersArgs, spec: &RunSpec<'_>) -> anyhow::Result<Self> {
        let run_secs = spec.warmup_secs + spec.duration_secs;
        if run_secs + LIVE_TIMEOUT_SECS + DRAIN_TIMEOUT_SECS > RUN_MAX_SECS {
            bail!("--warmup plus --duration must stay under {} s for the sale topic", RUN_MAX_SECS - 90);
        }
        let needed = u64::from(args.rate) * run_secs;
        if needed > u64::from(args.stock) {
            bail!("--stock {} is less than the {needed} units --rate x (--warmup + --duration) buys", args.stock);
        }
        let n = u64::from(args.subscribers);
        if needed * n > DELIVERY_RECORDS_MAX {
            bail!(
                "{n} sockets x {needed} updates exceed the {DELIVERY_RECORDS_MAX} arrival times one run keeps; \
                 lower --subscribers, --rate or --duration"
            );
        }
        let admin = client.clone().with_bearer(admin_token(client, args, spec.run_id).await?);
        let buyer_name = format!("{NAME_PREFIX}{}sb", spec.run_id);
        let buyer_password = format!("{NAME_PREFIX}-{}-sale-buyer", spec.run_id);
        let buyer = register_or_login(client, 0, &buyer_name, &buyer_password)
            .await
            .with_context(|| format!("registering buyer {buyer_name}"))?;
        let product = admin
            .create_product(
                0,
                &CreateProductInput {
                    name: format!("{NAME_PREFIX}{} live sale", spec.run_id),
                    description: "Created by loadgen subscribers".to_owned(),
                    price_cents: PRODUCT_PRICE_CENTS,
                },
            )
            .await
            .context("creating the product")?;
        let input = CreateSaleInput {
            product_id: product.id.clone(),
            stock: args.stock,
            starts_at: None,
            ends_at: None,
            per_user_limit: args.stock,
        };
        let sale = admin.create_sale(0, &input).await.context("creating the sale")?;
        admin.start_sale(0, &sale.id).await.context("starting the sale")?;
        check_sale_on_every_node(client, &sale.id, args.stock).await?;
        Ok(Self {
            run_id: spec.run_id.to_owned(),
            product_id: product.id,
            sale_id: sale.id,
            stock: args.stock,
            buyer_token: buyer.token.into(),
        })
    }

    fn subscription(&self) -> Subscription<'_> {
        Subscription { token: &self.buyer_token, query: SALE_SUBSCRIPTION, variables: json!({"s": self.sale_id}) }
    }

    async fn quiet_topics(&self, _client: &Client, _topics: u32, _spec: &RunSpec<'_>) -> anyhow::Result<Vec<Value>> {
        anyhow::bail!("--idle-subscribers is measured with --topic chat (quiet chats cost one mutation each to create)")
    }

    fn read(
        ws: Ws,
        base: Instant,
        live: Arc<AtomicU64>,
        delivered: Arc<AtomicU64>,
        stop: watch::Receiver<bool>,
    ) -> impl Future<Output = SaleSocket> + Send + 'static {
        read_sale_socket(ws, base, live, delivered, stop)
    }

    async fn go_live(
        &self,
        _client: &Client,
        live: &AtomicU64,
        n: usize,
        args: &SubscribersArgs,
        spec: &RunSpec<'_>,
    ) -> anyhow::Result<()> {
        // Each socket's first update is the sale's state when it subscribed.
        await_live(live, n, "the sale's current state").await?;
        eprintln!(
            "all {n} subscriptions live on sale {}; buying {} units/s for {} s warmup + {} s",
            self.sale_id, args.rate, spec.warmup_secs, spec.duration_secs
        );
        Ok(())
    }

    fn send(
        &self,
        client: &Client,
        slot: u64,
        _due: Instant,
        _clock: Clock,
    ) -> impl Future<Output = Result<Order, ClientError>> + Send + 'static {
        let (client, token, sale_id, key) =
            (client.clone(), self.buyer_token.clone(), self.sale_id.clone(), self.key(slot));
        async move {
            let data = client.execute(
                slot as usize,
                ops::PURCHASE_MUTATION,
                ops::purchase_variables(&sale_id, 1, &key),
                Some(&token),
            );
            ops::field::<Order>(data.await?, "purchase")
        }
    }

    async fn settle(&self, client: &Client, sends: &Sends<Order>) -> anyhow::Result<(u64, SaleSettled)> {
        // Purchases of unknown outcome: the same key returns the order if the first attempt made
        // one, and otherwise buys now; either way the answer says what the sale counts.
        let unknown: Vec<u64> = sends
            .outcomes
            .iter()
            .filter(|o| matches!(&o.result, Err(e) if !REFUSAL_CODES.contains(&e.code().as_str())))
            .map(|o| o.slot)
            .collect();
        let settled: Vec<(u64, Result<Order, ClientError>)> = stream::iter(unknown.iter().copied())
            .map(|slot| {
                let (token, key) = (self.buyer_token.clone(), self.key(slot));
                async move {
                    let vars = ops::purchase_variables(&self.sale_id, 1, &key);
                    let data = client.execute_retrying(slot as usize, ops::PURCHASE_MUTATION, vars, Some(&token)).await;
                    (slot, data.and_then(|d| ops::field::<Order>(d, "purchase")))
                }
            })
            .buffer_unordered(SETTLE_PARALLELISM_REQUESTS)
            .collect()
            .await;

        let mut problems = Vec::new();
        let sale_id = &self.sale_id;
        let after = client.sale_linearizable(0, sale_id).await.context("reading the sale after the run")?;
        let after = after.with_context(|| format!("sale {sale_id} is gone after the run"))?;
        let committed = u64::try_from(after.sold).unwrap_or(0);
        if after.stock + after.sold != i64::from(self.stock) {
            problems
                .push(format!("stock {} + sold {} is not the initial stock {}", after.stock, after.sold, self.stock));
        }
        Ok((committed, SaleSettled { unknown: unknown.len(), settled, after, problems }))
    }

    fn tally(
        &self,
        settled: SaleSettled,
        sends: &Sends<Order>,
        sockets: Vec<SaleSocket>,
        committed: u64,
        clock: Clock,
    ) -> anyhow::Result<Tally> {
        let SaleSettled { unknown, settled, after, mut problems } = settled;
        let mut acked = Vec::new();
        let mut unparsable = 0u64;
        let mut push = |order: &Order, sent: Instant, measured: bool| match order.id.parse::<u64>() {
            Ok(order_id) => acked.push(Acked { order_id, sent, measured }),
            Err(_) => unparsable += 1,
        };
        for o in &sends.outcomes {
            if let Ok(order) = &o.result {
                push(order, o.sent, o.due >= clock.measure_from);
            }
        }
        let mut still_unknown = 0u64;
        for (slot, result) in &settled {
            match result {
                Ok(order) => push(order, sends.outcomes[*slot as usize].sent, false),
                Err(e) if !REFUSAL_CODES.contains(&e.code().as_str()) => still_unknown += 1,
                Err(_) => {}
            }
        }
        if unparsable > 0 {
            problems.push(format!("{unparsable} order ids are not numbers, so their updates cannot be attributed"));
        }
        let (attribution, problem) = attribute(acked, committed, still_unknown);
        problems.extend(problem);

        let mut got = Deliveries::new(clock.measure_from);
        let mut late_baselines = 0u64;
        for s in sockets {
            got.out_of_order += s.out_of_order;
            got.socket_failed(s.failure);
            // Every socket subscribed before the first purchase, so each must start from 0 sold.
            late_baselines += u64::from(s.baseline.unwrap_or(0) != 0);
            for (k, &us) in s.arrived_us.iter().enumerate().take(committed as usize) {
                if us == 0 {
                    continue;
                }
                got.delivered += 1;
                if let Some(Attribution { sent, measured: true }) = attribution[k] {
                    let arrived = clock.base + Duration::from_micros(u64::from(us));
                    got.delay.saturating_record(histogram_us(arrived.saturating_duration_since(sent)));
                    got.measured += 1;
                    got.last = got.last.max(arrived);
                }
            }
        }
        if late_baselines > 0 {
            problems.push(format!("{late_baselines} sockets' first update showed units already sold"));
        }
        let params = json!({
            "run_id": self.run_id,
            "product_id": self.product_id,
            "sale_id": self.sale_id,
            "stock": self.stock,
            "stock_after": after.stock,
            "status_after": after.status,
            "unknown_outcomes": unknown,
            "settled_after_run": unknown as u64 - still_unknown,
        });
        Ok(Tally { got, params, problems })
    }
}

/// Reads one socket until `stop`, recording the first arrival of each `sold` value.
async fn read_sale_socket(
    mut ws: Ws,
    base: Instant,
    live: Arc<AtomicU64>,
    delivered_total: Arc<AtomicU64>,
    stop: watch::Receiver<bool>,
) -> SaleSocket {
    let mut s = SaleSocket { arrived_us: Vec::new(), baseline: None, out_of_order: 0, failure: None };
    let mut last_index = 0;
    let failure = read_frames(&mut ws, stop, |data, now| {
        let update = &data["saleUpdates"];
        let (Some(index), Some(sold)) = (update["index"].as_u64(), update["sold"].as_u64()) else {
            return Err(format!("update without index or sold: {update}"));
        };
        // The same index again is the same state re-read (a status tick); only going back is wrong.
        if index < last_index {
            s.out_of_order += 1;
        }
        last_index = last_index.max(index);
        let Some(baseline) = s.baseline else {
            s.baseline = Some(sold);
            live.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        };
        if sold > baseline {
            let slot = usize::try_from(sold - 1).map_err(|_| format!("sold {sold} out of range"))?;
            if slot >= s.arrived_us.len() {
                s.arrived_us.resize(slot + 1, 0);
            }
            if s.arrived_us[slot] == 0 {
                let us = now.saturating_duration_since(base).as_micros();
                s.arrived_us[slot] = u32::try_from(us).unwrap_or(u32::MAX).max(1);
                delivered_total.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    })
    .await;
    s.failure = failure;
    s
}

/// The send of the purchase that made `sold` = k, at entry `k - 1`.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Attribution {
    sent: Instant,
    /// Sent in the measured window with a known send time, so its deliveries yield delays.
    measured: bool,
}

/// An acknowledged purchase, for attribution.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Acked {
    order_id: u64,
    sent: Instant,
    measured: bool,
}

/// Orders sorted by id give the commit order; the k-th made `sold` = k. Returns the attribution
/// of `sold` values `1..=committed` (`None` where no order is known) and a problem when the
/// acknowledged orders do not account for exactly `committed` units.
fn attribute(mut acked: Vec<Acked>, committed: u64, unknown: u64) -> (Vec<Option<Attribution>>, Option<String>) {
    acked.sort_by_key(|a| a.order_id);
    let problem = (acked.len() as u64 != committed).then(|| {
        format!(
            "{} purchases acknowledged but the sale counts {committed} sold ({unknown} of unknown outcome): \
             delays from the first unacknowledged unit on may be misattributed",
            acked.len()
        )
    });
    let mut out: Vec<Option<Attribution>> = vec![None; committed as usize];
    for (k, a) in acked.iter().enumerate().take(committed as usize) {
        out[k] = Some(Attribution { sent: a.sent, measured: a.measured });
    }
    (out, problem)
}

/// Signs in the admin from the flags, or registers one of the run's own.
async fn admin_token(client: &Client, args: &SubscribersArgs, run_id: &str) -> anyhow::Result<Arc<str>> {
    match (&args.admin_user, &args.admin_password) {
        (Some(user), Some(password)) => sign_in_admin(client, user, password).await,
        (None, None) => {
            let user = format!("{NAME_PREFIX}{run_id}admin");
            sign_in_admin(client, &user, &format!("{NAME_PREFIX}-{run_id}-admin-password"))
                .await
                .context("no --admin-user (LOADGEN_ADMIN_USER) given, so the scenario registered its own admin")
        }
        _ => bail!("give both --admin-user and --admin-password (or LOADGEN_ADMIN_USER/PASSWORD), or neither"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribution_follows_order_ids_not_send_order() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        // Sent at 0, 10, 20 ms; the second overtook the first in the log.
        let acked = vec![
            Acked { order_id: 12, sent: at(0), measured: true },
            Acked { order_id: 11, sent: at(10), measured: true },
            Acked { order_id: 13, sent: at(20), measured: false },
        ];
        let (attr, problem) = attribute(acked, 3, 0);
        assert_eq!(problem, None);
        assert_eq!(attr[0], Some(Attribution { sent: at(10), measured: true }));
        assert_eq!(attr[1], Some(Attribution { sent: at(0), measured: true }));
        assert_eq!(attr[2], Some(Attribution { sent: at(20), measured: false }));
    }

    #[test]
    fn attribution_flags_counts_that_disagree() {
        let t0 = Instant::now();
        let acked = vec![Acked { order_id: 1, sent: t0, measured: true }];
        // Two units sold, one order known: the second unit is unattributed.
        let (attr, problem) = attribute(acked.clone(), 2, 1);
        assert_eq!(attr.len(), 2);
        assert!(attr[1].is_none());
        assert!(problem.unwrap().contains("1 purchases acknowledged but the sale counts 2 sold"));
        // More orders than units sold: the extra ones are ignored, and flagged.
        let (attr, problem) = attribute(acked, 0, 0);
        assert!(attr.is_empty());
        assert!(problem.is_some());
    }
}
