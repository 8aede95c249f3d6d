//! A value refreshed at most once per period, however many callers ask: `/ready` and
//! `/metrics` are unauthenticated and unlimited (an orchestrator polls them), so a flood
//! of either must not reach the database, the broker or the chain RPC once per request.
//!
//! Callers that arrive while a refresh runs wait for it and share its result (one refresh
//! in flight), so the work done is bounded by the period, not by the request rate.

use std::{
    future::Future,
    sync::Arc,
    time::{Duration, Instant},
};

/// The last value and when it was computed.
pub(crate) struct Snapshot<T> {
    every: Duration,
    slot: tokio::sync::Mutex<Option<(Instant, Arc<T>)>>,
}

impl<T> std::fmt::Debug for Snapshot<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("every", &self.every)
            .finish_non_exhaustive()
    }
}

impl<T> Snapshot<T> {
    /// Refreshed at most once per `every`.
    pub(crate) fn new(every: Duration) -> Self {
        Self {
            every,
            slot: tokio::sync::Mutex::new(None),
        }
    }

    /// The value, computed by `refresh` when the last one is older than the period. The
    /// lock is held across the refresh: concurrent callers wait for it and then read its
    /// result instead of starting their own.
    pub(crate) async fn get<F, Fut>(&self, refresh: F) -> Arc<T>
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = T>,
    {
        let mut slot = self.slot.lock().await;
        if let Some((at, value)) = slot.as_ref() {
            if at.elapsed() < self.every {
                return value.clone();
            }
        }
        let value = Arc::new(refresh().await);
        *slot = Some((Instant::now(), value.clone()));
        value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn a_flood_of_concurrent_callers_runs_one_refresh_per_period() {
        let snapshot = Arc::new(Snapshot::<usize>::new(Duration::from_millis(200)));
        let refreshes = Arc::new(AtomicUsize::new(0));
        let started = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..64 {
            let (snapshot, refreshes) = (snapshot.clone(), refreshes.clone());
            tasks.push(tokio::spawn(async move {
                for _ in 0..40 {
                    let value = snapshot
                        .get(|| async {
                            // A slow probe: callers pile up behind it.
                            tokio::time::sleep(Duration::from_millis(20)).await;
                            refreshes.fetch_add(1, Ordering::SeqCst) + 1
                        })
                        .await;
                    assert!(*value >= 1);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
            }));
        }
        for t in tasks {
            t.await.expect("caller");
        }
        let elapsed = started.elapsed().as_secs_f64();
        let ran = refreshes.load(Ordering::SeqCst) as f64;
        // 2,560 calls: without the snapshot, 2,560 refreshes.
        assert!(
            ran <= (elapsed / 0.2).ceil() + 1.0,
            "{ran} refreshes in {elapsed:.2}s with a 200 ms period"
        );
        assert!(ran >= 1.0);
    }

    #[tokio::test]
    async fn a_fresh_value_is_reused_and_a_stale_one_refreshed() {
        let snapshot = Snapshot::new(Duration::from_millis(50));
        assert_eq!(*snapshot.get(|| async { 1 }).await, 1);
        assert_eq!(*snapshot.get(|| async { 2 }).await, 1, "fresh: reused");
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(*snapshot.get(|| async { 3 }).await, 3, "stale: refreshed");
    }
}
