//! `cli backup --out FILE`: a consistent backup of the whole state from the first node that
//! serves one (`GET /backup`, ADMIN token), streamed to disk as it is read.
//!
//! The bytes go to `FILE.partial`; the file is renamed to FILE only once the whole backup is in,
//! its digest (the SHA-256 it ends with, over everything before) matches, and it is on disk
//! (fsync). An interrupted download therefore never leaves a FILE that looks like a backup.
//! A node that cannot serve (unreachable, UNAVAILABLE, busy) is skipped for the next one.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Value};
use sha2::{Digest as _, Sha256};

use crate::CliError;

/// The first bytes of every backup (the node's `raft::BACKUP_MAGIC`).
const BACKUP_MAGIC: &[u8] = b"raftgraph-backup-v1\n";
/// Length of the digest a backup ends with (SHA-256).
const DIGEST_BYTES: usize = 32;
/// How long a node may take to answer the request (it confirms the leader's commit index
/// first) and then to send each next piece; the whole download may take as long as it needs.
const BACKUP_STALL_TIMEOUT: Duration = Duration::from_secs(30);

/// What a run of `backup` is asked to do.
pub(crate) struct BackupArgs {
    pub nodes: Vec<String>,
    pub token: Option<String>,
    pub out: PathBuf,
    pub json: bool,
}

/// Hashes a stream except its last [`DIGEST_BYTES`], which it keeps aside to compare.
struct TailHasher {
    hasher: Sha256,
    tail: Vec<u8>,
}

impl TailHasher {
    fn update(&mut self, chunk: &[u8]) {
        self.tail.extend_from_slice(chunk);
        if self.tail.len() > DIGEST_BYTES {
            let hashed = self.tail.len() - DIGEST_BYTES;
            self.hasher.update(&self.tail[..hashed]);
            self.tail.drain(..hashed);
        }
    }

    fn matches(self) -> bool {
        self.tail.len() == DIGEST_BYTES && self.hasher.finalize()[..] == self.tail[..]
    }
}

fn partial_path(out: &Path) -> PathBuf {
    let mut name = out.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".partial");
    out.with_file_name(name)
}

/// Why one node could not give a backup, and whether the next node may.
struct NodeFailure {
    error: CliError,
    try_next: bool,
}

impl NodeFailure {
    fn next(error: CliError) -> Self {
        NodeFailure { error, try_next: true }
    }
    fn stop(error: CliError) -> Self {
        NodeFailure { error, try_next: false }
    }
}

pub(crate) async fn run(args: BackupArgs) -> Result<(), CliError> {
    let http = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .read_timeout(BACKUP_STALL_TIMEOUT)
        .build()
        .map_err(|e| CliError::local(format!("cannot build the HTTP client: {e}")))?;
    let mut last = CliError::local("no --nodes given");
    for node in &args.nodes {
        match from_node(&http, node, &args).await {
            Ok(summary) => {
                if args.json {
                    println!("{summary}");
                } else {
                    println!(
                        "backup of index {} ({} rows) from {}: {} bytes in {:.1} s, sha256 {} -> {}",
                        summary["appliedIndex"],
                        summary["rows"],
                        node,
                        summary["bytes"],
                        summary["seconds"].as_f64().unwrap_or_default(),
                        summary["sha256"].as_str().unwrap_or_default(),
                        args.out.display()
                    );
                }
                return Ok(());
            }
            Err(failure) if failure.try_next => {
                eprintln!("{node}: {} {}; trying the next node", failure.error.code, failure.error.message);
                last = failure.error;
            }
            Err(failure) => return Err(failure.error),
        }
    }
    Err(last)
}

/// The error a node answered with (GraphQL's shape: `errors[0].extensions.code`).
fn coded(status: reqwest::StatusCode, body: &[u8]) -> CliError {
    let value: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let error = &value["errors"][0];
    let code = error["extensions"]["code"].as_str().unwrap_or("HTTP");
    let message = error["message"].as_str().map(str::to_string).unwrap_or_else(|| format!("HTTP {status}"));
    let mut e = CliError::new(code, message);
    e.retry_after_ms = error["extensions"]["retryAfterMs"].as_u64();
    e
}

async fn from_node(http: &reqwest::Client, node: &str, args: &BackupArgs) -> Result<Value, NodeFailure> {
    let started = Instant::now();
    let url = format!("{}/backup", node.trim_end_matches('/'));
    let mut request = http.get(&url);
    if let Some(token) = &args.token {
        request = request.bearer_auth(token);
    }
    let mut response = request
        .send()
        .await
        .map_err(|e| NodeFailure::next(CliError::new("UNAVAILABLE", format!("cannot reach {url}: {e}"))))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.bytes().await.unwrap_or_default();
        let error = coded(status, &body);
        // Another node can serve when this one is busy, behind or without a quorum; a refused
        // token or role is refused everywhere.
        let try_next = matches!(error.code.as_str(), "UNAVAILABLE" | "RATE_LIMITED" | "INTERNAL" | "HTTP");
        return Err(NodeFailure { error, try_next });
    }
    let header = |name: &str| response.headers().get(name).and_then(|v| v.to_str().ok()?.parse::<u64>().ok());
    let (index, rows) = (header("x-raftgraph-applied-index"), header("x-raftgraph-rows"));

    let partial = partial_path(&args.out);
    let local = |what: &str, e: std::io::Error| NodeFailure::stop(CliError::local(format!("{what}: {e}")));
    let file = std::fs::File::create(&partial).map_err(|e| local(&format!("create {}", partial.display()), e))?;
    let mut out = std::io::BufWriter::with_capacity(1024 * 1024, file);
    let mut check = TailHasher { hasher: Sha256::new(), tail: Vec::with_capacity(2 * DIGEST_BYTES) };
    let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    if args.json {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar.set_style(
        ProgressStyle::with_template("{spinner} {binary_bytes} received  {binary_bytes_per_sec}  {elapsed}  {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
    );
    bar.set_message(format!("backup of index {} from {node}", index.unwrap_or_default()));
    let mut bytes: u64 = 0;
    let result: Result<(), NodeFailure> = async {
        loop {
            let chunk = match response.chunk().await {
                Ok(Some(chunk)) => chunk,
                Ok(None) => break,
                Err(e) => {
                    return Err(NodeFailure::next(CliError::new(
                        "UNAVAILABLE",
                        format!("the backup from {node} broke off after {bytes} bytes: {e}"),
                    )))
                }
            };
            if bytes < BACKUP_MAGIC.len() as u64 {
                let seen = (BACKUP_MAGIC.len() - bytes as usize).min(chunk.len());
                if chunk[..seen] != BACKUP_MAGIC[bytes as usize..bytes as usize + seen] {
                    return Err(NodeFailure::stop(CliError::local(format!("{url} did not send a raftgraph backup"))));
                }
            }
            check.update(&chunk);
            out.write_all(&chunk).map_err(|e| local(&format!("write {}", partial.display()), e))?;
            bytes += chunk.len() as u64;
            bar.set_position(bytes);
        }
        if !check.matches() {
            return Err(NodeFailure::next(CliError::new(
                "UNAVAILABLE",
                format!("the backup from {node} is incomplete or damaged ({bytes} bytes; its digest does not match)"),
            )));
        }
        let file = out.into_inner().map_err(|e| local(&format!("write {}", partial.display()), e.into_error()))?;
        file.sync_all().map_err(|e| local(&format!("sync {}", partial.display()), e))?;
        std::fs::rename(&partial, &args.out).map_err(|e| local(&format!("rename to {}", args.out.display()), e))?;
        Ok(())
    }
    .await;
    bar.finish_and_clear();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&partial);
        return Err(e);
    }
    let sha256 = std::fs::File::open(&args.out)
        .and_then(|mut f| {
            use std::io::{Read as _, Seek as _};
            let mut d = [0u8; DIGEST_BYTES];
            f.seek(std::io::SeekFrom::End(-(DIGEST_BYTES as i64)))?;
            f.read_exact(&mut d)?;
            Ok(d.iter().map(|b| format!("{b:02x}")).collect::<String>())
        })
        .unwrap_or_default();
    Ok(json!({
        "backup": args.out.display().to_string(),
        "node": node,
        "appliedIndex": index,
        "rows": rows,
        "bytes": bytes,
        "sha256": sha256,
        "seconds": (started.elapsed().as_secs_f64() * 10.0).round() / 10.0,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_hasher_checks_the_digest_whatever_the_chunking() {
        let body = b"raftgraph-backup-v1\nsome bytes of a backup".to_vec();
        let mut file = body.clone();
        file.extend_from_slice(&Sha256::digest(&body));
        for size in [1, 7, 32, 33, file.len()] {
            let mut check = TailHasher { hasher: Sha256::new(), tail: Vec::new() };
            file.chunks(size).for_each(|c| check.update(c));
            assert!(check.matches(), "chunks of {size}");
        }
        let mut damaged = file.clone();
        damaged[3] ^= 1;
        let mut check = TailHasher { hasher: Sha256::new(), tail: Vec::new() };
        check.update(&damaged);
        assert!(!check.matches());
        let mut short = TailHasher { hasher: Sha256::new(), tail: Vec::new() };
        short.update(&file[..file.len() - 1]);
        assert!(!short.matches());
    }
}
