//! The `timeline` scenario: home-timeline reads for viewers who follow many authors.
//!
//! Setup (not measured) registers `--authors` authors, who each post `--tweets-per-author`
//! tweets (`postTweet`), and `--viewers` viewers, who each follow `--followees` authors drawn at
//! random (with `--seed`) by `follow`. Every write goes through Raft, so setup sends many at
//! once (`--setup-concurrency`) and prints its progress. It ends with a LINEARIZABLE timeline
//! read on every node, which makes every node catch up and shows the query works.
//!
//! The measured requests read the first page (`--page-size`) of `timeline` as a random viewer.
//! The timeline is merged at read time from every followee's tweets, so each read costs work in
//! proportion to the followees. Every viewer's first page is known to be full (each follows
//! enough tweets), so an empty page counts as error EMPTY_TIMELINE and a short one as
//! SHORT_TIMELINE: a server that answers fast by answering nothing does not look fast.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Args;
use client::{AuthPayload, Client, ClientError, Consistency};
use futures::stream::{self, StreamExt};
use futures::Future;
use rand::rngs::StdRng;
use rand::SeedableRng;
use serde_json::{json, Value};

use super::accounts::{register_or_login, SIGNUP_PARALLELISM_REQUESTS};
use super::{ConsistencyArg, Next, Request, Verdict, NAME_PREFIX};
use crate::progress::{Extent, Progress, Reading};
use crate::stats::format_errors;

/// Default number of authors.
const AUTHORS_DEFAULT_COUNT: u32 = 200;
/// Default tweets each author posts.
const TWEETS_PER_AUTHOR_DEFAULT: u32 = 5;
/// Default number of viewers whose timelines are read.
const VIEWERS_DEFAULT_COUNT: u32 = 50;
/// Default authors each viewer follows.
const FOLLOWEES_DEFAULT_COUNT: u32 = 100;
/// Most accounts one user may follow on the server.
const FOLLOWEES_MAX_COUNT: u32 = 5_000;
/// Most accounts of either kind one run registers (each costs a password hash on the server).
const ACCOUNTS_MAX_COUNT: u32 = 100_000;
/// Most tweets per author one run posts.
const TWEETS_PER_AUTHOR_MAX: u32 = 10_000;
/// Default page size; the server's default too.
const PAGE_SIZE_DEFAULT: u32 = 20;
/// Largest page the server serves.
const PAGE_SIZE_MAX: u32 = 100;
/// Default setup writes (tweets, follows) in flight: enough for the leader to batch them into
/// few log entries.
const SETUP_CONCURRENCY_DEFAULT: usize = 64;
/// Most setup writes in flight.
const SETUP_CONCURRENCY_MAX: usize = 1_024;

/// The error classes a read that answered with too little counts as.
const EMPTY_CODE: &str = "EMPTY_TIMELINE";
const SHORT_CODE: &str = "SHORT_TIMELINE";

const POST_TWEET: &str = "mutation($b:String!){ postTweet(body:$b){ id } }";
const FOLLOW: &str = "mutation($u:ID!){ follow(userId:$u){ id } }";
/// The measured read: what a client rendering a timeline would ask for.
const TIMELINE_QUERY: &str = "query($n:Int,$c:Consistency){ timeline(first:$n, consistency:$c){ \
     edges{ cursor node{ id authorId body createdAt } } pageInfo{ hasNextPage endCursor } } }";

/// Flags of the `timeline` scenario.
#[derive(Args, Debug)]
pub(crate) struct TimelineArgs {
    /// Authors registered in setup.
    #[arg(long, default_value_t = AUTHORS_DEFAULT_COUNT,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(ACCOUNTS_MAX_COUNT)))]
    pub authors: u32,
    /// Tweets each author posts in setup.
    #[arg(long, default_value_t = TWEETS_PER_AUTHOR_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(TWEETS_PER_AUTHOR_MAX)))]
    pub tweets_per_author: u32,
    /// Viewers registered in setup, whose timelines the measured requests read.
    #[arg(long, default_value_t = VIEWERS_DEFAULT_COUNT,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(ACCOUNTS_MAX_COUNT)))]
    pub viewers: u32,
    /// Distinct authors each viewer follows, drawn at random (at most --authors).
    #[arg(long, default_value_t = FOLLOWEES_DEFAULT_COUNT,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(FOLLOWEES_MAX_COUNT)))]
    pub followees: u32,
    /// Tweets per timeline read (`first`).
    #[arg(long, default_value_t = PAGE_SIZE_DEFAULT,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(PAGE_SIZE_MAX)))]
    pub page_size: u32,
    /// Read consistency of the measured reads.
    #[arg(long, value_enum, default_value = "local")]
    pub consistency: ConsistencyArg,
    /// Setup writes (tweets, follows) in flight at once.
    #[arg(long, default_value_t = SETUP_CONCURRENCY_DEFAULT,
          value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=SETUP_CONCURRENCY_MAX as u64))]
    pub setup_concurrency: usize,
}

/// The scenario, set up and ready.
pub(crate) struct Timeline {
    run_id: String,
    authors: u32,
    tweets_per_author: u32,
    followees: u32,
    page_size: u32,
    consistency: Consistency,
    /// Bearer token of each viewer.
    viewer_tokens: Vec<Arc<str>>,
    /// Tweets every first page must hold.
    expected_page: usize,
    setup_secs: f64,
}

impl Timeline {
    /// The scenario's parameters, for reports.
    pub fn params(&self) -> Value {
        json!({
            "run_id": self.run_id,
            "authors": self.authors,
            "tweets_per_author": self.tweets_per_author,
            "viewers": self.viewer_tokens.len(),
            "followees": self.followees,
            "page_size": self.page_size,
            "consistency": self.consistency.as_graphql(),
            "setup_secs": (self.setup_secs * 10.0).round() / 10.0,
        })
    }

    /// A first-page read as a viewer drawn at random.
    pub fn request(&self, rng: &mut StdRng) -> Request {
        let viewer = rand::Rng::random_range(rng, 0..self.viewer_tokens.len());
        Request {
            query: TIMELINE_QUERY,
            variables: json!({ "n": self.page_size, "c": self.consistency.as_graphql() }),
            bearer: Some(self.viewer_tokens[viewer].clone()),
        }
    }

    /// An answer succeeds only with a full first page.
    pub fn judge(&self, result: Result<Value, ClientError>) -> Verdict {
        let error_code = match result {
            Ok(data) => page_problem(&data, self.expected_page).map(str::to_owned),
            Err(e) => Some(e.code()),
        };
        Verdict { error_code, units: 0, next: Next::Advance }
    }
}

/// Tweets a first page must hold when a viewer follows `followees` authors of
/// `tweets_per_author` tweets each and posts none.
fn expected_page_len(page_size: u32, followees: u32, tweets_per_author: u32) -> usize {
    let available = u64::from(followees) * u64::from(tweets_per_author);
    available.min(u64::from(page_size)) as usize
}

/// What is wrong with a timeline answer: `None` for a page of at least `expected` tweets, else
/// EMPTY_TIMELINE, SHORT_TIMELINE, or DECODE for an answer without edges.
fn page_problem(data: &Value, expected: usize) -> Option<&'static str> {
    let Some(edges) = data["timeline"]["edges"].as_array() else { return Some("DECODE") };
    if edges.is_empty() {
        Some(EMPTY_CODE)
    } else if edges.len() < expected {
        Some(SHORT_CODE)
    } else {
        None
    }
}

/// The name of author `index` of a run.
fn author_name(run_id: &str, index: usize) -> String {
    format!("{NAME_PREFIX}{run_id}a{index}")
}

/// The name of viewer `index` of a run.
fn viewer_name(run_id: &str, index: usize) -> String {
    format!("{NAME_PREFIX}{run_id}v{index}")
}

/// The password of every account of a run, derived from the run id so that a rerun with the same
/// `--run-id` signs the same accounts in again.
fn account_password(run_id: &str) -> String {
    format!("{NAME_PREFIX}-{run_id}-timeline-password")
}

/// Which authors each viewer follows: `followees` distinct indexes below `authors` per viewer,
/// drawn from `seed`, so that the same seed gives the same follow graph.
fn follow_graph(seed: u64, viewers: usize, authors: usize, followees: usize) -> Vec<Vec<usize>> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..viewers).map(|_| rand::seq::index::sample(&mut rng, authors, followees).into_vec()).collect()
}

/// Runs `items` through `op` with at most `parallelism` in flight, showing progress under
/// `label`, and returns the results in the order of `items`. Fails when any item failed, naming
/// the error codes and the first error.
async fn phase<I, T, F, Fut>(
    label: &'static str,
    unit: &'static str,
    items: Vec<I>,
    parallelism: usize,
    op: F,
) -> anyhow::Result<Vec<T>>
where
    F: Fn(I) -> Fut,
    Fut: Future<Output = Result<T, ClientError>>,
{
    let started = Instant::now();
    let total = items.len();
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let progress = Progress::start(Extent::Count { label, total: total as u64, unit }, {
        let (done, failed) = (done.clone(), failed.clone());
        move || Reading { done: done.load(Ordering::Relaxed), errors: failed.load(Ordering::Relaxed), extra: None }
    });
    let mut answers = stream::iter(items.into_iter().enumerate())
        .map(|(i, item)| {
            let fut = op(item);
            async move { (i, fut.await) }
        })
        .buffer_unordered(parallelism);
    let mut results: Vec<Option<T>> = (0..total).map(|_| None).collect();
    let mut errors = BTreeMap::<String, u64>::new();
    let mut first_error = None;
    while let Some((i, answer)) = answers.next().await {
        match answer {
            Ok(v) => results[i] = Some(v),
            Err(e) => {
                failed.fetch_add(1, Ordering::Relaxed);
                *errors.entry(e.code()).or_default() += 1;
                first_error.get_or_insert_with(|| format!("item {i}: {e}"));
            }
        }
        done.fetch_add(1, Ordering::Relaxed);
    }
    progress.finish();
    if let Some(first) = first_error {
        let failed: u64 = errors.values().sum();
        bail!("{label}: {failed} of {total} {unit} failed ({}); first: {first}", format_errors(&errors));
    }
    eprintln!("{label}: {total} {unit} in {:.1} s", started.elapsed().as_secs_f64());
    Ok(results.into_iter().flatten().collect())
}

/// Runs the setup: accounts, tweets, follows, and the check that every node serves a full
/// first page.
pub(crate) async fn setup(client: &Client, args: &TimelineArgs, seed: u64, run_id: String) -> anyhow::Result<Timeline> {
    if args.followees > args.authors {
        bail!("--followees {} exceeds --authors {}: a viewer follows distinct authors", args.followees, args.authors);
    }
    let started = Instant::now();
    // Setup retries UNAVAILABLE on other nodes. A retried tweet whose first answer was lost may
    // post twice, which only makes a timeline longer; follows are idempotent.
    let setup_client = client.clone().with_retries(true);
    let (authors, viewers) = (args.authors as usize, args.viewers as usize);
    let password = account_password(&run_id);
    let names: Vec<String> =
        (0..authors).map(|i| author_name(&run_id, i)).chain((0..viewers).map(|i| viewer_name(&run_id, i))).collect();
    eprintln!(
        "timeline setup: {authors} authors x {} tweets, {viewers} viewers x {} followees",
        args.tweets_per_author, args.followees
    );
    let accounts: Vec<AuthPayload> =
        phase("registering", "accounts", names.into_iter().enumerate().collect(), SIGNUP_PARALLELISM_REQUESTS, {
            let (c, password) = (&setup_client, &password);
            move |(i, name): (usize, String)| async move { register_or_login(c, i, &name, password).await }
        })
        .await?;
    let (author_accounts, viewer_accounts) = accounts.split_at(authors);

    let tweets: Vec<(usize, u32)> =
        (0..args.tweets_per_author).flat_map(|j| (0..authors).map(move |i| (i, j))).collect();
    phase("posting", "tweets", tweets, args.setup_concurrency, {
        let (c, run_id) = (&setup_client, &run_id);
        move |(i, j): (usize, u32)| {
            let token = author_accounts[i].token.as_str();
            let body = format!("loadgen {run_id} tweet {j} of author {i}");
            async move { c.execute_retrying(i + j as usize, POST_TWEET, json!({ "b": body }), Some(token)).await }
        }
    })
    .await?;

    let graph = follow_graph(seed, viewers, authors, args.followees as usize);
    let follows: Vec<(usize, usize)> =
        graph.iter().enumerate().flat_map(|(v, followed)| followed.iter().map(move |&a| (v, a))).collect();
    phase("following", "follows", follows, args.setup_concurrency, {
        let c = &setup_client;
        move |(v, a): (usize, usize)| {
            let token = viewer_accounts[v].token.as_str();
            let author = author_accounts[a].user.id.clone();
            async move { c.execute_retrying(v + a, FOLLOW, json!({ "u": author }), Some(token)).await }
        }
    })
    .await?;

    let expected_page = expected_page_len(args.page_size, args.followees, args.tweets_per_author);
    let probe = viewer_accounts.last().context("no viewers")?;
    for node in 0..setup_client.node_count() {
        let vars = json!({ "n": args.page_size, "c": Consistency::Linearizable.as_graphql() });
        let data = setup_client
            .execute_retrying(node, TIMELINE_QUERY, vars, Some(&probe.token))
            .await
            .with_context(|| format!("reading a timeline on node {node}"))?;
        if let Some(problem) = page_problem(&data, expected_page) {
            bail!(
                "node {node} answers {problem} for viewer {} after setup (expected {expected_page} tweets)",
                probe.user.username
            );
        }
    }
    let setup_secs = started.elapsed().as_secs_f64();
    eprintln!("timeline setup done in {setup_secs:.1} s; every node serves a full page of {expected_page}");
    Ok(Timeline {
        run_id,
        authors: args.authors,
        tweets_per_author: args.tweets_per_author,
        followees: args.followees,
        page_size: args.page_size,
        consistency: args.consistency.into(),
        viewer_tokens: viewer_accounts.iter().map(|a| Arc::from(a.token.as_str())).collect(),
        expected_page,
        setup_secs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn expected_page_is_capped_by_what_is_followed() {
        assert_eq!(expected_page_len(20, 100, 5), 20);
        assert_eq!(expected_page_len(20, 3, 5), 15);
        assert_eq!(expected_page_len(100, 1, 1), 1);
        assert_eq!(expected_page_len(u32::MAX, u32::MAX, u32::MAX), u32::MAX as usize);
    }

    #[test]
    fn pages_are_judged_by_their_length() {
        let page = |n: usize| json!({ "timeline": { "edges": vec![json!({"cursor": "1"}); n] } });
        assert_eq!(page_problem(&page(20), 20), None);
        assert_eq!(page_problem(&page(21), 20), None);
        assert_eq!(page_problem(&page(19), 20), Some(SHORT_CODE));
        assert_eq!(page_problem(&page(0), 20), Some(EMPTY_CODE));
        assert_eq!(page_problem(&json!({ "timeline": null }), 20), Some("DECODE"));
    }

    #[test]
    fn follow_graph_is_distinct_in_range_and_seeded() {
        let g = follow_graph(42, 50, 200, 100);
        assert_eq!(g.len(), 50);
        for followed in &g {
            assert_eq!(followed.len(), 100);
            assert_eq!(followed.iter().collect::<HashSet<_>>().len(), 100);
            assert!(followed.iter().all(|&a| a < 200));
        }
        assert_eq!(g, follow_graph(42, 50, 200, 100));
        assert_ne!(g, follow_graph(43, 50, 200, 100));
        // Following every author is allowed.
        assert!(follow_graph(1, 2, 5, 5).iter().all(|f| f.iter().collect::<HashSet<_>>().len() == 5));
    }

    #[test]
    fn account_names_are_distinct_and_valid() {
        let longest = viewer_name("abcdefgh", 99_999);
        assert!((3..=30).contains(&longest.len()), "{longest}");
        assert!(longest.chars().all(|c| c.is_ascii_alphanumeric()), "{longest}");
        assert_ne!(author_name("ab", 1), viewer_name("ab", 1));
        assert_ne!(author_name("ab", 1), author_name("ab", 11));
        assert!((8..=128).contains(&account_password("abcdefgh").len()));
    }
}
