//! Redis, over RESP2 written here (it is a few lines), one command at a time.

use std::time::Duration;

use anyhow::Context;
use client::transport;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use super::Failure;

/// The Redis purchase: decrement the stock by the quantity if at least that much is left and
/// return what is left, else return -1 and change nothing. Scripts run atomically.
pub(super) const REDIS_PURCHASE_SCRIPT: &str = "local stock = tonumber(redis.call('GET', KEYS[1]))
local q = tonumber(ARGV[1])
if stock == nil or stock < q then return -1 end
return redis.call('DECRBY', KEYS[1], q)";

impl From<std::io::Error> for Failure {
    fn from(_: std::io::Error) -> Self {
        Self::broken("IO")
    }
}

/// The Redis key of a claimed name.
pub(super) fn redis_name_key(name: &str) -> String {
    format!("names:{name}")
}

/// A Redis reply this scenario can get; errors are returned as [`Failure`]s.
#[derive(Debug)]
pub(super) enum Reply {
    /// A status such as `OK`; no command here needs its text.
    Simple,
    Int(i64),
    /// `None` is the nil reply.
    Bulk(Option<Vec<u8>>),
}

/// A Redis connection speaking RESP2, one command at a time.
pub(super) struct RespConn {
    stream: BufReader<TcpStream>,
    out: Vec<u8>,
    line: Vec<u8>,
}

impl RespConn {
    pub(super) async fn connect(endpoint: &str, timeout: Duration) -> anyhow::Result<Self> {
        let address = endpoint.trim_start_matches("redis://").trim_end_matches('/');
        let connect_timeout = timeout.min(Duration::from_millis(transport::CONNECT_TIMEOUT_MS));
        let stream = tokio::time::timeout(connect_timeout, TcpStream::connect(address))
            .await
            .with_context(|| format!("connecting to Redis at {address}: timed out"))?
            .with_context(|| format!("connecting to Redis at {address}"))?;
        stream.set_nodelay(true)?;
        Ok(Self { stream: BufReader::new(stream), out: Vec::new(), line: Vec::new() })
    }

    /// Sends one command and reads its reply.
    pub(super) async fn call(&mut self, args: &[&[u8]]) -> Result<Reply, Failure> {
        self.out.clear();
        self.out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
        for arg in args {
            self.out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
            self.out.extend_from_slice(arg);
            self.out.extend_from_slice(b"\r\n");
        }
        self.stream.get_mut().write_all(&self.out).await?;
        self.read_reply().await
    }

    async fn read_reply(&mut self) -> Result<Reply, Failure> {
        self.line.clear();
        if self.stream.read_until(b'\n', &mut self.line).await? == 0 {
            return Err(Failure::broken("REDIS_EOF"));
        }
        let decode = || Failure::broken("REDIS_DECODE");
        let line = self.line.strip_suffix(b"\r\n").ok_or_else(decode)?;
        let (&kind, rest) = line.split_first().ok_or_else(decode)?;
        let text = std::str::from_utf8(rest).map_err(|_| decode())?;
        match kind {
            b'+' => Ok(Reply::Simple),
            b'-' => Err(Failure::refused(format!("REDIS_{}", text.split_whitespace().next().unwrap_or("ERR")))),
            b':' => text.parse().map(Reply::Int).map_err(|_| decode()),
            b'$' => {
                let len: i64 = text.parse().map_err(|_| decode())?;
                let Ok(len) = usize::try_from(len) else {
                    return Ok(Reply::Bulk(None));
                };
                let mut value = vec![0; len + 2];
                self.stream.read_exact(&mut value).await?;
                value.truncate(len);
                Ok(Reply::Bulk(Some(value)))
            }
            _ => Err(decode()),
        }
    }
}
