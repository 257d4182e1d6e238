//! Runs ingress's SM2 work (signature checks, envelope opening) on tokio's blocking threads, at
//! most one job per core at a time.
//!
//! A report costs a few hundred microseconds of SM2 (docs/benchmarks.md); done on an async worker
//! it would hold that worker, and every other request's I/O queued on it, for as long. The pool's
//! permits bound the blocking jobs; a request waiting for a permit is parked, not queued as a job,
//! and requests themselves are bounded by admission before their signature is checked.

use std::sync::Arc;

use tokio::sync::Semaphore;

use crate::error::WireError;

/// At most `parallelism` crypto jobs at once, each on a blocking thread.
pub struct CryptoPool {
    permits: Arc<Semaphore>,
}

impl CryptoPool {
    /// A pool running at most `parallelism` jobs at once (at least one).
    pub fn new(parallelism: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(parallelism.max(1))),
        }
    }

    /// One job per core of this machine.
    pub fn per_core() -> Self {
        Self::new(std::thread::available_parallelism().map_or(1, usize::from))
    }

    /// Runs `job` on a blocking thread once a permit is free and returns its result.
    pub async fn run<T: Send + 'static>(
        &self,
        job: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, WireError> {
        let permit = Arc::clone(&self.permits)
            .acquire_owned()
            .await
            .map_err(|e| WireError::internal("crypto pool", e))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            job()
        })
        .await
        .map_err(|e| WireError::internal("crypto job", e))
    }
}

impl Default for CryptoPool {
    fn default() -> Self {
        Self::per_core()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_more_jobs_run_at_once_than_permits() {
        let pool = Arc::new(CryptoPool::new(2));
        let running = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let jobs: Vec<_> = (0..16)
            .map(|_| {
                let (pool, running, most) = (pool.clone(), running.clone(), most.clone());
                tokio::spawn(async move {
                    pool.run(move || {
                        let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(now, Ordering::SeqCst);
                        // Long enough for the other jobs to try to start meanwhile.
                        std::thread::sleep(std::time::Duration::from_millis(5));
                        running.fetch_sub(1, Ordering::SeqCst);
                    })
                    .await
                })
            })
            .collect();
        for job in jobs {
            job.await.unwrap().unwrap();
        }
        assert!(most.load(Ordering::SeqCst) <= 2);
        assert!(most.load(Ordering::SeqCst) >= 1);
    }
}
