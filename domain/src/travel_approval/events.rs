use chrono::NaiveDate;
use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::state::TravelApprovalEventKind;
use crate::identifiers::{CreditCode, DocumentType, PersonId};

/// Something that happened to a travel approval. Part of the stored format, like every event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum TravelApprovalEvent {
    ApprovalRecorded(ApprovalRecorded),
}

/// A signed scanned form (PDF) as the platform keeps it: its SM3 digest and size, and the
/// signature that came with it. The form itself stays with the unit; the digest proves which
/// form the record was made from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SignedForm {
    /// Lower-case hex SM3 of the form's bytes.
    pub sm3: String,
    pub size: u64,
    /// The approving officer's SM2 signature over the form, base64 as received.
    pub signature: String,
}

/// 出国（境）审批: a unit approved one person's trip.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApprovalRecorded {
    pub holder: PersonId,
    /// The unit that approved it (the signing unit client's).
    pub unit: CreditCode,
    /// 目的地
    pub destination: String,
    /// 出发时间
    pub departure: NaiveDate,
    /// 返回时间
    pub return_date: NaiveDate,
    /// 出国事由
    pub reason: Option<String>,
    /// The type of document the trip needs.
    pub document_type: DocumentType,
    /// 同意时间: the approval takes effect on this day.
    pub approved_on: NaiveDate,
    pub form: SignedForm,
}

impl TravelApprovalEvent {
    pub fn kind(&self) -> TravelApprovalEventKind {
        match self {
            TravelApprovalEvent::ApprovalRecorded(_) => TravelApprovalEventKind::ApprovalRecorded,
        }
    }
}

impl DomainEvent for TravelApprovalEvent {
    fn event_type(&self) -> String {
        crate::transitions::Named::name(self.kind()).to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
