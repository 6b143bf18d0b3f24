//! `cli`: one command per common GraphQL operation, for trying a cluster by hand or from scripts.
//!
//! `cargo run -p client --bin cli -- --nodes http://127.0.0.1:8080 check alice`
//!
//! Every command goes through the typed client, which retries per its policy (see the crate
//! docs): a request that certainly took no effect (connection refused, `UNAVAILABLE` with
//! `outcomeUnknown: false`) is retried on the next node; one whose outcome is unknown is retried
//! only if the operation is idempotent (reads, `login`, `follow`, and `buy`, whose idempotency
//! key makes a retry return the first order). `reserve`, `register` and `post` then stop with an
//! error saying the outcome is unknown: check (`check NAME`, `login`, `timeline`) before running
//! them again.
//!
//! `backup --out FILE` saves a consistent backup of the whole state (see `backup.rs`), for
//! `node --restore FILE`.
//!
//! `import FILE.jsonl` brings existing accounts in with `importAccounts` (see `import.rs`):
//! packed calls, a few in flight over the nodes, a progress bar, safe to run again.
//!
//! Output is a short human summary by default. With `--json`, stdout gets one JSON document per
//! result (the GraphQL `data`, e.g. `{"usernameAvailability": {...}}`; `buy` adds
//! `"idempotencyKey"`; `watch-sale` prints one document per update), and a failure prints
//! `{"error": {"code": ..., "message": ..., "outcomeUnknown": ..., "retryAfterMs": ...}}` on
//! stdout too (with `"idempotencyKey"` for `buy`, to repeat it safely). Without `--json`, a
//! failure prints `error CODE: message` on stderr. Either way a failure exits with status 1
//! (status 2 for bad arguments).
//!
//! Within one run the typed client keeps a session (read-your-writes and monotonic reads across
//! nodes: see the client's docs). `--session FILE` carries it across runs: the highest log index
//! seen is read from FILE before the command and written back after it, so `cli --session s
//! reserve bob` through one node and then `cli --session s --nodes <another> check bob --local`
//! is answered from a state that includes the reservation.

mod backup;
mod import;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use client::{Client, ClientError, Consistency, RegisterInput, SubscribeError, SubscribeOptions};
use serde::Serialize;
use serde_json::{json, Value};

/// Default page size of `timeline`.
const TIMELINE_DEFAULT_FIRST: u32 = 20;
/// Default units bought by `buy`.
const BUY_DEFAULT_QUANTITY: u32 = 1;
/// Code printed for failures that happen in this program rather than on the server.
const CLI_ERROR_CODE: &str = "CLI";
/// Code printed with `--json` for arguments that do not parse.
const USAGE_ERROR_CODE: &str = "USAGE";
/// Exit status for arguments that do not parse, as clap uses.
const USAGE_EXIT_STATUS: u8 = 2;

/// Command-line client for a raftgraph cluster.
#[derive(Parser, Debug)]
#[command(name = "cli", version, about)]
struct Cli {
    /// Node base URLs, comma-separated; requests start at the first and retries move on.
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
    /// Print JSON (the GraphQL `data`, or `{"error": ...}`) on stdout instead of a human summary.
    #[arg(long, global = true)]
    json: bool,
    /// A file keeping the session's log index between runs: no run reads a state older than
    /// what an earlier run with the same file wrote or saw (created when missing).
    #[arg(long, global = true, env = "RAFTGRAPH_SESSION")]
    session: Option<std::path::PathBuf>,
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
        /// Display name.
        #[arg(long)]
        display_name: Option<String>,
        /// Email address.
        #[arg(long)]
        email: Option<String>,
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
    /// Read the home timeline, newest first.
    Timeline {
        /// Tweets to read.
        #[arg(long, default_value_t = TIMELINE_DEFAULT_FIRST)]
        first: u32,
        /// Continue after this cursor (the `endCursor` of the previous page).
        #[arg(long)]
        after: Option<String>,
        /// Confirm with the leader, so every acknowledged tweet shows.
        #[arg(long)]
        linearizable: bool,
    },
    /// Buy units of a sale; retried with the same idempotency key, so it buys at most once.
    Buy {
        /// The sale's id.
        sale_id: String,
        /// Units to buy.
        #[arg(long, default_value_t = BUY_DEFAULT_QUANTITY)]
        quantity: u32,
        /// Idempotency key; a random one when omitted (printed, to repeat the purchase safely).
        #[arg(long)]
        key: Option<String>,
    },
    /// Read a sale, confirmed with the leader.
    Sale {
        /// The sale's id.
        sale_id: String,
        /// Answer from the node's local state instead of confirming with the leader.
        #[arg(long)]
        local: bool,
    },
    /// Follow a sale's changes, resuming on another node without gap or repeat.
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
    /// Bring in existing accounts from a JSONL file (ADMIN token): one JSON object per line,
    /// `{"username", "passwordHash" (argon2id PHC), "displayName", "email", "createdAt"}`.
    /// Safe to run again: accounts already imported are skipped as USERNAME_TAKEN.
    Import {
        /// The JSONL file.
        file: std::path::PathBuf,
        /// `importAccounts` calls in flight at once, spread over the nodes.
        #[arg(long, default_value_t = import::IMPORT_PARALLEL_DEFAULT)]
        parallel: usize,
        /// Write every skipped account to this file, one JSON object per line.
        #[arg(long = "skipped")]
        skipped_out: Option<std::path::PathBuf>,
    },
    /// Save a consistent backup of the whole state (ADMIN token) to FILE, from the first of
    /// --nodes that serves one. Restore it with `node --restore FILE --data-dir NEW_DIR`.
    Backup {
        /// Where to write the backup (written as FILE.partial, renamed once complete and checked).
        #[arg(long)]
        out: std::path::PathBuf,
    },
    /// The cluster as the answering node sees it.
    Cluster,
    /// Print the schema in SDL (`GET /schema.graphql`), for codegen tools.
    Schema,
}

/// A failure to report.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
struct CliError {
    code: String,
    message: String,
    /// Whether the operation may have been applied although it failed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    outcome_unknown: bool,
    /// The server's suggested wait before a retry.
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_after_ms: Option<u64>,
    /// For `buy`: the key to repeat the purchase with.
    #[serde(skip_serializing_if = "Option::is_none")]
    idempotency_key: Option<String>,
}

impl CliError {
    fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            code: code.into(),
            message: message.into(),
            outcome_unknown: false,
            retry_after_ms: None,
            idempotency_key: None,
        }
    }

    fn local(message: impl Into<String>) -> Self {
        Self::new(CLI_ERROR_CODE, message)
    }

    /// The error as `--json` prints it.
    fn to_json(&self) -> Value {
        json!({ "error": self })
    }
}

impl From<ClientError> for CliError {
    fn from(e: ClientError) -> Self {
        Self {
            outcome_unknown: e.outcome_unknown(),
            retry_after_ms: e.retry_after_ms(),
            ..Self::new(e.code(), e.message())
        }
    }
}

impl From<SubscribeError> for CliError {
    fn from(e: SubscribeError) -> Self {
        Self::new(e.code(), e.message())
    }
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if wants_json(std::env::args()) && e.use_stderr() => {
            println!("{}", CliError::new(USAGE_ERROR_CODE, e.to_string().trim_end()).to_json());
            return ExitCode::from(USAGE_EXIT_STATUS);
        }
        Err(e) => e.exit(),
    };
    let json = cli.json;
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return report(&CliError::local(format!("cannot start the runtime: {e}")), json),
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => report(&e, json),
    }
}

/// Whether `--json` is among the raw arguments, to answer even a usage error in JSON.
fn wants_json(args: impl IntoIterator<Item = String>) -> bool {
    args.into_iter().take_while(|a| a != "--").any(|a| a == "--json")
}

/// Prints a failure as `--json` or a human asked, and gives the exit status.
fn report(e: &CliError, json: bool) -> ExitCode {
    if json {
        println!("{}", e.to_json());
    } else {
        eprintln!("error {}: {}", e.code, e.message);
    }
    ExitCode::FAILURE
}

/// `{name: value}`, the shape of the GraphQL `data` the operation `name` answers.
fn data_of(name: &str, value: impl Serialize) -> Result<Value, CliError> {
    let value = serde_json::to_value(value).map_err(|e| CliError::local(format!("cannot render {name}: {e}")))?;
    Ok(json!({ name: value }))
}

/// Runs one command in the session `--session` names, if any, and prints its result.
async fn run(mut cli: Cli) -> Result<(), CliError> {
    let mut client = Client::new(&cli.nodes)?;
    if let Some(token) = &cli.token {
        client = client.with_bearer(token.as_str());
    }
    let session = cli.session.take();
    if let Some(path) = &session {
        client.observe_index(load_session(path)?);
    }
    let result = run_command(&client, cli).await;
    if let Some(path) = &session {
        // Also after a failure: a rejected write committed, and what it saw counts.
        save_session(path, client.session_index())?;
    }
    result
}

/// The index saved in a session file; 0 for a file that does not exist yet.
fn load_session(path: &std::path::Path) -> Result<u64, CliError> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.trim().parse().map_err(|e| {
            CliError::local(format!("session file {}: not a log index ({e}): {:?}", path.display(), text.trim()))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(CliError::local(format!("session file {}: {e}", path.display()))),
    }
}

/// Saves the session's index, never lowering what the file holds (two runs may share a file).
fn save_session(path: &std::path::Path, index: u64) -> Result<(), CliError> {
    let index = index.max(load_session(path).unwrap_or(0));
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, format!("{index}\n"))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| CliError::local(format!("session file {}: {e}", path.display())))
}

/// Runs one command and prints its result.
async fn run_command(client: &Client, cli: Cli) -> Result<(), CliError> {
    let (kind, data) = match cli.command {
        Command::Check { name, local } => {
            let c = local.then_some(Consistency::Local);
            (Kind::Check, data_of("usernameAvailability", client.username_availability(0, &name, c).await?)?)
        }
        Command::Reserve { name, ttl_secs } => {
            (Kind::Reserve, data_of("reserveUsername", client.reserve_username(0, &name, ttl_secs).await?)?)
        }
        Command::Register { name, password, reservation_token, display_name, email } => {
            let input = RegisterInput { username: name, password, display_name, email, reservation_token };
            (Kind::Register, data_of("register", client.register(0, &input).await?)?)
        }
        Command::Login { name, password } => (Kind::Login, data_of("login", client.login(0, &name, &password).await?)?),
        Command::Post { body, reply_to } => {
            (Kind::Post, data_of("postTweet", client.post_tweet(0, &body, reply_to.as_deref()).await?)?)
        }
        Command::Follow { user_id } => (Kind::Follow, data_of("follow", client.follow(0, &user_id).await?)?),
        Command::Timeline { first, after, linearizable } => {
            let c = linearizable.then_some(Consistency::Linearizable);
            (Kind::Timeline, data_of("timeline", client.timeline(0, Some(first), after.as_deref(), c).await?)?)
        }
        Command::Buy { sale_id, quantity, key } => {
            let key = key.unwrap_or_else(|| format!("cli-{:016x}", rand::random::<u64>()));
            if !cli.json {
                // The key is what lets the caller repeat this exact purchase safely, even if
                // it fails below.
                eprintln!("idempotency key {key}");
            }
            let order = client
                .purchase(0, &sale_id, quantity, &key)
                .await
                .map_err(|e| CliError { idempotency_key: Some(key.clone()), ..CliError::from(e) })?;
            let mut data = data_of("purchase", order)?;
            data["idempotencyKey"] = json!(key);
            (Kind::Buy, data)
        }
        Command::Sale { sale_id, local } => {
            let c = if local { Consistency::Local } else { Consistency::Linearizable };
            (Kind::Sale, data_of("sale", client.sale(0, &sale_id, c).await?)?)
        }
        Command::WatchSale { sale_id, after_index, count } => {
            return watch_sale(client, &sale_id, after_index, count, cli.json).await;
        }
        Command::Import { file, parallel, skipped_out } => {
            let args = import::ImportArgs { file, parallel, skipped_out, json: cli.json };
            return import::run(client, cli.nodes.len(), args).await;
        }
        Command::Backup { out } => {
            let args = backup::BackupArgs { nodes: cli.nodes, token: cli.token, out, json: cli.json };
            return backup::run(args).await;
        }
        Command::Cluster => (Kind::Cluster, data_of("cluster", client.cluster(0).await?)?),
        Command::Schema => {
            let sdl = client.schema_sdl(0).await?;
            if cli.json {
                println!("{}", json!({ "schema": sdl }));
            } else {
                print!("{sdl}");
            }
            return Ok(());
        }
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
    client: &Client,
    sale_id: &str,
    after_index: Option<u64>,
    count: Option<u64>,
    raw: bool,
) -> Result<(), CliError> {
    let mut updates = client.sale_updates(sale_id, after_index, SubscribeOptions::default())?;
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
                return Err(CliError::new("NOT_FOUND", "no such user"));
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
                return Err(CliError::new("NOT_FOUND", "no such sale"));
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
    fn errors_render_as_json_with_hints_only_when_set() {
        let plain = CliError::new("SOLD_OUT", "sold out");
        assert_eq!(plain.to_json(), json!({"error": {"code": "SOLD_OUT", "message": "sold out"}}));
        let unknown = ClientError::OutcomeUnknown {
            operation: "register".into(),
            cause: Box::new(ClientError::Unavailable {
                message: "not committed in time".into(),
                retry_after_ms: Some(500),
                outcome_unknown: true,
            }),
        };
        let e = CliError { idempotency_key: Some("k".into()), ..CliError::from(unknown) };
        let v = e.to_json();
        assert_eq!(v["error"]["code"], "UNAVAILABLE");
        assert_eq!(v["error"]["outcomeUnknown"], true);
        assert_eq!(v["error"]["retryAfterMs"], 500);
        assert_eq!(v["error"]["idempotencyKey"], "k");
        assert!(v["error"]["message"].as_str().unwrap().contains("outcome is unknown"));
    }

    #[test]
    fn json_flag_is_found_before_a_double_dash_only() {
        let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(wants_json(args(&["cli", "--json", "bogus"])));
        assert!(!wants_json(args(&["cli", "post", "--", "--json"])));
        assert!(!wants_json(args(&["cli", "cluster"])));
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
