//! Refusals the store could not take when they happened (it was going away, or hung), kept in
//! the data directory until it can: one file each, written whole before it counts, inserted and
//! then removed by [`RejectionSpool::drain`], oldest first. Bounded in files and bytes; a refusal
//! beyond the bounds is logged as not kept. A crash between an insert and the removal of its
//! file inserts that refusal once more on the next drain: the spool keeps at least once, never
//! less (docs/operations.md, "Starting while a dependency is down").

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use crate::{EventLogError, PlatformStore, Rejection};

/// The spool's directory inside the data directory.
pub const SPOOL_DIRECTORY: &str = "rejection-spool";

/// At most this many refusals wait in the spool.
pub const MAX_SPOOLED: usize = 10_000;

/// At most this many bytes of them (an authenticated refusal keeps its body, up to 1 MiB).
pub const MAX_SPOOLED_BYTES: u64 = 256 * 1024 * 1024;

pub struct RejectionSpool {
    dir: PathBuf,
    /// Files and bytes spooled now.
    held: Mutex<(usize, u64)>,
    /// Names files apart within one millisecond.
    sequence: AtomicU64,
}

/// What [`RejectionSpool::put`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spooled {
    Kept,
    /// The spool is full: the refusal is not kept.
    Full,
}

impl RejectionSpool {
    /// Opens (creating) the spool in `data_dir`, counting what an earlier run left in it.
    pub fn open(data_dir: &Path) -> std::io::Result<RejectionSpool> {
        let dir = data_dir.join(SPOOL_DIRECTORY);
        crate::files::private_directory(&dir)?;
        let (mut files, mut bytes) = (0usize, 0u64);
        for entry in std::fs::read_dir(&dir)? {
            let entry = entry?;
            if is_spooled(&entry.path()) {
                files += 1;
                bytes += entry.metadata()?.len();
            }
        }
        Ok(RejectionSpool {
            dir,
            held: Mutex::new((files, bytes)),
            sequence: AtomicU64::new(0),
        })
    }

    /// Refusals waiting now.
    pub fn len(&self) -> usize {
        self.held.lock().unwrap_or_else(|p| p.into_inner()).0
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Writes one refusal to the spool (a temporary file renamed into place once synced, so a
    /// crash leaves no half refusal).
    pub fn put(&self, rejection: &Rejection) -> std::io::Result<Spooled> {
        let bytes = serde_json::to_vec(rejection).map_err(std::io::Error::other)?;
        let size = bytes.len() as u64;
        {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            if held.0 >= MAX_SPOOLED || held.1 + size > MAX_SPOOLED_BYTES {
                return Ok(Spooled::Full);
            }
            held.0 += 1;
            held.1 += size;
        }
        let name = format!(
            "{:013}-{:06}-{}",
            rejection.summary.received_ms.max(0),
            self.sequence.fetch_add(1, Ordering::Relaxed) % 1_000_000,
            std::process::id()
        );
        let written = (|| {
            let partial = self.dir.join(format!("{name}.partial"));
            let mut file = crate::files::create_private_file(&partial)?;
            std::io::Write::write_all(&mut file, &bytes)?;
            file.sync_all()?;
            std::fs::rename(&partial, self.dir.join(format!("{name}.json")))
        })();
        if let Err(error) = written {
            self.forget(size);
            return Err(error);
        }
        Ok(Spooled::Kept)
    }

    fn forget(&self, size: u64) {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.0 = held.0.saturating_sub(1);
        held.1 = held.1.saturating_sub(size);
    }

    /// Inserts the spooled refusals into the store, oldest first, removing each once inserted.
    /// Stops at the first failure (the store is still away) and returns how many were moved.
    pub async fn drain(&self, platform: &PlatformStore) -> Result<usize, EventLogError> {
        let mut names: Vec<PathBuf> = std::fs::read_dir(&self.dir)
            .map_err(spool_error)?
            .filter_map(|entry| entry.ok().map(|e| e.path()))
            .filter(|path| is_spooled(path))
            .collect();
        names.sort();
        let mut moved = 0;
        for path in names {
            let bytes = std::fs::read(&path).map_err(spool_error)?;
            let size = bytes.len() as u64;
            match serde_json::from_slice::<Rejection>(&bytes) {
                Ok(rejection) => platform.insert_rejection(&rejection).await?,
                // Not one this build wrote whole: set aside for an operator, never retried.
                Err(error) => {
                    tracing::error!(path = %path.display(), %error, "a spooled refusal does not read");
                    std::fs::rename(&path, path.with_extension("unreadable"))
                        .map_err(spool_error)?;
                    self.forget(size);
                    continue;
                }
            }
            std::fs::remove_file(&path).map_err(spool_error)?;
            self.forget(size);
            moved += 1;
        }
        Ok(moved)
    }
}

fn is_spooled(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "json")
}

fn spool_error(source: std::io::Error) -> EventLogError {
    EventLogError::DataDirectory {
        path: SPOOL_DIRECTORY.to_string(),
        source,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{EventLog, RejectionSummary};

    fn rejection(received_ms: i64, body: &str) -> Rejection {
        let summary = RejectionSummary {
            id: 0,
            received_ms,
            mstype: "sjsb-sbxt".into(),
            ei: "cabinet".into(),
            reqid: format!("r{received_ms}"),
            ywlsh: String::new(),
            http_status: 409,
            error_code: "E_STALE".into(),
            error_message: "stale".into(),
            authenticated: true,
            body_sm3: String::new(),
            body_size: 0,
            body_whole: true,
            source: None,
            touched_unit: None,
        };
        Rejection::of_body(summary, body.as_bytes())
    }

    #[tokio::test]
    async fn spooled_refusals_survive_a_restart_reach_the_store_in_order_and_are_bounded() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let spool = RejectionSpool::open(dir.path()).expect("spool");
        for ms in [3, 1, 2] {
            assert_eq!(spool.put(&rejection(ms, "{}")).expect("put"), Spooled::Kept);
        }
        // A new process finds them.
        let spool = RejectionSpool::open(dir.path()).expect("spool again");
        assert_eq!(spool.len(), 3);
        let log = EventLog::open_embedded(&dir.path().join("store"))
            .await
            .expect("store");
        assert_eq!(spool.drain(log.platform()).await.expect("drain"), 3);
        assert!(spool.is_empty());
        // Newest id first: inserted oldest first.
        let kept = log.platform().rejections(10, None).await.expect("kept");
        let times: Vec<i64> = kept.iter().map(|r| r.received_ms).collect();
        assert_eq!(times, [3, 2, 1]);
        assert_eq!(spool.drain(log.platform()).await.expect("drain"), 0);

        let full = RejectionSpool {
            held: Mutex::new((MAX_SPOOLED, 0)),
            ..RejectionSpool::open(dir.path()).expect("spool")
        };
        assert_eq!(full.put(&rejection(4, "{}")).expect("put"), Spooled::Full);
    }
}
