//! The wall clock: the one place the store reads it (proposal stamps, the clamp on forwarded
//! stamps, peer signatures), so that a simulation has one thing to replace.

/// This machine's clock in ms since the Unix epoch.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}
