//! Read latency of the home timeline (fan-out on read) and of search, on state built directly
//! through the state machine in a temp dir: no HTTP, no Raft round trips, only the redb reads a
//! node does for `timeline` and `searchTweets` (a read transaction, the index ranges, the tweet
//! rows of one page).
//!
//! Run with `cargo run --release -p raft --example tweets_bench`. It is bounded (about 300,000
//! tweets written, a few hundred reads per figure) and not part of `cargo test`.
//!
//! - Timeline: 2,000 authors with 100 tweets each, posted round-robin so every author's tweets
//!   are spread over the whole id range (the merge's worst case); three viewers follow the first
//!   10, 200 and 2,000 authors. Each sample reads a first page of 20 (21 rows, as the schema asks
//!   for one more to know `hasNextPage`).
//! - Search: 100,000 tweets of 12 words drawn from a 5,000-word vocabulary with a skewed
//!   distribution (a few very common words, a long tail), queried with a common word, two words,
//!   a rare word and a quoted phrase.

use std::time::{Duration, Instant};

use openraft::storage::RaftStateMachine;
use openraft::{CommittedLeaderId, EntryPayload, LogId};
use raft::model::names;
use raft::model::tweets::SearchQuery;
use raft::{Batch, Command, Entry, Proposal, StateMachine};

/// Authors of the timeline state.
const AUTHORS: u64 = 2_000;
/// Tweets each author posts.
const TWEETS_PER_AUTHOR: u64 = 100;
/// Followee counts measured.
const FOLLOWING_SIZES: [u64; 3] = [10, 200, 2_000];
/// Tweets of the search state.
const SEARCH_TWEETS: u64 = 100_000;
/// Vocabulary of the search state's bodies, in words.
const VOCABULARY_WORDS: u64 = 5_000;
/// Words per search-state body.
const WORDS_PER_TWEET: usize = 12;
/// Commands per apply batch while building (one redb transaction each).
const BUILD_BATCH_COMMANDS: usize = 2_000;
/// Samples per figure.
const SAMPLES: usize = 300;
/// The page a client asks for (the read takes one more).
const PAGE: usize = 20;

struct Builder {
    sm: StateMachine,
    index: u64,
    pending: Vec<Proposal>,
}

impl Builder {
    async fn push(&mut self, command: Command) {
        self.pending.push(Proposal { at_ms: 1_700_000_000_000 + self.index as i64, command });
        if self.pending.len() >= BUILD_BATCH_COMMANDS {
            self.flush().await;
        }
    }

    async fn flush(&mut self) {
        if self.pending.is_empty() {
            return;
        }
        self.index += 1;
        let entry = Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 1), self.index),
            payload: EntryPayload::Normal(Batch(std::mem::take(&mut self.pending))),
        };
        self.sm.apply(vec![entry]).await.expect("apply");
    }

    async fn users(&mut self, prefix: &str, n: u64) {
        for i in 0..n {
            let username = format!("{prefix}{i}");
            self.push(Command::Register {
                canonical: names::canonical(&username),
                display_name: username.clone(),
                username,
                password_hash: "not a hash".into(),
                email: None,
                reservation_token: None,
            })
            .await;
        }
    }
}

/// A small deterministic generator (xorshift64*), so every run builds the same state.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A word index skewed towards small numbers: roughly Zipf-like.
    fn skewed(&mut self, n: u64) -> u64 {
        let a = self.next() % n + 1;
        let b = self.next() % a + 1;
        self.next() % b
    }
}

fn word(i: u64) -> String {
    // Every tenth word carries an accent, so folding is on the measured path.
    if i % 10 == 3 {
        format!("café{i}")
    } else {
        format!("w{i}")
    }
}

fn percentiles(mut samples: Vec<Duration>) -> (Duration, Duration) {
    samples.sort_unstable();
    let at = |p: f64| samples[((samples.len() as f64 * p) as usize).min(samples.len() - 1)];
    (at(0.50), at(0.99))
}

fn time<T>(mut f: impl FnMut() -> T) -> (Duration, Duration) {
    let mut samples = Vec::with_capacity(SAMPLES);
    for _ in 0..SAMPLES {
        let t = Instant::now();
        std::hint::black_box(f());
        samples.push(t.elapsed());
    }
    percentiles(samples)
}

#[tokio::main]
async fn main() {
    let dir = tempfile::tempdir().expect("temp dir");

    // Timeline state: viewers are users 1..=3, authors 4..; each viewer follows a prefix.
    let started = Instant::now();
    let sm = StateMachine::open(&dir.path().join("timeline")).expect("open");
    let mut b = Builder { sm: sm.clone(), index: 0, pending: Vec::new() };
    b.users("viewer", FOLLOWING_SIZES.len() as u64).await;
    b.users("author", AUTHORS).await;
    let first_author = FOLLOWING_SIZES.len() as u64 + 1;
    for (v, n) in FOLLOWING_SIZES.iter().enumerate() {
        for a in 0..*n {
            b.push(Command::Follow { follower: v as u64 + 1, followee: first_author + a }).await;
        }
    }
    for round in 0..TWEETS_PER_AUTHOR {
        for a in 0..AUTHORS {
            let body = format!("tweet {round} by author {a} #bench");
            b.push(Command::PostTweet { author: first_author + a, body, reply_to: None }).await;
        }
    }
    b.flush().await;
    println!(
        "timeline state: {} tweets by {AUTHORS} authors, built in {:.1?}",
        AUTHORS * TWEETS_PER_AUTHOR,
        started.elapsed()
    );
    println!("| following | p50 | p99 | index rows read |");
    println!("|---|---|---|---|");
    for (v, n) in FOLLOWING_SIZES.iter().enumerate() {
        let viewer = v as u64 + 1;
        let rows = sm.read().expect("read").timeline(viewer, u64::MAX, PAGE + 1).expect("timeline").rows_read;
        let (p50, p99) = time(|| {
            let page = sm.read().expect("read").timeline(viewer, u64::MAX, PAGE + 1).expect("timeline");
            assert_eq!(page.tweets.len(), PAGE + 1);
            page
        });
        println!("| {n} | {p50:.2?} | {p99:.2?} | {rows} |");
    }

    // Search state.
    let started = Instant::now();
    let sm = StateMachine::open(&dir.path().join("search")).expect("open");
    let mut b = Builder { sm: sm.clone(), index: 0, pending: Vec::new() };
    b.users("writer", 100).await;
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    for i in 0..SEARCH_TWEETS {
        let words: Vec<String> = (0..WORDS_PER_TWEET).map(|_| word(rng.skewed(VOCABULARY_WORDS))).collect();
        b.push(Command::PostTweet { author: 1 + i % 100, body: words.join(" "), reply_to: None }).await;
    }
    b.flush().await;
    let total = sm.read().expect("read").tweet_count().expect("count");
    println!("\nsearch state: {total} tweets, built in {:.1?}", started.elapsed());
    println!("| query | hits on page | p50 | p99 | index rows read |");
    println!("|---|---|---|---|---|");
    for q in ["w0", "W1 w2", "CAFE3", "w4000", "\"w0 w1\""] {
        let query = SearchQuery::parse(q).expect("query");
        let page = sm.read().expect("read").search(&query, u64::MAX, PAGE + 1).expect("search");
        let (p50, p99) = time(|| sm.read().expect("read").search(&query, u64::MAX, PAGE + 1).expect("search"));
        println!("| `{q}` | {} | {p50:.2?} | {p99:.2?} | {} |", page.tweets.len(), page.rows_read);
    }
}
