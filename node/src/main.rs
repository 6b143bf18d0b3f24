//! The `node` binary: flags, tracing, listener, signals; everything else is [`node::run`].

use anyhow::Context as _;
use clap::Parser;
use tracing_subscriber::EnvFilter;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info,openraft=warn")))
        .init();
    let mut config = node::Config::parse();
    if config.health_check {
        std::process::exit(node::health_check(&config).await);
    }
    config.resolve_id(std::env::var("HOSTNAME").ok().as_deref()).map_err(anyhow::Error::msg)?;
    config.validate().map_err(anyhow::Error::msg).context("invalid configuration")?;
    let listener =
        tokio::net::TcpListener::bind(&config.listen).await.with_context(|| format!("bind {}", config.listen))?;
    if config.peers.is_empty() && config.join.is_none() {
        let scheme = if config.tls_cert.is_some() { "https" } else { "http" };
        tracing::info!("one-node cluster; GraphiQL at {scheme}://{}/", config.listen);
    }
    node::run(config, listener, shutdown_signal()).await
}

/// Resolves on SIGTERM or Ctrl-C.
async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::warn!(error = %e, "ctrl-c handler");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::warn!(error = %e, "SIGTERM handler");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        _ = ctrl_c => tracing::info!("ctrl-c: draining"),
        _ = term => tracing::info!("SIGTERM: draining"),
    }
}
