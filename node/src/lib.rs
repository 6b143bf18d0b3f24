//! The node: configuration, wiring, the HTTP server, cluster bootstrap and join.
//!
//! `main` parses flags, sets up tracing, binds the listener and calls [`run`]; tests call the
//! same `run` on port 0, so the test server is the real server.
//!
//! Layout:
//! - `config`: flags (each also an environment variable) and their validation.
//! - `http`: routes: GraphQL over HTTP (POST, read-only GET, media types, CORS), which schema a
//!   request runs on, health, readiness, metrics, `/schema.graphql`, the Raft RPC routes behind
//!   the cluster secret, and the per-client rate limit.
//! - `ws`: GraphQL over WebSocket, graphql-transport-ws and the legacy graphql-ws, as negotiated.
//! - `persisted`: Apollo's automatic persisted queries, a bounded cache per node.
//! - `playground`: GraphiQL at `/`, its built files embedded (`node/assets/graphiql/`).
//! - `metrics`: Prometheus metrics.
//! - `tls`: optional TLS (rustls) for clients and peers on the same port.
//! - `server`: the accept loop (axum's, plus a deadline on request headers).
//!
//! The node depends on schema and raft; nothing depends on it.

pub mod config;
pub mod documents;
pub mod http;
pub mod metrics;
pub mod persisted;
pub mod playground;
pub mod server;
pub mod tls;
pub mod ws;

use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use raft::Store;
use raft::{HttpTransport, Transport};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;

pub use config::Config;

/// How many times a joining node asks before giving up (one attempt every half second or so).
pub const JOIN_ATTEMPTS_MAX: u32 = 120;

/// Secrets generated for a one-node cluster started without any, kept in the data dir so a
/// restart keeps issued tokens valid.
#[derive(Serialize, Deserialize)]
struct Secrets {
    cluster_secret: String,
    jwt_secret: String,
}

fn random_hex(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn load_secrets(config: &Config) -> anyhow::Result<(String, String)> {
    if let (Some(c), Some(j)) = (&config.cluster_secret, &config.jwt_secret) {
        return Ok((c.clone(), j.clone()));
    }
    let path = config.data_dir.join("secrets.json");
    let generated: Secrets = if path.exists() {
        serde_json::from_slice(&std::fs::read(&path).with_context(|| format!("read {}", path.display()))?)
            .with_context(|| format!("parse {}", path.display()))?
    } else {
        let s = Secrets { cluster_secret: random_hex(32), jwt_secret: random_hex(32) };
        write_private(&path, &serde_json::to_vec_pretty(&s)?)?;
        tracing::info!(path = %path.display(), "generated secrets for this one-node cluster");
        s
    };
    Ok((
        config.cluster_secret.clone().unwrap_or(generated.cluster_secret),
        config.jwt_secret.clone().unwrap_or(generated.jwt_secret),
    ))
}

fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    use std::io::Write;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).with_context(|| format!("create {}", path.display()))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    Ok(())
}

/// How long `--health-check` waits for an answer.
pub const HEALTH_CHECK_TIMEOUT_MS: u64 = 2_000;

/// GETs `/health` of the node listening on `config.listen` (a wildcard host means this machine;
/// over HTTPS, verified against the node's own CA, when it serves TLS) and returns the process
/// exit code: 0 when it answers 200, 1 otherwise.
pub async fn health_check(config: &Config) -> i32 {
    let addr = match config.listen.rsplit_once(':') {
        Some(("0.0.0.0" | "[::]" | "", port)) => format!("127.0.0.1:{port}"),
        _ => config.listen.clone(),
    };
    let builder = reqwest::Client::builder().timeout(std::time::Duration::from_millis(HEALTH_CHECK_TIMEOUT_MS));
    let (scheme, builder) = match config.tls_cert.as_deref() {
        None => ("http", Ok(builder)),
        Some(cert) => {
            // The certificate names the advertised host, not necessarily 127.0.0.1: the check
            // trusts the CA but not the name, and reaches this machine only.
            let roots = tls::peer_roots(config.tls_ca.as_deref().unwrap_or(cert))
                .and_then(|pem| reqwest::Certificate::from_pem_bundle(&pem).map_err(anyhow::Error::from));
            (
                "https",
                roots.map(|roots| {
                    roots
                        .into_iter()
                        .fold(builder.use_rustls_tls().tls_built_in_root_certs(false), |b, r| b.add_root_certificate(r))
                        .danger_accept_invalid_hostnames(true)
                }),
            )
        }
    };
    let ok = match builder.and_then(|b| b.build().map_err(anyhow::Error::from)) {
        Ok(c) => matches!(c.get(format!("{scheme}://{addr}/health")).send().await, Ok(r) if r.status().is_success()),
        Err(_) => false,
    };
    if ok {
        0
    } else {
        1
    }
}

/// Runs a node until `shutdown` resolves: serves on `listener`, forms or joins the cluster,
/// then drains (stops accepting, finishes in-flight requests) and stops Raft.
pub async fn run(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let (Some(cert), Some(key)) = (config.tls_cert.clone(), config.tls_key.clone()) else {
        let transport = |secret| Ok(Arc::new(HttpTransport::new(secret)) as Arc<dyn Transport>);
        return serve(config, listener, transport, shutdown).await;
    };
    let server = tls::server_config(&cert, &key)?;
    let roots = tls::peer_roots(config.tls_ca.as_deref().unwrap_or(&cert))?;
    let listener = tls::TlsListener::new(listener, server)?;
    let transport = move |secret| {
        let t = HttpTransport::with_tls(secret, &roots).map_err(anyhow::Error::msg)?;
        Ok(Arc::new(t) as Arc<dyn Transport>)
    };
    serve(config, listener, transport, shutdown).await
}

/// [`run`] over any listener and node-to-node transport: the fault simulation runs this same
/// code over turmoil's network. `transport` is made from the cluster secret once it is known.
pub async fn serve<L>(
    config: Config,
    listener: L,
    transport: impl FnOnce(String) -> anyhow::Result<Arc<dyn Transport>>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()>
where
    L: axum::serve::Listener<Addr = SocketAddr>,
{
    config.validate().map_err(anyhow::Error::msg).context("invalid configuration")?;
    let peers = config.peer_map().map_err(anyhow::Error::msg)?;
    std::fs::create_dir_all(&config.data_dir).with_context(|| format!("create {}", config.data_dir.display()))?;
    let (cluster_secret, jwt_secret) = load_secrets(&config)?;

    if let Some(backup) = &config.restore {
        let restored = raft::restore_backup(backup, &config.data_dir, config.id, &peers)
            .await
            .map_err(|e| anyhow::anyhow!("{e}"))
            .with_context(|| format!("--restore {}", backup.display()))?;
        let head = &restored.head;
        if restored.already {
            tracing::info!(backup = %backup.display(), index = head.last_applied.index,
                "this data dir already holds this backup: starting");
        } else {
            tracing::info!(backup = %backup.display(), index = head.last_applied.index, rows = head.rows,
                sha256 = %restored.sha256, elapsed_ms = restored.elapsed.as_millis() as u64,
                members = ?peers, "restored the backup");
        }
    }
    let store_config = config.store_config();
    let transport = transport(cluster_secret.clone())?;
    let store = Store::open(store_config, transport).await.map_err(|e| anyhow::anyhow!("open store: {e}"))?;

    let stages = Arc::new(schema::observe::RequestStages::default());
    let limiter = Arc::new(schema::Limiter::new(config.rate_limit_per_sec));
    let metrics = Arc::new(metrics::Metrics::new(stages.clone())?);
    let observer_metrics = metrics.clone();
    let schema_config = schema::SchemaConfig {
        username_cooldown_secs: config.username_cooldown_secs,
        observer: Some(Arc::new(move |op: &str, elapsed, failed| observer_metrics.observe(op, elapsed, failed))),
        stages: stages.clone(),
        limiter: limiter.clone(),
        reservations_per_client_per_hour: config.reservations_per_client_per_hour,
        ..Default::default()
    };
    let introspection = schema::build_introspection(store.clone(), jwt_secret.as_bytes(), schema_config.clone())
        .map_err(anyhow::Error::msg)?;
    let schema = schema::build(store.clone(), jwt_secret.as_bytes(), schema_config).map_err(anyhow::Error::msg)?;
    let (drain_tx, drain_rx) = tokio::sync::watch::channel(false);
    let state = http::AppState {
        sdl: schema.sdl().into(),
        schemas: http::Schemas { main: schema, introspection, documents: Default::default() },
        persisted: Default::default(),
        cors_origins: config.cors_origins.iter().map(|o| o.trim().to_string()).filter(|o| !o.is_empty()).collect(),
        store: store.clone(),
        metrics,
        stages,
        peer_auth: Arc::new(raft::PeerAuth::new(cluster_secret.as_bytes(), config.id)),
        limiter,
        sockets: ws::Sockets::new(config.ws_sockets_per_client),
        tokens: schema::TokenVerifier::new(jwt_secret.as_bytes()),
        backups: Arc::new(tokio::sync::Semaphore::new(http::BACKUPS_AT_ONCE_MAX)),
        draining: drain_rx,
    };

    // Forming the cluster runs beside the server: peers must reach our /raft/ routes meanwhile.
    // A node that cannot join stops (after draining) with the reason, rather than serve forever
    // outside the cluster; a failed bootstrap is logged and the node keeps waiting for peers.
    let (fatal_tx, fatal_rx) = tokio::sync::oneshot::channel::<String>();
    let membership = {
        let store = store.clone();
        let join = config.join.clone();
        tokio::spawn(async move {
            match join {
                Some(addr) => match store.ensure_joined(&addr, JOIN_ATTEMPTS_MAX).await {
                    Ok(raft::JoinOutcome::AlreadyMember) => tracing::info!("a voter already: not joining again"),
                    Ok(raft::JoinOutcome::Joined) => tracing::info!(through = %addr, "joined the cluster"),
                    Err(e) => {
                        tracing::error!(error = %e, "could not join the cluster: stopping");
                        let _ = fatal_tx.send(format!("could not join the cluster through {addr}: {e}"));
                    }
                },
                None => {
                    if let Err(e) = store.bootstrap(&peers).await {
                        tracing::error!(error = %e, "could not form the cluster");
                    }
                }
            }
        })
    };
    let fatal = Arc::new(std::sync::Mutex::new(None::<String>));

    let local = listener.local_addr().ok();
    tracing::info!(id = config.id, listen = ?local, advertise = %config.advertise(), "serving");
    let app = http::router(state);
    let fatal_seen = fatal.clone();
    crate::server::serve(listener, app, async move {
        tokio::select! {
            () = shutdown => {}
            Ok(reason) = fatal_rx => {
                *fatal_seen.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
            }
        }
        // Subscriber sockets close themselves (1001) on this; the server drains the rest.
        let _ = drain_tx.send(true);
    })
    .await;
    membership.abort();
    tracing::info!("drained; stopping raft");
    store.shutdown().await;
    let reason = fatal.lock().unwrap_or_else(|p| p.into_inner()).take();
    match reason {
        Some(reason) => Err(anyhow::anyhow!(reason)),
        None => Ok(()),
    }
}
