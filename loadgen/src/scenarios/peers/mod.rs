//! The `peer` scenario: this project's claim, check and purchase against the systems it is
//! compared with (`bench/compare`), through the same closed-loop driver, histograms and report,
//! so that the figures of both sides come from the same code and compare directly.
//!
//! - etcd, through its v3 HTTP/JSON gateway (`POST /v3/kv/txn`, `/v3/kv/range`, keys and
//!   values in base64): a claim is a transaction "create if absent" (`create_revision == 0`,
//!   then put); a check is a range get, linearizable, or serializable with `--consistency
//!   local` (answered by the member from its own copy); a purchase is a compare-and-swap loop on
//!   the stock key (compare `mod_revision`, put the decremented stock; when the comparison
//!   fails the same transaction returns the current value, so a retry needs no extra read).
//! - PostgreSQL, through tokio-postgres with prepared statements: a claim is a unique `INSERT`,
//!   a check a `SELECT` by primary key, a purchase `UPDATE ... SET stock = stock - q WHERE id =
//!   $1 AND stock >= q`.
//! - Redis, over RESP written here (it is a few lines): `SET NX` for a claim, `GET` for a check,
//!   and for a purchase a Lua script (`EVALSHA`) that decrements the stock if enough is left.
//!
//! Every worker has its own connection (for etcd, its own HTTP client with one keep-alive
//! connection), opened before the clock starts, to the address `worker % addresses` of
//! `--nodes`. A connection that failed or timed out is dropped and reopened by the next request.

mod etcd;
mod postgres;
mod redis;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use futures::stream::{self, StreamExt, TryStreamExt};
use rand::rngs::StdRng;
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};
use tokio::sync::Mutex;

use super::checks::{pool_name, CHECK_NAMES_DEFAULT_COUNT};
use super::claims::claim_name;
use super::{ConsistencyArg, Next, Verdict};
use etcd::{etcd_name_key, EtcdConn};
use postgres::{pg_connect, PgConn, PG_SCHEMA};
use redis::{redis_name_key, Reply, RespConn, REDIS_PURCHASE_SCRIPT};

/// Default units in the stock purchases draw from: more than any run sells, so purchase runs
/// last their whole duration, like `purchase-burst` on a sale of 1,000,000,000 units.
const STOCK_DEFAULT_UNITS: u64 = 1_000_000_000;

/// How many setup writes (pre-claimed names, worker connections) are in flight at once.
const SETUP_PARALLELISM_REQUESTS: usize = 16;

/// The code of a claim refused because the name is already held.
const TAKEN_CODE: &str = "TAKEN";

/// The code of a purchase refused because too little stock is left; the worker stops on it,
/// as `purchase-burst` buyers stop on SOLD_OUT.
const SOLD_OUT_CODE: &str = "SOLD_OUT";

/// The systems the scenario can drive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum System {
    Etcd,
    Postgres,
    Redis,
}

/// The operations, one per scenario of this project they stand for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Op {
    /// Like `claims`: take a distinct, fresh name.
    Claim,
    /// Like `checks`: read a name drawn at random from a pool.
    Check,
    /// Like `purchase-burst`: take `--quantity` units from one shared stock if enough is left.
    Purchase,
}

/// Flags of the `peer` scenario.
#[derive(Args, Debug)]
pub(crate) struct PeerArgs {
    /// The system `--nodes` points at: etcd member client URLs (http://127.0.0.1:2379,...), one
    /// PostgreSQL URL (postgres://user:password@127.0.0.1:5432/db), or one Redis address
    /// (redis://127.0.0.1:6379).
    #[arg(long, value_enum)]
    pub system: System,
    /// The operation each request performs.
    #[arg(long, value_enum)]
    pub op: Op,
    /// Checks: `linearizable`, or `local` for etcd's serializable get. PostgreSQL and Redis keep
    /// one copy and take only `linearizable`.
    #[arg(long, value_enum, default_value = "linearizable")]
    pub consistency: ConsistencyArg,
    /// Checks: how many distinct names they draw from.
    #[arg(long, default_value_t = CHECK_NAMES_DEFAULT_COUNT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    pub names: usize,
    /// Checks: how many of those names to claim before the run, so that some are found.
    #[arg(long, default_value_t = 0)]
    pub pool: usize,
    /// Purchases: units in the stock, set before the run.
    #[arg(long, default_value_t = STOCK_DEFAULT_UNITS, value_parser = clap::value_parser!(u64).range(1..))]
    pub stock: u64,
    /// Purchases: units each purchase takes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    pub quantity: u64,
}

/// Why a request failed, and whether its connection is still usable.
#[derive(Debug)]
struct Failure {
    code: String,
    /// The connection is in an unknown state (an I/O error or a timeout in the middle of a
    /// reply) and must be replaced.
    reconnect: bool,
}

impl Failure {
    /// The system answered and refused; the connection stays.
    fn refused(code: impl Into<String>) -> Self {
        Self { code: code.into(), reconnect: false }
    }

    /// The connection failed; it is dropped.
    fn broken(code: impl Into<String>) -> Self {
        Self { code: code.into(), reconnect: true }
    }
}

/// One worker's connection.
enum Conn {
    Etcd(EtcdConn),
    Postgres(PgConn),
    Redis(RespConn),
}

/// The peer system, its data set up, and one connection slot per worker.
pub(crate) struct Peer {
    system: System,
    op: Op,
    /// etcd checks: serializable rather than linearizable.
    serializable: bool,
    /// Addresses as given, used to connect.
    endpoints: Vec<String>,
    timeout: Duration,
    run_id: String,
    /// Checks: the names drawn from, the first `reserved` of which were claimed before the run.
    names: Vec<String>,
    reserved: usize,
    stock: u64,
    quantity: u64,
    /// The stock's etcd or Redis key.
    stock_key: String,
    /// The stock's PostgreSQL row.
    sale_id: i64,
    /// SHA1 of the Redis purchase script, loaded before the run.
    script_sha: String,
    /// Slot `i` is worker `i`'s alone, so its lock is never contended.
    conns: Vec<Mutex<Option<Conn>>>,
    /// Purchases: transactions or statements sent (etcd retries its compare-and-swap).
    attempts: AtomicU64,
    /// Connections reopened during the run after one failed.
    reconnects: AtomicU64,
    /// Purchases whose connection failed or timed out after sending: they may have bought.
    unknown_outcomes: AtomicU64,
}

/// The scenario's own part of the report.
#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    system: System,
    op: Op,
    /// Connections reopened during the run.
    reconnects: u64,
    /// Purchases: transactions or statements sent; above the purchases made when etcd's
    /// compare-and-swap had to retry.
    #[serde(skip_serializing_if = "Option::is_none")]
    purchase_attempts: Option<u64>,
    /// Purchases: units the successful answers say were bought.
    #[serde(skip_serializing_if = "Option::is_none")]
    sold_by_responses: Option<u64>,
    /// Purchases: failed on a broken connection or a timeout, so they may or may not have bought.
    #[serde(skip_serializing_if = "Option::is_none")]
    unknown_outcomes: Option<u64>,
    /// Purchases: units left, read after the run (linearizable); null if it could not be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    stock_left: Option<Option<u64>>,
    /// Purchases: whether the stock taken (initial minus left) covers the acknowledged units, and
    /// exceeds them by no more than the purchases of unknown outcome could have taken.
    #[serde(skip_serializing_if = "Option::is_none")]
    accounting_ok: Option<bool>,
}

impl Summary {
    /// Whether the stock read back agrees with the acknowledged purchases; true for claims and
    /// checks, which have nothing to check.
    pub fn accounting_is_ok(&self) -> bool {
        self.accounting_ok.unwrap_or(true)
    }

    /// Lines for the report's table.
    pub fn print_table(&self) {
        println!("peer          {:?} {:?}, {} connections reopened", self.system, self.op, self.reconnects);
        if let (Some(attempts), Some(sold)) = (self.purchase_attempts, self.sold_by_responses) {
            let left = self.stock_left.flatten().map_or_else(|| "?".to_owned(), |v| v.to_string());
            let ok = if self.accounting_ok == Some(true) { "ok" } else { "MISMATCH or unknown" };
            let unknown = self.unknown_outcomes.unwrap_or(0);
            println!(
                "purchases     {sold} units acknowledged, {unknown} of unknown outcome, {attempts} attempts, {left} \
                 left: accounting {ok}"
            );
        }
    }
}

impl Peer {
    /// The scenario's parameters, for reports.
    pub fn params(&self) -> Value {
        let mut params = json!({ "system": self.system, "op": self.op, "run_id": self.run_id });
        match self.op {
            Op::Claim => {}
            Op::Check => {
                params["consistency"] = json!(if self.serializable { "SERIALIZABLE" } else { "LINEARIZABLE" });
                params["names"] = json!(self.names.len());
                params["reserved"] = json!(self.reserved);
            }
            Op::Purchase => {
                params["stock"] = json!(self.stock);
                params["quantity"] = json!(self.quantity);
            }
        }
        params
    }

    /// The addresses for reports, without passwords.
    pub fn endpoints_redacted(&self) -> Vec<String> {
        self.endpoints.iter().map(|e| redact(e)).collect()
    }

    /// Sends worker `worker`'s request number `seq` on its own connection and judges the answer.
    pub async fn step(&self, worker: usize, seq: u64, rng: &mut StdRng) -> Verdict {
        let mut slot = self.conns[worker].lock().await;
        let outcome = tokio::time::timeout(self.timeout, self.attempt(&mut slot, worker, seq, rng))
            .await
            .unwrap_or_else(|_| Err(Failure::broken("TIMEOUT")));
        match outcome {
            Ok(units) => Verdict { error_code: None, units, next: Next::Advance },
            Err(failure) => {
                if failure.reconnect {
                    *slot = None;
                    if self.op == Op::Purchase {
                        self.unknown_outcomes.fetch_add(1, Ordering::Relaxed);
                    }
                }
                let next = if failure.code == SOLD_OUT_CODE { Next::Stop } else { Next::Advance };
                Verdict { error_code: Some(failure.code), units: 0, next }
            }
        }
    }

    /// One request; returns the units bought (zero for claims and checks).
    async fn attempt(
        &self,
        slot: &mut Option<Conn>,
        worker: usize,
        seq: u64,
        rng: &mut StdRng,
    ) -> Result<u64, Failure> {
        let conn = match slot {
            Some(conn) => conn,
            None => {
                self.reconnects.fetch_add(1, Ordering::Relaxed);
                slot.insert(self.connect(worker).await.map_err(|_| Failure::broken("CONNECT"))?)
            }
        };
        match (self.op, conn) {
            (Op::Claim, Conn::Etcd(etcd)) => etcd.create_if_absent(&etcd_name_key(&self.claim(worker, seq))).await,
            (Op::Check, Conn::Etcd(etcd)) => etcd.get(&etcd_name_key(self.check(rng)), self.serializable).await,
            (Op::Purchase, Conn::Etcd(etcd)) => etcd.buy(&self.stock_key, self.quantity, &self.attempts).await,
            (_, Conn::Postgres(pg)) => {
                let rows = match self.op {
                    Op::Claim => pg.client.execute(&pg.statement, &[&self.claim(worker, seq)]).await?,
                    Op::Check => u64::from(pg.client.query_opt(&pg.statement, &[&self.check(rng)]).await?.is_some()),
                    Op::Purchase => {
                        self.attempts.fetch_add(1, Ordering::Relaxed);
                        let quantity = i64::try_from(self.quantity).unwrap_or(i64::MAX);
                        pg.client.execute(&pg.statement, &[&self.sale_id, &quantity]).await?
                    }
                };
                match self.op {
                    Op::Check => Ok(0),
                    Op::Claim if rows == 1 => Ok(0),
                    Op::Claim => Err(Failure::refused(TAKEN_CODE)),
                    Op::Purchase if rows == 1 => Ok(self.quantity),
                    Op::Purchase => Err(Failure::refused(SOLD_OUT_CODE)),
                }
            }
            (Op::Claim, Conn::Redis(redis)) => {
                match redis.call(&[b"SET", redis_name_key(&self.claim(worker, seq)).as_bytes(), b"1", b"NX"]).await? {
                    Reply::Simple => Ok(0),
                    _ => Err(Failure::refused(TAKEN_CODE)),
                }
            }
            (Op::Check, Conn::Redis(redis)) => {
                redis.call(&[b"GET", redis_name_key(self.check(rng)).as_bytes()]).await.map(|_| 0)
            }
            (Op::Purchase, Conn::Redis(redis)) => {
                self.attempts.fetch_add(1, Ordering::Relaxed);
                let quantity = self.quantity.to_string();
                let args: [&[u8]; 5] =
                    [b"EVALSHA", self.script_sha.as_bytes(), b"1", self.stock_key.as_bytes(), quantity.as_bytes()];
                match redis.call(&args).await? {
                    Reply::Int(left) if left >= 0 => Ok(self.quantity),
                    Reply::Int(_) => Err(Failure::refused(SOLD_OUT_CODE)),
                    _ => Err(Failure::broken("REDIS_DECODE")),
                }
            }
        }
    }

    /// The fresh name of a claim.
    fn claim(&self, worker: usize, seq: u64) -> String {
        claim_name(&self.run_id, worker, seq)
    }

    /// A name drawn from the checks' pool.
    fn check(&self, rng: &mut StdRng) -> &str {
        &self.names[rng.random_range(0..self.names.len())]
    }

    /// Opens worker `worker`'s connection, ready for the scenario's operation.
    async fn connect(&self, worker: usize) -> anyhow::Result<Conn> {
        let endpoint = &self.endpoints[worker % self.endpoints.len()];
        let conn = match self.system {
            System::Etcd => Conn::Etcd(EtcdConn::new(endpoint, self.timeout)?),
            System::Postgres => {
                let client = pg_connect(endpoint, self.timeout).await?;
                let sql = match self.op {
                    Op::Claim => "INSERT INTO lg_claims (name) VALUES ($1)",
                    Op::Check => "SELECT 1 FROM lg_claims WHERE name = $1",
                    Op::Purchase => "UPDATE lg_sales SET stock = stock - $2 WHERE id = $1 AND stock >= $2",
                };
                let statement = client.prepare(sql).await.context("preparing the statement")?;
                Conn::Postgres(PgConn { client, statement })
            }
            System::Redis => Conn::Redis(RespConn::connect(endpoint, self.timeout).await?),
        };
        Ok(conn)
    }

    /// After the run: reads the stock back and checks it against the acknowledged units.
    pub async fn finish(&self, units: u64) -> Summary {
        let mut summary = Summary {
            system: self.system,
            op: self.op,
            reconnects: self.reconnects.load(Ordering::Relaxed),
            purchase_attempts: None,
            sold_by_responses: None,
            unknown_outcomes: None,
            stock_left: None,
            accounting_ok: None,
        };
        if self.op == Op::Purchase {
            let left = match self.stock_left().await {
                Ok(left) => Some(left),
                Err(e) => {
                    eprintln!("cannot read the stock back after the run: {e:#}");
                    None
                }
            };
            let unknown = self.unknown_outcomes.load(Ordering::Relaxed);
            let unknown_units = unknown.saturating_mul(self.quantity);
            let taken = left.and_then(|left| self.stock.checked_sub(left));
            summary.purchase_attempts = Some(self.attempts.load(Ordering::Relaxed));
            summary.sold_by_responses = Some(units);
            summary.unknown_outcomes = Some(unknown);
            summary.stock_left = Some(left);
            summary.accounting_ok = Some(taken.is_some_and(|taken| (units..=units + unknown_units).contains(&taken)));
        }
        summary
    }

    /// Units left in the stock, read on a fresh connection.
    async fn stock_left(&self) -> anyhow::Result<u64> {
        let endpoint = &self.endpoints[0];
        match self.system {
            System::Etcd => {
                let etcd = EtcdConn::new(endpoint, self.timeout)?;
                let kv = etcd.range(&self.stock_key, false).await.map_err(|f| anyhow::anyhow!("{}", f.code))?;
                Ok(kv.context("the stock key is gone")?.0)
            }
            System::Postgres => {
                let client = pg_connect(endpoint, self.timeout).await?;
                let row = client.query_one("SELECT stock FROM lg_sales WHERE id = $1", &[&self.sale_id]).await?;
                Ok(u64::try_from(row.try_get::<_, i64>(0)?)?)
            }
            System::Redis => {
                let mut redis = RespConn::connect(endpoint, self.timeout).await?;
                match redis.call(&[b"GET", self.stock_key.as_bytes()]).await {
                    Ok(Reply::Bulk(Some(value))) => Ok(std::str::from_utf8(&value)?.parse()?),
                    Ok(_) => bail!("the stock key is gone"),
                    Err(f) => bail!("{}", f.code),
                }
            }
        }
    }
}

/// Checks the flags, sets up the data (pre-claimed names, the stock) and opens one connection
/// per worker; none of it is measured.
pub(crate) async fn setup(
    args: &PeerArgs,
    endpoints: &[String],
    workers: usize,
    timeout: Duration,
    run_id: String,
) -> anyhow::Result<Peer> {
    if endpoints.is_empty() {
        bail!("--nodes is empty");
    }
    if args.pool > args.names {
        bail!("--pool {} exceeds --names {}", args.pool, args.names);
    }
    if args.quantity > args.stock {
        bail!("--quantity {} exceeds --stock {}: every purchase would be refused", args.quantity, args.stock);
    }
    let serializable = matches!(args.consistency, ConsistencyArg::Local);
    if serializable && (args.system != System::Etcd || args.op != Op::Check) {
        bail!("--consistency local applies to etcd checks only");
    }
    let names =
        if args.op == Op::Check { (0..args.names).map(|i| pool_name(&run_id, i)).collect() } else { Vec::new() };
    let stock_key = match args.system {
        System::Etcd => format!("sales/{run_id}/stock"),
        _ => format!("sales:{run_id}:stock"),
    };
    let mut peer = Peer {
        system: args.system,
        op: args.op,
        serializable,
        endpoints: endpoints.to_vec(),
        timeout,
        run_id,
        names,
        reserved: if args.op == Op::Check { args.pool } else { 0 },
        stock: args.stock,
        quantity: args.quantity,
        stock_key,
        sale_id: 0,
        script_sha: String::new(),
        conns: Vec::new(),
        attempts: AtomicU64::new(0),
        reconnects: AtomicU64::new(0),
        unknown_outcomes: AtomicU64::new(0),
    };
    let endpoint = &peer.endpoints[0];
    let reserved = &peer.names[..peer.reserved];
    match peer.system {
        System::Etcd => {
            let etcd = EtcdConn::new(endpoint, timeout)?;
            stream::iter(reserved)
                .map(|name| etcd.put(etcd_name_key(name), "1".to_owned()))
                .buffer_unordered(SETUP_PARALLELISM_REQUESTS)
                .try_collect::<Vec<_>>()
                .await
                .map_err(|f| anyhow::anyhow!("pre-claiming names in etcd: {}", f.code))?;
            if peer.op == Op::Purchase {
                etcd.put(peer.stock_key.clone(), peer.stock.to_string())
                    .await
                    .map_err(|f| anyhow::anyhow!("setting the stock in etcd: {}", f.code))?;
            }
        }
        System::Postgres => {
            let client = pg_connect(endpoint, timeout).await?;
            client.batch_execute(PG_SCHEMA).await.context("creating the tables")?;
            client
                .execute("INSERT INTO lg_claims (name) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING", &[&reserved])
                .await
                .context("pre-claiming names")?;
            if peer.op == Op::Purchase {
                let stock = i64::try_from(peer.stock).context("--stock exceeds PostgreSQL's bigint")?;
                let row = client
                    .query_one("INSERT INTO lg_sales (stock) VALUES ($1) RETURNING id", &[&stock])
                    .await
                    .context("creating the stock row")?;
                peer.sale_id = row.try_get(0)?;
            }
        }
        System::Redis => {
            let mut redis = RespConn::connect(endpoint, timeout).await?;
            let redis_err = |f: Failure| anyhow::anyhow!("setting up Redis: {}", f.code);
            for name in reserved {
                redis.call(&[b"SET", redis_name_key(name).as_bytes(), b"1"]).await.map_err(redis_err)?;
            }
            if peer.op == Op::Purchase {
                let stock = peer.stock.to_string();
                redis.call(&[b"SET", peer.stock_key.as_bytes(), stock.as_bytes()]).await.map_err(redis_err)?;
                match redis.call(&[b"SCRIPT", b"LOAD", REDIS_PURCHASE_SCRIPT.as_bytes()]).await.map_err(redis_err)? {
                    Reply::Bulk(Some(sha)) => peer.script_sha = String::from_utf8(sha)?,
                    other => bail!("SCRIPT LOAD answered {other:?}"),
                }
            }
        }
    }
    if peer.reserved > 0 {
        eprintln!("pre-claimed {} of {} names", peer.reserved, peer.names.len());
    }
    let conns: Vec<Conn> = stream::iter(0..workers)
        .map(|worker| peer.connect(worker))
        .buffered(SETUP_PARALLELISM_REQUESTS)
        .try_collect()
        .await
        .context("opening the workers' connections")?;
    peer.conns = conns.into_iter().map(|conn| Mutex::new(Some(conn))).collect();
    eprintln!("{workers} connections open to {:?}", peer.system);
    Ok(peer)
}

/// An address with its password, if any, replaced by `***`.
fn redact(endpoint: &str) -> String {
    match reqwest::Url::parse(endpoint) {
        Ok(mut url) if url.password().is_some() => match url.set_password(Some("***")) {
            Ok(()) => url.to_string(),
            Err(()) => "(unprintable address)".to_owned(),
        },
        _ => endpoint.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_redacted() {
        assert_eq!(redact("postgres://bench:secret@127.0.0.1:5432/db"), "postgres://bench:***@127.0.0.1:5432/db");
        assert_eq!(redact("http://127.0.0.1:2379"), "http://127.0.0.1:2379");
        assert_eq!(redact("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
    }
}
