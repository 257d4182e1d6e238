use super::events::*;

/// A request to change a consent letter; each yields at most one event.
#[derive(Debug, Clone, PartialEq)]
pub enum ConsentLetterCommand {
    /// The unit reports a letter it has issued (sjsb-tyh).
    Record(LetterRecorded),
}
