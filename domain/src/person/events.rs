use cqrs_es::DomainEvent;
use serde::{Deserialize, Serialize};

use super::state::PersonEventKind;
use crate::identifiers::{CitizenId, CreditCode};
use crate::values::Personal;

/// Something that happened to a person's filing. Part of the stored format, like every event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum PersonEvent {
    FilingSubmitted(FilingSubmitted),
    FilingAccepted(FilingAnswered),
    FilingRefused(FilingAnswered),
    ChangeSubmitted(ChangeSubmitted),
    ChangeAccepted(FilingAnswered),
    ChangeRefused(FilingAnswered),
    RevocationSubmitted(RevocationSubmitted),
    RevocationAccepted(FilingAnswered),
    RevocationRefused(FilingAnswered),
    /// Erasure by person (docs/personal-data.md): the person's data key was destroyed, so every
    /// stored copy of their personal data is unreadable; the events themselves stay.
    PersonalDataErased(PersonalDataErased),
}

/// The filed details of a person (the `rydata` envelope plus the list item's fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonDetails {
    pub name: String,
    pub citizen_id: CitizenId,
    pub phone: Option<String>,
    /// 职务
    pub position: Option<String>,
    /// 证件号注册 (document numbers registered with the filing), free text from the unit.
    pub registered_documents: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilingSubmitted {
    /// The filing list's serial (`bbywlsh`).
    pub filing_serial: String,
    pub unit: CreditCode,
    pub details: Personal<PersonDetails>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChangeSubmitted {
    pub filing_serial: String,
    pub details: Personal<PersonDetails>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RevocationSubmitted {
    pub filing_serial: String,
}

/// Why a person's data was erased (the grounds PIPL art. 47 names that apply to a unit).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErasureGround {
    /// The purpose is fulfilled: the person left the unit and the filing is revoked.
    PurposeFulfilled,
    /// The retention period ran out.
    RetentionExpired,
    /// The person asked, and the law allows it.
    PersonRequested,
    /// An order of a competent authority.
    LegalOrder,
}
crate::named_enum!(ErasureGround {
    PurposeFulfilled,
    RetentionExpired,
    PersonRequested,
    LegalOrder
});

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PersonalDataErased {
    pub ground: ErasureGround,
    /// The decision's reference (a file number), never personal data: letters, digits, `-_/.`.
    pub reference: String,
    /// The operator token that erased.
    pub erased_by: String,
}

/// The exit-entry administration's answer to a filing, change or revocation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FilingAnswered {
    pub filing_serial: String,
    /// 备注
    pub remark: Option<String>,
}

impl PersonEvent {
    pub fn kind(&self) -> PersonEventKind {
        use PersonEventKind as K;
        match self {
            PersonEvent::FilingSubmitted(_) => K::FilingSubmitted,
            PersonEvent::FilingAccepted(_) => K::FilingAccepted,
            PersonEvent::FilingRefused(_) => K::FilingRefused,
            PersonEvent::ChangeSubmitted(_) => K::ChangeSubmitted,
            PersonEvent::ChangeAccepted(_) => K::ChangeAccepted,
            PersonEvent::ChangeRefused(_) => K::ChangeRefused,
            PersonEvent::RevocationSubmitted(_) => K::RevocationSubmitted,
            PersonEvent::RevocationAccepted(_) => K::RevocationAccepted,
            PersonEvent::RevocationRefused(_) => K::RevocationRefused,
            PersonEvent::PersonalDataErased(_) => K::PersonalDataErased,
        }
    }
}

impl DomainEvent for PersonEvent {
    fn event_type(&self) -> String {
        crate::transitions::Named::name(self.kind()).to_string()
    }

    fn event_version(&self) -> String {
        "1".to_string()
    }
}
