use super::events::*;

/// A request to change a reconciliation; each yields at most one event.
#[derive(Debug, Clone, PartialEq)]
pub enum ReconciliationCommand {
    /// Record the deviations found between a cabinet's batch and the platform.
    RecordDiff(BatchDiffed),
    /// Record what became of each automatic repair the diff planned.
    RecordRepairs(RepairsRecorded),
}
