//! The command line: one subcommand per scenario, each flattening the flags every scenario takes
//! ([`Common`]), the open-loop flag where it applies, and the scenario's own flags, which live
//! with the scenario in [`crate::scenarios`].

use clap::{Args, Parser, Subcommand};
use client::transport;
use rand::Rng;

use crate::pacing::OpenLoopArgs;
use crate::scenarios::{checks, claims, peers, purchase, seed, subscribers, timeline};

/// Default measured duration of a run.
const DURATION_DEFAULT_SECS: u64 = 10;

/// Default warmup before measuring, which lets connection pools and server caches fill. The
/// `purchase-burst` scenario has none: its warmup is the wait for the sale to open.
const WARMUP_DEFAULT_SECS: u64 = 1;

/// Default number of closed-loop workers.
const CONCURRENCY_DEFAULT_WORKERS: u32 = 16;

/// Upper bound on workers, so a typo cannot spawn millions of tasks and sockets.
const CONCURRENCY_MAX_WORKERS: u32 = 10_000;

/// Length of a generated run id. Run ids are letters only and of fixed length, so the digits
/// that follow them in a name can never be confused with part of another run's id.
const RUN_ID_LEN_CHARS: usize = 5;

/// Longest run id accepted from `--run-id`, keeping generated names well under the usernames'
/// length limit.
const RUN_ID_MAX_CHARS: usize = 8;

/// The whole command line.
#[derive(Parser, Debug)]
#[command(name = "loadgen", about = "Load generator for the GraphQL backend (closed loop, or open loop with --rate)")]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub scenario: ScenarioCommand,
}

/// One subcommand per scenario.
#[derive(Subcommand, Debug)]
pub(crate) enum ScenarioCommand {
    /// Each request reserves a distinct, fresh username (`reserveUsername`).
    Claims {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        open_loop: OpenLoopArgs,
        #[command(flatten)]
        claims: claims::ClaimsArgs,
    },
    /// Each request checks the availability of a name drawn at random from a pool
    /// (`usernameAvailability`).
    Checks {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        open_loop: OpenLoopArgs,
        #[command(flatten)]
        checks: checks::ChecksArgs,
    },
    /// A flash sale: one buyer per worker buys (`purchase`) from the moment the sale opens until
    /// it is sold out, then the sale's counts are checked against the acknowledged purchases.
    PurchaseBurst {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        burst: purchase::BurstArgs,
    },
    /// Home-timeline reads (`timeline`) as viewers who each follow many authors; setup registers
    /// the authors and viewers, posts the tweets and makes the follows.
    Timeline {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        open_loop: OpenLoopArgs,
        #[command(flatten)]
        timeline: timeline::TimelineArgs,
    },
    /// Fan-out: N subscriptions (`saleUpdates` by default, or `chatMessages` with --topic chat)
    /// spread over the nodes, updates caused at a fixed rate (one-unit purchases, or messages);
    /// reports deliveries per second and the send-to-delivery delay.
    Subscribers {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        fanout: subscribers::SubscribersArgs,
    },
    /// Fills the cluster with --accounts accounts through `importAccounts` (as an admin), the
    /// way existing users are brought in, and reports accounts per second and the servers' CPU
    /// per account. `--concurrency` calls are in flight; a rerun with the same --run-id skips
    /// what is already there.
    Seed {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        seed: seed::SeedArgs,
    },
    /// The claim, check or purchase against etcd, PostgreSQL or Redis, for comparisons:
    /// `--nodes` takes that system's addresses, and each worker opens its own connection.
    Peer {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        open_loop: OpenLoopArgs,
        #[command(flatten)]
        peer: peers::PeerArgs,
    },
}

impl ScenarioCommand {
    /// The flags every scenario takes.
    pub fn common(&self) -> &Common {
        match self {
            Self::Claims { common, .. }
            | Self::Checks { common, .. }
            | Self::PurchaseBurst { common, .. }
            | Self::Timeline { common, .. }
            | Self::Subscribers { common, .. }
            | Self::Seed { common, .. }
            | Self::Peer { common, .. } => common,
        }
    }

    /// The open-loop rate asked for, if any; `None` runs closed-loop.
    pub fn rate(&self) -> Option<f64> {
        match self {
            Self::Claims { open_loop, .. }
            | Self::Checks { open_loop, .. }
            | Self::Timeline { open_loop, .. }
            | Self::Peer { open_loop, .. } => open_loop.rate,
            Self::PurchaseBurst { .. } | Self::Subscribers { .. } | Self::Seed { .. } => None,
        }
    }
}

/// Flags every scenario takes.
#[derive(Args, Debug)]
pub(crate) struct Common {
    /// Comma-separated node base URLs; requests are spread round-robin over them.
    #[arg(long, env = "LOADGEN_NODES", value_delimiter = ',', default_value = "http://127.0.0.1:8080")]
    pub nodes: Vec<String>,
    /// Number of workers, each awaiting its request before sending the next: the requests in
    /// flight in closed loop, and their cap in open loop (--rate).
    #[arg(long, default_value_t = CONCURRENCY_DEFAULT_WORKERS,
          value_parser = clap::value_parser!(u32).range(1..=i64::from(CONCURRENCY_MAX_WORKERS)))]
    pub concurrency: u32,
    /// Measured duration in seconds, after the warmup.
    #[arg(long, default_value_t = DURATION_DEFAULT_SECS, value_parser = clap::value_parser!(u64).range(1..))]
    pub duration: u64,
    /// Stop after this many measured requests, even if the duration has not elapsed.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub requests: Option<u64>,
    /// Warmup in seconds before measuring (default 1); its requests are sent but not counted.
    /// Not taken by purchase-burst, which measures from the sale's opening.
    #[arg(long)]
    pub warmup: Option<u64>,
    /// Per-request timeout in milliseconds.
    #[arg(long, default_value_t = transport::REQUEST_TIMEOUT_MS)]
    pub timeout_ms: u64,
    /// Print one JSON object instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Seed for the random choices of the scenario (not for the run id), for repeatable runs.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Lowercase letters that make this run's names unique; random by default.
    #[arg(long, value_parser = parse_run_id)]
    pub run_id: Option<String>,
}

impl Common {
    /// The warmup asked for, or the default.
    pub fn warmup_secs(&self) -> u64 {
        self.warmup.unwrap_or(WARMUP_DEFAULT_SECS)
    }
}

/// Accepts a run id of 1 to [`RUN_ID_MAX_CHARS`] lowercase ASCII letters.
fn parse_run_id(s: &str) -> Result<String, String> {
    if (1..=RUN_ID_MAX_CHARS).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_lowercase()) {
        Ok(s.to_owned())
    } else {
        Err(format!("expected 1 to {RUN_ID_MAX_CHARS} lowercase ASCII letters"))
    }
}

/// A random letters-only run id of [`RUN_ID_LEN_CHARS`] characters.
pub(crate) fn random_run_id(rng: &mut impl Rng) -> String {
    (0..RUN_ID_LEN_CHARS).map(|_| char::from(rng.random_range(b'a'..=b'z'))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenarios::ConsistencyArg;
    use rand::rngs::StdRng;
    use rand::SeedableRng;

    #[test]
    fn run_ids_are_fixed_length_letters() {
        let mut rng = StdRng::seed_from_u64(7);
        for _ in 0..100 {
            let id = random_run_id(&mut rng);
            assert_eq!(parse_run_id(&id), Ok(id.clone()));
            assert_eq!(id.len(), RUN_ID_LEN_CHARS);
        }
        assert!(parse_run_id("ab1").is_err());
        assert!(parse_run_id("").is_err());
        assert!(parse_run_id("ABC").is_err());
    }

    #[test]
    fn cli_parses_documented_usage() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "checks",
            "--consistency",
            "local",
            "--nodes",
            "http://a:1,http://b:2",
            "--pool",
            "10",
            "--requests",
            "100",
        ])
        .unwrap();
        let ScenarioCommand::Checks { common, checks, .. } = cli.scenario else {
            panic!("expected checks");
        };
        assert_eq!(common.nodes, ["http://a:1", "http://b:2"]);
        assert_eq!((checks.pool, common.requests), (10, Some(100)));
        assert!(Cli::try_parse_from(["loadgen", "claims", "--concurrency", "0"]).is_err());
    }

    #[test]
    fn cli_parses_open_loop_rate_where_it_applies() {
        let cli = Cli::try_parse_from(["loadgen", "claims", "--rate", "200", "--concurrency", "8"]).unwrap();
        assert_eq!(cli.scenario.rate(), Some(200.0));
        assert_eq!(cli.scenario.common().concurrency, 8);
        assert_eq!(Cli::try_parse_from(["loadgen", "claims"]).unwrap().scenario.rate(), None);
        let checks = Cli::try_parse_from(["loadgen", "checks", "--consistency", "linearizable", "--rate", "0.5"]);
        assert_eq!(checks.unwrap().scenario.rate(), Some(0.5));
        assert!(Cli::try_parse_from(["loadgen", "claims", "--rate", "0"]).is_err());
        assert!(Cli::try_parse_from(["loadgen", "claims", "--rate", "lots"]).is_err());
        // Purchase bursts are closed-loop by nature; subscribers' --rate is its own send rate.
        assert!(Cli::try_parse_from([
            "loadgen",
            "purchase-burst",
            "--admin-user",
            "a",
            "--admin-password",
            "b",
            "--rate",
            "5"
        ])
        .is_err());
        let subs = Cli::try_parse_from(["loadgen", "subscribers", "--rate", "20"]).unwrap();
        assert_eq!(subs.scenario.rate(), None);
    }

    #[test]
    fn cli_parses_timeline_usage() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "timeline",
            "--authors",
            "300",
            "--viewers",
            "10",
            "--followees",
            "250",
            "--tweets-per-author",
            "2",
            "--page-size",
            "50",
            "--consistency",
            "linearizable",
            "--rate",
            "100",
        ])
        .unwrap();
        let ScenarioCommand::Timeline { timeline, open_loop, .. } = &cli.scenario else {
            panic!("expected timeline");
        };
        assert_eq!((timeline.authors, timeline.viewers, timeline.followees), (300, 10, 250));
        assert_eq!((timeline.tweets_per_author, timeline.page_size), (2, 50));
        assert!(matches!(timeline.consistency, ConsistencyArg::Linearizable));
        assert_eq!(open_loop.rate, Some(100.0));
        let defaults = Cli::try_parse_from(["loadgen", "timeline"]).unwrap();
        let ScenarioCommand::Timeline { timeline, .. } = &defaults.scenario else { panic!("expected timeline") };
        assert_eq!((timeline.authors, timeline.viewers, timeline.followees, timeline.page_size), (200, 50, 100, 20));
        // The server serves pages of 1 to 100 and follows of at most 5,000.
        assert!(Cli::try_parse_from(["loadgen", "timeline", "--page-size", "101"]).is_err());
        assert!(Cli::try_parse_from(["loadgen", "timeline", "--followees", "5001"]).is_err());
    }

    #[test]
    fn cli_parses_purchase_burst_usage() {
        let cli = Cli::try_parse_from([
            "loadgen",
            "purchase-burst",
            "--concurrency",
            "32",
            "--stock",
            "500",
            "--per-user-limit",
            "20",
            "--quantity",
            "2",
            "--open-delay-ms",
            "1500",
            "--admin-user",
            "root",
            "--admin-password",
            "correct horse",
        ])
        .unwrap();
        let ScenarioCommand::PurchaseBurst { common, burst } = &cli.scenario else {
            panic!("expected purchase-burst");
        };
        assert_eq!((common.concurrency, common.warmup), (32, None));
        assert_eq!((burst.stock, burst.per_user_limit, burst.quantity, burst.open_delay_ms), (500, 20, 2, 1_500));
        assert_eq!((burst.admin_user.as_str(), burst.admin_password.as_str()), ("root", "correct horse"));
        // GraphQL Int is 32-bit, and a zero stock or quantity makes no sale.
        let with = |flag: &str, value: &str| {
            Cli::try_parse_from([
                "loadgen",
                "purchase-burst",
                "--admin-user",
                "root",
                "--admin-password",
                "pw",
                flag,
                value,
            ])
        };
        assert!(with("--stock", "0").is_err());
        assert!(with("--quantity", "2147483648").is_err());
        assert!(with("--quantity", "2147483647").is_ok());
        assert_eq!(
            Cli::try_parse_from(["loadgen", "checks", "--consistency", "local"])
                .unwrap()
                .scenario
                .common()
                .warmup_secs(),
            WARMUP_DEFAULT_SECS
        );
    }
}
