use super::events::*;

/// A request to change a travel approval; each yields at most one event.
#[derive(Debug, Clone, PartialEq)]
pub enum TravelApprovalCommand {
    /// The unit reports an approval it has granted (sjsb-cgsp).
    Record(ApprovalRecorded),
}
