//! `cli`: one command per common GraphQL operation, for trying a cluster by hand.
//!
//! `cargo run -p client --bin cli -- --nodes http://127.0.0.1:8080 check alice`
//!
//! Reads go through the retrying client, which moves on to the next node when one cannot serve.
//! Writes are sent once, because a write whose answer was lost may have committed and a retry
//! could apply it twice; `buy` is the exception, since its idempotency key makes a retry return
//! the first order. Errors print `error CODE: message` to stderr and exit with status 1.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use client::ops::{
    AVAILABILITY_QUERY, CLUSTER_QUERY, LOGIN_MUTATION, PURCHASE_MUTATION, REGISTER_MUTATION, RESERVE_MUTATION,
    SALE_LINEARIZABLE_QUERY,
};
use client::{Client, ClientError, SubscribeError};
use serde_json::{json, Value};

/// Mutation posting a tweet as the signed-in user.
const POST_TWEET_MUTATION: &str = "mutation($b:String!,$r:ID){ postTweet(body:$b, replyTo:$r){ id } }";
/// Mutation following a user; idempotent.
const FOLLOW_MUTATION: &str = "mutation($u:ID!){ follow(userId:$u){ id username followerCount } }";
/// Query reading the signed-in user's home timeline, newest first.
const TIMELINE_QUERY: &str =
    "query($n:Int){ timeline(first:$n){ edges{ node{ id body author{ username } } } pageInfo{ hasNextPage } } }";
/// Subscription to a sale's changes, resumable through `afterIndex`.
const SALE_UPDATES_SUBSCRIPTION: &str = "subscription($s:ID!,$afterIndex:Int){ saleUpdates(saleId:$s, afterIndex:$afterIndex){ index saleId stock sold status } }";
/// Where each `saleUpdates` event carries its feed index.
const SALE_UPDATES_INDEX_PATH: &str = "saleUpdates.index";
/// Default page size of `timeline`.
const TIMELINE_DEFAULT_FIRST: i32 = 20;
/// Default units bought by `buy`.
const BUY_DEFAULT_QUANTITY: u32 = 1;
/// Code printed for failures that happen in this program rather than on the server.
const CLI_ERROR_CODE: &str = "CLI";

/// Command-line client for a raftgraph cluster.
#[derive(Parser, Debug)]
#[command(name = "cli", version, about)]
struct Cli {
    /// Node base URLs, comma-separated; requests start at the first.
    #[arg(
        long,
        global = true,
        env = "RAFTGRAPH_NODES",
        value_delimiter = ',',
        default_value = "http://127.0.0.1:8080"
    )]
    nodes: Vec<String>,
    /// Bearer token for signed-in operations (from `register` or `login`).
    #[arg(long, global = true, env = "RAFTGRAPH_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Print the raw JSON `data` instead of a short human summary.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

/// The operations.
#[derive(Subcommand, Debug)]
enum Command {
    /// Whether a username can be claimed (usernameAvailability).
    Check {
        /// The username.
        name: String,
        /// Answer from the node's local state instead of confirming with the leader.
        #[arg(long)]
        local: bool,
    },
    /// Reserve a username; prints the reservation token.
    Reserve {
        /// The username.
        name: String,
        /// Reservation lifetime in seconds; the server's default when omitted.
        #[arg(long = "ttl")]
        ttl_secs: Option<u32>,
    },
    /// Create an account; prints its token.
    Register {
        /// The username.
        name: String,
        /// The password.
        #[arg(long)]
        password: String,
        /// Token from `reserve`.
        #[arg(long)]
        reservation_token: Option<String>,
    },
    /// Sign in; prints the token.
    Login {
        /// The username.
        name: String,
        /// The password.
        #[arg(long)]
        password: String,
    },
    /// Post a tweet.
    Post {
        /// The tweet's text.
        body: String,
        /// Id of the tweet this one answers.
        #[arg(long)]
        reply_to: Option<String>,
    },
    /// Follow a user.
    Follow {
        /// The user's id.
        user_id: String,
    },
    /// Read the home timeline.
    Timeline {
        /// Tweets to read.
        #[arg(long, default_value_t = TIMELINE_DEFAULT_FIRST)]
        first: i32,
    },
    /// Buy units of a sale; retried with the same idempotency key, so it buys at most once.
    Buy {
        /// The sale's id.
        sale_id: String,
        /// Units to buy.
        #[arg(long, default_value_t = BUY_DEFAULT_QUANTITY)]
        quantity: u32,
        /// Idempotency key; a random one when omitted.
        #[arg(long)]
        key: Option<String>,
    },
    /// Read a sale, confirmed with the leader.
    Sale {
        /// The sale's id.
        sale_id: String,
    },
    /// Follow a sale's changes, reconnecting to the next node without gap or repeat.
    WatchSale {
        /// The sale's id.
        sale_id: String,
        /// Start after this feed index; without it, the current state comes first.
        #[arg(long = "after")]
        after_index: Option<u64>,
        /// Stop after this many updates; otherwise run until Ctrl-C.
        #[arg(long)]
        count: Option<u64>,
    },
    /// The cluster as the answering node sees it.
    Cluster,
}

/// A failure to report: `error CODE: message`.
#[derive(Debug)]
struct CliError {
    code: String,
    message: String,
}

impl CliError {
    fn local(message: impl Into<String>) -> Self {
        Self { code: CLI_ERROR_CODE.to_owned(), message: message.into() }
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        let message = match &e {
            ClientError::Graphql { message, .. } => message.clone(),
            other => other.to_string(),
        };
        Self { code: e.code(), message }
    }
}

impl From<SubscribeError> for CliError {
    fn from(e: SubscribeError) -> Self {
        let message = match &e {
            SubscribeError::Graphql { message, .. } => message.clone(),
            other => other.to_string(),
        };
        Self { code: e.code(), message }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error {}: {}", e.code, e.message);
            ExitCode::FAILURE
        }
    }
}

/// Runs one command and prints its result.
async fn run(cli: Cli) -> Result<(), CliError> {
    let client = Client::new(&cli.nodes)?;
    let token = cli.token.as_deref();
    let (kind, data) = match cli.command {
        Command::Check { name, local } => {
            let c = if local { Some("LOCAL") } else { None };
            (Kind::Check, client.execute_retrying(0, AVAILABILITY_QUERY, json!({"name": name, "c": c}), token).await?)
        }
        Command::Reserve { name, ttl_secs } => {
            (Kind::Reserve, client.execute(0, RESERVE_MUTATION, json!({"name": name, "ttl": ttl_secs}), token).await?)
        }
        Command::Register { name, password, reservation_token } => {
            let input = json!({"username": name, "password": password, "reservationToken": reservation_token});
            (Kind::Register, client.execute(0, REGISTER_MUTATION, json!({"input": input}), token).await?)
        }
        Command::Login { name, password } => {
            (Kind::Login, client.execute(0, LOGIN_MUTATION, json!({"u": name, "p": password}), token).await?)
        }
        Command::Post { body, reply_to } => {
            (Kind::Post, client.execute(0, POST_TWEET_MUTATION, json!({"b": body, "r": reply_to}), token).await?)
        }
        Command::Follow { user_id } => {
            (Kind::Follow, client.execute(0, FOLLOW_MUTATION, json!({"u": user_id}), token).await?)
        }
        Command::Timeline { first } => {
            (Kind::Timeline, client.execute_retrying(0, TIMELINE_QUERY, json!({"n": first}), token).await?)
        }
        Command::Buy { sale_id, quantity, key } => {
            let key = key.unwrap_or_else(|| format!("cli-{:016x}", rand::random::<u64>()));
            let vars = client::ops::purchase_variables(&sale_id, quantity, &key);
            let data = client.execute_retrying(0, PURCHASE_MUTATION, vars, token).await?;
            if !cli.json {
                // The key is what lets the caller repeat this exact purchase safely.
                eprintln!("idempotency key {key}");
            }
            (Kind::Buy, data)
        }
        Command::Sale { sale_id } => {
            (Kind::Sale, client.execute_retrying(0, SALE_LINEARIZABLE_QUERY, json!({"id": sale_id}), token).await?)
        }
        Command::WatchSale { sale_id, after_index, count } => {
            return watch_sale(&cli.nodes, token, &sale_id, after_index, count, cli.json).await;
        }
        Command::Cluster => (Kind::Cluster, client.execute_retrying(0, CLUSTER_QUERY, json!({}), token).await?),
    };
    if cli.json {
        println!("{data}");
    } else {
        println!("{}", human(kind, &data)?);
    }
    Ok(())
}

/// Prints one line per sale update until `count` updates, Ctrl-C, or the subscription ends.
async fn watch_sale(
    nodes: &[String],
    token: Option<&str>,
    sale_id: &str,
    after_index: Option<u64>,
    count: Option<u64>,
    raw: bool,
) -> Result<(), CliError> {
    let vars = json!({"s": sale_id, "afterIndex": after_index});
    let mut updates = client::subscribe(nodes, SALE_UPDATES_SUBSCRIPTION, vars, token, SALE_UPDATES_INDEX_PATH)?;
    let mut seen = 0u64;
    // Bounded by --count, Ctrl-C, or the end of the subscription (which gives up on its own
    // after its reconnect limit).
    while count.is_none_or(|c| seen < c) {
        let next = tokio::select! {
            n = updates.recv() => n,
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        let Some(item) = next else { return Ok(()) };
        let data = item?;
        if raw {
            println!("{data}");
        } else {
            println!("{}", human(Kind::SaleUpdate, &data)?);
        }
        seen += 1;
    }
    Ok(())
}

/// Which operation a `data` value answers, to pick its human rendering.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Check,
    Reserve,
    Register,
    Login,
    Post,
    Follow,
    Timeline,
    Buy,
    Sale,
    SaleUpdate,
    Cluster,
}

/// Renders a value as plain text: strings bare, numbers as numbers, null as `-`.
fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// A short human summary of an operation's `data`.
fn human(kind: Kind, data: &Value) -> Result<String, CliError> {
    let field =
        |name: &str| data.get(name).ok_or_else(|| CliError::local(format!("answer has no field {name:?}: {data}")));
    Ok(match kind {
        Kind::Check => {
            let a = field("usernameAvailability")?;
            let mut line = format!("{} ({}): {}", text(&a["name"]), text(&a["canonical"]), text(&a["status"]));
            if !a["reason"].is_null() {
                line += &format!(", {}", text(&a["reason"]));
            }
            let suggestions: Vec<String> = a["suggestions"].as_array().into_iter().flatten().map(text).collect();
            if !suggestions.is_empty() {
                line += &format!("; try {}", suggestions.join(", "));
            }
            line
        }
        Kind::Reserve => {
            let r = field("reserveUsername")?;
            format!("{}\n(expires {})", text(&r["token"]), text(&r["expiresAt"]))
        }
        Kind::Register => text(&field("register")?["token"]),
        Kind::Login => text(&field("login")?["token"]),
        Kind::Post => format!("tweet {}", text(&field("postTweet")?["id"])),
        Kind::Follow => {
            let u = field("follow")?;
            if u.is_null() {
                return Err(CliError::local("no such user"));
            }
            format!(
                "following {} (id {}, {} followers)",
                text(&u["username"]),
                text(&u["id"]),
                text(&u["followerCount"])
            )
        }
        Kind::Timeline => {
            let t = field("timeline")?;
            let lines: Vec<String> = t["edges"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| {
                    let n = &e["node"];
                    format!("{} @{}: {}", text(&n["id"]), text(&n["author"]["username"]), text(&n["body"]))
                })
                .collect();
            if lines.is_empty() {
                "(empty timeline)".to_owned()
            } else {
                lines.join("\n")
            }
        }
        Kind::Buy => {
            let o = field("purchase")?;
            format!("order {}: {} unit(s)", text(&o["id"]), text(&o["quantity"]))
        }
        Kind::Sale => {
            let s = field("sale")?;
            if s.is_null() {
                return Err(CliError { code: "NOT_FOUND".to_owned(), message: "no such sale".to_owned() });
            }
            format!(
                "sale {}: {}, {} left, {} sold",
                text(&s["id"]),
                text(&s["status"]),
                text(&s["stock"]),
                text(&s["sold"])
            )
        }
        Kind::SaleUpdate => {
            let u = field("saleUpdates")?;
            format!(
                "#{} sale {}: {}, {} left, {} sold",
                text(&u["index"]),
                text(&u["saleId"]),
                text(&u["status"]),
                text(&u["stock"]),
                text(&u["sold"])
            )
        }
        Kind::Cluster => {
            let c = field("cluster")?;
            let members: Vec<String> = c["members"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|m| format!("{}={}", text(&m["id"]), text(&m["addr"])))
                .collect();
            format!(
                "node {}, leader {}, term {}, lastApplied {}\nmembers {}",
                text(&c["nodeId"]),
                text(&c["leaderId"]),
                text(&c["term"]),
                text(&c["lastApplied"]),
                members.join(" ")
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn availability_reads_as_one_line() {
        let data = json!({"usernameAvailability": {"name": "Alice", "canonical": "alice", "status": "TAKEN",
                          "reason": "already registered", "suggestions": ["alice1", "alice_"]}});
        assert_eq!(human(Kind::Check, &data).unwrap(), "Alice (alice): TAKEN, already registered; try alice1, alice_");
        let free = json!({"usernameAvailability": {"name": "bob", "canonical": "bob", "status": "AVAILABLE",
                          "reason": null, "suggestions": null}});
        assert_eq!(human(Kind::Check, &free).unwrap(), "bob (bob): AVAILABLE");
    }

    #[test]
    fn cluster_and_sale_updates_render() {
        let data = json!({"cluster": {"nodeId": 2, "leaderId": null, "term": 5, "lastApplied": 40,
                          "members": [{"id": 1, "addr": "a:1"}, {"id": 2, "addr": "b:2"}]}});
        assert_eq!(
            human(Kind::Cluster, &data).unwrap(),
            "node 2, leader -, term 5, lastApplied 40\nmembers 1=a:1 2=b:2"
        );
        let update = json!({"saleUpdates": {"index": 17, "saleId": "3", "stock": 9, "sold": 1, "status": "OPEN"}});
        assert_eq!(human(Kind::SaleUpdate, &update).unwrap(), "#17 sale 3: OPEN, 9 left, 1 sold");
    }

    #[test]
    fn tokens_print_bare_and_missing_fields_are_errors() {
        let data = json!({"login": {"token": "abc", "user": {"id": "1"}}});
        assert_eq!(human(Kind::Login, &data).unwrap(), "abc");
        let err = human(Kind::Register, &data).unwrap_err();
        assert_eq!(err.code, CLI_ERROR_CODE);
        let missing = human(Kind::Sale, &json!({"sale": null})).unwrap_err();
        assert_eq!(missing.code, "NOT_FOUND");
    }

    #[test]
    fn flags_parse_with_comma_separated_nodes() {
        let cli = Cli::try_parse_from([
            "cli",
            "--nodes",
            "http://a:1,http://b:2",
            "--json",
            "watch-sale",
            "4",
            "--after",
            "10",
            "--count",
            "2",
        ])
        .unwrap();
        assert_eq!(cli.nodes, ["http://a:1", "http://b:2"]);
        assert!(cli.json);
        assert!(matches!(
            cli.command,
            Command::WatchSale { ref sale_id, after_index: Some(10), count: Some(2) } if sale_id == "4"
        ));
    }
}
