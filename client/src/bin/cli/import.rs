//! `cli import FILE.jsonl`: existing accounts, one JSON object per line
//! (`{"username": ..., "passwordHash": "$argon2id$v=19$...", "displayName": ..., "email": ...,
//! "createdAt": "2019-05-01T12:00:00Z"}`), brought in with `importAccounts` calls packed to the
//! server's limits, a few in flight, with a progress bar on a terminal.
//!
//! Safe to run again after a failure or on a file partly imported: accounts already there come
//! back skipped as `USERNAME_TAKEN` and nothing is created twice.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use client::import::{import_batch, Batches};
use client::{Client, ImportAccount, SkippedAccount};
use futures::StreamExt as _;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::json;

use crate::CliError;

/// Calls in flight at once by default: enough to keep a leader's pipeline busy while one call
/// is parsed, replicated and applied.
pub(crate) const IMPORT_PARALLEL_DEFAULT: usize = 4;
/// Skipped accounts printed on stderr by name; the rest are counted (all go to `--skipped`).
const SKIPPED_SHOWN_MAX: usize = 10;

/// What a run of `import` is asked to do.
pub(crate) struct ImportArgs {
    pub file: PathBuf,
    pub parallel: usize,
    pub skipped_out: Option<PathBuf>,
    pub json: bool,
}

/// Counts of a run so far.
#[derive(Default)]
struct Tally {
    imported: u64,
    skipped: u64,
    by_code: BTreeMap<String, u64>,
    shown: usize,
}

/// Accounts read from the file, with the first bad line kept to report.
struct Lines<R> {
    lines: std::io::Lines<BufReader<R>>,
    number: u64,
    error: Arc<Mutex<Option<String>>>,
}

impl<R: Read> Iterator for Lines<R> {
    type Item = ImportAccount;

    fn next(&mut self) -> Option<ImportAccount> {
        loop {
            self.number += 1;
            let line = match self.lines.next()? {
                Ok(line) => line,
                Err(e) => return self.fail(format!("line {}: {e}", self.number)),
            };
            if line.trim().is_empty() {
                continue;
            }
            return match serde_json::from_str(&line) {
                Ok(account) => Some(account),
                Err(e) => self.fail(format!("line {}: not an account ({e})", self.number)),
            };
        }
    }
}

impl<R> Lines<R> {
    /// Ends the stream at a bad line, keeping why.
    fn fail(&mut self, message: String) -> Option<ImportAccount> {
        *self.error.lock().unwrap_or_else(|p| p.into_inner()) = Some(message);
        None
    }
}

/// Lines of the file that hold something, for the progress bar's length.
fn count_accounts(path: &Path) -> Result<u64, CliError> {
    let file = std::fs::File::open(path).map_err(|e| CliError::local(format!("{}: {e}", path.display())))?;
    let mut n = 0;
    for line in BufReader::new(file).lines() {
        let line = line.map_err(|e| CliError::local(format!("{}: {e}", path.display())))?;
        n += u64::from(!line.trim().is_empty());
    }
    Ok(n)
}

/// A bar on a terminal; nothing elsewhere (the summary line says it all at the end).
fn progress_bar(total: u64) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{bar:30} {human_pos}/{human_len} accounts  {rate}  eta {eta}  {msg}")
            .map(|style| {
                style.with_key("rate", |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
                    let _ = write!(w, "{:.0} accounts/s", state.per_sec());
                })
            })
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

/// Imports the accounts of `args.file` and prints what happened.
pub(crate) async fn run(client: &Client, nodes: usize, args: ImportArgs) -> Result<(), CliError> {
    let total = count_accounts(&args.file)?;
    let file = std::fs::File::open(&args.file).map_err(|e| CliError::local(format!("{}: {e}", args.file.display())))?;
    let bad_line = Arc::new(Mutex::new(None));
    let lines = Lines { lines: BufReader::new(file).lines(), number: 0, error: bad_line.clone() };
    let mut skipped_out = match &args.skipped_out {
        Some(path) => Some(std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| CliError::local(format!("{}: {e}", path.display())))?,
        )),
        None => None,
    };
    let bar = progress_bar(total);
    let mut tally = Tally::default();
    let mut calls = futures::stream::iter(Batches::new(lines).enumerate())
        .map(|(i, batch)| async move {
            let sent = batch.len() as u64;
            (sent, import_batch(client, i % nodes.max(1), &batch).await)
        })
        .buffered(args.parallel.max(1));
    let mut failure = None;
    while let Some((sent, result)) = calls.next().await {
        match result {
            Ok(r) => {
                tally.imported += r.imported;
                for s in &r.skipped {
                    note_skipped(&mut tally, s, &bar, &mut skipped_out)?;
                }
                bar.inc(sent);
                bar.set_message(format!("{} skipped", tally.skipped));
            }
            Err(e) => {
                // Stop sending. Calls still in flight are dropped with their outcome unknown,
                // which a run again settles: what they created is skipped as USERNAME_TAKEN.
                failure = Some(CliError::from(e));
                break;
            }
        }
    }
    drop(calls);
    bar.finish_and_clear();
    if let Some(out) = &mut skipped_out {
        out.flush().map_err(|e| CliError::local(format!("--skipped: {e}")))?;
    }
    let bad_line = bad_line.lock().unwrap_or_else(|p| p.into_inner()).take();
    let done = tally.imported + tally.skipped;
    let codes: Vec<String> = tally.by_code.iter().map(|(c, n)| format!("{c} {n}")).collect();
    let codes = if codes.is_empty() { String::new() } else { format!(" ({})", codes.join(", ")) };
    let summary = format!("imported {} of {total} accounts, skipped {}{codes}", tally.imported, tally.skipped);
    let stopped = match (failure, bad_line) {
        (Some(e), _) => Some(CliError {
            message: format!("{}; {summary} before it stopped; running again skips those already imported", e.message),
            ..e
        }),
        (None, Some(line)) => Some(CliError::local(format!(
            "{}: {line}; {summary} from the lines before it, nothing after it was sent",
            args.file.display()
        ))),
        (None, None) => None,
    };
    if let Some(e) = stopped {
        // One document on stdout with --json: the error, which carries the counts.
        return Err(e);
    }
    if args.json {
        println!(
            "{}",
            json!({ "imported": tally.imported, "skipped": tally.skipped, "skippedByCode": tally.by_code, "accounts": total, "sent": done })
        );
    } else {
        println!("{summary}");
    }
    Ok(())
}

fn note_skipped(
    tally: &mut Tally,
    s: &SkippedAccount,
    bar: &ProgressBar,
    out: &mut Option<std::io::BufWriter<std::fs::File>>,
) -> Result<(), CliError> {
    tally.skipped += 1;
    *tally.by_code.entry(s.code.clone()).or_default() += 1;
    if let Some(out) = out {
        let line = serde_json::to_string(s).map_err(|e| CliError::local(e.to_string()))?;
        writeln!(out, "{line}").map_err(|e| CliError::local(format!("--skipped: {e}")))?;
    }
    if tally.shown < SKIPPED_SHOWN_MAX {
        tally.shown += 1;
        bar.suspend(|| eprintln!("skipped {:?}: {} {}", s.username, s.code, s.reason));
    } else if tally.shown == SKIPPED_SHOWN_MAX {
        tally.shown += 1;
        bar.suspend(|| eprintln!("(further skipped accounts are counted; --skipped FILE lists them all)"));
    }
    Ok(())
}
