use chrono::NaiveDate;
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::state::ConsentLetterEventKind;
use crate::identifiers::{CreditCode, DocumentType, PersonId};
use crate::travel_approval::SignedForm;

/// Something that happened to a consent letter. Part of the stored format, like every event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum ConsentLetterEvent {
    LetterRecorded(LetterRecorded),
}

/// What the letter lets the person apply for (出入境业务类型).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ConsentPurpose {
    /// 办新证
    NewDocument,
    /// 换发
    Renewal,
    /// 签注
    Endorsement,
}

/// 同意函: the unit consents to one person's document application.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LetterRecorded {
    pub holder: PersonId,
    /// The unit that issued it (the signing unit client's).
    pub unit: CreditCode,
    /// The `SP…` serial of the travel approval the letter was made for, if any.
    pub travel_approval: Option<String>,
    pub purpose: ConsentPurpose,
    pub document_type: DocumentType,
    /// 开具日期
    pub issued_on: NaiveDate,
    pub form: SignedForm,
}

impl ConsentLetterEvent {
    pub fn kind(&self) -> ConsentLetterEventKind {
        match self {
            ConsentLetterEvent::LetterRecorded(_) => ConsentLetterEventKind::LetterRecorded,
        }
    }
}

impl DomainEvent for ConsentLetterEvent {
    fn event_type(&self) -> String {
        crate::transitions::Named::name(self.kind()).to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
