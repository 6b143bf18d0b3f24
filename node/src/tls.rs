//! Optional TLS (rustls) on the node's one port, for clients and peers alike.
//!
//! With `--tls-cert` and `--tls-key` (PEM) the node serves HTTPS and WSS only, and dials its
//! peers over HTTPS, trusting the certificates of `--tls-ca` (PEM; default: the node's own
//! certificate file, which suits one self-signed certificate shared by the cluster, or a chain
//! ending in the cluster's CA). Every node of a cluster must be configured the same way. Peers
//! still sign every request with the cluster secret (`raft::peer_auth`): TLS adds
//! confidentiality and server identity, not a second notion of membership.
//!
//! Handshakes run in their own tasks, at most [`TLS_HANDSHAKES_IN_FLIGHT_MAX`] at once and each
//! within [`TLS_HANDSHAKE_TIMEOUT_MS`], so a client that opens a connection and stalls the
//! handshake holds only itself up, not the accept loop.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client may take to finish the TLS handshake.
pub const TLS_HANDSHAKE_TIMEOUT_MS: u64 = 5_000;
/// TLS handshakes in progress at once; more connections wait to be accepted.
pub const TLS_HANDSHAKES_IN_FLIGHT_MAX: usize = 1_024;

/// The server side: certificate chain and key.
pub fn server_config(cert: &Path, key: &Path) -> anyhow::Result<Arc<rustls::ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("read --tls-cert {}", cert.display()))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("parse --tls-cert {}", cert.display()))?;
    if chain.is_empty() {
        anyhow::bail!("--tls-cert {} holds no certificate", cert.display());
    }
    let key = PrivateKeyDer::from_pem_file(key).with_context(|| format!("read --tls-key {}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .context("TLS protocol versions")?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .context("the --tls-key does not match the --tls-cert")?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// The certificates peers are verified against, as PEM (checked to hold at least one).
pub fn peer_roots(ca: &Path) -> anyhow::Result<Vec<u8>> {
    let pem = std::fs::read(ca).with_context(|| format!("read --tls-ca {}", ca.display()))?;
    let n = CertificateDer::pem_slice_iter(&pem).filter(Result::is_ok).count();
    if n == 0 {
        anyhow::bail!("--tls-ca {} holds no certificate", ca.display());
    }
    Ok(pem)
}

/// A listener that yields connections once their TLS handshake is done.
pub struct TlsListener {
    accepted: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl TlsListener {
    /// Accepts on `listener` and completes handshakes with `config` in the background.
    pub fn new(listener: TcpListener, config: Arc<rustls::ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let acceptor = TlsAcceptor::from(config);
        let (tx, accepted) = mpsc::channel(TLS_HANDSHAKES_IN_FLIGHT_MAX);
        let slots = Arc::new(Semaphore::new(TLS_HANDSHAKES_IN_FLIGHT_MAX));
        let task = tokio::spawn(async move {
            loop {
                let Ok(permit) = slots.clone().acquire_owned().await else { return };
                let (stream, peer) = match listener.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        // Out of file descriptors and the like: pause rather than spin.
                        tracing::warn!(error = %e, "accept");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let acceptor = acceptor.clone();
                let tx = tx.clone();
                tokio::spawn(async move {
                    let timeout = Duration::from_millis(TLS_HANDSHAKE_TIMEOUT_MS);
                    match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            drop(permit);
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                        Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                    }
                });
            }
        });
        Ok(TlsListener { accepted, local, task })
    }
}

impl Drop for TlsListener {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.accepted.recv().await {
            Some(conn) => conn,
            // The accept task only ends when the listener is dropped.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
