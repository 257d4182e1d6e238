//! Sealing a store written in clear (docs/personal-data.md, "Migrating a plaintext store"): the
//! events' personal fields are rewritten to their sealed form, a batch at a time, and the run is
//! recorded by an event of its own. Offline: the operator stops the service first.

use custody_eventlog::{EventLog, EventLogError, ResealBatch, ResealRecord};

/// Events looked at per transaction.
pub const RESEAL_BATCH: i64 = 500;

/// What a run did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResealOutcome {
    /// The run's number (its record's sequence).
    pub run: i64,
    /// Events resealed by this run (those of a run it finished included only if resealed now).
    pub resealed: u64,
    /// The record appended, None when there was nothing to record (a second run).
    pub record: Option<ResealRecord>,
}

/// Reseals every event with personal fields in clear, `batch` at a time, reporting each batch
/// to `progress`, then appends the run's record. A run cut short (a crash, kill -9) left whole
/// batches, each one transaction; the next run skips what they sealed and records them with its
/// own, so a second run, or one after a crash, records nothing twice.
pub async fn seal_plaintext(
    log: &EventLog,
    batch: i64,
    mut progress: impl FnMut(&ResealBatch),
) -> Result<ResealOutcome, EventLogError> {
    let run = log.reseal_run().await?;
    let mut after = i64::MIN;
    let mut resealed = 0;
    loop {
        let done = log.reseal_batch(run, after, batch.max(1)).await?;
        progress(&done);
        resealed += done.resealed;
        match done.next {
            Some(next) => after = next,
            None => break,
        }
    }
    let record = log.record_reseal_run(run).await?;
    Ok(ResealOutcome {
        run,
        resealed,
        record,
    })
}
