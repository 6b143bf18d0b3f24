//! The node's command line. Every flag is also an environment variable (`NODE_ID`,
//! `NODE_LISTEN`, ...), and the whole configuration is validated before anything starts.

use std::collections::BTreeMap;
use std::path::PathBuf;

use clap::Parser;

/// Largest request body accepted, in bytes.
pub const BODY_BYTES_MAX: usize = 256 * 1024;
/// Largest request body accepted on the Raft RPC routes (entries and snapshot chunks), in bytes.
pub const RAFT_BODY_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Most operations in one batched GraphQL request.
pub const BATCH_REQUESTS_MAX: usize = 16;
/// Read buffer of each WebSocket, in bytes. Subscription sockets receive only small control
/// frames, and tungstenite zeroes its whole read buffer on every read: axum's 128 KiB default
/// cost a fifth of the node's CPU with thousands of sockets open (docs/BENCHMARKS.md).
pub const WS_READ_BUFFER_BYTES: usize = 4 * 1024;
/// How long a WebSocket may take to accept one outgoing message. A subscriber that stops reading
/// never slows apply (subscriptions read the feed, they hold no queue), but its connection would
/// wait forever on a full socket; past this it is closed with a reason, and a client that
/// reconnects with `afterIndex` gets what it missed.
pub const WS_SEND_TIMEOUT_MS: u64 = 10_000;
/// How long a WebSocket client may take to send `connection_init` before the socket is closed
/// with 4408, as the graphql-ws reference server does (3 s there too).
pub const WS_CONNECTION_INIT_TIMEOUT_MS: u64 = 3_000;
/// How often a legacy `graphql-ws` socket gets a `ka` (keep-alive) message, which its clients
/// use to tell a live connection from a dead one.
pub const WS_LEGACY_KEEPALIVE_MS: u64 = 15_000;
/// Default of `--rate-limit-per-sec`, in cost units per client: 2,000 reads, 400 writes or 10
/// logins a second, far more than a person or a busy office needs, and a tenth of what one
/// node serves (docs/BENCHMARKS.md, "Under attack": at 20,000 one attacking address could still
/// fill a node's cores with requests it then refused). Load generators from one address set 0.
pub const RATE_LIMIT_PER_SEC_DEFAULT: u32 = 2_000;
/// Most GraphQL WebSockets a node holds open. Each costs a task, buffers and a file descriptor;
/// past this a node refuses upgrades with 429 and clients connect elsewhere.
pub const WS_SOCKETS_MAX: usize = 50_000;
/// Default of `--ws-sockets-per-client`: a browser holds one or two, a NAT of an office a few
/// hundred.
pub const WS_SOCKETS_PER_CLIENT_DEFAULT: usize = 1_000;
/// Operations (subscriptions, queries, mutations) one socket may run at once.
pub const WS_OPERATIONS_PER_SOCKET_MAX: usize = 100;
/// How long a client may take to send a whole GraphQL request body, once its headers are in: a
/// slow upload holds a connection and a task, and a real client sends 256 KiB in far less.
pub const BODY_READ_TIMEOUT_MS: u64 = 10_000;
/// Messages a WebSocket's operations may queue for sending before they wait for the socket.
pub const WS_OUTGOING_QUEUED_MAX: usize = 64;
/// Most automatic persisted queries a node keeps (oldest out first).
pub const PERSISTED_QUERIES_MAX: usize = 10_000;
/// Most bytes of query text those may hold in all.
pub const PERSISTED_QUERIES_BYTES_MAX: usize = 16 * 1024 * 1024;

/// A node of the Raft-replicated GraphQL backend. With no flags: a one-node cluster on
/// 127.0.0.1:8080, data in ./data, secrets generated and kept there.
#[derive(Parser, Debug, Clone)]
#[command(name = "node", version, about)]
pub struct Config {
    /// This node's id (from 1).
    #[arg(long, env = "NODE_ID", default_value_t = 1)]
    pub id: u64,
    /// Address to serve GraphQL, GraphiQL, health and Raft RPC on.
    #[arg(long, env = "NODE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// Address peers and clients reach this node at (defaults to --listen).
    #[arg(long, env = "NODE_ADVERTISE")]
    pub advertise: Option<String>,
    /// Directory for the Raft log, the state and generated secrets.
    #[arg(long, env = "NODE_DATA_DIR", default_value = "data")]
    pub data_dir: PathBuf,
    /// Initial members, itself included: `1=HOST:PORT,2=HOST:PORT,3=HOST:PORT`. The lowest id
    /// initializes the cluster on first start. Empty: a one-node cluster.
    #[arg(long, env = "NODE_PEERS", default_value = "")]
    pub peers: String,
    /// Join a running cluster through this member (as a learner, then a voter).
    #[arg(long, env = "NODE_JOIN")]
    pub join: Option<String>,
    /// Shared secret peers present on the /raft/ routes. Required with more than one member;
    /// generated and kept in the data dir for a one-node cluster.
    #[arg(long, env = "NODE_CLUSTER_SECRET", hide_env_values = true)]
    pub cluster_secret: Option<String>,
    /// Secret that signs bearer tokens; the same on every node. Same rules as --cluster-secret.
    #[arg(long, env = "NODE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// How long a released username stays blocked, in seconds (default 30 days).
    #[arg(long, env = "NODE_USERNAME_COOLDOWN_SECS", default_value_t = schema::USERNAME_COOLDOWN_DEFAULT_SECS)]
    pub username_cooldown_secs: i64,
    /// Browser origins allowed to call the API from other sites (CORS), comma-separated, such
    /// as `https://app.example.com,http://localhost:3000`; `*` allows any. None by default:
    /// only pages served by the node itself (GraphiQL) can call it from a browser.
    #[arg(long, env = "NODE_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// Cost units per second allowed per client (an IPv4 address or an IPv6 /64), bursts up to
    /// twice that; a read costs 1, a write 5, a search 50, a login or registration 200
    /// (docs/SECURITY.md). 0: no limit.
    #[arg(long, env = "NODE_RATE_LIMIT_PER_SEC", default_value_t = RATE_LIMIT_PER_SEC_DEFAULT)]
    pub rate_limit_per_sec: u32,
    /// GraphQL WebSockets one client may hold open on this node (0: no per-client cap; the
    /// node's own cap of 50,000 still holds).
    #[arg(long, env = "NODE_WS_SOCKETS_PER_CLIENT", default_value_t = WS_SOCKETS_PER_CLIENT_DEFAULT)]
    pub ws_sockets_per_client: usize,
    /// Username reservations one client may make per hour on this node (0: no limit).
    #[arg(long, env = "NODE_RESERVATIONS_PER_CLIENT_PER_HOUR", default_value_t = schema::limits::RESERVATIONS_PER_CLIENT_DEFAULT)]
    pub reservations_per_client_per_hour: u32,
    /// Leader heartbeat period, in milliseconds.
    #[arg(long, env = "NODE_HEARTBEAT_MS", default_value_t = raft::HEARTBEAT_INTERVAL_DEFAULT_MS)]
    pub heartbeat_ms: u64,
    /// Minimum election timeout, in milliseconds (the maximum is twice this).
    #[arg(long, env = "NODE_ELECTION_TIMEOUT_MS", default_value_t = raft::ELECTION_TIMEOUT_MIN_DEFAULT_MS)]
    pub election_timeout_ms: u64,
    /// Entries between snapshots.
    #[arg(long, env = "NODE_SNAPSHOT_LOGS", default_value_t = raft::SNAPSHOT_LOGS_DEFAULT)]
    pub snapshot_logs: u64,
    /// Entries kept in the log behind a snapshot.
    #[arg(long, env = "NODE_LOGS_KEPT_AFTER_SNAPSHOT", default_value_t = raft::LOGS_KEPT_AFTER_SNAPSHOT_DEFAULT)]
    pub logs_kept_after_snapshot: u64,
    /// TLS certificate chain (PEM): with --tls-key, the node serves HTTPS and WSS only and
    /// dials its peers over HTTPS. Every node of a cluster must use TLS or none.
    #[arg(long, env = "NODE_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM).
    #[arg(long, env = "NODE_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Certificates (PEM) that peers' certificates must chain to; defaults to --tls-cert (one
    /// self-signed certificate shared by the cluster, or a chain ending in its CA).
    #[arg(long, env = "NODE_TLS_CA", requires = "tls_cert")]
    pub tls_ca: Option<PathBuf>,
    /// Take the id from the host name's trailing ordinal plus one (`raftgraph-0` is id 1), as a
    /// Kubernetes StatefulSet names its pods; overrides --id.
    #[arg(long, env = "NODE_ID_FROM_HOSTNAME", default_value_t = false)]
    pub id_from_hostname: bool,
    /// Seed a new --data-dir from this backup (`cli backup --out FILE`) before starting: the
    /// state as the backup holds it, with --peers (or this node alone) as the members. Refuses a
    /// data dir that holds another node's state; starting again with the same flag starts the
    /// node. With several --peers, give it to the lowest id only: the others start empty and
    /// receive the state from it.
    #[arg(long, env = "NODE_RESTORE", conflicts_with = "join")]
    pub restore: Option<PathBuf>,
    /// Do not serve: GET /health of the node at --listen and exit 0 if it answers 200, 1
    /// otherwise. For container health checks: the image has no shell and no curl.
    #[arg(long)]
    pub health_check: bool,
    /// Deliberate bugs for the fault simulation; not a flag, so a real node never has any.
    #[arg(skip)]
    pub inject: raft::Inject,
}

impl Config {
    /// Configuration with every default, for tests and embedding.
    pub fn defaults() -> Self {
        Config::parse_from(["node"])
    }

    /// Applies `--id-from-hostname`, reading the host name from `hostname` (usually the
    /// `HOSTNAME` environment variable).
    pub fn resolve_id(&mut self, hostname: Option<&str>) -> Result<(), String> {
        if !self.id_from_hostname {
            return Ok(());
        }
        let host = hostname.ok_or("--id-from-hostname: the host name is unknown (HOSTNAME is not set)")?;
        let ordinal = host
            .rsplit_once('-')
            .and_then(|(_, n)| n.parse::<u64>().ok())
            .ok_or_else(|| format!("--id-from-hostname: host name {host:?} does not end in -<ordinal>"))?;
        self.id = ordinal + 1;
        Ok(())
    }

    /// The address peers reach this node at.
    pub fn advertise(&self) -> String {
        self.advertise.clone().unwrap_or_else(|| self.listen.clone())
    }

    /// The initial members. Empty `--peers` means this node alone.
    pub fn peer_map(&self) -> Result<BTreeMap<u64, String>, String> {
        let mut map = BTreeMap::new();
        for part in self.peers.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (id, addr) =
                part.split_once('=').ok_or_else(|| format!("--peers entry {part:?} must look like ID=HOST:PORT"))?;
            let id: u64 =
                id.trim().parse().map_err(|_| format!("--peers entry {part:?}: id {id:?} is not a number"))?;
            if id == 0 {
                return Err(format!("--peers entry {part:?}: ids start at 1"));
            }
            if !addr.contains(':') {
                return Err(format!("--peers entry {part:?}: address {addr:?} must be HOST:PORT"));
            }
            if map.insert(id, addr.trim().to_string()).is_some() {
                return Err(format!("--peers names id {id} twice"));
            }
        }
        if map.is_empty() {
            map.insert(self.id, self.advertise());
        }
        if !map.contains_key(&self.id) {
            return Err(format!("--peers ({}) must include this node's --id {}", self.peers, self.id));
        }
        Ok(map)
    }

    /// Checks every rule, naming the rule and the values.
    pub fn validate(&self) -> Result<(), String> {
        if self.id == 0 {
            return Err("--id must be at least 1, got 0".into());
        }
        let peers = self.peer_map()?;
        let multi = peers.len() > 1 || self.join.is_some();
        for (flag, value) in [("--cluster-secret", &self.cluster_secret), ("--jwt-secret", &self.jwt_secret)] {
            match value {
                Some(s) if s.len() < 16 => return Err(format!("{flag} must be at least 16 bytes, got {}", s.len())),
                None if multi => {
                    return Err(format!("{flag} is required with more than one member (the same value on every node)"))
                }
                _ => {}
            }
        }
        if self.restore.is_some() && peers.keys().next() != Some(&self.id) {
            return Err(format!(
                "--restore seeds the lowest id of --peers ({}), not {}: start the others empty and they receive the \
                 state from it",
                peers.keys().next().copied().unwrap_or_default(),
                self.id
            ));
        }
        if self.username_cooldown_secs < 0 {
            return Err(format!("--username-cooldown-secs must be >= 0, got {}", self.username_cooldown_secs));
        }
        // The store's own rules, named by the flags that set them.
        self.store_config().validate().map_err(|e| {
            let flags = match e {
                raft::ConfigError::Heartbeat { .. } | raft::ConfigError::ElectionRange { .. } => {
                    "--heartbeat-ms, --election-timeout-ms"
                }
                raft::ConfigError::ZeroSnapshotLogs => "--snapshot-logs",
                raft::ConfigError::ZeroId => "--id",
                raft::ConfigError::Raft(_) => "the Raft flags",
            };
            format!("{e} (set by {flags})")
        })
    }

    /// The store's settings these flags stand for (the election timeout's maximum is twice
    /// its minimum).
    pub fn store_config(&self) -> raft::StoreConfig {
        let mut store = raft::StoreConfig::new(self.id, self.advertise(), &self.data_dir);
        store.heartbeat_interval_ms = self.heartbeat_ms;
        store.election_timeout_min_ms = self.election_timeout_ms;
        store.election_timeout_max_ms = self.election_timeout_ms.saturating_mul(2);
        store.snapshot_logs = self.snapshot_logs;
        store.logs_kept_after_snapshot = self.logs_kept_after_snapshot;
        store.inject = self.inject;
        store
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Config {
        Config::parse_from(std::iter::once("node").chain(args.iter().copied()))
    }

    // The embedded default must need nothing: one member, itself, with generated secrets.
    #[test]
    fn no_flags_is_a_valid_one_node_cluster() {
        let c = parse(&[]);
        c.validate().expect("defaults are valid");
        assert_eq!(c.peer_map().expect("peers"), BTreeMap::from([(1, "127.0.0.1:8080".to_string())]));
    }

    // A multi-node cluster must never fall back to a default or generated secret: each node
    // would generate a different one and the cluster could not form (or worse, be open).
    #[test]
    fn multi_node_needs_explicit_secrets_and_well_formed_peers() {
        let peers = "1=a:1,2=b:2,3=c:3";
        assert!(parse(&["--peers", peers]).validate().unwrap_err().contains("--cluster-secret"));
        let ok = parse(&["--peers", peers, "--cluster-secret", "0123456789abcdef", "--jwt-secret", "0123456789abcdef"]);
        ok.validate().expect("valid");
        assert!(parse(&["--peers", "1=a:1,1=b:2"]).validate().unwrap_err().contains("twice"));
        assert!(parse(&["--id", "4", "--peers", peers]).validate().unwrap_err().contains("must include"));
        assert!(parse(&["--peers", "x=a:1"]).validate().unwrap_err().contains("not a number"));
        assert!(parse(&["--heartbeat-ms", "600"]).validate().unwrap_err().contains("election"));
        // A restore seeds the lowest id; a second seeded member could disagree with it.
        let secrets = ["--cluster-secret", "0123456789abcdef", "--jwt-secret", "0123456789abcdef"];
        let restore = |id: &'static str| -> Vec<&'static str> {
            [&["--id", id, "--peers", peers, "--restore", "b.bin"][..], &secrets[..]].concat()
        };
        parse(&restore("1")).validate().expect("the lowest id restores");
        assert!(parse(&restore("2")).validate().unwrap_err().contains("lowest id"));
        let both = Config::try_parse_from(["node", "--restore", "b.bin", "--join", "a:1"]);
        assert!(both.is_err(), "--restore and --join conflict");
    }

    // StatefulSet pods are named <set>-<ordinal> from 0; ids start at 1.
    #[test]
    fn id_from_hostname_uses_the_ordinal_plus_one() {
        let mut c = parse(&["--id-from-hostname"]);
        c.resolve_id(Some("raftgraph-2")).expect("ordinal");
        assert_eq!(c.id, 3);
        assert!(parse(&["--id-from-hostname"]).resolve_id(Some("raftgraph")).unwrap_err().contains("ordinal"));
        assert!(parse(&["--id-from-hostname"]).resolve_id(None).unwrap_err().contains("HOSTNAME"));
        let mut plain = parse(&["--id", "7"]);
        plain.resolve_id(Some("x-1")).expect("no-op");
        assert_eq!(plain.id, 7);
    }
}
