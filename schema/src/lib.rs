//! The GraphQL schema: one module per domain, over the replicated store.
//!
//! It knows nothing of HTTP or WebSockets (the node crate mounts it) and talks to the state only
//! through [`raft::Store`]: propose a command, read at a consistency level. Tests run it on a
//! one-node store with `schema.execute`.
//!
//! Layout:
//! - `error`: stable `extensions.code` on every error.
//! - `paging`: Relay connection helpers (ids, page sizes, cursors) shared by the domains.
//! - `feed`: the subscribe-and-replay loop every subscription uses.
//! - `auth`: argon2id password hashes, bearer JWTs, the viewer and the admin guard.
//! - `usernames`: availability with suggestions, reservations.
//! - `accounts`: register, login, viewer, users, profiles, renames, deletion.
//! - `cluster`: the cluster's state and admin operations.
//! - `chats`: chats, participants, messages, `chatMessages`.
//! - `sales`: products, flash sales, purchases, orders, leaderboard, `saleUpdates`.
//! - `tweets`: follows, tweets, timelines, hashtags, mentions, search, `timelineUpdates`.
//! - `observe`: per-operation timings for metrics.
//! - `applied`: `extensions.appliedIndex`, the log index an answer was read at.
//! - `limits`: argument sizes, cost-based rate limits, login throttling, reservations per client.

pub mod accounts;
pub mod applied;
pub mod auth;
pub mod chats;
pub mod cluster;
pub mod error;
pub mod feed;
pub mod limits;
pub mod observe;
pub mod paging;
pub mod sales;
pub mod tweets;
pub mod usernames;

use async_graphql::{Enum, MergedObject, MergedSubscription, Schema};
use chrono::{DateTime, Utc};
use raft::Store;
use rand::RngCore;

pub use auth::{Auth, BearerToken, TokenVerifier};
pub use limits::{ClientKey, Limiter};

/// Deepest query accepted (selection nesting).
pub const QUERY_DEPTH_MAX: usize = 12;
/// Most complex query accepted (async-graphql's complexity: one per field by default).
pub const QUERY_COMPLEXITY_MAX: usize = 1_000;
/// Deepest introspection-only request accepted. graphql-js's `getIntrospectionQuery()` nests
/// 13 levels (`__schema` > `types` > `fields` > `type` and the `TypeRef` fragment's chain of
/// `ofType`s, 9 deep in graphql-js 17); other clients' documents are shallower. Introspection
/// is served by a schema of its own that runs nothing but `__schema`, `__type` and
/// `__typename`, so this deeper limit buys nothing for ordinary fields.
pub const INTROSPECTION_DEPTH_MAX: usize = 20;
/// Most complex introspection-only request accepted: the full introspection query with every
/// option is about 110 fields; an abusive one (thousands of aliased `__schema` walks) is not.
pub const INTROSPECTION_COMPLEXITY_MAX: usize = 500;
/// Default cooldown before a released username may be taken by someone else: 30 days.
pub const USERNAME_COOLDOWN_DEFAULT_SECS: i64 = 30 * 24 * 3600;
/// Default lifetime of a bearer token: one day.
pub const TOKEN_TTL_DEFAULT_SECS: i64 = 24 * 3600;
/// The retry hint of a node too busy to take a request now (hash slots, heavy-read slots).
pub const RETRY_AFTER_BUSY_MS: u64 = 500;
/// Heavy reads (`searchTweets`) running at once, each on a blocking thread: they never run on
/// the async workers that carry Raft's heartbeats, and a flood of them queues here.
pub const HEAVY_READS_IN_FLIGHT_MAX: usize = 2;
/// How long a heavy read waits for a slot before it is answered UNAVAILABLE with a retry hint.
pub const HEAVY_READ_WAIT_MS: u64 = 2_000;

/// Settings of the API.
#[derive(Clone)]
pub struct SchemaConfig {
    /// How long a released username stays blocked.
    pub username_cooldown_secs: i64,
    /// How long a token stays valid.
    pub token_ttl_secs: i64,
    /// See [`QUERY_DEPTH_MAX`].
    pub query_depth_max: usize,
    /// See [`QUERY_COMPLEXITY_MAX`].
    pub query_complexity_max: usize,
    /// Told about every request (operation, duration, failed), for metrics.
    pub observer: Option<observe::Observer>,
    /// Where request time goes (decode, parse, validate, execute, encode), for metrics.
    pub stages: std::sync::Arc<observe::RequestStages>,
    /// The per-client cost budget every request is charged to ([`limits::Guard`]); share one
    /// between the schemas of a node. Unlimited by default.
    pub limiter: std::sync::Arc<Limiter>,
    /// Anonymous reservations per client per hour (0: no limit).
    pub reservations_per_client_per_hour: u32,
}

impl Default for SchemaConfig {
    fn default() -> Self {
        SchemaConfig {
            username_cooldown_secs: USERNAME_COOLDOWN_DEFAULT_SECS,
            token_ttl_secs: TOKEN_TTL_DEFAULT_SECS,
            query_depth_max: QUERY_DEPTH_MAX,
            query_complexity_max: QUERY_COMPLEXITY_MAX,
            observer: None,
            stages: Default::default(),
            limiter: std::sync::Arc::new(Limiter::new(0)),
            reservations_per_client_per_hour: limits::RESERVATIONS_PER_CLIENT_DEFAULT,
        }
    }
}

/// What resolvers reach through `ctx.data::<ApiContext>()`.
pub struct ApiContext {
    /// The replicated store.
    pub store: Store,
    /// Tokens and passwords.
    pub auth: Auth,
    /// Settings.
    pub config: SchemaConfig,
    /// Failed logins per account.
    pub logins: limits::LoginThrottle,
    /// Anonymous reservations per client.
    pub reservations: limits::Reservations,
    /// Slots for heavy reads ([`HEAVY_READS_IN_FLIGHT_MAX`]).
    pub heavy_reads: std::sync::Arc<tokio::sync::Semaphore>,
}

/// How fresh a read must be.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Consistency {
    /// Reflects every write acknowledged before the read began (a read-index round).
    Linearizable,
    /// This node's applied state, at once; may lag the leader.
    Local,
}

/// All queries.
#[derive(MergedObject, Default)]
pub struct Query(
    usernames::UsernameQuery,
    accounts::AccountQuery,
    cluster::ClusterQuery,
    sales::SaleQuery,
    chats::ChatQuery,
    tweets::TweetQuery,
);

/// All mutations.
#[derive(MergedObject, Default)]
pub struct Mutation(
    usernames::UsernameMutation,
    accounts::AccountMutation,
    cluster::ClusterMutation,
    sales::SaleMutation,
    chats::ChatMutation,
    tweets::TweetMutation,
);

/// All subscriptions.
#[derive(MergedSubscription, Default)]
pub struct Subscription(sales::SaleSubscription, chats::ChatSubscription, tweets::TweetSubscription);

/// The schema type.
pub type AppSchema = Schema<Query, Mutation, Subscription>;

/// Builds the schema over `store`, signing tokens with `jwt_secret`.
pub fn build(store: Store, jwt_secret: &[u8], config: SchemaConfig) -> Result<AppSchema, String> {
    let depth = config.query_depth_max;
    let complexity = config.query_complexity_max;
    Ok(builder(store, jwt_secret, config)?.limit_depth(depth).limit_complexity(complexity).finish())
}

/// The same schema for introspection-only requests (every root field is `__schema`, `__type`
/// or `__typename`: see [`is_introspection`]), with limits of its own: deep enough for the
/// standard introspection queries of graphql-js and client libraries, and executing nothing
/// else, so its limits cannot be used to reach ordinary fields.
pub fn build_introspection(store: Store, jwt_secret: &[u8], config: SchemaConfig) -> Result<AppSchema, String> {
    Ok(builder(store, jwt_secret, config)?
        .introspection_only()
        .limit_depth(INTROSPECTION_DEPTH_MAX)
        .limit_complexity(INTROSPECTION_COMPLEXITY_MAX)
        .finish())
}

fn builder(
    store: Store,
    jwt_secret: &[u8],
    config: SchemaConfig,
) -> Result<async_graphql::SchemaBuilder<Query, Mutation, Subscription>, String> {
    let auth = Auth::new(jwt_secret, config.token_ttl_secs)?;
    let observe = observe::Observe { observer: config.observer.clone(), stages: config.stages.clone() };
    let guard = limits::Guard { limiter: config.limiter.clone() };
    let reservations = limits::Reservations::new(config.reservations_per_client_per_hour);
    let api = ApiContext {
        store,
        auth,
        config,
        logins: Default::default(),
        reservations,
        heavy_reads: std::sync::Arc::new(tokio::sync::Semaphore::new(HEAVY_READS_IN_FLIGHT_MAX)),
    };
    let builder = Schema::build(Query::default(), Mutation::default(), Subscription::default())
        .data(api)
        .extension(error::ErrorCodes)
        .extension(guard)
        .extension(applied::AppliedIndexes);
    // async-graphql's spans are INFO spans, one per request, parse, validation and execution and
    // one per field: at the default filter every one of them is created and its fields formatted,
    // about a tenth of the node's CPU per subscription delivery (docs/BENCHMARKS.md). So they are
    // there only when asked for, by enabling the `graphql` target at DEBUG (`RUST_LOG=graphql=debug`).
    let builder = if tracing::enabled!(target: GRAPHQL_SPANS_TARGET, tracing::Level::DEBUG) {
        builder.extension(async_graphql::extensions::Tracing)
    } else {
        builder
    };
    Ok(builder.extension(observe))
}

/// The tracing target that, enabled at DEBUG when the schema is built, adds async-graphql's
/// per-request and per-field spans.
pub const GRAPHQL_SPANS_TARGET: &str = "graphql";

/// True when every root field of every operation in `doc` is an introspection field
/// (`__schema`, `__type`, `__typename`), fragments followed: such a request goes to the
/// schema of [`build_introspection`].
pub fn is_introspection(doc: &async_graphql::parser::types::ExecutableDocument) -> bool {
    use async_graphql::parser::types::{Selection, SelectionSet};
    fn only_introspection(
        set: &SelectionSet,
        doc: &async_graphql::parser::types::ExecutableDocument,
        depth: usize,
    ) -> bool {
        // Fragment cycles are refused by validation; the depth cap keeps this walk finite anyway.
        depth < 8
            && set.items.iter().all(|item| match &item.node {
                Selection::Field(f) => matches!(f.node.name.node.as_str(), "__schema" | "__type" | "__typename"),
                Selection::InlineFragment(i) => only_introspection(&i.node.selection_set.node, doc, depth + 1),
                Selection::FragmentSpread(s) => doc
                    .fragments
                    .get(&s.node.fragment_name.node)
                    .is_some_and(|f| only_introspection(&f.node.selection_set.node, doc, depth + 1)),
            })
    }
    let mut operations = doc.operations.iter().peekable();
    operations.peek().is_some() && operations.all(|(_, op)| only_introspection(&op.node.selection_set.node, doc, 0))
}

pub(crate) fn now_ms() -> i64 {
    Utc::now().timestamp_millis()
}

pub(crate) fn ms_to_datetime(ms: i64) -> DateTime<Utc> {
    DateTime::from_timestamp_millis(ms).unwrap_or_default()
}

/// 128 random bits, hex: unguessable capabilities (reservation tokens).
pub(crate) fn random_token() -> String {
    let mut bytes = [0u8; 16];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
