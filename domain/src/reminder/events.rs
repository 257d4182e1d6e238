use chrono::NaiveDate;
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::state::ReminderEventKind;
use crate::cabinet::Administrator;
use crate::identifiers::{CreditCode, DocumentId, DocumentType, PersonId};
use crate::values::{DeviceSerial, Timestamp};

/// Something that happened to a reminder. Part of the stored format, like every event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ReminderEvent {
    Opened(Opened),
    Sent(Sent),
    Closed(Closed),
}

/// Why a document is due back (催收类型; `cjlx` on the wire).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReminderKind {
    /// 逾期: the planned return date passed.
    Overdue,
    /// 未逾期已入境: the holder re-entered the country before the planned return date.
    Entered,
}

impl ReminderKind {
    /// The wire code.
    pub fn code(self) -> &'static str {
        match self {
            ReminderKind::Overdue => "overdue",
            ReminderKind::Entered => "entered",
        }
    }
}

/// A document became due back: what the reminder is about, copied from the document when it
/// opened.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Opened {
    pub document: DocumentId,
    /// The sequence of the document event that made it due back.
    pub document_sequence: i64,
    pub kind: ReminderKind,
    pub holder: Option<PersonId>,
    pub document_type: Option<DocumentType>,
    /// The unit whose cabinet lent the document: its administrators are reminded.
    pub unit: Option<CreditCode>,
    /// The cabinet the document left from.
    pub device: Option<DeviceSerial>,
    pub planned_return: Option<NaiveDate>,
    pub opened_at: Timestamp,
}

/// One reminder issued to the notification outbox.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sent {
    pub at: Timestamp,
    /// The China-time day it counts against.
    pub day: NaiveDate,
    /// 1 for the first reminder of that day, 2 for the second, ...
    pub ordinal: u32,
    /// Days past the planned return date on `day` (never negative).
    pub overdue_days: i64,
    /// Who is reminded: by default the unit's cabinet administrators.
    pub recipients: Vec<Administrator>,
}

/// Why a reminder ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CloseReason {
    /// The document was put back in a cabinet.
    Deposited,
    /// Nightly reconciliation found it in a cabinet (SPEC §6.1).
    Reconciled,
    /// The document was cancelled.
    Cancelled,
}

/// 催收结束.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Closed {
    pub reason: CloseReason,
    /// The sequence of the document event that ended it.
    pub document_sequence: i64,
    pub at: Timestamp,
}

impl ReminderEvent {
    pub fn kind(&self) -> ReminderEventKind {
        match self {
            ReminderEvent::Opened(_) => ReminderEventKind::Opened,
            ReminderEvent::Sent(_) => ReminderEventKind::Sent,
            ReminderEvent::Closed(_) => ReminderEventKind::Closed,
        }
    }
}

impl DomainEvent for ReminderEvent {
    fn event_type(&self) -> String {
        crate::transitions::Named::name(self.kind()).to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
