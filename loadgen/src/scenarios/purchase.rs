//! The `purchase-burst` scenario: a flash sale. Setup (not measured) signs in the admin,
//! registers one buyer per worker and creates a product and a sale that opens a little later;
//! the workers then buy as fast as they can from the moment it opens until it is sold out; at
//! the end the sale is read back and its counts are checked against what the buyers were told.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use clap::Args;
use client::{ops, Client, ClientError, CreateProductInput, CreateSaleInput, Sale};
use futures::stream::{self, StreamExt};
use serde::Serialize;
use serde_json::{json, Value};

use super::accounts::{register_or_login, sign_in_admin, SIGNUP_PARALLELISM_REQUESTS, UNAUTHENTICATED_CODE};
use super::{Next, Request, Verdict, NAME_PREFIX};
use crate::stats::{format_errors, Stats};

/// Default number of units put on sale.
const STOCK_DEFAULT_UNITS: u32 = 10_000;

/// Default per-buyer limit; as large as the default stock, so that by default the run ends by
/// selling out rather than by every buyer reaching its limit.
const PER_USER_LIMIT_DEFAULT_UNITS: u32 = 10_000;

/// Default units per purchase.
const QUANTITY_DEFAULT_UNITS: u32 = 1;

/// Largest stock, limit or quantity accepted, because GraphQL `Int` is a signed 32-bit integer.
const GRAPHQL_INT_MAX: i64 = i32::MAX as i64;

/// Default time from the sale's creation to its opening: long enough for the workers to be
/// waiting when it opens, so that the burst hits the opening itself.
const OPEN_DELAY_DEFAULT_MS: u64 = 2_000;

/// Longest accepted opening delay, which bounds how long the workers wait before the burst.
const OPEN_DELAY_MAX_MS: u64 = 3_600_000;

/// How many purchases of unknown outcome are re-sent at once after the run.
const SETTLE_PARALLELISM_REQUESTS: usize = 16;

/// A line of registration progress is printed every this many buyers, since registering
/// thousands of buyers takes a while.
const SIGNUP_PROGRESS_EVERY_BUYERS: usize = 500;

/// Price of the product the scenario creates; any valid price would do.
pub(crate) const PRODUCT_PRICE_CENTS: u32 = 1_999;

/// The error codes of the contract this scenario acts on.
const SOLD_OUT_CODE: &str = "SOLD_OUT";
const SALE_NOT_OPEN_CODE: &str = "SALE_NOT_OPEN";
const LIMIT_EXCEEDED_CODE: &str = "LIMIT_EXCEEDED";

/// Error codes after which the purchase certainly did not happen. Anything else (a timeout, a
/// dropped connection, UNAVAILABLE, INTERNAL, a malformed answer) leaves the outcome unknown,
/// since the server may have committed the order before the answer was lost.
pub(crate) const REFUSAL_CODES: [&str; 8] = [
    SOLD_OUT_CODE,
    SALE_NOT_OPEN_CODE,
    LIMIT_EXCEEDED_CODE,
    "NOT_FOUND",
    "INVALID_INPUT",
    UNAUTHENTICATED_CODE,
    "FORBIDDEN",
    "RATE_LIMITED",
];

/// Flags of the `purchase-burst` scenario.
#[derive(Args, Debug)]
pub(crate) struct BurstArgs {
    /// Units put on sale.
    #[arg(long, default_value_t = STOCK_DEFAULT_UNITS,
          value_parser = clap::value_parser!(u32).range(1..=GRAPHQL_INT_MAX))]
    pub stock: u32,
    /// Most units one buyer may buy.
    #[arg(long, default_value_t = PER_USER_LIMIT_DEFAULT_UNITS,
          value_parser = clap::value_parser!(u32).range(1..=GRAPHQL_INT_MAX))]
    pub per_user_limit: u32,
    /// Units each purchase asks for.
    #[arg(long, default_value_t = QUANTITY_DEFAULT_UNITS,
          value_parser = clap::value_parser!(u32).range(1..=GRAPHQL_INT_MAX))]
    pub quantity: u32,
    /// Time from the sale's creation (the end of setup) to its opening; the measured window
    /// starts at the opening. 0 creates the sale without a start time and opens it with
    /// `startSale` at once.
    #[arg(long, default_value_t = OPEN_DELAY_DEFAULT_MS,
          value_parser = clap::value_parser!(u64).range(0..=OPEN_DELAY_MAX_MS))]
    pub open_delay_ms: u64,
    /// Account that creates the product and the sale. It must be the first account the cluster
    /// ever registered (the ADMIN); it is registered if it cannot sign in.
    #[arg(long, env = "LOADGEN_ADMIN_USER")]
    pub admin_user: String,
    /// Password of the admin account.
    #[arg(long, env = "LOADGEN_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: String,
}

/// A flash sale set up and ready for its burst.
pub(crate) struct Burst {
    run_id: String,
    product_id: String,
    sale_id: String,
    stock: u32,
    per_user_limit: u32,
    quantity: u32,
    open_delay_ms: u64,
    /// Bearer token of worker `i`'s buyer at index `i`.
    tokens: Vec<Arc<str>>,
    /// When the sale opens, on this process's clock.
    opens_at: Instant,
}

impl Burst {
    /// When the sale opens, which is when measuring starts.
    pub fn opens_at(&self) -> Instant {
        self.opens_at
    }

    /// The scenario's parameters, for reports.
    pub fn params(&self) -> Value {
        json!({
            "run_id": self.run_id,
            "product_id": self.product_id,
            "sale_id": self.sale_id,
            "stock": self.stock,
            "per_user_limit": self.per_user_limit,
            "quantity": self.quantity,
            "open_delay_ms": self.open_delay_ms,
            "buyers": self.tokens.len(),
        })
    }

    /// Purchase number `seq` of worker `worker`, as that worker's buyer.
    pub fn request(&self, worker: usize, seq: u64) -> Request {
        Request {
            query: ops::PURCHASE_MUTATION,
            variables: ops::purchase_variables(
                &self.sale_id,
                self.quantity,
                &idempotency_key(&self.run_id, &self.sale_id, worker, seq),
            ),
            bearer: Some(self.tokens[worker].clone()),
        }
    }
}

/// What an answer to a purchase means for the worker that sent it.
pub(crate) fn judge(result: Result<Value, ClientError>) -> Verdict {
    match result.and_then(|data| ops::field::<ops::Order>(data, "purchase")) {
        Ok(order) => Verdict { error_code: None, units: order.quantity, next: Next::Advance },
        Err(e) => {
            let code = e.code();
            let next = next_after_error(&code);
            Verdict { error_code: Some(code), units: 0, next }
        }
    }
}

/// How a worker goes on after a purchase failed with `code`.
fn next_after_error(code: &str) -> Next {
    match code {
        // Stock only goes down and a buyer's total only up, so once either refuses this
        // quantity, every later purchase of the worker would be refused too.
        SOLD_OUT_CODE | LIMIT_EXCEEDED_CODE => Next::Stop,
        SALE_NOT_OPEN_CODE => Next::AwaitWindow,
        _ if REFUSAL_CODES.contains(&code) => Next::Advance,
        _ => Next::Repeat,
    }
}

/// The name of buyer `index` of a run; the `b` keeps buyers apart from the run's other names.
fn buyer_name(run_id: &str, index: usize) -> String {
    format!("{NAME_PREFIX}{run_id}b{index}")
}

/// The password of every buyer of a run. It is derived from the run id rather than random so
/// that a rerun with the same `--run-id` can sign the existing buyers in again; these accounts
/// guard nothing.
fn buyer_password(run_id: &str) -> String {
    format!("{NAME_PREFIX}-{run_id}-buyer-password")
}

/// The idempotency key of worker `worker`'s purchase `seq`. The server scopes keys per buyer and
/// not per sale, and buyers are reused by reruns with the same run id, so the sale id is part of
/// the key; the worker and sequence numbers come last, dash-separated, so distinct pairs give
/// distinct keys.
fn idempotency_key(run_id: &str, sale_id: &str, worker: usize, seq: u64) -> String {
    format!("{run_id}-{sale_id}-{worker}-{seq}")
}

/// Formats `t` as an RFC 3339 UTC timestamp with milliseconds, e.g. `2024-02-29T12:34:56.000Z`;
/// written out here because the crate has no date library and needs nothing else of one.
fn rfc3339_utc(t: SystemTime) -> String {
    const SECS_PER_DAY: u64 = 86_400;
    let since_epoch = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since_epoch.as_secs();
    let (year, month, day) = civil_from_days(secs / SECS_PER_DAY);
    let of_day = secs % SECS_PER_DAY;
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        of_day / 3_600,
        of_day % 3_600 / 60,
        of_day % 60,
        since_epoch.subsec_millis()
    )
}

/// The proleptic Gregorian date `days` days after 1970-01-01, by Howard Hinnant's
/// `civil_from_days`, which counts in 400-year eras of 146,097 days starting on March 1st so
/// that the leap day falls at the end of each year.
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    const DAYS_PER_ERA: u64 = 146_097;
    // 1970-01-01 is day 719,468 counted from 0000-03-01.
    let z = days + 719_468;
    let era = z / DAYS_PER_ERA;
    let day_of_era = z % DAYS_PER_ERA;
    let year_of_era = (day_of_era - day_of_era / 1_460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_from_march = (5 * day_of_year + 2) / 153;
    let day = day_of_year - (153 * month_from_march + 2) / 5 + 1;
    let month = if month_from_march < 10 { month_from_march + 3 } else { month_from_march - 9 };
    let year = year_of_era + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

/// Registers (or signs in) buyers `0..count` of the run, spread over the nodes, and returns
/// their tokens in order. Fails if any buyer cannot sign in, since every worker needs one.
async fn register_buyers(client: &Client, run_id: &str, count: usize) -> anyhow::Result<Vec<Arc<str>>> {
    let started = Instant::now();
    eprintln!("registering {count} buyers, {SIGNUP_PARALLELISM_REQUESTS} at a time");
    let password = buyer_password(run_id);
    let mut tokens: Vec<Option<Arc<str>>> = vec![None; count];
    let mut errors = BTreeMap::<String, u64>::new();
    let mut first_error = None;
    let mut answers = stream::iter(0..count)
        .map(|index| {
            let (name, password) = (buyer_name(run_id, index), &password);
            async move { (index, register_or_login(client, index, &name, password).await) }
        })
        .buffer_unordered(SIGNUP_PARALLELISM_REQUESTS);
    let mut done = 0;
    while let Some((index, answer)) = answers.next().await {
        match answer {
            Ok(auth) => tokens[index] = Some(auth.token.into()),
            Err(e) => {
                *errors.entry(e.code()).or_default() += 1;
                first_error.get_or_insert_with(|| format!("{}: {e}", buyer_name(run_id, index)));
            }
        }
        done += 1;
        if done % SIGNUP_PROGRESS_EVERY_BUYERS == 0 {
            eprintln!("  {done} of {count} buyers");
        }
    }
    if let Some(first) = first_error {
        let failed: u64 = errors.values().sum();
        bail!("{failed} of {count} buyers could not sign in ({}); first: {first}", format_errors(&errors));
    }
    eprintln!("registered {count} buyers in {:.1} s", started.elapsed().as_secs_f64());
    Ok(tokens.into_iter().flatten().collect())
}

/// Reads the new sale LINEARIZABLE through each node in turn (the retrying client moves on from
/// a node that is down) and checks its full stock. A linearizable read makes the answering node
/// catch up first, so no node answers NOT_FOUND in the burst merely for lagging behind, and the
/// sale query is known to work before the clock starts.
pub(crate) async fn check_sale_on_every_node(client: &Client, sale_id: &str, stock: u32) -> anyhow::Result<()> {
    for node in 0..client.node_count() {
        let sale = client
            .sale_linearizable(node, sale_id)
            .await
            .with_context(|| format!("reading sale {sale_id} on node {node}"))?
            .with_context(|| format!("node {node} does not know sale {sale_id} right after its creation"))?;
        if sale.stock != i64::from(stock) || sale.sold != 0 {
            bail!(
                "new sale {sale_id} reads stock {} and sold {} on node {node}; expected {stock} and 0",
                sale.stock,
                sale.sold
            );
        }
    }
    Ok(())
}

/// Runs the scenario's setup: admin, buyers (one per worker), product and sale. The sale is
/// created last so that the opening delay is not eaten up by registering the buyers.
pub(crate) async fn setup(client: &Client, args: &BurstArgs, buyers: usize, run_id: String) -> anyhow::Result<Burst> {
    if args.quantity > args.per_user_limit || args.quantity > args.stock {
        bail!(
            "--quantity {} exceeds --per-user-limit {} or --stock {}: every purchase would be refused",
            args.quantity,
            args.per_user_limit,
            args.stock
        );
    }
    let reachable = u64::from(args.per_user_limit) * buyers as u64;
    if reachable < u64::from(args.stock) {
        eprintln!(
            "note: {buyers} buyers may buy at most {reachable} of {} units, so the run ends by limits or by \
             duration, not by selling out",
            args.stock
        );
    }
    // Setup retries UNAVAILABLE on other nodes. A retried creation whose first answer was lost
    // may leave an unused extra product or sale behind, which is harmless: only the returned
    // ids are used.
    let setup_client = client.clone().with_retries(true);
    let admin_token = sign_in_admin(&setup_client, &args.admin_user, &args.admin_password).await?;
    let tokens = register_buyers(&setup_client, &run_id, buyers).await?;
    let admin = setup_client.clone().with_bearer(admin_token);
    let product = admin
        .create_product(
            0,
            &CreateProductInput {
                name: format!("{NAME_PREFIX}{run_id} flash sale"),
                description: "Created by loadgen purchase-burst".to_owned(),
                price_cents: PRODUCT_PRICE_CENTS,
            },
        )
        .await
        .context("creating the product")?;

    let delay = Duration::from_millis(args.open_delay_ms);
    let scheduled_opening = Instant::now() + delay;
    let input = CreateSaleInput {
        product_id: product.id.clone(),
        stock: args.stock,
        starts_at: (args.open_delay_ms > 0).then(|| rfc3339_utc(SystemTime::now() + delay)),
        ends_at: None,
        per_user_limit: args.per_user_limit,
    };
    let sale = admin.create_sale(0, &input).await.context("creating the sale")?;
    check_sale_on_every_node(&setup_client, &sale.id, args.stock).await?;
    let opens_at = if args.open_delay_ms == 0 {
        admin.start_sale(0, &sale.id).await.context("starting the sale")?;
        Instant::now()
    } else {
        let late = Instant::now().saturating_duration_since(scheduled_opening);
        if !late.is_zero() {
            eprintln!(
                "warning: the sale opened {} ms before setup finished, so the burst misses the opening; \
                 raise --open-delay-ms",
                late.as_millis()
            );
        }
        scheduled_opening
    };
    eprintln!(
        "sale {} of product {} opens in {} ms",
        sale.id,
        product.id,
        opens_at.saturating_duration_since(Instant::now()).as_millis()
    );
    Ok(Burst {
        run_id,
        product_id: product.id,
        sale_id: sale.id,
        stock: args.stock,
        per_user_limit: args.per_user_limit,
        quantity: args.quantity,
        open_delay_ms: args.open_delay_ms,
        tokens,
        opens_at,
    })
}

/// The scenario's own part of the report, flattened into it.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    /// Units acknowledged by successful purchase answers over the whole run: before the
    /// opening, in the measured window, and when settling unknown outcomes afterwards.
    pub sold_by_responses: u64,
    /// Successful purchases over the whole run.
    pub orders: u64,
    /// Purchases answered SALE_NOT_OPEN before the opening time; not measured.
    pub not_open_before_open: u64,
    /// Purchases whose outcome was unknown when their worker stopped and was settled afterwards
    /// by re-sending them with the same idempotency key.
    pub settled_after_run: u64,
    /// Purchases whose outcome is still unknown after that.
    pub unsettled: u64,
    /// The sale's status, read LINEARIZABLE after the run; null if it could not be read.
    pub sale_status: Option<String>,
    /// The sale's units left, from the same read.
    pub sale_stock: Option<i64>,
    /// The sale's units sold, from the same read.
    pub sale_sold: Option<i64>,
    /// What is wrong with the accounting; empty when the sale and the answers agree.
    pub accounting_problems: Vec<String>,
}

/// Settles the purchases whose outcome is unknown, reads the sale back and checks it against
/// the answers. `stats` holds the merged outcomes of the run.
pub(crate) async fn finish(client: &Client, burst: &Burst, stats: &Stats) -> Summary {
    let client = client.clone().with_retries(true);
    let settle_one = |&(worker, seq): &(usize, u64)| {
        let request = burst.request(worker, seq);
        let client = &client;
        // The same idempotency key returns the order if the first attempt made one, and
        // otherwise buys now; either way the answer settles the outcome.
        async move {
            judge(client.execute_retrying(worker, request.query, request.variables, request.bearer.as_deref()).await)
        }
    };
    let verdicts: Vec<Verdict> =
        stream::iter(&stats.unsettled).map(settle_one).buffer_unordered(SETTLE_PARALLELISM_REQUESTS).collect().await;
    let mut sold_by_responses = stats.units;
    let mut orders = stats.acknowledged;
    let mut unsettled = 0;
    for verdict in &verdicts {
        sold_by_responses += verdict.units;
        orders += u64::from(verdict.error_code.is_none());
        unsettled += u64::from(verdict.next == Next::Repeat);
    }
    let unsettled_units = unsettled * u64::from(burst.quantity);

    let sale = client.sale_linearizable(0, &burst.sale_id).await;
    let accounting_problems = match &sale {
        Ok(Some(sale)) => accounting_problems(u64::from(burst.stock), sold_by_responses, unsettled_units, sale),
        Ok(None) => vec![format!("sale {} is gone after the run", burst.sale_id)],
        Err(e) => vec![format!("cannot read sale {} after the run to check it: {e}", burst.sale_id)],
    };
    let sale = sale.ok().flatten();
    Summary {
        sold_by_responses,
        orders,
        not_open_before_open: stats.early_refusals,
        settled_after_run: verdicts.len() as u64 - unsettled,
        unsettled,
        sale_status: sale.as_ref().map(|s| s.status.clone()),
        sale_stock: sale.as_ref().map(|s| s.stock),
        sale_sold: sale.as_ref().map(|s| s.sold),
        accounting_problems,
    }
}

/// Compares the sale read after the run with the units the buyers were told they bought.
///
/// The sale must count exactly the acknowledged units: fewer means acknowledged orders were
/// lost, more means units left the stock without an acknowledged order (an oversell, unless
/// purchases of unknown outcome, worth up to `unsettled_units`, explain it). Independently,
/// stock and sold must add up to the initial stock.
fn accounting_problems(initial_stock: u64, sold_by_responses: u64, unsettled_units: u64, sale: &Sale) -> Vec<String> {
    let mut problems = Vec::new();
    let acknowledged = i128::from(sold_by_responses);
    let sold = i128::from(sale.sold);
    if sold < acknowledged {
        problems.push(format!(
            "lost orders: answers acknowledged {sold_by_responses} units but the sale counts {} sold",
            sale.sold
        ));
    } else if sold > acknowledged {
        let excess = sold - acknowledged;
        let explained = if excess <= i128::from(unsettled_units) {
            format!(" (purchases of unknown outcome, up to {unsettled_units} units, may account for them)")
        } else {
            String::new()
        };
        problems.push(format!(
            "the sale counts {} sold but answers acknowledged only {sold_by_responses}: {excess} units sold \
             without an acknowledged order{explained}",
            sale.sold
        ));
    }
    let total = i128::from(sale.stock) + sold;
    if total != i128::from(initial_stock) {
        problems.push(format!(
            "stock {} + sold {} = {total}, not the initial stock {initial_stock}",
            sale.stock, sale.sold
        ));
    }
    if sold > i128::from(initial_stock) || sale.stock < 0 {
        problems.push(format!("oversell: {} sold of an initial stock of {initial_stock}", sale.sold));
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn sale(stock: i64, sold: i64) -> Sale {
        Sale { id: "1".into(), status: "SOLD_OUT".into(), stock, sold }
    }

    #[test]
    fn idempotency_keys_are_distinct_per_worker_seq_and_sale() {
        let mut seen = HashSet::new();
        for sale_id in ["7", "71"] {
            for worker in 0..100 {
                for seq in 0..200 {
                    let key = idempotency_key("abcde", sale_id, worker, seq);
                    assert!(seen.insert(key), "duplicate for {sale_id} {worker} {seq}");
                }
            }
        }
        assert_ne!(idempotency_key("ab", "7", 1, 11), idempotency_key("ab", "7", 11, 1));
        // The same request repeated gets the same key, which is what settles unknown outcomes.
        assert_eq!(idempotency_key("ab", "7", 3, 4), idempotency_key("ab", "7", 3, 4));
    }

    #[test]
    fn idempotency_keys_fit_the_server_limit_at_the_extremes() {
        // The server accepts keys of 1 to 128 bytes; a UUID is the longest plausible sale id.
        let key = idempotency_key("abcdefgh", "123e4567-e89b-12d3-a456-426614174000", 9_999, u64::MAX);
        assert!(key.len() <= 128, "{} bytes: {key}", key.len());
    }

    #[test]
    fn buyer_names_and_passwords_meet_the_account_rules() {
        let longest = buyer_name("abcdefgh", 9_999);
        assert!((3..=30).contains(&longest.len()), "{longest}");
        assert!(longest.chars().all(|c| c.is_ascii_alphanumeric()), "{longest}");
        assert_ne!(buyer_name("ab", 1), buyer_name("ab", 11));
        assert!((8..=128).contains(&buyer_password("a").len()));
        assert!((8..=128).contains(&buyer_password("abcdefgh").len()));
    }

    #[test]
    fn errors_decide_how_a_worker_goes_on() {
        assert_eq!(next_after_error("SOLD_OUT"), Next::Stop);
        assert_eq!(next_after_error("LIMIT_EXCEEDED"), Next::Stop);
        assert_eq!(next_after_error("SALE_NOT_OPEN"), Next::AwaitWindow);
        for code in ["NOT_FOUND", "INVALID_INPUT", "RATE_LIMITED"] {
            assert_eq!(next_after_error(code), Next::Advance, "{code}");
        }
        // The order may have been committed before these answers, so the key is kept.
        for code in ["UNAVAILABLE", "INTERNAL", "TIMEOUT", "TRANSPORT", "DECODE", "HTTP_502"] {
            assert_eq!(next_after_error(code), Next::Repeat, "{code}");
        }
    }

    #[test]
    fn judge_counts_units_from_the_answer() {
        let ok = judge(Ok(json!({"purchase": {"id": "9", "quantity": 3}})));
        assert_eq!((ok.error_code, ok.units, ok.next), (None, 3, Next::Advance));
        let malformed = judge(Ok(json!({"purchase": {"id": "9"}})));
        assert_eq!((malformed.error_code.as_deref(), malformed.next), (Some("DECODE"), Next::Repeat));
        let sold_out = judge(Err(ClientError::Graphql { code: "SOLD_OUT".into(), message: String::new() }));
        assert_eq!((sold_out.units, sold_out.next), (0, Next::Stop));
    }

    #[test]
    fn accounting_passes_when_sale_and_answers_agree() {
        assert!(accounting_problems(100, 100, 0, &sale(0, 100)).is_empty());
        assert!(accounting_problems(100, 40, 5, &sale(60, 40)).is_empty());
    }

    #[test]
    fn accounting_flags_lost_orders() {
        let problems = accounting_problems(100, 100, 0, &sale(1, 99));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("lost orders"), "{problems:?}");
    }

    #[test]
    fn accounting_flags_unacknowledged_sales_and_names_unknown_outcomes() {
        let problems = accounting_problems(100, 98, 0, &sale(0, 100));
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].contains("2 units sold without an acknowledged order"), "{problems:?}");
        assert!(!problems[0].contains("unknown outcome"), "{problems:?}");
        let problems = accounting_problems(100, 98, 2, &sale(0, 100));
        assert!(problems[0].contains("unknown outcome, up to 2 units"), "{problems:?}");
    }

    #[test]
    fn accounting_flags_oversell_and_broken_totals() {
        let problems = accounting_problems(100, 101, 0, &sale(-1, 101));
        assert!(problems.iter().any(|p| p.starts_with("oversell")), "{problems:?}");
        let problems = accounting_problems(100, 50, 0, &sale(49, 50));
        assert_eq!(problems, ["stock 49 + sold 50 = 99, not the initial stock 100"]);
    }

    #[test]
    fn timestamps_are_rfc3339_utc() {
        let at = |secs: u64, millis: u64| rfc3339_utc(UNIX_EPOCH + Duration::from_millis(secs * 1_000 + millis));
        assert_eq!(at(0, 0), "1970-01-01T00:00:00.000Z");
        assert_eq!(at(951_782_400, 5), "2000-02-29T00:00:00.005Z");
        assert_eq!(at(1_709_210_096, 789), "2024-02-29T12:34:56.789Z");
        assert_eq!(at(4_102_444_799, 999), "2099-12-31T23:59:59.999Z");
        assert_eq!(at(253_402_300_799, 0), "9999-12-31T23:59:59.000Z");
    }
}
