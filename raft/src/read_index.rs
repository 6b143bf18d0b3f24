//! Shared read-index rounds: concurrent linearizable reads on one node share one confirmation of
//! leadership instead of each paying a quorum round trip.
//!
//! A reader joins the *next* round, never one already in flight: a round that started before the
//! reader arrived could return a read index older than a write the reader already saw
//! acknowledged. Rounds run back to back while readers keep arriving; the first reader to find no
//! round running starts the driver task.

use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::error::StoreError;

type RoundResult = Option<Result<u64, StoreError>>;

/// What runs one round: confirms leadership and returns the index reads must wait for (the
/// router, in the store).
pub(crate) trait ReadIndexSource: Send + Sync + 'static {
    fn round(&self) -> BoxFuture<'_, Result<u64, StoreError>>;
}

/// The state shared between readers and the driver.
///
/// A std mutex, not tokio's: it is held only to swap an `Option`, never across an await.
struct State {
    running: bool,
    next: Option<watch::Sender<RoundResult>>,
}

/// Batches read-index requests into rounds.
pub(crate) struct SharedRounds<S> {
    state: Mutex<State>,
    source: Arc<S>,
}

impl<S: ReadIndexSource> SharedRounds<S> {
    /// Rounds run by `source`.
    pub(crate) fn new(source: Arc<S>) -> Arc<Self> {
        Arc::new(SharedRounds { state: Mutex::new(State { running: false, next: None }), source })
    }

    /// The read index of a round that started after this call.
    pub(crate) async fn read_index(self: &Arc<Self>) -> Result<u64, StoreError> {
        let mut rx = {
            let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let rx = st.next.get_or_insert_with(|| watch::channel(None).0).subscribe();
            if !st.running {
                st.running = true;
                tokio::spawn(self.clone().drive());
            }
            rx
        };
        let result = match rx.wait_for(|r| r.is_some()).await {
            Ok(r) => r.clone(),
            Err(_) => None,
        };
        result.unwrap_or_else(|| Err(StoreError::internal("read round was dropped without a result")))
    }

    async fn drive(self: Arc<Self>) {
        loop {
            let tx = {
                let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
                match st.next.take() {
                    Some(tx) => tx,
                    None => {
                        st.running = false;
                        return;
                    }
                }
            };
            let result = self.source.round().await;
            tx.send_replace(Some(result));
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    use super::*;

    /// Rounds that take 20 ms each and return their own number.
    struct Counter(AtomicU64);

    impl ReadIndexSource for Counter {
        fn round(&self) -> BoxFuture<'_, Result<u64, StoreError>> {
            Box::pin(async move {
                let n = self.0.fetch_add(1, Ordering::SeqCst) + 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
                Ok(n)
            })
        }
    }

    // Many concurrent readers must share a handful of rounds, and every reader must get the
    // index of a round that started after it asked (here: the round counter at or after its
    // arrival), or linearizability breaks.
    #[tokio::test]
    async fn concurrent_readers_share_rounds_that_start_after_them() {
        let rounds = Arc::new(Counter(AtomicU64::new(0)));
        let shared = SharedRounds::new(rounds.clone());
        let mut tasks = Vec::new();
        for _ in 0..200 {
            let shared = shared.clone();
            let rounds = rounds.clone();
            tasks.push(tokio::spawn(async move {
                let started_before = rounds.0.load(Ordering::SeqCst);
                let got = shared.read_index().await.expect("round");
                assert!(got > started_before, "got round {got}, but round {started_before} had already started");
            }));
        }
        for t in tasks {
            t.await.expect("reader");
        }
        let total = rounds.0.load(Ordering::SeqCst);
        assert!(total < 20, "200 concurrent readers took {total} rounds; they should share");
    }
}
