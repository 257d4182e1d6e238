use chrono::NaiveDate;

use super::events::*;

/// What the platform knows about the travel approval a lend names; looked up by the
/// application layer, judged by the aggregate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApprovalCheck {
    /// A valid approval of the same person covers this withdrawal.
    Valid,
    /// None was named, or the named one is unknown, expired or another person's.
    Missing,
}

/// A request to change a document. Each yields at most one event; the aggregate decides
/// whether it is allowed and fills in what only it can judge (anomalies).
#[derive(Debug, Clone, PartialEq)]
pub enum DocumentCommand {
    FileApplication(ApplicationFiled),
    ConfirmIssuance(IssuanceConfirmed),
    Deposit(Deposited),
    Withdraw {
        withdrawal: Withdrawn,
        approval: ApprovalCheck,
    },
    WithdrawAbnormally(AbnormalWithdrawal),
    RecordCrossing(BorderCrossed),
    /// From the return-date scheduler: `today` is the China-time date it runs for.
    MarkReturnDateReached {
        today: NaiveDate,
    },
    Cancel(Cancelled),
    CorrectByReconciliation(ReconciliationCorrected),
}
