use chrono::NaiveDate;
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::state::DocumentEventKind;
use crate::identifiers::{DocumentNumber, DocumentType, PersonId};
use crate::values::{DocumentRecord, Location, Personal, Timestamp};

/// Something that happened to a document. Stored forever: variant and field names are part of
/// the stored format; a change of shape gets a new `event_version` and an upcaster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum DocumentEvent {
    ApplicationFiled(ApplicationFiled),
    IssuanceConfirmed(IssuanceConfirmed),
    Deposited(Deposited),
    Withdrawn(Withdrawn),
    AbnormalWithdrawal(AbnormalWithdrawal),
    BorderCrossed(BorderCrossed),
    ReturnDateReached(ReturnDateReached),
    Cancelled(Cancelled),
    ReconciliationCorrected(ReconciliationCorrected),
}

/// 办证事件: the holder applied for a new document of this type.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApplicationFiled {
    pub holder: PersonId,
    pub document_type: DocumentType,
    pub consent_letter: Option<String>,
}

/// 证件查询已办证: the exit-entry administration issued the document; not yet in a cabinet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IssuanceConfirmed {
    pub record_id: String,
    pub holder: PersonId,
    pub document_type: DocumentType,
    pub number: Personal<DocumentNumber>,
    pub issued_on: NaiveDate,
    pub valid_until: NaiveDate,
}

/// 入柜 optype 11 (new) or 12 (return).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DepositKind {
    New,
    Return,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deposited {
    pub kind: DepositKind,
    pub record: Personal<DocumentRecord>,
    pub location: Location,
    pub operator: Option<String>,
    pub operated_at: Timestamp,
}

impl Deposited {
    /// Whose document this is: the record's holder, or whose record was erased.
    pub fn holder(&self) -> PersonId {
        match &self.record {
            Personal::Known(record) => record.holder_id(),
            Personal::Erased(erased) => erased.erased_for.clone(),
        }
    }
}

/// 出柜 optype 21 (lend, with a planned return date) or 22 (take out).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WithdrawalKind {
    Lend,
    TakeOut,
}

/// A condition the platform flags for readers without refusing the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Anomaly {
    ExitWhileInCabinet,
    CrossingOfUnknownDocument,
    WithdrawalWithoutApproval,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Withdrawn {
    pub kind: WithdrawalKind,
    pub location: Location,
    pub operator: Option<String>,
    pub operated_at: Timestamp,
    pub purpose: Option<String>,
    pub planned_return: Option<NaiveDate>,
    pub destination: Option<String>,
    pub travel_approval: Option<String>,
    /// Decided by the aggregate (`withdrawal_without_approval`), never by the caller.
    pub anomaly: Option<Anomaly>,
}

/// 异常出柜 reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AbnormalReason {
    ChipUnreadable,
    Missing,
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AbnormalWithdrawal {
    pub reason: AbnormalReason,
    pub location: Location,
    pub operator: Option<String>,
    pub operated_at: Timestamp,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CrossingDirection {
    Exit,
    Entry,
}

/// 出入境: one border-crossing record of the exit-entry administration.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BorderCrossed {
    pub record_id: String,
    pub direction: CrossingDirection,
    pub crossed_at: Timestamp,
    pub port: String,
    pub country: String,
    /// Decided by the aggregate (`exit_while_in_cabinet`, `crossing_of_unknown_document`).
    pub anomaly: Option<Anomaly>,
}

/// 已到归还日期: raised by the platform's scheduler.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReturnDateReached {
    pub planned_return: NaiveDate,
    pub observed_on: NaiveDate,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CancellationReason {
    Lost,
    Damaged,
    Expired,
    LeftUnit,
    FilingRevoked,
}

/// 注销 (terminal).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cancelled {
    pub reason: CancellationReason,
    pub proof: Option<String>,
}

/// The one automatic repair of nightly reconciliation (SPEC §6.1).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReconciliationCorrected {
    pub reconciliation_serial: String,
    pub location: Location,
}

impl DocumentEvent {
    /// The business time of a cabinet operation (deposit, withdrawal), None for the others.
    pub fn operated_at(&self) -> Option<Timestamp> {
        match self {
            DocumentEvent::Deposited(e) => Some(e.operated_at),
            DocumentEvent::Withdrawn(e) => Some(e.operated_at),
            DocumentEvent::AbnormalWithdrawal(e) => Some(e.operated_at),
            _ => None,
        }
    }

    pub fn kind(&self) -> DocumentEventKind {
        use DocumentEventKind as K;
        match self {
            DocumentEvent::ApplicationFiled(_) => K::ApplicationFiled,
            DocumentEvent::IssuanceConfirmed(_) => K::IssuanceConfirmed,
            DocumentEvent::Deposited(_) => K::Deposited,
            DocumentEvent::Withdrawn(_) => K::Withdrawn,
            DocumentEvent::AbnormalWithdrawal(_) => K::AbnormalWithdrawal,
            DocumentEvent::BorderCrossed(c) => match c.direction {
                CrossingDirection::Exit => K::BorderCrossedExit,
                CrossingDirection::Entry => K::BorderCrossedEntry,
            },
            DocumentEvent::ReturnDateReached(_) => K::ReturnDateReached,
            DocumentEvent::Cancelled(_) => K::Cancelled,
            DocumentEvent::ReconciliationCorrected(_) => K::ReconciliationCorrected,
        }
    }
}

impl DomainEvent for DocumentEvent {
    fn event_type(&self) -> String {
        match self {
            DocumentEvent::ApplicationFiled(_) => "ApplicationFiled",
            DocumentEvent::IssuanceConfirmed(_) => "IssuanceConfirmed",
            DocumentEvent::Deposited(_) => "Deposited",
            DocumentEvent::Withdrawn(_) => "Withdrawn",
            DocumentEvent::AbnormalWithdrawal(_) => "AbnormalWithdrawal",
            DocumentEvent::BorderCrossed(_) => "BorderCrossed",
            DocumentEvent::ReturnDateReached(_) => "ReturnDateReached",
            DocumentEvent::Cancelled(_) => "Cancelled",
            DocumentEvent::ReconciliationCorrected(_) => "ReconciliationCorrected",
        }
        .to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
