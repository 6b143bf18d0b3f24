//! What one client may spend: bytes per argument, cost per field, password guesses per account.
//!
//! Every request, over HTTP or a WebSocket, passes [`Guard`], an extension that runs before any
//! resolver:
//! - every string argument (inline or in the variables) is at most
//!   [`STRING_ARGUMENT_BYTES_MAX`], and every list at most [`LIST_ARGUMENT_ITEMS_MAX`] items, so
//!   nothing oversized is ever hashed, canonicalised or proposed (each domain then applies its
//!   own, tighter rule);
//! - at most [`PASSWORD_FIELDS_PER_REQUEST_MAX`] `login` or `register` per request: aliases
//!   cannot turn one request into hundreds of password guesses;
//! - the request's cost, the sum of its root fields' [`field_cost`], aliases and fragments
//!   included, plus [`COST_PER_DOCUMENT_KIB`], is charged to the client's token bucket
//!   ([`Limiter`]); over budget it is refused with RATE_LIMITED and `retryAfterMs`, and a cost
//!   over the whole burst, which could never be paid, with INVALID_INPUT. A document the checks
//!   above refuse is charged its parse.
//!
//! A client is its IP address, or for IPv6 its /64 ([`ClientKey`]): one host usually holds a
//! whole /64, so keying by address would give it 2^64 buckets. The transports put the key in the
//! request data; a request without one (tests calling `schema.execute`) is not rate limited.
//!
//! [`LoginThrottle`] bounds failed logins per account; [`Reservations`] the anonymous
//! reservations per client. All of this is per node: a client spreading over N nodes gets N
//! budgets (docs/SECURITY.md).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextParseQuery, NextPrepareRequest};
use async_graphql::parser::types::{ExecutableDocument, OperationType, Selection, SelectionSet};
use async_graphql::{ErrorExtensions, Request, ServerError, ServerResult, Value, Variables};

use crate::error::code;

/// Longest string argument, in bytes. The longest text a domain accepts is a product
/// description (5,000 characters, up to 20,000 bytes); every domain rule is tighter than this.
pub const STRING_ARGUMENT_BYTES_MAX: usize = 32 * 1024;
/// Most items in one list argument (a chat's participants are at most 1,000).
pub const LIST_ARGUMENT_ITEMS_MAX: usize = 1_000;
/// Most `login` and `register` fields in one request.
pub const PASSWORD_FIELDS_PER_REQUEST_MAX: usize = 1;
/// Cost of a root field that reads.
pub const COST_READ: u64 = 1;
/// Cost of a root field that proposes a command (a log entry share, a replication, an apply).
pub const COST_WRITE: u64 = 5;
/// Cost of a subscription (a feed follower for as long as it lives).
pub const COST_SUBSCRIBE: u64 = 10;
/// Cost of `searchTweets`: an index walk of up to its row budget.
pub const COST_SEARCH: u64 = 50;
/// Cost of `login` and `register`: an argon2id hash, about 15 ms of a core and 19 MiB.
pub const COST_PASSWORD: u64 = 200;
/// Cost of each KiB of a request body (charged by the HTTP transport) and of a document's text
/// (charged here, for its parse, over every transport): a 40 KiB document of 500 aliases, or a
/// body of 256 KiB, costs its reading even when it is then refused.
pub const COST_PER_DOCUMENT_KIB: u64 = 1;
/// Most clients the limiter tracks; past this, clients whose buckets are full are forgotten.
pub const RATE_LIMIT_CLIENTS_MAX: usize = 100_000;

/// Who a request comes from, for limits: an IPv4 address, or an IPv6 /64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientKey(u128);

impl ClientKey {
    /// The key of a client at `ip` (IPv4-mapped IPv6 addresses count as IPv4).
    pub fn of(ip: IpAddr) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey(u128::from(u32::from(v4))),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey(u128::from(u32::from(v4))),
                // The /64 prefix, with bit 32 set: IPv4 keys are below 2^32, so no IPv6 key
                // equals an IPv4 one.
                None => ClientKey((u128::from(v6) & !((1u128 << 64) - 1)) | (1 << 32)),
            },
        }
    }
}

/// The cost of root field `name` of an operation of type `ty`.
pub fn field_cost(ty: OperationType, name: &str) -> u64 {
    match (ty, name) {
        (_, "login" | "register") => COST_PASSWORD,
        (_, "searchTweets") => COST_SEARCH,
        (_, n) if n.starts_with("__") => COST_READ,
        (OperationType::Query, _) => COST_READ,
        (OperationType::Mutation, _) => COST_WRITE,
        (OperationType::Subscription, _) => COST_SUBSCRIBE,
    }
}

/// A token bucket per client: `rate` cost units per second, bursts up to twice that.
///
/// A std mutex around one map: the critical section is a few arithmetic operations, far
/// shorter than a GraphQL request, and never spans an await.
pub struct Limiter {
    rate_per_sec: f64,
    buckets: Mutex<HashMap<ClientKey, (f64, Instant)>>,
    refused: AtomicU64,
}

impl Limiter {
    /// A limiter allowing `rate_per_sec` cost units per client; 0 allows everything.
    pub fn new(rate_per_sec: u32) -> Self {
        Limiter { rate_per_sec: f64::from(rate_per_sec), buckets: Mutex::default(), refused: AtomicU64::new(0) }
    }

    /// Takes `cost` from `client`'s bucket, or says how long to wait (ms) until it could.
    pub fn charge(&self, client: ClientKey, cost: u64) -> Result<(), u64> {
        if self.rate_per_sec == 0.0 {
            return Ok(());
        }
        let burst = self.rate_per_sec * 2.0;
        let now = Instant::now();
        let mut buckets = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        if buckets.len() >= RATE_LIMIT_CLIENTS_MAX && !buckets.contains_key(&client) {
            // Forget clients whose buckets have refilled: they are indistinguishable from new ones.
            let rate = self.rate_per_sec;
            buckets.retain(|_, (tokens, at)| *tokens + now.duration_since(*at).as_secs_f64() * rate < burst);
        }
        let (tokens, at) = buckets.entry(client).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate_per_sec).min(burst);
        *at = now;
        let cost = cost as f64;
        if *tokens >= cost {
            *tokens -= cost;
            Ok(())
        } else {
            self.refused.fetch_add(1, Ordering::Relaxed);
            // A cost above the burst can never be paid: say when a full bucket would be back.
            let missing = (cost.min(burst) - *tokens).max(0.0);
            Err(((missing / self.rate_per_sec) * 1000.0).ceil().max(1.0) as u64)
        }
    }

    /// The most one client may spend at once (twice the rate), or None without a limit.
    pub fn burst(&self) -> Option<u64> {
        (self.rate_per_sec > 0.0).then_some((self.rate_per_sec * 2.0) as u64)
    }

    /// Requests refused so far, for metrics.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

/// RATE_LIMITED with a retry hint.
pub fn rate_limited(message: impl Into<String>, retry_after_ms: u64) -> async_graphql::Error {
    async_graphql::Error::new(message.into()).extend_with(move |_, e| {
        e.set("code", code::RATE_LIMITED);
        e.set("retryAfterMs", retry_after_ms);
    })
}

/// The index rows a request's heavy reads may still walk, shared by all its fields (aliases
/// cannot multiply it). Put in every request's data by [`Guard`].
#[derive(Debug)]
pub struct RowBudget(AtomicUsize);

/// Index rows one request's searches may walk in all.
pub const ROWS_PER_REQUEST_MAX: usize = 200_000;

impl RowBudget {
    /// A full budget.
    pub fn new() -> Self {
        RowBudget(AtomicUsize::new(ROWS_PER_REQUEST_MAX))
    }

    /// What is left.
    pub fn left(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }

    /// Records `rows` walked.
    pub fn spend(&self, rows: usize) {
        let _ = self.0.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |left| Some(left.saturating_sub(rows)));
    }
}

impl Default for RowBudget {
    fn default() -> Self {
        RowBudget::new()
    }
}

/// The extension that enforces this module's request limits (see the module documentation).
pub struct Guard {
    /// The limiter requests are charged to; shared by every schema of the node.
    pub limiter: Arc<Limiter>,
}

impl ExtensionFactory for Guard {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(GuardRequest { limiter: self.limiter.clone() })
    }
}

struct GuardRequest {
    limiter: Arc<Limiter>,
}

fn too_big(message: String) -> ServerError {
    async_graphql::Error::new(message)
        .extend_with(|_, e| e.set("code", code::INVALID_INPUT))
        .into_server_error(Default::default())
}

/// Checks one argument value (a literal or a variable's value) against the byte and item limits.
fn check_value(value: &Value, name: &str) -> Result<(), ServerError> {
    match value {
        Value::String(s) if s.len() > STRING_ARGUMENT_BYTES_MAX => Err(too_big(format!(
            "{name}: a string argument may be at most {STRING_ARGUMENT_BYTES_MAX} bytes, got {}",
            s.len()
        ))),
        Value::List(items) if items.len() > LIST_ARGUMENT_ITEMS_MAX => Err(too_big(format!(
            "{name}: a list argument may hold at most {LIST_ARGUMENT_ITEMS_MAX} items, got {}",
            items.len()
        ))),
        Value::List(items) => items.iter().try_for_each(|v| check_value(v, name)),
        Value::Object(fields) => fields.iter().try_for_each(|(k, v)| check_value(v, k.as_str())),
        _ => Ok(()),
    }
}

/// Checks every literal argument of `set` (fragments are checked where they are defined).
fn check_literals(set: &SelectionSet) -> Result<(), ServerError> {
    for item in &set.items {
        match &item.node {
            Selection::Field(f) => {
                for (name, value) in &f.node.arguments {
                    // Variables are checked with their values; a literal converts as is.
                    if let Ok(v) = value.node.clone().into_const_with(|_| Err::<Value, ()>(())) {
                        check_value(&v, name.node.as_str())?;
                    }
                }
                check_literals(&f.node.selection_set.node)?;
            }
            Selection::InlineFragment(i) => check_literals(&i.node.selection_set.node)?,
            Selection::FragmentSpread(_) => {}
        }
    }
    Ok(())
}

/// The cost and the password fields of the operations in `doc`, fragments followed.
fn cost_of(doc: &ExecutableDocument) -> (u64, usize) {
    fn walk(set: &SelectionSet, doc: &ExecutableDocument, ty: OperationType, depth: usize, out: &mut (u64, usize)) {
        // Fragment cycles are refused by validation, which runs later; the depth cap keeps this
        // walk finite anyway.
        if depth > 8 {
            return;
        }
        for item in &set.items {
            match &item.node {
                Selection::Field(f) => {
                    let name = f.node.name.node.as_str();
                    out.0 = out.0.saturating_add(field_cost(ty, name));
                    if matches!(name, "login" | "register") {
                        out.1 += 1;
                    }
                }
                Selection::InlineFragment(i) => walk(&i.node.selection_set.node, doc, ty, depth + 1, out),
                Selection::FragmentSpread(s) => {
                    if let Some(fragment) = doc.fragments.get(&s.node.fragment_name.node) {
                        walk(&fragment.node.selection_set.node, doc, ty, depth + 1, out);
                    }
                }
            }
        }
    }
    let mut out = (0, 0);
    for (_, op) in doc.operations.iter() {
        walk(&op.node.selection_set.node, doc, op.node.ty, 0, &mut out);
    }
    (out.0.max(COST_READ), out.1)
}

#[async_trait::async_trait]
impl Extension for GuardRequest {
    async fn prepare_request(
        &self,
        ctx: &ExtensionContext<'_>,
        mut request: Request,
        next: NextPrepareRequest<'_>,
    ) -> ServerResult<Request> {
        check_variables(&request.variables)?;
        request.data.insert(RowBudget::new());
        next.run(ctx, request).await
    }

    async fn parse_query(
        &self,
        ctx: &ExtensionContext<'_>,
        query: &str,
        variables: &Variables,
        next: NextParseQuery<'_>,
    ) -> ServerResult<ExecutableDocument> {
        let doc = next.run(ctx, query, variables).await?;
        let client = ctx.data_opt::<ClientKey>().copied();
        let parse_cost = query.len() as u64 / 1024 * COST_PER_DOCUMENT_KIB;
        let (fields_cost, password_fields) = cost_of(&doc);
        let refused = |e: ServerError| {
            // A refused document has cost its parse all the same.
            if let Some(client) = client {
                let _ = self.limiter.charge(client, parse_cost);
            }
            Err(e)
        };
        for (_, op) in doc.operations.iter() {
            if let Err(e) = check_literals(&op.node.selection_set.node) {
                return refused(e);
            }
        }
        for fragment in doc.fragments.values() {
            if let Err(e) = check_literals(&fragment.node.selection_set.node) {
                return refused(e);
            }
        }
        if password_fields > PASSWORD_FIELDS_PER_REQUEST_MAX {
            return refused(too_big(format!(
                "a request may hold at most {PASSWORD_FIELDS_PER_REQUEST_MAX} login or register field, got {password_fields}"
            )));
        }
        let cost = fields_cost.saturating_add(parse_cost);
        if let Some(client) = client {
            if self.limiter.burst().is_some_and(|burst| cost > burst) {
                return refused(too_big(format!(
                    "this request costs {cost}, more than a client may spend at once ({}); split it",
                    self.limiter.burst().unwrap_or_default()
                )));
            }
            if let Err(retry_after_ms) = self.limiter.charge(client, cost) {
                return Err(rate_limited(
                    format!("this request costs {cost}, over this client's budget; retry in {retry_after_ms} ms"),
                    retry_after_ms,
                )
                .into_server_error(Default::default()));
            }
        }
        Ok(doc)
    }
}

fn check_variables(variables: &Variables) -> Result<(), ServerError> {
    variables.iter().try_for_each(|(name, value)| check_value(value, name.as_str()))
}

/// Failed logins an account may take from one client within [`LOGIN_FAILURE_WINDOW_MS`].
pub const LOGIN_FAILURES_PER_CLIENT_MAX: u32 = 5;
/// Failed logins an account may take from all clients that never signed in to it, within one
/// window. Past this, only clients that signed in to the account before may try (up to their own
/// limit): a guessing campaign from many addresses locks out itself, not the owner.
pub const LOGIN_FAILURES_PER_ACCOUNT_MAX: u32 = 50;
/// The window of both limits.
pub const LOGIN_FAILURE_WINDOW_MS: u64 = 15 * 60 * 1000;
/// Clients remembered per account as having signed in to it.
pub const LOGIN_TRUSTED_CLIENTS_MAX: usize = 8;
/// How long a successful sign-in keeps a client trusted for its account.
pub const LOGIN_TRUSTED_MS: u64 = 30 * 24 * 3600 * 1000;
/// Accounts whose login failures a node tracks at once. When full, accounts whose windows have
/// ended are forgotten; if none has, a new account's failures go uncounted (the cost limiter and
/// the hash slots still bound the guessing rate) and a warning is logged.
pub const LOGIN_ACCOUNTS_TRACKED_MAX: usize = 200_000;

#[derive(Default)]
struct AccountLogins {
    window_start: Option<Instant>,
    /// Failures within the window from untrusted clients.
    untrusted_failures: u32,
    /// Failures within the window, per client.
    per_client: HashMap<ClientKey, u32>,
    /// Clients that signed in, with when.
    trusted: Vec<(ClientKey, Instant)>,
}

impl AccountLogins {
    fn roll(&mut self, now: Instant) {
        let window = Duration::from_millis(LOGIN_FAILURE_WINDOW_MS);
        if self.window_start.is_none_or(|s| now.duration_since(s) >= window) {
            self.window_start = Some(now);
            self.untrusted_failures = 0;
            self.per_client.clear();
        }
        let trusted_for = Duration::from_millis(LOGIN_TRUSTED_MS);
        self.trusted.retain(|(_, at)| now.duration_since(*at) < trusted_for);
    }

    fn retry_after_ms(&self, now: Instant) -> u64 {
        let window = Duration::from_millis(LOGIN_FAILURE_WINDOW_MS);
        let end = self.window_start.map_or(now, |s| s + window);
        end.saturating_duration_since(now).as_millis().max(1) as u64
    }

    fn idle(&self, now: Instant) -> bool {
        self.trusted.is_empty()
            && self.window_start.is_none_or(|s| now.duration_since(s) >= Duration::from_millis(LOGIN_FAILURE_WINDOW_MS))
    }
}

/// Bounds password guesses per account, so that a slow, distributed guessing campaign gets few
/// tries and the account's owner can still sign in:
/// - each client gets [`LOGIN_FAILURES_PER_CLIENT_MAX`] failures per account per window;
/// - clients that never signed in to the account share [`LOGIN_FAILURES_PER_ACCOUNT_MAX`];
/// - a client that signed in to the account within [`LOGIN_TRUSTED_MS`] is not held back by
///   the shared limit, so the owner, from a network it used before, gets in during an attack;
///   an owner on a new network waits at most one window.
///
/// A refused attempt is answered RATE_LIMITED before the password is looked at (no hash is
/// spent, and a right password cannot be told from a wrong one while refused).
#[derive(Default)]
pub struct LoginThrottle {
    accounts: Mutex<HashMap<String, AccountLogins>>,
}

impl LoginThrottle {
    /// Whether `client` may try a password for `account` now; the error is the wait in ms.
    pub fn check(&self, account: &str, client: ClientKey) -> Result<(), u64> {
        let now = Instant::now();
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        let Some(a) = accounts.get_mut(account) else { return Ok(()) };
        a.roll(now);
        if a.per_client.get(&client).copied().unwrap_or(0) >= LOGIN_FAILURES_PER_CLIENT_MAX {
            return Err(a.retry_after_ms(now));
        }
        let trusted = a.trusted.iter().any(|(c, _)| *c == client);
        if !trusted && a.untrusted_failures >= LOGIN_FAILURES_PER_ACCOUNT_MAX {
            return Err(a.retry_after_ms(now));
        }
        Ok(())
    }

    /// Records the outcome of an attempt that [`LoginThrottle::check`] let through.
    pub fn record(&self, account: &str, client: ClientKey, succeeded: bool) {
        let now = Instant::now();
        let mut accounts = self.accounts.lock().unwrap_or_else(|p| p.into_inner());
        if !accounts.contains_key(account) && accounts.len() >= LOGIN_ACCOUNTS_TRACKED_MAX {
            accounts.retain(|_, a| !a.idle(now));
            if accounts.len() >= LOGIN_ACCOUNTS_TRACKED_MAX {
                tracing::warn!(tracked = accounts.len(), "login throttle full: this account's failures go uncounted");
                return;
            }
        }
        let a = accounts.entry(account.to_string()).or_default();
        a.roll(now);
        if succeeded {
            a.per_client.remove(&client);
            a.trusted.retain(|(c, _)| *c != client);
            if a.trusted.len() == LOGIN_TRUSTED_CLIENTS_MAX {
                a.trusted.remove(0);
            }
            a.trusted.push((client, now));
        } else {
            *a.per_client.entry(client).or_insert(0) += 1;
            if !a.trusted.iter().any(|(c, _)| *c == client) {
                a.untrusted_failures += 1;
            }
        }
    }
}

/// Default of the anonymous reservations one client may make within [`RESERVATION_WINDOW_MS`]
/// (`--reservations-per-client-per-hour`): enough for sign-up forms that reserve as users type
/// behind one address, not for squatting names by the thousand.
pub const RESERVATIONS_PER_CLIENT_DEFAULT: u32 = 100;
/// The window of the reservations limit.
pub const RESERVATION_WINDOW_MS: u64 = 60 * 60 * 1000;

/// Counts reservations per client in fixed windows.
pub struct Reservations {
    per_window: u32,
    clients: Mutex<HashMap<ClientKey, (Instant, u32)>>,
}

impl Reservations {
    /// At most `per_window` reservations per client per window; 0 allows any number.
    pub fn new(per_window: u32) -> Self {
        Reservations { per_window, clients: Mutex::default() }
    }

    /// Counts one reservation by `client`, or says how long until it may make another (ms).
    pub fn take(&self, client: ClientKey) -> Result<(), u64> {
        if self.per_window == 0 {
            return Ok(());
        }
        let now = Instant::now();
        let window = Duration::from_millis(RESERVATION_WINDOW_MS);
        let mut clients = self.clients.lock().unwrap_or_else(|p| p.into_inner());
        if clients.len() >= RATE_LIMIT_CLIENTS_MAX && !clients.contains_key(&client) {
            clients.retain(|_, (start, _)| now.duration_since(*start) < window);
        }
        let (start, count) = clients.entry(client).or_insert((now, 0));
        if now.duration_since(*start) >= window {
            (*start, *count) = (now, 0);
        }
        if *count >= self.per_window {
            return Err((*start + window).saturating_duration_since(now).as_millis().max(1) as u64);
        }
        *count += 1;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(ip: &str) -> ClientKey {
        ClientKey::of(ip.parse().expect("ip"))
    }

    // A client over its budget is refused with a wait, and others are not affected by it; a
    // cost is charged whole.
    #[test]
    fn the_limiter_charges_costs_per_client() {
        let limiter = Limiter::new(10);
        let allowed = (0..100).filter(|_| limiter.charge(key("10.0.0.1"), 1).is_ok()).count();
        assert!((20..=21).contains(&allowed), "burst is twice the rate: allowed {allowed}");
        let wait = limiter.charge(key("10.0.0.1"), 5).expect_err("over budget");
        assert!((1..=600).contains(&wait), "about half a second for 5 units at 10/s: {wait}");
        assert!(limiter.charge(key("10.0.0.2"), 20).is_ok());
        assert!(limiter.charge(key("10.0.0.2"), 1).is_err(), "the 20 came out of one bucket");
        assert!(Limiter::new(0).charge(key("10.0.0.1"), 1_000_000).is_ok());
        assert!(limiter.refused() >= 80, "every refusal counted: {}", limiter.refused());
    }

    // An IPv6 host holds a /64: every address in it is one client; IPv4-mapped is IPv4.
    #[test]
    fn ipv6_clients_are_grouped_by_64() {
        assert_eq!(key("2001:db8:1:2::1"), key("2001:db8:1:2:ffff:ffff:ffff:ffff"));
        assert_ne!(key("2001:db8:1:2::1"), key("2001:db8:1:3::1"));
        assert_eq!(key("::ffff:10.0.0.1"), key("10.0.0.1"));
        assert_ne!(key("::1"), key("0.0.0.1"));
    }

    // Phase 1: a client gets its own few failures. Phase 2: many clients together exhaust the
    // shared allowance, yet a client that signed in before still gets in. Phase 3: success
    // clears the client's own count.
    #[test]
    fn login_failures_lock_out_the_guessers_not_the_owner() {
        let t = LoginThrottle::default();
        let owner = key("192.0.2.1");
        t.check("alice", owner).expect("never tried");
        t.record("alice", owner, true);
        for _ in 0..LOGIN_FAILURES_PER_CLIENT_MAX {
            t.check("alice", key("198.51.100.1")).expect("under the per-client limit");
            t.record("alice", key("198.51.100.1"), false);
        }
        assert!(t.check("alice", key("198.51.100.1")).is_err());
        assert!(t.check("bob", key("198.51.100.1")).is_ok(), "per account");
        for i in 0..LOGIN_FAILURES_PER_ACCOUNT_MAX {
            t.record("alice", key(&format!("203.0.113.{}", i % 250)), false);
        }
        let wait = t.check("alice", key("203.0.113.251")).expect_err("shared allowance used up");
        assert!(wait <= LOGIN_FAILURE_WINDOW_MS);
        t.check("alice", owner).expect("the owner's network is trusted");
        t.record("alice", owner, false);
        t.record("alice", owner, true);
        t.check("alice", owner).expect("still in");
    }

    #[test]
    fn reservations_are_counted_per_client() {
        let r = Reservations::new(3);
        for _ in 0..3 {
            r.take(key("10.0.0.1")).expect("under the limit");
        }
        assert!(r.take(key("10.0.0.1")).is_err());
        r.take(key("10.0.0.2")).expect("another client");
        assert!((0..1000).all(|_| Reservations::new(0).take(key("10.0.0.1")).is_ok()));
    }

    // Every string and list is measured, nested in input objects and lists too.
    #[test]
    fn oversized_values_are_found_anywhere_in_an_argument() {
        let big = Value::String("x".repeat(STRING_ARGUMENT_BYTES_MAX + 1));
        assert!(check_value(&big, "a").is_err());
        let nested = Value::Object([(async_graphql::Name::new("input"), Value::List(vec![big]))].into_iter().collect());
        let e = check_value(&nested, "v").expect_err("nested");
        assert!(e.message.contains("input"), "{}", e.message);
        let long = Value::List(vec![Value::Null; LIST_ARGUMENT_ITEMS_MAX + 1]);
        assert!(check_value(&long, "l").is_err());
        assert!(check_value(&Value::String("x".repeat(STRING_ARGUMENT_BYTES_MAX)), "ok").is_ok());
    }
}
