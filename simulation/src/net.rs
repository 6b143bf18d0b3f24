//! The node's two network seams, over turmoil's simulated TCP instead of the kernel's: the
//! listener `node::serve` accepts on, and the `raft::Transport` its Raft RPCs use.
//! Everything above them (axum, the routes, Raft, the state machine) is the production code.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use raft::NodeId;
use raft::PeerAuth;
use raft::{sign, Rpc, Transport, TransportError};

/// The port every simulated node serves on.
pub const PORT: u16 = 8080;

/// A turmoil listener, as axum's `serve` wants one.
pub struct SimListener(pub turmoil::net::TcpListener);

impl SimListener {
    /// Binds `0.0.0.0:PORT` on the current simulated host.
    pub async fn bind() -> io::Result<Self> {
        Ok(SimListener(turmoil::net::TcpListener::bind(("0.0.0.0", PORT)).await?))
    }
}

impl axum::serve::Listener for SimListener {
    type Io = turmoil::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.0.accept().await {
                Ok(pair) => return pair,
                // As axum's own TCP listener does: an accept error is transient; wait and go on.
                Err(_) => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.0.local_addr()
    }
}

/// Why a request to a simulated host produced no HTTP answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetError {
    /// The connection was never made: the request had no effect.
    Unreachable(String),
    /// The request may have been delivered, but no answer came (timeout, reset, lost segment).
    NoAnswer(String),
}

/// One HTTP/1.1 POST over a fresh simulated connection, bounded by `timeout`. A new connection
/// per request keeps a crashed or partitioned peer from wedging a pooled one.
pub async fn post(
    addr: &str,
    path: &str,
    headers: &[(&str, String)],
    body: Vec<u8>,
    timeout: Duration,
) -> Result<(u16, Bytes), NetError> {
    let deadline = tokio::time::Instant::now() + timeout;
    let stream = tokio::time::timeout_at(deadline, turmoil::net::TcpStream::connect(addr))
        .await
        .map_err(|_| NetError::Unreachable(format!("connect to {addr} timed out")))?
        .map_err(|e| NetError::Unreachable(format!("connect to {addr}: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| NetError::Unreachable(format!("handshake with {addr}: {e}")))?;
    let driver = tokio::spawn(conn);
    let mut req = hyper::Request::post(format!("http://{addr}{path}"))
        .header("host", addr)
        .header("content-type", "application/json");
    for (name, value) in headers {
        req = req.header(*name, value.as_str());
    }
    let req = req.body(Full::new(Bytes::from(body))).map_err(|e| NetError::Unreachable(e.to_string()))?;
    let answer = tokio::time::timeout_at(deadline, async {
        let resp = sender.send_request(req).await.map_err(|e| NetError::NoAnswer(format!("{addr}: {e}")))?;
        let status = resp.status().as_u16();
        let bytes = resp.into_body().collect().await.map_err(|e| NetError::NoAnswer(format!("{addr}: {e}")))?;
        Ok((status, bytes.to_bytes()))
    })
    .await
    .unwrap_or_else(|_| Err(NetError::NoAnswer(format!("{addr}: no answer in {timeout:?}"))));
    driver.abort();
    answer
}

/// Node-to-node RPC over turmoil: the production `HttpTransport`'s contract on simulated TCP.
pub struct SimTransport {
    auth: PeerAuth,
}

impl SimTransport {
    /// A transport that signs with the cluster secret `secret`, as the real one does.
    pub fn new(secret: String) -> Self {
        SimTransport { auth: PeerAuth::new(secret.as_bytes(), 0) }
    }
}

impl Transport for SimTransport {
    fn post(
        &self,
        addr: &str,
        rpc: Rpc,
        to: NodeId,
        body: Vec<u8>,
        timeout: Duration,
    ) -> BoxFuture<'static, Result<Vec<u8>, TransportError>> {
        let addr = addr.to_string();
        let path = format!("/raft/{rpc}");
        let signature = sign(&self.auth, rpc, to, &body);
        Box::pin(async move {
            let (status, bytes) = post(&addr, &path, &[signature], body, timeout).await.map_err(|e| match e {
                NetError::Unreachable(m) => TransportError::Unreachable(m),
                NetError::NoAnswer(m) => TransportError::Timeout(m),
            })?;
            if !(200..300).contains(&status) {
                let body = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
                return Err(TransportError::Status { status, body });
            }
            Ok(bytes.to_vec())
        })
    }
}
